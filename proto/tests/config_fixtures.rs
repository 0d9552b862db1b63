//! One explicit expected outcome for every file of `tests/data/config/` (provenance in its
//! `SOURCES.md`).
//!
//! Full replies go through the reply decoder and then the config parser, as discovery does. Most
//! third-party samples announce a byte count that does not match their data block, so the framer
//! refuses them or waits for bytes that never come; their data block is then cut out by hand and
//! parsed on its own, so the content is checked all the same. Payload files are parsed directly,
//! node lists and node entries are wrapped as `1\n<content>\n` first.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::PathBuf;

use bytes::BytesMut;
use memcached_autodiscovery_proto::config::ClusterConfig;
use memcached_autodiscovery_proto::error::ClusterConfigErrorKind;
use memcached_autodiscovery_proto::error::ProtocolError;
use memcached_autodiscovery_proto::protocol::{decode, ErrorReply, Expect, Limits, Response};

/// A node as the table spells it: hostname, IP (if any), port.
type N = (&'static str, Option<&'static str>, u16);

/// What `ClusterConfig::parse` must make of a data block.
enum Content {
    /// A config: its version, node count, first and last node.
    Config {
        version: u64,
        nodes: usize,
        first: N,
        last: N,
    },
    /// A `ProtocolError::ClusterConfig` with this kind, node index and byte offset.
    Rejected {
        kind: ClusterConfigErrorKind,
        node: Option<usize>,
        offset: usize,
    },
}

/// What `decode` must make of a whole file.
enum Decoded {
    /// A complete reply carrying a data block (a `CONFIG` block, or the one item of the legacy
    /// `VALUE AmazonElastiCache:cluster` reply) that consumes the whole file.
    Block,
    /// `Ok(None)`: more bytes are needed; the buffer is untouched.
    Incomplete,
    /// `BadBlockEnd`: the bytes at the announced end of the block are not CRLF.
    BadBlockEnd { len: usize },
    /// `MalformedLine` on the header line, because it ends in a bare LF.
    BareLf,
}

/// The envelope's data block, cut out by hand: after the header line, up to the line end that
/// precedes the final `END` line (or to the end of the file, minus a final CRLF, when there is
/// no `END`).
struct Block {
    /// The byte count the header announces.
    declared: usize,
    /// The length of the data block actually present.
    actual: usize,
    /// What the data block parses to.
    content: Content,
}

enum Case {
    /// A reply with a `CONFIG` or `VALUE` envelope.
    Envelope {
        expect: Expect,
        decoded: Decoded,
        block: Block,
    },
    /// A reply without a data block that decodes completely to `response`.
    Reply { expect: Expect, response: Response },
    /// A reply whose last line has no line end: `Ok(None)` as it is, `after_crlf` once CRLF is
    /// appended.
    Unterminated {
        expect: Expect,
        after_crlf: Response,
    },
    /// An empty input: nothing to decode yet (and no config in it either).
    Empty,
    /// A data block on its own (the files of the row are concatenated first).
    Payload(Content),
    /// A node list or a single node entry, parsed as `1\n<content>\n`.
    Wrapped(Content),
}

struct Row {
    files: &'static [&'static str],
    case: Case,
    /// Why the expected outcome is the right one.
    why: &'static str,
}

const V1: Expect = Expect::Values { max: 1 };

fn config(version: u64, nodes: usize, first: N, last: N) -> Content {
    Content::Config {
        version,
        nodes,
        first,
        last,
    }
}

fn rejected(kind: ClusterConfigErrorKind, node: Option<usize>, offset: usize) -> Content {
    Content::Rejected { kind, node, offset }
}

fn envelope(expect: Expect, decoded: Decoded, declared: usize, actual: usize, c: Content) -> Case {
    Case::Envelope {
        expect,
        decoded,
        block: Block {
            declared,
            actual,
            content: c,
        },
    }
}

fn table() -> Vec<Row> {
    use ClusterConfigErrorKind::*;
    use Decoded::*;
    let aws1: N = (
        "myCluster.pc4ldq.0001.use1.cache.amazonaws.com",
        Some("10.82.235.120"),
        11211,
    );
    let aws2: N = (
        "myCluster.pc4ldq.0002.use1.cache.amazonaws.com",
        Some("10.80.249.27"),
        11211,
    );
    let dalli1: N = (
        "mycluster.0001.cache.amazonaws.com",
        Some("10.112.21.1"),
        11211,
    );
    let dalli3: N = (
        "mycluster.0003.cache.amazonaws.com",
        Some("10.112.21.3"),
        11211,
    );
    let test1: N = (
        "test.0001.use1.cache.amazonaws.com",
        Some("10.0.0.1"),
        11211,
    );
    let test2: N = (
        "test.0002.use1.cache.amazonaws.com",
        Some("10.0.0.2"),
        11211,
    );
    let dotnet1: N = (
        "cluster.0001.use1.cache.amazon.aws.com",
        Some("10.10.10.1"),
        11211,
    );
    let dotnet2: N = (
        "cluster.0002.use1.cache.amazon.aws.com",
        Some("10.10.10.2"),
        11211,
    );
    let dotnet3: N = (
        "cluster.0003.use1.cache.amazon.aws.com",
        Some("10.10.10.3"),
        11211,
    );
    vec![
        // ---- A. Full replies with a CONFIG / VALUE envelope ----
        Row {
            files: &["aws-docs-example-2nodes-v12-declared147.txt"],
            case: envelope(Expect::Config, Incomplete, 147, 136, config(12, 2, aws1, aws2)),
            why: "declared 147, actual 136: the AWS doc's own example is mis-counted, so the framer waits for bytes beyond the reply",
        },
        Row {
            files: &["dalli-elasticache-response-text-no-END-declared141.txt"],
            case: envelope(Expect::Config, BadBlockEnd { len: 141 }, 141, 162, config(12, 3, dalli1, dalli3)),
            why: "declared 141, actual 162: byte 141 of the block is inside a hostname, not CRLF",
        },
        Row {
            files: &["dalli-elasticache-socket-lines-crlf-version-declared142.txt"],
            case: envelope(Expect::Config, BadBlockEnd { len: 142 }, 142, 164, config(12, 3, dalli1, dalli3)),
            why: "declared 142, actual 164 (CRLF line ends inside the block are fine for the parser)",
        },
        Row {
            files: &["django-elasticache-placeholder-empty-ip-nonnumeric-port.txt"],
            case: envelope(Expect::Config, Incomplete, 138, 26, rejected(BadPort, Some(0), 2)),
            why: "declared 138, actual 26; the placeholder `ip` passes as a hostname-like IP field but the port `port` is no number",
        },
        Row {
            files: &["django-elastipymemcache-nonnumeric-version-fail.txt"],
            case: envelope(Expect::Config, Incomplete, 147, 33, rejected(BadVersion, None, 0)),
            why: "declared 147, actual 33; the version line is the word `fail`",
        },
        Row {
            files: &["django-elastipymemcache-v3-2nodes-test-hosts-declared147.txt"],
            case: envelope(Expect::Config, Incomplete, 147, 103, config(12, 2, test1, test2)),
            why: "declared 147 (copied from the AWS doc), actual 103",
        },
        Row {
            files: &["django-elastipymemcache-v3-multiline-membership-LF-separated.txt"],
            case: envelope(Expect::Config, Incomplete, 147, 103, config(12, 2, test1, test2)),
            why: "declared 147, actual 103; nodes may be separated by any whitespace run, LF included",
        },
        Row {
            files: &["elasticache-pyclient-3nodes-v1-apne1-len191.txt"],
            case: envelope(
                Expect::Config,
                Block,
                191,
                191,
                config(
                    1,
                    3,
                    ("test1.rtstcw.0001.apne1.cache.amazonaws.com", Some("172.31.12.60"), 11211),
                    ("test1.rtstcw.0003.apne1.cache.amazonaws.com", Some("172.31.10.26"), 11211),
                ),
            ),
            why: "consistent capture: declared 191 = actual 191, then CRLF END CRLF",
        },
        Row {
            files: &["elasticache-pyclient-legacy-get-VALUE-3nodes-v1-len190.txt"],
            case: envelope(
                V1,
                Block,
                190,
                190,
                config(
                    1,
                    3,
                    ("test2.rtstcw.0001.apne1.cache.amazonaws.com", Some("172.31.8.153"), 11211),
                    ("test2.rtstcw.0003.apne1.cache.amazonaws.com", Some("172.31.2.116"), 11211),
                ),
            ),
            why: "legacy key reply: an ordinary VALUE envelope, consistent (190), same block format",
        },
        Row {
            files: &["elasticachex-1node-v1-euw1-len74.txt"],
            case: envelope(
                Expect::Config,
                Block,
                74,
                74,
                config(
                    1,
                    1,
                    ("memcached-cluster.xlttkm.0001.euw1.cache.amazonaws.com", Some("10.0.9.238"), 11211),
                    ("memcached-cluster.xlttkm.0001.euw1.cache.amazonaws.com", Some("10.0.9.238"), 11211),
                ),
            ),
            why: "consistent capture: declared 74 = actual 74",
        },
        Row {
            files: &["gomemcache-broken-missing-space-between-nodes.txt"],
            case: envelope(Expect::Config, Incomplete, 80, 39, rejected(FieldCount { fields: 5 }, Some(0), 5)),
            why: "fixed header 80, actual 39; two nodes glued together make one token of 5 `|` fields",
        },
        Row {
            files: &["gomemcache-broken-no-pipes.txt"],
            case: envelope(Expect::Config, Incomplete, 80, 27, rejected(FieldCount { fields: 1 }, Some(0), 5)),
            why: "fixed header 80, actual 27; a token without `|` is one field",
        },
        Row {
            files: &["gomemcache-broken-nonnumeric-port.txt"],
            case: envelope(Expect::Config, Incomplete, 80, 29, rejected(BadPort, Some(0), 5)),
            why: "fixed header 80, actual 29; port `portBroken` is no number (`123.76` passes as a hostname-like IP field)",
        },
        Row {
            files: &["gomemcache-broken-nonnumeric-version.txt"],
            case: envelope(Expect::Config, Incomplete, 80, 26, rejected(BadVersion, None, 0)),
            why: "fixed header 80, actual 26; the version line is `badCfg`",
        },
        Row {
            files: &["gomemcache-memorystore-style-1node-port112233-no-END.txt"],
            case: envelope(Expect::Config, Incomplete, 80, 30, rejected(BadPort, Some(0), 3)),
            why: "fixed header 80, actual 30, no END; port 112233 does not fit in 16 bits",
        },
        Row {
            files: &["gomemcache-memorystore-style-2nodes-v1000-no-END.txt"],
            case: envelope(Expect::Config, Incomplete, 80, 60, rejected(BadPort, Some(0), 6)),
            why: "fixed header 80, actual 60, no END; the first node's port 112233 is out of range",
        },
        Row {
            files: &["gomemcache-memorystore-style-3nodes-v50-no-END.txt"],
            case: envelope(Expect::Config, Incomplete, 80, 74, rejected(BadPort, Some(0), 4)),
            why: "fixed header 80, actual 74, no END; the first node's port 112233 is out of range",
        },
        Row {
            files: &["herdcache-crlf-version-and-extra-LF-before-END.txt"],
            case: envelope(Expect::Config, Incomplete, 147, 138, config(12, 2, aws1, aws2)),
            why: "declared 147, actual 138 (CRLF variant of the AWS example); the stray LF before END is not part of the block",
        },
        Row {
            files: &["malformed-bad-token-two-fields.txt"],
            case: envelope(Expect::Config, BadBlockEnd { len: 1 }, 1, 10, rejected(BadVersion, None, 0)),
            why: "declared 1: after the byte `b` come `ad`, not CRLF; the text `bad|format` has no version line",
        },
        Row {
            files: &["malformed-blank-version-and-body.txt"],
            case: envelope(Expect::Config, Block, 1, 1, rejected(BadVersion, None, 0)),
            why: "framing is right (a 1-byte block `\\n`), but a block that is one LF has no version",
        },
        Row {
            files: &["malformed-header-only-bad-body-no-END.txt"],
            case: envelope(Expect::Config, Incomplete, 1, 1, rejected(BadVersion, None, 0)),
            why: "the 1-byte block `X` and its CRLF are there, the END line is not yet; `X` is no version",
        },
        Row {
            files: &["mapbox-ecad-fixture-badhosts-LF-only.txt"],
            case: envelope(Expect::Config, BareLf, 81, 10, rejected(FieldCount { fields: 1 }, Some(0), 2)),
            why: "LF-only lines are refused at the header; the node `garbage` has no `|` fields",
        },
        Row {
            files: &["mapbox-ecad-fixture-multiple-LF-only.txt"],
            case: envelope(
                Expect::Config,
                BareLf,
                637,
                607,
                config(
                    1,
                    10,
                    ("foo.a8ssop.0001.use1.cache.amazonaws.com", Some("10.31.225.14"), 11211),
                    ("foo.a8ssop.0010.use1.cache.amazonaws.com", Some("10.235.43.233"), 11211),
                ),
            ),
            why: "LF-only lines are refused at the header; declared 637, actual 607; the 10 nodes parse",
        },
        Row {
            files: &["mapbox-ecad-fixture-single-LF-only.txt"],
            case: envelope(
                Expect::Config,
                BareLf,
                81,
                81,
                config(
                    1,
                    1,
                    ("lit-ca-1sfttco9eo1j2.a9z8qi.0001.use1.cache.amazonaws.com", Some("10.143.190.103"), 11211),
                    ("lit-ca-1sfttco9eo1j2.a9z8qi.0001.use1.cache.amazonaws.com", Some("10.143.190.103"), 11211),
                ),
            ),
            why: "LF-only lines are refused at the header even though 81 counts the LF-only block exactly",
        },
        Row {
            files: &["pymemcache-raw-command-result-terminators-stripped-declared139.txt"],
            case: envelope(
                Expect::Config,
                Incomplete,
                139,
                121,
                config(
                    4,
                    2,
                    ("cluster.abcxyz.0001.use1.cache.amazonaws.com", Some("10.0.0.1"), 11211),
                    ("cluster.abcxyz.0002.use1.cache.amazonaws.com", Some("10.0.0.2"), 11211),
                ),
            ),
            why: "declared 139, actual 121 and the terminators were stripped; a block without a final LF still parses",
        },
        // ---- Replies without a data block ----
        Row {
            files: &["plain-memcached-unknown-command-ERROR.txt"],
            case: Case::Reply {
                expect: Expect::Config,
                response: Response::Error(ErrorReply::Error),
            },
            why: "plain memcached answers the unknown `config` command with ERROR: an answer, not a broken stream",
        },
        Row {
            files: &["gomemcache-empty-config-END-only.txt"],
            case: Case::Reply {
                expect: Expect::Config,
                response: Response::Config(None),
            },
            why: "END alone: the endpoint has no config stored",
        },
        Row {
            files: &["gomemcache-fake-server-empty-config-bare-END-no-CRLF.txt"],
            case: Case::Unterminated {
                expect: Expect::Config,
                after_crlf: Response::Config(None),
            },
            why: "a line is only complete with its CRLF: bare `END` needs more bytes",
        },
        Row {
            files: &["elasticache-pyclient-version-reply-1.4.14.txt"],
            case: Case::Reply {
                expect: Expect::Version,
                response: Response::Version("1.4.14".into()),
            },
            why: "a plain VERSION line",
        },
        Row {
            files: &["elasticache-pyclient-version-reply-1.4.5.txt"],
            case: Case::Reply {
                expect: Expect::Version,
                response: Response::Version("1.4.5".into()),
            },
            why: "a plain VERSION line (an engine older than 1.4.14: legacy discovery)",
        },
        Row {
            files: &["django-elasticache-version-reply-ubuntu-suffix.txt"],
            case: Case::Unterminated {
                expect: Expect::Version,
                after_crlf: Response::Version("1.4.14 (Ubuntu)".into()),
            },
            why: "the source literal has no CRLF; once terminated the whole text after `VERSION ` is kept",
        },
        Row {
            files: &["malformed-empty-reply.txt"],
            case: Case::Empty,
            why: "zero bytes are no reply yet (a closed socket is the I/O layer's error), and no config",
        },
        // ---- B. Data blocks on their own ----
        Row {
            files: &["payload-dotnet-seq1-v1-3nodes-crlf.txt"],
            case: Case::Payload(config(1, 3, dotnet1, dotnet3)),
            why: "CRLF after the version and after the node list are both accepted",
        },
        Row {
            files: &["payload-dotnet-seq2-v2-2nodes-crlf.txt"],
            case: Case::Payload(config(2, 2, dotnet2, dotnet3)),
            why: "second poll: node 0001 removed, version 2",
        },
        Row {
            files: &["payload-dotnet-seq3-v3-1node-crlf.txt"],
            case: Case::Payload(config(3, 1, dotnet1, dotnet1)),
            why: "third poll: only node 0001, version 3",
        },
        Row {
            files: &["payload-java-client-localhost-1node.txt"],
            case: Case::Payload(config(
                1,
                1,
                ("localhost", Some("127.0.0.1"), 11211),
                ("localhost", Some("127.0.0.1"), 11211),
            )),
            why: "a node list without its final LF still parses",
        },
        Row {
            files: &["payload-libmemcached-1host.txt"],
            case: Case::Payload(config(
                1,
                1,
                ("testcachehost.amazonaws.com", Some("1.2.3.4"), 11211),
                ("testcachehost.amazonaws.com", Some("1.2.3.4"), 11211),
            )),
            why: "one well-formed node, no final LF",
        },
        Row {
            files: &["payload-libmemcached-3hosts.txt"],
            case: Case::Payload(config(
                1,
                3,
                ("host1.amazon.com", Some("1.2.3.4"), 11211),
                ("host3.amazon.com", Some("3.2.3.4"), 11211),
            )),
            why: "three space-separated nodes",
        },
        Row {
            files: &["payload-libmemcached-empty-ip.txt"],
            case: Case::Payload(config(
                1,
                1,
                ("testcachehost.amazonaws.com", None, 11211),
                ("testcachehost.amazonaws.com", None, 11211),
            )),
            why: "an empty IP field is legal: the hostname is resolved instead",
        },
        Row {
            files: &["payload-libmemcached-bad-garbage.txt"],
            case: Case::Payload(rejected(BadVersion, None, 0)),
            why: "`xyz` does not start with a decimal version",
        },
        Row {
            files: &["payload-libmemcached-bad-missing-pipe.txt"],
            case: Case::Payload(rejected(FieldCount { fields: 2 }, Some(0), 2)),
            why: "`host|11211` has two fields, not three",
        },
        Row {
            files: &["payload-libmemcached-bad-missing-second-pipe.txt"],
            case: Case::Payload(rejected(FieldCount { fields: 2 }, Some(0), 2)),
            why: "`host|1.2.3.411211` has two fields, not three",
        },
        Row {
            files: &["payload-libmemcached-bad-no-newline-after-version.txt"],
            case: Case::Payload(rejected(MissingVersionEnd, None, 1)),
            why: "the version `1` runs straight into the hostname: no line end after it",
        },
        Row {
            files: &["payload-memcachejs-2nodes-v12.txt"],
            case: Case::Payload(config(12, 2, aws1, aws2)),
            why: "the AWS doc's data block, counted right (136 bytes)",
        },
        Row {
            files: &["payload-memcachejs-missing-ip-v5.txt"],
            case: Case::Payload(config(
                5,
                1,
                ("myCluster.pc4ldq.0001.use1.cache.amazonaws.com", None, 11211),
                ("myCluster.pc4ldq.0001.use1.cache.amazonaws.com", None, 11211),
            )),
            why: "empty IP field: the doc says the pipes stay when the IP is not available",
        },
        Row {
            files: &["payload-memcachejs-nonnumeric-version.txt"],
            case: Case::Payload(rejected(BadVersion, None, 0)),
            why: "the version line is `abc`",
        },
        Row {
            files: &["payload-memcachejs-version-only.txt"],
            case: Case::Payload(rejected(NoNodes, None, 3)),
            why: "a version and nothing after it: no node",
        },
        Row {
            files: &["payload-memcachejs-split-chunk1.txt", "payload-memcachejs-split-chunk2.txt"],
            case: Case::Payload(config(
                3,
                2,
                ("host1", Some("10.0.0.1"), 11211),
                ("host2", Some("10.0.0.2"), 11211),
            )),
            why: "two reads of one block: `3\\n` then the node list; only together are they a config",
        },
        // ---- C. Node lists and node entries (wrapped as `1\n...\n`) ----
        Row {
            files: &["nodelist-herdcache-2hosts.txt"],
            case: Case::Wrapped(config(
                1,
                2,
                ("localhost", Some("127.0.0.1"), 1234),
                ("localhost", Some("127.0.0.1"), 3456),
            )),
            why: "same host on two non-default ports: two nodes",
        },
        Row {
            files: &["nodelist-herdcache-2hosts-no-ips.txt"],
            case: Case::Wrapped(config(1, 2, ("localhost", None, 1234), ("localhost", None, 3456))),
            why: "empty IP fields on both nodes",
        },
        Row {
            files: &["nodelist-memcache-plus-comment-real-looking-2nodes.txt"],
            case: Case::Wrapped(config(
                1,
                2,
                ("victor.di6cba.0001.use1.cache.amazonaws.com", Some("10.10.8.18"), 11211),
                ("victor.di6cba.0002.use1.cache.amazonaws.com", Some("10.10.8.133"), 11211),
            )),
            why: "a node line as a real cluster prints it",
        },
        Row {
            files: &["node-entry-ipv6-documentation-prefix.txt"],
            case: Case::Wrapped(config(
                1,
                1,
                ("myCluster.pc4ldq.0001.use1.cache.amazonaws.com", Some("2001:db8::1"), 11211),
                ("myCluster.pc4ldq.0001.use1.cache.amazonaws.com", Some("2001:db8::1"), 11211),
            )),
            why: "an unbracketed IPv6 address in the IP field: fields are split on `|`, never on `:`",
        },
        Row {
            files: &["node-entry-missing-ip.txt"],
            case: Case::Wrapped(config(
                1,
                1,
                ("myCluster.pc4ldq.0001.use1.cache.amazonaws.com", None, 11211),
                ("myCluster.pc4ldq.0001.use1.cache.amazonaws.com", None, 11211),
            )),
            why: "empty IP field",
        },
        Row {
            files: &["node-entry-bad-empty-hostname.txt"],
            case: Case::Wrapped(rejected(BadHostname, Some(0), 2)),
            why: "the hostname is always present; an empty one is refused",
        },
        Row {
            files: &["node-entry-bad-four-fields.txt"],
            case: Case::Wrapped(rejected(FieldCount { fields: 4 }, Some(0), 2)),
            why: "four `|` fields instead of three",
        },
        Row {
            files: &["node-entry-bad-two-fields.txt"],
            case: Case::Wrapped(rejected(FieldCount { fields: 2 }, Some(0), 2)),
            why: "two `|` fields instead of three",
        },
        Row {
            files: &["node-entry-bad-port-99999.txt"],
            case: Case::Wrapped(rejected(BadPort, Some(0), 2)),
            why: "99999 is above 65535",
        },
        Row {
            files: &["node-entry-bad-port-abc.txt"],
            case: Case::Wrapped(rejected(BadPort, Some(0), 2)),
            why: "`abc` is no number",
        },
        Row {
            files: &["node-entry-bad-port-zero.txt"],
            case: Case::Wrapped(rejected(BadPort, Some(0), 2)),
            why: "port 0 cannot be connected to",
        },
    ]
}

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/config")
}

fn read(files: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    for f in files {
        let path = data_dir().join(f);
        out.extend(std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())));
    }
    out
}

fn ip(text: Option<&str>) -> Option<IpAddr> {
    text.map(|t| t.parse().expect("the table holds a valid IP"))
}

fn check_content(block: &[u8], expected: &Content, ctx: &str) {
    let parsed = ClusterConfig::parse(block);
    match expected {
        Content::Config {
            version,
            nodes,
            first,
            last,
        } => {
            let c = parsed.unwrap_or_else(|e| panic!("{ctx}: expected a config, got {e:?}"));
            assert_eq!(c.version(), *version, "{ctx}: version");
            assert_eq!(c.nodes().len(), *nodes, "{ctx}: node count");
            for (node, want) in [(&c.nodes()[0], first), (c.nodes().last().unwrap(), last)] {
                assert_eq!(node.hostname(), want.0, "{ctx}: hostname");
                assert_eq!(node.ip(), ip(want.1), "{ctx}: ip");
                assert_eq!(node.port(), want.2, "{ctx}: port");
            }
        }
        Content::Rejected { kind, node, offset } => {
            let want = ProtocolError::ClusterConfig {
                offset: *offset,
                node: *node,
                kind: kind.clone(),
            };
            assert_eq!(parsed, Err(want), "{ctx}");
        }
    }
}

/// The header's announced byte count and the data block cut out by hand (see [`Block`]).
fn split_envelope(file: &[u8]) -> (usize, &[u8]) {
    let nl = file
        .iter()
        .position(|&b| b == b'\n')
        .expect("a header line");
    let header = std::str::from_utf8(&file[..nl])
        .unwrap()
        .trim_end_matches('\r');
    let declared = header
        .rsplit(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .expect("the header ends with the byte count");
    let body = &file[nl + 1..];
    // Length of `b` without one final line end (CRLF or LF).
    let cut = |b: &[u8]| -> usize {
        if b.ends_with(b"\r\n") {
            b.len() - 2
        } else if b.ends_with(b"\n") {
            b.len() - 1
        } else {
            b.len()
        }
    };
    let end_line = body.windows(4).rposition(|w| w == b"\nEND");
    let block = match end_line {
        Some(at) => &body[..cut(&body[..at + 1])],
        None => &body[..body.strip_suffix(b"\r\n").map_or(body.len(), <[u8]>::len)],
    };
    (declared, block)
}

fn check_row(row: &Row) {
    let ctx = format!("{:?} ({})", row.files, row.why);
    let bytes = read(row.files);
    let limits = Limits::default();
    match &row.case {
        Case::Envelope {
            expect,
            decoded,
            block,
        } => {
            assert!(
                bytes.starts_with(b"CONFIG ") || bytes.starts_with(b"VALUE "),
                "{ctx}: not an envelope"
            );
            let (declared, data) = split_envelope(&bytes);
            assert_eq!(declared, block.declared, "{ctx}: declared byte count");
            assert_eq!(data.len(), block.actual, "{ctx}: actual block length");
            check_content(data, &block.content, &format!("{ctx}, data block"));

            let mut buf = BytesMut::from(&bytes[..]);
            let got = decode(&mut buf, *expect, &limits);
            match decoded {
                Decoded::Block => {
                    let (response, used) = got
                        .unwrap_or_else(|e| panic!("{ctx}: {e:?}"))
                        .unwrap_or_else(|| panic!("{ctx}: incomplete"));
                    assert_eq!(used, bytes.len(), "{ctx}: consumed");
                    assert!(buf.is_empty(), "{ctx}: bytes left");
                    let framed = match response {
                        Response::Config(Some(b)) => b,
                        Response::Values(items) => {
                            assert_eq!(items.len(), 1, "{ctx}: one item");
                            let item = &items[0];
                            assert_eq!(&item.key[..], b"AmazonElastiCache:cluster", "{ctx}");
                            assert_eq!((item.flags, item.cas), (0, None), "{ctx}");
                            item.value.clone()
                        }
                        other => panic!("{ctx}: got {other:?}"),
                    };
                    assert_eq!(&framed[..], data, "{ctx}: framed block");
                }
                Decoded::Incomplete => {
                    assert_eq!(got, Ok(None), "{ctx}");
                    assert_eq!(&buf[..], &bytes[..], "{ctx}: buffer changed");
                }
                Decoded::BadBlockEnd { len } => {
                    assert_eq!(got, Err(ProtocolError::BadBlockEnd { len: *len }), "{ctx}");
                    assert_eq!(&buf[..], &bytes[..], "{ctx}: buffer changed");
                }
                Decoded::BareLf => {
                    let header = &bytes[..bytes.iter().position(|&b| b == b'\n').unwrap()];
                    match got {
                        Err(ProtocolError::MalformedLine { line, .. }) => {
                            assert_eq!(line.as_bytes(), header, "{ctx}: the refused line")
                        }
                        other => panic!("{ctx}: expected a bare-LF refusal, got {other:?}"),
                    }
                    assert_eq!(&buf[..], &bytes[..], "{ctx}: buffer changed");
                }
            }
        }
        Case::Reply { expect, response } => {
            let mut buf = BytesMut::from(&bytes[..]);
            assert_eq!(
                decode(&mut buf, *expect, &limits),
                Ok(Some((response.clone(), bytes.len()))),
                "{ctx}"
            );
            assert!(buf.is_empty(), "{ctx}");
        }
        Case::Unterminated { expect, after_crlf } => {
            assert!(!bytes.ends_with(b"\n"), "{ctx}: the file is terminated");
            let mut buf = BytesMut::from(&bytes[..]);
            assert_eq!(decode(&mut buf, *expect, &limits), Ok(None), "{ctx}");
            assert_eq!(&buf[..], &bytes[..], "{ctx}: buffer changed");
            buf.extend_from_slice(b"\r\n");
            assert_eq!(
                decode(&mut buf, *expect, &limits),
                Ok(Some((after_crlf.clone(), bytes.len() + 2))),
                "{ctx}: with CRLF"
            );
        }
        Case::Empty => {
            assert!(bytes.is_empty(), "{ctx}");
            for expect in [Expect::Config, V1, Expect::Version] {
                let mut buf = BytesMut::new();
                assert_eq!(decode(&mut buf, expect, &limits), Ok(None), "{ctx}");
            }
            check_content(
                &bytes,
                &rejected(ClusterConfigErrorKind::BadVersion, None, 0),
                &ctx,
            );
        }
        Case::Payload(content) => check_content(&bytes, content, &ctx),
        Case::Wrapped(content) => {
            let mut block = b"1\n".to_vec();
            block.extend_from_slice(&bytes);
            block.push(b'\n');
            check_content(&block, content, &ctx);
        }
    }
}

#[test]
fn every_fixture_has_its_expected_outcome() {
    for row in table() {
        check_row(&row);
    }
}

#[test]
fn the_table_names_every_fixture_exactly_once() {
    let on_disk: BTreeSet<String> = std::fs::read_dir(data_dir())
        .expect("tests/data/config exists")
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".txt"))
        .collect();
    let mut in_table = BTreeSet::new();
    for row in table() {
        for f in row.files {
            assert!(
                in_table.insert(f.to_string()),
                "{f} appears twice in the table"
            );
        }
    }
    let missing: Vec<_> = on_disk.difference(&in_table).collect();
    let unknown: Vec<_> = in_table.difference(&on_disk).collect();
    assert!(
        missing.is_empty(),
        "fixtures without an expected outcome: {missing:?}"
    );
    assert!(
        unknown.is_empty(),
        "table rows for absent files: {unknown:?}"
    );
    assert!(
        data_dir().join("SOURCES.md").is_file(),
        "SOURCES.md is kept next to the fixtures"
    );
}

#[test]
fn split_chunks_are_no_config_on_their_own() {
    // The concatenation is checked in the table; each read alone must not pass for a config.
    let first = read(&["payload-memcachejs-split-chunk1.txt"]);
    let second = read(&["payload-memcachejs-split-chunk2.txt"]);
    check_content(
        &first,
        &rejected(ClusterConfigErrorKind::NoNodes, None, 2),
        "chunk 1 alone",
    );
    check_content(
        &second,
        &rejected(ClusterConfigErrorKind::BadVersion, None, 0),
        "chunk 2 alone",
    );
}

#[test]
fn a_recounted_envelope_of_every_parsable_sample_decodes_to_the_same_config() {
    // Re-frame each sample's data block with its true length: then the framer accepts it and
    // the result is what the hand-cut block parsed to. This shows the samples fail only on their
    // byte count (or line ends), not on anything the framer would otherwise dislike.
    for row in table() {
        let Case::Envelope { expect, block, .. } = &row.case else {
            continue;
        };
        let bytes = read(row.files);
        let (_, data) = split_envelope(&bytes);
        let header = match expect {
            Expect::Config => "CONFIG cluster 0",
            _ => "VALUE AmazonElastiCache:cluster 0",
        };
        let mut wire = format!("{header} {}\r\n", data.len()).into_bytes();
        wire.extend_from_slice(data);
        wire.extend_from_slice(b"\r\nEND\r\n");
        let mut buf = BytesMut::from(&wire[..]);
        let (response, used) = decode(&mut buf, *expect, &Limits::default())
            .unwrap()
            .unwrap_or_else(|| panic!("{:?}: incomplete", row.files));
        assert_eq!(used, wire.len());
        let framed = match response {
            Response::Config(Some(b)) => b,
            Response::Values(mut items) => items.remove(0).value,
            other => panic!("{:?}: {other:?}", row.files),
        };
        check_content(
            &framed,
            &block.content,
            &format!("{:?} recounted", row.files),
        );
    }
}
