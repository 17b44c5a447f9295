//! `testbed bench-daemons`: whole-daemon, side-by-side benchmark of petrel,
//! BIRD 2, FRR and GoBGP on this machine (benchmark B1 of
//! `anchors-performance.md`: ingest and re-advertise throughput).
//!
//! For each daemon and run, a fresh three-node [`Lab`] is deployed:
//! `gen — dut — sink`, each a uniquely named network namespace
//! (`pt<pid>x<n>-{gen,dut,sink}`) joined by veth pairs. The device under test
//! runs an equivalent configuration ([`configs`]). The harness itself speaks
//! BGP from the `gen` and `sink` namespaces ([`speaker`]): the generator
//! sends N unique /24s, pre-encoded and packed into as few UPDATEs as fit,
//! then End-of-RIB (RFC 4724); the sink decodes what the DUT passes on
//! (RFC 4271 UPDATEs) and timestamps the moment it holds all N. Measured per
//! run ([`report::RunResult`]): propagation time (first UPDATE written →
//! sink holds every prefix), DUT CPU seconds and peak/current RSS from
//! `/proc` ([`procs`]), kernel routes in the DUT's namespace once idle, and
//! the CPU time other processes took meanwhile (runs where that exceeds a
//! third of a CPU are flagged). Propagation does not wait for the kernel
//! install. The DUT is pinned to CPU 1 and the harness to CPU 0 when the machine has
//! two CPUs or more.
//!
//! Needs root and the daemons' Debian packages. Run it by hand, from a
//! release build of both the harness and petrel:
//!
//! ```text
//! cargo build --release -p petrel --bin petrel
//! cargo build --release -p petrel-testbed --bin testbed
//! sudo target/release/testbed bench-daemons --routes 100000 --runs 5 --out b1.md
//! ```
//!
//! The petrel binary is `--petrel-bin`, else `$PETREL_BIN`, else
//! `target/release/petrel`; the harness re-executes itself once so that the
//! testbed's daemon launcher sees it (and petrel's log filter `warn`) in its
//! environment.

pub mod configs;
pub mod procs;
pub mod report;
pub mod speaker;

use crate::Lab;
use anyhow::{Context, bail};
use configs::{
    DUT_GEN_ADDR, DUT_SINK_ADDR, Daemon, GEN_ADDR, GEN_AS, SINK_ADDR, SINK_AS, dut_files,
    topology_yaml,
};
use ipnet::{IpNet, Ipv4Net};
use report::{Run, RunResult};
use speaker::{PROBE_PREFIX, Session, SinkProgress, bench_index, encode_table};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Command-line options of `testbed bench-daemons`.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Unique /24 prefixes the generator announces.
    #[arg(long, default_value_t = 100_000)]
    pub routes: usize,
    /// Runs per daemon (runs of the daemons are interleaved).
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Comma-separated daemons to measure: petrel, bird, frr, gobgp.
    #[arg(long, default_value = "petrel,bird,frr,gobgp")]
    pub daemons: String,
    /// Also write the markdown report to this file.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Seconds a DUT gets to pass every prefix on before the run fails.
    #[arg(long, value_name = "SECS", default_value_t = 120)]
    pub timeout: u64,
    /// The petrel binary to measure (default: $PETREL_BIN, else
    /// target/release/petrel).
    #[arg(long, value_name = "PATH")]
    pub petrel_bin: Option<PathBuf>,
}

/// How long the harness waits for each BGP session and for the probe route.
const SETUP_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest wait for the DUT to go idle after convergence.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Marks the re-executed child, so it does not re-execute again.
const CHILD_ENV: &str = "PETREL_BENCH_CHILD";

static INTERRUPTED: AtomicBool = AtomicBool::new(false);
static RUN_COUNTER: AtomicUsize = AtomicUsize::new(0);

fn check_interrupted() -> anyhow::Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}

/// Runs the benchmark and prints the report (also to `--out`).
pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let daemons = Daemon::parse_list(&args.daemons)?;
    if args.routes == 0 || args.routes > speaker::MAX_ROUTES {
        bail!("--routes must be 1..={}", speaker::MAX_ROUTES);
    }
    if args.runs == 0 {
        bail!("--runs must be at least 1");
    }
    let petrel_bin = if daemons.contains(&Daemon::Petrel) {
        let bin = petrel_binary(args.petrel_bin.as_deref())?;
        if let Some(status) = reexec_for_petrel(&bin)? {
            std::process::exit(status);
        }
        Some(bin)
    } else {
        None
    };
    watch_signals(|| {
        eprintln!("bench-daemons: interrupted; tearing down");
        INTERRUPTED.store(true, Ordering::SeqCst);
    });
    // Before pinning: afterwards this process sees one CPU.
    let cpus = procs::cpus();
    let pinned = cpus >= 2;
    if pinned {
        procs::pin_self(0)?;
    }
    let mut header = machine_header(cpus, pinned);
    header.extend(versions(&daemons, petrel_bin.as_deref()));
    header.push(format!(
        "{} runs per daemon (interleaved), convergence timeout {} s",
        args.runs, args.timeout
    ));
    let prefixes = speaker::bench_prefixes(args.routes)?;
    let mut runs = Vec::new();
    'runs: for index in 0..args.runs {
        for &daemon in &daemons {
            if INTERRUPTED.load(Ordering::SeqCst) {
                break 'runs;
            }
            eprintln!(
                "bench-daemons: {} run {}/{} ...",
                daemon.label(),
                index + 1,
                args.runs
            );
            let outcome =
                run_one(daemon, &prefixes, args.timeout, pinned).map_err(|e| format!("{e:#}"));
            if INTERRUPTED.load(Ordering::SeqCst) {
                break 'runs;
            }
            match &outcome {
                Ok(r) => eprintln!(
                    "bench-daemons: {} run {}: {:.3} s, CPU {:.2} s, peak RSS {:.1} MiB",
                    daemon.label(),
                    index + 1,
                    r.propagation_s,
                    r.cpu_total_s,
                    r.peak_rss_bytes as f64 / 1048576.0
                ),
                Err(e) => eprintln!(
                    "bench-daemons: {} run {} FAILED: {e}",
                    daemon.label(),
                    index + 1
                ),
            }
            runs.push(Run {
                daemon,
                index,
                outcome,
            });
        }
    }
    if INTERRUPTED.load(Ordering::SeqCst) {
        header.push(format!(
            "INTERRUPTED: only the {} runs completed before the signal are reported",
            runs.len()
        ));
    }
    let text = report::render(&header, args.routes, &daemons, &runs);
    println!("{text}");
    if let Some(out) = &args.out {
        std::fs::write(out, &text).with_context(|| format!("writing {}", out.display()))?;
    }
    Ok(())
}

/// `--petrel-bin`, `$PETREL_BIN` or the workspace's `target/release/petrel`.
fn petrel_binary(flag: Option<&Path>) -> anyhow::Result<PathBuf> {
    let bin = match (flag, std::env::var_os("PETREL_BIN")) {
        (Some(p), _) => p.to_path_buf(),
        (None, Some(p)) => PathBuf::from(p),
        (None, None) => crate::daemon::target_dir().join("release").join("petrel"),
    };
    let bin = std::path::absolute(&bin).unwrap_or(bin);
    if !bin.is_file() {
        bail!(
            "petrel binary {} not found: run `cargo build --release --bin petrel` or pass --petrel-bin",
            bin.display()
        );
    }
    Ok(bin)
}

/// The testbed starts petrel as `$PETREL_BIN` with `RUST_LOG` from
/// `$PETREL_TESTBED_LOG`; when those are not what the benchmark needs, run
/// this same command again with them set and return its exit code.
fn reexec_for_petrel(bin: &Path) -> anyhow::Result<Option<i32>> {
    let bin_ok = std::env::var_os("PETREL_BIN").is_some_and(|p| Path::new(&p) == bin);
    let log_ok = std::env::var("PETREL_TESTBED_LOG").is_ok_and(|l| l == "warn");
    if bin_ok && log_ok {
        return Ok(None);
    }
    if std::env::var_os(CHILD_ENV).is_some() {
        bail!("re-executed with PETREL_BIN and PETREL_TESTBED_LOG set, but they did not take");
    }
    let exe = std::env::current_exe().context("finding the testbed binary")?;
    let mut child = Command::new(&exe)
        .args(std::env::args_os().skip(1))
        .env("PETREL_BIN", bin)
        .env("PETREL_TESTBED_LOG", "warn")
        .env(CHILD_ENV, "1")
        .spawn()
        .with_context(|| format!("re-executing {}", exe.display()))?;
    // Ctrl-C reaches the child through the terminal's process group; a
    // SIGTERM or SIGINT sent to this process alone is passed on, so the
    // child always gets to tear its namespaces down.
    let pid = child.id().to_string();
    watch_signals(move || {
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
    });
    let status = child
        .wait()
        .context("waiting for the re-executed testbed")?;
    Ok(Some(status.code().unwrap_or(1)))
}

/// Calls `on_signal` from a background thread at the first Ctrl-C or
/// SIGTERM (which then no longer end the process). The benchmark sets
/// [`INTERRUPTED`] there: the running step fails and its guards tear the
/// namespaces and daemons down.
fn watch_signals(on_signal: impl FnOnce() + Send + 'static) {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async {
            let Ok(mut term) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            else {
                return;
            };
            let Ok(mut int) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
            else {
                return;
            };
            let _ = ready_tx.send(());
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            on_signal();
        });
    });
    // Wait until the handlers are installed, so an early signal is not lost.
    let _ = ready_rx.recv_timeout(Duration::from_secs(1));
}

/// A directory removed on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One run of one daemon: deploy, measure, tear down (on every path).
fn run_one(
    daemon: Daemon,
    prefixes: &[Ipv4Net],
    timeout: u64,
    pinned: bool,
) -> anyhow::Result<RunResult> {
    let n = RUN_COUNTER.fetch_add(1, Ordering::SeqCst);
    let dir = TempDir(std::env::temp_dir().join(format!(
        "petrel-bench-{}-{n}-{}",
        std::process::id(),
        daemon.name()
    )));
    let _ = std::fs::remove_dir_all(&dir.0);
    let (_, files) = dut_files(daemon);
    for (rel, text) in files {
        let path = dir.0.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    let topo = dir.0.join("topology.clab.yaml");
    std::fs::write(&topo, topology_yaml(daemon))?;
    let lab = Lab::deploy(&topo)?;
    let result = measure(&lab, daemon, prefixes, timeout, pinned);
    if let Err(e) = &result {
        eprintln!(
            "bench-daemons: {} failed: {e:#}\n--- DUT log (tail) ---\n{}",
            daemon.label(),
            crate::lab::tail(&lab.log("dut"), 30)
        );
    }
    drop(lab);
    drop(dir);
    result
}

fn measure(
    lab: &Lab,
    daemon: Daemon,
    prefixes: &[Ipv4Net],
    timeout: u64,
    pinned: bool,
) -> anyhow::Result<RunResult> {
    let (gen_ns, dut_ns, sink_ns) = (lab.netns("gen")?, lab.netns("dut")?, lab.netns("sink")?);
    let pids = procs::netns_pids(&dut_ns)?;
    if pids.is_empty() {
        bail!("no DUT process in {dut_ns}");
    }
    if pinned {
        procs::pin(&pids, 1)?;
    }
    let ticks = procs::clock_ticks();
    let routes = prefixes.len();
    let progress = SinkProgress::new(routes, Instant::now());
    let (mut sink, reader) = Session::establish(
        "sink",
        &sink_ns,
        SINK_AS,
        SINK_ADDR,
        DUT_SINK_ADDR,
        SETUP_TIMEOUT,
    )?;
    let p = progress.clone();
    sink.start(reader, move |u| p.apply(u))?;
    let (mut generator, reader) = Session::establish(
        "gen",
        &gen_ns,
        GEN_AS,
        GEN_ADDR,
        DUT_GEN_ADDR,
        SETUP_TIMEOUT,
    )?;
    generator.start(reader, |_| {})?;
    let sessions_ok = || -> anyhow::Result<()> {
        check_interrupted()?;
        for s in [&generator, &sink] {
            if let Some(e) = s.error() {
                bail!("session went down: {e}");
            }
        }
        Ok(())
    };

    // Check that the DUT passes a route from gen on to sink at all.
    let (probe, _) = encode_table(&[PROBE_PREFIX], GEN_AS, GEN_ADDR, false, generator.ctx())?;
    generator.send(&probe)?;
    let start = Instant::now();
    while !progress.probe_seen() {
        sessions_ok()?;
        if start.elapsed() > SETUP_TIMEOUT {
            bail!(
                "the probe route {PROBE_PREFIX} never reached the sink within {SETUP_TIMEOUT:?}: \
                 the DUT does not pass routes on"
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let (table, _updates) = encode_table(prefixes, GEN_AS, GEN_ADDR, true, generator.ctx())?;
    std::thread::sleep(Duration::from_secs(1));

    let before = procs::usage(&pids, ticks)?;
    let (host_before, self_before) = (procs::host_busy_s(ticks)?, procs::self_cpu_s(ticks)?);
    let t0 = Instant::now();
    let gen_send = generator.send(&table)?;
    let deadline = Duration::from_secs(timeout);
    let all_at = loop {
        if let Some(at) = progress.all_at() {
            break at;
        }
        sessions_ok()?;
        procs::usage(&pids, ticks).context("DUT died")?;
        if t0.elapsed() > deadline {
            bail!(
                "no convergence within {timeout} s: the sink holds {} of {routes} prefixes",
                progress.count()
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let converged = procs::usage(&pids, ticks)?;
    let sink_updates = progress.updates();
    let (host_after, self_after) = (procs::host_busy_s(ticks)?, procs::self_cpu_s(ticks)?);
    let other_cpu =
        (host_after - host_before) - (self_after - self_before) - (converged.cpu_s - before.cpu_s);
    let propagation = all_at.saturating_duration_since(t0);

    // Let the DUT finish (kernel install, timers) before reading totals.
    let mut last = converged;
    let mut quiet = 0;
    let idle_start = Instant::now();
    while quiet < 2 && idle_start.elapsed() < IDLE_TIMEOUT {
        sessions_ok()?;
        std::thread::sleep(Duration::from_millis(500));
        let now = procs::usage(&pids, ticks)?;
        quiet = if now.cpu_s - last.cpu_s < 0.02 {
            quiet + 1
        } else {
            0
        };
        last = now;
    }
    let fib_routes = if daemon.installs_fib() {
        Some(kernel_table_routes(&dut_ns, routes)?)
    } else {
        None
    };
    sessions_ok()?;
    Ok(RunResult {
        propagation_s: propagation.as_secs_f64(),
        gen_send_s: gen_send.as_secs_f64(),
        cpu_converge_s: converged.cpu_s - before.cpu_s,
        cpu_total_s: last.cpu_s - before.cpu_s,
        peak_rss_bytes: last.hwm_bytes,
        rss_after_bytes: converged.rss_bytes,
        other_cpu_s: other_cpu.max(0.0),
        sink_updates,
        fib_routes,
    })
}

/// Table prefixes in the main IPv4 table of `netns`.
fn kernel_table_routes(netns: &str, routes: usize) -> anyhow::Result<usize> {
    let mut c = Command::new("ip");
    c.args(["-n", netns, "-4", "route", "show", "table", "main"]);
    let out = crate::daemon::run(c)?;
    Ok(count_table_routes(&out, routes))
}

/// Lines of `ip route show` output whose destination is a table prefix.
fn count_table_routes(ip_route: &str, routes: usize) -> usize {
    ip_route
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter_map(|dst| dst.parse::<IpNet>().ok())
        .filter(|p| bench_index(p, routes).is_some())
        .count()
}

/// First non-empty line a command prints (stdout or stderr), or why not.
fn first_line(prog: &str, args: &[&str]) -> String {
    match Command::new(prog).args(args).output() {
        Ok(o) => {
            let text = format!(
                "{}\n{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
            text.lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .unwrap_or("(no output)")
                .to_string()
        }
        Err(e) => format!("{prog}: {e}"),
    }
}

fn machine_header(cpus: usize, pinned: bool) -> Vec<String> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown CPU", |(_, m)| m.trim());
    vec![
        format!(
            "machine: {cpus} CPUs ({model}), kernel {}",
            first_line("uname", &["-r"])
        ),
        if pinned {
            "pinning: DUT processes on CPU 1 (taskset -a), generator and sink threads on CPU 0"
                .into()
        } else {
            "pinning: none (fewer than 2 CPUs): DUT and harness share the CPU".into()
        },
    ]
}

fn versions(daemons: &[Daemon], petrel: Option<&Path>) -> Vec<String> {
    daemons
        .iter()
        .map(|d| match d {
            Daemon::Petrel => {
                let bin = petrel.map(Path::display).map(|p| p.to_string());
                let bin = bin.unwrap_or_default();
                let profile = if bin.contains("/release/") {
                    "release profile"
                } else if bin.contains("/debug/") {
                    "DEBUG profile: numbers are not representative"
                } else {
                    "profile unknown"
                };
                format!(
                    "petrel: {} ({bin}, {profile}); kernel install on, non-transit lifted by a \
                     BGPFilter export Accept rule on the sink peer",
                    first_line(&bin, &["--version"])
                )
            }
            Daemon::Bird => format!(
                "BIRD: {}; kernel protocol exports all routes",
                first_line("bird", &["--version"])
            ),
            Daemon::Frr => format!(
                "FRR: {}; bgpd + zebra installing routes",
                first_line(&format!("{}/bgpd", crate::daemon::FRR_DIR), &["--version"])
            ),
            Daemon::Gobgp => format!(
                "GoBGP: {}; no FIB (GoBGP installs routes only through zebra), \
                 logs at its default level (the testbed's launcher sets none)",
                first_line("gobgpd", &["--version"])
            ),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_only_table_prefixes_in_ip_route_output() {
        let out = "default via 10.0.0.1 dev eth0\n\
                   10.255.1.0/30 dev eth1 proto kernel scope link src 10.255.1.1\n\
                   100.64.0.0/24 via 10.255.1.2 dev eth1 proto bird metric 32\n\
                   100.64.1.0/24 nhid 12 via 10.255.1.2 dev eth1 proto 200\n\
                   100.64.2.0/24 via 10.255.1.2 dev eth1 proto bgp metric 20\n\
                   198.51.100.0/24 via 10.255.1.2 dev eth1 proto bgp metric 20\n";
        assert_eq!(count_table_routes(out, 3), 3);
        assert_eq!(count_table_routes(out, 2), 2);
        assert_eq!(count_table_routes("", 3), 0);
    }

    #[test]
    fn petrel_binary_must_exist() {
        let err = petrel_binary(Some(Path::new("/nonexistent/petrel")))
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/petrel"), "{err}");
        let me = std::env::current_exe().unwrap();
        assert_eq!(petrel_binary(Some(&me)).unwrap(), me);
    }
}
