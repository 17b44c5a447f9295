//! Hitless operations (issue 18) against a real FRR top-of-rack router, in
//! the `hitless` topology: two agents behind the ToR, each holding an
//! address of its pod block and the load-balancer address 198.51.100.10 of
//! an `externalTrafficPolicy: Local` service with an endpoint on each node.
//! The ToR pings them every 10 ms while the agents are drained, restarted
//! and killed; each scenario prints its loss count and asserts 0.
//!
//! | test | what |
//! |---|---|
//! | `a_cordoned_node_drains_with_graceful_shutdown` | cordoning node1 (its Node manifest gets `spec.unschedulable: true`): the ToR sees node1's routes with GRACEFUL_SHUTDOWN (65535:0), its route-map gives them LOCAL_PREF 0 and it routes the service only to node2; node2 has node1's block with LOCAL_PREF 0 (iBGP); `petrel status` says `Draining`; uncordoning restores both paths; cordoned again, node1's agent is killed and its endpoint goes: not one ping lost |
//! | `sigterm_drains_before_the_agent_stops` | node2's agent runs with `--drain-seconds 30` and gets SIGTERM: the ToR sees its routes with GRACEFUL_SHUTDOWN and moves the service to node1 before the agent is gone; the next agent advertises them as before; no ping lost |
//! | `a_killed_route_reflector_loses_no_packet` | topology `hitless-rr`: two reflectors, two clients pinging each other's pod addresses; `kill -9` of one reflector, which stays down past its restart time (5 s): the clients keep the other reflector's path; no ping lost |
//! | `a_tor_restart_loses_no_packet` | topology `hitless-tor`: node1 dual-homed to two FRR ToRs with graceful restart; ext pings node1's pod address through tor2 while tor1's daemons are killed and started again (node1 keeps tor1's routes as the helper until its End-of-RIB); no ping lost |
//! | `agents_restart_without_losing_a_packet` | rolling restart of both agents (SIGTERM, 1 s drain, the next agent adopts the kernel routes and defers its selection until End-of-RIB), then `kill -9` of node1's agent and a start within the restart time: not one ping lost to either pod address or the service |
//!
//! Run as root after `cargo build -p petrel --bins`:
//! `cargo test -p petrel-testbed --test hitless -- --test-threads=1`.

mod common;

use anyhow::{Context, ensure};
use common::petrel::write_manifest;
use common::*;
use petrel_testbed::status::same_addr;
use petrel_testbed::{Lab, wait_for};
use std::time::Duration;

/// (node, address, pod block, the pod address on its loopback)
const NODES: [(&str, &str, &str, &str); 2] = [
    ("node1", "10.0.1.1", "10.244.1.0/24", "10.244.1.1"),
    ("node2", "10.0.2.1", "10.244.2.0/24", "10.244.2.1"),
];
const SERVICE: &str = "198.51.100.10";
const SERVICE_PREFIX: &str = "198.51.100.10/32";
const BOTH: [&str; 2] = ["10.0.1.1", "10.0.2.1"];

fn lab() -> Lab {
    let lab = deploy("hitless");
    lab.check(|lab| {
        for (node, addr, block, _) in NODES {
            wait_established_within(lab, "tor", addr, UP)?;
            let other = NODES
                .iter()
                .find(|n| n.0 != node)
                .map(|n| n.1)
                .unwrap_or("");
            common::petrel::wait_petrel_established(lab, node, other)?;
            wait_tor_hops(lab, block, &[addr])?;
        }
        wait_tor_hops(lab, SERVICE_PREFIX, &BOTH)?;
        Ok(())
    });
    lab
}

/// The Node manifest of `node`, cordoned or not.
fn node_manifest(node: &str, cordoned: bool) -> String {
    let (_, addr, block, _) = NODES
        .iter()
        .find(|n| n.0 == node)
        .copied()
        .unwrap_or(NODES[0]);
    format!(
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: {node}\n  annotations:\n    \
         petrel.dev/ipv4-address: {addr}/30\nspec:\n  podCIDRs: [{block}]\n  unschedulable: {cordoned}\n"
    )
}

/// `kubectl cordon` / `uncordon`: the Node as every agent reads it.
fn cordon(lab: &Lab, node: &str, cordoned: bool) -> anyhow::Result<()> {
    for (n, _, _, _) in NODES {
        write_manifest(
            lab,
            n,
            &format!("{node}.yaml"),
            &node_manifest(node, cordoned),
        )?;
    }
    Ok(())
}

fn wait_tor_hops(lab: &Lab, prefix: &str, want: &[&str]) -> anyhow::Result<()> {
    lab.wait_kernel_hops("tor", prefix, want, PROPAGATE)
        .map(drop)
}

/// One of FRR's paths for a prefix.
#[derive(Debug)]
struct TorPath {
    from: String,
    local_pref: u64,
    graceful_shutdown: bool,
}

fn tor_paths(lab: &Lab, prefix: &str) -> anyhow::Result<Vec<TorPath>> {
    let out = lab.vtysh("tor", &format!("show bgp ipv4 unicast {prefix} json"))?;
    let v: serde_json::Value = serde_json::from_str(&out).with_context(|| out.clone())?;
    let paths = v["paths"].as_array().cloned().unwrap_or_default();
    Ok(paths
        .iter()
        .map(|p| {
            let comms = p["community"].to_string().to_ascii_lowercase();
            TorPath {
                from: p["peer"]["peerId"].as_str().unwrap_or("").to_string(),
                local_pref: p["locPrf"].as_u64().unwrap_or(100),
                graceful_shutdown: comms.contains("65535:0") || comms.contains("graceful"),
            }
        })
        .collect())
}

/// Whether the ToR's path for `prefix` from `from` is marked for graceful
/// shutdown (the community and, by the ToR's route-map, LOCAL_PREF 0).
fn wait_tor_path_draining(
    lab: &Lab,
    prefix: &str,
    from: &str,
    draining: bool,
) -> anyhow::Result<()> {
    wait_for(
        PROPAGATE,
        &format!("the ToR's path for {prefix} from {from}: draining {draining}"),
        || {
            let paths = tor_paths(lab, prefix)?;
            let p = paths
                .iter()
                .find(|p| same_addr(&p.from, from))
                .with_context(|| format!("no path from {from}: {paths:?}"))?;
            ensure!(
                p.graceful_shutdown == draining && (p.local_pref == 0) == draining,
                "{p:?}"
            );
            Ok(())
        },
    )
}

/// node2's LOCAL_PREF and communities for node1's block (iBGP mesh).
fn wait_mesh_view(lab: &Lab, draining: bool) -> anyhow::Result<()> {
    let block = NODES[0].2;
    wait_for(
        PROPAGATE,
        &format!("node2's route to {block}: draining {draining}"),
        || {
            let routes = lab.petrel_routes("node2")?;
            let r = routes
                .iter()
                .find(|r| r.prefix == block && r.best)
                .with_context(|| format!("no best route for {block}"))?;
            let gshut = r.communities.iter().any(|c| c == "65535:0");
            ensure!(
                gshut == draining && (r.local_pref == Some(0)) == draining,
                "{r:?}"
            );
            Ok(())
        },
    )
}

/// A `ping -i 0.01` running in the background in a node's namespace.
struct Ping {
    node: &'static str,
    target: &'static str,
    log: std::path::PathBuf,
    pid: String,
}

impl Ping {
    fn start(lab: &Lab, node: &'static str, target: &'static str) -> anyhow::Result<Ping> {
        let log = lab.root().join(format!("ping-{node}-{target}.log"));
        // -w: it ends by itself should the test die first.
        let pid = lab.exec(
            node,
            &format!(
                "setsid ping -q -n -i 0.01 -w 600 {target} >{} 2>&1 & echo $!",
                log.display()
            ),
        )?;
        Ok(Ping {
            node,
            target,
            log,
            pid: pid.trim().to_string(),
        })
    }

    /// Stops it (SIGINT: ping prints its summary) and returns (sent, lost).
    fn stop(self, lab: &Lab) -> anyhow::Result<(u64, u64)> {
        lab.exec(self.node, &format!("kill -INT {}", self.pid))?;
        let mut summary = None;
        for _ in 0..50 {
            std::thread::sleep(Duration::from_millis(100));
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            summary = ping_summary(&text);
            if summary.is_some() {
                break;
            }
        }
        let (sent, received) = summary.with_context(|| {
            format!(
                "no summary from ping {}: {:?}",
                self.target,
                std::fs::read_to_string(&self.log).unwrap_or_default()
            )
        })?;
        Ok((sent, sent.saturating_sub(received)))
    }
}

/// "N packets transmitted, M received" of ping's summary.
fn ping_summary(text: &str) -> Option<(u64, u64)> {
    let line = text.lines().find(|l| l.contains("packets transmitted"))?;
    let mut nums = line
        .split(',')
        .filter_map(|part| part.split_whitespace().next()?.parse::<u64>().ok());
    Some((nums.next()?, nums.next()?))
}

/// Runs `scenario` while `pings` run, then stops them, prints each loss count
/// and fails if a packet was lost (or too few were sent to tell).
fn with_pings(
    lab: &Lab,
    what: &str,
    targets: &[(&'static str, &'static str)],
    scenario: impl FnOnce() -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut pings = Vec::new();
    for (node, target) in targets {
        pings.push(Ping::start(lab, node, target)?);
    }
    std::thread::sleep(Duration::from_secs(1));
    let result = scenario();
    std::thread::sleep(Duration::from_secs(1));
    let mut lost_any = Vec::new();
    for p in pings {
        let (node, target) = (p.node, p.target);
        let (sent, lost) = p.stop(lab)?;
        eprintln!("{what}: ping {node} -> {target} every 10 ms: {sent} sent, {lost} lost");
        if lost > 0 || sent < 100 {
            lost_any.push(format!("{target}: {lost} of {sent} lost"));
        }
    }
    result?;
    ensure!(lost_any.is_empty(), "{what}: {lost_any:?}");
    Ok(())
}

/// The agent on `node` is back: sessions up, routing converged.
fn wait_converged(lab: &Lab, node: &str) -> anyhow::Result<()> {
    let (_, addr, _, _) = NODES
        .iter()
        .find(|n| n.0 == node)
        .copied()
        .unwrap_or(NODES[0]);
    // The ToR's end of the node's /30.
    let tor = format!("{}.2", addr.rsplit_once('.').map_or(addr, |(net, _)| net));
    common::petrel::wait_petrel_established(lab, node, &tor)?;
    wait_for(UP, &format!("{node} to converge"), || {
        let out = lab.petrel(node, "dataplane -o json")?;
        let v: serde_json::Value = serde_json::from_str(&out)?;
        ensure!(v["converged"] == true, "{out}");
        Ok(())
    })
}

#[test]
fn a_cordoned_node_drains_with_graceful_shutdown() {
    let lab = lab();
    lab.check(|lab| {
        let (node1, addr1, block1, _) = NODES[0];
        with_pings(lab, "drain", &[("tor", SERVICE)], || {
            cordon(lab, node1, true)?;
            wait_tor_path_draining(lab, SERVICE_PREFIX, addr1, true)?;
            wait_tor_path_draining(lab, block1, addr1, true)?;
            wait_tor_hops(lab, SERVICE_PREFIX, &["10.0.2.1"])?;
            wait_mesh_view(lab, true)?;
            let status = lab.petrel(node1, "status")?;
            ensure!(
                status.contains("Draining: node cordoned"),
                "petrel status: {status}"
            );

            // Uncordoned: as before.
            cordon(lab, node1, false)?;
            wait_tor_path_draining(lab, SERVICE_PREFIX, addr1, false)?;
            wait_tor_path_draining(lab, block1, addr1, false)?;
            wait_tor_hops(lab, SERVICE_PREFIX, &BOTH)?;
            wait_mesh_view(lab, false)?;
            let status = lab.petrel(node1, "status")?;
            ensure!(!status.contains("Draining"), "petrel status: {status}");

            // Drained again, then the node goes: its agent dies (the ToR
            // keeps its routes by graceful restart, least preferred) and its
            // endpoint is gone. The traffic moved before.
            cordon(lab, node1, true)?;
            wait_tor_hops(lab, SERVICE_PREFIX, &["10.0.2.1"])?;
            lab.kill_node(node1)?;
            lab.exec(node1, &format!("ip addr del {SERVICE}/32 dev lo"))?;
            std::thread::sleep(Duration::from_secs(2));
            Ok(())
        })
    });
}

#[test]
fn sigterm_drains_before_the_agent_stops() {
    let lab = lab();
    lab.check(|lab| {
        let (node2, addr2, block2, _) = NODES[1];
        // An agent that drains for longer than the lab waits for it to stop:
        // it is killed while draining, and the ToR keeps what it last heard
        // (graceful restart), so a drain that was advertised stays visible.
        lab.stop_node(node2)?;
        lab.start_node_with_env(node2, &[("PETREL_DRAIN_SECONDS", "30")])?;
        wait_converged(lab, node2)?;
        wait_tor_hops(lab, SERVICE_PREFIX, &BOTH)?;
        wait_tor_path_draining(lab, SERVICE_PREFIX, addr2, false)?;
        with_pings(lab, "SIGTERM drain", &[("tor", SERVICE)], || {
            std::thread::scope(|scope| {
                let stop = scope.spawn(|| lab.stop_node(node2));
                let seen = wait_tor_path_draining(lab, SERVICE_PREFIX, addr2, true)
                    .and_then(|()| wait_tor_path_draining(lab, block2, addr2, true))
                    .and_then(|()| wait_tor_hops(lab, SERVICE_PREFIX, &["10.0.1.1"]));
                let stopped = stop
                    .join()
                    .map_err(|_| anyhow::anyhow!("stopping {node2} panicked"));
                seen?;
                stopped?
            })?;
            // The next agent advertises the routes as before.
            lab.start_node(node2)?;
            wait_converged(lab, node2)?;
            wait_tor_path_draining(lab, SERVICE_PREFIX, addr2, false)?;
            wait_tor_hops(lab, SERVICE_PREFIX, &BOTH)
        })?;
        let log = lab.log(node2);
        ensure!(
            log.contains("SIGTERM: draining before stopping"),
            "{node2} did not drain on SIGTERM"
        );
        Ok(())
    });
}

#[test]
fn agents_restart_without_losing_a_packet() {
    let lab = lab();
    lab.check(|lab| {
        let targets = [("tor", NODES[0].3), ("tor", NODES[1].3), ("tor", SERVICE)];
        with_pings(lab, "rolling restart", &targets, || {
            for (node, _, _, _) in NODES {
                lab.restart_node(node)?;
                wait_converged(lab, node)?;
                wait_tor_hops(lab, SERVICE_PREFIX, &BOTH)?;
            }
            Ok(())
        })?;
        // The restarted agents deferred their selection (RFC 4724 §4.1).
        for (node, _, _, _) in NODES {
            let log = lab.log(node);
            ensure!(
                log.contains("deferred route selection done"),
                "{node} did not defer its selection after its restart"
            );
        }
        with_pings(lab, "kill -9 and start", &targets, || {
            lab.kill_node(NODES[0].0)?;
            std::thread::sleep(Duration::from_secs(1));
            lab.start_node(NODES[0].0)?;
            wait_converged(lab, NODES[0].0)?;
            wait_tor_hops(lab, SERVICE_PREFIX, &BOTH)?;
            Ok(())
        })
    });
}

/// Whether `node` has exactly `paths` Loc-RIB paths for `prefix`.
fn wait_paths(lab: &Lab, node: &str, prefix: &str, paths: usize) -> anyhow::Result<()> {
    wait_for(UP, &format!("{node}: {paths} paths for {prefix}"), || {
        let routes = lab.petrel_routes(node)?;
        let mine: Vec<_> = routes.iter().filter(|r| r.prefix == prefix).collect();
        ensure!(
            mine.len() == paths && mine.iter().any(|r| r.best),
            "{mine:?}"
        );
        Ok(())
    })
}

#[test]
fn a_killed_route_reflector_loses_no_packet() {
    let lab = deploy("hitless-rr");
    lab.check(|lab| {
        // Each client has the other's block from both reflectors.
        wait_paths(lab, "c1", "10.244.2.0/24", 2)?;
        wait_paths(lab, "c2", "10.244.1.0/24", 2)?;
        let targets = [("c1", "10.244.2.1"), ("c2", "10.244.1.1")];
        with_pings(lab, "route reflector killed", &targets, || {
            lab.kill_node("rr1")?;
            // Its paths stay for its restart time (graceful restart), then
            // go; the other reflector's path carries on.
            wait_paths(lab, "c1", "10.244.2.0/24", 1)?;
            wait_paths(lab, "c2", "10.244.1.0/24", 1)?;
            std::thread::sleep(Duration::from_secs(1));
            Ok(())
        })
    });
}

#[test]
fn a_tor_restart_loses_no_packet() {
    let lab = deploy("hitless-tor");
    lab.check(|lab| {
        let tors = [("tor1", "10.0.1.2"), ("tor2", "10.0.2.2")];
        for (_, addr) in tors {
            common::petrel::wait_petrel_established(lab, "node1", addr)?;
        }
        wait_for(
            UP,
            "node1's block at both ToRs, ext in node1's kernel",
            || {
                for (tor, _) in tors {
                    let r = lab.kernel_routes_for(tor, "10.244.1.0/24")?;
                    ensure!(!r.is_empty(), "{tor} has no route to node1's block");
                }
                let r = lab.kernel_routes_for("node1", "203.0.113.1/32")?;
                ensure!(!r.is_empty(), "node1 has no route to ext");
                Ok(())
            },
        )?;
        with_pings(lab, "ToR restart", &[("ext", "10.244.1.1")], || {
            lab.kill_node("tor1")?;
            std::thread::sleep(Duration::from_secs(2));
            lab.start_node("tor1")?;
            common::petrel::wait_petrel_established(lab, "node1", "10.0.1.2")?;
            wait_for(PROPAGATE, "tor1's End-of-RIB at node1", || {
                let p = lab.petrel_peer("node1", "10.0.1.2")?;
                ensure!(p.graceful_restart.is_empty(), "{p:?}");
                Ok(())
            })?;
            Ok(())
        })
    });
}
