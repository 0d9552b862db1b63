//! `mcad watch`: poll a configuration endpoint and print every change until stopped.

use std::time::Duration;

use memcached_autodiscovery::{ClusterConfig, Node};
use memcached_autodiscovery_proto::config::{decide, Decision};

use crate::discover::fetch;
use crate::output::{self, Out};
use crate::shutdown::Shutdown;
use crate::tls::TlsArgs;
use crate::{Outcome, Result};

/// Poll a configuration endpoint and print each change, until Ctrl-C.
///
/// Prints the first configuration as `discover` does, then one line per change:
/// `version A -> B: added [..] removed [..]`, nodes written `hostname|ip|port` as the endpoint
/// serves them (a node whose IP changed appears in both lists). Changes are applied as the
/// client applies them: a higher version, or the same version with other nodes; a lower
/// version is ignored (noted on stderr). A failed poll is reported on stderr and polling goes
/// on; a failure of the first poll ends the command.
#[derive(clap::Args)]
pub struct Args {
    /// The configuration endpoint (port 11211 when left out; IPv6 as `[addr]:port`).
    #[arg(value_name = "HOST:PORT")]
    endpoint: String,
    /// Time between polls.
    #[arg(long, value_name = "N", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    interval_ms: u64,
    /// Give up on one poll after this long (ClientBuilder::discovery_timeout in the library).
    #[arg(long, value_name = "N", default_value_t = 2000)]
    timeout_ms: u64,
    #[command(flatten)]
    tls: TlsArgs,
}

pub async fn run(args: Args) -> Result<Outcome> {
    let mut shutdown = Shutdown::install()?;
    let interval = Duration::from_millis(args.interval_ms);
    let timeout = Duration::from_millis(args.timeout_ms);
    let mut out = Out::new();

    let mut current = tokio::select! {
        () = shutdown.wait() => return Ok(Outcome::Done),
        config = fetch(&args.endpoint, timeout, &args.tls) => config?,
    };
    for line in output::human(&current) {
        out.line(&line)?;
    }
    out.flush()?;

    // The last problem reported on stderr, so that a lasting one is not repeated every poll.
    let mut reported: Option<String> = None;
    loop {
        let polled = tokio::select! {
            () = shutdown.wait() => return Ok(Outcome::Done),
            polled = async {
                tokio::time::sleep(interval).await;
                fetch(&args.endpoint, timeout, &args.tls).await
            } => polled,
        };
        let problem = match polled {
            Ok(next) => match decide(&current, &next) {
                Decision::Apply => {
                    out.line(&change_line(&current, &next))?;
                    out.flush()?;
                    current = next;
                    None
                }
                Decision::Unchanged => None,
                Decision::Stale => Some(format!(
                    "note: the endpoint serves version {}, older than version {}: ignored",
                    next.version(),
                    current.version()
                )),
            },
            Err(crate::Failure::Message(message)) => Some(format!("warning: {message}")),
            Err(other) => return Err(other),
        };
        if problem != reported {
            if let Some(text) = &problem {
                output::stderr_line(text);
            } else {
                output::stderr_line("note: the endpoint answers normally again");
            }
            reported = problem;
        }
    }
}

/// `version A -> B: added [..] removed [..]`.
fn change_line(old: &ClusterConfig, new: &ClusterConfig) -> String {
    let list = |nodes: Vec<&Node>| {
        nodes
            .into_iter()
            .map(output::wire)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let added = new
        .nodes()
        .iter()
        .filter(|n| !old.nodes().contains(n))
        .collect();
    let removed = old
        .nodes()
        .iter()
        .filter(|n| !new.nodes().contains(n))
        .collect();
    format!(
        "version {} -> {}: added [{}] removed [{}]",
        old.version(),
        new.version(),
        list(added),
        list(removed)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, ip: &str, port: u16) -> Node {
        Node::new(name, Some(ip.parse().unwrap()), port)
    }

    #[test]
    fn a_change_lists_added_and_removed_nodes() {
        let a = node("a", "10.0.0.1", 1);
        let b = node("b", "10.0.0.2", 1);
        let b2 = node("b", "10.0.0.9", 1);
        let c = node("c", "10.0.0.3", 1);
        let old = ClusterConfig::new(4, vec![a.clone(), b]);
        let grown = ClusterConfig::new(5, vec![a.clone(), b2.clone(), c]);
        assert_eq!(
            change_line(&old, &grown),
            "version 4 -> 5: added [b|10.0.0.9|1, c|10.0.0.3|1] removed [b|10.0.0.2|1]"
        );
        let reordered = ClusterConfig::new(6, vec![b2.clone(), a.clone()]);
        let same_set = ClusterConfig::new(6, vec![a, b2]);
        assert_eq!(
            change_line(&same_set, &reordered),
            "version 6 -> 6: added [] removed []"
        );
    }
}
