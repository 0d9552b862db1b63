//! Records of single runs, their medians, and the files written from them: runs.csv (every run),
//! results.csv (medians with min and max), results.md (tables and the goal ratios).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use crate::coldstart::ColdStart;
use crate::load::Mix;
use crate::{Measured, Options};

/// One timed run of one peer.
#[derive(Debug, Clone)]
pub struct Record {
    pub mix: Mix,
    pub concurrency: usize,
    pub peer: String,
    pub repeat: usize,
    pub ops: u64,
    pub elapsed_s: f64,
    pub ops_per_s: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    /// Client CPU (this process, user + system) per operation, µs.
    pub client_cpu_us: f64,
    /// memcached CPU (all nodes) per operation, µs.
    pub server_cpu_us: f64,
    pub sockets: usize,
    pub misses: u64,
    pub errors: u64,
    pub capped: bool,
}

impl Record {
    pub fn new(mix: Mix, concurrency: usize, peer: String, repeat: usize, m: &Measured) -> Record {
        let r = &m.result;
        let ops = r.ops.max(1) as f64;
        let q = |p: f64| r.histogram.value_at_quantile(p) as f64 / 1000.0;
        Record {
            mix,
            concurrency,
            peer,
            repeat,
            ops: r.ops,
            elapsed_s: r.elapsed.as_secs_f64(),
            ops_per_s: r.ops as f64 / r.elapsed.as_secs_f64().max(1e-9),
            p50_us: q(0.5),
            p99_us: q(0.99),
            p999_us: q(0.999),
            client_cpu_us: m.client_cpu_us as f64 / ops,
            server_cpu_us: m.server_cpu_us as f64 / ops,
            sockets: m.sockets,
            misses: r.misses,
            errors: r.errors,
            capped: r.capped,
        }
    }
}

/// Median, minimum and maximum of a set of values.
#[derive(Debug, Clone, Copy, Default)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    pub fn of(mut values: Vec<f64>) -> Spread {
        if values.is_empty() {
            return Spread::default();
        }
        values.sort_by(f64::total_cmp);
        let n = values.len();
        let median = if n % 2 == 1 {
            values[n / 2]
        } else {
            (values[n / 2 - 1] + values[n / 2]) / 2.0
        };
        Spread {
            median,
            min: values[0],
            max: values[n - 1],
        }
    }
}

/// The repeats of one (mix, concurrency, peer), summarized.
#[derive(Debug, Clone)]
pub struct Summary {
    pub mix: Mix,
    pub concurrency: usize,
    pub peer: String,
    pub runs: usize,
    pub ops_per_s: Spread,
    pub p50_us: Spread,
    pub p99_us: Spread,
    pub p999_us: Spread,
    pub client_cpu_us: Spread,
    pub server_cpu_us: Spread,
    pub sockets: usize,
    pub misses: u64,
    pub errors: u64,
    pub capped_runs: usize,
}

/// Summaries in (mix, concurrency, first-seen peer) order.
pub fn summarize(records: &[Record]) -> Vec<Summary> {
    let mut peer_order: Vec<&str> = Vec::new();
    for r in records {
        if !peer_order.contains(&r.peer.as_str()) {
            peer_order.push(&r.peer);
        }
    }
    let mut groups: BTreeMap<(usize, usize, usize), Vec<&Record>> = BTreeMap::new();
    for r in records {
        let mix_index = Mix::ALL.iter().position(|m| *m == r.mix).unwrap_or(0);
        let peer_index = peer_order.iter().position(|p| *p == r.peer).unwrap_or(0);
        groups
            .entry((mix_index, r.concurrency, peer_index))
            .or_default()
            .push(r);
    }
    groups
        .into_values()
        .map(|runs| {
            let spread = |f: fn(&Record) -> f64| Spread::of(runs.iter().map(|r| f(r)).collect());
            Summary {
                mix: runs[0].mix,
                concurrency: runs[0].concurrency,
                peer: runs[0].peer.clone(),
                runs: runs.len(),
                ops_per_s: spread(|r| r.ops_per_s),
                p50_us: spread(|r| r.p50_us),
                p99_us: spread(|r| r.p99_us),
                p999_us: spread(|r| r.p999_us),
                client_cpu_us: spread(|r| r.client_cpu_us),
                server_cpu_us: spread(|r| r.server_cpu_us),
                sockets: runs.iter().map(|r| r.sockets).max().unwrap_or(0),
                misses: runs.iter().map(|r| r.misses).sum(),
                errors: runs.iter().map(|r| r.errors).sum(),
                capped_runs: runs.iter().filter(|r| r.capped).count(),
            }
        })
        .collect()
}

fn find<'a>(summary: &'a [Summary], mix: Mix, c: usize, peer: &str) -> Option<&'a Summary> {
    summary
        .iter()
        .find(|s| s.mix == mix && s.concurrency == c && s.peer == peer)
}

/// Whether a peer name is this crate (any settings).
pub fn is_ours(peer: &str) -> bool {
    peer == "mcad" || peer.starts_with("mcad-")
}

/// The other clients: neither this crate nor a raw probe.
pub fn is_other(peer: &str) -> bool {
    !is_ours(peer) && !peer.starts_with("raw")
}

/// `12345.6` as `12.3k`.
/// What a run's line on the terminal ends with: whether it reached its time cap, and its misses
/// and errors if it had any.
pub fn run_flags(capped: bool, misses: u64, errors: u64) -> String {
    let mut flags = String::new();
    if capped {
        flags.push_str("  [time-capped]");
    }
    if misses + errors > 0 {
        let _ = write!(flags, "  [misses {misses} errors {errors}]");
    }
    flags
}

/// An ops/s cell of a table: the median and (min–max), marked † when a run reached its time
/// cap.
pub fn ops_cell(ops: &Spread, capped_runs: usize) -> String {
    format!(
        "{} ({}–{}){}",
        si(ops.median),
        si(ops.min),
        si(ops.max),
        if capped_runs > 0 { " †" } else { "" }
    )
}

pub fn si(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 1e4 {
        format!("{:.1}k", v / 1e3)
    } else if v >= 1e3 {
        format!("{:.2}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

/// Microseconds as `µs` below 1 ms, `ms` above.
pub fn time_us(v: f64) -> String {
    if v >= 1000.0 {
        format!("{:.2} ms", v / 1000.0)
    } else {
        format!("{v:.0} µs")
    }
}

fn peers_in(summary: &[Summary]) -> Vec<String> {
    let mut peers: Vec<String> = Vec::new();
    for s in summary {
        if !peers.contains(&s.peer) {
            peers.push(s.peer.clone());
        }
    }
    peers
}

fn mixes_in(summary: &[Summary]) -> Vec<Mix> {
    Mix::ALL
        .into_iter()
        .filter(|m| summary.iter().any(|s| s.mix == *m))
        .collect()
}

fn concurrencies_in(summary: &[Summary]) -> Vec<usize> {
    let mut cs: Vec<usize> = summary.iter().map(|s| s.concurrency).collect();
    cs.sort_unstable();
    cs.dedup();
    cs
}

/// A short table for the terminal: median ops/s (min–max), p99 and sockets.
pub fn console_table(summary: &[Summary], _options: &Options) -> String {
    let mut out = String::new();
    for s in summary {
        let _ = writeln!(
            out,
            "{:<6} C={:<3} {:<16} {:>8} ops/s ({}–{})  p50 {:>9}  p99 {:>9}  p999 {:>9}  cpu {:.2} µs/op  sockets {}  runs {}{}",
            s.mix.name(),
            s.concurrency,
            s.peer,
            si(s.ops_per_s.median),
            si(s.ops_per_s.min),
            si(s.ops_per_s.max),
            time_us(s.p50_us.median),
            time_us(s.p99_us.median),
            time_us(s.p999_us.median),
            s.client_cpu_us.median,
            s.sockets,
            s.runs,
            if s.misses + s.errors > 0 {
                format!("  misses {} errors {}", s.misses, s.errors)
            } else {
                String::new()
            }
        );
    }
    out
}

/// What the files say about how they were made.
pub struct Meta {
    pub command: String,
    pub memcached_version: String,
    pub nodes: usize,
    pub elapsed: Duration,
}

/// Writes runs.csv, results.csv and results.md into the output directory.
pub fn write_all(
    options: &Options,
    meta: &Meta,
    records: &[Record],
    summary: &[Summary],
    cold: Option<&ColdStart>,
) -> std::io::Result<()> {
    std::fs::create_dir_all(&options.out)?;
    let mut runs = String::from("mix,concurrency,peer,repeat,ops,elapsed_s,ops_per_s,p50_us,p99_us,p999_us,client_cpu_us_per_op,server_cpu_us_per_op,sockets,misses,errors,time_capped\n");
    for r in records {
        let _ = writeln!(
            runs,
            "{},{},{},{},{},{:.4},{:.1},{:.1},{:.1},{:.1},{:.3},{:.3},{},{},{},{}",
            r.mix.name(),
            r.concurrency,
            r.peer,
            r.repeat,
            r.ops,
            r.elapsed_s,
            r.ops_per_s,
            r.p50_us,
            r.p99_us,
            r.p999_us,
            r.client_cpu_us,
            r.server_cpu_us,
            r.sockets,
            r.misses,
            r.errors,
            r.capped
        );
    }
    std::fs::write(options.out.join("runs.csv"), runs)?;

    let mut csv = String::from("mix,concurrency,peer,runs,ops_per_s_median,ops_per_s_min,ops_per_s_max,p50_us,p99_us,p999_us,client_cpu_us_per_op,server_cpu_us_per_op,sockets,misses,errors,time_capped_runs\n");
    for s in summary {
        let _ = writeln!(
            csv,
            "{},{},{},{},{:.1},{:.1},{:.1},{:.1},{:.1},{:.1},{:.3},{:.3},{},{},{},{}",
            s.mix.name(),
            s.concurrency,
            s.peer,
            s.runs,
            s.ops_per_s.median,
            s.ops_per_s.min,
            s.ops_per_s.max,
            s.p50_us.median,
            s.p99_us.median,
            s.p999_us.median,
            s.client_cpu_us.median,
            s.server_cpu_us.median,
            s.sockets,
            s.misses,
            s.errors,
            s.capped_runs
        );
    }
    std::fs::write(options.out.join("results.csv"), csv)?;
    std::fs::write(
        options.out.join("results.md"),
        markdown(options, meta, summary, cold),
    )?;
    Ok(())
}

fn markdown(
    options: &Options,
    meta: &Meta,
    summary: &[Summary],
    cold: Option<&ColdStart>,
) -> String {
    let peers = peers_in(summary);
    let cs = concurrencies_in(summary);
    let mut md = String::new();
    let _ = writeln!(md, "# Load benchmark results\n");
    let _ = writeln!(
        md,
        "Generated by `{}` ({:.0} s). {} local memcached nodes ({}, `-t 1 -m 256`), {} preloaded keys of {} bytes on every node. \
         Every timed run: a fresh client, a warm-up (at least {} ops, at most 1 s), then {} ops with a {:.0} s cap \
         (the raw probe: {} ops). Figures are medians over {} repeat(s), min–max in parentheses. \
         Only ratios within this run mean anything: the machine is shared.\n",
        meta.command,
        meta.elapsed.as_secs_f64(),
        meta.nodes,
        meta.memcached_version,
        crate::load::KEY_COUNT,
        crate::load::VALUE_LEN,
        crate::WARMUP_OPS,
        options.ops,
        options.cap.as_secs_f64(),
        options.raw_ops.unwrap_or(options.ops * 10),
        options.repeats,
    );
    let _ = writeln!(md, "Peers:\n");
    for p in &options.peers {
        let _ = writeln!(md, "- `{}`: {}", p.name(), p.describe());
    }
    let _ = writeln!(md);
    md.push_str(&goals(summary));
    for mix in mixes_in(summary) {
        let _ = writeln!(md, "## {} ({})\n", mix.name(), mix.describe());
        let header = |md: &mut String, title: &str| {
            let _ = write!(md, "| {title} |");
            for c in &cs {
                let _ = write!(md, " C={c} |");
            }
            let _ = write!(md, "\n|---|");
            for _ in &cs {
                md.push_str("---:|");
            }
            md.push('\n');
        };
        let table = |md: &mut String, title: &str, cell: &dyn Fn(&Summary) -> String| {
            let _ = writeln!(md, "**{title}**\n");
            header(md, "peer");
            for p in &peers {
                if !summary.iter().any(|s| s.mix == mix && &s.peer == p) {
                    continue;
                }
                let _ = write!(md, "| {p} |");
                for &c in &cs {
                    match find(summary, mix, c, p) {
                        Some(s) => {
                            let _ = write!(md, " {} |", cell(s));
                        }
                        None => md.push_str(" – |"),
                    }
                }
                md.push('\n');
            }
            md.push('\n');
        };
        table(&mut md, "ops/s, median (min–max)", &|s| {
            ops_cell(&s.ops_per_s, s.capped_runs)
        });
        table(&mut md, "latency p50 / p99 / p999", &|s| {
            format!(
                "{} / {} / {}",
                time_us(s.p50_us.median),
                time_us(s.p99_us.median),
                time_us(s.p999_us.median)
            )
        });
        table(
            &mut md,
            "CPU µs per op, client / memcached (all nodes) · sockets",
            &|s| {
                format!(
                    "{:.1} / {:.1} · {}",
                    s.client_cpu_us.median, s.server_cpu_us.median, s.sockets
                )
            },
        );
        let faults: u64 = summary
            .iter()
            .filter(|s| s.mix == mix)
            .map(|s| s.misses + s.errors)
            .sum();
        let _ = writeln!(
            md,
            "Misses + errors over every run of this mix: {faults}. † = at least one run reached the time cap.\n"
        );
    }
    if summary.iter().any(|s| s.peer == "raw") {
        let _ = writeln!(
            md,
            "The raw probe's latency is that of a whole round (a batch of 100 to every server and all replies), \
             so it is not comparable with the clients' per-call latency.\n"
        );
    }
    if let Some(cold) = cold {
        md.push_str(&cold.markdown());
    }
    md
}

/// The best other client (neither this crate nor raw) at (mix, c) by median ops/s.
fn best_other(summary: &[Summary], mix: Mix, c: usize) -> Option<&Summary> {
    summary
        .iter()
        .filter(|s| s.mix == mix && s.concurrency == c && is_other(&s.peer))
        .max_by(|a, b| a.ops_per_s.median.total_cmp(&b.ops_per_s.median))
}

fn lowest_other(
    summary: &[Summary],
    mix: Mix,
    c: usize,
    key: fn(&Summary) -> f64,
) -> Option<&Summary> {
    summary
        .iter()
        .filter(|s| s.mix == mix && s.concurrency == c && is_other(&s.peer))
        .min_by(|a, b| key(a).total_cmp(&key(b)))
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "**missed**"
    }
}

/// A latency goal: at `callers`, this crate's `percentile` against the lowest of the other
/// clients; `met` judges the ratio.
struct LatencyGoal {
    callers: usize,
    percentile: fn(&Summary) -> f64,
    goal: &'static str,
    met: fn(f64) -> bool,
}

/// The goals of the performance issue, as ratios measured in this run.
pub fn goals(summary: &[Summary]) -> String {
    let mut md = String::from("## Goals, measured in this run\n\n| goal | this crate | reference | ratio | |\n|---|---|---|---:|---|\n");
    let ours: Vec<String> = peers_in(summary)
        .into_iter()
        .filter(|p| is_ours(p))
        .collect();
    let mut row = |goal: String, mine: String, reference: String, ratio: String, ok: bool| {
        let _ = writeln!(
            md,
            "| {goal} | {mine} | {reference} | {ratio} | {} |",
            verdict(ok)
        );
    };
    // The goals of the second round of work on speed.
    for (mix, c, ceiling_goal, peer_goal) in
        [(Mix::Get, 256, 0.9, 3.0), (Mix::Mget10, 64, 0.7, 3.0)]
    {
        for p in &ours {
            let Some(me) = find(summary, mix, c, p) else {
                continue;
            };
            // The ceiling, and the same share against the probe that routes every key (no
            // goal of its own: it shows how much of the gap the routing itself explains).
            let ceilings = [
                ("raw", format!("≥ {ceiling_goal} × raw pipelined ceiling")),
                (
                    "raw-routed",
                    "share of the routed raw probe (context for the line above)".to_string(),
                ),
            ];
            for (probe, goal) in ceilings {
                if let Some(ceiling) = find(summary, mix, c, probe) {
                    let r = me.ops_per_s.median / ceiling.ops_per_s.median;
                    row(
                        format!("{} at C={c}: {goal}", mix.name()),
                        format!("{p} {}", si(me.ops_per_s.median)),
                        format!("{probe} {}", si(ceiling.ops_per_s.median)),
                        format!("{r:.2}"),
                        r >= ceiling_goal,
                    );
                }
            }
            if let Some(best) = best_other(summary, mix, c) {
                let r = me.ops_per_s.median / best.ops_per_s.median;
                row(
                    format!("{} at C={c}: ≥ {peer_goal} × best peer", mix.name()),
                    format!("{p} {}", si(me.ops_per_s.median)),
                    format!("{} {}", best.peer, si(best.ops_per_s.median)),
                    format!("{r:.2}"),
                    r >= peer_goal,
                );
            }
        }
    }
    let latency_goals = [
        LatencyGoal {
            callers: 64,
            percentile: |s| s.p99_us.median,
            goal: "p99 at C=64 below the best peer's",
            met: |r| r < 1.0,
        },
        LatencyGoal {
            callers: 1,
            percentile: |s| s.p50_us.median,
            goal: "p50 at C=1 no worse than the best peer's",
            met: |r| r <= 1.0,
        },
        LatencyGoal {
            callers: 1,
            percentile: |s| s.p99_us.median,
            goal: "p99 at C=1 no worse than the best peer's",
            met: |r| r <= 1.0,
        },
    ];
    for LatencyGoal {
        callers: c,
        percentile: latency,
        goal,
        met,
    } in latency_goals
    {
        for mix in mixes_in(summary) {
            for p in &ours {
                if let (Some(me), Some(best)) = (
                    find(summary, mix, c, p),
                    lowest_other(summary, mix, c, latency),
                ) {
                    let r = latency(me) / latency(best);
                    row(
                        format!("{} {goal}", mix.name()),
                        format!("{p} {}", time_us(latency(me))),
                        format!("{} {}", best.peer, time_us(latency(best))),
                        format!("{r:.2}"),
                        met(r),
                    );
                }
            }
        }
    }
    for p in &ours {
        if let Some(me) = find(summary, Mix::Get, 256, p) {
            let v = me.client_cpu_us.median;
            row(
                "client CPU per get ≤ 1.5 µs (C=256)".into(),
                format!("{p} {v:.2} µs"),
                "1.5 µs".into(),
                format!("{:.2}", v / 1.5),
                v <= 1.5,
            );
        }
    }
    md.push('\n');
    md
}
