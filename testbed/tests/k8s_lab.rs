//! End to end against a real kube-apiserver (issues 6 part 7 and 7): the
//! `k8s` topology (an FRR ToR and three agents with `--datastore
//! kubernetes`), configured only through `kubectl`. Each test starts its own
//! control plane (etcd + kube-apiserver on the host's loopback) and lab; the
//! agents reach the API server through the Unix-socket forwarders of
//! `petrel_testbed::apiproxy`, with a ServiceAccount token bound to their
//! Node and the RBAC and admission policy of `manifests/`.
//!
//! | test | what |
//! |---|---|
//! | `bgppeer_apply_and_delete_drive_the_tor_sessions` | `kubectl apply` of a BGPPeer brings the ToR sessions up within 2 s; `kubectl delete` brings them down |
//! | `a_duplicate_bgppeer_does_not_reset_the_session` | a second BGPPeer for the same peer, then deleting the first, keeps the session without a reset |
//! | `node_labels_choose_the_peers` | a BGPPeer with a nodeSelector peers from the labelled node only, and follows the label when it moves |
//! | `ippool_blocks_are_routed_everywhere` | an IPPool gives each node a block of its own (IPAMBlocks with three owners), one ToR route per block via its owner, kernel routes on every node |
//! | `apiserver_outage_changes_no_route_and_no_session` | kube-apiserver killed for 60 s: no kernel route and no session changes; afterwards a new BGPConfiguration still applies |
//! | `local_service_follows_its_endpoint_slice` | eTP=Local Service, EndpointSlice and load-balancer status written with kubectl: the /32s only via the endpoint's node, moving within 1 s; the cluster-IP CIDR over three ECMP next hops; an external IP outside the CIDRs is not advertised |
//! | `agent_restarts_from_its_cache_while_the_apiserver_is_down` | with kube-apiserver down, a restarted agent starts from its cache: its ToR session and its block's route come back; after the API server returns the blocks are unchanged |
//! | `restarted_agent_routes_to_other_blocks_while_the_apiserver_is_down` | the same, and the restarted node keeps kernel routes to the other nodes' blocks |
//! | `a_deleted_bgpfilter_keeps_the_session_and_is_reported` | deleting the BGPFilter a BGPPeer names keeps the session up without a reset (issue 12); the PetrelNode's `ConfigValid` condition turns False naming the peer, and True again when the filter returns |
//! | `concurrent_block_claims_never_share_a_block` | three agents claim from a pool of two blocks at once: two owners, one confirmed affinity per block, each block routed via its owner only |
//!
//! The API server's service range is `10.0.0.0/24`, so that is the cluster
//! IP CIDR the BGPConfiguration advertises here.
//!
//! Run as root: `cargo test -p petrel-testbed --test k8s_lab` (builds
//! kube-apiserver and etcd on first use unless `.ci/setup-k8s` did).

mod common;
mod k8s_util;

use anyhow::{Context, ensure};
use k8s_util::*;
use petrel_testbed::wait_for;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

#[test]
fn bgppeer_apply_and_delete_drive_the_tor_sessions() {
    let k = k8s_lab();
    k.run(|k| {
        // Without a BGPPeer no node peers with the ToR.
        std::thread::sleep(Duration::from_secs(2));
        ensure!(
            k.tor_established()?.is_empty(),
            "sessions without a BGPPeer"
        );
        // One node first.
        let start = Instant::now();
        k.cp.apply(&tor_peer("tor-node1", "  node: node1\n"))?;
        k.wait_tor_established(&["10.0.1.1"], PEER_UP_WITHIN)?;
        eprintln!(
            "BGPPeer (node: node1) applied -> Established at the ToR in {:.2?}",
            start.elapsed()
        );
        let start = Instant::now();
        k.cp.kubectl(&["delete", "bgppeer", "tor-node1"])?;
        k.wait_tor_established(&[], PEER_UP_WITHIN)?;
        eprintln!(
            "BGPPeer (node: node1) deleted -> session down at the ToR in {:.2?}",
            start.elapsed()
        );
        // Then one for every node.
        let start = Instant::now();
        k.cp.apply(&tor_peer("tor-all", ""))?;
        k.wait_tor_established(&["10.0.1.1", "10.0.2.1", "10.0.3.1"], PEER_UP_WITHIN)?;
        eprintln!(
            "BGPPeer (all nodes) applied -> 3 sessions Established in {:.2?}",
            start.elapsed()
        );
        let start = Instant::now();
        k.cp.kubectl(&["delete", "bgppeer", "tor-all"])?;
        k.wait_tor_established(&[], PEER_UP_WITHIN)?;
        eprintln!(
            "BGPPeer (all nodes) deleted -> sessions down at the ToR in {:.2?}",
            start.elapsed()
        );
        Ok(())
    });
}

/// A second BGPPeer selecting a node for the same peer (same address, same
/// AS) is no configuration change for that session, and neither is deleting
/// the first one: the session must stay up without a reset.
#[test]
fn a_duplicate_bgppeer_does_not_reset_the_session() {
    let k = k8s_lab();
    k.run(|k| {
        k.cp.apply(&tor_peer("tor-node1", "  node: node1\n"))?;
        k.wait_tor_established(&["10.0.1.1"], SETTLE)?;
        let before = tor_connections(k, "10.0.1.1")?;
        k.cp.apply(&tor_peer("tor-all", ""))?;
        k.wait_tor_established(&["10.0.1.1", "10.0.2.1", "10.0.3.1"], SETTLE)?;
        std::thread::sleep(Duration::from_secs(3));
        let after = tor_connections(k, "10.0.1.1")?;
        ensure!(
            after == before,
            "applying a second BGPPeer for node1's peer reset its session \
             ({before} -> {after} connections)"
        );
        k.cp.kubectl(&["delete", "bgppeer", "tor-node1"])?;
        std::thread::sleep(Duration::from_secs(3));
        let after = tor_connections(k, "10.0.1.1")?;
        ensure!(
            after == before,
            "deleting the first BGPPeer reset the session ({before} -> {after} connections)"
        );
        k.wait_tor_established(&["10.0.1.1", "10.0.2.1", "10.0.3.1"], Duration::ZERO)?;
        Ok(())
    });
}

/// The `ConfigValid` condition of a node's PetrelNode: (status, message).
fn config_valid(k: &K8sLab, node: &str) -> anyhow::Result<(String, String)> {
    let out = k.cp.kubectl(&["get", "petrelnode", node, "-o", "json"])?;
    let v: Value = serde_json::from_str(&out).context("parsing the PetrelNode")?;
    let c = v["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "ConfigValid"))
        .with_context(|| format!("no ConfigValid condition in {out}"))?;
    Ok((
        c["status"].as_str().unwrap_or_default().to_string(),
        c["message"].as_str().unwrap_or_default().to_string(),
    ))
}

/// Issue 12: an object that becomes invalid because another one went away
/// keeps its last resolved form. Deleting the BGPFilter a BGPPeer names used
/// to remove the peer (session down, routes withdrawn).
#[test]
fn a_deleted_bgpfilter_keeps_the_session_and_is_reported() {
    let k = k8s_lab();
    k.run(|k| {
        let filter = "apiVersion: petrel.dev/v1\nkind: BGPFilter\nmetadata: {name: tor-export}\nspec:\n  \
                      exportV4: [{action: Reject, cidr: 203.0.113.0/24, matchOperator: In}]\n";
        k.cp.apply(filter)?;
        k.cp.apply(&tor_peer("tor-node1", "  node: node1\n  filters: [tor-export]\n"))?;
        k.wait_tor_established(&["10.0.1.1"], SETTLE)?;
        wait_for(SETTLE, "ConfigValid=True on node1", || {
            let (status, message) = config_valid(k, "node1")?;
            ensure!(status == "True", "{status}: {message}");
            Ok(())
        })?;
        let before = tor_connections(k, "10.0.1.1")?;
        k.cp.kubectl(&["delete", "bgpfilter", "tor-export"])?;
        let message = wait_for(SETTLE, "ConfigValid=False naming the peer", || {
            let (status, message) = config_valid(k, "node1")?;
            ensure!(status == "False", "{status}: {message}");
            Ok(message)
        })?;
        ensure!(
            message.contains("BGPPeer/tor-node1") && message.contains("tor-export"),
            "the condition does not name the peer and the filter: {message}"
        );
        k.wait_tor_established(&["10.0.1.1"], Duration::ZERO)?;
        let after = tor_connections(k, "10.0.1.1")?;
        ensure!(
            after == before,
            "deleting the BGPFilter reset the session ({before} -> {after} connections)"
        );
        // The filter comes back: valid again, still the same session.
        k.cp.apply(filter)?;
        wait_for(SETTLE, "ConfigValid=True again", || {
            let (status, message) = config_valid(k, "node1")?;
            ensure!(status == "True", "{status}: {message}");
            Ok(())
        })?;
        ensure!(tor_connections(k, "10.0.1.1")? == before, "the session was reset");
        Ok(())
    });
}

#[test]
fn node_labels_choose_the_peers() {
    let k = k8s_lab();
    k.run(|k| {
        k.cp.apply(&tor_peer("tor-rack-a", "  nodeSelector: rack == 'a'\n"))?;
        std::thread::sleep(Duration::from_secs(2));
        ensure!(
            k.tor_established()?.is_empty(),
            "a session without any node labelled rack=a"
        );
        let start = Instant::now();
        k.cp.kubectl(&["label", "node", "node2", "rack=a"])?;
        k.wait_tor_established(&["10.0.2.1"], PEER_UP_WITHIN)?;
        eprintln!(
            "node2 labelled -> its session Established in {:.2?}",
            start.elapsed()
        );
        // Only node2: give the others the time they would have needed.
        std::thread::sleep(Duration::from_secs(2));
        k.wait_tor_established(&["10.0.2.1"], Duration::ZERO)?;
        // The label moves to node3: node2's session goes, node3's comes.
        let start = Instant::now();
        k.cp.kubectl(&["label", "node", "node2", "rack-"])?;
        k.cp.kubectl(&["label", "node", "node3", "rack=a"])?;
        k.wait_tor_established(&["10.0.3.1"], PEER_UP_WITHIN)?;
        eprintln!(
            "label moved to node3 -> sessions followed in {:.2?}",
            start.elapsed()
        );
        // A label that no longer matches (value change) removes the session.
        k.cp.kubectl(&["label", "node", "node3", "rack=b", "--overwrite"])?;
        k.wait_tor_established(&[], PEER_UP_WITHIN)?;
        Ok(())
    });
}

#[test]
fn ippool_blocks_are_routed_everywhere() {
    let k = k8s_lab();
    k.run(|k| {
        k.cp.apply(&tor_peer("tor", ""))?;
        k.wait_tor_established(&["10.0.1.1", "10.0.2.1", "10.0.3.1"], SETTLE)?;
        let start = Instant::now();
        k.cp.apply(&ip_pool("pods", "10.244.0.0/16"))?;
        let blocks = k.wait_blocks_routed("10.244.")?;
        eprintln!(
            "IPPool applied -> blocks claimed and routed in {:.2?}: {blocks:?}",
            start.elapsed()
        );
        ensure!(blocks.len() == 3, "expected three blocks: {blocks:?}");
        let table = k.cp.kubectl(&["get", "ipamblocks"])?;
        for (node, _) in NODES {
            ensure!(
                table.contains(node),
                "`kubectl get ipamblocks` does not show {node}:\n{table}"
            );
        }
        // Each agent reports its block and its ToR session in its own
        // PetrelNode status (written with its node-bound token).
        wait_for(SETTLE, "every PetrelNode status to show its block and peer", || {
            let out = k.cp.kubectl(&["get", "petrelnodes", "-o", "json"])?;
            let v: Value = serde_json::from_str(&out).context("parsing petrelnodes")?;
            let items = v["items"].as_array().context("no items")?;
            for (cidr, owner) in &blocks {
                let node = items
                    .iter()
                    .find(|i| i["metadata"]["name"].as_str() == Some(owner.as_str()))
                    .with_context(|| format!("no PetrelNode {owner}"))?;
                let status = &node["status"];
                let has_block = status["blocks"]
                    .as_array()
                    .is_some_and(|b| b.iter().any(|b| b["cidr"].as_str() == Some(cidr.as_str())));
                let tor_up = status["peers"].as_array().is_some_and(|p| {
                    p.iter().any(|p| {
                        p["address"].as_str() == Some(TOR)
                            && p["state"].as_str() == Some("Established")
                    })
                });
                ensure!(
                    has_block && tor_up,
                    "PetrelNode {owner} status lacks block {cidr} or an Established ToR peer: {status}"
                );
            }
            Ok(())
        })?;
        // Nothing of the pool but the blocks reaches the ToR.
        let tor = k.lab.kernel_routes("tor", false)?;
        let pool_routes: Vec<String> = tor
            .iter()
            .map(|r| r.dst.clone())
            .filter(|d| d.starts_with("10.244."))
            .collect();
        ensure!(
            pool_routes.len() == 3,
            "ToR routes of the pool other than the three blocks: {pool_routes:?}"
        );
        Ok(())
    });
}

#[test]
fn apiserver_outage_changes_no_route_and_no_session() {
    let k = k8s_lab();
    k.run(|k| {
        k.cp.apply(&tor_peer("tor", ""))?;
        k.cp.apply(&ip_pool("pods", "10.244.0.0/16"))?;
        k.wait_tor_established(&["10.0.1.1", "10.0.2.1", "10.0.3.1"], SETTLE)?;
        k.wait_blocks_routed("10.244.")?;
        // Let the iBGP mesh and the kernel settle, then take the reference.
        wait_for(SETTLE, "a stable state for 3 s", || {
            let a = k.steady_state()?;
            std::thread::sleep(Duration::from_secs(3));
            same_state(&a, &k.steady_state()?, "3 s later")?;
            Ok(())
        })?;
        let before = k.steady_state()?;
        k.cp.kill_apiserver()?;
        let down = Instant::now();
        ensure!(
            k.cp.kubectl_output(&["get", "nodes"])?.status.code() != Some(0),
            "kubectl still works after the API server was killed"
        );
        while down.elapsed() < OUTAGE {
            std::thread::sleep(Duration::from_secs(10));
            same_state(
                &before,
                &k.steady_state()?,
                &format!("{:.0?} into the outage", down.elapsed()),
            )?;
        }
        for (node, _) in NODES {
            ensure!(
                k.lab.is_running(node)?,
                "{node}'s agent died during the outage"
            );
        }
        k.cp.start_apiserver()?;
        eprintln!("API server back after {:.1?}", down.elapsed());
        // Reconnecting resyncs without touching anything.
        std::thread::sleep(Duration::from_secs(5));
        same_state(
            &before,
            &k.steady_state()?,
            "after the API server came back",
        )?;
        // A new change applies: another external-IP CIDR in the
        // BGPConfiguration reaches the ToR from every node. (A second IPv4
        // pool would not do: a node claims a block per family, not per pool.)
        let start = Instant::now();
        k.cp.apply(&BGP_CONFIGURATION.replace(
            "serviceExternalIPs: [{cidr: 192.0.2.0/24}]",
            "serviceExternalIPs: [{cidr: 192.0.2.0/24}, {cidr: 203.0.113.0/24}]",
        ))?;
        k.wait_tor_hops(
            "203.0.113.0/24",
            &["10.0.1.1", "10.0.2.1", "10.0.3.1"],
            SETTLE,
        )?;
        eprintln!(
            "BGPConfiguration after the outage -> ToR route in {:.2?}",
            start.elapsed()
        );
        Ok(())
    });
}

#[test]
fn local_service_follows_its_endpoint_slice() {
    let k = k8s_lab();
    k.run(|k| {
        k.cp.apply(&tor_peer("tor", ""))?;
        k.wait_tor_established(&["10.0.1.1", "10.0.2.1", "10.0.3.1"], SETTLE)?;
        // The cluster-IP range: one route, three next hops.
        k.wait_tor_hops("10.0.0.0/24", &["10.0.1.1", "10.0.2.1", "10.0.3.1"], SETTLE)?;
        k.cp.kubectl(&["create", "namespace", "shop"])?;
        k.cp.apply(&service("web", "10.0.0.10", "192.0.2.10"))?;
        set_load_balancer_ip(k, "web", "198.51.100.10")?;
        let addrs = ["10.0.0.10/32", "192.0.2.10/32", "198.51.100.10/32"];
        // No endpoint yet: no /32.
        std::thread::sleep(Duration::from_secs(2));
        for a in addrs {
            ensure!(
                k.tor_hops(a)?.is_empty(),
                "{a} advertised without an endpoint"
            );
        }
        let start = Instant::now();
        k.cp.apply(&endpoint_slice("web", "node2"))?;
        for a in addrs {
            k.wait_tor_hops(a, &["10.0.2.1"], SETTLE)?;
        }
        eprintln!(
            "EndpointSlice on node2 -> /32s at the ToR in {:.2?}",
            start.elapsed()
        );
        // The endpoint moves to node3: within 1 s of kubectl's return.
        k.cp.apply(&endpoint_slice("web", "node3"))?;
        let start = Instant::now();
        for a in addrs {
            k.wait_tor_hops(
                a,
                &["10.0.3.1"],
                MOVE_WITHIN.saturating_sub(start.elapsed()),
            )?;
        }
        eprintln!(
            "endpoint moved to node3 -> routes moved in {:.2?}",
            start.elapsed()
        );
        // The cluster-IP aggregate kept its three next hops throughout.
        let hops = k.tor_hops("10.0.0.0/24")?;
        ensure!(hops.len() == 3, "cluster-IP CIDR via {hops:?}");
        // Deleting the Service withdraws its addresses.
        k.cp.kubectl(&["delete", "service", "web", "-n", "shop"])?;
        for a in addrs {
            k.wait_tor_hops(a, &[], SETTLE)?;
        }
        // An external IP outside serviceExternalIPs is never advertised;
        // the same Service's cluster and load-balancer IPs are.
        k.cp.apply(&service("out", "10.0.0.20", "203.0.113.5"))?;
        set_load_balancer_ip(k, "out", "198.51.100.20")?;
        k.cp.apply(&endpoint_slice("out", "node1"))?;
        k.wait_tor_hops("10.0.0.20/32", &["10.0.1.1"], SETTLE)?;
        k.wait_tor_hops("198.51.100.20/32", &["10.0.1.1"], SETTLE)?;
        std::thread::sleep(Duration::from_secs(2));
        ensure!(
            k.tor_hops("203.0.113.5/32")?.is_empty(),
            "203.0.113.5 (outside serviceExternalIPs) reached the ToR"
        );
        Ok(())
    });
}

#[test]
fn concurrent_block_claims_never_share_a_block() {
    let k = k8s_lab();
    k.run(|k| {
        k.cp.apply(&tor_peer("tor", ""))?;
        k.wait_tor_established(&["10.0.1.1", "10.0.2.1", "10.0.3.1"], SETTLE)?;
        // Two /27 blocks for three nodes that all claim at once (the pool
        // reaches every agent's watch at the same moment).
        k.cp.apply(&ip_pool("tight", "10.244.0.0/26").replace("blockSize: 26", "blockSize: 27"))?;
        let blocks = wait_for(SETTLE, "both blocks claimed", || {
            let blocks = k.ipam_blocks()?;
            ensure!(blocks.len() == 2, "blocks: {blocks:?}");
            Ok(blocks)
        })?;
        let mut owners: Vec<&String> = blocks.values().collect();
        owners.sort();
        owners.dedup();
        ensure!(owners.len() == 2, "one node owns both blocks: {blocks:?}");
        // Every confirmed affinity names the block's owner, and no block has
        // two confirmed affinities.
        let out = k.cp.kubectl(&["get", "blockaffinities", "-o", "json"])?;
        let v: Value = serde_json::from_str(&out).context("parsing blockaffinities")?;
        let mut confirmed: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for item in v["items"].as_array().context("no items")? {
            if item["spec"]["state"].as_str() == Some("confirmed") {
                let cidr = item["spec"]["cidr"].as_str().unwrap_or_default();
                let node = item["spec"]["node"].as_str().unwrap_or_default();
                confirmed
                    .entry(cidr.to_string())
                    .or_default()
                    .push(node.to_string());
            }
        }
        for (cidr, owner) in &blocks {
            ensure!(
                confirmed.get(cidr) == Some(&vec![owner.clone()]),
                "block {cidr} owned by {owner}, confirmed affinities {confirmed:?}"
            );
        }
        ensure!(
            confirmed.len() == 2,
            "confirmed affinities beyond the blocks: {confirmed:?}"
        );
        // The ToR routes each block via its owner only; nothing else of
        // the pool.
        for (cidr, owner) in &blocks {
            let addr = NODES.iter().find(|n| n.0 == owner).map(|n| n.1);
            let addr = addr.with_context(|| format!("unknown owner {owner}"))?;
            k.wait_tor_hops(cidr, &[addr], SETTLE)?;
        }
        std::thread::sleep(Duration::from_secs(2));
        let stray: Vec<String> = k
            .lab
            .kernel_routes("tor", false)?
            .into_iter()
            .map(|r| r.dst)
            .filter(|d| d.starts_with("10.244.") && !blocks.contains_key(d))
            .collect();
        ensure!(stray.is_empty(), "ToR routes outside the blocks: {stray:?}");
        eprintln!("two blocks for three concurrent claimers: {blocks:?}");
        Ok(())
    });
}

/// Restarts node2's agent while kube-apiserver is down; with
/// `check_other_blocks`, also requires node2's kernel routes to the other
/// nodes' blocks during the outage.
fn restart_during_outage(k: &K8sLab, check_other_blocks: bool) -> anyhow::Result<()> {
    k.cp.apply(&tor_peer("tor", ""))?;
    k.cp.apply(&ip_pool("pods", "10.244.0.0/16"))?;
    k.wait_tor_established(&["10.0.1.1", "10.0.2.1", "10.0.3.1"], SETTLE)?;
    let blocks = k.wait_blocks_routed("10.244.")?;
    let (block, _) = blocks
        .iter()
        .find(|(_, owner)| *owner == "node2")
        .context("node2 owns no block")?;
    let cache = k.lab.kube_cache_file("node2")?;
    ensure!(cache.exists(), "no cache file {}", cache.display());
    let connections = tor_connections(k, "10.0.2.1")?;
    k.cp.kill_apiserver()?;
    // node2's agent restarts during the outage: it starts from its cache,
    // peers with the ToR again and advertises its block again.
    let start = Instant::now();
    k.lab.restart_node("node2")?;
    k.wait_tor_established(&["10.0.1.1", "10.0.2.1", "10.0.3.1"], SETTLE)
        .context("node2's ToR session after a restart without the API server")?;
    k.wait_tor_hops(block, &["10.0.2.1"], SETTLE)
        .context("node2's block after a restart without the API server")?;
    eprintln!(
        "agent restarted during the outage -> session and block back in {:.2?}",
        start.elapsed()
    );
    // The restart was real: the ToR saw node2's session go and come back.
    let now = tor_connections(k, "10.0.2.1")?;
    ensure!(
        now > connections,
        "the ToR's session with node2 was never reset"
    );
    if check_other_blocks {
        wait_for(SETTLE, "node2's kernel routes to the other blocks", || {
            for (cidr, owner) in blocks.iter().filter(|(_, o)| *o != "node2") {
                let routes = k.lab.kernel_routes_for("node2", cidr)?;
                ensure!(
                    routes.iter().any(|r| !r.gateways().is_empty()),
                    "node2 has no route to {cidr} ({owner}'s block): {routes:?}"
                );
            }
            Ok(())
        })
        .context("after a restart without the API server")?;
    }
    k.cp.start_apiserver()?;
    // Back in sync: the same blocks, each routed via its owner and from
    // every other node.
    let after = k.wait_blocks_routed("10.244.")?;
    ensure!(after == blocks, "blocks changed: {blocks:?} -> {after:?}");
    Ok(())
}

#[test]
fn agent_restarts_from_its_cache_while_the_apiserver_is_down() {
    let k = k8s_lab();
    k.run(|k| restart_during_outage(k, false));
}

/// Issue 6: a node restarted during an outage keeps routing to the other
/// nodes' pods.
#[test]
fn restarted_agent_routes_to_other_blocks_while_the_apiserver_is_down() {
    let k = k8s_lab();
    k.run(|k| restart_during_outage(k, true));
}
