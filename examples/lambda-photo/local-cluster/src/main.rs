//! run-local's memcached cluster: the test kit's `LocalCluster` (real memcached processes on
//! loopback addresses behind an emulated ElastiCache configuration endpoint), driven by one
//! command per line on stdin so that a script can change the cluster while a function runs.
//!
//! Prints `config endpoint: 127.0.0.1:PORT` first (as `mcad cluster up` does), then answers each
//! command with exactly one line, `ok ...` or `error ...`:
//!
//! | command | what it does |
//! |---|---|
//! | `show` | `ok version=V nodes=N polls=P list=HOST:PORT@IP,...` (P: discovery requests served so far) |
//! | `add-node` | starts a node and lists it under version V+1 |
//! | `remove HOST:PORT` | stops listing the node (version V+1), then stops it |
//! | `restart HOST:PORT` | kills the node's process and starts an empty one on the same address (no version change: clients' sockets to it die) |
//! | `flush` | `flush_all` on every node: a cold cache, with no change to the topology or to anyone's sockets |
//!
//! End of input (or SIGTERM/SIGINT) stops every process.
//!
//! ```text
//! local-cluster [NODES]      # default 3
//! ```

use memcached_autodiscovery_testkit::LocalCluster;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let nodes = match std::env::args().nth(1).map(|a| a.parse::<usize>()) {
        None => 3,
        Some(Ok(n)) if (1..=50).contains(&n) => n,
        Some(_) => {
            eprintln!("usage: local-cluster [NODES]   (NODES from 1 to 50, default 3)");
            std::process::exit(2);
        }
    };
    let cluster = match LocalCluster::start(nodes).await {
        Ok(cluster) => cluster,
        Err(e) => {
            eprintln!("local-cluster: cannot start {nodes} memcached node(s): {e}");
            std::process::exit(1);
        }
    };
    let mut out = tokio::io::stdout();
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut say = format!(
        "config endpoint: {}\n{}\n",
        cluster.config_endpoint(),
        show(&cluster)
    );
    loop {
        if out.write_all(say.as_bytes()).await.is_err() || out.flush().await.is_err() {
            break;
        }
        let line = tokio::select! {
            line = lines.next_line() => line,
            () = terminated() => break,
        };
        let Ok(Some(line)) = line else { break };
        say = format!("{}\n", command(&cluster, line.trim()).await);
    }
    // Dropping the cluster kills and reaps every memcached process and stops the endpoint.
    drop(cluster);
    // Exit now: the runtime would otherwise wait for the thread blocked reading stdin.
    std::process::exit(0);
}

async fn command(cluster: &LocalCluster, line: &str) -> String {
    let (verb, arg) = line.split_once(' ').unwrap_or((line, ""));
    let arg = arg.trim();
    match verb {
        "show" => show(cluster),
        "add-node" => match cluster.add_node().await {
            Ok(node) => format!(
                "ok added {} ({}); {}",
                node.id(),
                ip(&node),
                summary(cluster)
            ),
            Err(e) => format!("error add-node: {e}"),
        },
        "remove" => match index_of(cluster, arg) {
            Ok(index) => {
                let node = cluster.remove_node(index).await;
                format!("ok removed {}; {}", node.id(), summary(cluster))
            }
            Err(e) => e,
        },
        "restart" => match index_of(cluster, arg) {
            Ok(index) => match cluster.restart(index).await {
                Ok(()) => format!(
                    "ok restarted {arg}: a new, empty process (pid {}) on the same address; {}",
                    cluster.pid(index).unwrap_or(0),
                    summary(cluster)
                ),
                Err(e) => format!("error restart {arg}: {e}"),
            },
            Err(e) => e,
        },
        "flush" => {
            let nodes = cluster.nodes();
            for node in &nodes {
                if let Err(e) = flush(node).await {
                    return format!("error flush {}: {e}", node.id());
                }
            }
            format!("ok flushed {} nodes; {}", nodes.len(), summary(cluster))
        }
        "" => "error empty command".to_string(),
        other => format!(
            "error unknown command {other:?} (show, add-node, remove HOST:PORT, restart HOST:PORT, flush)"
        ),
    }
}

fn index_of(cluster: &LocalCluster, id: &str) -> Result<usize, String> {
    cluster
        .nodes()
        .iter()
        .position(|n| n.id() == id)
        .ok_or_else(|| format!("error no node {id:?} in the cluster"))
}

/// `flush_all` on one node, over a connection of its own.
async fn flush(node: &memcached_autodiscovery::Node) -> std::io::Result<()> {
    let ip = node
        .ip
        .ok_or_else(|| std::io::Error::other("the node has no IP address"))?;
    let mut stream = TcpStream::connect((ip, node.port)).await?;
    stream.write_all(b"flush_all\r\n").await?;
    let mut reply = String::new();
    BufReader::new(stream).read_line(&mut reply).await?;
    match reply.trim_end() {
        "OK" => Ok(()),
        other => Err(std::io::Error::other(format!(
            "flush_all answered {other:?}"
        ))),
    }
}

fn ip(node: &memcached_autodiscovery::Node) -> String {
    node.ip.map(|ip| ip.to_string()).unwrap_or_default()
}

fn summary(cluster: &LocalCluster) -> String {
    let config = cluster.config();
    format!("version {}, {} nodes", config.version, config.nodes.len())
}

fn show(cluster: &LocalCluster) -> String {
    let config = cluster.config();
    let list: Vec<String> = config
        .nodes
        .iter()
        .map(|n| format!("{}@{}", n.id(), ip(n)))
        .collect();
    format!(
        "ok version={} nodes={} polls={} list={}",
        config.version,
        config.nodes.len(),
        cluster.endpoint_requests(),
        list.join(",")
    )
}

/// Resolves on SIGTERM or SIGINT (never, where signals cannot be installed).
async fn terminated() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            return;
        }
    }
    std::future::pending::<()>().await
}
