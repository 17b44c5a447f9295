//! Helpers for the routing scenarios (`tests/routing.rs`): deploying the
//! topologies, editing every agent's live manifests, reading petrel's RIB
//! and the kernel's routes, and dumping every node's state on failure.
//!
//! Built on [`Lab::exec`] and friends only; nothing here needs changes in the
//! testbed library.
#![allow(dead_code)]

use anyhow::Context;
use petrel_testbed::status::same_addr;
use petrel_testbed::{Kind, Lab, PetrelPeer, PetrelRoute, is_root, wait_for};
use serde_json::Value;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How long sessions get to come up in a freshly deployed lab.
pub const UP: Duration = Duration::from_secs(40);
/// How long a route or configuration change gets to propagate.
pub const PROPAGATE: Duration = Duration::from_secs(20);

/// `rtm_protocol` of petrel's kernel routes, as `ip -j` prints it: the name
/// when `/etc/iproute2/rt_protos.d/petrel.conf` exists, else the number.
const PETREL_PROTO: [&str; 2] = ["petrel", "200"];

/// Path of `testbed/topologies/<name>/topology.clab.yaml`.
pub fn topology(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("topologies")
        .join(name)
        .join("topology.clab.yaml")
}

/// Deploys `testbed/topologies/<name>`; panics when not root or on failure.
pub fn deploy(name: &str) -> Lab {
    assert!(
        is_root(),
        "the routing tests create network namespaces and must run as root"
    );
    match Lab::deploy(&topology(name)) {
        Ok(lab) => lab,
        Err(e) => panic!("deploying {name}: {e:#}"),
    }
}

/// Runs a scenario; on failure panics with the error, the state of every node
/// (sessions, RIBs, kernel routes) and every daemon's log.
pub fn run(lab: &Lab, scenario: impl FnOnce(&Lab) -> anyhow::Result<()>) {
    let start = Instant::now();
    lab.check(|lab| {
        scenario(lab).map_err(|e| {
            anyhow::anyhow!(
                "{e:#}\n\n===== state of every node after {:.1?} =====\n{}",
                start.elapsed(),
                dump_state(lab)
            )
        })
    });
    eprintln!("lab {}: passed in {:.1?}", lab.name(), start.elapsed());
}

/// Every node's view: petrel's peers, RIB and kernel routes; the daemons'
/// sessions and tables.
pub fn dump_state(lab: &Lab) -> String {
    let mut out = String::new();
    for node in lab.nodes() {
        let cmds: Vec<(&str, anyhow::Result<String>)> = match lab.kind(node) {
            Ok(Kind::Petrel) => vec![
                ("petrel peers", lab.petrel(node, "peers")),
                ("petrel peers -o json", lab.petrel(node, "peers -o json")),
                ("petrel routes", lab.petrel(node, "routes")),
                ("ip route", lab.exec(node, "ip route show table main")),
            ],
            Ok(Kind::Frr) => vec![
                ("show bgp summary", lab.vtysh(node, "show bgp summary")),
                (
                    "show bgp ipv4 unicast",
                    lab.vtysh(node, "show bgp ipv4 unicast"),
                ),
            ],
            Ok(Kind::Bird) => vec![
                ("show protocols all", lab.birdc(node, "show protocols all")),
                ("show route all", lab.birdc(node, "show route all")),
            ],
            Ok(Kind::Gobgp) => vec![
                ("gobgp neighbor", lab.gobgp(node, "neighbor")),
                ("gobgp global rib", lab.gobgp(node, "global rib -a ipv4")),
            ],
            _ => vec![],
        };
        for (what, res) in cmds {
            let text = res.unwrap_or_else(|e| format!("(failed: {e:#})"));
            out.push_str(&format!("--- {node}: {what}\n{}\n", text.trim_end()));
        }
    }
    out
}

/// Writes `text` to `<node_dir>/<file>` atomically (temp file + rename).
pub fn write_manifest(lab: &Lab, node: &str, file: &str, text: &str) -> anyhow::Result<()> {
    let dir = lab.node_dir(node);
    let tmp = dir.join(format!(".{file}.tmp"));
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, dir.join(file))
        .with_context(|| format!("renaming {} into place", tmp.display()))?;
    Ok(())
}

/// Deletes `<node_dir>/<file>`.
pub fn remove_manifest(lab: &Lab, node: &str, file: &str) -> anyhow::Result<()> {
    let path = lab.node_dir(node).join(file);
    std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))
}

/// A core `v1` Node with an IPv4 address, AS from the BGPConfiguration, and
/// pod CIDRs.
pub fn node_manifest(name: &str, ipv4: &str, pod_cidrs: &[&str]) -> String {
    let mut s = format!(
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: {name}\n  annotations:\n    \
         petrel.dev/ipv4-address: {ipv4}\nspec:\n  podCIDRs:\n"
    );
    for c in pod_cidrs {
        s.push_str(&format!("    - {c}\n"));
    }
    s
}

/// petrel's peer at `address` on `node`.
pub fn peer(lab: &Lab, node: &str, address: &str) -> anyhow::Result<PetrelPeer> {
    lab.petrel_peer(node, address)
}

/// One-line summary of a peer for messages.
pub fn peer_line(p: &PetrelPeer) -> String {
    format!(
        "{} {} {} passive={} attempts={} transitions={} uptime={:?} rx={} acc={} adv={} err={:?}",
        p.name,
        p.address,
        p.state,
        p.passive,
        p.connection_attempts,
        p.established_transitions,
        p.uptime_seconds,
        p.prefixes_received,
        p.prefixes_accepted,
        p.prefixes_advertised,
        p.last_error
    )
}

/// Waits until petrel's peer at `address` on `node` is Established.
pub fn wait_established(lab: &Lab, node: &str, address: &str) -> anyhow::Result<PetrelPeer> {
    wait_for(
        UP,
        &format!("{node}'s peer {address} to be Established"),
        || {
            let p = peer(lab, node, address)?;
            anyhow::ensure!(p.state == "Established", "{}", peer_line(&p));
            Ok(p)
        },
    )
}

/// Waits until a daemon node's session with `address` is Established.
pub fn wait_daemon_established(lab: &Lab, node: &str, address: &str) -> anyhow::Result<()> {
    wait_for(
        UP,
        &format!("{node}'s session with {address} to be Established"),
        || {
            let s = lab.session(node, address)?;
            anyhow::ensure!(
                s.is_established(),
                "state {} (last error {:?})",
                s.state,
                s.last_error
            );
            Ok(())
        },
    )
}

/// Every path for `prefix` in petrel's RIB on `node`.
pub fn rib_paths(lab: &Lab, node: &str, prefix: &str) -> anyhow::Result<Vec<PetrelRoute>> {
    Ok(lab
        .petrel_routes(node)?
        .into_iter()
        .filter(|r| r.prefix == prefix)
        .collect())
}

/// One-line summary of a RIB path for messages.
pub fn route_line(r: &PetrelRoute) -> String {
    format!(
        "{} via {:?} from {:?} as_path {:?} best={} reason={:?}",
        r.prefix, r.next_hop, r.peer, r.as_path, r.best, r.reason
    )
}

/// Waits until `node`'s RIB has a best path for `prefix` with `next_hop`
/// (and exactly one best path), and returns it.
pub fn wait_best_via(
    lab: &Lab,
    node: &str,
    prefix: &str,
    next_hop: &str,
) -> anyhow::Result<PetrelRoute> {
    wait_for(
        PROPAGATE,
        &format!("{node} to select {prefix} via {next_hop}"),
        || {
            let paths = rib_paths(lab, node, prefix)?;
            let best: Vec<&PetrelRoute> = paths.iter().filter(|r| r.best).collect();
            let lines: Vec<String> = paths.iter().map(route_line).collect();
            anyhow::ensure!(
                best.len() == 1
                    && best[0]
                        .next_hop
                        .as_deref()
                        .is_some_and(|h| same_addr(h, next_hop)),
                "paths: {lines:?}"
            );
            Ok(best[0].clone())
        },
    )
}

/// A route of the kernel's main table (`ip -j route show`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelRoute {
    pub dst: String,
    /// "unicast" when `ip` prints no type.
    pub kind: String,
    pub protocol: String,
    /// Gateways: the single one, or each of `nexthops`.
    pub gateways: Vec<String>,
    /// Whether the route has a `nexthops` array (multipath).
    pub multipath: bool,
}

impl KernelRoute {
    pub fn is_petrel(&self) -> bool {
        PETREL_PROTO.contains(&self.protocol.as_str())
    }
}

fn json_str(v: &Value, key: &str) -> Option<String> {
    match v.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Parses `ip -j route show` output.
pub fn parse_kernel_routes(json: &str) -> anyhow::Result<Vec<KernelRoute>> {
    let v: Value =
        serde_json::from_str(json).with_context(|| format!("parsing `ip -j route`: {json}"))?;
    let mut out = Vec::new();
    for r in v.as_array().into_iter().flatten() {
        let nexthops = r.get("nexthops").and_then(Value::as_array);
        let gateways = match nexthops {
            Some(hops) => hops.iter().filter_map(|h| json_str(h, "gateway")).collect(),
            None => json_str(r, "gateway").into_iter().collect(),
        };
        out.push(KernelRoute {
            dst: json_str(r, "dst").unwrap_or_default(),
            kind: json_str(r, "type").unwrap_or_else(|| "unicast".into()),
            protocol: json_str(r, "protocol").unwrap_or_default(),
            gateways,
            multipath: nexthops.is_some(),
        });
    }
    Ok(out)
}

/// The kernel's main-table routes for exactly `prefix` on `node`.
pub fn kernel_routes(lab: &Lab, node: &str, prefix: &str) -> anyhow::Result<Vec<KernelRoute>> {
    let json = lab.exec(node, &format!("ip -j route show table main exact {prefix}"))?;
    parse_kernel_routes(&json)
}

/// Waits until `node`'s kernel has exactly one route for `prefix`, installed
/// by petrel, satisfying `ok`; returns it.
pub fn wait_kernel_route(
    lab: &Lab,
    node: &str,
    prefix: &str,
    what: &str,
    ok: impl Fn(&KernelRoute) -> bool,
) -> anyhow::Result<KernelRoute> {
    wait_for(
        PROPAGATE,
        &format!("{node}'s kernel route {prefix}: {what}"),
        || {
            let routes = kernel_routes(lab, node, prefix)?;
            anyhow::ensure!(
                routes.len() == 1 && routes[0].is_petrel() && ok(&routes[0]),
                "kernel has {routes:?}"
            );
            Ok(routes[0].clone())
        },
    )
}

/// Waits for a petrel kernel route `prefix via gateway` (single next hop).
pub fn wait_kernel_via(
    lab: &Lab,
    node: &str,
    prefix: &str,
    gateway: &str,
) -> anyhow::Result<KernelRoute> {
    wait_kernel_route(lab, node, prefix, &format!("via {gateway}"), |r| {
        r.kind == "unicast" && r.gateways.len() == 1 && same_addr(&r.gateways[0], gateway)
    })
}

/// Waits for a petrel blackhole route for `prefix`.
pub fn wait_kernel_blackhole(lab: &Lab, node: &str, prefix: &str) -> anyhow::Result<KernelRoute> {
    wait_kernel_route(lab, node, prefix, "blackhole", |r| r.kind == "blackhole")
}

/// The TCP connections of `node` with `peer` on the BGP port, as
/// (local address:port, remote address:port) from `ss`.
pub fn bgp_connections(lab: &Lab, node: &str, peer: &str) -> anyhow::Result<Vec<(String, String)>> {
    let out = lab.exec(
        node,
        &format!("ss -Htn state established dst {peer} '( sport = :179 or dport = :179 )'"),
    )?;
    Ok(out
        .lines()
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            // Recv-Q Send-Q Local Peer
            (cols.len() >= 4).then(|| (cols[2].to_string(), cols[3].to_string()))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ip_route_json() {
        let routes = parse_kernel_routes(
            r#"[{"type":"blackhole","dst":"10.244.1.0/24","protocol":"petrel","flags":[]},
            {"dst":"10.244.2.0/24","gateway":"10.0.0.2","dev":"eth1","protocol":"200","flags":[]},
            {"dst":"198.51.100.0/24","protocol":"petrel","flags":[],"nexthops":[
              {"gateway":"10.0.1.2","dev":"eth1","weight":1,"flags":[]},
              {"gateway":"10.0.2.2","dev":"eth2","weight":1,"flags":[]}]},
            {"dst":"10.0.0.0/24","dev":"eth1","protocol":"kernel","scope":"link"}]"#,
        )
        .unwrap();
        assert_eq!(routes[0].kind, "blackhole");
        assert!(routes[0].is_petrel() && routes[1].is_petrel());
        assert_eq!(routes[1].gateways, vec!["10.0.0.2"]);
        assert!(!routes[1].multipath);
        assert_eq!(routes[2].gateways, vec!["10.0.1.2", "10.0.2.2"]);
        assert!(routes[2].multipath);
        assert!(!routes[3].is_petrel());
    }
}
