//! `mcad get`, `set`, `delete` and `stats`: single calls through the client.

use std::time::Duration;

use memcached_autodiscovery::Client;

use crate::hints;
use crate::locate::distribution_named;
use crate::output::{escaped, Out};
use crate::tls::TlsArgs;
use crate::{Failure, Outcome, Result};

/// Where the client finds the nodes: exactly one of `--endpoint`, `--nodes` and `--serverless`.
#[derive(clap::Args)]
#[group(required = true, multiple = false)]
pub struct Target {
    /// Discover the nodes from this configuration endpoint (ClientBuilder::config_endpoint in
    /// the library).
    #[arg(long, value_name = "HOST:PORT")]
    endpoint: Option<String>,
    /// Use these memcached nodes, without discovery (IPv6 as `[addr]:port`;
    /// ClientBuilder::nodes in the library).
    #[arg(long, value_name = "HOST:PORT,...", value_delimiter = ',')]
    nodes: Option<Vec<String>>,
    /// An ElastiCache Serverless cache's endpoint: the one node, always over TLS (the public CAs
    /// unless --ca is given), no discovery (ClientBuilder::serverless in the library).
    #[arg(long, value_name = "HOST:PORT")]
    serverless: Option<String>,
}

/// How the client is set up.
#[derive(clap::Args)]
pub struct Connection {
    #[command(flatten)]
    target: Target,
    /// How keys are placed on nodes (ClientBuilder::distribution in the library; see `mcad
    /// locate --help` for the names).
    #[arg(long, value_name = "NAME", default_value = "ring")]
    distribution: String,
    /// Longest wait for discovery, a connect, and the reply (ClientBuilder::discovery_timeout,
    /// connect_timeout and request_timeout in the library).
    #[arg(long, value_name = "N", default_value_t = 2000)]
    timeout_ms: u64,
    #[command(flatten)]
    tls: TlsArgs,
}

impl Connection {
    async fn client(&self) -> Result<Client> {
        let timeout = Duration::from_millis(self.timeout_ms);
        let builder = Client::builder()
            .distribution(distribution_named(&self.distribution)?)
            .discovery_timeout(timeout)
            .connect_timeout(timeout)
            .request_timeout(timeout);
        let target = &self.target;
        let builder = match (&target.endpoint, &target.nodes, &target.serverless) {
            (Some(endpoint), _, _) => builder.config_endpoint(endpoint.clone()),
            (None, Some(nodes), _) => builder.nodes(nodes.iter().map(|n| n.trim().to_string())),
            (None, None, Some(endpoint)) => builder.serverless(endpoint.clone()),
            (None, None, None) => {
                return Err(Failure::msg(format!(
                    "give {}, {} or {}",
                    hints::flag("--endpoint HOST:PORT", "ClientBuilder::config_endpoint"),
                    hints::flag("--nodes HOST:PORT,...", "ClientBuilder::nodes"),
                    hints::flag("--serverless HOST:PORT", "ClientBuilder::serverless"),
                )))
            }
        };
        let builder = self.tls.apply(builder)?;
        Ok(builder.build().await?)
    }
}

/// Print the value of a key, exactly as stored (no line end added).
///
/// Exit status 3, with nothing printed, when the key is not there.
#[derive(clap::Args)]
pub struct GetArgs {
    /// The key (1 to 250 bytes, no spaces or control characters).
    key: String,
    #[command(flatten)]
    connection: Connection,
}

/// Store a value under a key.
#[derive(clap::Args)]
pub struct SetArgs {
    /// The key (1 to 250 bytes, no spaces or control characters).
    key: String,
    /// The value, stored as given.
    value: String,
    /// Time to live in seconds; 0 (the default) keeps the item until it is evicted (the `ttl`
    /// of Client::set in the library).
    #[arg(long, value_name = "N", default_value_t = 0)]
    ttl_secs: u64,
    #[command(flatten)]
    connection: Connection,
}

/// Delete a key.
///
/// Exit status 3 when the key was not there.
#[derive(clap::Args)]
pub struct DeleteArgs {
    /// The key to delete.
    key: String,
    #[command(flatten)]
    connection: Connection,
}

/// Print every node's statistics as `node<TAB>name<TAB>value` lines.
///
/// What the servers send is printed with backslashes, tabs, control and other non-printable
/// characters escaped as in a Rust string (`\\`, `\t`, `\u{1b}`), so that each line has
/// exactly three fields and nothing reaches the terminal as a control sequence.
#[derive(clap::Args)]
pub struct StatsArgs {
    /// A statistics group (`settings`, `slabs`, `items`, ...); the general ones by default.
    group: Option<String>,
    #[command(flatten)]
    connection: Connection,
}

pub async fn get(args: GetArgs) -> Result<Outcome> {
    let client = args.connection.client().await?;
    match client.get(&args.key).await? {
        Some(value) => {
            let mut out = Out::new();
            out.bytes(&value)?;
            out.flush()?;
            Ok(Outcome::Done)
        }
        None => Ok(Outcome::NotFound),
    }
}

pub async fn set(args: SetArgs) -> Result<Outcome> {
    let client = args.connection.client().await?;
    client
        .set(&args.key, &args.value, Duration::from_secs(args.ttl_secs))
        .await?;
    Ok(Outcome::Done)
}

pub async fn delete(args: DeleteArgs) -> Result<Outcome> {
    let client = args.connection.client().await?;
    if client.delete(&args.key).await? {
        Ok(Outcome::Done)
    } else {
        Ok(Outcome::NotFound)
    }
}

pub async fn stats(args: StatsArgs) -> Result<Outcome> {
    let client = args.connection.client().await?;
    let all = client.stats(args.group.as_deref()).await?;
    let mut out = Out::new();
    for (node, pairs) in all {
        for (name, value) in pairs {
            out.line(&format!(
                "{}\t{}\t{}",
                escaped(&node),
                escaped(&name),
                escaped(&value)
            ))?;
        }
    }
    out.flush()?;
    Ok(Outcome::Done)
}
