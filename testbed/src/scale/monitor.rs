//! Timestamped kernel route events of many namespaces: one
//! `ip -tshort monitor route` per node writing to a file, read back and
//! parsed when a measurement needs it. The timestamps come from `ip` itself
//! (wall clock, UTC), so a slow reader does not skew them.

use anyhow::{Context, bail};
use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// One route event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteEvent {
    /// Microseconds since the Unix epoch.
    pub at_us: i64,
    pub deleted: bool,
    /// The destination as `ip` printed it, e.g. `10.64.0.8/29`.
    pub dst: String,
}

/// Microseconds since the Unix epoch, now.
pub fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// Days since 1970-01-01 of a civil date (proleptic Gregorian).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// Parses `[2026-12-06T03:22:11.123456]` (UTC) into microseconds since the
/// epoch.
pub fn parse_stamp(s: &str) -> Option<i64> {
    let s = s.strip_prefix('[')?.strip_suffix(']')?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, mo, da) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.split(':').map(|p| p.parse::<i64>().ok());
    let (h, mi, se) = (t.next()??, t.next()??, t.next()??);
    let digits: String = frac.chars().take(6).collect();
    let us = digits.parse::<i64>().ok()? * 10i64.pow(6 - digits.len() as u32);
    let days = days_from_civil(y, mo, da);
    Some(((days * 86400 + h * 3600 + mi * 60 + se) * 1_000_000) + us)
}

/// Parses one line of `ip -tshort monitor route`.
pub fn parse_line(line: &str) -> Option<RouteEvent> {
    let (stamp, rest) = line.split_once(' ')?;
    let at_us = parse_stamp(stamp)?;
    let mut words = rest.split_whitespace();
    let mut first = words.next()?;
    let deleted = first == "Deleted";
    if deleted {
        first = words.next()?;
    }
    if matches!(first, "blackhole" | "unreachable" | "prohibit" | "unicast") {
        first = words.next()?;
    }
    Some(RouteEvent {
        at_us,
        deleted,
        dst: first.to_string(),
    })
}

/// Route monitors of many nodes; killed on drop.
pub struct Monitors {
    children: Vec<Child>,
    files: BTreeMap<String, PathBuf>,
}

impl Monitors {
    /// Starts one monitor per `(node, netns)`, writing under `dir`.
    pub fn start(dir: &Path, nodes: &[(String, String)]) -> anyhow::Result<Monitors> {
        let mut m = Monitors {
            children: Vec::new(),
            files: BTreeMap::new(),
        };
        for (node, netns) in nodes {
            let path = dir.join(format!("{node}.routes.log"));
            let out =
                File::create(&path).with_context(|| format!("creating {}", path.display()))?;
            let child = Command::new("ip")
                .args(["-tshort", "-n", netns, "monitor", "route"])
                .env("TZ", "UTC")
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(Stdio::null())
                .spawn()
                .context("starting ip monitor route")?;
            m.children.push(child);
            m.files.insert(node.clone(), path);
        }
        std::thread::sleep(Duration::from_millis(500));
        for c in &mut m.children {
            if let Some(status) = c.try_wait()? {
                bail!("ip monitor route exited at once: {status}");
            }
        }
        Ok(m)
    }

    /// Every event of `node` so far.
    pub fn events(&self, node: &str) -> anyhow::Result<Vec<RouteEvent>> {
        let path = self
            .files
            .get(node)
            .with_context(|| format!("no monitor for {node}"))?;
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Ok(text.lines().filter_map(parse_line).collect())
    }

    /// The first event for `dst` at or after `since_us` (an addition, or a
    /// deletion when `deleted`), per node of `nodes`; `None` for the nodes
    /// that have none yet.
    pub fn first(
        &self,
        nodes: &[String],
        dst: &str,
        deleted: bool,
        since_us: i64,
    ) -> anyhow::Result<BTreeMap<String, Option<i64>>> {
        let mut out = BTreeMap::new();
        for n in nodes {
            let at = self
                .events(n)?
                .into_iter()
                .find(|e| e.dst == dst && e.deleted == deleted && e.at_us >= since_us)
                .map(|e| e.at_us);
            out.insert(n.clone(), at);
        }
        Ok(out)
    }
}

impl Drop for Monitors {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_timestamps_and_events() {
        assert_eq!(parse_stamp("[1970-01-01T00:00:01.000002]"), Some(1_000_002));
        assert_eq!(
            parse_stamp("[2000-03-01T00:00:00.5]"),
            Some(951_868_800_000_000 + 500_000)
        );
        assert_eq!(parse_stamp("2000-03-01T00:00:00"), None);
        let e = parse_line(
            "[2026-12-06T03:22:11.123456] 10.64.0.8/29 via 10.1.0.11 dev eth1 proto 200",
        )
        .unwrap();
        assert_eq!(e.dst, "10.64.0.8/29");
        assert!(!e.deleted);
        assert_eq!(e.at_us % 1_000_000, 123_456);
        let d =
            parse_line("[2026-12-06T03:22:12.000001] Deleted fd00:64::8/125 via fe80::1 dev eth1")
                .unwrap();
        assert!(d.deleted && d.dst == "fd00:64::8/125");
        assert!(d.at_us > e.at_us);
        assert_eq!(parse_line("garbage"), None);
    }
}
