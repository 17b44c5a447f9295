//! Direct control of the agent process and a route monitor, built on the
//! testbed's public API (`Lab::netns`, `Lab::is_running`, `Lab::start_node`).
//!
//! The library's `stop_node` sends SIGTERM to the daemon's process group and
//! SIGKILL after 3 s; the tests here need a crash (SIGKILL alone, so the
//! agent cannot clean up) and a SIGTERM whose clean-up is awaited without a
//! deadline that would turn it into a crash.

use anyhow::{Context, bail};
use petrel_testbed::Lab;
use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Pid of the `petrel agent` process inside `node`'s namespace.
pub fn petrel_pid(lab: &Lab, node: &str) -> anyhow::Result<u32> {
    let netns = lab.netns(node)?;
    let out = Command::new("ip")
        .args(["netns", "pids", &netns])
        .output()
        .context("ip netns pids")?;
    let pids: Vec<u32> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| {
                    let args: Vec<&[u8]> = c.split(|b| *b == 0).collect();
                    args.first().is_some_and(|a| a.ends_with(b"petrel"))
                        && args.get(1).is_some_and(|a| *a == b"agent")
                })
                .unwrap_or(false)
        })
        .collect();
    match pids.as_slice() {
        [pid] => Ok(*pid),
        [] => bail!("no petrel agent process in namespace {netns}"),
        many => bail!("several petrel agent processes in {netns}: {many:?}"),
    }
}

fn signal(pid: u32, sig: &str) -> anyhow::Result<()> {
    let status = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .context("running kill")?;
    anyhow::ensure!(status.success(), "kill {sig} {pid} failed: {status}");
    Ok(())
}

/// Waits until the node's daemon has exited (reaped by the lab).
fn wait_exit(lab: &Lab, node: &str, timeout: Duration) -> anyhow::Result<Duration> {
    let start = Instant::now();
    while lab.is_running(node)? {
        if start.elapsed() > timeout {
            bail!("{node}'s agent still running {timeout:?} after the signal");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(start.elapsed())
}

/// Crashes the agent: SIGKILL to the process alone, then waits for it to go.
pub fn kill_agent(lab: &Lab, node: &str) -> anyhow::Result<()> {
    let pid = petrel_pid(lab, node)?;
    signal(pid, "-KILL")?;
    wait_exit(lab, node, Duration::from_secs(5))?;
    Ok(())
}

/// Stops the agent the way an init system does: SIGTERM, then waits (up to
/// `timeout`) for it to exit on its own. Returns how long it took.
pub fn terminate_agent(lab: &Lab, node: &str, timeout: Duration) -> anyhow::Result<Duration> {
    let pid = petrel_pid(lab, node)?;
    signal(pid, "-TERM")?;
    wait_exit(lab, node, timeout)
}

/// `ip monitor route` in a node's namespace, writing to a file; killed on
/// drop.
pub struct RouteMonitor {
    child: Child,
    path: PathBuf,
}

impl RouteMonitor {
    /// Starts the monitor and gives it a moment to subscribe.
    pub fn start(lab: &Lab, node: &str) -> anyhow::Result<RouteMonitor> {
        let path = lab.root().join(format!("{node}-route-monitor.log"));
        let out = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        let child = Command::new("ip")
            .args(["-n", &lab.netns(node)?, "monitor", "route"])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(Stdio::null())
            .spawn()
            .context("starting ip monitor route")?;
        let mut m = RouteMonitor { child, path };
        std::thread::sleep(Duration::from_millis(300));
        if let Some(status) = m.child.try_wait()? {
            bail!("ip monitor route exited at once: {status}");
        }
        Ok(m)
    }

    /// Everything seen so far, one event per line.
    pub fn lines(&self) -> anyhow::Result<Vec<String>> {
        let text = std::fs::read_to_string(&self.path)
            .with_context(|| format!("reading {}", self.path.display()))?;
        Ok(text.lines().map(str::to_string).collect())
    }

    /// The events (lines) about exactly `prefix`: additions/changes and
    /// deletions (`Deleted ...`).
    pub fn events_for(&self, prefix: &str) -> anyhow::Result<Vec<String>> {
        Ok(self
            .lines()?
            .into_iter()
            .filter(|l| {
                let mut words = l.split_whitespace();
                let mut first = words.next();
                if first == Some("Deleted") {
                    first = words.next();
                }
                if matches!(first, Some("blackhole" | "unreachable" | "prohibit")) {
                    first = words.next();
                }
                first == Some(prefix)
            })
            .collect())
    }
}

impl Drop for RouteMonitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
