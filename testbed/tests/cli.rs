//! The operator CLI against a real agent (`interop-bird` topology: petrel AS
//! 65001 at 10.0.0.1 / fd00:10::1, BIRD AS 65002 at 10.0.0.2 / fd00:10::2,
//! BIRD announcing 198.51.100.0/24 with community 65002:100): `petrel
//! status`, the peer and route filters with JSON and YAML output, and the
//! error for an unreachable agent.
//!
//! `cli_ipam_explain_routes` uses the `pods` topology (three agents in AS
//! 64512 behind an FRR ToR, IPPools 10.244.0.0/16 /29 and fd00:244::/48): a
//! pod on node2 (real CNI chain, ptp + petrel-ipam), then `petrel ipam
//! show|check`, `petrel explain` on both nodes, `petrel routes
//! --received|--advertised|--kernel`, `petrel services`, `petrel log-level`.
//!
//! Run as root: `cargo test -p petrel-testbed --test cli` (needs
//! `target/debug/petrel` and `target/debug/petrel-ipam`: `cargo build
//! --workspace --bins`, or `PETREL_BIN`; the CNI `ptp` plugin).

mod common;

use common::petrel::*;
use common::*;
use petrel_testbed::cni::{Cni, petrel_conflist};
use petrel_testbed::daemon::petrel_bin;
use petrel_testbed::{Lab, wait_for};
use serde_json::Value;
use std::net::IpAddr;
use std::process::Command;
use std::time::Duration;

const PETREL: &str = "petrel";

#[test]
fn cli_against_bird() -> anyhow::Result<()> {
    let lab = deploy("interop-bird");
    wait_petrel_established(&lab, PETREL, "10.0.0.2")?;
    wait_petrel_established(&lab, PETREL, "fd00:10::2")?;
    wait_route(&lab, PETREL, "198.51.100.0/24")?;

    // status: both sessions up, the table lists them, the dataplane line.
    let status = lab.petrel(PETREL, "status")?;
    anyhow::ensure!(
        status.contains("BGP sessions: 2 peers: 2 Established"),
        "status:\n{status}"
    );
    for needle in ["10.0.0.2", "fd00:10::2", "65002", "Dataplane (table 254"] {
        anyhow::ensure!(
            status.contains(needle),
            "no {needle:?} in status:\n{status}"
        );
    }

    // peers ADDR -o json: exactly the IPv4 session.
    let json = lab.petrel(PETREL, "peers 10.0.0.2 -o json")?;
    let peers: serde_json::Value = serde_json::from_str(&json)?;
    let list = peers.as_array().expect("a JSON array");
    anyhow::ensure!(list.len() == 1, "expected one peer:\n{json}");
    anyhow::ensure!(
        list[0]["address"] == "10.0.0.2"
            && list[0]["state"] == "Established"
            && list[0]["peer_as"] == 65002
            && list[0]["local_as"] == 65001,
        "unexpected peer:\n{json}"
    );
    // BIRD is an external peer; 4-octet AS and route refresh are negotiated.
    let caps = list[0]["capabilities"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    anyhow::ensure!(
        list[0]["peer_type"] == "external"
            && caps.iter().any(|c| c == "4-octet-as")
            && caps.iter().any(|c| c == "route-refresh")
            && list[0]["keepalive_time"].as_u64().is_some_and(|k| k > 0),
        "peer type, capabilities or keepalive missing:\n{json}"
    );

    // routes PREFIX -o yaml: BIRD's route with its AS path and community.
    let yaml = lab.petrel(PETREL, "routes 198.51.100.0/24 -o yaml")?;
    let routes: serde_json::Value = serde_saphyr::from_str(&yaml)?;
    let list = routes.as_array().expect("a YAML sequence");
    anyhow::ensure!(!list.is_empty(), "no routes:\n{yaml}");
    for r in list {
        anyhow::ensure!(r["prefix"] == "198.51.100.0/24", "other prefix:\n{yaml}");
    }
    let best = list
        .iter()
        .find(|r| r["best"] == true)
        .ok_or_else(|| anyhow::anyhow!("no best route:\n{yaml}"))?;
    anyhow::ensure!(
        best["next_hop"] == "10.0.0.2"
            && best["as_path"] == serde_json::json!([65002])
            && best["communities"]
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c == "65002:100")),
        "unexpected best route:\n{yaml}"
    );

    // explain an address of BIRD's prefix: route, session, kernel route.
    let e: serde_json::Value =
        serde_json::from_str(&lab.petrel(PETREL, "explain 198.51.100.7 -o json")?)?;
    anyhow::ensure!(
        e["address"] == "198.51.100.7"
            && e["route"]["prefix"] == "198.51.100.0/24"
            && e["route"]["best"]["next_hop"] == "10.0.0.2"
            && e["peer"]["address"] == "10.0.0.2"
            && e["peer"]["state"] == "Established"
            && e["kernel"]["prefix"] == "198.51.100.0/24"
            && e["kernel"]["owned"] == true
            && e["kernel"]["next_hops"][0]["gateway"] == "10.0.0.2"
            && e["ipam"]["pool"].is_null(),
        "explain:\n{e:#}"
    );
    // An address nothing covers: the warning says so.
    let e: serde_json::Value =
        serde_json::from_str(&lab.petrel(PETREL, "explain 192.0.2.1 -o json")?)?;
    anyhow::ensure!(
        e["route"].is_null()
            && e["warnings"].as_array().is_some_and(|w| w.iter().any(|w| w
                .as_str()
                .is_some_and(|w| w.contains("no route in the Loc-RIB covers 192.0.2.1")))),
        "explain:\n{e:#}"
    );

    // A prefix nobody announces: non-zero exit, one line.
    let err = lab
        .petrel(PETREL, "routes 192.0.2.0/24")
        .expect_err("no route for 192.0.2.0/24");
    anyhow::ensure!(
        format!("{err:#}").contains("no route for 192.0.2.0/24"),
        "{err:#}"
    );

    // The API socket is for root only.
    let socket = lab
        .node_dir(PETREL)
        .parent()
        .map(|d| d.join("petrel.sock"))
        .ok_or_else(|| anyhow::anyhow!("no runtime dir"))?;
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&socket)?.permissions());
    anyhow::ensure!(
        mode & 0o777 == 0o600,
        "{} has mode {:o}",
        socket.display(),
        mode & 0o777
    );
    Ok(())
}

#[test]
fn unreachable_agent_is_one_line_and_fails() -> anyhow::Result<()> {
    let out = Command::new(petrel_bin()?)
        .args(["--api-socket", "/nonexistent", "peers"])
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    anyhow::ensure!(!out.status.success(), "exit status {}", out.status);
    anyhow::ensure!(out.stdout.is_empty(), "stdout: {:?}", out.stdout);
    anyhow::ensure!(
        stderr.lines().count() == 1
            && stderr.starts_with("petrel: cannot connect to the agent at /nonexistent: "),
        "stderr: {stderr:?}"
    );
    Ok(())
}

/// Sessions of each node in `pods`: the ToR and two mesh peers, per family.
const PODS_PEERS: usize = 6;

fn json(lab: &Lab, node: &str, args: &str) -> anyhow::Result<Value> {
    let out = lab.petrel(node, args)?;
    serde_json::from_str(&out).map_err(|e| anyhow::anyhow!("petrel {args} on {node}: {e}\n{out}"))
}

/// The CIDR of the IPv4 block of `node` in `ipam show -o json`.
fn v4_block(show: &Value, node: &str) -> Option<String> {
    show["blocks"].as_array()?.iter().find_map(|b| {
        (b["owner_node"] == node
            && b["state"] == "BLOCK_STATE_CONFIRMED"
            && b["cidr"].as_str()?.contains('.'))
        .then(|| b["cidr"].as_str().map(String::from))?
    })
}

/// Whether IPv4 `addr` lies in `cidr` ("10.244.0.8/29").
fn in_v4_block(cidr: &str, addr: IpAddr) -> bool {
    let (IpAddr::V4(a), Some((net, len))) = (addr, cidr.split_once('/')) else {
        return false;
    };
    let (Ok(net), Ok(len)) = (net.parse::<std::net::Ipv4Addr>(), len.parse::<u32>()) else {
        return false;
    };
    let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
    u32::from(a) & mask == u32::from(net) & mask
}

#[test]
fn cli_ipam_explain_routes() -> anyhow::Result<()> {
    let lab = deploy("pods");
    lab.check(|lab| {
        for node in ["node1", "node2"] {
            wait_for(
                Duration::from_secs(40),
                &format!("{node}: sessions up"),
                || {
                    let peers = lab.petrel_peers(node)?;
                    let up = peers.iter().filter(|p| p.state == "Established").count();
                    anyhow::ensure!(up == PODS_PEERS, "{up} of {} Established", peers.len());
                    Ok(())
                },
            )?;
        }
        // Every node claims a block per family at start-up.
        let node2_block = wait_for(UP, "node2 to own an IPv4 block", || {
            let show = json(lab, "node1", "ipam show -o json")?;
            v4_block(&show, "node2").ok_or_else(|| anyhow::anyhow!("blocks: {}", show["blocks"]))
        })?;
        let conf = petrel_conflist(&lab.api_socket("node2")?);
        let pod = Cni::new(lab, "node2", &conf)?.add()?;
        let addr: IpAddr = pod
            .ipv4()
            .ok_or_else(|| anyhow::anyhow!("pod has no IPv4 address"))?
            .into();
        anyhow::ensure!(
            in_v4_block(&node2_block, addr),
            "{addr} not in node2's block {node2_block}"
        );

        // ipam show on node2: pools with enum names, the pod's allocation.
        let show = json(lab, "node2", "ipam show -o json")?;
        anyhow::ensure!(show["node"] == "node2" && show["ready"] == true, "{show:#}");
        let families: Vec<&Value> = show["pools"]
            .as_array()
            .map(|p| p.iter().map(|p| &p["family"]).collect())
            .unwrap_or_default();
        anyhow::ensure!(
            families.contains(&&Value::from("IP_FAMILY_IPV4"))
                && families.contains(&&Value::from("IP_FAMILY_IPV6")),
            "pool families {families:?}"
        );
        let alloc = show["allocations"]
            .as_array()
            .and_then(|a| a.iter().find(|a| a["container_id"] == pod.container_id()))
            .ok_or_else(|| anyhow::anyhow!("no allocation of {}: {show:#}", pod.container_id()))?;
        anyhow::ensure!(
            alloc["addresses"]
                .as_array()
                .is_some_and(|x| x.iter().any(|x| x["address"]
                    .as_str()
                    .is_some_and(|a| a.starts_with(&format!("{addr}/")))
                    && x["block"] == node2_block.as_str())),
            "allocation {alloc:#}"
        );
        let table = lab.petrel("node2", "ipam show")?;
        eprintln!("petrel ipam show on node2:\n{table}");
        anyhow::ensure!(
            table.contains("node2 (this node)") && table.contains(&node2_block),
            "{table}"
        );
        let status = lab.petrel("node2", "status")?;
        anyhow::ensure!(
            status.contains("petrel agent is running on node node2")
                && status.contains("IPAM: ready, 2 blocks of this node")
                && status.contains("1 pod allocation"),
            "{status}"
        );
        let check = lab.petrel("node2", "ipam check")?;
        anyhow::ensure!(
            check.contains("IPAM on node node2 is consistent"),
            "{check}"
        );
        let check = json(lab, "node2", "ipam check -o json")?;
        anyhow::ensure!(
            check["ok"] == true && check["addresses"].as_u64() >= Some(2),
            "{check:#}"
        );

        // explain on node1: owner, route, session, kernel route.
        let e = wait_for(PROPAGATE, "node1 to route the pod's block", || {
            let e = json(lab, "node1", &format!("explain {addr} -o json"))?;
            anyhow::ensure!(
                e["kernel"]["prefix"] == node2_block.as_str(),
                "kernel: {}",
                e["kernel"]
            );
            Ok(e)
        })?;
        anyhow::ensure!(
            e["ipam"]["block"]["owner_node"] == "node2"
                && e["ipam"]["block"]["state"] == "BLOCK_STATE_CONFIRMED"
                && e["ipam"]["block_local"] == false
                && e["ipam"]["allocation"].is_null()
                && e["ipam"]["pool"]["cidr"] == "10.244.0.0/16",
            "ipam part: {e:#}"
        );
        anyhow::ensure!(e["route"]["prefix"] == node2_block.as_str(), "route: {e:#}");
        let best_peer = e["route"]["best"]["peer"].as_str().unwrap_or_default();
        anyhow::ensure!(
            !best_peer.is_empty()
                && best_peer != "local"
                && e["peer"]["name"] == best_peer
                && e["peer"]["state"] == "Established",
            "route and session: {e:#}"
        );
        anyhow::ensure!(
            e["kernel"]["owned"] == true && e["kernel"]["type"] == "unicast",
            "kernel: {e:#}"
        );
        anyhow::ensure!(
            e["warnings"].as_array().is_some_and(|w| w.is_empty()),
            "warnings: {e:#}"
        );
        let text = lab.petrel("node1", &format!("explain {addr}"))?;
        eprintln!("petrel explain {addr} on node1:\n{text}");
        for needle in [
            format!("{node2_block} owned by node2"),
            "not on this node".to_string(),
            format!("from {best_peer}"),
            "Established".to_string(),
            "(petrel)".to_string(),
        ] {
            anyhow::ensure!(text.contains(&needle), "no {needle:?} in\n{text}");
        }
        // explain on node2: the pod's attachment.
        let e = json(lab, "node2", &format!("explain {addr} -o json"))?;
        anyhow::ensure!(
            e["ipam"]["block_local"] == true
                && e["ipam"]["allocation"]["container_id"] == pod.container_id()
                && e["ipam"]["allocation"]["ifname"] == "eth0",
            "{e:#}"
        );

        // routes: node2's block received on node1's session with node2 and
        // accepted; node1's block advertised to the ToR; kernel routes.
        let node1_show = json(lab, "node1", "ipam show -o json")?;
        let node1_block = v4_block(&node1_show, "node1")
            .ok_or_else(|| anyhow::anyhow!("node1 has no block: {node1_show:#}"))?;
        let received = json(
            lab,
            "node1",
            &format!("routes {node2_block} --received --peer 10.0.2.1 -o json"),
        )?;
        let list = received.as_array().cloned().unwrap_or_default();
        anyhow::ensure!(
            !list.is_empty()
                && list.iter().all(|r| r["peer_address"] == "10.0.2.1"
                    && r["prefix"] == node2_block.as_str()
                    && r["accepted"] == true),
            "received: {received:#}"
        );
        // The ToR reflects node2's block back with our AS in the path:
        // received, and rejected by import with the reason.
        let from_tor = json(
            lab,
            "node1",
            &format!("routes {node2_block} --received --peer 10.0.1.2 -o json"),
        )?;
        anyhow::ensure!(
            from_tor.as_array().is_some_and(|a| a.len() == 1
                && a[0]["accepted"] == false
                && a[0]["as_path"] == serde_json::json!([65000, 64512])
                && a[0]["reject_reason"]
                    .as_str()
                    .is_some_and(|r| r.contains("AS path loop"))),
            "received from the ToR: {from_tor:#}"
        );
        let advertised = json(lab, "node1", "routes --advertised --peer 10.0.1.2 -o json")?;
        anyhow::ensure!(
            advertised.as_array().is_some_and(|a| a
                .iter()
                .any(|r| r["prefix"] == node1_block.as_str() && r["peer_address"] == "10.0.1.2")),
            "advertised to the ToR: {advertised:#}"
        );
        let kernel = json(lab, "node1", "routes --kernel -o json")?;
        let routes = kernel["routes"].as_array().cloned().unwrap_or_default();
        anyhow::ensure!(
            routes
                .iter()
                .any(|r| r["prefix"] == node2_block.as_str() && r["owned"] == true)
                && routes
                    .iter()
                    .any(|r| r["prefix"] == node1_block.as_str() && r["type"] == "blackhole"),
            "kernel: {kernel:#}"
        );
        let table = lab.petrel("node1", "routes --received -o wide")?;
        eprintln!("petrel routes --received -o wide on node1:\n{table}");
        eprintln!(
            "petrel routes --kernel on node1:\n{}",
            lab.petrel("node1", "routes --kernel")?
        );
        anyhow::ensure!(
            table.contains("IMPORT") && table.contains("PATH ID"),
            "{table}"
        );
        let peers = lab.petrel("node1", "peers -o wide")?;
        anyhow::ensure!(
            peers.contains("ROUTER ID")
                && peers.contains("ipv4-unicast")
                && peers.contains("mesh")
                && peers.contains("external")
                && peers.contains("4-octet-as"),
            "{peers}"
        );
        let err = lab
            .petrel("node1", "routes --received --peer 192.0.2.99")
            .expect_err("no such peer");
        anyhow::ensure!(format!("{err:#}").contains("no peer"), "{err:#}");

        // services: the engine runs; log-level changes the filter.
        let services = json(lab, "node1", "services -o json")?;
        anyhow::ensure!(services["enabled"] == true, "{services:#}");
        let out = lab.petrel("node1", "log-level debug")?;
        anyhow::ensure!(out.starts_with("log filter: debug (was "), "{out}");
        let out = lab.petrel("node1", "log-level info")?;
        anyhow::ensure!(out.starts_with("log filter: info (was debug)"), "{out}");
        let err = lab
            .petrel("node1", "log-level petrel=loud")
            .expect_err("an invalid filter");
        anyhow::ensure!(format!("{err:#}").contains("invalid log filter"), "{err:#}");
        pod.delete()?;

        // events: stopping node3 shows its sessions going down; node3
        // announced graceful restart (restart time 8 s in this topology's
        // BGPConfiguration), so node1 keeps its block while it restarts and
        // withdraws it when it does not come back in time.
        let node3_block = v4_block(&node1_show, "node3")
            .ok_or_else(|| anyhow::anyhow!("node3 has no block: {node1_show:#}"))?;
        let events = EventsChild::spawn(lab, "node1")?;
        std::thread::sleep(Duration::from_millis(300)); // subscribed
        // A restart is hitless: node1 keeps node3's block until node3 is
        // back and has sent End-of-RIB (its Forwarding State bit is set).
        lab.restart_node("node3")?;
        wait_for(PROPAGATE, "node1's sessions with node3 back", || {
            let peers = json(lab, "node1", "peers -o json")?;
            let up = peers.as_array().is_some_and(|p| {
                p.iter()
                    .any(|p| p["name"] == "mesh/node3" && p["state"] == "Established")
            });
            anyhow::ensure!(up, "{peers:#}");
            Ok(())
        })?;
        std::thread::sleep(Duration::from_millis(500)); // End-of-RIB
        let mut during_restart = Vec::new();
        while let Ok(line) = events.lines.try_recv() {
            let ev: Value = serde_json::from_str(&line)?;
            anyhow::ensure!(
                !(ev["type"] == "route"
                    && ev["route"]["prefix"] == node3_block.as_str()
                    && ev["route"]["withdrawn"] == true),
                "node3's block was withdrawn during node3's restart:\n{}\n{line}",
                during_restart.join("\n")
            );
            during_restart.push(line);
        }
        anyhow::ensure!(
            during_restart.iter().any(|l| l.contains("mesh/node3")),
            "no session event of node3's restart reached node1"
        );
        lab.stop_node("node3")?;
        let stopped = std::time::Instant::now();
        let (mut session_down, mut withdrawn) = (false, None);
        let deadline = stopped + Duration::from_secs(15);
        let mut seen = Vec::new();
        let mut checked_kept = false;
        while withdrawn.is_none() && std::time::Instant::now() < deadline {
            if session_down && !checked_kept && stopped.elapsed() > Duration::from_secs(3) {
                // Still routed 3 s after the stop, and the peer says why.
                let kernel = json(lab, "node1", "routes --kernel -o json")?;
                anyhow::ensure!(
                    kernel["routes"]
                        .as_array()
                        .is_some_and(|r| r.iter().any(|r| r["prefix"] == node3_block.as_str())),
                    "node3's block left node1's kernel during its graceful restart: {kernel:#}"
                );
                let peers = json(lab, "node1", "peers -o json")?;
                anyhow::ensure!(
                    peers
                        .as_array()
                        .is_some_and(|p| p.iter().any(|p| p["name"] == "mesh/node3"
                            && p["graceful_restart"] == "restarting"
                            && p["stale_routes"] == 1
                            && p["last_error"]
                                .as_str()
                                .is_some_and(|e| e.contains("graceful restart")))),
                    "{peers:#}"
                );
                let routes = json(lab, "node1", "routes -o json")?;
                anyhow::ensure!(
                    routes.as_array().is_some_and(|r| r
                        .iter()
                        .any(|r| r["prefix"] == node3_block.as_str()
                            && r["peer"] == "mesh/node3"
                            && r["stale"] == true)),
                    "{routes:#}"
                );
                checked_kept = true;
            }
            let Ok(line) = events.lines.recv_timeout(Duration::from_millis(200)) else {
                continue;
            };
            let ev: Value = serde_json::from_str(&line)?;
            session_down |= ev["type"] == "session"
                && ev["session"]["peer"] == "mesh/node3"
                && ev["session"]["from_state"] == "Established"
                && ev["session"]["to_state"] != "Established";
            if ev["type"] == "route"
                && ev["route"]["prefix"] == node3_block.as_str()
                && ev["route"]["withdrawn"] == true
            {
                withdrawn = Some(stopped.elapsed());
            }
            seen.push(line);
        }
        let after = withdrawn.unwrap_or_default();
        anyhow::ensure!(
            session_down && checked_kept && after >= Duration::from_secs(6),
            "events after stopping node3 (session down {session_down}, kept {checked_kept}, \
             {node3_block} withdrawn after {withdrawn:?}, expected after the 8 s restart \
             time):\n{}",
            seen.join("\n")
        );
        eprintln!("node3's block withdrawn {after:.1?} after its agent stopped (restart time 8 s)");

        // A peer removed from the configuration ends its session with an
        // event too (the peer is gone from `petrel peers` afterwards).
        std::fs::remove_file(lab.node_dir("node1").join("bgppeer-tor-node1-v4.yaml"))?;
        let deadline = std::time::Instant::now() + PROPAGATE + Duration::from_secs(1);
        let mut removed = None;
        while removed.is_none() && std::time::Instant::now() < deadline {
            let Ok(line) = events.lines.recv_timeout(Duration::from_millis(200)) else {
                continue;
            };
            let ev: Value = serde_json::from_str(&line)?;
            if ev["type"] == "session" && ev["session"]["address"] == "10.0.1.2" {
                removed = Some(ev);
            } else {
                seen.push(line);
            }
        }
        let ev = removed.ok_or_else(|| {
            anyhow::anyhow!(
                "no session event after removing the ToR peer:\n{}",
                seen.join("\n")
            )
        })?;
        anyhow::ensure!(
            ev["session"]["from_state"] == "Established"
                && ev["session"]["to_state"] == "Idle"
                && ev["session"]["reason"]
                    .as_str()
                    .is_some_and(|r| r.starts_with("peer removed")),
            "{ev:#}"
        );
        Ok(())
    });
    Ok(())
}
