//! `mcad` against a cluster with in-transit encryption (`--tls`, `--ca`, `--tls-name`,
//! `--cert`/`--key` on every command that connects), and `mcad cluster up` changed by commands
//! on stdin. Real memcached processes; a CA and certificates made at run time.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use memcached_autodiscovery::Client;
use memcached_autodiscovery_testkit::{LocalCluster, TestCa};

const MCAD: &str = env!("CARGO_BIN_EXE_mcad");
const PATIENCE: Duration = Duration::from_secs(20);

fn mcad(args: &[&str]) -> Output {
    Command::new(MCAD)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("mcad runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn assert_ok(output: &Output) -> String {
    assert_eq!(
        output.status.code(),
        Some(0),
        "stderr: {}",
        text(&output.stderr)
    );
    text(&output.stdout)
}

/// Status 1, one `error:` line, no panic; the line.
fn assert_error(output: &Output) -> String {
    let err = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "stderr: {err}");
    assert!(
        err.starts_with("error: ") && err.lines().count() == 1,
        "{err:?}"
    );
    assert!(!err.contains("panicked"), "{err}");
    err
}

/// A directory of its own under the system's temporary directory, removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let path = std::env::temp_dir().join(format!("mcad-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&path).unwrap();
        Dir(path)
    }

    fn file(&self, name: &str, contents: &str) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, contents).unwrap();
        path.to_string_lossy().into_owned()
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const SERVER_NAMES: &[&str] = &[
    "node-1.local-cluster.test",
    "node-2.local-cluster.test",
    "127.0.0.1",
];

fn args<'a>(head: &[&'a str], tail: &[&'a str]) -> Vec<&'a str> {
    head.iter().chain(tail).copied().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_connecting_command_speaks_tls_with_the_ca_and_name_given() {
    let ca = TestCa::new("mcad test CA");
    let (chain, key) = ca.issue(SERVER_NAMES);
    let cluster = LocalCluster::builder()
        .nodes(2)
        .tls(chain, key)
        .start()
        .await
        .expect("a TLS cluster starts");
    let dir = Dir::new("tls");
    let ca_file = dir.file("ca.pem", &ca.pem);
    let endpoint = cluster.config_endpoint().to_string();
    let tls = ["--ca", ca_file.as_str(), "--timeout-ms", "3000"];

    // discover, as JSON; --tls alone trusts the public CAs only, which do not know this one.
    let json = assert_ok(&mcad(&args(&["discover", &endpoint, "--json"], &tls)));
    assert!(json.contains("node-1.local-cluster.test"), "{json}");
    let err = assert_error(&mcad(&["discover", &endpoint, "--tls"]));
    assert!(err.contains("with_ca_pem"), "{err}");
    assert!(err.contains("(with mcad: --ca FILE)"), "{err}");
    // Plaintext against TLS: a message, in bounded time.
    assert_error(&mcad(&["discover", &endpoint, "--timeout-ms", "1000"]));

    // set, get, delete and stats through the endpoint.
    let target = ["--endpoint", endpoint.as_str()];
    assert_ok(&mcad(&args(
        &["set", "secret", "over tls"],
        &[&target[..], &tls].concat(),
    )));
    let got = assert_ok(&mcad(&args(
        &["get", "secret"],
        &[&target[..], &tls].concat(),
    )));
    assert_eq!(got, "over tls");
    let stats = assert_ok(&mcad(&args(&["stats"], &[&target[..], &tls].concat())));
    assert!(stats.contains("\tcmd_set\t"), "{stats}");
    assert_ok(&mcad(&args(
        &["delete", "secret"],
        &[&target[..], &tls].concat(),
    )));
    let gone = mcad(&args(&["get", "secret"], &[&target[..], &tls].concat()));
    assert_eq!(gone.status.code(), Some(3));

    // --nodes with TLS too: a node known by its IP is checked against that IP, which the
    // certificate does not carry; --tls-name names what it does carry.
    let node = cluster.node_addrs()[0].to_string();
    let err = assert_error(&mcad(&args(
        &["set", "direct", "x", "--nodes", &node],
        &tls,
    )));
    assert!(err.contains("TlsConfig::server_name"), "{err}");
    assert!(err.contains("(with mcad: --tls-name NAME)"), "{err}");
    let name = "node-1.local-cluster.test";
    assert_ok(&mcad(&args(
        &["set", "direct", "x", "--nodes", &node, "--tls-name", name],
        &tls,
    )));

    // --tls-name: every server checked against that name; a name the certificate lacks fails.
    let err = assert_error(&mcad(&args(
        &[
            "get",
            "secret",
            "--endpoint",
            &endpoint,
            "--tls-name",
            "other.example",
        ],
        &tls,
    )));
    assert!(
        err.contains("server_name") || err.contains("other.example"),
        "{err}"
    );
    let wild_ca = TestCa::new("wildcard CA");
    let (wild_chain, wild_key) = wild_ca.issue(&["*.local-cluster.test"]);
    let wild = LocalCluster::builder()
        .nodes(1)
        .tls(wild_chain, wild_key)
        .start()
        .await
        .unwrap();
    let wild_ca_file = dir.file("wild-ca.pem", &wild_ca.pem);
    let wild_endpoint = wild.config_endpoint().to_string();
    assert_ok(&mcad(&[
        "set",
        "w",
        "1",
        "--endpoint",
        &wild_endpoint,
        "--ca",
        &wild_ca_file,
        "--tls-name",
        "*.local-cluster.test",
    ]));

    // watch prints the first configuration over TLS.
    let mut watch = Command::new(MCAD)
        .args(args(&["watch", &endpoint], &tls))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(watch.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.starts_with("version 1, 2 nodes"), "{first:?}");
    watch.kill().unwrap();
    watch.wait().unwrap();

    // A file that is not there, or not PEM: one error line naming the option.
    let err = assert_error(&mcad(&[
        "discover",
        &endpoint,
        "--ca",
        "/nonexistent/ca.pem",
    ]));
    assert!(err.contains("--ca"), "{err}");
    let junk = dir.file("junk.pem", "not a certificate");
    assert_error(&mcad(&["discover", &endpoint, "--ca", &junk]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_is_presented_with_cert_and_key() {
    let ca = TestCa::new("server CA");
    let client_ca = TestCa::new("client CA");
    let (chain, key) = ca.issue(SERVER_NAMES);
    let (probe_chain, probe_key) = client_ca.issue(&["probe"]);
    let cluster = LocalCluster::builder()
        .nodes(1)
        .tls(chain, key)
        .tls_client_auth(client_ca.pem.clone(), probe_chain, probe_key)
        .start()
        .await
        .expect("a cluster that requires client certificates");
    let dir = Dir::new("mtls");
    let ca_file = dir.file("ca.pem", &ca.pem);
    let (app_chain, app_key) = client_ca.issue(&["app"]);
    let cert = dir.file("app.pem", &app_chain);
    let key = dir.file("app.key", &app_key);
    let endpoint = cluster.config_endpoint().to_string();

    let listing = assert_ok(&mcad(&[
        "discover", &endpoint, "--ca", &ca_file, "--cert", &cert, "--key", &key,
    ]));
    assert!(listing.starts_with("version 1, 1 node\n"), "{listing}");
    assert_ok(&mcad(&[
        "set",
        "m",
        "tls",
        "--endpoint",
        &endpoint,
        "--ca",
        &ca_file,
        "--cert",
        &cert,
        "--key",
        &key,
    ]));
    let err = assert_error(&mcad(&["discover", &endpoint, "--ca", &ca_file]));
    assert!(err.contains("TlsConfig::client_cert_pem"), "{err}");
    assert!(err.contains("(with mcad: --cert FILE --key FILE)"), "{err}");
    // --cert without --key does not parse.
    let half = mcad(&["discover", &endpoint, "--ca", &ca_file, "--cert", &cert]);
    assert_eq!(half.status.code(), Some(2), "{}", text(&half.stderr));
    assert!(Path::new(&cert).exists());
}

/// `mcad cluster up` with a pipe on stdin.
struct Up {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
}

impl Up {
    fn start(nodes: &str) -> Up {
        let mut child = Command::new(MCAD)
            .args(["cluster", "up", "--nodes", nodes])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(|l| l.ok()) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Up {
            child,
            stdin,
            lines,
        }
    }

    fn line(&self) -> String {
        self.lines.recv_timeout(PATIENCE).expect("a line in time")
    }

    fn send(&mut self, command: &str) -> String {
        writeln!(self.stdin, "{command}").unwrap();
        self.stdin.flush().unwrap();
        self.line()
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

async fn discovered(endpoint: &str) -> memcached_autodiscovery::ClusterConfig {
    Client::builder()
        .config_endpoint(endpoint)
        .discover()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_up_adds_removes_restarts_and_kills_nodes_on_command() {
    let mut up = Up::start("2");
    let endpoint = up
        .line()
        .strip_prefix("config endpoint: ")
        .unwrap()
        .to_string();
    for _ in 0..3 {
        up.line(); // the listing: version line and one line per node
    }
    let shown = up.send("show");
    assert!(shown.starts_with("ok version=1 nodes=2 polls="), "{shown}");

    let added = up.send("add");
    assert!(
        added.starts_with("ok added node-3.local-cluster.test:"),
        "{added}"
    );
    assert!(added.ends_with("; version 2, 3 nodes"), "{added}");
    let config = discovered(&endpoint).await;
    assert_eq!((config.version(), config.nodes().len()), (2, 3));

    // A node by HOST:PORT, and by its position.
    let first = config.nodes()[0].id();
    let client = Client::builder()
        .nodes([SocketAddrOf(&config.nodes()[1]).to_string()])
        .build()
        .await
        .unwrap();
    client.set("k", "v", Duration::ZERO).await.unwrap();
    let restarted = up.send("restart 2");
    assert!(
        restarted.starts_with(&format!(
            "ok restarted {}: a new, empty process",
            config.nodes()[1].id()
        )),
        "{restarted}"
    );
    assert!(restarted.ends_with("version 2, 3 nodes"), "{restarted}");
    let mut empty = None;
    for _ in 0..3 {
        match client.get("k").await {
            Ok(v) => {
                empty = Some(v);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    assert_eq!(empty, Some(None), "the restarted node is empty");

    let removed = up.send(&format!("remove {first}"));
    assert_eq!(removed, format!("ok removed {first}; version 3, 2 nodes"));
    let config = discovered(&endpoint).await;
    assert_eq!((config.version(), config.nodes().len()), (3, 2));
    assert!(config.nodes().iter().all(|n| n.id() != first));

    let killed = up.send("kill 1");
    assert!(killed.starts_with("ok killed "), "{killed}");
    assert!(
        killed.ends_with("the node stays listed; version 3, 2 nodes"),
        "{killed}"
    );

    // Mistakes are answered, and the cluster goes on.
    assert!(up
        .send("remove 9")
        .starts_with("error no node at position 9"));
    assert!(up.send("remove nowhere:1").starts_with("error no node"));
    assert!(up.send("remove").starts_with("error give a node"));
    assert!(up.send("explode").starts_with("error unknown command"));
    assert!(
        up.send("flush").starts_with("error flush"),
        "a killed node cannot flush"
    );
    assert!(up.send("restart 1").starts_with("ok restarted"));
    assert!(up
        .send("flush")
        .starts_with("ok flushed 2 nodes; version 3, 2 nodes"));

    // The end of stdin ends the commands, not the cluster.
    let Up {
        child,
        stdin,
        lines,
    } = &mut up;
    drop(std::mem::replace(stdin, {
        // A closed stdin: replace ours by one of a finished process.
        let mut dummy = Command::new("true").stdin(Stdio::piped()).spawn().unwrap();
        let s = dummy.stdin.take().unwrap();
        dummy.wait().unwrap();
        s
    }));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        matches!(child.try_wait(), Ok(None)),
        "cluster up still runs"
    );
    assert_eq!(discovered(&endpoint).await.version(), 3);
    let _ = lines;
}

struct SocketAddrOf<'a>(&'a memcached_autodiscovery::Node);

impl std::fmt::Display for SocketAddrOf<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}",
            std::net::SocketAddr::new(self.0.ip().unwrap(), self.0.port())
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_set_delete_and_stats_reach_a_serverless_cache() {
    let ca = TestCa::new("mcad serverless CA");
    let (chain, key) = ca.issue(&["localhost", "127.0.0.1"]);
    let server = memcached_autodiscovery_testkit::ServerlessStandIn::start(chain, key)
        .await
        .expect("the Serverless stand-in starts");
    let dir = Dir::new("serverless");
    let ca_file = dir.file("ca.pem", &ca.pem);
    let endpoint = server.endpoint().to_string();
    let target = [
        "--serverless",
        endpoint.as_str(),
        "--ca",
        ca_file.as_str(),
        "--timeout-ms",
        "5000",
    ];
    assert_ok(&mcad(&args(&["set", "greeting", "hello"], &target)));
    assert_eq!(
        assert_ok(&mcad(&args(&["get", "greeting"], &target))),
        "hello"
    );
    let stats = assert_ok(&mcad(&args(&["stats"], &target)));
    assert!(stats.contains("curr_items"), "{stats}");
    assert_ok(&mcad(&args(&["delete", "greeting"], &target)));
    assert_eq!(
        mcad(&args(&["get", "greeting"], &target)).status.code(),
        Some(3)
    );
    // Without --ca the public CAs are trusted, and this one is not among them.
    let err = assert_error(&mcad(&["get", "greeting", "--serverless", &endpoint]));
    assert!(err.contains("certificate"), "{err}");
}
