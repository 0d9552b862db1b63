//! The command line of `stampede`.

use std::path::PathBuf;
use std::time::Duration;

pub const HELP: &str = "\
stampede: a thundering herd on cold and expired keys, naive get/load/set against get_or_load,
on local memcached nodes

USAGE: stampede [OPTIONS]

  --clients N       separate clients, as separate Lambda environments   (default: 8)
  --callers N       concurrent callers per client                      (default: 64)
  --keys N          keys; caller i asks for key i % N                  (default: 20)
  --loader-ms MS    how long a load takes                              (default: 100)
  --ttl-secs S      TTL of the stored values; the expired round waits
                    until they are gone                                 (default: 2)
  --repeats N       repetitions of every (strategy, round)             (default: 3)
  --nodes N         memcached nodes                                     (default: 3)
  --no-warm         skip the warm round (all hits)
  --out DIR         where results.md and results.csv go
                    (default: docs/performance/stampede)
  --help
";

/// Everything the command line decides.
#[derive(Debug, Clone)]
pub struct Options {
    pub clients: usize,
    pub callers: usize,
    pub keys: usize,
    pub loader: Duration,
    pub ttl: Duration,
    pub repeats: usize,
    pub nodes: usize,
    pub warm: bool,
    pub out: PathBuf,
    /// The command line as given, for the report.
    pub command: String,
}

impl Options {
    /// Callers over all clients.
    pub fn total_callers(&self) -> usize {
        self.clients * self.callers
    }
}

/// The options, `Ok(None)` after `--help`.
pub fn parse(args: Vec<String>) -> Result<Option<Options>, String> {
    let mut o = Options {
        clients: 8,
        callers: 64,
        keys: 20,
        loader: Duration::from_millis(100),
        ttl: Duration::from_secs(2),
        repeats: 3,
        nodes: 3,
        warm: true,
        out: PathBuf::from("docs/performance/stampede"),
        command: format!("stampede {}", args.get(1..).unwrap_or_default().join(" "))
            .trim_end()
            .to_string(),
    };
    let mut it = args.into_iter().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        let positive = |v: String| match v.parse::<u64>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!("not a positive number: {v}")),
        };
        match flag.as_str() {
            "--help" | "-h" => return Ok(None),
            "--clients" => o.clients = positive(value()?)? as usize,
            "--callers" => o.callers = positive(value()?)? as usize,
            "--keys" => o.keys = positive(value()?)? as usize,
            "--loader-ms" => o.loader = Duration::from_millis(positive(value()?)?),
            "--ttl-secs" => o.ttl = Duration::from_secs(positive(value()?)?),
            "--repeats" => o.repeats = positive(value()?)? as usize,
            "--nodes" => o.nodes = positive(value()?)? as usize,
            "--no-warm" => o.warm = false,
            "--out" => o.out = PathBuf::from(value()?),
            other => return Err(format!("unknown option {other}; see --help")),
        }
    }
    Ok(Some(o))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn defaults_are_the_documented_herd() {
        let o = parse(args("stampede")).unwrap().unwrap();
        assert_eq!((o.clients, o.callers, o.keys), (8, 64, 20));
        assert_eq!(o.total_callers(), 512);
        assert_eq!(o.loader, Duration::from_millis(100));
        assert_eq!(o.ttl, Duration::from_secs(2));
        assert_eq!((o.repeats, o.nodes, o.warm), (3, 3, true));
        assert_eq!(o.out, PathBuf::from("docs/performance/stampede"));
        assert_eq!(o.command, "stampede");
    }

    #[test]
    fn options_override_and_bad_ones_fail() {
        let o = parse(args("stampede --clients 2 --callers 4 --keys 3 --loader-ms 7 --ttl-secs 5 --repeats 1 --no-warm --out x"))
            .unwrap()
            .unwrap();
        assert_eq!((o.clients, o.callers, o.keys, o.repeats), (2, 4, 3, 1));
        assert_eq!(
            (o.loader, o.ttl),
            (Duration::from_millis(7), Duration::from_secs(5))
        );
        assert!(!o.warm);
        assert_eq!(o.out, PathBuf::from("x"));
        assert!(parse(args("stampede --help")).unwrap().is_none());
        assert!(parse(args("stampede --keys 0")).is_err());
        assert!(parse(args("stampede --keys")).is_err());
        assert!(parse(args("stampede --bogus")).is_err());
    }
}
