//! RIB, best path and policy against real daemons: the node-to-node mesh,
//! route reflection, ToR peering with ECMP, export filters and prefix limits.
//!
//! | test        | topology    | what |
//! |-------------|-------------|------|
//! | `mesh3`     | `mesh3`     | three agents, same manifests; mesh sessions one-directional; pod blocks routed and blackholed; Node added/removed live; hijack of a block rejected |
//! | `rr`        | `rr`        | one RR (cluster ID 1.1.1.1) and three clients via Calico's route-reflector BGPPeer; eBGP to an FRR ToR |
//! | `ecmp`      | `ecmp`      | the same prefix from FRR and BIRD ToRs: two best paths, one kernel route with two next hops; one withdrawn and back |
//! | `ecmp_next_hop_change` | `ecmp` | a ToR moves its path to another next hop: the kernel's multipath route follows |
//! | `filter`    | `filter`    | a BGPFilter hides one service CIDR from BIRD; removing it live announces it without a reset |
//! | `maxprefix` | `maxprefix` | GoBGP exceeds `maxPrefixes`: Cease/Maximum Number of Prefixes Reached, no immediate reconnect |
//!
//! Run as root after `cargo build --bins`:
//! `cargo test -p petrel-testbed --test routing -- --test-threads=1`.

mod common;
mod routing_util;

use anyhow::{Context, ensure};
use petrel_testbed::status::same_addr;
use petrel_testbed::{Lab, PetrelPeer, wait_for};
use routing_util::*;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------- mesh3 ---

const MESH: [(&str, &str, &str); 3] = [
    ("node1", "10.0.0.1", "10.244.1.0/24"),
    ("node2", "10.0.0.2", "10.244.2.0/24"),
    ("node3", "10.0.0.3", "10.244.3.0/24"),
];
/// A fourth Node that runs no agent.
const NODE4: (&str, &str, &str) = ("node4", "10.0.0.4", "10.244.4.0/24");
/// The FRR speaker that becomes a cluster node and announces node2's block.
const ROGUE: (&str, &str, &str) = ("rogue", "10.0.0.10", "10.244.10.0/24");

#[test]
fn mesh3() {
    let lab = deploy("mesh3");
    run(&lab, |lab| {
        mesh_sessions(lab).context("step 1: two Established mesh sessions per agent")?;
        mesh_routes(lab).context("step 2: pod blocks in the RIBs and the kernels")?;
        mesh_one_directional(lab).context("step 3: one active side per pair")?;
        mesh_add_remove_node(lab).context("step 4: Node added and removed live")?;
        mesh_hijack(lab).context("step 5: a node announcing another node's block")?;
        Ok(())
    });
}

fn mesh_sessions(lab: &Lab) -> anyhow::Result<()> {
    for (node, addr, _) in MESH {
        let others: Vec<&str> = MESH
            .iter()
            .filter(|(_, a, _)| *a != addr)
            .map(|(_, a, _)| *a)
            .collect();
        wait_for(UP, &format!("{node}: mesh sessions to {others:?}"), || {
            let peers = lab.petrel_peers(node)?;
            let lines: Vec<String> = peers.iter().map(peer_line).collect();
            ensure!(peers.len() == 2, "expected exactly 2 peers: {lines:?}");
            for o in &others {
                let p = peers
                    .iter()
                    .find(|p| same_addr(&p.address, o))
                    .with_context(|| format!("no peer {o}: {lines:?}"))?;
                ensure!(
                    p.state == "Established" && p.local_as == 64512 && p.peer_as == 64512,
                    "peer {o} not an Established iBGP session in AS 64512: {lines:?}"
                );
                ensure!(
                    p.peer_router_id.as_deref().is_some_and(|r| same_addr(r, o)),
                    "peer {o}: router id should be its address: {lines:?}"
                );
            }
            Ok(())
        })?;
    }
    Ok(())
}

fn mesh_routes(lab: &Lab) -> anyhow::Result<()> {
    for (node, _, own_block) in MESH {
        for (other, other_addr, block) in MESH.iter().filter(|(n, _, _)| *n != node) {
            let r = wait_best_via(lab, node, block, other_addr)?;
            ensure!(
                r.as_path.is_empty() && r.peer.as_deref().is_some_and(|p| p.contains(other)),
                "{node}: {block} should come over the mesh session with {other}, empty AS \
                 path: {}",
                route_line(&r)
            );
            wait_kernel_via(lab, node, block, other_addr)?;
        }
        let own: Vec<_> = rib_paths(lab, node, own_block)?;
        ensure!(
            own.iter().filter(|r| r.best).count() == 1,
            "{node}: its own block {own_block} should have one best (local) path: {:?}",
            own.iter().map(route_line).collect::<Vec<_>>()
        );
        wait_kernel_blackhole(lab, node, own_block)?;
    }
    Ok(())
}

/// Calico's rule: the node with the lower address is passive, so each pair
/// has exactly one TCP connection, opened by the higher address.
fn mesh_one_directional(lab: &Lab) -> anyhow::Result<()> {
    for (i, (low, low_addr, _)) in MESH.iter().enumerate() {
        for (high, high_addr, _) in &MESH[i + 1..] {
            let on_low = lab.petrel_peer(low, high_addr)?;
            let on_high = lab.petrel_peer(high, low_addr)?;
            ensure!(
                on_low.passive && !on_high.passive,
                "pair {low}/{high}: expected {low} passive towards {high_addr} and {high} \
                 active towards {low_addr}; seen {} / {}",
                peer_line(&on_low),
                peer_line(&on_high)
            );
            ensure!(
                on_low.established_transitions == 1 && on_high.established_transitions == 1,
                "pair {low}/{high}: each side should have come up exactly once (no collision \
                 resets); seen {} / {}",
                peer_line(&on_low),
                peer_line(&on_high)
            );
            let conns = bgp_connections(lab, low, high_addr)?;
            ensure!(
                conns.len() == 1 && conns[0].0 == format!("{low_addr}:179"),
                "pair {low}/{high}: expected one TCP connection from {high_addr} to \
                 {low_addr}:179; {low} has {conns:?}"
            );
        }
    }
    Ok(())
}

/// Every agent's mesh sessions with the other agents, by (node, address).
fn mesh_snapshot(lab: &Lab) -> anyhow::Result<BTreeMap<(String, String), PetrelPeer>> {
    let mut out = BTreeMap::new();
    for (node, _, _) in MESH {
        for p in lab.petrel_peers(node)? {
            if MESH.iter().any(|(_, a, _)| same_addr(a, &p.address)) {
                out.insert((node.to_string(), p.address.clone()), p);
            }
        }
    }
    Ok(out)
}

/// The mesh sessions of `before` are still the same sessions: up once,
/// uptime grown by at least `min_growth` seconds.
fn mesh_untouched(
    lab: &Lab,
    before: &BTreeMap<(String, String), PetrelPeer>,
    min_growth: u64,
) -> anyhow::Result<()> {
    for ((node, addr), b) in before {
        let a = lab.petrel_peer(node, addr)?;
        let (ub, ua) = (b.uptime_seconds.unwrap_or(0), a.uptime_seconds.unwrap_or(0));
        ensure!(
            a.state == "Established"
                && a.established_transitions == 1
                && b.established_transitions == 1
                && ua >= ub + min_growth,
            "{node}'s session with {addr} was disturbed: before {}, after {}",
            peer_line(b),
            peer_line(&a)
        );
    }
    Ok(())
}

fn mesh_add_remove_node(lab: &Lab) -> anyhow::Result<()> {
    let (n4, n4_addr, n4_block) = NODE4;
    let before = mesh_snapshot(lab)?;
    let t0 = Instant::now();
    for (node, _, _) in MESH {
        write_manifest(
            lab,
            node,
            "node4.yaml",
            &node_manifest(n4, &format!("{n4_addr}/24"), &[n4_block]),
        )?;
    }
    for (node, _, _) in MESH {
        wait_for(PROPAGATE, &format!("{node}: a session to {n4}"), || {
            let p = lab.petrel_peer(node, n4_addr)?;
            // Every agent's address is lower than 10.0.0.4: all are passive
            // and wait for node4 (which does not exist) in Active.
            ensure!(
                p.passive && p.state == "Active",
                "expected a passive session in Active: {}",
                peer_line(&p)
            );
            Ok(())
        })?;
    }
    // Uptime has second resolution: let at least two seconds pass.
    std::thread::sleep(Duration::from_secs(2).saturating_sub(t0.elapsed()));
    mesh_untouched(lab, &before, 1).context("after adding node4")?;

    let before = mesh_snapshot(lab)?;
    let t0 = Instant::now();
    for (node, _, _) in MESH {
        remove_manifest(lab, node, "node4.yaml")?;
    }
    for (node, _, _) in MESH {
        wait_for(
            PROPAGATE,
            &format!("{node}: session to {n4} removed"),
            || {
                let peers = lab.petrel_peers(node)?;
                let left: Vec<String> = peers
                    .iter()
                    .filter(|p| same_addr(&p.address, n4_addr))
                    .map(peer_line)
                    .collect();
                ensure!(
                    left.is_empty() && peers.len() == 2,
                    "still listed: {left:?}"
                );
                Ok(())
            },
        )?;
    }
    std::thread::sleep(Duration::from_secs(2).saturating_sub(t0.elapsed()));
    mesh_untouched(lab, &before, 1).context("after removing node4")?;
    Ok(())
}

fn mesh_hijack(lab: &Lab) -> anyhow::Result<()> {
    let (rogue, rogue_addr, rogue_block) = ROGUE;
    let (_, node2_addr, node2_block) = MESH[1];
    let before = mesh_snapshot(lab)?;
    for (node, _, _) in MESH {
        write_manifest(
            lab,
            node,
            "rogue.yaml",
            &node_manifest(rogue, &format!("{rogue_addr}/24"), &[rogue_block]),
        )?;
    }
    for (node, _, _) in MESH {
        let p = wait_for(
            UP,
            &format!("{node}: rogue's two routes received, one accepted"),
            || {
                let p = lab.petrel_peer(node, rogue_addr)?;
                ensure!(
                    p.state == "Established" && p.prefixes_received >= 2,
                    "{}",
                    peer_line(&p)
                );
                Ok(p)
            },
        )?;
        ensure!(
            p.prefixes_accepted == 1 && p.prefixes_received > p.prefixes_accepted,
            "{node}: of rogue's {rogue_block} and {node2_block} only the first may be \
             accepted: {}",
            peer_line(&p)
        );
        // The rogue's own block is accepted and routed to it...
        wait_best_via(lab, node, rogue_block, rogue_addr)?;
        wait_kernel_via(lab, node, rogue_block, rogue_addr)?;
        // ...node2's block is not taken from it.
        let paths = rib_paths(lab, node, node2_block)?;
        let hijacked: Vec<String> = paths
            .iter()
            .filter(|r| {
                r.next_hop
                    .as_deref()
                    .is_some_and(|h| same_addr(h, rogue_addr))
                    || r.peer.as_deref().is_some_and(|p| p.contains(rogue))
            })
            .map(route_line)
            .collect();
        ensure!(
            hijacked.is_empty(),
            "{node} accepted the hijack of {node2_block}: {hijacked:?}"
        );
        if node == "node2" {
            wait_kernel_blackhole(lab, node, node2_block)?;
        } else {
            wait_best_via(lab, node, node2_block, node2_addr)?;
            wait_kernel_via(lab, node, node2_block, node2_addr)?;
        }
    }
    mesh_untouched(lab, &before, 0).context("after the rogue node joined")?;
    Ok(())
}

// ------------------------------------------------------------------- rr ---

const RR: (&str, &str, &str) = ("rr", "10.0.0.1", "10.244.0.0/24");
const RR_CLIENTS: [(&str, &str, &str); 3] = [
    ("c1", "10.0.0.11", "10.244.1.0/24"),
    ("c2", "10.0.0.12", "10.244.2.0/24"),
    ("c3", "10.0.0.13", "10.244.3.0/24"),
];
const TOR_ADDR: &str = "192.168.0.2";
const RR_TOR_ADDR: &str = "192.168.0.1";
const CLUSTER_AS: u32 = 64512;

#[test]
fn rr() {
    let lab = deploy("rr");
    run(&lab, |lab| {
        rr_sessions(lab).context("step 1: sessions from the route-reflector BGPPeer")?;
        rr_tor(lab).context("step 2: the ToR learns every block from the RR")?;
        rr_reflection(lab).context("step 3: client blocks reflected between clients")?;
        Ok(())
    });
}

fn rr_sessions(lab: &Lab) -> anyhow::Result<()> {
    let (rr, rr_addr, _) = RR;
    // The RR: one reverse peering per client plus the ToR.
    wait_for(UP, "the RR's sessions with its clients and the ToR", || {
        let peers = lab.petrel_peers(rr)?;
        let lines: Vec<String> = peers.iter().map(peer_line).collect();
        ensure!(peers.len() == 4, "expected 3 clients + ToR: {lines:?}");
        for addr in RR_CLIENTS.iter().map(|c| c.1).chain([TOR_ADDR]) {
            let p = peers
                .iter()
                .find(|p| same_addr(&p.address, addr))
                .with_context(|| format!("no peer {addr}: {lines:?}"))?;
            ensure!(p.state == "Established", "{lines:?}");
        }
        Ok(())
    })?;
    // Each client: only the RR (no mesh).
    for (c, _, _) in RR_CLIENTS {
        wait_for(UP, &format!("{c}'s single session with the RR"), || {
            let peers = lab.petrel_peers(c)?;
            let lines: Vec<String> = peers.iter().map(peer_line).collect();
            ensure!(
                peers.len() == 1
                    && same_addr(&peers[0].address, rr_addr)
                    && peers[0].state == "Established"
                    && peers[0].peer_as == CLUSTER_AS,
                "expected one Established iBGP session to {rr_addr}: {lines:?}"
            );
            Ok(())
        })?;
    }
    wait_established_within(lab, "tor", RR_TOR_ADDR, UP)?;
    Ok(())
}

fn rr_reflection(lab: &Lab) -> anyhow::Result<()> {
    let (rr, rr_addr, rr_block) = RR;
    for (c, _, own) in RR_CLIENTS {
        for (other, other_addr, block) in RR_CLIENTS.iter().filter(|x| x.0 != c) {
            // Learned over the RR session, next hop left at the originating
            // client (reflection does not change it).
            let r = wait_best_via(lab, c, block, other_addr)
                .with_context(|| format!("{c} learning {other}'s block"))?;
            ensure!(
                r.as_path.is_empty() && r.peer.as_deref().is_some_and(|p| p.contains(rr)),
                "{c}: {block} should come from the RR session with an empty AS path: {}",
                route_line(&r)
            );
            wait_kernel_via(lab, c, block, other_addr)?;
        }
        wait_best_via(lab, c, rr_block, rr_addr)?;
        wait_kernel_via(lab, c, rr_block, rr_addr)?;
        wait_kernel_blackhole(lab, c, own)?;
    }
    for (c, addr, block) in RR_CLIENTS {
        wait_best_via(lab, rr, block, addr).with_context(|| format!("the RR learning {c}'s"))?;
        wait_kernel_via(lab, rr, block, addr)?;
    }
    wait_kernel_blackhole(lab, rr, rr_block)?;
    Ok(())
}

fn rr_tor(lab: &Lab) -> anyhow::Result<()> {
    for block in RR_CLIENTS.iter().map(|c| c.2).chain([RR.2]) {
        let r = wait_for(PROPAGATE, &format!("the ToR to have {block}"), || {
            lab.best_route("tor", block)
        })?;
        ensure!(
            r.as_path == [CLUSTER_AS] && same_addr(&r.next_hop, RR_TOR_ADDR),
            "tor's route for {block}: expected AS path [{CLUSTER_AS}] via {RR_TOR_ADDR}: {r}"
        );
    }
    // Exactly those four: the RR's FRR session carries nothing else.
    let table = lab.vtysh("tor", "show bgp ipv4 unicast json")?;
    let prefixes = petrel_testbed::parse::frr_table_prefixes(&table)?;
    ensure!(
        prefixes.len() == 4,
        "the ToR should have exactly the four pod blocks, has {prefixes:?}"
    );
    Ok(())
}

// ----------------------------------------------------------------- ecmp ---

const ECMP_PREFIX: &str = "198.51.100.0/24";
const FRR_TOR: (&str, &str, u32) = ("frr", "10.0.1.2", 65010);
const BIRD_TOR: (&str, &str, u32) = ("bird", "10.0.2.2", 65020);

#[test]
fn ecmp() {
    let lab = deploy("ecmp");
    run(&lab, |lab| {
        for (tor, addr, _) in [FRR_TOR, BIRD_TOR] {
            wait_petrel_established_within(lab, "petrel", addr, UP)
                .with_context(|| format!("step 1: session with {tor}"))?;
        }
        ecmp_both_paths(lab).context("step 2: two best paths, one kernel route, two hops")?;
        ecmp_one_withdrawn(lab).context("step 3: BIRD withdraws: one next hop left")?;
        ecmp_both_paths(lab).context("step 4: BIRD announces again: back to two")?;
        Ok(())
    });
}

/// A ToR moves its path to another next hop (an implicit withdrawal, RFC
/// 4271 §3.1): the multipath set keeps its members but one hop changes, and
/// the kernel route must follow.
#[test]
fn ecmp_next_hop_change() {
    let lab = deploy("ecmp");
    run(&lab, |lab| {
        for (tor, addr, _) in [FRR_TOR, BIRD_TOR] {
            wait_petrel_established_within(lab, "petrel", addr, UP)
                .with_context(|| format!("step 1: session with {tor}"))?;
        }
        ecmp_both_paths(lab).context("step 2: two best paths, one kernel route, two hops")?;
        lab.vtysh(
            FRR_TOR.0,
            "configure terminal\nroute-map NH3 permit 10\nset ip next-hop 10.0.1.3\nexit\n\
             router bgp 65010\naddress-family ipv4 unicast\nneighbor 10.0.1.1 route-map NH3 out",
        )?;
        lab.vtysh(FRR_TOR.0, "clear bgp ipv4 unicast 10.0.1.1 soft out")?;
        wait_for(
            PROPAGATE,
            "petrel's FRR path to move to next hop 10.0.1.3",
            || {
                let paths = rib_paths(lab, "petrel", ECMP_PREFIX)?;
                let lines: Vec<String> = paths.iter().map(route_line).collect();
                ensure!(
                    paths.len() == 2
                        && paths.iter().all(|r| r.best)
                        && paths
                            .iter()
                            .any(|r| r.next_hop.as_deref() == Some("10.0.1.3")),
                    "{lines:?}"
                );
                Ok(())
            },
        )
        .context("step 3: FRR changes its next hop")?;
        wait_kernel_multipath(lab, "petrel", ECMP_PREFIX, &["10.0.1.3", BIRD_TOR.1])
            .context("step 4: the kernel follows the new next hop")?;
        Ok(())
    });
}

fn ecmp_both_paths(lab: &Lab) -> anyhow::Result<()> {
    wait_for(
        PROPAGATE,
        &format!("petrel to have two best (multipath) paths for {ECMP_PREFIX}"),
        || {
            let paths = rib_paths(lab, "petrel", ECMP_PREFIX)?;
            let lines: Vec<String> = paths.iter().map(route_line).collect();
            ensure!(paths.len() == 2, "{lines:?}");
            for (tor, addr, asn) in [FRR_TOR, BIRD_TOR] {
                let p = paths
                    .iter()
                    .find(|r| r.next_hop.as_deref().is_some_and(|h| same_addr(h, addr)))
                    .with_context(|| format!("no path via {tor} ({addr}): {lines:?}"))?;
                ensure!(
                    p.best && p.as_path == [asn],
                    "the path via {tor} should be best with AS path [{asn}]: {lines:?}"
                );
            }
            Ok(())
        },
    )?;
    wait_kernel_multipath(lab, "petrel", ECMP_PREFIX, &[FRR_TOR.1, BIRD_TOR.1])?;
    Ok(())
}

fn ecmp_one_withdrawn(lab: &Lab) -> anyhow::Result<()> {
    lab.birdc(BIRD_TOR.0, "disable static4")?;
    wait_for(
        PROPAGATE,
        &format!("petrel to keep only the FRR path for {ECMP_PREFIX}"),
        || {
            let paths = rib_paths(lab, "petrel", ECMP_PREFIX)?;
            let lines: Vec<String> = paths.iter().map(route_line).collect();
            ensure!(
                paths.len() == 1
                    && paths[0].best
                    && paths[0]
                        .next_hop
                        .as_deref()
                        .is_some_and(|h| same_addr(h, FRR_TOR.1)),
                "{lines:?}"
            );
            Ok(())
        },
    )?;
    wait_kernel_route(
        lab,
        "petrel",
        ECMP_PREFIX,
        "a single next hop via FRR",
        |r| !r.multipath && r.gateways() == [FRR_TOR.1],
    )?;
    lab.birdc(BIRD_TOR.0, "enable static4")?;
    Ok(())
}

// --------------------------------------------------------------- filter ---

const SVC_SHOWN: &str = "10.96.0.0/16";
const SVC_FILTERED: &str = "10.97.0.0/16";

#[test]
fn filter() {
    let lab = deploy("filter");
    run(&lab, |lab| {
        wait_petrel_established_within(lab, "petrel", "10.0.0.2", UP)
            .context("step 1: petrel's session")?;
        wait_established_within(lab, "bird", "10.0.0.1", UP).context("step 1: BIRD's session")?;
        filter_applied(lab).context("step 2: the BGPFilter hides one service CIDR")?;
        filter_removed(lab).context("step 3: filter removed live, without a reset")?;
        Ok(())
    });
}

fn filter_applied(lab: &Lab) -> anyhow::Result<()> {
    // petrel originates both...
    for cidr in [SVC_SHOWN, SVC_FILTERED] {
        let paths = rib_paths(lab, "petrel", cidr)?;
        ensure!(
            paths.iter().any(|r| r.best),
            "petrel should originate {cidr}: {:?}",
            paths.iter().map(route_line).collect::<Vec<_>>()
        );
    }
    // ...but exports one.
    let r = wait_for(PROPAGATE, &format!("BIRD to have {SVC_SHOWN}"), || {
        lab.best_route("bird", SVC_SHOWN)
    })?;
    ensure!(
        r.as_path == [65001] && same_addr(&r.next_hop, "10.0.0.1"),
        "BIRD's route for {SVC_SHOWN}: {r}"
    );
    let p = lab.petrel_peer("petrel", "10.0.0.2")?;
    ensure!(
        p.prefixes_advertised == 1,
        "petrel should advertise exactly one prefix to BIRD: {}",
        peer_line(&p)
    );
    ensure!(
        !lab.has_route("bird", SVC_FILTERED)?,
        "BIRD received {SVC_FILTERED}, which the BGPFilter rejects on export"
    );
    Ok(())
}

/// BIRD's `Since` column for the petrel session (changes on every reset).
fn bird_session_since(lab: &Lab) -> anyhow::Result<String> {
    let out = lab.birdc("bird", "show protocols petrel4")?;
    out.lines()
        .find(|l| l.starts_with("petrel4"))
        .and_then(|l| l.split_whitespace().nth(4))
        .map(str::to_string)
        .with_context(|| format!("no petrel4 line in {out:?}"))
}

fn filter_removed(lab: &Lab) -> anyhow::Result<()> {
    let before = lab.petrel_peer("petrel", "10.0.0.2")?;
    let since = bird_session_since(lab)?;
    let t0 = Instant::now();
    write_manifest(
        lab,
        "petrel",
        "bgppeer.yaml",
        &bgp_peer("bird", "10.0.0.2", 65002, ""),
    )?;
    remove_manifest(lab, "petrel", "bgpfilter.yaml")?;
    let r = wait_for(
        PROPAGATE,
        &format!("BIRD to receive {SVC_FILTERED}"),
        || lab.best_route("bird", SVC_FILTERED),
    )?;
    ensure!(
        r.as_path == [65001] && same_addr(&r.next_hop, "10.0.0.1"),
        "BIRD's route for {SVC_FILTERED}: {r}"
    );
    lab.best_route("bird", SVC_SHOWN)
        .context("the other service CIDR must stay")?;
    std::thread::sleep(Duration::from_secs(2).saturating_sub(t0.elapsed()));
    let after = lab.petrel_peer("petrel", "10.0.0.2")?;
    ensure!(
        after.state == "Established"
            && after.established_transitions == before.established_transitions
            && after.connection_attempts == before.connection_attempts
            && after.uptime_seconds > before.uptime_seconds
            && after.prefixes_advertised == 2,
        "the session must stay up and advertise 2 prefixes: before {}, after {}",
        peer_line(&before),
        peer_line(&after)
    );
    let since_after = bird_session_since(lab)?;
    ensure!(
        since_after == since,
        "BIRD's session was reset: up since {since} before, {since_after} after"
    );
    Ok(())
}

// ------------------------------------------------------------ maxprefix ---

const MAXPFX_GOBGP: &str = "10.0.0.2";
const MAXPFX_PETREL: &str = "10.0.0.1";

#[test]
fn maxprefix() {
    let lab = deploy("maxprefix");
    run(&lab, |lab| {
        let tripped = maxprefix_trips(lab).context("step 1: the limit trips")?;
        maxprefix_gobgp_view(lab).context("step 2: GoBGP received the Cease")?;
        maxprefix_stays_down(lab, &tripped).context("step 3: no immediate reconnect")?;
        Ok(())
    });
}

fn maxprefix_trips(lab: &Lab) -> anyhow::Result<PetrelPeer> {
    let p = wait_for(
        UP,
        "petrel to stop the GoBGP session over its prefix limit",
        || {
            let p = lab.petrel_peer("petrel", MAXPFX_GOBGP)?;
            let err = p.last_error.clone().unwrap_or_default().to_lowercase();
            ensure!(
                p.state != "Established" && p.established_transitions >= 1,
                "{}",
                peer_line(&p)
            );
            ensure!(
                err.contains("maximum number of prefixes") && err.contains("limit 10"),
                "last_error should name the limit (10): {}",
                peer_line(&p)
            );
            Ok(p)
        },
    )?;
    // The NOTIFICATION petrel sent, as its API reports it.
    let raw: serde_json::Value = serde_json::from_str(&lab.petrel("petrel", "peers -o json")?)?;
    let sent = raw
        .as_array()
        .and_then(|a| {
            a.iter()
                .find(|p| p["address"].as_str() == Some(MAXPFX_GOBGP))
        })
        .and_then(|p| p["last_notification"].as_str())
        .unwrap_or_default()
        .to_lowercase();
    ensure!(
        sent.contains("sent") && sent.contains("maximum number of prefixes reached"),
        "petrel's last_notification should be the Cease/Maximum Number of Prefixes Reached it \
         sent, seen {sent:?}"
    );
    let routes = lab.petrel_routes("petrel")?;
    ensure!(
        routes.iter().all(|r| !r.prefix.starts_with("172.16.")),
        "the routes of a session stopped over its limit must be gone: {:?}",
        routes.iter().map(route_line).collect::<Vec<_>>()
    );
    ensure!(
        lab.is_running("petrel")?,
        "the agent exited after tripping a prefix limit"
    );
    Ok(p)
}

fn maxprefix_gobgp_view(lab: &Lab) -> anyhow::Result<()> {
    wait_for(
        PROPAGATE,
        "GoBGP to report Cease / Maximum Number of Prefixes Reached from petrel",
        || {
            let n: serde_json::Value =
                serde_json::from_str(&lab.gobgp("gobgp", &format!("neighbor {MAXPFX_PETREL} -j"))?)
                    .context("parsing `gobgp neighbor -j`")?;
            // GoBGP counts the NOTIFICATIONs it received; the reason is in
            // its log.
            let notifications = n
                .pointer("/state/messages/received/notification")
                .and_then(serde_json::Value::as_u64)
                .with_context(|| format!("no notification counter in {n}"))?;
            let session = lab.session("gobgp", MAXPFX_PETREL)?;
            let reason = session
                .last_error
                .clone()
                .unwrap_or_default()
                .to_lowercase();
            ensure!(
                !session.is_established(),
                "GoBGP still Established ({})",
                session.state
            );
            ensure!(
                notifications >= 1 && reason.contains("code 6") && reason.contains("subcode 1("),
                "GoBGP should have received Cease (6) / subcode 1: {notifications} \
                 NOTIFICATIONs, last down reason {reason:?}"
            );
            Ok(())
        },
    )
}

fn maxprefix_stays_down(lab: &Lab, tripped: &PetrelPeer) -> anyhow::Result<()> {
    let window = Duration::from_secs(10);
    let start = Instant::now();
    while start.elapsed() < window {
        let p = lab.petrel_peer("petrel", MAXPFX_GOBGP)?;
        ensure!(
            p.state != "Established"
                && p.established_transitions == tripped.established_transitions,
            "petrel re-established the session {:.1?} after the prefix limit tripped (the \
             restart delay is 30 s): {}",
            start.elapsed(),
            peer_line(&p)
        );
        let s = lab.session("gobgp", MAXPFX_PETREL)?;
        ensure!(
            !s.is_established(),
            "GoBGP is Established again after {:.1?}",
            start.elapsed()
        );
        ensure!(lab.is_running("petrel")?, "the agent exited");
        std::thread::sleep(Duration::from_millis(500));
    }
    Ok(())
}
