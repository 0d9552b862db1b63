//! What `loadbench --near-cache` writes: the progress lines, near-cache.md (the goals, then a
//! table per section, medians over the repeats) and near-cache.csv (every run).

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use memcached_autodiscovery::NearCacheStats;

use super::measure::Zipf;
use super::measure::{HitCost, Run, Scan, RSS_EVERY, SAMPLE_EVERY, SCAN_MAX_AGE, YIELD_EVERY};
use super::{NearOptions, Side};
use crate::load::VALUE_LEN;
use crate::report::{si, Spread};

/// Allowance for the allocator in the memory goal: a sixteenth of the budget.
pub(super) const SLACK_DIVISOR: u64 = 16;

pub(super) fn progress(r: &Run) -> String {
    format!(
        "{:<11} r{} near {:<3} {:>9}/s  p50 {:>9}  p99 {:>9}  cpu {:.2} µs/read  busiest node {:.3} req/read (×{:.2} mean){}{}",
        r.section,
        r.repeat + 1,
        r.side.name(),
        si(r.reads_per_s),
        us(r.p50_us),
        us(r.p99_us),
        r.client_cpu_us,
        r.busiest_per_read,
        r.busiest_over_mean,
        r.hit_ratio()
            .map(|h| format!("  hits {:.1} %", h * 100.0))
            .unwrap_or_default(),
        if r.not_found + r.errors > 0 {
            format!("  [not found {} errors {}]", r.not_found, r.errors)
        } else {
            String::new()
        }
    )
}

/// Microseconds with sub-µs precision below 10 µs.
pub(super) fn us(v: f64) -> String {
    if v >= 1000.0 {
        format!("{:.2} ms", v / 1000.0)
    } else if v >= 10.0 {
        format!("{v:.0} µs")
    } else {
        format!("{v:.2} µs")
    }
}

pub(super) fn mib(kib: f64) -> String {
    format!("{:.1} MiB", kib / 1024.0)
}

/// `1970-01-01T00:00:00Z` style, from the system clock.
pub(crate) fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Civil date from days since the epoch (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Medians over the repeats of one section and side.
pub(super) struct Medians {
    pub(super) runs: usize,
    pub(super) reads_per_s: Spread,
    pub(super) p50_us: f64,
    pub(super) p99_us: f64,
    pub(super) p999_us: f64,
    pub(super) client_cpu_us: f64,
    pub(super) server_cpu_us: f64,
    pub(super) busiest_per_read: Spread,
    pub(super) busiest_over_mean: f64,
    pub(super) hit_ratio: Option<f64>,
    pub(super) not_found: u64,
    pub(super) errors: u64,
}

pub(super) fn medians(runs: &[Run], section: &str, side: Side) -> Option<Medians> {
    let mine: Vec<&Run> = runs
        .iter()
        .filter(|r| r.section == section && r.side == side)
        .collect();
    if mine.is_empty() {
        return None;
    }
    let spread = |f: fn(&Run) -> f64| Spread::of(mine.iter().map(|r| f(r)).collect());
    let hit_ratios: Vec<f64> = mine.iter().filter_map(|r| r.hit_ratio()).collect();
    Some(Medians {
        runs: mine.len(),
        reads_per_s: spread(|r| r.reads_per_s),
        p50_us: spread(|r| r.p50_us).median,
        p99_us: spread(|r| r.p99_us).median,
        p999_us: spread(|r| r.p999_us).median,
        client_cpu_us: spread(|r| r.client_cpu_us).median,
        server_cpu_us: spread(|r| r.server_cpu_us).median,
        busiest_per_read: spread(|r| r.busiest_per_read),
        busiest_over_mean: spread(|r| r.busiest_over_mean).median,
        hit_ratio: (!hit_ratios.is_empty()).then(|| Spread::of(hit_ratios).median),
        not_found: mine.iter().map(|r| r.not_found).sum(),
        errors: mine.iter().map(|r| r.errors).sum(),
    })
}

pub(super) fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "**missed**"
    }
}

/// When and where the run happened.
pub(super) struct Meta {
    pub(super) memcached: String,
    pub(super) started_utc: String,
    pub(super) elapsed: Duration,
    /// `/proc/loadavg` at the start and at the end: other work on the machine shows there.
    pub(super) load_start: String,
    pub(super) load_end: String,
}

/// The 1, 5 and 15-minute load averages.
pub(crate) fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

pub(super) fn markdown(
    o: &NearOptions,
    meta: &Meta,
    runs: &[Run],
    hits: &[HitCost],
    scans: &[Scan],
) -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mut md = String::new();
    let _ = writeln!(md, "# Near cache: off and on, side by side\n");
    let _ = writeln!(md, "Command: `{}`\n", o.command);
    let _ = writeln!(
        md,
        "Started {} ({:.0} s), on a machine with {cores} cores (load average {} at the start, {} at the end); \
         the clients share one tokio runtime ({}); {} local memcached nodes ({}).\n",
        meta.started_utc,
        meta.elapsed.as_secs_f64(),
        meta.load_start,
        meta.load_end,
        if o.current_thread {
            "current-thread".to_string()
        } else {
            "2 worker threads".to_string()
        },
        o.nodes,
        meta.memcached,
    );
    let zipf = Zipf::new(o.key_count, o.zipf);
    let _ = writeln!(
        md,
        "Workload: {} keys `hot:000000` ... with {VALUE_LEN}-byte values, preloaded on every node; each read is a `get` \
         of a key whose rank is drawn from a Zipf distribution, s = {} (the top key gets {:.1} % of the reads, \
         the top 1 % of keys {:.1} %); {} callers. Near cache: budget {} bytes, max age {} ms. \
         Every repeat builds a fresh client per side, the one without near cache first in repeats 1, 3, ... and second in repeats 2, 4, ...; \
         every timed run lasts {:.1} s after a warm-up of the same kind lasting {:.1} s. \
         Figures are medians over {} repeat(s), min–max in parentheses where shown.\n",
        o.key_count,
        o.zipf,
        zipf.share(1) * 100.0,
        zipf.share(o.key_count / 100) * 100.0,
        o.concurrency,
        o.budget,
        o.max_age.as_millis(),
        o.secs.as_secs_f64(),
        o.warmup().as_secs_f64(),
        o.repeats,
    );
    let _ = writeln!(
        md,
        "How: latency is per read, from its issue to its answer, recorded in nanoseconds; client CPU is this \
         process's `getrusage` (user + system) over the run divided by the reads, so it includes the harness \
         (the key draw, the clock reads, the histogram) on both sides; memcached CPU is the nodes' /proc times. \
         Node requests are each node's `cmd_get` (from `stats`) after the run minus before. \
         Every caller calls `tokio::task::yield_now` every {YIELD_EVERY} reads, on both sides: a near-cache hit \
         never returns `Pending`, so a caller that never yields would hold its worker thread.\n"
    );

    let off_u = medians(runs, "unthrottled", Side::Off);
    let on_u = medians(runs, "unthrottled", Side::On);
    let off_t = medians(runs, "throttled", Side::Off);
    let on_t = medians(runs, "throttled", Side::On);
    let hit_on = hits.iter().find(|h| h.side == Side::On);
    let scan_of = |side| scans.iter().find(|s: &&Scan| s.side == side);
    let (scan_off, scan_on) = (scan_of(Side::Off), scan_of(Side::On));

    let _ = writeln!(md, "## Goals, measured in this run\n");
    let _ = writeln!(md, "| goal | measured | |\n|---|---|---|");
    if let (Some(off), Some(on)) = (&off_t, &on_t) {
        let ratio = off.busiest_per_read.median / on.busiest_per_read.median.max(1e-12);
        let _ = writeln!(
            md,
            "| busiest node's requests per read ≥ 5 × fewer at the same read rate ({} reads/s) | off {:.4}, on {:.4}: {ratio:.1} × fewer | {} |",
            si(o.rate),
            off.busiest_per_read.median,
            on.busiest_per_read.median,
            verdict(ratio >= 5.0)
        );
        let _ = writeln!(
            md,
            "| busiest/mean node requests ≤ 1.5, near cache on, at {} reads/s | {:.2} (off: {:.2}) | {} |",
            si(o.rate),
            on.busiest_over_mean,
            off.busiest_over_mean,
            verdict(on.busiest_over_mean <= 1.5)
        );
    }
    if let (Some(off), Some(on)) = (&off_u, &on_u) {
        let _ = writeln!(
            md,
            "| far more reads per second when unthrottled | off {}/s, on {}/s: {:.1} × | |",
            si(off.reads_per_s.median),
            si(on.reads_per_s.median),
            on.reads_per_s.median / off.reads_per_s.median.max(1e-9)
        );
        let ratio = off.busiest_per_read.median / on.busiest_per_read.median.max(1e-12);
        let _ = writeln!(
            md,
            "| busiest node's requests per read, unthrottled (context) | off {:.4}, on {:.4}: {ratio:.1} × fewer | |",
            off.busiest_per_read.median, on.busiest_per_read.median,
        );
        let _ = writeln!(
            md,
            "| busiest/mean node requests ≤ 1.5, near cache on, unthrottled | {:.2} (off: {:.2}) | {} |",
            on.busiest_over_mean,
            off.busiest_over_mean,
            verdict(on.busiest_over_mean <= 1.5)
        );
    }
    if let Some(h) = hit_on {
        let _ = writeln!(
            md,
            "| a near-cache hit ≤ 1 µs of client CPU (one caller, one held key) | {:.3} µs | {} |",
            h.cpu_us,
            verdict(h.cpu_us <= 1.0)
        );
        let _ = writeln!(
            md,
            "| a near-cache hit p50 ≤ 2 µs (every {SAMPLE_EVERY}th call timed) | {:.3} µs | {} |",
            h.p50_us,
            verdict(h.p50_us <= 2.0)
        );
    }
    if let (Some(off), Some(on)) = (scan_off, scan_on) {
        let budget_kib = o.budget as f64 / 1024.0;
        let slack_kib = budget_kib / SLACK_DIVISOR as f64;
        let extra_peak = on.rss_peak as f64
            - on.rss_before as f64
            - (off.rss_peak as f64 - off.rss_before as f64);
        let _ = writeln!(
            md,
            "| memory bounded by the budget under a scan of {} keys: RSS growth (peak − before), on minus off, ≤ budget + 1/{SLACK_DIVISOR} for the allocator ({}) | {} | {} |",
            o.scan,
            mib(budget_kib + slack_kib),
            mib(extra_peak),
            verdict(extra_peak <= budget_kib + slack_kib)
        );
    }

    for (title, off, on, rate) in [
        ("Unthrottled (closed loop)", &off_u, &on_u, None),
        ("Throttled", &off_t, &on_t, Some(o.rate)),
    ] {
        if off.is_none() && on.is_none() {
            continue;
        }
        match rate {
            Some(r) => {
                let _ = writeln!(
                    md,
                    "\n## {title}: {} reads/s in total ({:.0} per caller, each on its own schedule)\n",
                    si(r),
                    r / o.concurrency as f64
                );
            }
            None => {
                let _ = writeln!(
                    md,
                    "\n## {title}: {} callers, each looping `get`\n",
                    o.concurrency
                );
            }
        }
        let _ = writeln!(
            md,
            "| near cache | runs | reads/s | p50 | p99 | p99.9 | client CPU / read | memcached CPU / read | busiest node requests / read | busiest / mean node | near-cache hit ratio |\n\
             |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for (side, m) in [(Side::Off, off), (Side::On, on)] {
            let Some(m) = m else { continue };
            let _ = writeln!(
                md,
                "| {} | {} | {} ({}–{}) | {} | {} | {} | {:.3} µs | {:.3} µs | {:.4} ({:.4}–{:.4}) | {:.2} | {} |{}",
                side.name(),
                m.runs,
                si(m.reads_per_s.median),
                si(m.reads_per_s.min),
                si(m.reads_per_s.max),
                us(m.p50_us),
                us(m.p99_us),
                us(m.p999_us),
                m.client_cpu_us,
                m.server_cpu_us,
                m.busiest_per_read.median,
                m.busiest_per_read.min,
                m.busiest_per_read.max,
                m.busiest_over_mean,
                m.hit_ratio
                    .map_or("–".into(), |h| format!("{:.1} %", h * 100.0)),
                if m.not_found + m.errors > 0 {
                    format!(" not found {}, errors {}", m.not_found, m.errors)
                } else {
                    String::new()
                }
            );
        }
        if let (Some(off), Some(on)) = (off, on) {
            let _ = writeln!(
                md,
                "\nBusiest node's requests per read, off / on: {:.1} ×; reads/s, on / off: {:.2} ×.",
                off.busiest_per_read.median / on.busiest_per_read.median.max(1e-12),
                on.reads_per_s.median / off.reads_per_s.median.max(1e-9)
            );
        }
    }

    if !hits.is_empty() {
        let _ = writeln!(
            md,
            "\n## Cost of a read of one held key (one caller)\n\n\
             One caller reads the same key again and again on the runtime above (near cache on: the key was read \
             once before, so every read is a hit while younger than the max age; off: every read asks the node, \
             for reference). CPU per read: the process's `getrusage` over the loop divided by the reads. \
             Latency: every {SAMPLE_EVERY}th call timed alone with two `Instant::now()` (their cost, some tens of \
             ns, included); wall per read: the loop's time over the reads (yields included).\n"
        );
        let _ = writeln!(
            md,
            "| near cache | reads | CPU / read | wall / read | p50 | p99 | near-cache hits / misses |\n|---|---:|---:|---:|---:|---:|---|"
        );
        for h in hits {
            let _ = writeln!(
                md,
                "| {} | {} | {:.3} µs | {:.3} µs | {:.3} µs | {:.3} µs | {} |",
                h.side.name(),
                h.reads,
                h.cpu_us,
                h.wall_us,
                h.p50_us,
                h.p99_us,
                h.near
                    .map_or("–".into(), |n| format!("{} / {}", n.hits, n.misses))
            );
        }
    }

    if !scans.is_empty() {
        let hwm_note = if scans.iter().all(|s| s.hwm_reset) {
            "VmHWM was reset before each scan (`/proc/self/clear_refs`), so it is that scan's peak"
        } else {
            "VmHWM could not be reset: it is the process's peak since it started"
        };
        let _ = writeln!(
            md,
            "\n## Memory under a scan of {} distinct keys\n\n\
             Keys `scan:0000000` ... ({VALUE_LEN}-byte values, on every node), each read once with `get` by {} callers, \
             the value dropped at once; near cache on: budget {} bytes, max age {} s (nothing expires during the scan). \
             Resident memory (VmRSS) before the first read (after `malloc_trim(0)` and `build`), the highest of the \
             readings taken every {RSS_EVERY} reads and at the end, and after the last read with the client still \
             alive; {hwm_note}. Off runs first, then on.\n",
            o.scan,
            o.concurrency,
            o.budget,
            SCAN_MAX_AGE.as_secs(),
        );
        let _ = writeln!(
            md,
            "| near cache | reads/s | RSS before | peak | after | growth at peak | growth after | VmHWM | near-cache bytes | entries | admissions | evictions |\n\
             |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for s in scans {
            let n =
                |f: fn(&NearCacheStats) -> u64| s.near.map_or("–".into(), |n| f(&n).to_string());
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |{}",
                s.side.name(),
                si(s.reads_per_s),
                mib(s.rss_before as f64),
                mib(s.rss_peak as f64),
                mib(s.rss_after as f64),
                mib(s.rss_peak as f64 - s.rss_before as f64),
                mib(s.rss_after as f64 - s.rss_before as f64),
                mib(s.hwm as f64),
                n(|n| n.bytes),
                n(|n| n.entries),
                n(|n| n.admissions),
                n(|n| n.evictions),
                if s.not_found + s.errors > 0 {
                    format!(" not found {}, errors {}", s.not_found, s.errors)
                } else {
                    String::new()
                }
            );
        }
        if let (Some(off), Some(on)) = (scan_off, scan_on) {
            let growth = |s: &Scan, to: u64| to as f64 - s.rss_before as f64;
            let peak = growth(on, on.rss_peak) - growth(off, off.rss_peak);
            let after = growth(on, on.rss_after) - growth(off, off.rss_after);
            let entries = on.near.map_or(0, |n| n.entries);
            let counted = on.near.map_or(0, |n| n.bytes);
            let _ = writeln!(
                md,
                "\nOn minus off: RSS growth {} at the peak, {} after; budget {}. The near cache counts {counted} bytes for \
                 {entries} entries ({:.0} bytes each); the RSS growth after the scan, on minus off, is {:.0} bytes per entry.",
                mib(peak),
                mib(after),
                mib(o.budget as f64 / 1024.0),
                counted as f64 / entries.max(1) as f64,
                after * 1024.0 / entries.max(1) as f64,
            );
        }
    }
    md
}

pub(super) const CSV_COLUMNS: &[&str] = &[
    "section",
    "near_cache",
    "repeat",
    "position",
    "target_reads_per_s",
    "reads",
    "elapsed_s",
    "reads_per_s",
    "p50_us",
    "p99_us",
    "p999_us",
    "client_cpu_us_per_read",
    "server_cpu_us_per_read",
    "node_gets",
    "busiest_node_gets_per_read",
    "busiest_over_mean",
    "near_hits",
    "near_misses",
    "near_hit_ratio",
    "near_admissions",
    "near_evictions",
    "near_bytes",
    "near_entries",
    "not_found",
    "errors",
    "rss_before_kib",
    "rss_peak_kib",
    "rss_after_kib",
    "vm_hwm_kib",
];

/// One CSV line: the values named, in [`CSV_COLUMNS`] order, empty where not given.
pub(super) fn csv_line(out: &mut String, values: &[(&str, String)]) {
    let line: Vec<&str> = CSV_COLUMNS
        .iter()
        .map(|c| {
            values
                .iter()
                .find(|(name, _)| name == c)
                .map_or("", |(_, v)| v.as_str())
        })
        .collect();
    let _ = writeln!(out, "{}", line.join(","));
}

pub(super) fn near_fields(near: Option<NearCacheStats>) -> Vec<(&'static str, String)> {
    let Some(n) = near else { return Vec::new() };
    vec![
        ("near_hits", n.hits.to_string()),
        ("near_misses", n.misses.to_string()),
        (
            "near_hit_ratio",
            format!("{:.4}", n.hits as f64 / (n.hits + n.misses).max(1) as f64),
        ),
        ("near_admissions", n.admissions.to_string()),
        ("near_evictions", n.evictions.to_string()),
        ("near_bytes", n.bytes.to_string()),
        ("near_entries", n.entries.to_string()),
    ]
}

pub(super) fn csv(runs: &[Run], hits: &[HitCost], scans: &[Scan]) -> String {
    let mut out = CSV_COLUMNS.join(",") + "\n";
    for r in runs {
        let mut v = vec![
            ("section", r.section.to_string()),
            ("near_cache", r.side.name().to_string()),
            ("repeat", (r.repeat + 1).to_string()),
            ("position", r.position.to_string()),
            (
                "target_reads_per_s",
                r.target_rate.map_or(String::new(), |t| format!("{t:.0}")),
            ),
            ("reads", r.reads.to_string()),
            ("elapsed_s", format!("{:.4}", r.elapsed_s)),
            ("reads_per_s", format!("{:.1}", r.reads_per_s)),
            ("p50_us", format!("{:.3}", r.p50_us)),
            ("p99_us", format!("{:.3}", r.p99_us)),
            ("p999_us", format!("{:.3}", r.p999_us)),
            ("client_cpu_us_per_read", format!("{:.4}", r.client_cpu_us)),
            ("server_cpu_us_per_read", format!("{:.4}", r.server_cpu_us)),
            (
                "node_gets",
                r.node_gets
                    .iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(";"),
            ),
            (
                "busiest_node_gets_per_read",
                format!("{:.5}", r.busiest_per_read),
            ),
            ("busiest_over_mean", format!("{:.4}", r.busiest_over_mean)),
            ("not_found", r.not_found.to_string()),
            ("errors", r.errors.to_string()),
        ];
        v.extend(near_fields(r.near));
        csv_line(&mut out, &v);
    }
    for h in hits {
        let mut v = vec![
            ("section", "hit_cost".to_string()),
            ("near_cache", h.side.name().to_string()),
            ("reads", h.reads.to_string()),
            (
                "elapsed_s",
                format!("{:.4}", h.wall_us * h.reads as f64 / 1e6),
            ),
            ("reads_per_s", format!("{:.1}", 1e6 / h.wall_us.max(1e-9))),
            ("p50_us", format!("{:.3}", h.p50_us)),
            ("p99_us", format!("{:.3}", h.p99_us)),
            ("client_cpu_us_per_read", format!("{:.4}", h.cpu_us)),
        ];
        v.extend(near_fields(h.near));
        csv_line(&mut out, &v);
    }
    for s in scans {
        let mut v = vec![
            ("section", "scan".to_string()),
            ("near_cache", s.side.name().to_string()),
            ("reads", s.reads.to_string()),
            ("reads_per_s", format!("{:.1}", s.reads_per_s)),
            ("not_found", s.not_found.to_string()),
            ("errors", s.errors.to_string()),
            ("rss_before_kib", s.rss_before.to_string()),
            ("rss_peak_kib", s.rss_peak.to_string()),
            ("rss_after_kib", s.rss_after.to_string()),
            ("vm_hwm_kib", s.hwm.to_string()),
        ];
        v.extend(near_fields(s.near));
        csv_line(&mut out, &v);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_date_is_civil() {
        let now = utc_now();
        assert_eq!(now.len(), 20, "{now}");
        assert!(now.starts_with("20"), "{now}");
    }
}
