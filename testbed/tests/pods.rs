//! Pods wired by the real CNI chain (the reference `ptp` plugin delegating to
//! `petrel-ipam`), routed across nodes by petrel with no encapsulation.
//!
//! | test | topology | what |
//! |------|----------|------|
//! | `cni_host_local` | `pods/hostlocal.clab.yaml` | the CNI runner itself with ptp + host-local: ADD, CHECK, DEL, errors, pods on two hosts ping each other |
//! | `pods_ping_across_nodes` | `pods` | pods get one address of each family from their node's blocks; every pod pings every other on IPv4 and IPv6 |
//! | `pods_plain_ip_on_the_wire` | `pods` | a capture on node1's link to the ToR shows ICMP between the pod addresses themselves: no tunnel, no NAT |
//! | `pods_tor_one_route_per_block` | `pods` | the ToR has exactly one path per claimed block, from its owner, and nothing else of the pools |
//! | `pods_full_block_claims_another` | `pods` | node1 fills its /29 (7 pods + gateway); the next ADD claims a new block, which the ToR, node2 and node3 route within 1 s of the claim (node1's log); its pod answers the other nodes' pods |
//! | `pods_delete_frees_addresses` | `pods` | DEL releases the allocation and the address is handed out again; GC releases what the runtime no longer lists; CHECK, STATUS |
//! | `pods_agent_down_is_cni_error_11` | `pods` | ADD while the node's agent is stopped fails with CNI error 11 saying so; works again after a restart |
//!
//! Run as root after `cargo build --workspace --bins` (builds `petrel` and
//! `petrel-ipam`), with the `containernetworking-plugins` and `tcpdump`
//! packages installed:
//! `cargo test -p petrel-testbed --test pods -- --test-threads=1`.

mod common;

use anyhow::{Context, ensure};
use common::PROPAGATE;
use petrel_testbed::cni::capture::{Capture, IcmpKind, Packet};
use petrel_testbed::cni::ipam::{IpamState, claim_time};
use petrel_testbed::cni::{
    CNI_ERR_TRY_AGAIN_LATER, Cni, CniError, IpPrefix, Pod, common_prefix_len, petrel_conflist,
};
use petrel_testbed::status::same_addr;
use petrel_testbed::{Afi, Kind, Lab, is_root, wait_for};
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant, SystemTime};

// ------------------------------------------------- the CNI runner alone ---

/// A ptp + host-local conflist for one host's pod subnets.
fn host_local_conf(lab: &Lab, host: &str, v4: &str, v6: &str) -> String {
    let data = lab.root().join(format!("host-local-{host}"));
    serde_json::json!({
        "cniVersion": "1.0.0",
        "name": "pods",
        "plugins": [{
            "type": "ptp",
            "ipam": {
                "type": "host-local",
                "dataDir": data,
                "ranges": [[{"subnet": v4}], [{"subnet": v6}]],
                "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]
            }
        }]
    })
    .to_string()
}

#[test]
fn cni_host_local() {
    assert!(
        is_root(),
        "the testbed tests create namespaces: run as root"
    );
    let path = common::topology("pods").with_file_name("hostlocal.clab.yaml");
    let lab = Lab::deploy(&path).unwrap_or_else(|e| panic!("deploying {}: {e:#}", path.display()));
    lab.check(|lab| {
        let conf1 = host_local_conf(lab, "h1", "10.1.1.0/24", "fd00:1:1::/64");
        let conf2 = host_local_conf(lab, "h2", "10.1.2.0/24", "fd00:1:2::/64");
        let (c1, c2) = (Cni::new(lab, "h1", &conf1)?, Cni::new(lab, "h2", &conf2)?);
        let a = c1.add().context("ADD on h1")?;
        let b = c2.add().context("ADD on h2")?;
        let b2 = c2.add().context("second ADD on h2")?;
        for (pod, v4, v6) in [
            (&a, "10.1.1.0/24", "fd00:1:1::/64"),
            (&b, "10.1.2.0/24", "fd00:1:2::/64"),
        ] {
            let (ip4, ip6) = (v4_of(pod)?, v6_of(pod)?);
            let (n4, n6): (IpPrefix, IpPrefix) = (v4.parse()?, v6.parse()?);
            ensure!(
                n4.contains(ip4) && n6.contains(ip6),
                "{pod:?}: addresses outside {v4} / {v6}"
            );
            // ptp puts the addresses on eth0 inside the pod, with a default
            // route through the gateway the IPAM returned.
            let addrs = pod.exec("ip -j addr show dev eth0")?;
            ensure!(
                addrs.contains(&ip4.to_string()) && addrs.contains(&ip6.to_string()),
                "{pod:?}: eth0 lacks its addresses: {addrs}"
            );
            let gw = pod.ips()[0].gateway.context("no gateway")?;
            let routes = pod.exec("ip -4 route show default")?;
            ensure!(
                routes.contains(&format!("via {gw}")),
                "{pod:?}: default route not via {gw}: {routes}"
            );
            pod.check().with_context(|| format!("CHECK of {pod:?}"))?;
        }
        ensure!(b.ipv4() != b2.ipv4(), "two pods got {:?}", b.ipv4());
        a.ping(v4_of(&b)?)?;
        a.ping(v6_of(&b)?)?;
        a.ping(v4_of(&b2)?)?;
        b.ping(v6_of(&a)?)?;
        // The capture sees the routed pod traffic on the link.
        let capture = Capture::start(lab, "h1", "eth1")?;
        a.exec(&format!("ping -n -c 3 -i 0.2 {}", v4_of(&b)?))?;
        a.exec(&format!("ping -n -c 3 -i 0.2 {}", v6_of(&b)?))?;
        let packets: Vec<Packet> = capture
            .stop()?
            .iter()
            .filter_map(|f| Packet::parse(f))
            .collect();
        for (src, dst) in [(v4_of(&a)?, v4_of(&b)?), (v6_of(&b)?, v6_of(&a)?)] {
            let kind = if src == v4_of(&a)? {
                IcmpKind::EchoRequest
            } else {
                IcmpKind::EchoReply
            };
            let n = packets
                .iter()
                .filter(|p| (p.src, p.dst, p.icmp) == (src, dst, Some(kind)))
                .count();
            ensure!(
                n == 3,
                "captured {n} {kind:?} {src} -> {dst}, expected 3: {packets:?}"
            );
        }

        // DEL releases host-local's reservation (a file named after the
        // address in its data dir) and removes the pod's namespace.
        let reserved = lab
            .root()
            .join("host-local-h2/pods")
            .join(v4_of(&b2)?.to_string());
        ensure!(
            reserved.exists(),
            "host-local did not record {}",
            reserved.display()
        );
        let ns = b2.netns().to_string();
        b2.delete()?;
        ensure!(!reserved.exists(), "DEL left {}", reserved.display());
        let list = lab.exec("h2", "ip netns list")?;
        ensure!(
            !list
                .lines()
                .any(|l| l.split_whitespace().next() == Some(&ns)),
            "namespace {ns} still exists: {list}"
        );
        // A failing plugin gives its CNI error, and the pod is torn down.
        let bad_conf = host_local_conf(lab, "h1", "10.1.1.0/33", "fd00:1:1::/64");
        let bad = Cni::new(lab, "h1", &bad_conf)?;
        let before = lab.exec("h1", "ip netns list")?.lines().count();
        let err = match bad.add() {
            Ok(pod) => anyhow::bail!("ADD with an invalid subnet succeeded: {pod:?}"),
            Err(e) => e,
        };
        let cni_err = err
            .downcast_ref::<CniError>()
            .with_context(|| format!("not a CNI error: {err:#}"))?;
        ensure!(
            cni_err.plugin == "ptp" && cni_err.command == "ADD" && !cni_err.msg.is_empty(),
            "unexpected error: {cni_err}"
        );
        let after = lab.exec("h1", "ip netns list")?.lines().count();
        ensure!(
            after == before,
            "the failed pod's namespace was left behind"
        );
        // A pod that is never dropped is still removed with the lab.
        std::mem::forget(c1.add()?);
        Ok(())
    });
    let prefix = format!("{}-", lab.prefix());
    drop(lab);
    let list = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    let left: Vec<String> = String::from_utf8_lossy(&list.stdout)
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .map(str::to_string)
        .collect();
    assert!(left.is_empty(), "namespaces left after the lab: {left:?}");
}

// --------------------------------------------------- pods routed by petrel ---

#[test]
fn pods_ping_across_nodes() {
    let lab = deploy_pods();
    run(&lab, |lab| {
        wait_ready(lab)?;
        let mut pods = Vec::new();
        for (node, _, _) in NODES {
            let cni = petrel_cni(lab, node)?;
            pods.push(cni.add().with_context(|| format!("ADD on {node}"))?);
        }
        pods.push(
            petrel_cni(lab, "node1")?
                .add()
                .context("second ADD on node1")?,
        );
        let mut addrs: Vec<IpAddr> = pods
            .iter()
            .flat_map(|p| p.ips().iter().map(|i| i.address.addr))
            .collect();
        addrs.sort();
        addrs.dedup();
        ensure!(
            addrs.len() == 2 * pods.len(),
            "addresses handed out twice: {pods:?}"
        );
        for from in &pods {
            for to in pods.iter().filter(|p| p.netns() != from.netns()) {
                for addr in [v4_of(to)?, v6_of(to)?] {
                    wait_ping(from, addr).with_context(|| format!("{from:?} -> {to:?}"))?;
                }
            }
        }
        let state = ipam_state(lab)?;
        for pod in &pods {
            check_pod_addresses(&state, pod)?;
        }
        ipam_check(lab)
    });
}

#[test]
fn pods_plain_ip_on_the_wire() {
    let lab = deploy_pods();
    run(&lab, |lab| {
        wait_ready(lab)?;
        let a = petrel_cni(lab, "node1")?.add()?;
        let b = petrel_cni(lab, "node2")?.add()?;
        let (a4, a6, b4, b6) = (v4_of(&a)?, v6_of(&a)?, v4_of(&b)?, v6_of(&b)?);
        wait_ping(&a, b4)?;
        wait_ping(&a, b6)?;
        let capture = Capture::start(lab, "node1", "eth1")?;
        let out4 = a.exec(&format!("ping -n -c 5 -i 0.2 -W 1 {b4}"))?;
        let out6 = a.exec(&format!("ping -n -c 5 -i 0.2 -W 1 {b6}"))?;
        let frames = capture.stop()?;
        let packets: Vec<Packet> = frames.iter().filter_map(|f| Packet::parse(f)).collect();
        let summary = || {
            packets
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n  ")
        };
        // Echo requests and replies travel as plain IP between the pods'
        // own addresses: nothing rewrote them (no NAT) and nothing wraps
        // them (the ICMP header follows the outer IP header directly).
        for (src, dst, kind) in [
            (a4, b4, IcmpKind::EchoRequest),
            (b4, a4, IcmpKind::EchoReply),
            (a6, b6, IcmpKind::EchoRequest),
            (b6, a6, IcmpKind::EchoReply),
        ] {
            let n = packets
                .iter()
                .filter(|p| p.src == src && p.dst == dst && p.icmp == Some(kind))
                .count();
            ensure!(
                n >= 5,
                "expected 5 {kind:?} {src} -> {dst} on node1:eth1, saw {n}; capture:\n  {}\n\
                 pings:\n{out4}\n{out6}",
                summary()
            );
        }
        let pods = [a4, a6, b4, b6];
        let bad: Vec<String> = packets
            .iter()
            .filter(|p| {
                p.encapsulation().is_some()
                    || (p.icmp.is_some_and(IcmpKind::is_echo)
                        && !(pods.contains(&p.src) && pods.contains(&p.dst)))
            })
            .map(ToString::to_string)
            .collect();
        ensure!(
            bad.is_empty(),
            "encapsulated or translated packets on node1:eth1: {bad:?}; capture:\n  {}",
            summary()
        );
        Ok(())
    });
}

#[test]
fn pods_tor_one_route_per_block() {
    let lab = deploy_pods();
    run(&lab, |lab| {
        wait_ready(lab)?;
        // A pod per node, so every node has used its blocks.
        let mut pods = Vec::new();
        for (node, _, _) in NODES {
            pods.push(petrel_cni(lab, node)?.add()?);
        }
        wait_for(
            PROPAGATE,
            "the ToR to hold exactly the claimed blocks",
            || check_tor_blocks(lab),
        )?;
        Ok(())
    });
}

#[test]
fn pods_full_block_claims_another() {
    let lab = deploy_pods();
    run(&lab, |lab| {
        wait_ready(lab)?;
        let node1 = petrel_cni(lab, "node1")?;
        let watchers = [
            petrel_cni(lab, "node2")?.add()?,
            petrel_cni(lab, "node3")?.add()?,
        ];
        let first: Vec<IpPrefix> = blocks_of(&ipam_state(lab)?, "node1", true);
        ensure!(
            first.len() == 1,
            "node1 should start with one IPv4 block: {first:?}"
        );
        let mut pods: Vec<Pod> = Vec::new();
        let (new_pod, routed) = loop {
            ensure!(
                pods.len() <= 8,
                "node1 handed out {} addresses of its /29 without claiming another block: {pods:?}",
                pods.len()
            );
            // Every ADD runs while the IPAM objects are watched for a new
            // block of node1 and, once there, the routers for its route.
            let (pod, routed) = std::thread::scope(|s| {
                let add = s.spawn(|| node1.add());
                let routed = watch_new_block(lab, &first, &add);
                let pod = add
                    .join()
                    .map_err(|_| anyhow::anyhow!("ADD thread panicked"))?;
                Ok::<_, anyhow::Error>((pod, routed))
            })?;
            let pod = pod.with_context(|| format!("ADD #{} on node1", pods.len() + 1))?;
            let ip = v4_of(&pod)?;
            if first.iter().any(|b| b.contains(ip)) {
                for w in &watchers {
                    wait_ping(w, ip)?;
                }
                pods.push(pod);
            } else {
                break (pod, routed?);
            }
        };
        // Seven pods fill a /29 whose eighth address is the gateway.
        ensure!(
            pods.len() == 7,
            "the first block held {} pods before a new block was used (expected 7: eight \
             addresses minus the gateway): {pods:?}",
            pods.len()
        );
        let new_ip = v4_of(&new_pod)?;
        let state = ipam_state(lab)?;
        let (new_block, seen) = routed.with_context(|| {
            format!("{new_pod:?} is outside node1's first block, but no new block was seen")
        })?;
        ensure!(
            new_block.contains(new_ip),
            "{new_pod:?}: {new_ip} is not in the new block {new_block}"
        );
        let now: Vec<IpPrefix> = blocks_of(&state, "node1", true);
        ensure!(
            now.len() == 2 && now.contains(&first[0]) && now.contains(&new_block),
            "node1 should own its first block and {new_block}: {now:?}"
        );
        // From the claim as node1 logged it; from the moment the block object
        // was seen if the log says nothing (which understates the delay).
        let (claimed_at, from) = match claim_time(&lab.log("node1"), &new_block.to_string()) {
            Some(t) => (t, "node1 logged the claim"),
            None => (seen.claim_seen, "the block object appeared"),
        };
        let deadline = Duration::from_secs(1);
        for (router, at) in &seen.routes {
            let d = at.duration_since(claimed_at).unwrap_or_default();
            eprintln!("{router} routes {new_block} {d:.0?} after {from}");
            ensure!(
                d < deadline,
                "{router} routed {new_block} only {d:?} after {from} (limit {deadline:?})"
            );
        }
        // And the pod answers from the other nodes' pods.
        for w in &watchers {
            wait_ping(w, new_ip)?;
        }
        check_pod_addresses(&state, &new_pod)?;
        wait_for(
            PROPAGATE,
            "the ToR to hold exactly the claimed blocks",
            || check_tor_blocks(lab),
        )?;
        Ok(())
    });
}

#[test]
fn pods_delete_frees_addresses() {
    let lab = deploy_pods();
    run(&lab, |lab| {
        wait_ready(lab)?;
        let cni = petrel_cni(lab, "node1")?;
        let p1 = cni.add()?;
        let p2 = cni.add()?;
        let p3 = cni.add()?;
        p2.check().context("CHECK of a live pod")?;
        let (addr4, addr6, key) = (v4_of(&p2)?, v6_of(&p2)?, attachment_key(&p2));
        let state = ipam_state(lab)?;
        for a in [addr4, addr6] {
            ensure!(
                state
                    .block_of(a)
                    .is_some_and(|b| b.allocations.get(&key) == Some(&a)),
                "{a} of {p2:?} is not recorded under {key} in the IPAM objects"
            );
        }
        p2.delete().context("DEL")?;
        let state = ipam_state(lab)?;
        let left: Vec<_> = state
            .blocks
            .iter()
            .filter(|b| b.allocations.contains_key(&key))
            .map(|b| b.cidr)
            .collect();
        ensure!(left.is_empty(), "DEL left allocations of {key} in {left:?}");
        ensure!(
            !state.allocated().contains(&addr4) && !state.allocated().contains(&addr6),
            "{addr4} / {addr6} still allocated after DEL"
        );
        // The freed addresses are handed out again (lowest free first).
        let p4 = cni.add()?;
        ensure!(
            v4_of(&p4)? == addr4 && v6_of(&p4)? == addr6,
            "expected the freed {addr4} / {addr6} again, got {p4:?}"
        );
        wait_ping(&p1, v4_of(&p4)?)?;

        // GC (CNI 1.1, delegated by the main plugin): every allocation of
        // the network not in the runtime's list goes; listed ones stay.
        let keep = [
            (p1.container_id(), p1.ifname()),
            (p4.container_id(), p4.ifname()),
        ];
        cni.delegate_ipam("GC", "1.1.0", None, &keep)
            .context("GC")?;
        let state = ipam_state(lab)?;
        ensure!(
            !state.allocated().contains(&v4_of(&p3)?),
            "GC kept {p3:?}, which the runtime did not list"
        );
        for p in [&p1, &p4] {
            ensure!(
                state.allocated().contains(&v4_of(p)?) && state.allocated().contains(&v6_of(p)?),
                "GC released listed {p:?}"
            );
        }
        cni.delegate_ipam("STATUS", "1.1.0", None, &[])
            .context("STATUS")?;
        let err = match cni.delegate_ipam("CHECK", "1.1.0", Some(&p3), &[]) {
            Ok(out) => anyhow::bail!("CHECK of a collected attachment succeeded: {out:?}"),
            Err(e) => e,
        };
        ensure!(err.downcast_ref::<CniError>().is_some(), "CHECK: {err:#}");
        // DEL of what GC already released succeeds (DEL is idempotent).
        p3.delete().context("DEL after GC")?;
        ipam_check(lab)
    });
}

#[test]
fn pods_agent_down_is_cni_error_11() {
    let lab = deploy_pods();
    run(&lab, |lab| {
        wait_ready(lab)?;
        let cni = petrel_cni(lab, "node3")?;
        lab.stop_node("node3")?;
        let err = match cni.add() {
            Ok(pod) => anyhow::bail!("ADD with the agent stopped succeeded: {pod:?}"),
            Err(e) => e,
        };
        let e = err
            .downcast_ref::<CniError>()
            .with_context(|| format!("not a CNI error: {err:#}"))?;
        ensure!(
            e.code == Some(CNI_ERR_TRY_AGAIN_LATER) && e.msg.to_lowercase().contains("agent"),
            "expected CNI error 11 saying the agent is not running, got: {e}"
        );
        lab.start_node("node3")?;
        let pod = wait_for(UP, "ADD to work again after the agent restarts", || {
            cni.add()
        })?;
        check_pod_addresses(&ipam_state(lab)?, &pod)?;
        Ok(())
    });
}

// ------------------------------------------------------------- helpers ---

/// The agent nodes with their IPv4 and IPv6 addresses (topology `pods`).
const NODES: [(&str, &str, &str); 3] = [
    ("node1", "10.0.1.1", "fd00:0:1::1"),
    ("node2", "10.0.2.1", "fd00:0:2::1"),
    ("node3", "10.0.3.1", "fd00:0:3::1"),
];
/// The pools of the topology.
const POOL4: &str = "10.244.0.0/16";
const POOL6: &str = "fd00:244::/48";
/// petrel's AS.
const CLUSTER_AS: u32 = 64512;

fn deploy_pods() -> Lab {
    common::deploy("pods")
}

/// How long the sessions of a freshly deployed `pods` lab get to come up
/// (three agents and FRR start at once).
const UP: Duration = Duration::from_secs(40);

/// Runs a scenario; on failure panics with the error, every node's
/// sessions and routes (IPv4 and IPv6), the IPAM objects and every daemon's
/// log.
fn run(lab: &Lab, scenario: impl FnOnce(&Lab) -> anyhow::Result<()>) {
    let start = Instant::now();
    lab.check(|lab| {
        scenario(lab).map_err(|e| {
            let mut state = String::new();
            for node in lab.nodes() {
                let cmds: Vec<(&str, anyhow::Result<String>)> = match lab.kind(node) {
                    Ok(Kind::Frr) => vec![
                        ("bgp summary", lab.vtysh(node, "show bgp summary")),
                        ("bgp ipv4", lab.vtysh(node, "show bgp ipv4 unicast")),
                        ("bgp ipv6", lab.vtysh(node, "show bgp ipv6 unicast")),
                    ],
                    _ => vec![
                        ("peers", lab.petrel(node, "peers")),
                        ("routes", lab.petrel(node, "routes")),
                        ("ip route", lab.exec(node, "ip route; ip -6 route")),
                    ],
                };
                for (what, out) in cmds {
                    state.push_str(&format!("\n--- {node}: {what} ---\n{}", text(out)));
                }
            }
            let ipam = IpamState::read(&lab.root().join("ipam"));
            anyhow::anyhow!(
                "{e:#}\n\n===== state after {:.1?} =====\n{state}\n--- IPAM objects ---\n{ipam:#?}",
                start.elapsed()
            )
        })
    });
    eprintln!("lab {}: passed in {:.1?}", lab.name(), start.elapsed());
}

fn text(r: anyhow::Result<String>) -> String {
    r.unwrap_or_else(|e| format!("(failed: {e:#})"))
}

/// The network configuration a runtime would use on `node`: the reference
/// `ptp` plugin delegating to `petrel-ipam` on the node's agent socket (the
/// same list the agent writes with `--cni-conf-dir`).
fn petrel_cni<'a>(lab: &'a Lab, node: &str) -> anyhow::Result<Cni<'a>> {
    Cni::new(lab, node, &petrel_conflist(&lab.api_socket(node)?))
}

fn ipam_state(lab: &Lab) -> anyhow::Result<IpamState> {
    IpamState::read(&lab.root().join("ipam"))
}

/// A node's confirmed blocks of one family.
fn blocks_of(state: &IpamState, node: &str, v4: bool) -> Vec<IpPrefix> {
    state
        .confirmed_blocks(node)
        .iter()
        .map(|b| b.cidr)
        .filter(|c| c.addr.is_ipv4() == v4)
        .collect()
}

/// Every session of every node Established and every node owning a
/// confirmed block of each family.
fn wait_ready(lab: &Lab) -> anyhow::Result<()> {
    for (node, _, _) in NODES {
        wait_for(UP, &format!("{node}: six Established sessions"), || {
            let peers = lab.petrel_peers(node)?;
            let down: Vec<String> = peers
                .iter()
                .filter(|p| p.state != "Established")
                .map(|p| format!("{} {} {:?}", p.address, p.state, p.last_error))
                .collect();
            ensure!(
                peers.len() == 6 && down.is_empty(),
                "{} peers, down: {down:?}",
                peers.len()
            );
            Ok(())
        })?;
    }
    wait_for(UP, "every node to own an IPv4 and an IPv6 block", || {
        let state = ipam_state(lab)?;
        for (node, _, _) in NODES {
            ensure!(
                !blocks_of(&state, node, true).is_empty()
                    && !blocks_of(&state, node, false).is_empty(),
                "{node} owns {:?}",
                state.confirmed_blocks(node)
            );
        }
        Ok(())
    })
}

/// `petrel ipam check` on every node: allocations in confirmed blocks of
/// the node, no address twice, no gateway handed out.
fn ipam_check(lab: &Lab) -> anyhow::Result<()> {
    for (node, _, _) in NODES {
        lab.petrel(node, "ipam check")
            .with_context(|| format!("petrel ipam check on {node}"))?;
    }
    Ok(())
}

fn v4_of(pod: &Pod) -> anyhow::Result<IpAddr> {
    pod.ipv4()
        .map(IpAddr::V4)
        .with_context(|| format!("{pod:?} has no IPv4 address"))
}

fn v6_of(pod: &Pod) -> anyhow::Result<IpAddr> {
    pod.ipv6()
        .map(IpAddr::V6)
        .with_context(|| format!("{pod:?} has no IPv6 address"))
}

fn attachment_key(pod: &Pod) -> String {
    format!("{}/{}", pod.container_id(), pod.ifname())
}

fn wait_ping(from: &Pod, to: IpAddr) -> anyhow::Result<()> {
    wait_for(PROPAGATE, &format!("{from:?} to reach {to}"), || {
        from.ping(to)
    })
}

/// A pod has one address per family, from a confirmed block of its own
/// node recorded under its attachment, and a gateway no pod holds.
fn check_pod_addresses(state: &IpamState, pod: &Pod) -> anyhow::Result<()> {
    let (pool4, pool6): (IpPrefix, IpPrefix) = (POOL4.parse()?, POOL6.parse()?);
    ensure!(
        pod.ips().len() == 2,
        "{pod:?}: expected one address per family"
    );
    ensure!(
        pool4.contains(v4_of(pod)?) && pool6.contains(v6_of(pod)?),
        "{pod:?}: outside the pools"
    );
    let key = attachment_key(pod);
    let allocated = state.allocated();
    for ip in pod.ips() {
        let a = ip.address.addr;
        let block = state
            .block_of(a)
            .with_context(|| format!("{pod:?}: no block holds {a}"))?;
        ensure!(
            block.is_confirmed() && block.node() == Some(pod.node()),
            "{pod:?}: {a} is in {} owned by {} ({})",
            block.cidr,
            block.affinity,
            block.state
        );
        ensure!(
            block.allocations.get(&key) == Some(&a),
            "{pod:?}: {} does not record {a} under {key}: {:?}",
            block.cidr,
            block.allocations
        );
        let gw = ip
            .gateway
            .with_context(|| format!("{pod:?}: no gateway for {a}"))?;
        // The block's prefix length (proto/petrel/v1/ipam.proto:
        // AllocatedAddress.address), shortened only as far as needed to hold
        // the node's gateway when that lies in another block (ptp needs the
        // gateway on-link; src/cni/result.rs).
        let len = block.cidr.len.min(common_prefix_len(a, gw));
        ensure!(
            ip.address.len == len,
            "{pod:?}: {} should carry the prefix length {len} (block {}, gateway {gw})",
            ip.address,
            block.cidr
        );
        ensure!(
            !allocated.contains(&gw),
            "{pod:?}: its gateway {gw} is handed to a pod"
        );
    }
    Ok(())
}

/// When a new block of node1 was first seen, and when each router that
/// carries traffic to it (the ToR, and node2 and node3 over the mesh) first
/// had a kernel route for it.
struct BlockRouted {
    claim_seen: SystemTime,
    routes: Vec<(&'static str, SystemTime)>,
}

/// While `add` runs, polls the IPAM objects for a v4 block of node1 not in
/// `first`; once one appears, polls the ToR's, node2's and node3's kernel
/// routes for it (every 10 ms, at most PROPAGATE). `None` when ADD finished
/// without a new block.
fn watch_new_block<T>(
    lab: &Lab,
    first: &[IpPrefix],
    add: &std::thread::ScopedJoinHandle<'_, T>,
) -> anyhow::Result<Option<(IpPrefix, BlockRouted)>> {
    let (block, claim_seen) = loop {
        let finished = add.is_finished();
        let state = ipam_state(lab)?;
        if let Some(b) = blocks_of(&state, "node1", true)
            .into_iter()
            .find(|b| !first.contains(b))
        {
            break (b, SystemTime::now());
        }
        if finished {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut routes = Vec::new();
    let start = Instant::now();
    for router in ["tor", "node2", "node3"] {
        loop {
            let out = lab.exec(router, &format!("ip -4 route show exact {block}"))?;
            if !out.trim().is_empty() {
                break;
            }
            ensure!(
                start.elapsed() < PROPAGATE,
                "{router} has no route for node1's new block {block} after {PROPAGATE:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        routes.push((router, SystemTime::now()));
    }
    Ok(Some((block, BlockRouted { claim_seen, routes })))
}

/// The ToR holds exactly one path per confirmed block, learned from the
/// owner, and no other prefix of the pools; its kernel routes each block to
/// the owner only.
fn check_tor_blocks(lab: &Lab) -> anyhow::Result<()> {
    let state = ipam_state(lab)?;
    for (afi, pool, fam) in [(Afi::V4, POOL4, "ip"), (Afi::V6, POOL6, "ipv6")] {
        let pool: IpPrefix = pool.parse()?;
        let mut expected: BTreeMap<String, &str> = BTreeMap::new();
        for (node, a4, a6) in NODES {
            for b in blocks_of(&state, node, afi == Afi::V4) {
                expected.insert(b.to_string(), if afi == Afi::V4 { a4 } else { a6 });
            }
        }
        let routes = lab.routes("tor", afi)?;
        let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for r in &routes {
            let p: IpPrefix = r.prefix.parse()?;
            if pool.contains(p.addr) {
                seen.entry(r.prefix.clone())
                    .or_default()
                    .push(r.to_string());
            }
        }
        let extra: Vec<&String> = seen.keys().filter(|p| !expected.contains_key(*p)).collect();
        ensure!(
            extra.is_empty(),
            "ToR has pool prefixes that are no block: {extra:?}"
        );
        for (block, owner) in &expected {
            let paths: Vec<_> = routes.iter().filter(|r| &r.prefix == block).collect();
            ensure!(
                paths.len() == 1
                    && same_addr(&paths[0].next_hop, owner)
                    && paths[0].as_path == [CLUSTER_AS],
                "ToR: {block} should have exactly one path, AS path [{CLUSTER_AS}] via its owner \
                 {owner}; it has {:?}",
                seen.get(block)
            );
            let json = lab.vtysh("tor", &format!("show {fam} route {block} json"))?;
            let hops = installed_next_hops(&json, block)?;
            ensure!(
                hops.len() == 1 && same_addr(&hops[0], owner),
                "ToR kernel route for {block} should go to {owner} only, goes to {hops:?}"
            );
        }
    }
    Ok(())
}

/// The active next hops of the selected route for `prefix` in FRR's
/// `show ip route <prefix> json`.
fn installed_next_hops(json: &str, prefix: &str) -> anyhow::Result<Vec<String>> {
    let v: Value = serde_json::from_str(json).context("FRR route JSON")?;
    let entries = v
        .get(prefix)
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let selected = entries
        .iter()
        .find(|e| e.get("selected").and_then(Value::as_bool) == Some(true))
        .with_context(|| format!("no selected route for {prefix}: {json}"))?;
    Ok(selected
        .get("nexthops")
        .and_then(Value::as_array)
        .map(|hops| {
            hops.iter()
                .filter(|h| h.get("active").and_then(Value::as_bool) == Some(true))
                .filter_map(|h| h.get("ip").and_then(Value::as_str).map(str::to_string))
                .collect()
        })
        .unwrap_or_default())
}
