//! `mcad cluster up`: a local emulated ElastiCache cluster to try things against, changed by
//! commands on stdin.

use std::time::Duration;

use memcached_autodiscovery::{Client, Node};
use memcached_autodiscovery_testkit::LocalCluster;
use tokio::sync::mpsc;

use crate::output::{self, Out};
use crate::shutdown::Shutdown;
use crate::{Failure, Outcome, Result};

/// Run a local emulated cluster (needs the memcached binary).
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: ClusterCommand,
}

#[derive(clap::Subcommand)]
enum ClusterCommand {
    Up(UpArgs),
}

/// Start memcached nodes on loopback addresses and a configuration endpoint that lists them,
/// take commands on stdin, and stop them all on Ctrl-C (or SIGTERM).
///
/// Prints `config endpoint: 127.0.0.1:PORT` first, then the nodes as `discover` does. Give the
/// endpoint to `mcad discover`, `mcad watch`, `mcad get --endpoint ...` or a program using the
/// library (ClientBuilder::config_endpoint). Needs the memcached binary on PATH (or named by
/// MEMCACHED_BIN). In a test of your own, LocalCluster::start(N) of the crate
/// memcached-autodiscovery-testkit starts the same cluster.
///
/// Commands, one per line on stdin, each answered with one line, `ok ...` or `error ...`
/// (NODE: its HOST:PORT, or its position in the list, from 1):
///
///   show          ok version=V nodes=N polls=P list=HOST:PORT@IP,...
///                 (P: discovery requests the endpoint has served)
///   add           start a node and list it under version V+1
///   remove NODE   stop listing the node (version V+1), then stop it
///   restart NODE  kill the node's process and start an empty one on the same address
///                 (no version change: clients' sockets to it die)
///   kill NODE     kill the node's process; it stays listed (a failed node)
///   flush         flush_all on every node: a cold cache, the topology unchanged
///
/// The end of stdin ends the commands, not the cluster.
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
struct UpArgs {
    /// How many memcached nodes to start (a count, unlike the --nodes of the other commands).
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=250))]
    nodes: u16,
}

pub async fn run(args: Args) -> Result<Outcome> {
    match args.command {
        ClusterCommand::Up(up) => run_up(up).await,
    }
}

async fn run_up(args: UpArgs) -> Result<Outcome> {
    // Handlers first: a Ctrl-C from now on stops the cluster cleanly.
    let mut shutdown = Shutdown::install()?;
    let cluster = tokio::select! {
        () = shutdown.wait() => return Ok(Outcome::Done),
        started = LocalCluster::start(usize::from(args.nodes)) => started
            .map_err(|e| Failure::msg(format!("cannot start the local cluster: {e}")))?,
    };
    let mut out = Out::new();
    let printed = (|| {
        out.line(&format!("config endpoint: {}", cluster.config_endpoint()))?;
        for line in output::human(&cluster.config()) {
            out.line(&line)?;
        }
        out.flush()
    })();
    // Even with nobody reading stdout any more, the cluster runs until it is told to stop.
    let mut quiet = match printed {
        Ok(()) => false,
        Err(Failure::OutputClosed) => true,
        Err(e) => return Err(e),
    };
    output::stderr_line(
        "running; commands on stdin (show, add, remove, restart, kill, flush); Ctrl-C to stop",
    );
    let mut commands = stdin_lines();
    loop {
        tokio::select! {
            () = shutdown.wait() => break,
            line = commands.recv() => match line {
                Some(line) => {
                    let answer = command(&cluster, line.trim()).await;
                    if !quiet {
                        quiet = out.line(&answer).and_then(|()| out.flush()).is_err();
                    }
                }
                // The end of stdin: no more commands; the cluster runs on.
                None => {
                    shutdown.wait().await;
                    break;
                }
            },
        }
    }
    let nodes = cluster.len();
    // Dropping the cluster kills and reaps every memcached process and stops the endpoint.
    drop(cluster);
    output::stderr_line(&format!(
        "stopped {nodes} memcached node(s) and the configuration endpoint"
    ));
    Ok(Outcome::Done)
}

/// The lines of stdin, read on a thread of their own: a read blocked on stdin must not keep
/// the runtime from shutting down.
fn stdin_lines() -> mpsc::UnboundedReceiver<String> {
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// Runs one command; its one-line answer.
async fn command(cluster: &LocalCluster, line: &str) -> String {
    let (verb, arg) = line.split_once(' ').unwrap_or((line, ""));
    let arg = arg.trim();
    match verb {
        "show" => show(cluster),
        "add" | "add-node" => match cluster.add_node().await {
            Ok(node) => format!(
                "ok added {} ({}); {}",
                node.id(),
                ip(&node),
                summary(cluster)
            ),
            Err(e) => format!("error add: {e}"),
        },
        "remove" => match index_of(cluster, arg) {
            Ok(index) => {
                let node = cluster.remove_node(index).await;
                format!("ok removed {}; {}", node.id(), summary(cluster))
            }
            Err(e) => e,
        },
        "restart" => match index_of(cluster, arg) {
            Ok(index) => {
                let id = cluster.nodes()[index].id();
                match cluster.restart(index).await {
                    Ok(()) => format!(
                        "ok restarted {id}: a new, empty process (pid {}) on the same address; {}",
                        cluster.pid(index).unwrap_or(0),
                        summary(cluster)
                    ),
                    Err(e) => format!("error restart {id}: {e}"),
                }
            }
            Err(e) => e,
        },
        "kill" => match index_of(cluster, arg) {
            Ok(index) => {
                let id = cluster.nodes()[index].id();
                cluster.kill(index);
                format!(
                    "ok killed {id}: its process is gone, the node stays listed; {}",
                    summary(cluster)
                )
            }
            Err(e) => e,
        },
        "flush" => match flush(&cluster.nodes()).await {
            Ok(n) => format!("ok flushed {n} nodes; {}", summary(cluster)),
            Err(e) => format!("error flush: {e}"),
        },
        "" => "error empty command".to_string(),
        other => format!(
            "error unknown command {:?} (show, add, remove NODE, restart NODE, kill NODE, flush)",
            output::escaped(other)
        ),
    }
}

/// The index of NODE: `HOST:PORT`, or a position in the list from 1.
fn index_of(cluster: &LocalCluster, node: &str) -> std::result::Result<usize, String> {
    let nodes = cluster.nodes();
    if node.is_empty() {
        return Err("error give a node: HOST:PORT, or its position in the list from 1".into());
    }
    if let Ok(position) = node.parse::<usize>() {
        return match position {
            1.. if position <= nodes.len() => Ok(position - 1),
            _ => Err(format!(
                "error no node at position {position}: the cluster has {} nodes",
                nodes.len()
            )),
        };
    }
    nodes
        .iter()
        .position(|n| n.id() == node)
        .ok_or_else(|| format!("error no node {:?} in the cluster", output::escaped(node)))
}

/// `flush_all` on every node, through a client of its own; how many nodes.
async fn flush(nodes: &[Node]) -> std::result::Result<usize, memcached_autodiscovery::Error> {
    let addrs: Vec<String> = nodes
        .iter()
        .map(|n| match n.ip() {
            Some(ip) => std::net::SocketAddr::new(ip, n.port()).to_string(),
            None => n.id(),
        })
        .collect();
    let client = Client::builder()
        .nodes(addrs)
        .request_timeout(Duration::from_secs(5))
        .build()
        .await?;
    client.flush_all().await?;
    Ok(nodes.len())
}

fn ip(node: &Node) -> String {
    node.ip().map(|ip| ip.to_string()).unwrap_or_default()
}

fn summary(cluster: &LocalCluster) -> String {
    let config = cluster.config();
    format!(
        "version {}, {} nodes",
        config.version(),
        config.nodes().len()
    )
}

fn show(cluster: &LocalCluster) -> String {
    let config = cluster.config();
    let list: Vec<String> = config
        .nodes()
        .iter()
        .map(|n| format!("{}@{}", n.id(), ip(n)))
        .collect();
    format!(
        "ok version={} nodes={} polls={} list={}",
        config.version(),
        config.nodes().len(),
        cluster.endpoint_requests(),
        list.join(",")
    )
}
