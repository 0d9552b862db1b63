//! `mcad cluster up`: a local emulated ElastiCache cluster to try things against.

use memcached_autodiscovery_testkit::LocalCluster;

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
/// then wait for Ctrl-C and stop them all.
///
/// Prints `config endpoint: 127.0.0.1:PORT` first, then the nodes as `discover` does. Give the
/// endpoint to `mcad discover`, `mcad watch`, `mcad get --endpoint ...` or a program using the
/// library. Needs the memcached binary on PATH (or named by MEMCACHED_BIN).
#[derive(clap::Args)]
struct UpArgs {
    /// How many memcached nodes to start.
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
    match printed {
        Ok(()) | Err(Failure::OutputClosed) => {}
        Err(e) => return Err(e),
    }
    output::stderr_line("running; press Ctrl-C to stop");
    shutdown.wait().await;
    let nodes = cluster.len();
    // Dropping the cluster kills and reaps every memcached process and stops the endpoint.
    drop(cluster);
    output::stderr_line(&format!(
        "stopped {nodes} memcached node(s) and the configuration endpoint"
    ));
    Ok(Outcome::Done)
}
