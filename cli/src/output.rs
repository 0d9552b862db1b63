//! Everything written to stdout: the writer (a closed pipe stops the command quietly), the
//! human listing of a cluster configuration, and its JSON form.

use std::io::{self, BufWriter, Write};

use memcached_autodiscovery::{ClusterConfig, Node};

use crate::{Failure, Result};

/// Buffered stdout. Call [`Out::flush`] before waiting on anything slow.
pub struct Out {
    inner: BufWriter<io::StdoutLock<'static>>,
}

impl Out {
    pub fn new() -> Out {
        Out {
            inner: BufWriter::new(io::stdout().lock()),
        }
    }

    /// Writes bytes as they are.
    pub fn bytes(&mut self, bytes: &[u8]) -> Result<()> {
        self.inner.write_all(bytes).map_err(write_failure)
    }

    /// Writes one line (a line end is added).
    pub fn line(&mut self, text: &str) -> Result<()> {
        self.bytes(text.as_bytes())?;
        self.bytes(b"\n")
    }

    pub fn flush(&mut self) -> Result<()> {
        self.inner.flush().map_err(write_failure)
    }
}

fn write_failure(e: io::Error) -> Failure {
    if e.kind() == io::ErrorKind::BrokenPipe {
        Failure::OutputClosed
    } else {
        Failure::msg(format!("cannot write to stdout: {e}"))
    }
}

/// Writes one line to stderr. A stderr that cannot be written to is ignored: there is nowhere
/// left to report it.
pub fn stderr_line(text: &str) {
    let mut err = io::stderr().lock();
    let _ = writeln!(err, "{text}");
}

/// The human listing: `version N, M nodes`, then `hostname ip port` per node (`-` for no IP).
pub fn human(config: &ClusterConfig) -> Vec<String> {
    let count = config.nodes().len();
    let mut lines = vec![format!(
        "version {}, {count} node{}",
        config.version(),
        if count == 1 { "" } else { "s" }
    )];
    lines.extend(config.nodes().iter().map(|n| {
        let ip = n.ip().map_or_else(|| "-".to_string(), |ip| ip.to_string());
        format!("{} {ip} {}", n.hostname(), n.port())
    }));
    lines
}

/// `{"version":N,"nodes":[{"hostname":"..","ip":".."|null,"port":N},...]}` on one line.
pub fn json(config: &ClusterConfig) -> String {
    let nodes: Vec<String> = config
        .nodes()
        .iter()
        .map(|n| {
            let ip = n
                .ip()
                .map_or_else(|| "null".to_string(), |ip| json_string(&ip.to_string()));
            format!(
                "{{\"hostname\":{},\"ip\":{ip},\"port\":{}}}",
                json_string(n.hostname()),
                n.port()
            )
        })
        .collect();
    format!(
        "{{\"version\":{},\"nodes\":[{}]}}",
        config.version(),
        nodes.join(",")
    )
}

/// A JSON string literal: quotes, backslashes and control characters escaped.
pub fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Text a server sent, made safe for one field of a tab-separated line on a terminal: backslashes,
/// tabs, line ends, other control characters (escape sequences start with one), characters that
/// are not printable (bidirectional overrides, zero-width and unassigned code points, unusual
/// spaces) and combining marks are written as `char::escape_debug` writes them (`\\`, `\t`,
/// `\r`, `\n`, `\u{1b}`, `\u{202e}`); quotes and every other character as they are.
pub fn escaped(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' | '\'' => out.push(c),
            c => out.extend(c.escape_debug()),
        }
    }
    out
}

/// A node as the configuration spells it: `hostname|ip|port`.
pub fn wire(node: &Node) -> String {
    node.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ClusterConfig {
        ClusterConfig::new(
            12,
            vec![
                Node::new("a.example", Some("10.0.0.1".parse().unwrap()), 11211),
                Node::new("b.example", None, 11212),
                Node::new("c", Some("2001:db8::1".parse().unwrap()), 1),
            ],
        )
    }

    #[test]
    fn json_has_the_documented_shape() {
        assert_eq!(
            json(&config()),
            "{\"version\":12,\"nodes\":[\
             {\"hostname\":\"a.example\",\"ip\":\"10.0.0.1\",\"port\":11211},\
             {\"hostname\":\"b.example\",\"ip\":null,\"port\":11212},\
             {\"hostname\":\"c\",\"ip\":\"2001:db8::1\",\"port\":1}]}"
        );
        let empty = ClusterConfig::new(0, vec![]);
        assert_eq!(json(&empty), "{\"version\":0,\"nodes\":[]}");
    }

    #[test]
    fn json_strings_escape_what_json_requires() {
        assert_eq!(json_string("plain"), "\"plain\"");
        assert_eq!(json_string("q\"b\\s/"), "\"q\\\"b\\\\s/\"");
        assert_eq!(json_string("\n\r\t\u{8}\u{c}"), "\"\\n\\r\\t\\b\\f\"");
        assert_eq!(json_string("\u{0}\u{1f}\u{7f}"), "\"\\u0000\\u001f\u{7f}\"");
        assert_eq!(json_string("né→😀"), "\"né→😀\"");
    }

    #[test]
    fn escaped_text_holds_no_control_character_and_no_tab() {
        assert_eq!(escaped("pid"), "pid");
        assert_eq!(
            escaped("1.6.21 \"quoted\" 'x' é→😀"),
            "1.6.21 \"quoted\" 'x' é→😀"
        );
        assert_eq!(escaped("a\tb"), "a\\tb");
        assert_eq!(escaped("\u{1b}[2J\r\n\0\u{7}"), "\\u{1b}[2J\\r\\n\\0\\u{7}");
        assert_eq!(escaped("C:\\tmp"), "C:\\\\tmp");
        assert_eq!(
            escaped("\u{7f}\u{9b}\u{202e}\u{200b}"),
            "\\u{7f}\\u{9b}\\u{202e}\\u{200b}"
        );
        let hostile: String = (0u32..0x250).filter_map(char::from_u32).collect();
        assert!(!escaped(&hostile).chars().any(char::is_control));
    }

    #[test]
    fn the_human_listing_has_a_header_and_one_line_per_node() {
        assert_eq!(
            human(&config()),
            [
                "version 12, 3 nodes",
                "a.example 10.0.0.1 11211",
                "b.example - 11212",
                "c 2001:db8::1 1",
            ]
        );
        let one = ClusterConfig::new(1, vec![Node::new("x", None, 5)]);
        assert_eq!(human(&one)[0], "version 1, 1 node");
    }
}
