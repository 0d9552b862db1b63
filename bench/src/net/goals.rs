//! The goals table and the cold-start section of network.md.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::measure::{event_text, Cold, Net, NetMix, Ping};
use super::report::{behind, best_other, key, median_u, ours, verdict, Key, Sum};
use super::NetOptions;
use crate::report::{si, time_us, Spread};

/// What a round trip and a connection cost through the line, measured at the start of the
/// run (medians, µs).
#[derive(Debug, Clone, Copy)]
pub(super) struct Measured {
    /// A `version` round trip on an open connection.
    pub(super) rtt: f64,
    /// What connecting adds: connect + first `version` on a fresh connection, less `rtt`.
    pub(super) connect: f64,
}

impl Measured {
    /// The time `connects` connections and `turns` exchanges take in series through the line.
    fn trips(&self, connects: f64, turns: f64) -> f64 {
        connects * self.connect + turns * self.rtt
    }
}

pub(super) fn measured_rtt(pings: &[Vec<Ping>]) -> Option<Measured> {
    pings
        .first()?
        .iter()
        .find(|p| p.net == Net::Delay)
        .map(|p| {
            let rtt = Ping::at(&p.rtt_us, 0.5);
            Measured {
                rtt,
                connect: Ping::at(&p.connect_us, 0.5) - rtt,
            }
        })
}

pub(super) fn goals(
    o: &NetOptions,
    sums: &BTreeMap<Key, Sum>,
    colds: &[Cold],
    rtt: Option<Measured>,
) -> String {
    let mut md = String::from(
        "## Goals, measured in this run\n\n| goal | this crate | best other client | ratio | |\n|---|---|---|---:|---|\n",
    );
    let mut row = |goal: String, mine: String, reference: String, ratio: f64, ok: bool| {
        let _ = writeln!(
            md,
            "| {goal} | {mine} | {reference} | {ratio:.2} | {} |",
            verdict(ok)
        );
    };
    let ct = o.current_thread;
    for p in ours(o) {
        // Throughput through the line, with the sockets each side used.
        for (c, want, what) in [
            (256, 2.0, "≥ 2 × the best peer"),
            (64, 0.95, "the same as the best peer (≥ 0.95 ×)"),
        ] {
            let block = (NetMix::Get, c, ct, Net::Delay);
            let Some(me) = sums.get(&key(NetMix::Get, c, ct, Net::Delay, &p)) else {
                continue;
            };
            if let Some((name, best)) = best_other(sums, block, |s| s.ops.median, true) {
                let r = me.ops.median / best.ops.median;
                row(
                    format!("get C={c} through the line: ops/s {what}"),
                    format!(
                        "{p} {}, {} sockets{}",
                        si(me.ops.median),
                        me.sockets,
                        behind(me, o)
                    ),
                    format!(
                        "{name} {}, {} sockets{}",
                        si(best.ops.median),
                        best.sockets,
                        behind(best, o)
                    ),
                    r,
                    r >= want,
                );
            }
            if let Some((name, best)) = best_other(sums, block, |s| s.p99, false) {
                let r = me.p99 / best.p99;
                row(
                    format!("get C={c} through the line: p99 no worse than the best peer's"),
                    format!("{p} {}{}", time_us(me.p99), behind(me, o)),
                    format!("{name} {}{}", time_us(best.p99), behind(best, o)),
                    r,
                    r <= 1.0,
                );
            }
        }
        for net in [Net::Loopback, Net::Delay] {
            for &c in &o.hol_concurrency {
                let block = (NetMix::Hol, c, ct, net);
                let Some(me) = sums.get(&key(NetMix::Hol, c, ct, net, &p)) else {
                    continue;
                };
                if let Some((name, best)) = best_other(sums, block, |s| s.small_p99, false) {
                    let r = me.small_p99 / best.small_p99;
                    row(
                        format!(
                            "hol C={c} {}: p99 of the small gets ≤ 1.5 × the best peer's",
                            net.name()
                        ),
                        format!("{p} {}", time_us(me.small_p99)),
                        format!("{name} {}", time_us(best.small_p99)),
                        r,
                        r <= 1.5,
                    );
                }
            }
        }
        for net in [Net::Loopback, Net::Delay] {
            let block = (NetMix::Get, 1, true, net);
            let Some(me) = sums.get(&key(NetMix::Get, 1, true, net, &p)) else {
                continue;
            };
            for (what, figure) in [
                ("p50", (|s: &Sum| s.p50) as fn(&Sum) -> f64),
                ("p99", |s| s.p99),
            ] {
                if let Some((name, best)) = best_other(sums, block, figure, false) {
                    let r = figure(me) / figure(best);
                    row(
                        format!(
                            "lone caller (current-thread) {}: {what} no worse than the best peer's",
                            net.name()
                        ),
                        format!("{p} {}", time_us(figure(me))),
                        format!("{name} {}", time_us(figure(best))),
                        r,
                        r <= 1.0,
                    );
                }
            }
        }
    }
    for c in colds.iter().filter(|c| c.net == Net::Delay) {
        let (connects, turns) = round_trips(c);
        let trips = connects + turns;
        let total = Spread::of(c.phases.total_us.clone()).median;
        let beyond = total - trips * c.rtt_us;
        // Plaintext: connect and one exchange to each of the endpoint and the node; TLS adds
        // a handshake to each.
        let (most, limit_us, what) = if c.tls {
            (6.0, 2000.0, "TLS")
        } else {
            (4.0, 500.0, "plaintext")
        };
        let limit = time_us(limit_us);
        row(
            format!("cold start through the line, {what}: ≤ {most} round trips (connects + turns)"),
            format!("mcad {trips:.0}"),
            format!("{most}"),
            trips / most,
            trips <= most,
        );
        row(
            format!("cold start through the line, {what}: time beyond the round trips (nominal RTT) ≤ {limit}"),
            format!(
                "mcad {} − {trips:.0} × {} = {}",
                time_us(total),
                time_us(c.rtt_us),
                time_us(beyond)
            ),
            limit.clone(),
            beyond / limit_us,
            beyond <= limit_us,
        );
        if let Some(m) = rtt {
            let beyond = total - m.trips(connects, turns);
            row(
                format!("cold start through the line, {what}: time beyond the round trips (as measured by the ping: a connect {}, a turn {}) ≤ {limit}", time_us(m.connect), time_us(m.rtt)),
                format!("mcad {} − {connects:.0} × {} − {turns:.0} × {} = {}", time_us(total), time_us(m.connect), time_us(m.rtt), time_us(beyond)),
                limit.clone(),
                beyond / limit_us,
                beyond <= limit_us,
            );
        }
    }
    md.push('\n');
    md
}

/// A cold start's round trips through the line, medians: connects and turns, to the endpoint
/// and to the nodes together.
fn round_trips(c: &Cold) -> (f64, f64) {
    (
        median_u(&c.endpoint_connects) + median_u(&c.node_connects),
        median_u(&c.endpoint_turns) + median_u(&c.node_turns),
    )
}

pub(super) fn cold_section(md: &mut String, colds: &[Cold], rtt: Option<Measured>) {
    if colds.is_empty() {
        return;
    }
    let _ = writeln!(
        md,
        "## Cold start: `build()` → first `get` answered ({} samples per network)\n\n| network | `build()` | first `get` | total (min–max) | async-memcached: connect + `get` (no discovery) |\n|---|---:|---:|---:|---:|",
        colds[0].phases.total_us.len()
    );
    for c in colds {
        let t = Spread::of(c.phases.total_us.clone());
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} ({}–{}) | {} |",
            c.label(),
            time_us(Spread::of(c.phases.build_us.clone()).median),
            time_us(Spread::of(c.phases.first_get_us.clone()).median),
            time_us(t.median),
            time_us(t.min),
            time_us(t.max),
            if c.peer_us.is_empty() {
                "–".into()
            } else {
                time_us(Spread::of(c.peer_us.clone()).median)
            }
        );
    }
    for c in colds.iter().filter(|c| c.net == Net::Delay) {
        let (connects, turns) = round_trips(c);
        let trips = connects + turns;
        let total = Spread::of(c.phases.total_us.clone()).median;
        let _ = writeln!(
            md,
            "\n{}: round trips the line counted up to the answer (medians; a *turn* is a reply read after a request on the same connection):\n\n| | connects | turns |\n|---|---:|---:|\n| endpoint | {} | {} |\n| nodes | {} | {} |\n\nTotal {trips:.0} round trips × {} (the line's nominal RTT) = {}; the median total {} leaves **{}** beyond them ({} with what the ping measured: a connect {}, a turn {}).\n",
            c.label(),
            median_u(&c.endpoint_connects),
            median_u(&c.endpoint_turns),
            median_u(&c.node_connects),
            median_u(&c.node_turns),
            time_us(c.rtt_us),
            time_us(trips * c.rtt_us),
            time_us(total),
            time_us(total - trips * c.rtt_us),
            rtt.map_or("–".into(), |m| time_us(total - m.trips(connects, turns))),
            rtt.map_or("–".into(), |m| time_us(m.connect)),
            rtt.map_or("–".into(), |m| time_us(m.rtt))
        );
        // The timeline of the sample with the median total.
        let mut order: Vec<usize> = (0..c.phases.total_us.len()).collect();
        order.sort_by(|&a, &b| c.phases.total_us[a].total_cmp(&c.phases.total_us[b]));
        if let Some(&i) = order.get(order.len() / 2) {
            let _ = writeln!(
                md,
                "What the line saw in the median sample ({}: sample {}, total {}; times from the call of `build()`, when the line read each chunk; it leaves half an RTT later):\n\n| at | event |\n|---:|---|",
                c.label(),
                i + 1,
                time_us(c.phases.total_us[i])
            );
            for e in &c.timelines[i] {
                let _ = writeln!(
                    md,
                    "| {:.3} ms | {} |",
                    e.at_ns as f64 / 1e6,
                    event_text(e, c.nodes)
                );
            }
            let _ = writeln!(
                md,
                "| {:.3} ms | the `get` returned |\n",
                c.phases.total_us[i] / 1e3
            );
        }
    }
}
