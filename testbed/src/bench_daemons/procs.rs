//! Resource use of the device under test, read from `/proc` (proc(5)):
//! CPU time (`utime` + `stime` of `/proc/<pid>/stat`), peak and current
//! resident set (`VmHWM`, `VmRSS` of `/proc/<pid>/status`), summed over every
//! process of the DUT's network namespace (FRR: zebra + bgpd). No RFC.

use crate::daemon::run;
use anyhow::{Context, bail};
use std::process::Command;

/// Clock ticks per second for `/proc/<pid>/stat` times (`getconf CLK_TCK`,
/// 100 when that fails: the value on every Linux architecture petrel runs on).
pub fn clock_ticks() -> f64 {
    let mut c = Command::new("getconf");
    c.arg("CLK_TCK");
    run(c)
        .ok()
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

/// Process ids living in network namespace `netns`.
pub fn netns_pids(netns: &str) -> anyhow::Result<Vec<u32>> {
    let mut c = Command::new("ip");
    c.args(["netns", "pids", netns]);
    let out = run(c)?;
    out.split_whitespace()
        .map(|p| p.parse().with_context(|| format!("ip netns pids: {p:?}")))
        .collect()
}

/// `utime + stime` in clock ticks from the text of `/proc/<pid>/stat`.
pub fn parse_stat_ticks(stat: &str) -> anyhow::Result<u64> {
    // The command name may contain spaces and parentheses: fields start
    // after the last ')'. Field 3 (state) is index 0 there, so utime (14)
    // and stime (15) are indexes 11 and 12.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("no ')' in /proc/<pid>/stat")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| -> anyhow::Result<u64> {
        f.get(i)
            .context("/proc/<pid>/stat too short")?
            .parse()
            .context("/proc/<pid>/stat: bad number")
    };
    Ok(field(11)? + field(12)?)
}

/// A `kB` field (`VmHWM:`, `VmRSS:`) of `/proc/<pid>/status`, in bytes.
pub fn parse_status_bytes(status: &str, key: &str) -> anyhow::Result<u64> {
    let line = status
        .lines()
        .find(|l| l.starts_with(key))
        .with_context(|| format!("no {key} in /proc/<pid>/status"))?;
    let kb: u64 = line[key.len()..]
        .split_whitespace()
        .next()
        .context("empty field")?
        .parse()
        .with_context(|| format!("bad {key} line {line:?}"))?;
    Ok(kb * 1024)
}

/// CPU seconds all processes of the host spent so far (every CPU; the
/// `/proc/stat` `cpu` line's user, nice and system; guest time is part of
/// user time already). Interrupt and softirq time is left out: much of it is
/// the network traffic of the run itself.
pub fn host_busy_s(ticks_per_s: f64) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    parse_host_busy_ticks(&stat).map(|t| t as f64 / ticks_per_s)
}

/// Busy ticks from the text of `/proc/stat`.
pub fn parse_host_busy_ticks(stat: &str) -> anyhow::Result<u64> {
    let line = stat
        .lines()
        .find(|l| l.starts_with("cpu "))
        .context("no cpu line in /proc/stat")?;
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(3)
        .map(|x| x.parse().context("/proc/stat: bad number"))
        .collect::<anyhow::Result<_>>()?;
    if f.len() < 3 {
        bail!("/proc/stat cpu line too short: {line:?}");
    }
    // user nice system
    Ok(f[0] + f[1] + f[2])
}

/// CPU seconds this process (the harness: generator and sink) used so far.
pub fn self_cpu_s(ticks_per_s: f64) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").context("reading /proc/self/stat")?;
    parse_stat_ticks(&stat).map(|t| t as f64 / ticks_per_s)
}

/// One reading of the DUT's processes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    /// CPU seconds used since each process started.
    pub cpu_s: f64,
    /// Sum of the processes' peak resident sets.
    pub hwm_bytes: u64,
    /// Sum of the processes' current resident sets.
    pub rss_bytes: u64,
}

/// Reads [`Usage`] for `pids`; an error if one of them is gone (the DUT
/// crashed).
pub fn usage(pids: &[u32], ticks_per_s: f64) -> anyhow::Result<Usage> {
    if pids.is_empty() {
        bail!("no DUT process");
    }
    let mut ticks = 0;
    let (mut hwm, mut rss) = (0, 0);
    for pid in pids {
        let read = |f: &str| {
            std::fs::read_to_string(format!("/proc/{pid}/{f}"))
                .with_context(|| format!("DUT process {pid} is gone (reading /proc/{pid}/{f})"))
        };
        ticks += parse_stat_ticks(&read("stat")?)?;
        let status = read("status")?;
        hwm += parse_status_bytes(&status, "VmHWM:")?;
        rss += parse_status_bytes(&status, "VmRSS:")?;
    }
    Ok(Usage {
        cpu_s: ticks as f64 / ticks_per_s,
        hwm_bytes: hwm,
        rss_bytes: rss,
    })
}

/// Pins every thread of each process to `cpu` (`taskset -a -p -c`).
pub fn pin(pids: &[u32], cpu: usize) -> anyhow::Result<()> {
    for pid in pids {
        let mut c = Command::new("taskset");
        c.args(["-a", "-p", "-c", &cpu.to_string(), &pid.to_string()]);
        run(c).with_context(|| format!("pinning DUT process {pid} to CPU {cpu}"))?;
    }
    Ok(())
}

/// Pins the calling thread (and threads it starts later) to `cpu`.
pub fn pin_self(cpu: usize) -> anyhow::Result<()> {
    use nix::sched::{CpuSet, sched_setaffinity};
    let mut set = CpuSet::new();
    set.set(cpu).context("CPU number out of range")?;
    sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)
        .with_context(|| format!("sched_setaffinity to CPU {cpu}"))
}

/// Online CPUs.
pub fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_command_names() {
        let stat = "4242 (bgpd (x) y) S 1 4242 4242 0 -1 4194560 2100 0 0 0 \
                    150 37 0 0 20 0 9 0 12345 100000 2000 18446744073709551615";
        assert_eq!(parse_stat_ticks(stat).unwrap(), 187);
        assert!(parse_stat_ticks("4242 bgpd S 1").is_err());
        assert!(parse_stat_ticks("1 (x) S 1 2").is_err());
    }

    #[test]
    fn parses_status_fields_in_bytes() {
        let status = "Name:\tbird\nVmPeak:\t  9000 kB\nVmHWM:\t    5120 kB\nVmRSS:\t    4096 kB\n";
        assert_eq!(parse_status_bytes(status, "VmHWM:").unwrap(), 5120 * 1024);
        assert_eq!(parse_status_bytes(status, "VmRSS:").unwrap(), 4096 * 1024);
        assert!(parse_status_bytes(status, "VmSwap:").is_err());
        assert!(parse_status_bytes("VmHWM:\tlots kB\n", "VmHWM:").is_err());
    }

    #[test]
    fn parses_host_busy_time() {
        let stat = "cpu  100 5 50 9000 30 2 3 4 0 0\ncpu0 50 2 25 4500 15 1 1 2 0 0\n";
        assert_eq!(parse_host_busy_ticks(stat).unwrap(), 155);
        assert!(parse_host_busy_ticks("cpu  1 2\n").is_err());
        assert!(parse_host_busy_ticks("intr 5\n").is_err());
    }

    #[test]
    fn reads_own_usage() {
        let u = usage(&[std::process::id()], clock_ticks()).unwrap();
        assert!(u.hwm_bytes >= u.rss_bytes && u.rss_bytes > 0, "{u:?}");
        assert!(usage(&[], 100.0).is_err());
        assert!(usage(&[u32::MAX], 100.0).is_err());
    }
}
