//! petrel's IPAM objects as its file datastore keeps them (the agent's
//! `--ipam-dir`, by default `<datastore dir>/ipam`): `ipamblocks/<name>.yaml`
//! (`IPAMBlock`: CIDR, `affinity: host:<node>`, state, allocations keyed by
//! `<containerID>/<ifname>`, reserved addresses) and
//! `blockaffinities/<name>.yaml` (`BlockAffinity`: node, CIDR, state). Tests
//! read them to see who owns which block, independently of any agent, and
//! find in an agent's log when it claimed a block ([`claim_time`]).

use super::IpPrefix;
use anyhow::{Context, bail};
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, SystemTime};

/// One `IPAMBlock`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpamBlock {
    pub name: String,
    pub cidr: IpPrefix,
    /// `spec.affinity` as written (`host:<node>`).
    pub affinity: String,
    /// `pending` or `confirmed`.
    pub state: String,
    /// Allocation key (`<containerID>/<ifname>`) to address.
    pub allocations: BTreeMap<String, IpAddr>,
    /// Reserved addresses with their reason (e.g. `gateway`).
    pub reserved: Vec<(IpAddr, String)>,
}

impl IpamBlock {
    /// The owning node (`affinity` without `host:`).
    pub fn node(&self) -> Option<&str> {
        self.affinity.strip_prefix("host:")
    }

    pub fn is_confirmed(&self) -> bool {
        self.state == "confirmed"
    }
}

/// One `BlockAffinity`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockAffinity {
    pub name: String,
    pub node: String,
    pub cidr: IpPrefix,
    /// `pending`, `confirmed` or `pendingDeletion`.
    pub state: String,
}

/// Everything in an IPAM directory at one moment.
#[derive(Debug, Clone, Default)]
pub struct IpamState {
    pub blocks: Vec<IpamBlock>,
    pub affinities: Vec<BlockAffinity>,
}

impl IpamState {
    /// Reads every object of `dir`. Files replaced or removed while the
    /// directory is listed are skipped; an object that does not parse is an
    /// error (the store writes whole files by rename, so none is torn).
    pub fn read(dir: &Path) -> anyhow::Result<IpamState> {
        let mut state = IpamState::default();
        for (name, v) in read_objects(&dir.join("ipamblocks"))? {
            state.blocks.push(
                parse_block(&name, &v)
                    .with_context(|| format!("{}/ipamblocks/{name}.yaml", dir.display()))?,
            );
        }
        for (name, v) in read_objects(&dir.join("blockaffinities"))? {
            state.affinities.push(
                parse_affinity(&name, &v)
                    .with_context(|| format!("{}/blockaffinities/{name}.yaml", dir.display()))?,
            );
        }
        state.blocks.sort_by_key(|b| b.cidr);
        state
            .affinities
            .sort_by(|a, b| (a.cidr, &a.node).cmp(&(b.cidr, &b.node)));
        Ok(state)
    }

    /// Confirmed blocks owned by `node`, by CIDR.
    pub fn confirmed_blocks(&self, node: &str) -> Vec<&IpamBlock> {
        self.blocks
            .iter()
            .filter(|b| b.is_confirmed() && b.node() == Some(node))
            .collect()
    }

    /// The block object holding `addr`, if any.
    pub fn block_of(&self, addr: IpAddr) -> Option<&IpamBlock> {
        self.blocks.iter().find(|b| b.cidr.contains(addr))
    }

    /// Every allocated address (all blocks).
    pub fn allocated(&self) -> Vec<IpAddr> {
        self.blocks
            .iter()
            .flat_map(|b| b.allocations.values().copied())
            .collect()
    }

    /// Inconsistencies in ownership: two block objects with overlapping
    /// CIDRs, confirmed affinities of two nodes for one CIDR, or a confirmed
    /// affinity whose block is owned by another node. Empty when sound.
    pub fn ownership_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (i, a) in self.blocks.iter().enumerate() {
            for b in &self.blocks[i + 1..] {
                if a.cidr.contains(b.cidr.addr) || b.cidr.contains(a.cidr.addr) {
                    problems.push(format!(
                        "blocks {} ({}, {}) and {} ({}, {}) overlap",
                        a.name, a.cidr, a.affinity, b.name, b.cidr, b.affinity
                    ));
                }
            }
        }
        let mut confirmed: BTreeMap<IpPrefix, Vec<&str>> = BTreeMap::new();
        for a in self.affinities.iter().filter(|a| a.state == "confirmed") {
            confirmed.entry(a.cidr).or_default().push(&a.node);
            if let Some(b) = self.blocks.iter().find(|b| b.cidr == a.cidr)
                && b.node() != Some(a.node.as_str())
            {
                problems.push(format!(
                    "affinity {} says {} owns {} but the block's affinity is {}",
                    a.name, a.node, a.cidr, b.affinity
                ));
            }
        }
        for (cidr, nodes) in confirmed {
            if nodes.len() > 1 {
                problems.push(format!("{cidr} has confirmed affinities of {nodes:?}"));
            }
        }
        problems
    }
}

/// When an agent's log (tracing's text format) says it claimed `block`:
/// the timestamp opening its `claimed block ... block=<cidr>` line.
pub fn claim_time(log: &str, block: &str) -> Option<SystemTime> {
    let needle = format!("block={block}");
    let line = log
        .lines()
        .find(|l| l.contains("claimed block") && l.split_whitespace().any(|w| w == needle))?;
    parse_utc(line.split_whitespace().next()?)
}

/// `YYYY-MM-DDTHH:MM:SS[.frac]Z` (RFC 3339, UTC) as a time.
pub fn parse_utc(ts: &str) -> Option<SystemTime> {
    let ts = ts.strip_suffix('Z')?;
    let (date, time) = ts.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|x| x.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.splitn(3, ':').map(|x| x.parse::<i64>().ok());
    let (hh, mm, ss) = (t.next()??, t.next()??, t.next()??);
    // Days from 1970-01-01 (H. Hinnant's days_from_civil).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = u64::try_from(days * 86_400 + hh * 3600 + mm * 60 + ss).ok()?;
    let nanos: u32 = format!("{frac:0<9}").get(..9)?.parse().ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::new(secs, nanos))
}

/// `(object name, JSON value)` of every `*.yaml` in `dir` (none if `dir`
/// does not exist yet).
fn read_objects(dir: &Path) -> anyhow::Result<Vec<(String, Value)>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry?;
        let file = entry.file_name().to_string_lossy().into_owned();
        let Some(name) = file
            .strip_suffix(".yaml")
            .filter(|_| !file.starts_with('.'))
        else {
            continue;
        };
        let text = match std::fs::read_to_string(entry.path()) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("reading {file}")),
        };
        let v: Value = serde_saphyr::from_str(&text).with_context(|| format!("parsing {file}"))?;
        out.push((name.to_string(), v));
    }
    Ok(out)
}

fn spec_str<'v>(v: &'v Value, key: &str) -> anyhow::Result<&'v str> {
    v.pointer(&format!("/spec/{key}"))
        .and_then(Value::as_str)
        .with_context(|| format!("spec.{key} missing or not a string"))
}

fn parse_block(name: &str, v: &Value) -> anyhow::Result<IpamBlock> {
    if v.get("kind").and_then(Value::as_str) != Some("IPAMBlock") {
        bail!("not an IPAMBlock: kind {:?}", v.get("kind"));
    }
    let mut allocations = BTreeMap::new();
    if let Some(map) = v.pointer("/spec/allocations").and_then(Value::as_object) {
        for (key, a) in map {
            let addr = a
                .get("address")
                .and_then(Value::as_str)
                .with_context(|| format!("allocation {key} has no address"))?;
            allocations.insert(key.clone(), addr.parse().context("allocation address")?);
        }
    }
    let mut reserved = Vec::new();
    if let Some(list) = v.pointer("/spec/reserved").and_then(Value::as_array) {
        for r in list {
            let addr = r
                .get("address")
                .and_then(Value::as_str)
                .context("reserved address")?;
            let reason = r.get("reason").and_then(Value::as_str).unwrap_or_default();
            reserved.push((
                addr.parse().context("reserved address")?,
                reason.to_string(),
            ));
        }
    }
    Ok(IpamBlock {
        name: name.to_string(),
        cidr: spec_str(v, "cidr")?.parse()?,
        affinity: spec_str(v, "affinity")?.to_string(),
        state: spec_str(v, "state")?.to_string(),
        allocations,
        reserved,
    })
}

fn parse_affinity(name: &str, v: &Value) -> anyhow::Result<BlockAffinity> {
    if v.get("kind").and_then(Value::as_str) != Some("BlockAffinity") {
        bail!("not a BlockAffinity: kind {:?}", v.get("kind"));
    }
    Ok(BlockAffinity {
        name: name.to_string(),
        node: spec_str(v, "node")?.to_string(),
        cidr: spec_str(v, "cidr")?.parse()?,
        state: spec_str(v, "state")?.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, sub: &str, name: &str, text: &str) {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
        std::fs::write(dir.join(sub).join(name), text).unwrap();
    }

    fn block(cidr: &str, node: &str) -> String {
        format!(
            "apiVersion: petrel.dev/v1\nkind: IPAMBlock\nmetadata:\n  name: b\n  \
             resourceVersion: \"3\"\nspec:\n  cidr: {cidr}\n  affinity: host:{node}\n  \
             state: confirmed\n  allocations:\n    c1/eth0:\n      address: 10.0.0.2\n  \
             reserved:\n  - address: 10.0.0.1\n    reason: gateway\n"
        )
    }

    fn affinity(cidr: &str, node: &str, state: &str) -> String {
        format!(
            "apiVersion: petrel.dev/v1\nkind: BlockAffinity\nmetadata:\n  name: a\nspec:\n  \
             node: {node}\n  cidr: {cidr}\n  state: {state}\n"
        )
    }

    #[test]
    fn reads_objects_and_finds_double_ownership() {
        let dir = std::env::temp_dir().join(format!("petrel-ipam-read-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            IpamState::read(&dir).unwrap().blocks.is_empty(),
            "missing dir is empty"
        );
        write(
            &dir,
            "ipamblocks",
            "10-0-0-0-29.yaml",
            &block("10.0.0.0/29", "n1"),
        );
        write(&dir, "ipamblocks", ".10-0-0-8-29.yaml.tmp", "garbage: [");
        write(
            &dir,
            "blockaffinities",
            "n1-10-0-0-0-29.yaml",
            &affinity("10.0.0.0/29", "n1", "confirmed"),
        );
        let s = IpamState::read(&dir).unwrap();
        assert_eq!(s.blocks.len(), 1);
        let b = &s.blocks[0];
        assert_eq!((b.node(), b.is_confirmed()), (Some("n1"), true));
        assert_eq!(
            b.allocations["c1/eth0"],
            "10.0.0.2".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            b.reserved,
            vec![("10.0.0.1".parse().unwrap(), "gateway".into())]
        );
        assert_eq!(s.confirmed_blocks("n1").len(), 1);
        assert!(s.confirmed_blocks("n2").is_empty());
        assert!(
            s.ownership_problems().is_empty(),
            "{:?}",
            s.ownership_problems()
        );
        write(
            &dir,
            "blockaffinities",
            "n2-10-0-0-0-29.yaml",
            &affinity("10.0.0.0/29", "n2", "confirmed"),
        );
        write(
            &dir,
            "ipamblocks",
            "10-0-0-0-30.yaml",
            &block("10.0.0.0/30", "n3"),
        );
        let p = IpamState::read(&dir).unwrap().ownership_problems();
        assert_eq!(p.len(), 3, "{p:?}");
        write(&dir, "ipamblocks", "bad.yaml", "kind: Node\n");
        assert!(IpamState::read(&dir).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn parses_tracing_timestamps() {
        let t = parse_utc("2026-11-26T10:10:03.249663Z").unwrap();
        let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap();
        assert_eq!(d, Duration::new(1_795_687_803, 249_663_000));
        assert_eq!(
            parse_utc("1970-01-01T00:00:00Z"),
            Some(SystemTime::UNIX_EPOCH)
        );
        assert!(parse_utc("10:10:03").is_none());
        let log = "2026-11-26T10:10:03.5Z  INFO ipam{node=n1}: petrel_ipam::claim: claimed block \
                   node=n1 block=10.0.0.8/29 pool=p\n";
        assert!(claim_time(log, "10.0.0.8/29").is_some());
        assert!(claim_time(log, "10.0.0.8/2").is_none());
    }
}
