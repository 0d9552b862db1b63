//! The `mcad` binary, run as a user runs it, against local clusters of real memcached processes.

use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use memcached_autodiscovery::{Client, ClusterConfig, Node};
use memcached_autodiscovery_proto::distribution::{Distribution, Locator};
use memcached_autodiscovery_testkit::LocalCluster;

const MCAD: &str = env!("CARGO_BIN_EXE_mcad");
const PATIENCE: Duration = Duration::from_secs(20);

/// Runs `mcad args...` to completion, with `stdin` as its input.
fn mcad(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(MCAD)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mcad starts");
    let mut input = child.stdin.take().expect("stdin");
    let stdin = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    let output = child.wait_with_output().expect("mcad runs");
    writer.join().unwrap();
    output
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("UTF-8 stdout")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Exit status 1 with exactly one `error: ` line on stderr, nothing on stdout, no panic.
fn assert_clean_failure(output: &Output) -> String {
    let err = stderr(output);
    assert_eq!(output.status.code(), Some(1), "stderr: {err}");
    assert!(err.starts_with("error: "), "stderr: {err:?}");
    assert_eq!(err.lines().count(), 1, "stderr: {err:?}");
    assert!(!err.contains("panicked"), "stderr: {err:?}");
    assert!(!err.contains("RUST_BACKTRACE"), "stderr: {err:?}");
    assert!(output.stdout.is_empty(), "stdout: {:?}", stdout(output));
    err
}

fn assert_success(output: &Output) {
    assert_eq!(
        output.status.code(),
        Some(0),
        "stderr: {}, stdout: {}",
        stderr(output),
        stdout(output)
    );
}

/// The human listing `discover` prints for `config`, built here from the fields.
fn expected_listing(config: &ClusterConfig) -> String {
    let mut text = format!(
        "version {}, {} nodes\n",
        config.version(),
        config.nodes().len()
    );
    for node in config.nodes() {
        let ip = node.ip().expect("the local cluster lists IPs");
        text += &format!("{} {} {}\n", node.hostname(), ip, node.port());
    }
    text
}

/// A loopback port with nothing listening on it (bound by the OS, then released).
fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    addr
}

/// A running `mcad` whose stdout is read line by line. Stopped with SIGINT (then SIGKILL) if a
/// test fails before it does so itself.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl Running {
    fn spawn(args: &[&str]) -> Running {
        let mut child = Command::new(MCAD)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("mcad starts");
        let out = child.stdout.take().unwrap();
        let mut err = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = std::io::Read::read_to_string(&mut err, &mut text);
            text
        });
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Running {
            child,
            lines,
            stderr: Some(stderr),
        }
    }

    /// Everything the process wrote to stderr (call after it ended).
    fn stderr(&mut self) -> String {
        self.stderr
            .take()
            .map(|t| t.join().unwrap())
            .unwrap_or_default()
    }

    fn next_line(&self) -> String {
        self.lines
            .recv_timeout(PATIENCE)
            .expect("mcad printed a line in time")
    }

    fn interrupt(&self) {
        let status = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    /// Waits for the process to end; `None` if it is still running after `limit`.
    fn wait_for_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.interrupt();
            if self.wait_for_exit(Duration::from_secs(5)).is_none() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
    }
}

/// Process ids of the live children of `parent`, with their command names (Linux `/proc`).
fn children_of(parent: u32) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: comm may hold spaces, so split after the last ')'.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = stat[open + 1..close].to_string();
        let mut rest = stat[close + 1..].split_whitespace();
        let state = rest.next();
        let ppid = rest.next().and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(parent) && state != Some("Z") {
            found.push((pid, comm));
        }
    }
    found
}

fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

fn refused(addr: SocketAddr) -> bool {
    matches!(
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)),
        Err(e) if e.kind() == ErrorKind::ConnectionRefused
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discover_prints_the_configuration_for_people_and_as_json() {
    let cluster = LocalCluster::start(3).await.expect("local cluster");
    let endpoint = cluster.config_endpoint().to_string();
    let config = cluster.config();
    assert_eq!(config.nodes().len(), 3);

    let human = mcad(&["discover", &endpoint], b"");
    assert_success(&human);
    assert_eq!(stdout(&human), expected_listing(&config));
    assert!(human.stderr.is_empty(), "{}", stderr(&human));

    let json = mcad(
        &["discover", &endpoint, "--json", "--timeout-ms", "3000"],
        b"",
    );
    assert_success(&json);
    let text = stdout(&json);
    let nodes: Vec<String> = config
        .nodes()
        .iter()
        .map(|n| {
            format!(
                r#"{{"hostname":"{}","ip":"{}","port":{}}}"#,
                n.hostname(),
                n.ip().unwrap(),
                n.port()
            )
        })
        .collect();
    let expected = format!(
        r#"{{"version":{},"nodes":[{}]}}"#,
        config.version(),
        nodes.join(",")
    );
    assert_eq!(text, expected + "\n");
    assert_eq!(text.lines().count(), 1);

    // A new node shows up in the next discovery.
    let added = cluster.add_node().await.expect("add a node");
    let after = mcad(&["discover", &endpoint, "--json"], b"");
    assert_success(&after);
    let text = stdout(&after);
    assert!(text.starts_with(r#"{"version":2,"nodes":["#), "{text}");
    assert!(
        text.contains(&format!(
            r#"{{"hostname":"{}","ip":"{}","port":{}}}]}}"#,
            added.hostname(),
            added.ip().unwrap(),
            added.port()
        )),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discover_failures_are_one_error_line_and_status_1() {
    let unreachable = closed_port().to_string();
    let err = assert_clean_failure(&mcad(&["discover", &unreachable], b""));
    assert!(err.contains(&unreachable), "{err}");

    for bad in ["not an address", "127.0.0.1:99999", "127.0.0.1:port", ""] {
        let err = assert_clean_failure(&mcad(&["discover", bad], b""));
        assert!(err.contains("host:port"), "{bad:?}: {err}");
    }
    assert_clean_failure(&mcad(&["discover", &unreachable, "--json"], b""));

    // Plain memcached has no auto-discovery: the message points to a fixed node list, as the
    // library's call and as mcad's flag.
    let cluster = LocalCluster::start(1).await.expect("local cluster");
    let plain = cluster.node_addrs()[0].to_string();
    let err = assert_clean_failure(&mcad(&["discover", &plain], b""));
    assert!(err.contains("does not support auto-discovery"), "{err}");
    assert!(err.contains("ClientBuilder::nodes("), "{err}");
    assert!(err.contains("(with mcad: --nodes HOST:PORT,..."), "{err}");

    // A usage error is clap's business: status 2, still no panic.
    let usage = mcad(&["discover"], b"");
    assert_eq!(usage.status.code(), Some(2));
    assert!(!stderr(&usage).contains("panicked"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_get_delete_and_stats_through_the_endpoint() {
    let cluster = LocalCluster::start(3).await.expect("local cluster");
    let endpoint = cluster.config_endpoint().to_string();
    let client = Client::builder()
        .config_endpoint(endpoint.clone())
        .build()
        .await
        .expect("library client");
    let target = ["--endpoint", endpoint.as_str()];
    let with = |args: &[&str]| -> Vec<String> {
        args.iter()
            .chain(target.iter())
            .map(|s| s.to_string())
            .collect()
    };
    let run = |args: Vec<String>| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        mcad(&args, b"")
    };

    let value = "two words\tand a tab";
    assert_success(&run(with(&["set", "greeting", value])));
    let got = run(with(&["get", "greeting"]));
    assert_success(&got);
    assert_eq!(stdout(&got), value, "the value comes back raw, no line end");
    assert_eq!(
        client.get("greeting").await.unwrap().as_deref(),
        Some(value.as_bytes())
    );

    // The TTL is passed on: a one-second item expires within memcached's clock granularity.
    assert_success(&run(with(&["set", "brief", "x", "--ttl-secs", "1"])));
    assert_eq!(
        client.get("brief").await.unwrap().as_deref(),
        Some(&b"x"[..])
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while client.get("brief").await.unwrap().is_some() {
        assert!(Instant::now() < deadline, "the item never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_success(&run(with(&["set", "lasting", "y"])));
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(
        client.get("lasting").await.unwrap().as_deref(),
        Some(&b"y"[..])
    );

    assert_success(&run(with(&["delete", "greeting"])));
    assert_eq!(client.get("greeting").await.unwrap(), None);
    let miss = run(with(&["get", "greeting"]));
    assert_eq!(miss.status.code(), Some(3), "{}", stderr(&miss));
    assert!(miss.stdout.is_empty() && miss.stderr.is_empty());
    let gone = run(with(&["delete", "greeting"]));
    assert_eq!(gone.status.code(), Some(3), "{}", stderr(&gone));

    // An invalid key is refused before anything is sent.
    assert_clean_failure(&run(with(&["set", "two words", "v"])));

    // stats: node<TAB>name<TAB>value, every node, with each process's own pid.
    let stats = run(with(&["stats"]));
    assert_success(&stats);
    let text = stdout(&stats);
    for (i, node) in cluster.nodes().iter().enumerate() {
        let pid = cluster.pid(i).unwrap();
        let line = format!("{}\tpid\t{pid}", node.id());
        assert!(text.lines().any(|l| l == line), "no {line:?} in {text}");
    }
    assert!(text.lines().all(|l| l.split('\t').count() == 3), "{text}");

    // The same through a fixed node list (plain memcached, no discovery).
    let nodes: Vec<String> = cluster
        .node_addrs()
        .iter()
        .map(ToString::to_string)
        .collect();
    let list = nodes.join(",");
    let fixed = |args: &[&str]| {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--nodes", list.as_str()]);
        mcad(&all, b"")
    };
    assert_success(&fixed(&["set", "k", "fixed value"]));
    let got = fixed(&["get", "k"]);
    assert_success(&got);
    assert_eq!(stdout(&got), "fixed value");

    // Exactly one of --endpoint and --nodes.
    let both = mcad(
        &["get", "k", "--endpoint", &endpoint, "--nodes", &list],
        b"",
    );
    assert_eq!(both.status.code(), Some(2));
    let neither = mcad(&["get", "k"], b"");
    assert_eq!(neither.status.code(), Some(2));

    // An endpoint that is plain memcached: one error line that says what to use instead, in
    // mcad and in the library.
    let err = assert_clean_failure(&mcad(&["get", "k", "--endpoint", &nodes[0]], b""));
    assert!(
        err.contains("(with mcad: --nodes HOST:PORT,... instead of an endpoint"),
        "{err}"
    );
    assert!(err.contains("ClientBuilder::nodes("), "{err}");
}

/// A `stats` reply whose names and values carry tabs (to forge another node's columns), escape
/// sequences (to clear the screen, set the window title), a carriage return, a backslash and a
/// bidirectional override. Each `STAT` line is `name value`: the name ends at the first space.
const HOSTILE_STATS: &[u8] = b"STAT pid 4242\r\n\
STAT forged\t127.0.0.9:11211\tpid 666\r\n\
STAT version 1.6.21\t127.0.0.9:11211\tuptime\t1\r\n\
STAT clear \x1b[2J\x1b[Hall clear\r\n\
STAT title \x1b]0;owned\x07\r\n\
STAT cr 100\rOK\r\n\
STAT path C:\\tmp\r\n\
STAT bidi \xe2\x80\xaeevil\r\n\
END\r\n";

/// A "memcached node" on loopback that answers `stats` with [`HOSTILE_STATS`] and anything else
/// with `ERROR`, for as long as the test process runs.
fn hostile_stats_node() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = Vec::new();
                while reader.read_until(b'\n', &mut line).unwrap_or(0) > 0 {
                    let reply = if line == b"stats\r\n" {
                        HOSTILE_STATS
                    } else {
                        b"ERROR\r\n"
                    };
                    if stream.write_all(reply).is_err() {
                        return;
                    }
                    line.clear();
                }
            });
        }
    });
    addr
}

#[test]
fn stats_escapes_what_the_server_sends() {
    let node = hostile_stats_node().to_string();
    let output = mcad(&["stats", "--nodes", &node], b"");
    assert_success(&output);
    let text = stdout(&output);
    let expected = [
        "pid\t4242",
        r"forged\t127.0.0.9:11211\tpid	666",
        r"version	1.6.21\t127.0.0.9:11211\tuptime\t1",
        r"clear	\u{1b}[2J\u{1b}[Hall clear",
        r"title	\u{1b}]0;owned\u{7}",
        r"cr	100\rOK",
        r"path	C:\\tmp",
        r"bidi	\u{202e}evil",
    ]
    .map(|line| format!("{node}\t{line}\n"))
    .concat();
    assert_eq!(text, expected);
    for line in text.lines() {
        let fields: Vec<&str> = line.split('\t').collect();
        assert_eq!(fields.len(), 3, "one node's columns: {line:?}");
        assert!(!fields.concat().chars().any(char::is_control), "{line:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locate_agrees_with_the_locator_and_the_client() {
    let cluster = LocalCluster::start(3).await.expect("local cluster");
    let addrs = cluster.node_addrs();
    // Spellings the tool must print back as given: a weight, a leading zero, IPv6 brackets.
    let spelled = [
        format!("{}", addrs[0]),
        format!("{}:{}", addrs[1], 3),
        format!("{}:0{}", addrs[2].ip(), addrs[2].port()),
        format!("[::1]:{}:2", addrs[0].port()),
    ];
    let printed = [
        addrs[0].to_string(),
        addrs[1].to_string(),
        format!("{}:0{}", addrs[2].ip(), addrs[2].port()),
        format!("[::1]:{}", addrs[0].port()),
    ];
    let ids: Vec<String> = [
        (addrs[0].ip().to_string(), addrs[0].port()),
        (addrs[1].ip().to_string(), addrs[1].port()),
        (addrs[2].ip().to_string(), addrs[2].port()),
        ("::1".to_string(), addrs[0].port()),
    ]
    .iter()
    .map(|(host, port)| Node::new(host.clone(), None, *port).id())
    .collect();
    let locator = Locator::new(Distribution::Ring, &ids);
    let node_list = spelled.join(",");

    let keys: Vec<String> = (0..300).map(|i| format!("user:{i}")).collect();
    let mut args = vec!["locate", "--nodes", node_list.as_str()];
    args.extend(keys.iter().map(String::as_str));
    let from_args = mcad(&args, b"");
    assert_success(&from_args);

    // The same keys on stdin, with a CRLF line end, a blank line and no final line end.
    let input = format!("{}\r\n\n{}", keys[0], keys[1..].join("\n"));
    let from_stdin = mcad(
        &["locate", "--distribution", "ring", "--nodes", &node_list],
        input.as_bytes(),
    );
    assert_success(&from_stdin);
    let answer = stdout(&from_args);
    assert_eq!(answer, stdout(&from_stdin));

    let lines: Vec<&str> = answer.lines().collect();
    assert_eq!(lines.len(), keys.len());
    let mut used = std::collections::HashSet::new();
    for (key, line) in keys.iter().zip(&lines) {
        let index = locator.locate(key.as_bytes()).unwrap();
        assert_eq!(*line, format!("{key}\t{}", printed[index]));
        used.insert(index);
    }
    assert_eq!(used.len(), 4, "300 keys reach every node");

    // The client, given the same nodes, routes every key to the same one.
    let client = Client::builder()
        .nodes(ids.iter().map(|id| match id.strip_prefix("::1:") {
            Some(port) => format!("[::1]:{port}"),
            None => id.clone(),
        }))
        .build()
        .await
        .unwrap();
    for key in &keys {
        let index = locator.locate(key.as_bytes()).unwrap();
        assert_eq!(client.node_for(key).unwrap().id(), ids[index]);
    }

    // Weights are read but do not change the ring placement.
    let unweighted = printed.join(",");
    let mut args = vec!["locate", "--nodes", unweighted.as_str()];
    args.extend(keys.iter().map(String::as_str));
    assert_eq!(stdout(&mcad(&args, b"")), answer);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locate_refuses_unknown_distributions_and_bad_nodes() {
    let out = mcad(
        &["locate", "--distribution", "modula", "--nodes", "a:1", "k"],
        b"",
    );
    assert_clean_failure(&out);
    assert_eq!(
        stderr(&out),
        "error: unknown distribution modula (known: ring, ketama, ketama-spymemcached, \
         ketama-fnv1a64, ketama-aws-java, consistent-libmemcached, consistent-libmemcached-md5, \
         rendezvous, modula-libmemcached, modula-java); --distribution NAME \
         (ClientBuilder::distribution in the library) takes one of these\n"
    );

    for bad in [
        "a:1:0", "a:1:x", "a", "::1:5", "[::1:5", "a:1,a:1", "a:70000", "",
    ] {
        let err = assert_clean_failure(&mcad(&["locate", "--nodes", bad, "k"], b""));
        assert!(err.contains("node"), "{bad:?}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_prints_the_first_configuration_then_each_change() {
    let cluster = LocalCluster::start(2).await.expect("local cluster");
    let endpoint = cluster.config_endpoint().to_string();
    let mut watch = Running::spawn(&["watch", &endpoint, "--interval-ms", "50"]);
    let first: Vec<String> = (0..3).map(|_| watch.next_line()).collect();
    assert_eq!(first.join("\n") + "\n", expected_listing(&cluster.config()));

    let added = cluster.add_node().await.expect("add a node");
    assert_eq!(
        watch.next_line(),
        format!("version 1 -> 2: added [{added}] removed []")
    );
    let removed = cluster.remove_node(0).await;
    assert_eq!(
        watch.next_line(),
        format!("version 2 -> 3: added [] removed [{removed}]")
    );

    watch.interrupt();
    let status = watch
        .wait_for_exit(PATIENCE)
        .expect("watch stops on SIGINT");
    assert_eq!(status.code(), Some(0));
    assert_eq!(watch.stderr(), "", "a healthy endpoint gives no warnings");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_up_serves_until_interrupted_then_stops_its_memcached() {
    let mut up = Running::spawn(&["cluster", "up", "--nodes", "2"]);
    let first = up.next_line();
    let endpoint = first
        .strip_prefix("config endpoint: ")
        .filter(|e| e.starts_with("127.0.0.1:"))
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
        .to_string();
    let listing: Vec<String> = (0..3).map(|_| up.next_line()).collect();

    let config = Client::builder()
        .config_endpoint(&endpoint)
        .discovery_timeout(Duration::from_secs(5))
        .discover()
        .await
        .expect("the endpoint answers discovery");
    assert_eq!(config.nodes().len(), 2);
    assert_eq!(listing.join("\n") + "\n", expected_listing(&config));

    // Its nodes are real memcached, children of mcad.
    let client = Client::builder()
        .config_endpoint(endpoint.clone())
        .build()
        .await
        .unwrap();
    client
        .set("k", "v", Duration::ZERO)
        .await
        .expect("a node stores");
    let children = children_of(up.child.id());
    assert_eq!(children.len(), 2, "{children:?}");
    assert!(children.iter().all(|(_, comm)| comm == "memcached"));
    drop(client);

    up.interrupt();
    let status = up
        .wait_for_exit(PATIENCE)
        .expect("cluster up stops on SIGINT");
    assert_eq!(status.code(), Some(0));
    let err = up.stderr();
    assert!(err.contains("stopped 2 memcached"), "{err}");
    assert!(!err.contains("error"), "{err}");
    for (pid, _) in &children {
        assert!(!process_alive(*pid), "memcached {pid} outlived mcad");
    }
    for node in config.nodes() {
        let addr = SocketAddr::new(node.ip().unwrap(), node.port());
        assert!(refused(addr), "{addr} still accepts connections");
    }
    assert!(refused(endpoint.parse().unwrap()));
}
