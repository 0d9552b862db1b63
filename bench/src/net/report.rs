//! network.md and network.csv of the network mode: the measured RTT, the goals, the tables of
//! both networks side by side, and cold start with its round trips.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use super::goals::{cold_section, goals, measured_rtt};
use super::measure::{Cold, Net, NetMix, Ping, Run};
use super::{NetOptions, BIG_EVERY, BIG_LEN};
use crate::report::{is_ours, run_flags, si, time_us, Spread};

/// One line per run, for the terminal.
pub fn progress(r: &Run) -> String {
    format!(
        "{:<8} {:<3} C={:<3}{} {:<16} {:>8} ops/s  p50 {:>9}  p99 {:>9}{}  cpu {:.2} µs/op (line {:.2})  sockets {:>3}  line late p99 {:.0} µs{}",
        r.net.name(),
        r.mix.name(),
        r.concurrency,
        if r.current_thread { " ct" } else { "   " },
        r.peer,
        si(r.ops_per_s),
        time_us(r.p50_us),
        time_us(r.p99_us),
        if r.mix == NetMix::Hol {
            format!(
                "  small p99 {}  big p50 {} p99 {}",
                time_us(r.small_p99_us),
                time_us(r.big_p50_us),
                time_us(r.big_p99_us)
            )
        } else {
            String::new()
        },
        r.client_cpu_us,
        r.line_cpu_us,
        r.sockets,
        r.late_p99_us,
        run_flags(r.capped, r.misses, r.errors)
    )
}

pub fn ping_line(pings: &[Ping]) -> String {
    pings
        .iter()
        .map(|p| {
            format!(
                "ping ({}) {}: version RTT min {:.0} p50 {:.0} p99 {:.0} µs; connect + first version p50 {:.0} µs",
                p.when,
                p.net.name(),
                Ping::at(&p.rtt_us, 0.0),
                Ping::at(&p.rtt_us, 0.5),
                Ping::at(&p.rtt_us, 0.99),
                Ping::at(&p.connect_us, 0.5)
            )
        })
        .collect::<Vec<_>>()
        .join("\n# ")
}

pub(super) fn median_u(v: &[u64]) -> f64 {
    Spread::of(v.iter().map(|&x| x as f64).collect()).median
}

pub fn cold_line(c: &Cold) -> String {
    format!(
        "cold start {}: build() {:.0} µs, first get {:.0} µs, total {:.0} µs (median of {}); through the line: connects {} + {}, turns {} + {} (endpoint + nodes, medians)",
        c.label(),
        Spread::of(c.phases.build_us.clone()).median,
        Spread::of(c.phases.first_get_us.clone()).median,
        Spread::of(c.phases.total_us.clone()).median,
        c.phases.total_us.len(),
        median_u(&c.endpoint_connects),
        median_u(&c.node_connects),
        median_u(&c.endpoint_turns),
        median_u(&c.node_turns)
    )
}

/// What the report says about how it was made.
pub struct Meta {
    pub memcached: String,
    pub started_utc: String,
    pub elapsed: Duration,
    pub load_start: String,
    pub load_end: String,
    /// What the line held each chunk, µs, and whether its thread ran SCHED_FIFO.
    pub hold_us: f64,
    pub realtime: bool,
}

/// The repeats of one (mix, C, runtime, network, peer).
pub(super) struct Sum {
    pub(super) runs: usize,
    pub(super) ops: Spread,
    pub(super) p50: f64,
    pub(super) p99: f64,
    pub(super) small_p50: f64,
    pub(super) small_p99: f64,
    pub(super) big_p50: f64,
    pub(super) big_p99: f64,
    pub(super) client_cpu: f64,
    pub(super) line_cpu: f64,
    pub(super) sockets: usize,
    pub(super) late_p99: f64,
    pub(super) faults: u64,
    pub(super) capped: usize,
}

pub(super) type Key = (usize, usize, bool, usize, String);

pub(super) fn key(mix: NetMix, c: usize, ct: bool, net: Net, peer: &str) -> Key {
    (mix as usize, c, ct, net as usize, peer.to_string())
}

pub(super) fn summarize(runs: &[Run]) -> BTreeMap<Key, Sum> {
    let mut groups: BTreeMap<Key, Vec<&Run>> = BTreeMap::new();
    for r in runs {
        groups
            .entry(key(r.mix, r.concurrency, r.current_thread, r.net, &r.peer))
            .or_default()
            .push(r);
    }
    groups
        .into_iter()
        .map(|(k, rs)| {
            let m = |f: fn(&Run) -> f64| Spread::of(rs.iter().map(|r| f(r)).collect());
            let sum = Sum {
                runs: rs.len(),
                ops: m(|r| r.ops_per_s),
                p50: m(|r| r.p50_us).median,
                p99: m(|r| r.p99_us).median,
                small_p50: m(|r| r.small_p50_us).median,
                small_p99: m(|r| r.small_p99_us).median,
                big_p50: m(|r| r.big_p50_us).median,
                big_p99: m(|r| r.big_p99_us).median,
                client_cpu: m(|r| r.client_cpu_us).median,
                line_cpu: m(|r| r.line_cpu_us).median,
                sockets: rs.iter().map(|r| r.sockets).max().unwrap_or(0),
                late_p99: m(|r| r.late_p99_us).median,
                faults: rs.iter().map(|r| r.misses + r.errors).sum(),
                capped: rs.iter().filter(|r| r.capped).count(),
            };
            (k, sum)
        })
        .collect()
}

/// ` ‡` when the line fell behind in these runs: its p99 release came more than a quarter of
/// the RTT late (a line short of CPU adds to the latency, and caps the throughput, of the
/// clients that send the most chunks).
pub(super) fn behind(s: &Sum, o: &NetOptions) -> &'static str {
    if s.late_p99 > o.rtt.as_secs_f64() * 1e6 / 4.0 {
        " ‡"
    } else {
        ""
    }
}

pub(super) fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "**missed**"
    }
}

fn ops_cell(s: &Sum) -> String {
    crate::report::ops_cell(&s.ops, s.capped)
}

/// The peers of a block that are not this crate, by a figure: the best (highest ops/s, or
/// lowest latency).
pub(super) fn best_other(
    sums: &BTreeMap<Key, Sum>,
    block: (NetMix, usize, bool, Net),
    figure: fn(&Sum) -> f64,
    highest: bool,
) -> Option<(&str, &Sum)> {
    let (mix, c, ct, net) = block;
    sums.iter()
        .filter(|(k, _)| {
            k.0 == mix as usize && k.1 == c && k.2 == ct && k.3 == net as usize && !is_ours(&k.4)
        })
        .map(|(k, s)| (k.4.as_str(), s))
        .reduce(|a, b| {
            let better = if highest {
                figure(b.1) > figure(a.1)
            } else {
                figure(b.1) < figure(a.1)
            };
            if better {
                b
            } else {
                a
            }
        })
}

pub(super) fn ours(o: &NetOptions) -> Vec<String> {
    o.peers
        .iter()
        .map(|p| p.name())
        .filter(|p| is_ours(p))
        .collect()
}

fn ping_table(md: &mut String, pings: &[Vec<Ping>]) {
    md.push_str("| probe | network | min | p50 | p99 | max |\n|---|---|---:|---:|---:|---:|\n");
    for p in pings.iter().flatten() {
        for (what, v) in [
            (
                format!(
                    "`version` round trips on one connection ({} of them, {} of the run)",
                    p.rtt_us.len(),
                    p.when
                ),
                &p.rtt_us,
            ),
            (
                format!(
                    "connect + first `version` ({} fresh connections, {} of the run)",
                    p.connect_us.len(),
                    p.when
                ),
                &p.connect_us,
            ),
        ] {
            let _ = writeln!(
                md,
                "| {what} | {} | {} | {} | {} | {} |",
                p.net.name(),
                time_us(Ping::at(v, 0.0)),
                time_us(Ping::at(v, 0.5)),
                time_us(Ping::at(v, 0.99)),
                time_us(Ping::at(v, 1.0))
            );
        }
    }
    md.push('\n');
}

fn load_table(
    md: &mut String,
    o: &NetOptions,
    sums: &BTreeMap<Key, Sum>,
    mix: NetMix,
    c: usize,
    ct: bool,
) {
    let title = match (mix, ct) {
        (NetMix::Get, true) if !o.current_thread => {
            format!("### get, lone caller on a current-thread runtime (C={c})")
        }
        (NetMix::Get, _) => format!("### get, C={c}"),
        (NetMix::Hol, _) => format!("### hol (head of line), C={c}"),
    };
    let _ = writeln!(md, "{title}\n");
    if mix == NetMix::Get {
        md.push_str("| peer | network | ops/s median (min–max) | p50 | p99 | client CPU µs/op | line CPU µs/op | sockets | line late p99 |\n|---|---|---:|---:|---:|---:|---:|---:|---:|\n");
    } else {
        md.push_str("| peer | network | ops/s median (min–max) | small p50 | small p99 | big p50 | big p99 | client CPU µs/op | line CPU µs/op | sockets | line late p99 |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    }
    for p in &o.peers {
        for net in [Net::Loopback, Net::Delay] {
            let Some(s) = sums.get(&key(mix, c, ct, net, &p.name())) else {
                continue;
            };
            let line = |v: f64| {
                if net == Net::Delay {
                    format!("{v:.2}")
                } else {
                    "–".into()
                }
            };
            let late = if net == Net::Delay {
                format!("{}{}", time_us(s.late_p99), behind(s, o))
            } else {
                "–".into()
            };
            let fault = if s.faults > 0 {
                format!(" ({} faults)", s.faults)
            } else {
                String::new()
            };
            if mix == NetMix::Get {
                let _ = writeln!(
                    md,
                    "| {}{fault} | {} | {} | {} | {} | {:.2} | {} | {} | {late} |",
                    p.name(),
                    net.name(),
                    ops_cell(s),
                    time_us(s.p50),
                    time_us(s.p99),
                    s.client_cpu,
                    line(s.line_cpu),
                    s.sockets
                );
            } else {
                let _ = writeln!(
                    md,
                    "| {}{fault} | {} | {} | {} | {} | {} | {} | {:.2} | {} | {} | {late} |",
                    p.name(),
                    net.name(),
                    ops_cell(s),
                    time_us(s.small_p50),
                    time_us(s.small_p99),
                    time_us(s.big_p50),
                    time_us(s.big_p99),
                    s.client_cpu,
                    line(s.line_cpu),
                    s.sockets
                );
            }
        }
    }
    md.push('\n');
}

pub fn markdown(
    o: &NetOptions,
    meta: &Meta,
    runs: &[Run],
    pings: &[Vec<Ping>],
    colds: &[Cold],
) -> String {
    let sums = summarize(runs);
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mut md = format!(
        "# Network: loopback and a delay line of {} RTT, side by side\n\n```sh\n{}\n```\n\n",
        time_us(o.rtt.as_secs_f64() * 1e6),
        o.command
    );
    let _ = writeln!(
        md,
        "- Started {} and took {:.0} s; {cores} cores; load average (1, 5, 15 min) {} at the start, {} at the end.\n- {} memcached nodes ({}), keys preloaded on every node: `pb:00000`… with {} B values (mix `get`), `hol:00000`… with every {BIG_EVERY}th value {BIG_LEN} B and the rest {} B (mix `hol`).\n- Every run: a fresh client, a warm-up (at least 2000 ops, at most 1 s), then a timed phase of `--ops` {} operations (through the line at most C × {} s / RTT) with a {} s cap (runs that reached it: †). Figures are medians over {} repeat(s). Peer order rotates per block; loopback and delayed blocks alternate. Pooled peers get a pool per node sized to C; this crate discovers the nodes from the endpoint (through the line: a second endpoint listing the line's addresses, itself behind the line).\n- Client CPU is this process's CPU (`getrusage`) less the line thread's; the line's own CPU is reported apart. Sockets through the line: the most client connections the line held at once (this crate's include its endpoint connection, if it keeps one). *Line late p99*: how late the line released chunks against their due time (timer wake-up and scheduling on a busy machine), p99 over the timed phase; ‡ marks runs where it exceeded RTT/4, i.e. where the line itself, short of CPU, added to the latency and capped the throughput.\n",
        meta.started_utc,
        meta.elapsed.as_secs_f64(),
        meta.load_start,
        meta.load_end,
        o.nodes,
        meta.memcached,
        crate::load::VALUE_LEN,
        crate::load::VALUE_LEN,
        o.ops,
        o.delay_secs,
        o.cap.as_secs_f64(),
        o.repeats
    );
    md.push_str("## The delay line's real RTT\n\n");
    let _ = writeln!(
        md,
        "The line held each chunk **{:.1} µs** each way: the one-way delay of {:.1} µs less the line's own wake-ups, calibrated at the start (three rounds of 200 `version` pings) so that the median round trip through the line exceeds the one straight to the node by the RTT asked for. Its thread ran {}. Through the line, `version` on one connection measures the RTT a client sees; connect + first `version` is two round trips (the line charges a new connection's first bytes the handshake).\n",
        meta.hold_us,
        o.rtt.as_secs_f64() * 1e6 / 2.0,
        if meta.realtime { "SCHED_FIFO (priority 1), so that it stays on time on a busy machine" } else { "at nice −10 (SCHED_FIFO was refused)" }
    );
    ping_table(&mut md, pings);
    md.push_str(&goals(o, &sums, colds, measured_rtt(pings)));
    md.push_str("## Load\n\n");
    let mut blocks: Vec<(NetMix, usize, bool)> = Vec::new();
    for k in sums.keys() {
        let mix = if k.0 == NetMix::Get as usize {
            NetMix::Get
        } else {
            NetMix::Hol
        };
        if !blocks.contains(&(mix, k.1, k.2)) {
            blocks.push((mix, k.1, k.2));
        }
    }
    for (mix, c, ct) in blocks {
        load_table(&mut md, o, &sums, mix, c, ct);
    }
    let faults: u64 = runs.iter().map(|r| r.misses + r.errors).sum();
    let _ = writeln!(
        md,
        "Misses and errors over every run: {faults}. Runs: {} ({} groups).\n",
        runs.len(),
        sums.values().map(|s| s.runs).filter(|&r| r > 0).count()
    );
    cold_section(&mut md, colds, measured_rtt(pings));
    md
}

pub fn csv(runs: &[Run]) -> String {
    let mut out = String::new();
    for (i, r) in runs.iter().enumerate() {
        let fields: Vec<(&str, String)> = vec![
            ("network", r.net.name().into()),
            ("mix", r.mix.name().into()),
            ("concurrency", r.concurrency.to_string()),
            (
                "runtime",
                if r.current_thread {
                    "current-thread"
                } else {
                    "multi-thread"
                }
                .into(),
            ),
            ("peer", r.peer.clone()),
            ("repeat", r.repeat.to_string()),
            ("ops", r.ops.to_string()),
            ("elapsed_s", format!("{:.4}", r.elapsed_s)),
            ("ops_per_s", format!("{:.0}", r.ops_per_s)),
            ("p50_us", format!("{:.1}", r.p50_us)),
            ("p99_us", format!("{:.1}", r.p99_us)),
            ("p999_us", format!("{:.1}", r.p999_us)),
            ("small_p50_us", format!("{:.1}", r.small_p50_us)),
            ("small_p99_us", format!("{:.1}", r.small_p99_us)),
            ("big_ops", r.big_ops.to_string()),
            ("big_p50_us", format!("{:.1}", r.big_p50_us)),
            ("big_p99_us", format!("{:.1}", r.big_p99_us)),
            ("client_cpu_us_per_op", format!("{:.3}", r.client_cpu_us)),
            ("server_cpu_us_per_op", format!("{:.3}", r.server_cpu_us)),
            ("line_cpu_us_per_op", format!("{:.3}", r.line_cpu_us)),
            ("sockets", r.sockets.to_string()),
            ("line_late_p50_us", format!("{:.1}", r.late_p50_us)),
            ("line_late_p99_us", format!("{:.1}", r.late_p99_us)),
            ("misses", r.misses.to_string()),
            ("errors", r.errors.to_string()),
            ("capped", r.capped.to_string()),
        ];
        if i == 0 {
            let _ = writeln!(
                out,
                "{}",
                fields.iter().map(|f| f.0).collect::<Vec<_>>().join(",")
            );
        }
        let _ = writeln!(
            out,
            "{}",
            fields
                .iter()
                .map(|f| f.1.as_str())
                .collect::<Vec<_>>()
                .join(",")
        );
    }
    out
}
