//! The one-machine Kubernetes cluster (`testbed/k8s/cluster.sh`, issue 15):
//! real kubelets with containerd in node namespaces, and petrel installed on
//! them from its manifests.
//!
//! | test | what |
//! |---|---|
//! | `cluster_runs_pods_and_leaves_the_host_alone` | 2 nodes register with their annotations and wait for a CNI configuration; a hostNetwork pod of `petrel-test:dev` runs on node2 (sees node2's name and address), `kubectl logs` and `exec` reach it; the `kubernetes` Service answers from a node through kube-proxy; each node sees the kernel tunables the kubelet wants while the host keeps its own; `down` leaves no namespace, cgroup, fixed kubelet path or changed `kernel.`/`vm.` sysctl behind |
//! | `petrel_from_its_manifests_makes_the_nodes_ready` | (ignored until the `petrel:dev` image is built here) README's install: every DaemonSet pod Ready, `petrel-ipam` installed by the init container, the agent's conflist, nodes Ready through it; 6 pods of a Deployment get addresses from their node's block and reach each other (ping and HTTP); the ToR holds one route per block; then (`k8s_cluster/workloads.rs`, the pool has /29 blocks): `kubectl delete pod` frees the pod's allocation in its `IPAMBlock` (CNI DEL through the kubelet); 7 more pods pinned to node3 fill its block, node3 claims a second one, the ToR routes it to node3, and deleting them frees their addresses; a LoadBalancer Service with `externalTrafficPolicy: Local` and `status.loadBalancer.ingress[].ip` set: the ToR routes the `serviceLoadBalancerIPs` /24 to every node and the /32 only to nodes with a ready pod (all three, one after scaling to 1, all three again); `kubectl drain node2`: its pods run Ready elsewhere, their allocations are gone, the /32 leaves node2; `kubectl rollout restart daemonset/petrel` while a pod on node1 pings a pod on node3 every 10 ms: no packet lost; `kubectl delete node node2`: node1 and node3 drop routes to node2's blocks at once, node2's blocks stay claimed after its agent pod is deleted, README's cleanup removes them for good |
//!
//! Run as root: `cargo test -p petrel-testbed --test k8s_cluster` (the
//! binaries come from `.ci/setup-k8s`). The second test also needs the
//! image: `cargo test -p petrel-testbed --test k8s_cluster -- --ignored`,
//! with `PETREL_IMAGE=/path/petrel.tar` (a `docker save` or OCI archive of
//! `petrel:dev`) or `petrel:dev` in the local Docker engine.

#[path = "k8s_cluster/workloads.rs"]
mod workloads;

use anyhow::{Context, bail, ensure};
use petrel_testbed::cluster::{Cluster, node_ip};
use petrel_testbed::{is_root, wait_for};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The host's `kernel.*` and `vm.*` sysctls (the kubelet's tunables are
/// among them), without the counters that change by themselves.
fn host_sysctls() -> anyhow::Result<BTreeMap<String, String>> {
    let out = std::process::Command::new("sysctl")
        .arg("-a")
        .output()
        .context("sysctl -a")?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(" = "))
        .filter(|(k, _)| k.starts_with("kernel.") || k.starts_with("vm."))
        .filter(|(k, _)| {
            !k.starts_with("kernel.random.")
                && !matches!(*k, "kernel.ns_last_pid" | "kernel.pty.nr")
        })
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect())
}

/// Paths a kubelet or containerd would create on a host; none may appear.
const FIXED_PATHS: [&str; 8] = [
    "/var/lib/kubelet",
    "/var/log/pods",
    "/var/log/containers",
    "/var/lib/cni",
    "/etc/cni/net.d",
    "/opt/cni/bin/petrel-ipam",
    "/run/containerd/containerd.sock",
    "/usr/libexec/kubernetes",
];

fn json(text: &str) -> anyhow::Result<Value> {
    serde_json::from_str(text).context("parsing kubectl's JSON")
}

fn require_root() {
    assert!(
        is_root(),
        "the cluster tests create namespaces, mounts and cgroups and must run as root"
    );
}

/// The `Ready` condition of a node: (status, message).
fn node_ready(c: &Cluster, node: &str) -> anyhow::Result<(String, String)> {
    let n = json(&c.kubectl(&["get", "node", node, "-o", "json"])?)?;
    let cond = n["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
        .context("no Ready condition")?;
    Ok((
        cond["status"].as_str().unwrap_or_default().to_owned(),
        cond["message"].as_str().unwrap_or_default().to_owned(),
    ))
}

#[test]
fn cluster_runs_pods_and_leaves_the_host_alone() {
    require_root();
    let before = host_sysctls().unwrap();
    let absent: Vec<&str> = FIXED_PATHS
        .iter()
        .copied()
        .filter(|p| !Path::new(p).exists())
        .collect();
    let c = Cluster::up(2, &[]).expect("cluster.sh up");
    let id = std::fs::read_to_string(c.dir().join("cluster"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("CLUSTER_ID=").map(str::to_owned))
        .expect("CLUSTER_ID in the cluster file");
    let check = || -> anyhow::Result<()> {
        for (i, node) in c.nodes().iter().enumerate() {
            let n = json(&c.kubectl(&["get", "node", node, "-o", "json"])?)?;
            let ann = &n["metadata"]["annotations"];
            ensure!(
                ann["petrel.dev/ipv4-address"] == format!("{}/24", node_ip(i + 1)).as_str()
                    && ann["petrel.dev/as-number"] == "64512",
                "{node}'s annotations: {ann}"
            );
            let (status, message) = node_ready(&c, node)?;
            ensure!(
                status == "False" && message.contains("cni plugin not initialized"),
                "{node} without a CNI configuration: Ready={status} ({message})"
            );
        }

        c.apply(
            "apiVersion: v1\nkind: Pod\nmetadata: {name: hostnet, namespace: default}\nspec:\n  \
             hostNetwork: true\n  nodeName: node2\n  terminationGracePeriodSeconds: 1\n  \
             tolerations: [{operator: Exists}]\n  containers:\n  - name: t\n    \
             image: petrel-test:dev\n    \
             command: [sh, -c, 'echo marker-from-hostnet; exec sleep 3600']\n",
        )?;
        c.kubectl(&[
            "wait",
            "--for=condition=Ready",
            "pod/hostnet",
            "--timeout=90s",
        ])
        .with_context(|| c.node_log_tail("node2", "kubelet", 20))?;
        let logs = wait_for(Duration::from_secs(10), "the pod's log", || {
            let l = c.kubectl(&["logs", "hostnet"])?;
            ensure!(l.contains("marker-from-hostnet"), "log: {l:?}");
            Ok(l)
        })?;
        eprintln!("kubectl logs: {}", logs.trim());
        let hostname = c.kubectl(&["exec", "hostnet", "--", "hostname"])?;
        ensure!(
            hostname.trim() == "node2",
            "hostname in the pod: {hostname:?}"
        );
        let addr = c.kubectl(&["exec", "hostnet", "--", "ip", "-4", "addr", "show", "eth0"])?;
        ensure!(
            addr.contains(&node_ip(2)),
            "node2's eth0 in the pod: {addr}"
        );

        // kube-proxy: the `kubernetes` Service from a node.
        let livez = wait_for(Duration::from_secs(30), "10.96.0.1 from node1", || {
            c.exec(
                "node1",
                &["curl", "-sk", "--max-time", "3", "https://10.96.0.1/livez"],
            )
        })?;
        ensure!(
            livez.trim() == "ok",
            "https://10.96.0.1/livez from node1: {livez:?}"
        );

        // The kubelet's tunables: its values inside, the host's outside.
        let panic = c.exec("node1", &["cat", "/proc/sys/kernel/panic"])?;
        ensure!(
            panic.trim() == "10",
            "kernel.panic seen by node1: {panic:?}"
        );
        let now = host_sysctls()?;
        for key in [
            "kernel.panic",
            "kernel.panic_on_oops",
            "vm.overcommit_memory",
        ] {
            ensure!(
                now.get(key) == before.get(key),
                "host {key} changed while the cluster runs: {:?} -> {:?}",
                before.get(key),
                now.get(key)
            );
        }
        Ok(())
    };
    let result = check();
    let dir = c.dir().to_path_buf();
    c.down().expect("cluster.sh down");
    result.unwrap();

    let netns: Vec<String> = std::fs::read_dir("/run/netns")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&format!("{id}-")))
        .collect();
    assert!(netns.is_empty(), "namespaces left: {netns:?}");
    let cgroups: Vec<PathBuf> = std::fs::read_dir("/sys/fs/cgroup")
        .unwrap()
        .flatten()
        .flat_map(|h| std::fs::read_dir(h.path()).into_iter().flatten().flatten())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&format!("{id}-")))
        })
        .collect();
    assert!(cgroups.is_empty(), "cgroups left: {cgroups:?}");
    assert!(!dir.exists(), "{} left", dir.display());
    let created: Vec<&&str> = absent.iter().filter(|p| Path::new(p).exists()).collect();
    assert!(created.is_empty(), "created on the host: {created:?}");
    let after = host_sysctls().unwrap();
    let changed: Vec<String> = before
        .iter()
        .filter(|(k, v)| after.get(*k) != Some(*v))
        .map(|(k, v)| format!("{k}: {v} -> {:?}", after.get(k)))
        .collect();
    assert!(changed.is_empty(), "host sysctls changed: {changed:?}");
}

/// `(name, tarball)` of petrel's image from `PETREL_IMAGE`, if set.
fn petrel_image() -> Option<(&'static str, PathBuf)> {
    std::env::var_os("PETREL_IMAGE").map(|p| ("petrel:dev", PathBuf::from(p)))
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("testbed/ has a parent")
        .to_path_buf()
}

const POOL_AND_PEER: &str = "apiVersion: petrel.dev/v1\nkind: IPPool\nmetadata: {name: pods-v4}\n\
spec:\n  cidr: 10.244.0.0/16\n  blockSize: 29\n  nodeSelector: all()\n---\n\
apiVersion: petrel.dev/v1\nkind: BGPPeer\nmetadata: {name: tor}\nspec:\n  nodeSelector: all()\n  \
peerIP: 10.10.0.1\n  asNumber: 65000\n";

const DEPLOYMENT: &str = "apiVersion: apps/v1\nkind: Deployment\n\
metadata: {name: web, namespace: default}\nspec:\n  replicas: 6\n  \
selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      \
terminationGracePeriodSeconds: 1\n      topologySpreadConstraints:\n      - maxSkew: 1\n        \
topologyKey: kubernetes.io/hostname\n        whenUnsatisfiable: DoNotSchedule\n        \
nodeTaintsPolicy: Honor\n        labelSelector: {matchLabels: {app: web}}\n      containers:\n      - name: web\n        \
image: petrel-test:dev\n        ports: [{containerPort: 8080}]\n";

/// Installs petrel as README says: the four manifests, an IPPool and the
/// BGPPeer to the ToR, then the DaemonSet with only the image changed.
fn install_petrel(c: &Cluster) -> anyhow::Result<()> {
    let m = repo().join("manifests");
    let files = [
        "00-namespace.yaml",
        "crds.yaml",
        "rbac.yaml",
        "admission.yaml",
    ];
    let mut args = vec!["apply".to_owned()];
    for f in files {
        args.push("-f".into());
        args.push(m.join(f).to_string_lossy().into_owned());
    }
    c.kubectl(&args.iter().map(String::as_str).collect::<Vec<_>>())?;
    c.kubectl(&[
        "wait",
        "--for=condition=Established",
        "crd",
        "--all",
        "--timeout=30s",
    ])?;
    c.apply(POOL_AND_PEER)?;
    let ds = std::fs::read_to_string(m.join("daemonset.yaml"))?;
    ensure!(
        ds.matches("image: petrel:0.1.0").count() == 2,
        "manifests/daemonset.yaml no longer names petrel:0.1.0 twice"
    );
    c.apply(&ds.replace("image: petrel:0.1.0", "image: petrel:dev"))?;
    Ok(())
}

#[test]
#[ignore = "needs the petrel:dev image (PETREL_IMAGE=tarball, or in Docker)"]
fn petrel_from_its_manifests_makes_the_nodes_ready() {
    require_root();
    let image = petrel_image();
    let images: Vec<(&str, &Path)> = image.iter().map(|(n, p)| (*n, p.as_path())).collect();
    let c = Cluster::up(3, &images).expect("cluster.sh up");
    let check = || -> anyhow::Result<()> {
        let imported = c.exec(
            "node1",
            &[
                "ctr",
                "--address",
                "/run/containerd/containerd.sock",
                "-n",
                "k8s.io",
                "images",
                "ls",
                "-q",
            ],
        )?;
        if !imported
            .lines()
            .any(|l| l == "docker.io/library/petrel:dev")
        {
            bail!("no petrel:dev on the nodes: set PETREL_IMAGE or build it into Docker");
        }
        install_petrel(&c)?;
        c.kubectl(&[
            "-n",
            "petrel-system",
            "rollout",
            "status",
            "daemonset/petrel",
            "--timeout=180s",
        ])
        .with_context(|| {
            c.kubectl(&["-n", "petrel-system", "get", "pods", "-o", "wide"])
                .unwrap_or_default()
        })?;
        for node in c.nodes() {
            wait_for(Duration::from_secs(60), &format!("{node} Ready"), || {
                let (status, message) = node_ready(&c, &node)?;
                ensure!(status == "True", "Ready={status} ({message})");
                Ok(())
            })?;
            let files = c.exec(
                &node,
                &[
                    "sh",
                    "-c",
                    "ls /opt/cni/bin/petrel-ipam && cat /etc/cni/net.d/10-petrel.conflist",
                ],
            )?;
            ensure!(
                files.contains("\"petrel-ipam\"") && files.contains("\"ptp\""),
                "{node}'s CNI configuration: {files}"
            );
        }

        // Blocks: node -> CIDR.
        let affinities = json(&c.kubectl(&["get", "blockaffinities", "-o", "json"])?)?;
        let mut blocks: BTreeMap<String, Vec<ipnet::Ipv4Net>> = BTreeMap::new();
        for a in affinities["items"].as_array().context("items")? {
            blocks
                .entry(a["spec"]["node"].as_str().unwrap_or_default().to_owned())
                .or_default()
                .push(a["spec"]["cidr"].as_str().unwrap_or_default().parse()?);
        }

        c.apply(DEPLOYMENT)?;
        c.kubectl(&["rollout", "status", "deployment/web", "--timeout=120s"])?;
        let pods = json(&c.kubectl(&["get", "pods", "-l", "app=web", "-o", "json"])?)?;
        let mut ips = Vec::new();
        let mut used_nodes = BTreeSet::new();
        for p in pods["items"].as_array().context("items")? {
            let name = p["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let node = p["spec"]["nodeName"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let ip: std::net::Ipv4Addr =
                p["status"]["podIP"].as_str().unwrap_or_default().parse()?;
            ensure!(
                blocks
                    .get(&node)
                    .is_some_and(|bs| bs.iter().any(|b| b.contains(&ip))),
                "{name} on {node} has {ip}, outside {node}'s blocks {:?}",
                blocks.get(&node)
            );
            used_nodes.insert(node);
            ips.push((name, ip));
        }
        ensure!(
            used_nodes.len() == 3,
            "pods on {used_nodes:?}, not on all three nodes"
        );
        for (from, _) in &ips {
            for (to, ip) in &ips {
                let cmd = format!(
                    "ping -c1 -W2 {ip} >/dev/null && timeout 5 wget -qO- http://{ip}:8080/"
                );
                let body = c
                    .kubectl(&["exec", from, "--", "sh", "-c", &cmd])
                    .with_context(|| format!("{from} -> {to} ({ip})"))?;
                ensure!(
                    body.trim() == to,
                    "{from} -> {ip}: answered {body:?}, not {to}"
                );
            }
        }

        let tor = c.vtysh("show ip route bgp json")?;
        let tor = json(&tor)?;
        let pod_routes = tor
            .as_object()
            .context("ToR routes")?
            .keys()
            .filter(|k| k.starts_with("10.244."))
            .count();
        let block_count: usize = blocks.values().map(Vec::len).sum();
        ensure!(
            pod_routes == block_count,
            "the ToR has {pod_routes} pod routes for {block_count} blocks"
        );
        for (node, cidrs) in &blocks {
            for cidr in cidrs {
                let routes = tor[cidr.to_string()]
                    .as_array()
                    .context("no ToR route")
                    .with_context(|| format!("{node}'s block {cidr}"))?;
                let hops: Vec<&str> = routes
                    .iter()
                    .flat_map(|r| r["nexthops"].as_array().into_iter().flatten())
                    .filter_map(|h| h["ip"].as_str())
                    .collect();
                let i: usize = node.trim_start_matches("node").parse()?;
                ensure!(
                    hops == [node_ip(i).as_str()],
                    "ToR route to {cidr}: via {hops:?}, not {node}"
                );
            }
        }

        let step = |name: &str, f: fn(&Cluster) -> anyhow::Result<()>| {
            let start = std::time::Instant::now();
            let r = f(&c).with_context(|| name.to_owned());
            eprintln!("{name}: {:.1?}", start.elapsed());
            r
        };
        step("delete pod", workloads::delete_pod_frees_its_address)?;
        step("full block", workloads::full_block_claims_another)?;
        step(
            "load balancer",
            workloads::load_balancer_follows_local_endpoints,
        )?;
        step("drain", workloads::drain_moves_pods_and_frees_addresses)?;
        step("agent restart", workloads::agent_restart_loses_no_packet)?;
        step(
            "delete node",
            workloads::deleted_node_keeps_its_blocks_until_cleaned_up,
        )?;
        Ok(())
    };
    let result = check();
    c.down().expect("cluster.sh down");
    result.unwrap();
}
