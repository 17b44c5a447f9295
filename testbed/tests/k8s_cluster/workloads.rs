//! Issue 15 part 3, real workloads on the one-machine cluster after petrel is
//! installed: addresses freed by the CNI DEL, a full block followed by a
//! second claim, a LoadBalancer Service with `externalTrafficPolicy: Local`
//! at the ToR, a drain, and a rolling restart of the agents under traffic.

use anyhow::{Context, ensure};
use ipnet::Ipv4Net;
use petrel_testbed::cluster::{Cluster, node_ip};
use petrel_testbed::wait_for;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::time::Duration;

fn json(text: &str) -> anyhow::Result<Value> {
    serde_json::from_str(text).context("parsing kubectl's JSON")
}

/// One pod address handed out by petrel, from the `IPAMBlock` objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    pub node: String,
    pub pod: String,
}

/// Every allocated address with its node and `namespace/pod`.
pub fn allocations(c: &Cluster) -> anyhow::Result<BTreeMap<Ipv4Addr, Allocation>> {
    let blocks = json(&c.kubectl(&["get", "ipamblocks", "-o", "json"])?)?;
    let mut out = BTreeMap::new();
    for b in blocks["items"].as_array().context("items")? {
        let node = b["spec"]["affinity"]
            .as_str()
            .unwrap_or_default()
            .trim_start_matches("host:")
            .to_owned();
        for a in b["spec"]["allocations"]
            .as_object()
            .into_iter()
            .flat_map(|m| m.values())
        {
            let attrs = &a["attributes"];
            out.insert(
                a["address"].as_str().unwrap_or_default().parse()?,
                Allocation {
                    node: node.clone(),
                    pod: format!(
                        "{}/{}",
                        attrs["pod-namespace"].as_str().unwrap_or_default(),
                        attrs["pod-name"].as_str().unwrap_or_default()
                    ),
                },
            );
        }
    }
    Ok(out)
}

/// Confirmed blocks per node, from the `BlockAffinity` objects.
pub fn blocks(c: &Cluster) -> anyhow::Result<BTreeMap<String, Vec<Ipv4Net>>> {
    let affinities = json(&c.kubectl(&["get", "blockaffinities", "-o", "json"])?)?;
    let mut blocks: BTreeMap<String, Vec<Ipv4Net>> = BTreeMap::new();
    for a in affinities["items"].as_array().context("items")? {
        if a["spec"]["state"] != "confirmed" {
            continue;
        }
        blocks
            .entry(a["spec"]["node"].as_str().unwrap_or_default().to_owned())
            .or_default()
            .push(a["spec"]["cidr"].as_str().unwrap_or_default().parse()?);
    }
    Ok(blocks)
}

/// A pod of a label selector: name, node, address, ready.
#[derive(Debug, Clone)]
pub struct Pod {
    pub name: String,
    pub node: String,
    pub ip: Option<Ipv4Addr>,
    pub ready: bool,
}

pub fn pods(c: &Cluster, selector: &str) -> anyhow::Result<Vec<Pod>> {
    let pods = json(&c.kubectl(&["get", "pods", "-l", selector, "-o", "json"])?)?;
    let mut out = Vec::new();
    for p in pods["items"].as_array().context("items")? {
        if !p["metadata"]["deletionTimestamp"].is_null() {
            continue;
        }
        out.push(Pod {
            name: p["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            node: p["spec"]["nodeName"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            ip: p["status"]["podIP"].as_str().and_then(|s| s.parse().ok()),
            ready: p["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True"),
        });
    }
    Ok(out)
}

/// The next hops of the ToR's BGP route to `prefix` (empty without one).
pub fn tor_hops(c: &Cluster, prefix: &str) -> anyhow::Result<BTreeSet<String>> {
    let tor = json(&c.vtysh("show ip route bgp json")?)?;
    Ok(tor[prefix]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|r| r["nexthops"].as_array().into_iter().flatten())
        .filter_map(|h| h["ip"].as_str().map(str::to_owned))
        .collect())
}

/// The address of a node named `node<i>`.
pub fn ip_of(node: &str) -> anyhow::Result<String> {
    Ok(node_ip(
        node.trim_start_matches("node")
            .parse()
            .with_context(|| format!("node name {node:?}"))?,
    ))
}

/// The ToR routes every block of the pod prefix `10.244.` to its node only,
/// and nothing else inside it.
pub fn check_tor_blocks(c: &Cluster) -> anyhow::Result<()> {
    let blocks = blocks(c)?;
    let tor = json(&c.vtysh("show ip route bgp json")?)?;
    let pod_routes: BTreeSet<String> = tor
        .as_object()
        .context("ToR routes")?
        .keys()
        .filter(|k| k.starts_with("10.244."))
        .cloned()
        .collect();
    let want: BTreeSet<String> = blocks.values().flatten().map(|b| b.to_string()).collect();
    ensure!(
        pod_routes == want,
        "the ToR's pod routes {pod_routes:?}, the blocks {blocks:?}"
    );
    for (node, cidrs) in &blocks {
        for cidr in cidrs {
            let hops = tor_hops(c, &cidr.to_string())?;
            ensure!(
                hops == BTreeSet::from([ip_of(node)?]),
                "ToR route to {node}'s block {cidr}: via {hops:?}"
            );
        }
    }
    Ok(())
}

/// 1. `kubectl delete pod` runs the CNI DEL through the kubelet: the pod's
///    allocation leaves its block.
pub fn delete_pod_frees_its_address(c: &Cluster) -> anyhow::Result<()> {
    let pod = pods(c, "app=web")?
        .into_iter()
        .next()
        .context("no web pod")?;
    let ip = pod.ip.context("web pod without an address")?;
    let key = format!("default/{}", pod.name);
    let before = allocations(c)?;
    ensure!(
        before.get(&ip)
            == Some(&Allocation {
                node: pod.node.clone(),
                pod: key.clone()
            }),
        "{key}'s address {ip} in the IPAM blocks: {:?}",
        before.get(&ip)
    );
    c.kubectl(&["delete", "pod", &pod.name, "--wait=true", "--timeout=60s"])?;
    // The Deployment's replacement may take the same (lowest free) address:
    // what must be gone is the deleted pod's allocation.
    wait_for(
        Duration::from_secs(30),
        "the deleted pod's allocation to go",
        || {
            let now = allocations(c)?;
            let held: Vec<_> = now.iter().filter(|(_, a)| a.pod == key).collect();
            ensure!(held.is_empty(), "{key} still holds {held:?}");
            Ok(())
        },
    )?;
    c.kubectl(&["rollout", "status", "deployment/web", "--timeout=90s"])?;
    Ok(())
}

const FILL: &str = "apiVersion: apps/v1\nkind: Deployment\n\
metadata: {name: fill, namespace: default}\nspec:\n  replicas: 7\n  \
selector: {matchLabels: {app: fill}}\n  template:\n    metadata: {labels: {app: fill}}\n    spec:\n      \
terminationGracePeriodSeconds: 1\n      nodeSelector: {kubernetes.io/hostname: node3}\n      \
containers:\n      - name: fill\n        image: petrel-test:dev\n";

/// 2. More pods on node3 than its first /29 holds (7 addresses besides the
///    gateway): node3 claims a second block, the ToR routes it to node3, and
///    the pods' addresses come from node3's blocks.
pub fn full_block_claims_another(c: &Cluster) -> anyhow::Result<()> {
    let before = blocks(c)?.get("node3").map(Vec::len).unwrap_or(0);
    ensure!(before == 1, "node3 starts with {before} blocks, not 1");
    c.apply(FILL)?;
    c.kubectl(&["rollout", "status", "deployment/fill", "--timeout=120s"])?;
    let blocks = blocks(c)?;
    let node3 = blocks.get("node3").cloned().unwrap_or_default();
    ensure!(
        node3.len() >= 2,
        "node3 runs {} pods on {node3:?}",
        pods(c, "app")?.iter().filter(|p| p.node == "node3").count()
    );
    for p in pods(c, "app=fill")? {
        let ip = p.ip.context("fill pod without an address")?;
        ensure!(
            p.node == "node3" && node3.iter().any(|b| b.contains(&ip)),
            "{} on {} has {ip}, outside node3's blocks {node3:?}",
            p.name,
            p.node
        );
    }
    wait_for(Duration::from_secs(30), "the ToR's route per block", || {
        check_tor_blocks(c)
    })?;
    c.kubectl(&["delete", "deployment", "fill", "--wait=true"])?;
    wait_for(
        Duration::from_secs(60),
        "the fill pods' addresses freed",
        || {
            let held: Vec<_> = allocations(c)?
                .into_values()
                .filter(|a| a.pod.starts_with("default/fill-"))
                .collect();
            ensure!(held.is_empty(), "still allocated: {held:?}");
            Ok(())
        },
    )?;
    Ok(())
}

const LB_IP: &str = "198.51.100.10";

const LB: &str = "apiVersion: petrel.dev/v1\nkind: BGPConfiguration\nmetadata: {name: default}\n\
spec:\n  serviceLoadBalancerIPs: [{cidr: 198.51.100.0/24}]\n---\n\
apiVersion: v1\nkind: Service\nmetadata: {name: web-lb, namespace: default}\nspec:\n  \
type: LoadBalancer\n  externalTrafficPolicy: Local\n  selector: {app: web}\n  \
ports: [{port: 80, targetPort: 8080}]\n";

/// The nodes (as ToR next hops) running a ready pod of `selector`.
fn ready_nodes(c: &Cluster, selector: &str) -> anyhow::Result<BTreeSet<String>> {
    pods(c, selector)?
        .iter()
        .filter(|p| p.ready)
        .map(|p| ip_of(&p.node))
        .collect()
}

fn wait_lb_hops(c: &Cluster, want: &BTreeSet<String>) -> anyhow::Result<()> {
    wait_for(
        Duration::from_secs(45),
        &format!("the ToR's route to {LB_IP}/32 via {want:?}"),
        || {
            let hops = tor_hops(c, &format!("{LB_IP}/32"))?;
            ensure!(&hops == want, "via {hops:?}");
            Ok(())
        },
    )
}

fn scale_web(c: &Cluster, replicas: u32) -> anyhow::Result<()> {
    c.kubectl(&["scale", "deployment/web", &format!("--replicas={replicas}")])?;
    c.kubectl(&["rollout", "status", "deployment/web", "--timeout=120s"])?;
    wait_for(Duration::from_secs(60), "web at its size", || {
        let n = pods(c, "app=web")?.len();
        ensure!(n == replicas as usize, "{n} web pods");
        Ok(())
    })
}

/// 3. A LoadBalancer Service with `externalTrafficPolicy: Local`: every node
///    advertises the /24, only the nodes with a ready pod the /32; scaling
///    the Deployment moves the /32.
pub fn load_balancer_follows_local_endpoints(c: &Cluster) -> anyhow::Result<()> {
    c.apply(LB)?;
    c.kubectl(&[
        "patch",
        "service",
        "web-lb",
        "--subresource=status",
        "--type=merge",
        "-p",
        &format!(r#"{{"status":{{"loadBalancer":{{"ingress":[{{"ip":"{LB_IP}"}}]}}}}}}"#),
    ])?;
    let all: BTreeSet<String> = (1..=3).map(node_ip).collect();
    wait_for(
        Duration::from_secs(45),
        "the ToR's route to 198.51.100.0/24",
        || {
            let hops = tor_hops(c, "198.51.100.0/24")?;
            ensure!(hops == all, "via {hops:?}");
            Ok(())
        },
    )?;
    let nodes = ready_nodes(c, "app=web")?;
    ensure!(nodes == all, "web pods ready on {nodes:?}");
    wait_lb_hops(c, &nodes)?;
    scale_web(c, 1)?;
    let one = ready_nodes(c, "app=web")?;
    ensure!(one.len() == 1, "one web pod ready on {one:?}");
    wait_lb_hops(c, &one)?;
    scale_web(c, 6)?;
    wait_lb_hops(c, &all)?;
    Ok(())
}

/// 4. `kubectl drain node2`: its web pods run on the other nodes and their
///    addresses are freed; the /32 leaves node2.
pub fn drain_moves_pods_and_frees_addresses(c: &Cluster) -> anyhow::Result<()> {
    let on2: Vec<Pod> = pods(c, "app=web")?
        .into_iter()
        .filter(|p| p.node == "node2")
        .collect();
    ensure!(!on2.is_empty(), "no web pod on node2 to drain");
    c.kubectl(&[
        "drain",
        "node2",
        "--ignore-daemonsets",
        "--grace-period=1",
        "--timeout=120s",
    ])?;
    c.kubectl(&["rollout", "status", "deployment/web", "--timeout=120s"])?;
    wait_for(Duration::from_secs(60), "web pods off node2", || {
        let ps = pods(c, "app=web")?;
        let bad: Vec<_> = ps
            .iter()
            .filter(|p| p.node == "node2" || !p.ready)
            .map(|p| (&p.name, &p.node))
            .collect();
        ensure!(
            ps.len() == 6 && bad.is_empty(),
            "{} pods, on node2 or not ready: {bad:?}",
            ps.len()
        );
        Ok(())
    })?;
    wait_for(
        Duration::from_secs(30),
        "node2's pods' addresses freed",
        || {
            let now = allocations(c)?;
            for p in &on2 {
                let key = format!("default/{}", p.name);
                let held: Vec<_> = now.iter().filter(|(_, a)| a.pod == key).collect();
                ensure!(held.is_empty(), "{key} still holds {held:?}");
            }
            let left: Vec<_> = now.iter().filter(|(_, a)| a.node == "node2").collect();
            ensure!(left.is_empty(), "node2 still allocates {left:?}");
            Ok(())
        },
    )?;
    wait_lb_hops(c, &BTreeSet::from([node_ip(1), node_ip(3)]))?;
    Ok(())
}

/// `transmitted, received` from busybox ping's summary.
fn ping_summary(out: &str) -> Option<(u64, u64)> {
    let line = out.lines().find(|l| l.contains("packets transmitted"))?;
    let mut nums = line
        .split(|ch: char| !ch.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<u64>().ok());
    Some((nums.next()??, nums.next()??))
}

/// 5. `kubectl rollout restart daemonset/petrel` while a pod on node1 pings
///    a pod on node3 every 10 ms: not one packet lost. The nodes' default
///    route goes through the ToR, which keeps each restarting node's blocks
///    by graceful restart, so this also passes with
///    `PETREL_KEEP_ROUTES_ON_EXIT=false` (checked by hand): it shows the
///    restart loses nothing end to end, not that the node kept its routes.
pub fn agent_restart_loses_no_packet(c: &Cluster) -> anyhow::Result<()> {
    let ps = pods(c, "app=web")?;
    let from = ps
        .iter()
        .find(|p| p.node == "node1")
        .context("no web pod on node1")?;
    let to = ps
        .iter()
        .find(|p| p.node == "node3")
        .context("no web pod on node3")?;
    let ip = to.ip.context("web pod on node3 without an address")?;
    // Backgrounded inside the pod so that the exec returns; SIGINT at the
    // end makes ping print its summary.
    c.kubectl(&[
        "exec",
        &from.name,
        "--",
        "sh",
        "-c",
        &format!("setsid ping -q -i 0.01 {ip} >/tmp/ping.log 2>&1 & echo $! >/tmp/ping.pid"),
    ])?;
    let restart = (|| -> anyhow::Result<()> {
        std::thread::sleep(Duration::from_secs(2));
        c.kubectl(&[
            "-n",
            "petrel-system",
            "rollout",
            "restart",
            "daemonset/petrel",
        ])?;
        c.kubectl(&[
            "-n",
            "petrel-system",
            "rollout",
            "status",
            "daemonset/petrel",
            "--timeout=240s",
        ])?;
        // Sessions re-established and routes re-learned after the last agent.
        std::thread::sleep(Duration::from_secs(5));
        Ok(())
    })();
    let out = c.kubectl(&[
        "exec",
        &from.name,
        "--",
        "sh",
        "-c",
        "kill -INT $(cat /tmp/ping.pid); sleep 1; cat /tmp/ping.log",
    ])?;
    restart?;
    let (sent, received) =
        ping_summary(&out).with_context(|| format!("no ping summary in {out:?}"))?;
    eprintln!(
        "ping {} (node1) -> {ip} (node3) every 10 ms during the agents' restart: {sent} sent, {received} received",
        from.name
    );
    ensure!(
        sent > 1000 && received == sent,
        "{} -> {ip} during the restart: {out}",
        from.name
    );
    Ok(())
}

/// The names `kubectl get KIND -o jsonpath=PATH` lists, one a line.
fn names(c: &Cluster, kind: &str, path: &str) -> anyhow::Result<Vec<String>> {
    Ok(
        c.kubectl(&["get", kind, "-o", &format!("jsonpath={path}")])?
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect(),
    )
}

/// README's cleanup of a removed node's blocks, as one kubectl call each.
const NODE2_BLOCKS: &str =
    r#"{range .items[?(@.spec.affinity=="host:node2")]}{.metadata.name}{"\n"}{end}"#;
const NODE2_AFFINITIES: &str =
    r#"{range .items[?(@.spec.node=="node2")]}{.metadata.name}{"\n"}{end}"#;

/// 6. `kubectl delete node node2` (README, "Removing a node"): the other
///    nodes drop node2's blocks from their tables at once; node2's agent pod
///    is deleted (what the pod garbage collector does within about a
///    minute) and stops; node2's blocks stay claimed until README's cleanup
///    removes them, after which they stay gone.
pub fn deleted_node_keeps_its_blocks_until_cleaned_up(c: &Cluster) -> anyhow::Result<()> {
    let cidrs = blocks(c)?.remove("node2").unwrap_or_default();
    ensure!(!cidrs.is_empty(), "node2 has no block");
    let agent = c.kubectl(&[
        "-n",
        "petrel-system",
        "get",
        "pods",
        "--field-selector=spec.nodeName=node2",
        "-o",
        "jsonpath={.items[0].metadata.name}",
    ])?;
    c.kubectl(&["delete", "node", "node2", "--wait=true"])?;
    for node in ["node1", "node3"] {
        wait_for(
            Duration::from_secs(30),
            &format!("{node} without node2's blocks"),
            || {
                let routes = c.exec(node, &["ip", "-4", "route"])?;
                let left: Vec<String> = cidrs
                    .iter()
                    .map(|b| b.to_string())
                    .filter(|b| routes.lines().any(|l| l.starts_with(&format!("{b} "))))
                    .collect();
                ensure!(left.is_empty(), "routes to {left:?} in {routes}");
                Ok(())
            },
        )?;
    }
    c.kubectl(&[
        "-n",
        "petrel-system",
        "delete",
        "pod",
        agent.trim(),
        "--wait=true",
        "--timeout=60s",
    ])?;
    let still = names(c, "ipamblocks", NODE2_BLOCKS)?;
    ensure!(
        still.len() == cidrs.len(),
        "node2's blocks {cidrs:?} after its removal: {still:?}"
    );
    let mut del = vec!["delete", "ipamblock"];
    del.extend(still.iter().map(String::as_str));
    c.kubectl(&del)?;
    let affinities = names(c, "blockaffinities", NODE2_AFFINITIES)?;
    ensure!(!affinities.is_empty(), "node2 has no BlockAffinity");
    let mut del = vec!["delete", "blockaffinity"];
    del.extend(affinities.iter().map(String::as_str));
    c.kubectl(&del)?;
    std::thread::sleep(Duration::from_secs(5));
    let back = (
        names(c, "ipamblocks", NODE2_BLOCKS)?,
        names(c, "blockaffinities", NODE2_AFFINITIES)?,
    );
    ensure!(
        back.0.is_empty() && back.1.is_empty(),
        "node2's blocks and affinities after the cleanup: {back:?}"
    );
    Ok(())
}
