//! Helpers of `tests/k8s_lab.rs`: the `k8s` topology deployed against its
//! own control plane ([`k8s_lab`]), the objects the tests apply with
//! kubectl, and the ToR / IPAM / steady-state views the tests compare.
#![allow(dead_code)]

use crate::common::topology;
use anyhow::{Context, bail, ensure};
use petrel_testbed::k8s::ControlPlane;
use petrel_testbed::lab::KubeAccess;
use petrel_testbed::status::same_addr;
use petrel_testbed::{Lab, is_root, wait_for};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// (node, link address: the one the ToR peers with).
pub const NODES: [(&str, &str); 3] = [
    ("node1", "10.0.1.1"),
    ("node2", "10.0.2.1"),
    ("node3", "10.0.3.1"),
];
/// The ToR's loopback, which every node peers with.
pub const TOR: &str = "10.0.255.254";
/// Issue 6: a BGPPeer applied with kubectl is up within this.
pub const PEER_UP_WITHIN: Duration = Duration::from_secs(2);
/// Issue 7: an endpoint move reaches the ToR within this.
pub const MOVE_WITHIN: Duration = Duration::from_secs(1);
/// Sessions, claims and routes of a fresh lab.
pub const SETTLE: Duration = Duration::from_secs(40);
/// How long the API server stays down.
pub const OUTAGE: Duration = Duration::from_secs(60);
/// Fine polling for latency measurements.
pub const FAST_POLL: Duration = Duration::from_millis(50);

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("testbed/ has a parent")
        .to_path_buf()
}

/// A lab and its control plane; the lab (agents first) is dropped before the
/// control plane.
pub struct K8sLab {
    pub lab: Lab,
    pub cp: ControlPlane,
}

pub fn node_object(name: &str, addr: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: {name}\n  annotations:\n    \
         petrel.dev/ipv4-address: {addr}/30\n"
    )
}

pub const BGP_CONFIGURATION: &str = "apiVersion: petrel.dev/v1\nkind: BGPConfiguration\n\
metadata: {name: default}\nspec:\n  asNumber: 64512\n  nodeToNodeMeshEnabled: true\n  \
serviceClusterIPs: [{cidr: 10.0.0.0/24}]\n  serviceExternalIPs: [{cidr: 192.0.2.0/24}]\n  \
serviceLoadBalancerIPs: [{cidr: 198.51.100.0/24}]\n";

/// A BGPPeer to the ToR's loopback; `extra` adds spec lines (`node:`,
/// `nodeSelector:`), none means every node.
pub fn tor_peer(name: &str, extra: &str) -> String {
    format!(
        "apiVersion: petrel.dev/v1\nkind: BGPPeer\nmetadata: {{name: {name}}}\nspec:\n  \
         peerIP: {TOR}\n  asNumber: 65000\n{extra}"
    )
}

pub fn ip_pool(name: &str, cidr: &str) -> String {
    format!(
        "apiVersion: petrel.dev/v1\nkind: IPPool\nmetadata: {{name: {name}}}\nspec:\n  \
         cidr: {cidr}\n  blockSize: 26\n  nodeSelector: all()\n"
    )
}

/// Starts a control plane, installs CRDs, RBAC, admission policy, Nodes and
/// the BGPConfiguration, then deploys the `k8s` topology with one
/// node-bound ServiceAccount token per agent.
pub fn k8s_lab() -> K8sLab {
    assert!(
        is_root(),
        "the testbed integration tests create network namespaces and must run as root"
    );
    let cp = ControlPlane::start().unwrap_or_else(|e| panic!("starting the control plane: {e:#}"));
    let setup = || -> anyhow::Result<Lab> {
        let crds = repo().join("manifests/crds.yaml");
        // Client-side validation trips over `null` in the enums of optional
        // fields; the API server validates the CRDs itself.
        cp.kubectl(&["apply", "--validate=false", "-f", &crds.to_string_lossy()])?;
        cp.kubectl(&[
            "wait",
            "--for=condition=Established",
            "crd",
            "--all",
            "--timeout=60s",
        ])?;
        for file in ["manifests/rbac.yaml", "manifests/admission.yaml"] {
            let path = repo().join(file);
            cp.kubectl(&["apply", "-f", &path.to_string_lossy()])
                .with_context(|| format!("applying {file}"))?;
        }
        for (node, addr) in NODES {
            cp.apply(&node_object(node, addr))?;
        }
        cp.apply(BGP_CONFIGURATION)?;
        let mut access = KubeAccess::new(cp.server(), cp.kubeconfig());
        for (node, _) in NODES {
            let kc = cp.service_account_kubeconfig("petrel-system", "petrel", Some(node))?;
            access = access.with_node(node, &kc);
        }
        Lab::deploy_kube(&topology("k8s"), access)
    };
    match setup() {
        Ok(lab) => K8sLab { lab, cp },
        Err(e) => panic!(
            "setting up the k8s lab: {e:#}\n--- kube-apiserver log ---\n{}",
            cp.apiserver_log_tail(30)
        ),
    }
}

impl K8sLab {
    /// Runs a scenario; on failure panics with the error, every daemon's log
    /// and the API server's log tail.
    pub fn run(&self, scenario: impl FnOnce(&K8sLab) -> anyhow::Result<()>) {
        let start = Instant::now();
        self.lab.check(|_| {
            scenario(self).map_err(|e| {
                anyhow::anyhow!(
                    "{e:#}\n(after {:.1?})\n--- kube-apiserver log ---\n{}\n--- ToR sessions ---\n{}",
                    start.elapsed(),
                    self.cp.apiserver_log_tail(20),
                    self.lab
                        .vtysh("tor", "show bgp summary")
                        .unwrap_or_else(|e| format!("{e:#}"))
                )
            })
        });
        eprintln!("k8s lab: passed in {:.1?}", start.elapsed());
    }

    /// The ToR's neighbors that are Established, sorted.
    pub fn tor_established(&self) -> anyhow::Result<Vec<String>> {
        let mut up: Vec<String> = self
            .lab
            .sessions("tor")?
            .into_iter()
            .filter(|s| s.is_established())
            .map(|s| s.address)
            .collect();
        up.sort();
        Ok(up)
    }

    /// Polls (every 50 ms) until exactly `want` are Established at the ToR;
    /// returns how long that took.
    pub fn wait_tor_established(
        &self,
        want: &[&str],
        within: Duration,
    ) -> anyhow::Result<Duration> {
        let start = Instant::now();
        loop {
            let up = self.tor_established()?;
            if up.len() == want.len() && want.iter().all(|w| up.iter().any(|u| same_addr(u, w))) {
                return Ok(start.elapsed());
            }
            if start.elapsed() > within {
                bail!("after {within:?} the ToR has {up:?} Established, expected {want:?}");
            }
            std::thread::sleep(FAST_POLL);
        }
    }

    /// The ToR's kernel next hops for exactly `prefix` (sorted), empty when
    /// it has no route.
    pub fn tor_hops(&self, prefix: &str) -> anyhow::Result<Vec<String>> {
        self.lab.kernel_hops("tor", prefix)
    }

    /// Polls (every 50 ms) until the ToR routes `prefix` via exactly `want`.
    pub fn wait_tor_hops(
        &self,
        prefix: &str,
        want: &[&str],
        within: Duration,
    ) -> anyhow::Result<Duration> {
        let start = Instant::now();
        loop {
            let hops = self.tor_hops(prefix)?;
            if petrel_testbed::same_hops(&hops, want) {
                return Ok(start.elapsed());
            }
            if start.elapsed() > within {
                bail!("after {within:?} the ToR routes {prefix} via {hops:?}, expected {want:?}");
            }
            std::thread::sleep(FAST_POLL);
        }
    }

    /// `kubectl get ipamblocks`: block CIDR → owner node.
    pub fn ipam_blocks(&self) -> anyhow::Result<BTreeMap<String, String>> {
        let out = self.cp.kubectl(&["get", "ipamblocks", "-o", "json"])?;
        let v: Value = serde_json::from_str(&out).context("parsing ipamblocks JSON")?;
        let mut blocks = BTreeMap::new();
        for item in v["items"].as_array().context("no items")? {
            let cidr = item["spec"]["cidr"]
                .as_str()
                .context("block without cidr")?;
            let owner = item["spec"]["affinity"]
                .as_str()
                .context("block without affinity")?;
            let owner = owner.strip_prefix("host:").unwrap_or(owner);
            blocks.insert(cidr.to_string(), owner.to_string());
        }
        Ok(blocks)
    }

    /// Waits until every node owns a block of `pool` (a /16 prefix like
    /// `10.244.`), and the ToR routes each block only via its owner.
    pub fn wait_blocks_routed(&self, pool: &str) -> anyhow::Result<BTreeMap<String, String>> {
        wait_for(
            SETTLE,
            &format!("one routed block of {pool}x per node"),
            || {
                let blocks: BTreeMap<String, String> = self
                    .ipam_blocks()?
                    .into_iter()
                    .filter(|(cidr, _)| cidr.starts_with(pool))
                    .collect();
                for (node, _) in NODES {
                    let n = blocks.values().filter(|o| *o == node).count();
                    ensure!(n == 1, "{node} owns {n} blocks of {pool}x: {blocks:?}");
                }
                for (cidr, owner) in &blocks {
                    let (_, addr) = NODES
                        .iter()
                        .find(|n| n.0 == owner)
                        .with_context(|| format!("block {cidr} owned by unknown {owner}"))?;
                    let hops = self.tor_hops(cidr)?;
                    ensure!(
                        hops.len() == 1 && same_addr(&hops[0], addr),
                        "ToR routes {cidr} (owner {owner}) via {hops:?}"
                    );
                    for (node, _) in NODES.iter().filter(|n| n.0 != owner) {
                        let routes = self.lab.kernel_routes_for(node, cidr)?;
                        ensure!(
                            routes.iter().any(|r| !r.gateways().is_empty()),
                            "{node} has no kernel route via a gateway for {cidr}: {routes:?}"
                        );
                    }
                }
                Ok(blocks)
            },
        )
    }

    /// Everything that must not change during an outage: each node's
    /// kernel routes and BGP sessions (petrel's view), and each ToR
    /// session's state and connection counters.
    pub fn steady_state(&self) -> anyhow::Result<BTreeMap<String, String>> {
        let mut state = BTreeMap::new();
        for (node, _) in NODES {
            let routes = self
                .lab
                .exec(node, "ip -4 route show table all; ip -6 route show")?;
            state.insert(format!("{node} routes"), routes);
            for p in self.lab.petrel_peers(node)? {
                state.insert(
                    format!("{node} peer {}", p.name),
                    format!("{} {}", p.address, p.state),
                );
            }
        }
        let json = self.lab.vtysh("tor", "show bgp neighbors json")?;
        let v: Value = serde_json::from_str(&json).context("parsing FRR neighbors")?;
        for (addr, n) in v.as_object().context("neighbors JSON is not an object")? {
            // (FRR's establishment epoch is derived from the uptime and
            // jitters by a second; the counters are exact.)
            let keys = ["bgpState", "connectionsEstablished", "connectionsDropped"];
            let fields: Vec<String> = keys.iter().map(|k| format!("{k}={}", n[*k])).collect();
            state.insert(format!("tor session {addr}"), fields.join(" "));
        }
        Ok(state)
    }
}

/// Compares two [`K8sLab::steady_state`]s, naming what differs.
pub fn same_state(
    before: &BTreeMap<String, String>,
    after: &BTreeMap<String, String>,
    when: &str,
) -> anyhow::Result<()> {
    let mut diffs = Vec::new();
    for key in before
        .keys()
        .chain(after.keys().filter(|k| !before.contains_key(*k)))
    {
        let (b, a) = (before.get(key), after.get(key));
        if b != a {
            diffs.push(format!("{key}:\n  before: {b:?}\n  {when}: {a:?}"));
        }
    }
    ensure!(diffs.is_empty(), "changed {when}:\n{}", diffs.join("\n"));
    Ok(())
}

/// The ToR's `connectionsEstablished` counter for `neighbor`.
pub fn tor_connections(k: &K8sLab, neighbor: &str) -> anyhow::Result<u64> {
    let json = k.lab.vtysh("tor", "show bgp neighbors json")?;
    let v: Value = serde_json::from_str(&json).context("parsing FRR neighbors")?;
    v[neighbor]["connectionsEstablished"]
        .as_u64()
        .with_context(|| format!("no connectionsEstablished for {neighbor} in {json}"))
}

/// An eTP=Local LoadBalancer Service (its load-balancer address is set in
/// its status separately, as a controller would).
pub fn service(name: &str, cluster_ip: &str, external_ip: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: shop}}\nspec:\n  \
         type: LoadBalancer\n  clusterIP: {cluster_ip}\n  externalIPs: [{external_ip}]\n  \
         externalTrafficPolicy: Local\n  internalTrafficPolicy: Local\n  \
         ports: [{{port: 80, protocol: TCP}}]\n"
    )
}

/// Sets the Service's load-balancer ingress through the status
/// subresource, as a load-balancer controller would.
pub fn set_load_balancer_ip(k: &K8sLab, service: &str, ip: &str) -> anyhow::Result<()> {
    let patch = format!(r#"{{"status":{{"loadBalancer":{{"ingress":[{{"ip":"{ip}"}}]}}}}}}"#);
    k.cp.kubectl(&[
        "patch",
        "service",
        service,
        "-n",
        "shop",
        "--subresource=status",
        "--type=merge",
        "-p",
        &patch,
    ])?;
    Ok(())
}

pub fn endpoint_slice(service: &str, node: &str) -> String {
    format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {service}-1\n  \
         namespace: shop\n  labels: {{kubernetes.io/service-name: {service}}}\naddressType: IPv4\n\
         endpoints:\n  - addresses: [10.244.9.9]\n    nodeName: {node}\n    \
         conditions: {{ready: true}}\nports: [{{port: 8080, protocol: TCP}}]\n"
    )
}
