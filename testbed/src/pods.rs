//! `testbed deploy --pods N`: pods on every petrel node through the real CNI
//! chain (the reference `ptp` plugin with `petrel-ipam`, run exactly as a
//! container runtime runs them), then a ping from each pod to every pod on
//! the other nodes, over IPv4 and IPv6, and the routers' view of the blocks.

use petrel_testbed::cni::{Cni, Pod, petrel_conflist};
use petrel_testbed::{Kind, Lab, wait_for};
use std::net::IpAddr;
use std::time::Duration;

/// The conflist `petrel agent --cni-conf-dir` writes, for `node`'s agent.
fn conflist(lab: &Lab, node: &str) -> anyhow::Result<String> {
    Ok(petrel_conflist(&lab.api_socket(node)?))
}

/// Creates the pods, prints them, pings across nodes; fails on a lost ping.
pub fn demo(lab: &Lab, per_node: usize) -> anyhow::Result<Vec<Pod<'_>>> {
    let nodes: Vec<&str> = lab
        .nodes()
        .filter(|n| matches!(lab.kind(n), Ok(Kind::Petrel)))
        .collect();
    let mut pods = Vec::new();
    for node in &nodes {
        let cni = Cni::new(lab, node, &conflist(lab, node)?)?;
        for _ in 0..per_node {
            // The agent may still be claiming its first blocks.
            let pod = wait_for(Duration::from_secs(20), "a pod address", || cni.add())?;
            pods.push(pod);
        }
    }
    println!("\npods (network namespaces wired by ptp + petrel-ipam):");
    for p in &pods {
        let addrs: Vec<String> = p.ips().iter().map(|ip| ip.address.to_string()).collect();
        println!("  {:<8} on {:<8} {}", p.name(), p.node(), addrs.join("  "));
    }
    println!("\nping from every pod to the pods of the other nodes:");
    let mut failures = Vec::new();
    for from in &pods {
        for to in pods.iter().filter(|t| t.node() != from.node()) {
            let targets: Vec<IpAddr> = [to.ipv4().map(IpAddr::V4), to.ipv6().map(IpAddr::V6)]
                .into_iter()
                .flatten()
                .collect();
            for addr in targets {
                let ok = wait_for(Duration::from_secs(10), "a ping reply", || from.ping(addr));
                println!(
                    "  {} ({}) -> {} ({}) {addr}: {}",
                    from.name(),
                    from.node(),
                    to.name(),
                    to.node(),
                    if ok.is_ok() { "ok" } else { "LOST" }
                );
                if ok.is_err() {
                    failures.push(format!("{} -> {addr}", from.name()));
                }
            }
        }
    }
    for node in lab.nodes() {
        if matches!(lab.kind(node), Ok(Kind::Frr)) {
            println!("\n{node}: routes to the pod blocks (one per block, learned from its owner):");
            for cmd in ["show ip route bgp", "show ipv6 route bgp"] {
                match lab.vtysh(node, cmd) {
                    Ok(out) => print!("{out}"),
                    Err(e) => println!("  {cmd}: {e:#}"),
                }
            }
        }
    }
    anyhow::ensure!(failures.is_empty(), "pings lost: {}", failures.join(", "));
    println!("\nevery pod reaches every other node's pods over plain routed IP");
    Ok(pods)
}
