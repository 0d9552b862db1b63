//! Network faults injected by the kernel, under a checked load, for each `FailureMode`.
//!
//! Each of three memcached nodes runs in a network namespace of its own, reached over a veth
//! pair; the client and the emulated configuration endpoint stay in the host namespace. The
//! faults are the kernel's, on each end of a node's veth pair:
//!
//! * packet loss: a classic BPF program in direct-action mode on each end's ingress (`clsact`)
//!   loads a random number (`ld rand`, SKF_AD_RANDOM) and returns TC_ACT_SHOT below a threshold;
//!   1 % and 5 % on every node's link, both ways;
//! * a full blackhole of one node: the same hook dropping every packet (connects and requests
//!   hang, nothing is refused);
//! * a slow link: `tbf` on both ends' egress of one node;
//! * process faults: SIGSTOP/SIGCONT, SIGKILL and a restart on the same address;
//! * the configuration endpoint dropping a blackholed node from the list, and listing it again.
//!
//! Phases: baseline, each fault for `FAULT_PHASE_SECS` (default 2: the short form, under a
//! minute and a half) followed by a window after it, then recovery. The load (32 callers: sets,
//! gets and 10-key multi-gets on keys of their own) runs through all of them; one markdown table
//! per failure mode is printed. It needs root and working `ip`/`tc`; otherwise it says why and
//! passes without running.
//!
//! Asserted always: no wrong value, and the load makes progress once the faults are gone. The
//! time goals (no call past the request timeout + 250 ms; with Redistribute no error more than
//! 1 s after a node fault begins; full service within 2 s after a fault ends) are asserted in the
//! long form only (`FAULT_PHASE_SECS` >= 5, `scripts/reliability`), each with 1 s of slack for a
//! shared machine; the short form prints them.

mod support;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use memcached_autodiscovery::{Client, ClusterConfig, FailureMode, Node};
use memcached_autodiscovery_testkit::{ConfigEndpoint, MemcachedOptions, MemcachedProcess};
use support::load::{Load, Mix, WindowReport};

const NODES: usize = 3;
const CALLERS: usize = 32;
const KEYS_PER_CALLER: usize = 10;
const REQUEST_TIMEOUT: Duration = Duration::from_millis(500);
const CONNECT_TIMEOUT: Duration = Duration::from_millis(300);
const POLL: Duration = Duration::from_millis(200);
const BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(1));
/// The goal: no call longer than the request timeout plus this.
const CALL_SLACK: Duration = Duration::from_millis(250);
/// With Redistribute, no error later than this after a node fault begins.
const ERRORS_STOP_GOAL: Duration = Duration::from_secs(1);
/// Full service this soon after a fault ends.
const RECOVERY_GOAL: Duration = Duration::from_secs(2);
/// Added to every time goal where the long form asserts it.
const ASSERT_SLACK: Duration = Duration::from_secs(1);
/// The slow link: both directions of one node's veth pair.
const TBF: [&str; 6] = ["rate", "1mbit", "burst", "4kb", "latency", "100ms"];

fn phase_length() -> Duration {
    match std::env::var("FAULT_PHASE_SECS") {
        Ok(v) => match v.parse::<f64>() {
            Ok(secs) if (0.5..=600.0).contains(&secs) => Duration::from_secs_f64(secs),
            _ => panic!("FAULT_PHASE_SECS={v:?}: seconds between 0.5 and 600"),
        },
        Err(_) => Duration::from_secs(2),
    }
}

// ---- the network: namespaces, veth pairs, tc ---------------------------------------------

/// Runs `program args`; the error names the command and carries its stderr.
fn run(program: &Path, args: &[&str]) -> Result<String, String> {
    let shown = || format!("{} {}", program.display(), args.join(" "));
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("`{}`: {e}", shown()))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`{}` failed ({}): {}",
            shown(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .map(|ids| ids.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// The client's resident memory (this process), in KiB.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// One node's link: namespace `ns`, `host_if` (host side, `host_ip`) to `node_if` (in `ns`,
/// `node_ip`).
struct Link {
    ns: String,
    host_if: String,
    node_if: String,
    node_ip: Ipv4Addr,
}

/// Packet counters of one link's qdiscs, both ends summed.
#[derive(Debug, Default, Clone, Copy)]
struct Counters {
    /// Packets the ingress hooks saw, and those they dropped.
    ingress_seen: u64,
    ingress_dropped: u64,
    /// Packets the tbf queues dropped.
    tbf_dropped: u64,
}

impl std::ops::Sub for Counters {
    type Output = Counters;
    fn sub(self, o: Counters) -> Counters {
        Counters {
            ingress_seen: self.ingress_seen.saturating_sub(o.ingress_seen),
            ingress_dropped: self.ingress_dropped.saturating_sub(o.ingress_dropped),
            tbf_dropped: self.tbf_dropped.saturating_sub(o.tbf_dropped),
        }
    }
}

impl std::ops::Add for Counters {
    type Output = Counters;
    fn add(self, o: Counters) -> Counters {
        Counters {
            ingress_seen: self.ingress_seen + o.ingress_seen,
            ingress_dropped: self.ingress_dropped + o.ingress_dropped,
            tbf_dropped: self.tbf_dropped + o.tbf_dropped,
        }
    }
}

/// The namespaces and veth pairs of one run, named with this process's id; removed when
/// dropped (also what a failed setup created).
struct Lab {
    ip: PathBuf,
    tc: PathBuf,
    links: Vec<Link>,
    namespaces: Vec<String>,
}

/// What an ingress filter does: drop a share of packets (parts per 1000), or every packet.
#[derive(Clone, Copy)]
enum Filter {
    Share(u32),
    All,
}

/// Classic BPF for `tc filter ... bpf da bytecode`: TC_ACT_SHOT (2) to drop, TC_ACT_UNSPEC (-1)
/// to let the packet through.
fn bytecode(drop: Filter) -> String {
    match drop {
        Filter::All => "1,6 0 0 2".to_owned(),
        Filter::Share(per_mille) => {
            // A = random u32 (ld [SKF_AD_OFF + SKF_AD_RANDOM]); A >= threshold: pass, else drop.
            let threshold = (u64::from(per_mille) << 32) / 1000;
            let random = 0xffff_f000u32 + 56;
            format!("4,32 0 0 {random},53 1 0 {threshold},6 0 0 2,6 0 0 4294967295")
        }
    }
}

impl Lab {
    /// Creates `nodes` namespaces and links. `Err` says what is missing or failed.
    fn create(nodes: usize) -> Result<Lab, String> {
        if !is_root() {
            return Err("not running as root (namespaces and tc need it)".into());
        }
        let ip = find_program("ip").ok_or("no `ip` (iproute2) found")?;
        let tc = find_program("tc").ok_or("no `tc` (iproute2) found")?;
        let pid = std::process::id();
        let mut lab = Lab {
            ip,
            tc,
            links: Vec::new(),
            namespaces: Vec::new(),
        };
        lab.sweep_dead_runs();
        let a = lab.free_net()?;
        for i in 0..nodes {
            let ns = format!("mcfault-{pid}-{i}");
            let host_if = format!("mcf{pid}h{i}");
            let node_if = format!("mcf{pid}n{i}");
            let host_ip = Ipv4Addr::new(10, a, i as u8, 1);
            let node_ip = Ipv4Addr::new(10, a, i as u8, 2);
            lab.ip(&["netns", "add", &ns])?;
            lab.namespaces.push(ns.clone());
            lab.ip(&[
                "link", "add", &host_if, "type", "veth", "peer", "name", &node_if, "netns", &ns,
            ])?;
            lab.ip(&["addr", "add", &format!("{host_ip}/30"), "dev", &host_if])?;
            lab.ip(&["link", "set", &host_if, "up"])?;
            lab.ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            lab.ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{node_ip}/30"),
                "dev",
                &node_if,
            ])?;
            lab.ip(&["-n", &ns, "link", "set", &node_if, "up"])?;
            let link = Link {
                ns,
                host_if,
                node_if,
                node_ip,
            };
            for (ns, dev) in lab.ends(&link) {
                lab.tc(ns, &["qdisc", "add", "dev", dev, "clsact"])?;
            }
            lab.links.push(link);
        }
        // Proves the hook works before any load depends on it: drop all, then nothing.
        lab.set_drop(0, Some(Filter::All))?;
        lab.set_drop(0, None)?;
        Ok(lab)
    }

    fn ip(&self, args: &[&str]) -> Result<String, String> {
        run(&self.ip, args)
    }

    /// `tc` in namespace `ns` (`None`: the host's).
    fn tc(&self, ns: Option<&str>, args: &[&str]) -> Result<String, String> {
        match ns {
            Some(ns) => {
                let mut all = vec!["-n", ns];
                all.extend_from_slice(args);
                run(&self.tc, &all)
            }
            None => run(&self.tc, args),
        }
    }

    /// Both ends of a link: (namespace, device).
    fn ends<'a>(&self, link: &'a Link) -> [(Option<&'a str>, &'a str); 2] {
        [
            (None, link.host_if.as_str()),
            (Some(link.ns.as_str()), link.node_if.as_str()),
        ]
    }

    /// Namespaces an earlier run of this test left behind when it was killed (its process is
    /// gone); deleting them also deletes their veth pairs.
    fn sweep_dead_runs(&self) {
        let Ok(list) = self.ip(&["netns", "list"]) else {
            return;
        };
        for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
            let Some(rest) = name.strip_prefix("mcfault-") else {
                continue;
            };
            let Some(pid) = rest.split('-').next() else {
                continue;
            };
            if !Path::new(&format!("/proc/{pid}")).exists() {
                let _ = self.ip(&["netns", "del", name]);
            }
        }
    }

    /// A second octet `a` such that no address or route of the host is in 10.a.0.0/16.
    fn free_net(&self) -> Result<u8, String> {
        let used = self.ip(&["-o", "-4", "addr", "show"])? + &self.ip(&["-4", "route", "show"])?;
        let start = 64 + (std::process::id() % 128) as u8;
        (0..128u8)
            .map(|k| 64 + (start - 64 + k) % 128)
            .find(|a| {
                let prefix = format!("10.{a}.");
                !used
                    .split(|c: char| c.is_whitespace() || c == '/')
                    .any(|w| w.starts_with(&prefix))
            })
            .ok_or_else(|| "no free 10.x.0.0/16 for the links".into())
    }

    /// Sets (or with `None` removes) the drop filter on both ends' ingress of node `i`.
    fn set_drop(&self, i: usize, drop: Option<Filter>) -> Result<(), String> {
        let link = &self.links[i];
        for (ns, dev) in self.ends(link) {
            let _ = self.tc(ns, &["filter", "del", "dev", dev, "ingress", "pref", "10"]);
            if let Some(drop) = drop {
                self.tc(
                    ns,
                    &[
                        "filter",
                        "add",
                        "dev",
                        dev,
                        "ingress",
                        "pref",
                        "10",
                        "bpf",
                        "da",
                        "bytecode",
                        &bytecode(drop),
                    ],
                )?;
            }
        }
        Ok(())
    }

    /// Makes node `i`'s link slow both ways (`tbf` on each end's egress), or fast again.
    fn set_slow(&self, i: usize, slow: bool) -> Result<(), String> {
        let link = &self.links[i];
        for (ns, dev) in self.ends(link) {
            if slow {
                let mut args = vec!["qdisc", "replace", "dev", dev, "root", "tbf"];
                args.extend_from_slice(&TBF);
                self.tc(ns, &args)?;
            } else {
                let _ = self.tc(ns, &["qdisc", "del", "dev", dev, "root"]);
            }
        }
        Ok(())
    }

    /// The qdisc counters of node `i`'s link.
    fn counters(&self, i: usize) -> Counters {
        let link = &self.links[i];
        let mut total = Counters::default();
        for (ns, dev) in self.ends(link) {
            let Ok(text) = self.tc(ns, &["-s", "qdisc", "show", "dev", dev]) else {
                continue;
            };
            let mut kind = "";
            for line in text.lines() {
                let words: Vec<&str> = line.split_whitespace().collect();
                match words.as_slice() {
                    ["qdisc", k, ..] => kind = k,
                    ["Sent", _, "bytes", pkts, "pkt", "(dropped", dropped, ..] => {
                        let pkts: u64 = pkts.parse().unwrap_or(0);
                        let dropped: u64 = dropped.trim_end_matches(',').parse().unwrap_or(0);
                        match kind {
                            "clsact" => {
                                total.ingress_seen += pkts;
                                total.ingress_dropped += dropped;
                            }
                            "tbf" => total.tbf_dropped += dropped,
                            _ => {}
                        }
                    }
                    _ => {}
                }
            }
        }
        total
    }

    fn all_counters(&self) -> Counters {
        (0..self.links.len())
            .map(|i| self.counters(i))
            .fold(Counters::default(), |a, b| a + b)
    }
}

impl std::ops::Drop for Lab {
    fn drop(&mut self) {
        for link in &self.links {
            let _ = self.ip(&["link", "del", &link.host_if]);
        }
        for ns in &self.namespaces {
            if let Err(e) = self.ip(&["netns", "del", ns]) {
                eprintln!("network_faults: cleanup: {e}");
            }
        }
    }
}

/// Three memcached processes, node `i` in namespace `i`, and the endpoint listing them.
/// Declared before the lab where both live, so the processes go first.
struct Cluster {
    processes: Vec<MemcachedProcess>,
    nodes: Vec<Node>,
    endpoint: ConfigEndpoint,
    version: u64,
}

impl Cluster {
    async fn start(lab: &Lab) -> Result<Cluster, String> {
        let mut processes = Vec::new();
        let mut nodes = Vec::new();
        for (i, link) in lab.links.iter().enumerate() {
            let options = MemcachedOptions {
                command_prefix: ["netns", "exec", &link.ns].iter().map(OsString::from).fold(
                    vec![lab.ip.clone().into_os_string()],
                    |mut v, a| {
                        v.push(a);
                        v
                    },
                ),
                ..MemcachedOptions::default()
            };
            // The namespace is new and nothing else listens in it: any port is free there.
            // Another is tried should one not be.
            let mut started = Err(String::new());
            for attempt in 0..5u16 {
                let port = 20_000 + ((std::process::id() as u16 % 20_000) + attempt * 997) % 40_000;
                let addr = SocketAddr::new(IpAddr::V4(link.node_ip), port);
                match MemcachedProcess::start_on(addr, &options).await {
                    Ok(p) => {
                        started = Ok(p);
                        break;
                    }
                    Err(e) => started = Err(format!("memcached in {}: {e}", link.ns)),
                }
            }
            let process = started?;
            nodes.push(Node::new(
                format!("node-{}.network-faults.test", i + 1),
                Some(process.addr().ip()),
                process.addr().port(),
            ));
            processes.push(process);
        }
        let endpoint = ConfigEndpoint::start(ClusterConfig::new(1, nodes.clone()))
            .map_err(|e| format!("configuration endpoint: {e}"))?;
        Ok(Cluster {
            processes,
            nodes,
            endpoint,
            version: 1,
        })
    }

    /// Serves the nodes whose index `keep` accepts, under a new version.
    fn list(&mut self, keep: impl Fn(usize) -> bool) {
        self.version += 1;
        let nodes = (0..self.nodes.len())
            .filter(|&i| keep(i))
            .map(|i| self.nodes[i].clone())
            .collect();
        self.endpoint
            .set_config(ClusterConfig::new(self.version, nodes));
    }
}

// ---- the phases --------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Fault {
    Baseline,
    Loss1,
    Loss5,
    SlowLink,
    Blackhole,
    Sigstop,
    KillRestart,
    ListChange,
    Recovery,
}

impl Fault {
    const ALL: [Fault; 9] = [
        Fault::Baseline,
        Fault::Loss1,
        Fault::Loss5,
        Fault::SlowLink,
        Fault::Blackhole,
        Fault::Sigstop,
        Fault::KillRestart,
        Fault::ListChange,
        Fault::Recovery,
    ];

    fn name(self) -> &'static str {
        match self {
            Fault::Baseline => "baseline",
            Fault::Loss1 => "loss 1 % (all links)",
            Fault::Loss5 => "loss 5 % (all links)",
            Fault::SlowLink => "slow link (node 1, tbf 1 mbit/s)",
            Fault::Blackhole => "blackhole (node 2)",
            Fault::Sigstop => "SIGSTOP (node 2)",
            Fault::KillRestart => "kill, restart at the end (node 2)",
            Fault::ListChange => "blackhole node 3, dropped from the list at 1/3, back at the end",
            Fault::Recovery => "recovery",
        }
    }

    fn is_fault(self) -> bool {
        !matches!(self, Fault::Baseline | Fault::Recovery)
    }

    /// A fault that takes one node away (the goal on errors after its start applies).
    fn takes_a_node(self) -> bool {
        matches!(
            self,
            Fault::Blackhole | Fault::Sigstop | Fault::KillRestart | Fault::ListChange
        )
    }
}

/// The node the single-node faults take.
const VICTIM: usize = 1;
/// The node the list change takes.
const LISTED_OUT: usize = 2;

struct Phase {
    fault: Fault,
    during: WindowReport,
    after: Option<WindowReport>,
    counters: Counters,
    rss_kib: u64,
}

impl Phase {
    fn errors(&self) -> BTreeMap<&'static str, u64> {
        let mut all = self.during.errors.clone();
        for (k, n) in self.after.iter().flat_map(|a| &a.errors) {
            *all.entry(k).or_default() += n;
        }
        all
    }

    fn wrong(&self) -> u64 {
        self.during.wrong_values + self.after.as_ref().map_or(0, |a| a.wrong_values)
    }

    fn stale(&self) -> u64 {
        self.during.stale_reads + self.after.as_ref().map_or(0, |a| a.stale_reads)
    }

    fn over_limit(&self) -> u64 {
        self.during.over_limit + self.after.as_ref().map_or(0, |a| a.over_limit)
    }

    fn max_latency(&self) -> Duration {
        self.during.max_latency.max(
            self.after
                .as_ref()
                .map_or(Duration::ZERO, |a| a.max_latency),
        )
    }

    /// From the fault's start to its window's last error (`None`: no error).
    fn errors_stop(&self) -> Option<Duration> {
        self.during
            .last_error
            .map(|t| t.saturating_sub(self.during.start))
    }

    /// Whether errors went on until the fault ended (within 100 ms of its end).
    fn errors_to_the_end(&self) -> bool {
        self.during
            .last_error
            .is_some_and(|t| t + Duration::from_millis(100) >= self.during.end)
    }

    /// From the fault's end to the last error after it (zero: none).
    fn full_service(&self) -> Option<Duration> {
        let after = self.after.as_ref()?;
        Some(
            after
                .last_error
                .map_or(Duration::ZERO, |t| t.saturating_sub(after.start)),
        )
    }
}

/// Applies `fault` (`on`) or removes it.
async fn apply(lab: &Lab, cluster: &mut Cluster, fault: Fault, on: bool, length: Duration) {
    let result: Result<(), String> = match fault {
        Fault::Baseline | Fault::Recovery => Ok(()),
        Fault::Loss1 | Fault::Loss5 => {
            let share = if fault == Fault::Loss1 { 10 } else { 50 };
            tokio::task::block_in_place(|| {
                (0..NODES).try_for_each(|i| lab.set_drop(i, on.then_some(Filter::Share(share))))
            })
        }
        Fault::SlowLink => tokio::task::block_in_place(|| lab.set_slow(0, on)),
        Fault::Blackhole => {
            tokio::task::block_in_place(|| lab.set_drop(VICTIM, on.then_some(Filter::All)))
        }
        Fault::Sigstop => tokio::task::block_in_place(|| {
            let p = &cluster.processes[VICTIM];
            if on { p.freeze() } else { p.thaw() }.map_err(|e| e.to_string())
        }),
        Fault::KillRestart => {
            if on {
                cluster.processes[VICTIM].kill();
                Ok(())
            } else {
                cluster.processes[VICTIM]
                    .restart()
                    .await
                    .map_err(|e| e.to_string())
            }
        }
        Fault::ListChange => {
            if on {
                let r = tokio::task::block_in_place(|| lab.set_drop(LISTED_OUT, Some(Filter::All)));
                tokio::time::sleep(length / 3).await;
                cluster.list(|i| i != LISTED_OUT);
                r
            } else {
                let r = tokio::task::block_in_place(|| lab.set_drop(LISTED_OUT, None));
                cluster.list(|_| true);
                r
            }
        }
    };
    if let Err(e) = result {
        panic!(
            "cannot {} {fault:?}: {e}",
            if on { "apply" } else { "remove" }
        );
    }
}

async fn client(cluster: &Cluster, mode: FailureMode) -> Client {
    Client::builder()
        .config_endpoint(cluster.endpoint.addr().to_string())
        .failure_mode(mode)
        .poll_interval(POLL)
        .request_timeout(REQUEST_TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT)
        .discovery_timeout(REQUEST_TIMEOUT)
        .reconnect_backoff(BACKOFF.0, BACKOFF.1)
        .build()
        .await
        .expect("the client builds on the namespaced cluster")
}

/// Every phase once under a load through `mode`'s client.
async fn run_phases(lab: &Lab, cluster: &mut Cluster, mode: FailureMode) -> Vec<Phase> {
    let length = phase_length();
    let after_length = (RECOVERY_GOAL + Duration::from_millis(250)).max(length / 2);
    let client = client(cluster, mode).await;
    let load = Load::start_keys(
        &client,
        CALLERS,
        &format!("{mode:?}"),
        Mix::CHURN,
        KEYS_PER_CALLER,
    );
    load.set_call_limit(REQUEST_TIMEOUT + CALL_SLACK);
    tokio::time::sleep(Duration::from_millis(500)).await; // warm-up: window 0
    let mut plan = Vec::new(); // (fault, during window, after window, counters)
    for fault in Fault::ALL {
        let before = tokio::task::block_in_place(|| lab.all_counters());
        let during = load.next_window();
        let fault_start = std::time::Instant::now();
        apply(lab, cluster, fault, true, length).await;
        tokio::time::sleep(length.saturating_sub(fault_start.elapsed())).await;
        apply(lab, cluster, fault, false, length).await;
        let counters = tokio::task::block_in_place(|| lab.all_counters()) - before;
        let after = if fault.is_fault() {
            let w = load.next_window();
            tokio::time::sleep(after_length).await;
            Some(w)
        } else {
            None
        };
        plan.push((fault, during, after, counters, rss_kib()));
    }
    let report = load.finish().await;
    drop(client);
    plan.into_iter()
        .map(|(fault, during, after, counters, rss_kib)| Phase {
            fault,
            during: report.windows[during].clone(),
            after: after.map(|w| report.windows[w].clone()),
            counters,
            rss_kib,
        })
        .collect()
}

fn ms(d: Duration) -> String {
    if d >= Duration::from_secs(1) {
        format!("{:.2} s", d.as_secs_f64())
    } else {
        format!("{:.1} ms", d.as_secs_f64() * 1000.0)
    }
}

fn table(mode: FailureMode, phases: &[Phase], length: Duration) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "\n#### {mode:?} (phases of {:.0} s; request timeout {} ms, limit {} ms)\n",
        length.as_secs_f64(),
        REQUEST_TIMEOUT.as_millis(),
        (REQUEST_TIMEOUT + CALL_SLACK).as_millis()
    );
    let _ = writeln!(
        t,
        "| phase | ops/s | p50 | p99 | max | errors by kind | wrong values | stale reads | \
         errors stop after fault start | full service after fault end | calls > limit | \
         kernel drops | RSS |"
    );
    let _ = writeln!(
        t,
        "|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---|---:|"
    );
    for p in phases {
        let errors = p.errors();
        let errors = if errors.is_empty() {
            "none".to_owned()
        } else {
            errors
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let stop = match (p.fault.is_fault(), p.errors_stop()) {
            (false, _) => "–".to_owned(),
            (true, None) => "no error".to_owned(),
            (true, Some(d)) if p.errors_to_the_end() => format!("{} (to the end)", ms(d)),
            (true, Some(d)) => ms(d),
        };
        let full = match (p.full_service(), &p.after) {
            (None, _) | (_, None) => "–".to_owned(),
            (Some(d), Some(a)) if d.is_zero() => format!("0 (no error in {})", ms(a.length())),
            (Some(d), Some(a)) if d + Duration::from_millis(100) >= a.length() => {
                format!("> {} (errors to the end)", ms(a.length()))
            }
            (Some(d), Some(_)) => ms(d),
        };
        let c = p.counters;
        let drops = match (c.ingress_dropped, c.tbf_dropped) {
            (0, 0) => "0".to_owned(),
            (d, 0) => format!(
                "{d} of {} ({:.2} %)",
                c.ingress_seen,
                100.0 * d as f64 / c.ingress_seen.max(1) as f64
            ),
            (0, t) => format!("tbf {t}"),
            (d, t) => format!("{d} of {}, tbf {t}", c.ingress_seen),
        };
        let _ = writeln!(
            t,
            "| {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.1} MiB |",
            p.fault.name(),
            p.during.ops_per_sec(),
            ms(p.during.p50),
            ms(p.during.p99),
            ms(p.max_latency()),
            errors,
            p.wrong(),
            p.stale(),
            stop,
            full,
            p.over_limit(),
            drops,
            p.rss_kib as f64 / 1024.0
        );
    }
    t
}

/// The goals each phase missed, with the numbers.
fn misses(mode: FailureMode, phases: &[Phase], slack: Duration) -> Vec<String> {
    let mut missed = Vec::new();
    for p in phases {
        let name = format!("{mode:?}/{}", p.fault.name());
        let limit = REQUEST_TIMEOUT + CALL_SLACK + slack;
        if p.max_latency() > limit {
            missed.push(format!(
                "{name}: {} calls over {} ms, the longest {}",
                p.over_limit(),
                (REQUEST_TIMEOUT + CALL_SLACK).as_millis(),
                ms(p.max_latency())
            ));
        }
        if mode == FailureMode::Redistribute && p.fault.takes_a_node() {
            if let Some(d) = p.errors_stop().filter(|&d| d > ERRORS_STOP_GOAL + slack) {
                missed.push(format!(
                    "{name}: errors until {} after the fault began ({:?})",
                    ms(d),
                    p.during.errors
                ));
            }
        }
        if let Some(d) = p.full_service().filter(|&d| d > RECOVERY_GOAL + slack) {
            missed.push(format!(
                "{name}: errors until {} after the fault ended ({:?})",
                ms(d),
                p.after.as_ref().map(|a| &a.errors)
            ));
        }
    }
    missed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_faults_for_each_failure_mode() {
    let lab = match tokio::task::block_in_place(|| Lab::create(NODES)) {
        Ok(lab) => lab,
        Err(why) => {
            eprintln!(
                "SKIPPED network_faults: {why}. This test needs root, iproute2 (`ip`, `tc`), \
                 network namespaces, veth, clsact with cls_bpf and tbf."
            );
            return;
        }
    };
    let mut cluster = match Cluster::start(&lab).await {
        Ok(c) => c,
        Err(e) => panic!("cannot start the namespaced cluster: {e}"),
    };
    let length = phase_length();
    let long_form = length >= Duration::from_secs(5);
    let started = std::time::Instant::now();
    let mut all_missed = Vec::new();
    let mut tables = String::new();
    for mode in [FailureMode::FailFast, FailureMode::Redistribute] {
        let phases = run_phases(&lab, &mut cluster, mode).await;
        let t = table(mode, &phases, length);
        eprintln!("{t}");
        tables.push_str(&t);
        let missed = misses(mode, &phases, Duration::ZERO);
        for m in &missed {
            eprintln!("goal missed: {m}");
        }
        if missed.is_empty() {
            eprintln!("{mode:?}: every time goal met");
        }
        for p in &phases {
            assert_eq!(
                p.wrong(),
                0,
                "{mode:?}/{}: values of another key",
                p.fault.name()
            );
        }
        let recovery = phases.last().expect("phases ran");
        assert!(
            recovery.during.ops > 0
                && recovery.during.ops_per_sec() > 0.2 * phases[0].during.ops_per_sec(),
            "{mode:?}: the load runs again after the faults ({:.0} ops/s, baseline {:.0})",
            recovery.during.ops_per_sec(),
            phases[0].during.ops_per_sec()
        );
        let rss: Vec<u64> = phases.iter().map(|p| p.rss_kib).collect();
        eprintln!("{mode:?}: RSS per phase (KiB) {rss:?}");
        if long_form {
            all_missed.extend(misses(mode, &phases, ASSERT_SLACK));
        }
    }
    eprintln!(
        "network_faults: both modes in {:.1} s ({} s phases)",
        started.elapsed().as_secs_f64(),
        length.as_secs_f64()
    );
    if let Ok(path) = std::env::var("FAULT_TABLES_OUT") {
        if let Err(e) = std::fs::write(&path, &tables) {
            eprintln!("cannot write {path}: {e}");
        }
    }
    assert!(
        all_missed.is_empty(),
        "goals missed by more than {ASSERT_SLACK:?} of slack:\n{}",
        all_missed.join("\n")
    );
}
