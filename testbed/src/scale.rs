//! `testbed scale`: an emulated cluster of N petrel agents (each a network
//! namespace running a real `petrel agent`) in two racks behind FRR ToRs,
//! with two in-cluster route reflectors and the file datastore
//! ([`generate`] describes the topology), and the measurements of the
//! cluster-scale issue:
//!
//! * **cold start**: from the moment the agents are started to every node
//!   holding a kernel route for every other node's blocks (IPv4 and IPv6);
//!   also when the last node had claimed its blocks;
//! * **block propagation**: a node is made to claim a new block (pods'
//!   addresses allocated through its IPAM API until its block is full), and
//!   the time from that allocation to the block's kernel route on every
//!   other node, p50/p99/max over `--claims` claims;
//! * **withdrawal**: a node stopped cleanly (SIGTERM: NOTIFICATION, no
//!   graceful restart) and a node crashed (SIGKILL: the reflectors keep its
//!   routes as a graceful-restart helper for the restart time): how long
//!   until its block is gone from every other node;
//! * **idle**: CPU (over `--idle-secs`) and resident memory per agent and
//!   for the reflectors.
//!
//! Kernel route times come from `ip -tshort monitor route` in every node
//! ([`monitor`]). Needs root and FRR. Run it from a release build:
//!
//! ```text
//! cargo build --release -p petrel -p petrel-testbed --bins
//! sudo PETREL_BIN=target/release/petrel target/release/testbed scale --nodes 200 --out scale.md
//! ```

pub mod generate;
pub mod monitor;

use crate::Lab;
use crate::bench_daemons::procs;
use crate::cni::ipam::IpamState;
use anyhow::{Context, bail};
use generate::ScaleNode;
use ipnet::IpNet;
use monitor::{Monitors, now_us};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Command-line options of `testbed scale`.
#[derive(clap::Args, Debug, Clone)]
pub struct ScaleArgs {
    /// petrel nodes in all, the two reflectors included.
    #[arg(long, default_value_t = 200)]
    pub nodes: usize,
    /// Block claims to measure propagation over.
    #[arg(long, default_value_t = 50)]
    pub claims: usize,
    /// Seconds the cluster gets to converge after the agents start.
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    pub timeout: u64,
    /// Seconds of idle CPU measurement.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub idle_secs: u64,
    /// Skip the withdrawal measurements.
    #[arg(long)]
    pub no_withdrawal: bool,
    /// Write the generated topology to this directory and stop.
    #[arg(long, value_name = "DIR")]
    pub generate_only: Option<PathBuf>,
    /// Also write the report to this file.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// Propagation statistics, in milliseconds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    pub count: usize,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

impl Stats {
    pub fn of(mut v: Vec<f64>) -> Stats {
        if v.is_empty() {
            return Stats::default();
        }
        v.sort_by(f64::total_cmp);
        let at = |q: f64| v[(((v.len() - 1) as f64) * q).round() as usize];
        Stats {
            count: v.len(),
            p50: at(0.5),
            p99: at(0.99),
            max: v[v.len() - 1],
        }
    }
}

/// What a run measured.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub nodes: usize,
    /// Agents started → every node has every other node's blocks.
    pub converged: Option<Duration>,
    /// Agents started → every node has claimed a block of each family.
    pub all_claimed: Option<Duration>,
    /// Per claim: allocation → the block's route on every other node (ms).
    pub propagation: Stats,
    /// Claims whose block did not reach every node in time.
    pub propagation_failures: Vec<String>,
    /// Clean stop → block gone from every other node (ms).
    pub withdrawal_clean_ms: Option<f64>,
    /// Crash with graceful restart → block gone everywhere (ms).
    pub withdrawal_crash_ms: Option<f64>,
    pub lines: Vec<String>,
}

impl Report {
    fn say(&mut self, line: String) {
        eprintln!("scale: {line}");
        self.lines.push(line);
    }
}

/// Runs `testbed scale` and prints the report.
pub fn run(args: &ScaleArgs) -> anyhow::Result<()> {
    let nodes = generate::nodes(args.nodes)?;
    if let Some(dir) = &args.generate_only {
        generate::write(dir, &nodes)?;
        println!("wrote {}", dir.join("topology.clab.yaml").display());
        return Ok(());
    }
    let report = measure(args, &nodes)?;
    let text = render(args, &report);
    println!("{text}");
    if let Some(out) = &args.out {
        std::fs::write(out, &text).with_context(|| format!("writing {}", out.display()))?;
    }
    Ok(())
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// Deploys the generated cluster and measures it.
pub fn measure(args: &ScaleArgs, nodes: &[ScaleNode]) -> anyhow::Result<Report> {
    let dir = std::env::temp_dir().join(format!("petrel-scale-{}", std::process::id()));
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    generate::write(&dir, nodes)?;
    let mut report = Report {
        nodes: nodes.len(),
        ..Default::default()
    };
    report.say(format!(
        "{} petrel nodes ({} cores, load {} before deploying)",
        nodes.len(),
        procs::cpus(),
        load()
    ));
    let lab = Lab::deploy(&dir.join("topology.clab.yaml"))?;
    let started = lab
        .daemons_started_at()
        .context("the lab started no daemon")?;
    report.say(format!(
        "deployed; agents started {:.1?} ago",
        started.elapsed()
    ));
    let result = measure_lab(&lab, args, nodes, started, &mut report);
    let _ = std::fs::remove_dir_all(&dir);
    match result {
        Ok(()) => Ok(report),
        Err(e) => {
            report.say(format!("stopped: {e:#}"));
            eprintln!("{}", render(args, &report));
            Err(e)
        }
    }
}

fn names(nodes: &[ScaleNode]) -> Vec<String> {
    nodes.iter().map(|n| n.name.clone()).collect()
}

fn measure_lab(
    lab: &Lab,
    args: &ScaleArgs,
    nodes: &[ScaleNode],
    started: Instant,
    report: &mut Report,
) -> anyhow::Result<()> {
    let timeout = Duration::from_secs(args.timeout);
    cold_start(lab, nodes, started, timeout, report)?;
    let watched: Vec<(String, String)> = nodes
        .iter()
        .map(|n| Ok((n.name.clone(), lab.netns(&n.name)?)))
        .collect::<anyhow::Result<_>>()?;
    let monitors = Monitors::start(lab.root(), &watched)?;
    propagation(lab, nodes, &monitors, args.claims, report)?;
    idle(lab, nodes, Duration::from_secs(args.idle_secs), report)?;
    if !args.no_withdrawal {
        withdrawal(lab, nodes, &monitors, report)?;
    }
    report.say(format!("load at the end: {}", load()));
    Ok(())
}

/// Every node's blocks (confirmed), by owner.
fn blocks_by_owner(lab: &Lab) -> anyhow::Result<BTreeMap<String, Vec<IpNet>>> {
    let state = IpamState::read(&lab.root().join("ipam"))?;
    let mut out: BTreeMap<String, Vec<IpNet>> = BTreeMap::new();
    for b in state.blocks.iter().filter(|b| b.is_confirmed()) {
        if let Some(owner) = b.node() {
            let cidr: IpNet = b.cidr.to_string().parse()?;
            out.entry(owner.to_string()).or_default().push(cidr);
        }
    }
    Ok(out)
}

/// The destinations of `node`'s unicast kernel routes, both families.
fn kernel_dsts(lab: &Lab, node: &str) -> anyhow::Result<BTreeSet<IpNet>> {
    let mut out = BTreeSet::new();
    for v6 in [false, true] {
        for r in lab.kernel_routes(node, v6)? {
            if r.kind == "unicast"
                && let Ok(n) = r.dst.parse::<IpNet>()
            {
                out.insert(n);
            }
        }
    }
    Ok(out)
}

fn has_both_families(blocks: &[IpNet]) -> bool {
    blocks.iter().any(|b| b.addr().is_ipv4()) && blocks.iter().any(|b| b.addr().is_ipv6())
}

/// Waits until every node has every other node's blocks; nodes found
/// complete are not checked again.
fn cold_start(
    lab: &Lab,
    nodes: &[ScaleNode],
    started: Instant,
    timeout: Duration,
    report: &mut Report,
) -> anyhow::Result<()> {
    let mut pending: BTreeSet<String> = names(nodes).into_iter().collect();
    let mut last_missing = String::new();
    loop {
        let by_owner = blocks_by_owner(lab)?;
        let claimed = nodes
            .iter()
            .filter(|n| by_owner.get(&n.name).is_some_and(|b| has_both_families(b)))
            .count();
        if claimed == nodes.len() && report.all_claimed.is_none() {
            report.all_claimed = Some(started.elapsed());
            report.say(format!(
                "every node claimed an IPv4 and an IPv6 block {:.1?} after start",
                started.elapsed()
            ));
        }
        if claimed == nodes.len() {
            let all: Vec<(&String, &IpNet)> = by_owner
                .iter()
                .flat_map(|(o, bs)| bs.iter().map(move |b| (o, b)))
                .collect();
            let mut done = Vec::new();
            for node in &pending {
                let have = kernel_dsts(lab, node)?;
                let missing: Vec<String> = all
                    .iter()
                    .filter(|(o, b)| *o != node && !have.contains(b))
                    .map(|(o, b)| format!("{b} of {o}"))
                    .collect();
                if missing.is_empty() {
                    done.push(node.clone());
                } else {
                    last_missing =
                        format!("{node} lacks {} routes, e.g. {}", missing.len(), missing[0]);
                }
            }
            for d in done {
                pending.remove(&d);
            }
            if pending.is_empty() {
                report.converged = Some(started.elapsed());
                report.say(format!(
                    "cold start: every node holds every other node's blocks {:.1?} after the agents started",
                    started.elapsed()
                ));
                return Ok(());
            }
        } else {
            let without: Vec<&str> = nodes
                .iter()
                .filter(|n| !by_owner.get(&n.name).is_some_and(|b| has_both_families(b)))
                .map(|n| n.name.as_str())
                .take(10)
                .collect();
            last_missing = format!(
                "{} nodes without a block of each family, e.g. {without:?}",
                nodes.len() - claimed
            );
        }
        if started.elapsed() > timeout {
            bail!(
                "not converged {timeout:?} after the agents started: {} nodes incomplete; {last_missing}",
                pending.len()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A client of one node's IPAM API.
struct Ipam {
    rt: tokio::runtime::Runtime,
}

impl Ipam {
    fn new() -> anyhow::Result<Ipam> {
        Ok(Ipam {
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?,
        })
    }

    /// Allocates one address per family for `container` on `node`; returns
    /// the blocks of the addresses.
    fn allocate(&self, lab: &Lab, node: &str, container: &str) -> anyhow::Result<Vec<IpNet>> {
        let socket = lab.api_socket(node)?;
        self.rt.block_on(async {
            let mut c = petrel_proto::connect_ipam(&socket)
                .await
                .with_context(|| format!("connecting to {}", socket.display()))?;
            let r = c
                .allocate(petrel_proto::pb::AllocateRequest {
                    container_id: container.to_string(),
                    ifname: "eth0".into(),
                    network: "scale".into(),
                    ..Default::default()
                })
                .await
                .map_err(|s| anyhow::anyhow!("Allocate on {node}: {s}"))?
                .into_inner();
            r.addresses
                .iter()
                .map(|a| {
                    a.block
                        .parse::<IpNet>()
                        .context("block of an allocated address")
                })
                .collect()
        })
    }
}

/// Claims `claims` new blocks on distinct nodes and times each block's
/// arrival in every other node's kernel.
fn propagation(
    lab: &Lab,
    nodes: &[ScaleNode],
    monitors: &Monitors,
    claims: usize,
    report: &mut Report,
) -> anyhow::Result<()> {
    let ipam = Ipam::new()?;
    let clients: Vec<&ScaleNode> = nodes.iter().filter(|n| !n.reflector).collect();
    let all = names(nodes);
    let mut ms = Vec::new();
    // Breakdown: the claiming node's own (blackhole) route, the first
    // reflector's route.
    let (mut local_ms, mut rr_ms) = (Vec::new(), Vec::new());
    let reflectors: Vec<String> = nodes
        .iter()
        .filter(|n| n.reflector)
        .map(|n| n.name.clone())
        .collect();
    for c in 0..claims {
        let node = clients[c % clients.len()];
        let before: BTreeSet<IpNet> = blocks_by_owner(lab)?
            .remove(&node.name)
            .unwrap_or_default()
            .into_iter()
            .collect();
        // Allocate until an allocation lands in a new block: that one made
        // the node claim it.
        let mut new_block = None;
        let mut t0 = 0;
        for i in 0..64 {
            t0 = now_us();
            let blocks = ipam.allocate(lab, &node.name, &format!("scale-{c}-{i}"))?;
            if let Some(b) = blocks
                .iter()
                .find(|b| b.addr().is_ipv4() && !before.contains(b))
            {
                new_block = Some(*b);
                break;
            }
        }
        let block = new_block.with_context(|| format!("{} claimed no new block", node.name))?;
        let others: Vec<String> = all.iter().filter(|n| **n != node.name).cloned().collect();
        let dst = block.to_string();
        let deadline = Instant::now() + Duration::from_secs(60);
        let times = loop {
            let seen = monitors.first(&others, &dst, false, t0 - 1_000_000)?;
            let missing = unseen(&seen);
            if missing.is_empty() {
                break Some(seen);
            }
            if Instant::now() > deadline {
                report.propagation_failures.push(format!(
                    "{dst} of {}: missing on {} nodes after 60 s, e.g. {}",
                    node.name,
                    missing.len(),
                    missing[0]
                ));
                break None;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        if let Some(times) = times {
            let last = times.values().flatten().max().copied().unwrap_or(t0);
            ms.push((last - t0).max(0) as f64 / 1000.0);
            let rr = reflectors
                .iter()
                .filter_map(|r| times.get(r).copied().flatten())
                .min();
            if let Some(rr) = rr {
                rr_ms.push((rr - t0).max(0) as f64 / 1000.0);
            }
            let own = monitors.first(std::slice::from_ref(&node.name), &dst, false, t0)?;
            if let Some(t) = own.values().flatten().next() {
                local_ms.push((t - t0).max(0) as f64 / 1000.0);
            }
        }
    }
    let (local, rr) = (Stats::of(local_ms), Stats::of(rr_ms));
    report.say(format!(
        "propagation breakdown (p50/max): claiming node's own blackhole route {:.0}/{:.0} ms, first reflector {:.0}/{:.0} ms",
        local.p50, local.max, rr.p50, rr.max
    ));
    report.propagation = Stats::of(ms);
    let s = report.propagation.clone();
    report.say(format!(
        "block propagation over {} claims (allocation → kernel route on all {} other nodes): p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms; {} claims incomplete",
        s.count,
        nodes.len() - 1,
        s.p50,
        s.p99,
        s.max,
        report.propagation_failures.len()
    ));
    Ok(())
}

/// The `petrel agent` process of `node`.
fn agent_pid(lab: &Lab, node: &str) -> anyhow::Result<u32> {
    let pids = procs::netns_pids(&lab.netns(node)?)?;
    pids.into_iter()
        .find(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                let args: Vec<&[u8]> = c.split(|b| *b == 0).collect();
                args.first().is_some_and(|a| a.ends_with(b"petrel"))
                    && args.get(1).is_some_and(|a| *a == b"agent")
            })
        })
        .with_context(|| format!("no petrel agent in {node}"))
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// CPU over `window` and RSS, per agent and for the reflectors.
fn idle(
    lab: &Lab,
    nodes: &[ScaleNode],
    window: Duration,
    report: &mut Report,
) -> anyhow::Result<()> {
    let ticks = procs::clock_ticks();
    let pids: Vec<(bool, u32)> = nodes
        .iter()
        .map(|n| Ok((n.reflector, agent_pid(lab, &n.name)?)))
        .collect::<anyhow::Result<_>>()?;
    // Let the claims' aftermath settle first.
    std::thread::sleep(Duration::from_secs(5));
    let before: Vec<procs::Usage> = pids
        .iter()
        .map(|(_, p)| procs::usage(&[*p], ticks))
        .collect::<anyhow::Result<_>>()?;
    let host_before = procs::host_busy_s(ticks)?;
    std::thread::sleep(window);
    let host = procs::host_busy_s(ticks)? - host_before;
    let after: Vec<procs::Usage> = pids
        .iter()
        .map(|(_, p)| procs::usage(&[*p], ticks))
        .collect::<anyhow::Result<_>>()?;
    let secs = window.as_secs_f64();
    let (mut cpu_clients, mut cpu_rr) = (0.0, 0.0);
    let (mut rss_clients, mut rss_rr): (Vec<u64>, Vec<u64>) = (Vec::new(), Vec::new());
    for (((rr, _), b), a) in pids.iter().zip(&before).zip(&after) {
        let cpu = (a.cpu_s - b.cpu_s) / secs;
        if *rr {
            cpu_rr += cpu;
            rss_rr.push(a.rss_bytes);
        } else {
            cpu_clients += cpu;
            rss_clients.push(a.rss_bytes);
        }
    }
    let n = rss_clients.len().max(1) as f64;
    report.say(format!(
        "idle over {secs:.0} s: all {} agents {:.1} % of one core ({:.2} % per agent on average), reflectors {:.1} % together; whole machine {:.0} % of one core",
        nodes.len(),
        100.0 * (cpu_clients + cpu_rr),
        100.0 * cpu_clients / n,
        100.0 * cpu_rr,
        100.0 * host / secs
    ));
    report.say(format!(
        "RSS: agents average {:.1} MiB, max {:.1} MiB; reflectors {}",
        mib(rss_clients.iter().sum::<u64>()) / n,
        mib(rss_clients.iter().copied().max().unwrap_or(0)),
        rss_rr
            .iter()
            .map(|r| format!("{:.1} MiB", mib(*r)))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    Ok(())
}

/// Times until `node`'s IPv4 block is deleted on every other node (but
/// those in `down`).
fn wait_withdrawn(
    nodes: &[ScaleNode],
    monitors: &Monitors,
    (node, block): (&str, &IpNet),
    down: &[&str],
    t0: i64,
    limit: Duration,
) -> anyhow::Result<f64> {
    let others: Vec<String> = names(nodes)
        .into_iter()
        .filter(|n| n != node && !down.contains(&n.as_str()))
        .collect();
    let dst = block.to_string();
    let deadline = Instant::now() + limit;
    loop {
        let seen = monitors.first(&others, &dst, true, t0)?;
        let missing = unseen(&seen);
        if missing.is_empty() {
            let last = seen.values().flatten().max().copied().unwrap_or(t0);
            return Ok((last - t0).max(0) as f64 / 1000.0);
        }
        if Instant::now() > deadline {
            bail!(
                "{dst} of {node} still routed on {} nodes {limit:?} after the stop, e.g. {}",
                missing.len(),
                missing[0]
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn withdrawal(
    lab: &Lab,
    nodes: &[ScaleNode],
    monitors: &Monitors,
    report: &mut Report,
) -> anyhow::Result<()> {
    let by_owner = blocks_by_owner(lab)?;
    let block_of = |n: &ScaleNode| -> anyhow::Result<(String, IpNet)> {
        let b = by_owner
            .get(&n.name)
            .and_then(|bs| bs.iter().find(|b| b.addr().is_ipv4()))
            .copied()
            .with_context(|| format!("{} has no IPv4 block", n.name))?;
        Ok((n.name.clone(), b))
    };
    let no_gr = nodes
        .iter()
        .find(|n| !n.graceful)
        .context("no node without graceful restart")?;
    let crash = nodes
        .iter()
        .rev()
        .find(|n| n.graceful && !n.reflector)
        .context("no client node with graceful restart")?;
    let (clean, block) = block_of(no_gr)?;
    let t0 = now_us();
    lab.stop_node(&clean)?;
    let ms = wait_withdrawn(
        nodes,
        monitors,
        (&clean, &block),
        &[],
        t0,
        Duration::from_secs(60),
    )?;
    report.withdrawal_clean_ms = Some(ms);
    report.say(format!(
        "withdrawal without graceful restart (restart time 0, SIGTERM): {block} of {clean} gone from every other node after {ms:.0} ms"
    ));
    let (crashed, block) = block_of(crash)?;
    let t0 = now_us();
    lab.kill_node(&crashed)?;
    let limit = Duration::from_secs(generate::RESTART_TIME_S * 3 + 60);
    let ms = wait_withdrawn(nodes, monitors, (&crashed, &block), &[&clean], t0, limit)?;
    report.withdrawal_crash_ms = Some(ms);
    report.say(format!(
        "withdrawal, node crashed (SIGKILL; graceful restart, restart time {} s): {block} of {crashed} gone from every other node after {ms:.0} ms",
        generate::RESTART_TIME_S
    ));
    Ok(())
}

/// The report as markdown.
pub fn render(args: &ScaleArgs, report: &Report) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "## testbed scale: {} nodes, {} claims\n",
        report.nodes, args.claims
    );
    for l in &report.lines {
        let _ = writeln!(t, "- {l}");
    }
    for f in &report.propagation_failures {
        let _ = writeln!(t, "- propagation incomplete: {f}");
    }
    t
}

/// The nodes of a monitor answer (`Monitors::first`) that have not seen
/// the event yet.
fn unseen(seen: &BTreeMap<String, Option<i64>>) -> Vec<&String> {
    seen.iter()
        .filter(|(_, t)| t.is_none())
        .map(|(n, _)| n)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let s = Stats::of((1..=100).map(f64::from).collect());
        assert_eq!((s.count, s.p50, s.max), (100, 51.0, 100.0));
        assert_eq!(s.p99, 99.0);
        assert_eq!(Stats::of(vec![]), Stats::default());
    }
}
