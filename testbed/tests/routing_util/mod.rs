//! Helpers for the routing scenarios (`tests/routing.rs`): running a
//! scenario with every node's state dumped on failure, Node manifests,
//! petrel's RIB and the kernel's routes. Deploying, editing manifests and
//! waiting for sessions come from `tests/common`; kernel routes are parsed by
//! [`petrel_testbed::kernel`].
#![allow(dead_code)]

use petrel_testbed::status::same_addr;
use petrel_testbed::{KernelRoute, Kind, Lab, PetrelRoute, wait_for};
use std::time::{Duration, Instant};

pub use crate::common::petrel::{
    bgp_peer, peer_line, remove_manifest, wait_petrel_established_within, write_manifest,
};
pub use crate::common::{PROPAGATE, deploy, wait_established_within};

/// How long sessions get to come up in a freshly deployed lab; longer than
/// `common::UP` (30 s): these labs start up to four agents and a daemon at
/// once.
pub const UP: Duration = Duration::from_secs(40);

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
            let routes = lab.kernel_routes_for(node, prefix)?;
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
        r.kind == "unicast" && matches!(r.gateways()[..], [g] if same_addr(g, gateway))
    })
}

/// Waits for one petrel kernel route for `prefix` with exactly the next hops
/// `gateways` (any order) in one `RTA_MULTIPATH` route.
pub fn wait_kernel_multipath(
    lab: &Lab,
    node: &str,
    prefix: &str,
    gateways: &[&str],
) -> anyhow::Result<KernelRoute> {
    let mut want = gateways.to_vec();
    want.sort_unstable();
    let what = format!("one route with next hops {}", want.join(" and "));
    wait_kernel_route(lab, node, prefix, &what, |r| {
        r.multipath && r.gateways() == want
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
