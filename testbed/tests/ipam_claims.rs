//! Block claims by many agents sharing one IPAM directory: compare-and-swap
//! on every write, two-phase claims, no block ever owned twice.
//!
//! | test | what |
//! |------|------|
//! | `twenty_agents_claim_twenty_free_blocks` | 12 fillers take 12 of the pool's 32 blocks; 20 agents started at once each get a different one of the 20 left; ADD through the conflist an agent wrote (`--cni-conf-dir`) gives an address of its block; a 21st gets a clear "exhausted" error (log and `petrel ipam show`) and no block |
//! | `claims_survive_agents_killed_at_random` | the same 20 started at once; for 3 s some are killed (SIGKILL) at random moments and when seen with a pending claim, then restarted; twice. No block is ever owned twice, and in the end each owns exactly one block and no claim is left pending |
//!
//! Topology `ipam20`: bare namespaces, no links, no BGP peers; the test
//! starts the agents itself (`--ipam-dir` shared, `--metrics-listen off`).
//! The random kills use a seed printed by the test; set
//! `PETREL_TEST_SEED=<n>` to replay one.
//!
//! Run as root after `cargo build --bins`:
//! `cargo test -p petrel-testbed --test ipam_claims -- --test-threads=1`.

mod common;

use anyhow::{Context, ensure};
use petrel_testbed::cni::ipam::IpamState;
use petrel_testbed::cni::{Cni, IpPrefix};
use petrel_testbed::daemon::petrel_bin;
use petrel_testbed::{Lab, wait_for};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::OpenOptions;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Blocks in the pool (10.250.0.0/24 in /29s).
const POOL_BLOCKS: usize = 32;
/// How long claims get to settle.
const SETTLE: Duration = Duration::from_secs(60);
/// How long after (re)starting the agents kills happen: twenty debug-build
/// agents starting at once on two cores claim within about 2.5 s.
const KILL_WINDOW: Duration = Duration::from_millis(3000);
/// At most this many agents are killed per round.
const MAX_KILLS: usize = 10;

fn fillers() -> Vec<String> {
    (1..=12).map(|i| format!("f{i:02}")).collect()
}

fn twenty() -> Vec<String> {
    (1..=20).map(|i| format!("n{i:02}")).collect()
}

const TWENTY_FIRST: &str = "n21";

#[test]
fn twenty_agents_claim_twenty_free_blocks() {
    let lab = common::deploy("ipam20");
    let mut agents = Agents::new(&lab);
    run(&lab, &mut agents, |lab, agents| {
        start_fillers(agents)?;
        let names = twenty();
        let t0 = Instant::now();
        agents.start_all(&names)?;
        let owners = wait_one_block_each(lab, &names)?;
        eprintln!("20 agents claimed 20 blocks in {:.1?}", t0.elapsed());
        let blocks: BTreeSet<_> = owners.values().collect();
        ensure!(
            blocks.len() == 20,
            "blocks shared among the twenty: {owners:?}"
        );
        let state = ipam(lab)?;
        ensure!(
            state.blocks.iter().filter(|b| b.is_confirmed()).count() == POOL_BLOCKS,
            "the pool should be fully claimed: {state:#?}"
        );
        check_sound(&state)?;

        // The 21st: a clear error, no block, nothing written as its own.
        agents.start(TWENTY_FIRST)?;
        let log = wait_for(SETTLE, "n21 to report the exhausted pool", || {
            let log = agents.log(TWENTY_FIRST);
            ensure!(
                log.to_lowercase().contains("exhausted"),
                "log so far:\n{}",
                tail(&log)
            );
            Ok(log)
        })?;
        ensure!(
            log.contains("claims") && log.contains(TWENTY_FIRST),
            "the error should name the pool (claims) and the node: {}",
            tail(&log)
        );
        std::thread::sleep(Duration::from_secs(2));
        let state = ipam(lab)?;
        let mine: Vec<String> = state
            .blocks
            .iter()
            .filter(|b| b.node() == Some(TWENTY_FIRST))
            .map(|b| format!("{} {}", b.cidr, b.state))
            .chain(
                state
                    .affinities
                    .iter()
                    .filter(|a| a.node == TWENTY_FIRST)
                    .map(|a| format!("affinity {} {}", a.cidr, a.state)),
            )
            .collect();
        ensure!(mine.is_empty(), "n21 holds IPAM objects: {mine:?}");
        ensure!(
            agents.is_running(TWENTY_FIRST),
            "n21 should keep running after the error"
        );
        // The operator sees it too: `petrel ipam show` names the problem.
        let show = agents.cli(TWENTY_FIRST, &["ipam", "show"])?;
        ensure!(
            show.to_lowercase().contains("exhausted"),
            "`petrel ipam show` on n21 should say the pool is exhausted:\n{show}"
        );
        check_sound(&state)?;
        let still = owners_of(&state, &names);
        ensure!(
            still == owners,
            "the twenty's blocks changed: {owners:?} -> {still:?}"
        );

        // The conflist an agent writes with --cni-conf-dir is what a runtime
        // runs: ADD through it gives an address of the agent's block.
        let dir = lab.root().join("n01/cni");
        let cni = Cni::from_conf_dir(lab, "n01", &dir)?;
        let pod = cni.add().context("ADD through n01's own conflist")?;
        let block: IpPrefix = owners["n01"].parse()?;
        let addr = pod.ipv4().context("no IPv4 address")?;
        ensure!(
            block.contains(addr.into()),
            "{pod:?}: {addr} is not in n01's block {block}"
        );
        pod.delete()?;
        Ok(())
    });
}

#[test]
fn claims_survive_agents_killed_at_random() {
    let lab = common::deploy("ipam20");
    let mut agents = Agents::new(&lab);
    let seed = std::env::var("PETREL_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
    eprintln!("claims_survive_agents_killed_at_random: PETREL_TEST_SEED={seed}");
    let mut rng = XorShift(seed | 1);
    run(&lab, &mut agents, |lab, agents| {
        start_fillers(agents)?;
        let names = twenty();
        agents.start_all(&names)?;
        let mut mid_claim = 0;
        for round in 1..=2 {
            // For KILL_WINDOW, which covers the claims of agents just
            // started: SIGKILL 4 to 7 agents at random moments, and one in
            // three of the agents seen with a pending claim (inside the
            // two-phase window); at most MAX_KILLS.
            let mut schedule: Vec<(Duration, String)> = Vec::new();
            for _ in 0..4 + rng.below(4) {
                let ms = rng.below(KILL_WINDOW.as_millis() as usize) as u64;
                schedule.push((
                    Duration::from_millis(ms),
                    names[rng.below(names.len())].clone(),
                ));
            }
            let start = Instant::now();
            let mut killed: Vec<(u128, String, &str)> = Vec::new();
            // Each node seen claiming gets one coin flip per round.
            let mut flipped: BTreeSet<String> = BTreeSet::new();
            while start.elapsed() < KILL_WINDOW && killed.len() < MAX_KILLS {
                let now = start.elapsed();
                let state = ipam(lab)?;
                check_sound(&state).with_context(|| format!("round {round} at {now:?}"))?;
                let pending: BTreeSet<&str> = state
                    .affinities
                    .iter()
                    .filter(|a| a.state == "pending")
                    .map(|a| a.node.as_str())
                    .chain(
                        state
                            .blocks
                            .iter()
                            .filter(|b| !b.is_confirmed())
                            .filter_map(|b| b.node()),
                    )
                    .collect();
                for n in &names {
                    if killed.iter().any(|(_, k, _)| k == n) || killed.len() >= MAX_KILLS {
                        continue;
                    }
                    let due = schedule.iter().any(|(at, v)| v == n && *at <= now);
                    let claiming = pending.contains(n.as_str())
                        && flipped.insert(n.clone())
                        && rng.below(3) == 0;
                    if due || claiming {
                        agents.kill(n)?;
                        let why = if claiming { "pending claim" } else { "random" };
                        mid_claim += usize::from(claiming);
                        killed.push((now.as_millis(), n.clone(), why));
                    }
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            eprintln!("round {round}: killed (ms, node, why) {killed:?}");
            for (_, v, _) in &killed {
                agents.start(v)?;
            }
        }
        eprintln!("{mid_claim} agents were killed with a pending claim");
        let owners = wait_one_block_each(lab, &names)?;
        let blocks: BTreeSet<_> = owners.values().collect();
        ensure!(blocks.len() == 20, "blocks shared: {owners:?}");
        let state = ipam(lab)?;
        check_sound(&state)?;
        let pending: Vec<String> = state
            .affinities
            .iter()
            .filter(|a| a.state != "confirmed")
            .map(|a| format!("{} {} {}", a.node, a.cidr, a.state))
            .chain(
                state
                    .blocks
                    .iter()
                    .filter(|b| !b.is_confirmed())
                    .map(|b| format!("block {} {} {}", b.cidr, b.affinity, b.state)),
            )
            .collect();
        ensure!(pending.is_empty(), "claims left half-done: {pending:?}");
        Ok(())
    });
}

// ------------------------------------------------------------- helpers ---

/// Runs a scenario; on failure panics with the error, the IPAM objects and
/// the tail of every agent's log.
fn run(
    lab: &Lab,
    agents: &mut Agents,
    scenario: impl FnOnce(&Lab, &mut Agents) -> anyhow::Result<()>,
) {
    if let Err(e) = scenario(lab, agents) {
        let mut logs = String::new();
        for node in lab.nodes() {
            let log = agents.log(node);
            if !log.is_empty() {
                logs.push_str(&format!(
                    "\n===== {node} agent log (tail) =====\n{}\n",
                    tail(&log)
                ));
            }
        }
        panic!(
            "lab {} failed: {e:#}\n--- IPAM objects ---\n{:#?}\n{logs}",
            lab.prefix(),
            ipam(lab)
        );
    }
}

/// Agents run by the test (not by the lab), one per namespace; killed on
/// drop.
struct Agents<'a> {
    lab: &'a Lab,
    running: BTreeMap<String, Child>,
}

impl<'a> Agents<'a> {
    fn new(lab: &'a Lab) -> Self {
        Agents {
            lab,
            running: BTreeMap::new(),
        }
    }

    fn ipam_dir(&self) -> PathBuf {
        self.lab.root().join("ipam")
    }

    fn log_file(&self, node: &str) -> PathBuf {
        self.lab.root().join(node).join("agent.log")
    }

    /// Starts `petrel agent` in `node`'s namespace with its own manifest
    /// copy and the shared IPAM directory; output appended to its log.
    fn start(&mut self, node: &str) -> anyhow::Result<()> {
        ensure!(!self.running.contains_key(node), "{node} already runs");
        let rundir = self.lab.root().join(node);
        let manifests = rundir.join("manifests");
        if !manifests.exists() {
            copy_dir(
                &common::topology("ipam20").with_file_name("petrel"),
                &manifests,
            )?;
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_file(node))?;
        let child = Command::new("ip")
            .args(["netns", "exec", &self.lab.netns(node)?])
            .arg(petrel_bin()?)
            .args(["agent", "--node-name", node, "--log-level", "info"])
            .arg("--datastore")
            .arg(format!("file:{}", manifests.display()))
            .arg("--ipam-dir")
            .arg(self.ipam_dir())
            .arg("--api-socket")
            .arg(rundir.join(format!("{node}.sock")))
            .args(["--metrics-listen", "off"])
            .arg("--cni-conf-dir")
            .arg(rundir.join("cni"))
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting the agent of {node}"))?;
        self.running.insert(node.to_string(), child);
        Ok(())
    }

    /// Starts every agent of `nodes` as fast as processes can be spawned.
    fn start_all(&mut self, nodes: &[String]) -> anyhow::Result<()> {
        for n in nodes {
            self.start(n)?;
        }
        Ok(())
    }

    /// SIGKILL: no chance to clean up.
    fn kill(&mut self, node: &str) -> anyhow::Result<()> {
        let mut child = self
            .running
            .remove(node)
            .with_context(|| format!("{node} is not running"))?;
        child.kill()?;
        child.wait()?;
        Ok(())
    }

    fn is_running(&mut self, node: &str) -> bool {
        self.running
            .get_mut(node)
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// `petrel --api-socket <node's socket> <args>`.
    fn cli(&self, node: &str, args: &[&str]) -> anyhow::Result<String> {
        let socket = self.lab.root().join(node).join(format!("{node}.sock"));
        let out = Command::new(petrel_bin()?)
            .arg("--api-socket")
            .arg(&socket)
            .args(args)
            .output()?;
        ensure!(
            out.status.success(),
            "petrel {args:?} on {node}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn log(&self, node: &str) -> String {
        std::fs::read_to_string(self.log_file(node)).unwrap_or_default()
    }
}

impl Drop for Agents<'_> {
    fn drop(&mut self) {
        for (_, mut child) in std::mem::take(&mut self.running) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn copy_dir(src: &Path, dst: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dst)?;
    for e in std::fs::read_dir(src).with_context(|| format!("listing {}", src.display()))? {
        let e = e?;
        std::fs::copy(e.path(), dst.join(e.file_name()))
            .with_context(|| format!("copying {}", e.path().display()))?;
    }
    Ok(())
}

fn ipam(lab: &Lab) -> anyhow::Result<IpamState> {
    IpamState::read(&lab.root().join("ipam"))
}

/// Starts the twelve fillers and waits until each owns one block.
fn start_fillers(agents: &mut Agents) -> anyhow::Result<()> {
    let f = fillers();
    agents.start_all(&f)?;
    let owners = wait_one_block_each(agents.lab, &f).context("fillers")?;
    ensure!(
        owners.values().collect::<BTreeSet<_>>().len() == 12,
        "fillers share blocks: {owners:?}"
    );
    Ok(())
}

/// node -> its confirmed block, for the nodes that own exactly one.
fn owners_of(state: &IpamState, nodes: &[String]) -> BTreeMap<String, String> {
    nodes
        .iter()
        .filter_map(|n| match state.confirmed_blocks(n).as_slice() {
            [b] => Some((n.clone(), b.cidr.to_string())),
            _ => None,
        })
        .collect()
}

/// Waits until each of `nodes` owns exactly one confirmed block, checking
/// soundness at every look.
fn wait_one_block_each(lab: &Lab, nodes: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    wait_for(
        SETTLE,
        &format!("{} agents to own one block each", nodes.len()),
        || {
            let state = ipam(lab)?;
            check_sound(&state)?;
            let counts: Vec<String> = nodes
                .iter()
                .map(|n| (n, state.confirmed_blocks(n).len()))
                .filter(|(_, c)| *c != 1)
                .map(|(n, c)| format!("{n}: {c}"))
                .collect();
            ensure!(
                counts.is_empty(),
                "not exactly one confirmed block: {counts:?}"
            );
            Ok(owners_of(&state, nodes))
        },
    )
}

/// No block owned twice, every block inside the pool.
fn check_sound(state: &IpamState) -> anyhow::Result<()> {
    let problems = state.ownership_problems();
    ensure!(problems.is_empty(), "ownership problems: {problems:?}");
    let pool: IpPrefix = "10.250.0.0/24".parse()?;
    let outside: Vec<String> = state
        .blocks
        .iter()
        .filter(|b| !pool.contains(b.cidr.addr) || b.cidr.len != 29)
        .map(|b| b.cidr.to_string())
        .collect();
    ensure!(
        outside.is_empty(),
        "blocks that are not /29s of the pool: {outside:?}"
    );
    Ok(())
}

fn tail(log: &str) -> String {
    petrel_testbed::lab::tail(log, 30)
}

/// xorshift64: reproducible choices from a printed seed.
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}
