//! `mcad discover`: one discovery, printed for people or as JSON.

use std::time::Duration;

use memcached_autodiscovery::{Client, ClusterConfig};

use crate::output::{self, Out};
use crate::tls::TlsArgs;
use crate::{Outcome, Result};

/// Ask a configuration endpoint for the cluster's nodes, once.
///
/// Prints `version N, M nodes` and then one `hostname ip port` line per node (`-` when the
/// configuration has no IP for a node).
#[derive(clap::Args)]
pub struct Args {
    /// The configuration endpoint (port 11211 when left out; IPv6 as `[addr]:port`).
    #[arg(value_name = "HOST:PORT")]
    endpoint: String,
    /// Print {"version":N,"nodes":[{"hostname":..,"ip":..|null,"port":N},..]} on one line.
    #[arg(long)]
    json: bool,
    /// Give up after this long (DNS, connect and both discovery commands together;
    /// ClientBuilder::discovery_timeout in the library).
    #[arg(long, value_name = "N", default_value_t = 2000)]
    timeout_ms: u64,
    #[command(flatten)]
    tls: TlsArgs,
}

/// One discovery from `endpoint`, bounded by `timeout`, with TLS if `tls` asks for it.
pub async fn fetch(endpoint: &str, timeout: Duration, tls: &TlsArgs) -> Result<ClusterConfig> {
    let builder = Client::builder()
        .config_endpoint(endpoint)
        .discovery_timeout(timeout);
    Ok(tls.apply(builder)?.discover().await?)
}

pub async fn run(args: Args) -> Result<Outcome> {
    let timeout = Duration::from_millis(args.timeout_ms);
    let config = fetch(&args.endpoint, timeout, &args.tls).await?;
    let mut out = Out::new();
    if args.json {
        out.line(&output::json(&config))?;
    } else {
        for line in output::human(&config) {
            out.line(&line)?;
        }
    }
    out.flush()?;
    Ok(Outcome::Done)
}
