//! `mcad`: a command-line tool for memcached clusters with auto-discovery (AWS ElastiCache,
//! Google Memorystore), built on the `memcached_autodiscovery` library.
//!
//! Exit status: 0 on success, 1 on any failure (one `error: ...` line on stderr), 2 for a
//! command line that does not parse, 3 when `get` or `delete` finds no such key.

mod cluster;
mod discover;
mod hints;
mod kv;
mod locate;
mod output;
mod shutdown;
mod tls;
mod watch;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Explore and use memcached clusters with auto-discovery (ElastiCache, Memorystore).
#[derive(Parser)]
#[command(
    name = "mcad",
    version,
    after_help = "Exit status: 0 on success; 1 on any failure, with one `error: ...` line on stderr; \
                  2 when the command line does not parse; 3 when `get` or `delete` finds no such key."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Discover(discover::Args),
    Watch(watch::Args),
    Get(kv::GetArgs),
    Set(kv::SetArgs),
    Delete(kv::DeleteArgs),
    Stats(kv::StatsArgs),
    Locate(locate::Args),
    Cluster(cluster::Args),
}

/// Why a command stopped early.
#[derive(Debug)]
pub enum Failure {
    /// Print `error: <message>` and exit 1.
    Message(String),
    /// The reader of our stdout went away (`mcad ... | head`): stop without a word.
    OutputClosed,
}

impl Failure {
    /// A failure with this message.
    pub fn msg(message: impl Into<String>) -> Failure {
        Failure::Message(message.into())
    }
}

/// An error of the library (or of the system), passed on with the mcad flag of every library
/// call its message names.
impl<E: std::error::Error + 'static> From<E> for Failure {
    fn from(e: E) -> Failure {
        Failure::Message(hints::with_flags(e.to_string()))
    }
}

/// What a command returns.
pub type Result<T> = std::result::Result<T, Failure>;

/// How a successful command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Exit 0.
    Done,
    /// The key was not there (`get`, `delete`): exit 3.
    NotFound,
}

async fn run(command: Command) -> Result<Outcome> {
    match command {
        Command::Discover(args) => discover::run(args).await,
        Command::Watch(args) => watch::run(args).await,
        Command::Get(args) => kv::get(args).await,
        Command::Set(args) => kv::set(args).await,
        Command::Delete(args) => kv::delete(args).await,
        Command::Stats(args) => kv::stats(args).await,
        Command::Locate(args) => locate::run(args),
        Command::Cluster(args) => cluster::run(args).await,
    }
}

fn main() -> ExitCode {
    // Help and version go to stdout with status 0; usage errors to stderr with status 2.
    let cli = Cli::parse();
    // A bug must still end in one `error:` line and status 1, not a panic message.
    std::panic::set_hook(Box::new(|info| {
        let what = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown cause".into());
        let place = info
            .location()
            .map(|l| format!(" ({}:{})", l.file(), l.line()))
            .unwrap_or_default();
        output::stderr_line(&format!(
            "error: internal error: {}{place}",
            one_line(&what)
        ));
    }));
    let result = catch_unwind(AssertUnwindSafe(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|e| Failure::msg(format!("cannot start the async runtime: {e}")))?;
        runtime.block_on(run(cli.command))
    }));
    match result {
        Ok(Ok(Outcome::Done)) | Ok(Err(Failure::OutputClosed)) => ExitCode::SUCCESS,
        Ok(Ok(Outcome::NotFound)) => ExitCode::from(3),
        Ok(Err(Failure::Message(message))) => {
            output::stderr_line(&format!("error: {}", one_line(&message)));
            ExitCode::from(1)
        }
        // The panic hook has already said what happened.
        Err(_) => ExitCode::from(1),
    }
}

/// The message on a single line: line breaks become spaces.
fn one_line(message: &str) -> String {
    message
        .split(['\r', '\n'])
        .filter(|part| !part.trim().is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn error_messages_fit_on_one_line() {
        assert_eq!(one_line("a\nb\r\n\nc"), "a b c");
        assert_eq!(one_line("plain"), "plain");
    }
}
