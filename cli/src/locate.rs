//! `mcad locate`: which node each key goes to, computed locally (no network).

use std::collections::HashSet;
use std::io::{self, BufRead, BufReader};

use memcached_autodiscovery::Node;
use memcached_autodiscovery_proto::distribution::{Distribution, Locator};

use crate::hints;
use crate::output::{stderr_line, Out};
use crate::{Failure, Outcome, Result};

/// Print `KEY<TAB>HOST:PORT` for each key: the node the client would send it to.
///
/// Keys come from the arguments or, when there are none, from stdin, one per line (empty lines
/// are skipped). Nodes are printed exactly as written in --nodes, without the weight. Keys are
/// placed by `host:port` with the port as a number and IPv6 hosts without brackets, as the
/// client places them; write each node as the other client was given it (hostname or IP) to
/// see where that client puts a key.
#[derive(clap::Args)]
pub struct Args {
    /// The nodes, comma-separated: HOST:PORT with an optional :WEIGHT (a positive integer);
    /// IPv6 as `[addr]:port[:weight]`. Weights count in the ketama and consistent-libmemcached
    /// modes (nodes without one weigh 1); the other modes give every node the same share.
    /// (ClientBuilder::nodes and ClientBuilder::node_weights in the library.)
    #[arg(long, value_name = "HOST:PORT[:WEIGHT],...", required = true)]
    nodes: Vec<String>,
    /// How keys are placed on nodes: ring (the default), ketama, ketama-spymemcached,
    /// ketama-fnv1a64, ketama-aws-java, consistent-libmemcached, consistent-libmemcached-md5,
    /// rendezvous, modula-libmemcached or modula-java (ClientBuilder::distribution with
    /// Distribution::from_name(NAME) in the library).
    #[arg(long, value_name = "NAME", default_value = "ring")]
    distribution: String,
    /// Keys to place; read from stdin, one per line, when none are given.
    #[arg(value_name = "KEY")]
    keys: Vec<String>,
}

/// The placement mode called `name`, or an error listing the known ones.
pub fn distribution_named(name: &str) -> Result<Distribution> {
    Distribution::from_name(name).ok_or_else(|| {
        let known: Vec<&str> = Distribution::ALL.iter().map(|d| d.name()).collect();
        Failure::msg(format!(
            "unknown distribution {name} (known: {}); {} takes one of these",
            known.join(", "),
            hints::flag("--distribution NAME", "ClientBuilder::distribution"),
        ))
    })
}

/// One node of `--nodes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSpec {
    /// `HOST:PORT` exactly as written (weight left out).
    pub spelled: String,
    /// The host, without IPv6 brackets.
    pub host: String,
    pub port: u16,
    pub weight: Option<u32>,
}

impl NodeSpec {
    /// What keys are placed by: the client's node identity.
    pub fn id(&self) -> String {
        Node::new(self.host.clone(), None, self.port).id()
    }
}

/// Parses `HOST:PORT[:WEIGHT]` or `[V6]:PORT[:WEIGHT]`.
pub fn parse_node(text: &str) -> std::result::Result<NodeSpec, String> {
    let text = text.trim();
    let bad = |why: &str| format!("bad node {text:?} in --nodes: {why}");
    let (host, rest, host_len) = if let Some(inner) = text.strip_prefix('[') {
        let (host, rest) = inner
            .split_once(']')
            .ok_or_else(|| bad("missing ] after the IPv6 address"))?;
        let rest = rest
            .strip_prefix(':')
            .ok_or_else(|| bad("expected [addr]:port"))?;
        (host, rest, host.len() + 2)
    } else {
        let (host, rest) = text
            .split_once(':')
            .ok_or_else(|| bad("expected host:port"))?;
        (host, rest, host.len())
    };
    if host.is_empty() {
        return Err(bad("the host is empty"));
    }
    if host.contains(['[', ']']) || (!text.starts_with('[') && host.contains(':')) {
        return Err(bad("expected host:port"));
    }
    let (port_text, weight_text) = match rest.split_once(':') {
        Some((port, weight)) => (port, Some(weight)),
        None => (rest, None),
    };
    if weight_text.is_some_and(|w| w.contains(':')) {
        return Err(bad(
            "too many `:` (write an IPv6 address in brackets: [addr]:port)",
        ));
    }
    let port = parse_decimal(port_text)
        .and_then(|p| u16::try_from(p).ok())
        .filter(|&p| p != 0)
        .ok_or_else(|| bad("the port is not a number from 1 to 65535"))?;
    let weight = match weight_text {
        None => None,
        Some(w) => Some(
            parse_decimal(w)
                .and_then(|w| u32::try_from(w).ok())
                .filter(|&w| w != 0)
                .ok_or_else(|| bad("the weight is not a positive integer"))?,
        ),
    };
    Ok(NodeSpec {
        spelled: text[..host_len + 1 + port_text.len()].to_string(),
        host: host.to_string(),
        port,
        weight,
    })
}

/// Digits only (no sign, no spaces), at most 10 of them.
fn parse_decimal(text: &str) -> Option<u64> {
    if text.is_empty() || text.len() > 10 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Parses every `--nodes` value (each may hold several comma-separated nodes).
pub fn parse_nodes(values: &[String]) -> Result<Vec<NodeSpec>> {
    let mut specs = Vec::new();
    let mut seen = HashSet::new();
    for part in values.iter().flat_map(|v| v.split(',')) {
        if part.trim().is_empty() {
            continue;
        }
        let spec = parse_node(part).map_err(Failure::Message)?;
        if !seen.insert(spec.id()) {
            return Err(Failure::msg(format!(
                "node {} is listed twice in --nodes",
                spec.spelled
            )));
        }
        specs.push(spec);
    }
    if specs.is_empty() {
        return Err(Failure::msg("--nodes lists no node"));
    }
    Ok(specs)
}

/// The placement of `distribution` over `nodes`: weighted when any node has a weight and the
/// mode has weights (for spymemcached's modes, a weight on any node is a weights map).
pub fn locator_for(distribution: Distribution, nodes: &[NodeSpec]) -> Locator {
    let ids: Vec<String> = nodes.iter().map(NodeSpec::id).collect();
    if nodes.iter().all(|n| n.weight.is_none()) {
        return Locator::new(distribution, &ids);
    }
    if !distribution.honours_weights() {
        stderr_line(&format!(
            "note: the {distribution} distribution has no weights; they are ignored"
        ));
        return Locator::new(distribution, &ids);
    }
    let weighted: Vec<(String, u32)> = nodes
        .iter()
        .zip(ids)
        .map(|(n, id)| (id, n.weight.unwrap_or(1)))
        .collect();
    Locator::weighted(distribution, &weighted)
}

pub fn run(args: Args) -> Result<Outcome> {
    let distribution = distribution_named(&args.distribution)?;
    let nodes = parse_nodes(&args.nodes)?;
    let locator = locator_for(distribution, &nodes);
    let mut out = Out::new();
    let place = |out: &mut Out, key: &[u8]| -> Result<()> {
        let index = locator
            .locate(key)
            .ok_or_else(|| Failure::msg("no node to place keys on"))?;
        out.bytes(key)?;
        out.bytes(b"\t")?;
        out.line(&nodes[index].spelled)
    };
    if args.keys.is_empty() {
        let mut input = BufReader::new(io::stdin().lock());
        let mut line = Vec::new();
        loop {
            // Answer what has been read before waiting for more (interactive use).
            if input.buffer().is_empty() {
                out.flush()?;
            }
            line.clear();
            let n = input
                .read_until(b'\n', &mut line)
                .map_err(|e| Failure::msg(format!("cannot read keys from stdin: {e}")))?;
            if n == 0 {
                break;
            }
            let key = line.strip_suffix(b"\n").unwrap_or(&line);
            let key = key.strip_suffix(b"\r").unwrap_or(key);
            if !key.is_empty() {
                place(&mut out, key)?;
            }
        }
    } else {
        for key in &args.keys {
            place(&mut out, key.as_bytes())?;
        }
    }
    out.flush()?;
    Ok(Outcome::Done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(spelled: &str, host: &str, port: u16, weight: Option<u32>) -> NodeSpec {
        NodeSpec {
            spelled: spelled.into(),
            host: host.into(),
            port,
            weight,
        }
    }

    #[test]
    fn nodes_parse_with_and_without_weights() {
        assert_eq!(
            parse_node("cache-1:11211").unwrap(),
            spec("cache-1:11211", "cache-1", 11211, None)
        );
        assert_eq!(
            parse_node("10.0.0.1:11212:3").unwrap(),
            spec("10.0.0.1:11212", "10.0.0.1", 11212, Some(3))
        );
        assert_eq!(
            parse_node(" [::1]:11211:2 ").unwrap(),
            spec("[::1]:11211", "::1", 11211, Some(2))
        );
        assert_eq!(
            parse_node("[2001:db8::7]:1").unwrap(),
            spec("[2001:db8::7]:1", "2001:db8::7", 1, None)
        );
        // Spelled as given, identified as the client identifies it.
        let odd = parse_node("h:011211").unwrap();
        assert_eq!(
            (odd.spelled.as_str(), odd.id()),
            ("h:011211", "h:11211".into())
        );
        assert_eq!(parse_node("[::1]:5").unwrap().id(), "::1:5");
    }

    #[test]
    fn bad_nodes_are_refused_with_a_reason() {
        for bad in [
            "host",
            ":11211",
            "h:",
            "h:0",
            "h:65536",
            "h:+1",
            "h:1:0",
            "h:1:-2",
            "h:1:x",
            "h:1:2:3",
            "::1:11211",
            "[::1]",
            "[::1:11211",
            "[]:1",
            "[::1]11211",
            "h:99999999999",
        ] {
            let err = parse_node(bad).expect_err(bad);
            assert!(err.starts_with("bad node "), "{err}");
        }
    }

    #[test]
    fn node_lists_reject_duplicates_and_emptiness() {
        let values = vec!["a:1,b:2".to_string(), "c:3:4".to_string()];
        let parsed = parse_nodes(&values).unwrap();
        assert_eq!(parsed.len(), 3);
        assert!(matches!(
            parse_nodes(&["a:1,a:01".to_string()]),
            Err(Failure::Message(m)) if m.contains("twice")
        ));
        assert!(parse_nodes(&[",".to_string()]).is_err());
    }

    #[test]
    fn unknown_distributions_list_the_known_ones() {
        assert_eq!(distribution_named("ring").unwrap(), Distribution::Ring);
        for &d in Distribution::ALL {
            assert_eq!(distribution_named(d.name()).unwrap(), d);
        }
        match distribution_named("modula") {
            Err(Failure::Message(m)) => assert_eq!(
                m,
                "unknown distribution modula (known: ring, ketama, ketama-spymemcached, \
                 ketama-fnv1a64, ketama-aws-java, consistent-libmemcached, \
                 consistent-libmemcached-md5, rendezvous, modula-libmemcached, modula-java); \
                 --distribution NAME (ClientBuilder::distribution in the library) takes one of \
                 these"
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn weights_reach_the_modes_that_have_them() {
        let plain = parse_nodes(&["a:11211,b:11211,c:11211".to_string()]).unwrap();
        let heavy = parse_nodes(&["a:11211:6,b:11211,c:11211".to_string()]).unwrap();
        let share_of_a = |locator: &Locator| {
            (0..3000)
                .filter(|i| locator.locate(format!("k{i}").as_bytes()) == Some(0))
                .count()
        };
        for &d in Distribution::ALL {
            let even = share_of_a(&locator_for(d, &plain));
            let weighted = share_of_a(&locator_for(d, &heavy));
            if d.honours_weights() {
                assert!(
                    weighted > 1800 && weighted > even,
                    "{d}: {even} -> {weighted}"
                );
            } else {
                assert_eq!(weighted, even, "{d}");
            }
        }
        // The weighted ketama ring is libmemcached's: the same as the library's.
        let expected = Locator::weighted(
            Distribution::Ketama,
            &[("a:11211", 6), ("b:11211", 1), ("c:11211", 1)],
        );
        let ours = locator_for(Distribution::Ketama, &heavy);
        for i in 0..500 {
            let k = format!("x{i}");
            assert_eq!(ours.locate(k.as_bytes()), expected.locate(k.as_bytes()));
        }
    }
}
