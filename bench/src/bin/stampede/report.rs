//! The figures of a run: one record per herd, their summary per (round, strategy), and the
//! files written from them (results.md, results.csv).

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use crate::args::Options;
use crate::herd::{Outcome, Round, Strategy};
use crate::nodes::Counters;

/// One herd of one repetition.
pub struct Record {
    pub repeat: usize,
    pub round: Round,
    pub strategy: Strategy,
    pub outcome: Outcome,
    /// memcached's gets and sets during the herd.
    pub counters: Counters,
}

/// Every herd of one (round, strategy), pooled.
pub struct Summary {
    pub round: Round,
    pub strategy: Strategy,
    pub runs: usize,
    pub loads_max: u64,
    pub loads_mean: f64,
    /// Loads of every key in every run over 2.
    pub keys_over_two: usize,
    pub errors: u64,
    pub wrong: u64,
    pub first_error: Option<String>,
    pub p50: Duration,
    pub p90: Duration,
    pub p99: Duration,
    pub max: Duration,
    pub wall: [Duration; 3],
    pub gets: u64,
    pub sets: u64,
}

/// What the report says about the run besides the figures.
pub struct Meta {
    pub memcached: String,
    /// Keys per node, in node order.
    pub keys_per_node: Vec<usize>,
    pub elapsed: Duration,
}

/// Nearest-rank quantile of sorted durations.
pub fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn median_min_max(mut values: Vec<Duration>) -> [Duration; 3] {
    values.sort();
    let n = values.len();
    if n == 0 {
        return [Duration::ZERO; 3];
    }
    let median = if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2
    };
    [median, values[0], values[n - 1]]
}

fn summarize(round: Round, strategy: Strategy, records: &[&Record]) -> Summary {
    let mut latencies: Vec<Duration> = records
        .iter()
        .flat_map(|r| r.outcome.latencies.iter().copied())
        .collect();
    latencies.sort();
    let loads: Vec<u64> = records
        .iter()
        .flat_map(|r| r.outcome.loads.iter().copied())
        .collect();
    let runs = records.len().max(1) as u64;
    Summary {
        round,
        strategy,
        runs: records.len(),
        loads_max: loads.iter().copied().max().unwrap_or(0),
        loads_mean: loads.iter().sum::<u64>() as f64 / loads.len().max(1) as f64,
        keys_over_two: loads.iter().filter(|&&n| n > 2).count(),
        errors: records.iter().map(|r| r.outcome.errors).sum(),
        wrong: records.iter().map(|r| r.outcome.wrong).sum(),
        first_error: records.iter().find_map(|r| r.outcome.first_error.clone()),
        p50: quantile(&latencies, 0.50),
        p90: quantile(&latencies, 0.90),
        p99: quantile(&latencies, 0.99),
        max: latencies.last().copied().unwrap_or_default(),
        wall: median_min_max(records.iter().map(|r| r.outcome.wall).collect()),
        gets: records.iter().map(|r| r.counters.gets).sum::<u64>() / runs,
        sets: records.iter().map(|r| r.counters.sets).sum::<u64>() / runs,
    }
}

/// The summaries in round order, naive first within a round.
pub fn summaries(records: &[Record]) -> Vec<Summary> {
    let mut out = Vec::new();
    for round in Round::ALL {
        for strategy in Strategy::ALL {
            let of: Vec<&Record> = records
                .iter()
                .filter(|r| r.round == round && r.strategy == strategy)
                .collect();
            if !of.is_empty() {
                out.push(summarize(round, strategy, &of));
            }
        }
    }
    out
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn yes(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "**missed**"
    }
}

/// The summary table, pooled over the repetitions.
pub fn summary_table(summaries: &[Summary]) -> String {
    let mut s = String::from(
        "| round | strategy | herds | loads/key max | loads/key mean | keys > 2 loads | errors | wrong values | p50 ms | p90 ms | p99 ms | max ms | wall ms median (min–max) | memcached gets/herd | sets/herd |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for x in summaries {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {:.2} | {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.0} ({:.0}–{:.0}) | {} | {} |",
            x.round.name(),
            x.strategy.name(),
            x.runs,
            x.loads_max,
            x.loads_mean,
            x.keys_over_two,
            x.errors,
            x.wrong,
            ms(x.p50),
            ms(x.p90),
            ms(x.p99),
            ms(x.max),
            ms(x.wall[0]),
            ms(x.wall[1]),
            ms(x.wall[2]),
            x.gets,
            x.sets,
        );
    }
    s
}

/// The goals of `get_or_load`, per round.
pub fn goals_table(summaries: &[Summary]) -> String {
    let mut s = String::from(
        "| round | ≤ 2 loads per key | 0 errors | 0 wrong values | p99 ≤ 1 s |\n|---|---|---|---|---|\n",
    );
    for x in summaries
        .iter()
        .filter(|x| x.strategy == Strategy::GetOrLoad)
    {
        let _ = writeln!(
            s,
            "| {} | {} (max {}) | {} ({}) | {} ({}) | {} ({:.1} ms) |",
            x.round.name(),
            yes(x.loads_max <= 2),
            x.loads_max,
            yes(x.errors == 0),
            x.errors,
            yes(x.wrong == 0),
            x.wrong,
            yes(x.p99 <= Duration::from_secs(1)),
            ms(x.p99),
        );
    }
    s
}

fn runs_table(records: &[Record]) -> String {
    let mut s = String::from(
        "| repeat | round | strategy | loads (max / mean / total) | errors | wrong | p50 ms | p99 ms | max ms | wall ms | memcached gets | sets |\n\
         |---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in records {
        let o = &r.outcome;
        let mut sorted = o.latencies.clone();
        sorted.sort();
        let total: u64 = o.loads.iter().sum();
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} / {:.2} / {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.0} | {} | {} |",
            r.repeat + 1,
            r.round.name(),
            r.strategy.name(),
            o.loads.iter().max().copied().unwrap_or(0),
            total as f64 / o.loads.len().max(1) as f64,
            total,
            o.errors,
            o.wrong,
            ms(quantile(&sorted, 0.5)),
            ms(quantile(&sorted, 0.99)),
            ms(sorted.last().copied().unwrap_or_default()),
            ms(o.wall),
            r.counters.gets,
            r.counters.sets,
        );
    }
    s
}

/// results.md: setup, summary, goals, every run.
pub fn markdown(
    options: &Options,
    meta: &Meta,
    records: &[Record],
    summaries: &[Summary],
) -> String {
    let mut s = String::from("# Stampede: naive get/load/set against get_or_load\n\n");
    let _ = writeln!(
        s,
        "Written by `{}` ({:.0} s). {} memcached nodes ({}, `-t 1 -m 256`) behind the test kit's \
         emulated configuration endpoint; keys per node {:?}. {} clients × {} callers = {} callers \
         at once on {} keys (caller i asks for key i % {}); the loader sleeps {} ms; TTL {} s; \
         {} repetitions per strategy and round, the strategy that goes first alternating.\n",
        options.command,
        meta.elapsed.as_secs_f64(),
        options.nodes,
        meta.memcached,
        meta.keys_per_node,
        options.clients,
        options.callers,
        options.total_callers(),
        options.keys,
        options.keys,
        options.loader.as_millis(),
        options.ttl.as_secs(),
        options.repeats,
    );
    s.push_str("## Summary (every repetition pooled)\n\n");
    s.push_str(&summary_table(summaries));
    s.push_str("\n## Goals of get_or_load\n\n");
    s.push_str(&goals_table(summaries));
    let errors: Vec<String> = summaries
        .iter()
        .filter_map(|x| {
            let e = x.first_error.as_ref()?;
            Some(format!("- {} {}: {e}\n", x.round.name(), x.strategy.name()))
        })
        .collect();
    if !errors.is_empty() {
        s.push_str("\nFirst error of each (round, strategy) that had any:\n\n");
        s.push_str(&errors.concat());
    }
    s.push_str("\n## Every herd\n\n");
    s.push_str(&runs_table(records));
    s
}

/// results.csv: one row per herd, and a row per (round, strategy) with `repeat` = `all`.
pub fn csv(options: &Options, records: &[Record], summaries: &[Summary]) -> String {
    let mut s = String::from("strategy,round,repeat,callers,keys,loads_total,loads_max_per_key,loads_mean_per_key,keys_over_2_loads,errors,wrong_values,p50_ms,p90_ms,p99_ms,max_ms,wall_ms,memcached_gets,memcached_sets\n");
    let callers = options.total_callers();
    for r in records {
        let o = &r.outcome;
        let mut sorted = o.latencies.clone();
        sorted.sort();
        let total: u64 = o.loads.iter().sum();
        let _ = writeln!(
            s,
            "{},{},{},{},{},{},{},{:.3},{},{},{},{:.3},{:.3},{:.3},{:.3},{:.3},{},{}",
            r.strategy.name(),
            r.round.name(),
            r.repeat + 1,
            callers,
            o.loads.len(),
            total,
            o.loads.iter().max().copied().unwrap_or(0),
            total as f64 / o.loads.len().max(1) as f64,
            o.loads.iter().filter(|&&n| n > 2).count(),
            o.errors,
            o.wrong,
            ms(quantile(&sorted, 0.5)),
            ms(quantile(&sorted, 0.9)),
            ms(quantile(&sorted, 0.99)),
            ms(sorted.last().copied().unwrap_or_default()),
            ms(o.wall),
            r.counters.gets,
            r.counters.sets,
        );
    }
    for x in summaries {
        let _ = writeln!(
            s,
            "{},{},all,{},{},{:.0},{},{:.3},{},{},{},{:.3},{:.3},{:.3},{:.3},{:.3},{},{}",
            x.strategy.name(),
            x.round.name(),
            callers,
            options.keys,
            x.loads_mean * options.keys as f64,
            x.loads_max,
            x.loads_mean,
            x.keys_over_two,
            x.errors,
            x.wrong,
            ms(x.p50),
            ms(x.p90),
            ms(x.p99),
            ms(x.max),
            ms(x.wall[0]),
            x.gets,
            x.sets,
        );
    }
    s
}

pub fn write(out: &Path, markdown: &str, csv: &str) -> std::io::Result<()> {
    std::fs::create_dir_all(out)?;
    std::fs::write(out.join("results.md"), markdown)?;
    std::fs::write(out.join("results.csv"), csv)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_quantiles() {
        let d: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(quantile(&d, 0.5), Duration::from_millis(50));
        assert_eq!(quantile(&d, 0.99), Duration::from_millis(99));
        assert_eq!(quantile(&d, 1.0), Duration::from_millis(100));
        assert_eq!(quantile(&d[..1], 0.5), Duration::from_millis(1));
        assert_eq!(quantile(&[], 0.5), Duration::ZERO);
    }

    #[test]
    fn summaries_pool_the_repetitions() {
        let record = |repeat, loads: Vec<u64>, ms: u64| Record {
            repeat,
            round: Round::Cold,
            strategy: Strategy::GetOrLoad,
            outcome: Outcome {
                loads,
                errors: 0,
                first_error: None,
                wrong: 0,
                latencies: vec![Duration::from_millis(ms)],
                wall: Duration::from_millis(ms),
            },
            counters: Counters { gets: 10, sets: 2 },
        };
        let records = [record(0, vec![1, 1], 100), record(1, vec![3, 1], 300)];
        let s = summaries(&records);
        assert_eq!(s.len(), 1);
        assert_eq!((s[0].loads_max, s[0].keys_over_two, s[0].runs), (3, 1, 2));
        assert!((s[0].loads_mean - 1.5).abs() < 1e-9);
        assert_eq!(s[0].max, Duration::from_millis(300));
        assert_eq!(s[0].wall[0], Duration::from_millis(200));
        assert_eq!((s[0].gets, s[0].sets), (10, 2));
        assert!(goals_table(&s).contains("**missed** (max 3)"));
    }
}
