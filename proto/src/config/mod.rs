//! The cluster configuration served by `config get cluster`, pure: parse and encode.
//!
//! This module owns the data block's format (see the crate docs and `tests/data/config/`):
//!
//! ```text
//! <version> LF-or-CRLF
//! <host>|<ip>|<port> <host>|<ip>|<port> ... LF-or-CRLF
//! ```
//!
//! Nodes are separated by any run of ASCII whitespace; the IP field may be empty (the hostname
//! must then be resolved), hold an unbracketed IPv6 address, repeat the hostname (Memorystore) or
//! hold a hostname (TLS clusters). The version is always the first line, never "a line that
//! starts with a digit": TLS hostnames start with digits too. It does not own the `CONFIG ...`
//! envelope around the block (that is [`crate::protocol::decode`] with [`Expect::Config`]). What a
//! client does with a fetched configuration, given the one it holds, is [`decide`]d here; fetching
//! and applying it are the client's.
//!
//! [`Expect::Config`]: crate::protocol::Expect::Config

use std::fmt;
use std::net::IpAddr;

use nom::bytes::complete::{tag, take_till1, take_while};
use nom::character::complete::digit1;
use nom::{IResult, Parser};

mod apply;

pub use apply::{decide, Decision};

use crate::error::{ClusterConfigErrorKind, ProtocolError};

/// One cache node of a cluster configuration: `hostname|ip|port`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub struct Node {
    hostname: String,
    ip: Option<IpAddr>,
    port: u16,
}

impl Node {
    /// A node with the given hostname, IP and port.
    pub fn new(hostname: impl Into<String>, ip: Option<IpAddr>, port: u16) -> Self {
        Node {
            hostname: hostname.into(),
            ip,
            port,
        }
    }

    /// The node's identity, `hostname:port`: stable when the node's IP changes, so it is what
    /// keys are placed by.
    pub fn id(&self) -> String {
        format!("{}:{}", self.hostname, self.port)
    }

    /// The node's DNS name (on Memorystore, its IP address). Never empty in a parsed
    /// configuration.
    pub fn hostname(&self) -> &str {
        &self.hostname
    }

    /// The node's IP address, when the configuration carries one (else the hostname is
    /// resolved).
    pub fn ip(&self) -> Option<IpAddr> {
        self.ip
    }

    /// The node's port, 1 to 65535 in a parsed configuration.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.ip {
            Some(ip) => write!(f, "{}|{}|{}", self.hostname, ip, self.port),
            None => write!(f, "{}||{}", self.hostname, self.port),
        }
    }
}

/// A cluster configuration: a version that grows on every membership change, and the nodes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct ClusterConfig {
    version: u64,
    nodes: Vec<Node>,
}

impl ClusterConfig {
    /// A configuration of `version` over `nodes` (in the order given).
    pub fn new(version: u64, nodes: Vec<Node>) -> Self {
        ClusterConfig { version, nodes }
    }

    /// The configuration version: it grows with every membership change.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The nodes, in the order the server listed them.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// Parses a configuration data block (the bytes inside the `CONFIG` envelope).
    ///
    /// ```
    /// use memcached_autodiscovery_proto::config::ClusterConfig;
    /// let c = ClusterConfig::parse(b"12\nnode-1|10.0.0.1|11211 node-2||11211\n")?;
    /// assert_eq!(c.version(), 12);
    /// assert_eq!(c.nodes()[1].ip(), None);
    /// # Ok::<(), memcached_autodiscovery_proto::error::ProtocolError>(())
    /// ```
    pub fn parse(block: &[u8]) -> Result<ClusterConfig, ProtocolError> {
        let err = |rest: &[u8], node, kind| ProtocolError::ClusterConfig {
            offset: block.len() - rest.len(),
            node,
            kind,
        };
        let (rest, version) = match version_line(block) {
            Ok((rest, Ok(v))) => (rest, v),
            Ok((rest, Err(kind))) => return Err(err(rest, None, kind)),
            Err(_) => return Err(err(block, None, ClusterConfigErrorKind::BadVersion)),
        };
        let mut nodes = Vec::new();
        let mut rest = rest;
        loop {
            let (after_space, _) = whitespace(rest).unwrap_or((rest, &[][..]));
            rest = after_space;
            if let Some((node, len)) = parse_node_fast(rest) {
                nodes.push(node);
                rest = &rest[len..];
                continue;
            }
            let Ok((after, token)) = node_token(rest) else {
                break;
            };
            let node = parse_node(token).map_err(|kind| err(rest, Some(nodes.len()), kind))?;
            nodes.push(node);
            rest = after;
        }
        if nodes.is_empty() {
            return Err(err(rest, None, ClusterConfigErrorKind::NoNodes));
        }
        Ok(ClusterConfig { version, nodes })
    }

    /// Encodes the data block: `<version>\n<node> <node> ...\n`. [`ClusterConfig::parse`] reads
    /// it back to the same value.
    pub fn encode_block(&self) -> Vec<u8> {
        let nodes: Vec<String> = self.nodes.iter().map(Node::to_string).collect();
        format!("{}\n{}\n", self.version, nodes.join(" ")).into_bytes()
    }
}

/// The version and its line end. The inner result says what was wrong, so that the caller can
/// report where.
fn version_line(input: &[u8]) -> IResult<&[u8], Result<u64, ClusterConfigErrorKind>> {
    let (rest, digits) = digit1(input)?;
    let version = std::str::from_utf8(digits)
        .ok()
        .and_then(|d| d.parse::<u64>().ok());
    let Some(version) = version else {
        return Ok((input, Err(ClusterConfigErrorKind::BadVersion)));
    };
    let ended: IResult<&[u8], &[u8]> = nom::branch::alt((tag("\r\n"), tag("\n"))).parse(rest);
    match ended {
        Ok((rest, _)) => Ok((rest, Ok(version))),
        Err(_) => Ok((rest, Err(ClusterConfigErrorKind::MissingVersionEnd))),
    }
}

fn whitespace(input: &[u8]) -> IResult<&[u8], &[u8]> {
    take_while(|b: u8| b.is_ascii_whitespace())(input)
}

fn node_token(input: &[u8]) -> IResult<&[u8], &[u8]> {
    take_till1(|b: u8| b.is_ascii_whitespace())(input)
}

/// The bytes a hostname field may hold: ASCII letters, digits, `-`, `.`, `_` and `:`. A table,
/// because this test runs on every byte of every hostname.
const HOSTNAME_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b':');
        b += 1;
    }
    table
};

fn is_hostname(field: &[u8]) -> bool {
    !field.is_empty() && field.len() <= 255 && field.iter().all(|&b| HOSTNAME_BYTES[usize::from(b)])
}

/// Parses the node entry at the start of `input` in one pass, when it is in the common form:
/// `host|ip|port` followed by whitespace or the end of the block. `None` means "not in that
/// form", not "invalid": the caller then cuts the token and parses it with [`parse_node`], which
/// gives the same node whenever this one does, and the precise error otherwise.
fn parse_node_fast(input: &[u8]) -> Option<(Node, usize)> {
    // `|` and whitespace are not hostname bytes, so this stops at the end of the host field.
    let host_len = input
        .iter()
        .position(|&b| !HOSTNAME_BYTES[usize::from(b)])?;
    if !(1..=255).contains(&host_len) || input[host_len] != b'|' {
        return None;
    }
    let rest = &input[host_len + 1..];
    let ip_len = rest
        .iter()
        .position(|&b| b == b'|' || b.is_ascii_whitespace())?;
    if rest[ip_len] != b'|' {
        return None;
    }
    let ip_field = &rest[..ip_len];
    let digits = &rest[ip_len + 1..];
    let port_len = digits
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(digits.len());
    if !(1..=5).contains(&port_len)
        || digits
            .get(port_len)
            .is_some_and(|b| !b.is_ascii_whitespace())
    {
        return None;
    }
    let port = digits[..port_len]
        .iter()
        .fold(0u32, |n, &d| n * 10 + u32::from(d - b'0'));
    let port = u16::try_from(port).ok().filter(|&p| p != 0)?;
    let ip = match ip_field {
        [] => None,
        ip => match std::str::from_utf8(ip)
            .ok()
            .and_then(|s| s.parse::<IpAddr>().ok())
        {
            Some(addr) => Some(addr),
            None if is_hostname(ip) => None,
            None => return None,
        },
    };
    let hostname = std::str::from_utf8(&input[..host_len]).ok()?.to_owned();
    Some((
        Node { hostname, ip, port },
        host_len + 1 + ip_len + 1 + port_len,
    ))
}

fn parse_node(token: &[u8]) -> Result<Node, ClusterConfigErrorKind> {
    // Borrowed fields, parsed in place: the hostname is the node's only allocation.
    let split = || token.split(|&b| b == b'|');
    let mut fields = split();
    let (Some(host), Some(ip), Some(port), None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err(ClusterConfigErrorKind::FieldCount {
            fields: split().count(),
        });
    };
    if !is_hostname(host) {
        return Err(ClusterConfigErrorKind::BadHostname);
    }
    fn text(f: &[u8]) -> Option<&str> {
        std::str::from_utf8(f).ok()
    }
    let hostname = text(host)
        .ok_or(ClusterConfigErrorKind::BadHostname)?
        .to_owned();
    let ip = match ip {
        [] => None,
        ip => match text(ip).and_then(|s| s.parse::<IpAddr>().ok()) {
            Some(addr) => Some(addr),
            // TLS clusters may put a hostname in the IP field: connect by hostname then.
            None if is_hostname(ip) => None,
            None => return Err(ClusterConfigErrorKind::BadIp),
        },
    };
    let port = match port {
        p if !p.is_empty() && p.len() <= 5 && p.iter().all(u8::is_ascii_digit) => {
            // At most five digits: the value fits in a u32 before the range check.
            let value = p.iter().fold(0u32, |n, &d| n * 10 + u32::from(d - b'0'));
            u16::try_from(value)
                .ok()
                .filter(|&p| p != 0)
                .ok_or(ClusterConfigErrorKind::BadPort)?
        }
        _ => return Err(ClusterConfigErrorKind::BadPort),
    };
    Ok(Node { hostname, ip, port })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(block: &[u8]) -> (ClusterConfigErrorKind, usize, Option<usize>) {
        match ClusterConfig::parse(block) {
            Err(ProtocolError::ClusterConfig { kind, offset, node }) => (kind, offset, node),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn parses_the_documented_shapes() {
        let c = ClusterConfig::parse(b"7\r\n0001.c.use1.cache.amazonaws.com|0001.c.use1.cache.amazonaws.com|11211  h2|2001:db8::1|11212\t\n").unwrap();
        assert_eq!(c.version, 7);
        assert_eq!(c.nodes[0].ip, None);
        assert_eq!(c.nodes[1].ip, Some("2001:db8::1".parse().unwrap()));
        assert_eq!(c.nodes[1].port, 11212);
        let m = ClusterConfig::parse(b"1\n10.0.0.5|10.0.0.5|11211").unwrap();
        assert_eq!(m.nodes[0].ip, Some("10.0.0.5".parse().unwrap()));
        let max = ClusterConfig::parse(b"18446744073709551615\nh|1.2.3.4|65535\n").unwrap();
        assert_eq!((max.version, max.nodes[0].port), (u64::MAX, 65535));
    }

    #[test]
    fn errors_say_what_and_where() {
        assert_eq!(kind(b""), (ClusterConfigErrorKind::BadVersion, 0, None));
        assert_eq!(
            kind(b"18446744073709551616\nh||1\n").0,
            ClusterConfigErrorKind::BadVersion
        );
        assert_eq!(
            kind(b"1h|1.2.3.4|1\n"),
            (ClusterConfigErrorKind::MissingVersionEnd, 1, None)
        );
        assert_eq!(kind(b"1\n\n"), (ClusterConfigErrorKind::NoNodes, 3, None));
        assert_eq!(
            kind(b"1\na||1 b|1\n"),
            (ClusterConfigErrorKind::FieldCount { fields: 2 }, 7, Some(1))
        );
        assert_eq!(
            kind(b"1\n|1.2.3.4|1\n").0,
            ClusterConfigErrorKind::BadHostname
        );
        assert_eq!(kind(b"1\nh|1.2.3.4|0\n").0, ClusterConfigErrorKind::BadPort);
        assert_eq!(
            kind(b"1\nh|1.2.3.4|65536\n").0,
            ClusterConfigErrorKind::BadPort
        );
        assert_eq!(
            kind(b"1\nh|1.2.3.4|011211\n").0,
            ClusterConfigErrorKind::BadPort
        );
        assert_eq!(kind(b"1\nh|[::1]|1\n").0, ClusterConfigErrorKind::BadIp);
        assert_eq!(
            kind(b"1\nh\xff|1.2.3.4|1\n").0,
            ClusterConfigErrorKind::BadHostname
        );
    }

    #[test]
    fn hostname_table_matches_the_byte_rule() {
        for b in 0..=255u8 {
            let rule = b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b':');
            assert_eq!(is_hostname(&[b]), rule, "byte 0x{b:02x}");
        }
        assert!(!is_hostname(b""));
        assert!(is_hostname(&[b'a'; 255]));
        assert!(!is_hostname(&[b'a'; 256]));
    }

    #[test]
    fn the_one_pass_node_parser_agrees_with_the_exact_one() {
        let fields: &[&[u8]] = &[
            b"",
            b"h",
            b"node-1.c.use1.cache.amazonaws.com",
            b"10.0.0.1",
            b"2001:db8::1",
            b"::ffff:10.0.0.1",
            b"1.2.3",
            b"0",
            b"1",
            b"11211",
            b"65535",
            b"65536",
            b"011211",
            b"99999",
            b"a b",
            b"h!",
            b"\xff",
            &[b'x'; 255],
            &[b'x'; 256],
        ];
        let ends: &[&[u8]] = &[b"", b" ", b"\n", b"\r\n", b"|", b"|x", b"x", b"!"];
        let mut checked = 0;
        for host in fields {
            for ip in fields {
                for port in fields {
                    for end in ends {
                        let mut input = [*host, *ip, *port].join(&b'|');
                        input.extend_from_slice(end);
                        let Some((node, len)) = parse_node_fast(&input) else {
                            continue;
                        };
                        let (_, token) = node_token(&input).unwrap();
                        assert_eq!(token.len(), len, "{:?}", input.escape_ascii().to_string());
                        assert_eq!(parse_node(token), Ok(node));
                        checked += 1;
                    }
                }
            }
        }
        assert!(checked > 500, "only {checked} inputs took the fast path");
        // Every fixture-like config parses the same with the fast path taken or not.
        let c = ClusterConfig::parse(b"1\nh1|10.0.0.1|11211 h2||11212\th3|h3|1\r\n").unwrap();
        assert_eq!(c.nodes.len(), 3);
        assert_eq!(c.nodes[2], Node::new("h3", None, 1));
    }
}
