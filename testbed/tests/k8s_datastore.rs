//! The Kubernetes datastore against a real kube-apiserver (with etcd; see
//! `testbed/k8s/controlplane.sh`): objects applied with kubectl reach the
//! published snapshot within 2 s and leave it when deleted; an API server
//! outage keeps the snapshot, a fresh start during the outage uses the local
//! cache, and the watchers resume when the API server is back; RBAC and the
//! ValidatingAdmissionPolicy of `manifests/` give a node's token (403) no
//! write on another node's IPAM or status objects; `KubeIpamStore`'s
//! compare-and-swap semantics, also under concurrent writers; `kubectl
//! cordon` and the drain annotation reach the node's configuration.
//!
//! Run: `cargo test -p petrel-testbed --test k8s_datastore` (builds
//! kube-apiserver and etcd on first use unless `.ci/setup-k8s` did; needs no
//! root).

use anyhow::{Context, bail};
use kube::api::{Api, PostParams};
use petrel_crd::{
    AffinityState, BlockAffinitySpec, BlockState, IpamBlockSpec, NodeStatusReport, PeerReport,
    PetrelNode, PetrelNodeSpec, affinity_for, affinity_name, block_name,
};
use petrel_datastore::Snapshot;
use petrel_datastore::kube::{
    KubeOptions, StatusWriterOptions, cache, ipam::KubeIpamStore, spawn_status_writer_with, watch,
};
use petrel_ipam::store::{IpamStore, StoreError};
use petrel_testbed::k8s::ControlPlane;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::watch as tokio_watch;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("testbed/ has a parent")
        .to_path_buf()
}

/// A name unique to this process and call.
fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// Every CRD the agent uses, from the Rust types, as one `kubectl apply` list.
fn crd_list() -> String {
    let crds = petrel_crd::crds();
    serde_json::json!({"apiVersion": "v1", "kind": "List", "items": crds}).to_string()
}

/// Installs the CRDs, the namespace, RBAC and the admission policy.
fn install(cp: &ControlPlane) -> anyhow::Result<()> {
    cp.kubectl_stdin(&["apply", "-f", "-"], &crd_list())?;
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
    Ok(())
}

/// The control plane shared by the tests that do not stop it.
fn shared() -> &'static ControlPlane {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    let cp = ControlPlane::shared().expect("start the control plane");
    READY
        .get_or_init(|| install(cp).map_err(|e| format!("{e:#}")))
        .as_ref()
        .expect("install CRDs and manifests");
    cp
}

async fn admin_client(cp: &ControlPlane) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(cp.kubeconfig()).expect("read kubeconfig");
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .expect("kubeconfig");
    kube::Client::try_from(cfg).expect("client")
}

/// A client authenticating with a bearer token (no client certificate).
async fn token_client(cp: &ControlPlane, token: &str) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(cp.kubeconfig()).expect("read kubeconfig");
    let mut cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .expect("kubeconfig");
    cfg.auth_info = kube::config::AuthInfo {
        token: Some(token.to_string().into()),
        ..Default::default()
    };
    kube::Client::try_from(cfg).expect("client")
}

/// Runs blocking kubectl calls without stalling the runtime's other tasks.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

type SnapshotRx = tokio_watch::Receiver<Option<Arc<Snapshot>>>;

/// Waits until the published snapshot satisfies `pred`; returns how long it took.
async fn wait_for(
    rx: &mut SnapshotRx,
    within: Duration,
    what: &str,
    pred: impl Fn(&Snapshot) -> bool,
) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if rx.borrow_and_update().as_deref().is_some_and(&pred) {
            return Ok(start.elapsed());
        }
        if tokio::time::timeout_at(deadline, rx.changed())
            .await
            .is_err()
        {
            bail!("no snapshot with {what} within {within:?}");
        }
    }
}

fn has_peer(s: &Snapshot, name: &str) -> bool {
    s.peers
        .iter()
        .any(|p| p.metadata.name.as_deref() == Some(name))
}

fn peer_yaml(name: &str, ip: &str, extra: &str) -> String {
    format!(
        "apiVersion: petrel.dev/v1\nkind: BGPPeer\nmetadata:\n  name: {name}\nspec:\n  peerIP: {ip}\n  asNumber: 64512\n{extra}"
    )
}

fn options(node: &str, cache_file: &Path) -> KubeOptions {
    let mut o = KubeOptions::new(node);
    o.cache_file = Some(cache_file.to_path_buf());
    o
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_changes_reach_the_snapshot_within_two_seconds() {
    let cp = shared();
    let tmp = tempfile::tempdir().unwrap();
    let cache_file = tmp.path().join("cache.json");
    let (mut rx, task) = watch(admin_client(cp).await, options("node-x", &cache_file));
    wait_for(&mut rx, Duration::from_secs(30), "the first list", |_| true)
        .await
        .unwrap();

    let name = unique("tor");
    blocking(|| cp.apply(&peer_yaml(&name, "192.0.2.10", ""))).unwrap();
    let took = wait_for(&mut rx, Duration::from_secs(2), "the new peer", |s| {
        has_peer(s, &name)
    })
    .await
    .unwrap();
    eprintln!("BGPPeer applied → snapshot in {took:?}");
    // The cache is written right after the publish.
    let cached = |name: &str| {
        cache::read(&cache_file)
            .unwrap()
            .is_some_and(|c| c.iter().any(|o| o["metadata"]["name"] == name))
    };
    let deadline = Instant::now() + Duration::from_secs(2);
    while !cached(&name) {
        assert!(
            Instant::now() < deadline,
            "the cache holds the published objects"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // An update the datastore rejects (a filter that does not exist) keeps
    // the last valid version of the peer.
    blocking(|| {
        cp.apply(&peer_yaml(
            &name,
            "192.0.2.11",
            "  filters: [no-such-filter]\n",
        ))
    })
    .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    {
        let snap = rx.borrow().clone().unwrap();
        let p = snap
            .peers
            .iter()
            .find(|p| p.metadata.name.as_deref() == Some(name.as_str()))
            .expect("the peer is kept");
        assert_eq!(
            p.spec.peer_ip.as_ref().map(ToString::to_string).as_deref(),
            Some("192.0.2.10"),
            "last valid version kept"
        );
        assert!(p.spec.filters.is_empty());
    }

    blocking(|| cp.kubectl(&["delete", "bgppeer", &name])).unwrap();
    let took = wait_for(&mut rx, Duration::from_secs(2), "the peer deleted", |s| {
        !has_peer(s, &name)
    })
    .await
    .unwrap();
    eprintln!("BGPPeer deleted → snapshot in {took:?}");
    task.abort();
}

/// Issue 18: `kubectl cordon` / `uncordon` and the
/// `petrel.dev/graceful-shutdown` annotation reach the node's resolved
/// configuration (what makes the agent drain, RFC 8326).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cordon_and_the_drain_annotation_reach_the_configuration() {
    let cp = shared();
    let tmp = tempfile::tempdir().unwrap();
    let node = unique("drain");
    let (mut rx, task) = watch(
        admin_client(cp).await,
        options(&node, &tmp.path().join("c.json")),
    );
    wait_for(&mut rx, Duration::from_secs(30), "the first list", |_| true)
        .await
        .unwrap();
    blocking(|| {
        cp.apply(&format!(
            "apiVersion: v1\nkind: Node\nmetadata:\n  name: {node}\n  annotations:\n    \
             petrel.dev/ipv4-address: 192.0.2.77/24\n"
        ))
    })
    .unwrap();
    let drain = |s: &Snapshot| {
        petrel_datastore::resolve(s, &node)
            .ok()
            .and_then(|c| c.graceful_shutdown)
    };
    wait_for(
        &mut rx,
        Duration::from_secs(5),
        "the node, not draining",
        |s| petrel_datastore::resolve(s, &node).is_ok() && drain(s).is_none(),
    )
    .await
    .unwrap();
    let annotate = "petrel.dev/graceful-shutdown=true";
    for (args, want) in [
        (vec!["cordon", node.as_str()], Some("cordoned")),
        (vec!["uncordon", node.as_str()], None),
        (
            vec!["annotate", "node", node.as_str(), annotate],
            Some("annotation"),
        ),
    ] {
        blocking(|| cp.kubectl(&args)).unwrap();
        let what = format!("after kubectl {args:?}: draining {want:?}");
        wait_for(&mut rx, Duration::from_secs(5), &what, |s| {
            match (drain(s), want) {
                (Some(reason), Some(w)) => reason.contains(w),
                (drained, want) => drained.is_none() && want.is_none(),
            }
        })
        .await
        .unwrap();
    }
    blocking(|| cp.kubectl(&["delete", "node", &node])).unwrap();
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_changes_is_published_as_few_snapshots() {
    let cp = shared();
    let tmp = tempfile::tempdir().unwrap();
    let (mut rx, task) = watch(
        admin_client(cp).await,
        options("node-y", &tmp.path().join("c.json")),
    );
    wait_for(&mut rx, Duration::from_secs(30), "the first list", |_| true)
        .await
        .unwrap();
    let prefix = unique("burst");
    let items: Vec<String> = (0..20)
        .map(|i| {
            peer_yaml(
                &format!("{prefix}-{i}"),
                &format!("192.0.2.{}", 100 + i),
                "",
            )
        })
        .collect();
    let mut publishes = 0;
    let counter = {
        let mut rx = rx.clone();
        rx.mark_unchanged();
        tokio::spawn(async move {
            let mut n = 0u32;
            while tokio::time::timeout(Duration::from_secs(3), rx.changed())
                .await
                .is_ok_and(|r| r.is_ok())
            {
                n += 1;
            }
            n
        })
    };
    blocking(|| cp.apply(&items.join("---\n"))).unwrap();
    let all = |s: &Snapshot| (0..20).all(|i| has_peer(s, &format!("{prefix}-{i}")));
    wait_for(&mut rx, Duration::from_secs(5), "all 20 peers", all)
        .await
        .unwrap();
    publishes += counter.await.unwrap();
    eprintln!("20 peers applied in one kubectl call → {publishes} snapshots");
    assert!(
        (1..=5).contains(&publishes),
        "{publishes} snapshots for one burst"
    );
    let names: Vec<String> = (0..20).map(|i| format!("{prefix}-{i}")).collect();
    let mut args = vec!["delete", "bgppeer"];
    args.extend(names.iter().map(String::as_str));
    blocking(|| cp.kubectl(&args)).unwrap();
    task.abort();
}

/// Kills the control plane's kube-apiserver; returns its command line.
fn kill_apiserver(cp: &ControlPlane) -> Vec<String> {
    let pid: i32 = std::fs::read_to_string(cp.dir().join("kube-apiserver.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let status = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    while Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z"))
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    args
}

/// Starts kube-apiserver again with the same command line and waits until ready.
fn restart_apiserver(cp: &ControlPlane, args: &[String]) {
    // Detached like the script does it (bash exits at once; the API server
    // runs in its own session), and stopped by the script on teardown
    // through the pid file.
    let log = cp.dir().join("logs/kube-apiserver.log");
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(r#"log=$1; shift; setsid "$@" </dev/null >>"$log" 2>&1 & echo $!"#)
        .arg("restart-apiserver")
        .arg(&log)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "restarting kube-apiserver: {out:?}");
    let pid = String::from_utf8_lossy(&out.stdout).trim().to_string();
    std::fs::write(cp.dir().join("kube-apiserver.pid"), pid).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if cp
            .kubectl(&["get", "--raw", "/readyz"])
            .is_ok_and(|o| o.trim() == "ok")
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    panic!(
        "kube-apiserver not ready after restart:\n{}",
        cp.apiserver_log_tail(30)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apiserver_outage_keeps_the_snapshot_and_the_cache_starts_a_node() {
    let cp = blocking(|| {
        let cp = ControlPlane::start().expect("start a control plane");
        install(&cp).expect("install");
        cp
    });
    let tmp = tempfile::tempdir().unwrap();
    let cache_file = tmp.path().join("cache.json");
    let p1 = unique("outage");
    blocking(|| cp.apply(&peer_yaml(&p1, "192.0.2.20", ""))).unwrap();
    let (mut rx, task) = watch(admin_client(&cp).await, options("node-o", &cache_file));
    wait_for(&mut rx, Duration::from_secs(30), "the peer", |s| {
        has_peer(s, &p1)
    })
    .await
    .unwrap();
    let before = rx.borrow().clone().unwrap();
    // Every snapshot published from now on (outage, reconnect, possible
    // relist) must still hold the peer: no flap.
    let flaps = {
        let mut rx = rx.clone();
        let p1 = p1.clone();
        tokio::spawn(async move {
            let mut seen = Vec::new();
            while rx.changed().await.is_ok() {
                let snap = rx.borrow_and_update().clone();
                seen.push(snap.as_deref().map(|s| (has_peer(s, &p1), s.peers.len())));
            }
            seen
        })
    };

    let args = blocking(|| kill_apiserver(&cp));
    tokio::time::sleep(Duration::from_secs(6)).await;
    let during = rx.borrow().clone().unwrap();
    assert!(
        Arc::ptr_eq(&before, &during),
        "nothing may be published during the outage"
    );
    assert!(!rx.has_changed().unwrap());

    // A node starting now comes up with the cached configuration.
    let mut opts = options("node-o", &cache_file);
    opts.cache_after = Duration::from_secs(2);
    let (mut rx2, task2) = watch(admin_client(&cp).await, opts);
    let took = wait_for(&mut rx2, Duration::from_secs(10), "the cached peer", |s| {
        has_peer(s, &p1)
    })
    .await
    .unwrap();
    eprintln!("started from the cache in {took:?} (API server down)");

    blocking(|| restart_apiserver(&cp, &args));
    let p2 = unique("after");
    blocking(|| cp.apply(&peer_yaml(&p2, "192.0.2.21", ""))).unwrap();
    for (rx, who) in [
        (&mut rx, "the running watch"),
        (&mut rx2, "the cache-started watch"),
    ] {
        let took = wait_for(rx, Duration::from_secs(20), "both peers", |s| {
            has_peer(s, &p1) && has_peer(s, &p2)
        })
        .await
        .unwrap_or_else(|e| panic!("{who}: {e:#}"));
        eprintln!("{who} resynced {took:?} after the change");
    }
    task.abort();
    task2.abort();
    drop(rx);
    let seen = flaps.await.unwrap();
    eprintln!("snapshots published after the outage began: {seen:?}");
    assert!(!seen.is_empty());
    assert!(
        seen.iter().all(|s| s.is_some_and(|(has_p1, _)| has_p1)),
        "a snapshot without the peer was published: {seen:?}"
    );
    drop(cp);
}

/// The HTTP status of an IPAM store error from the API server, if any.
fn http_code(e: &StoreError) -> Option<u16> {
    match e {
        StoreError::Backend { source, .. } => match source.downcast_ref::<kube::Error>() {
            Some(kube::Error::Api(s)) => Some(s.code),
            _ => None,
        },
        _ => None,
    }
}

fn block_spec(cidr: &str, node: &str) -> IpamBlockSpec {
    IpamBlockSpec {
        cidr: cidr.parse().unwrap(),
        affinity: affinity_for(node),
        state: BlockState::Pending,
        allocations: Default::default(),
        reserved: Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_token_writes_only_its_own_objects() {
    let cp = shared();
    let (a, b) = (unique("node-a"), unique("node-b"));
    for n in [&a, &b] {
        blocking(|| {
            cp.apply(&format!(
                "apiVersion: v1\nkind: Node\nmetadata:\n  name: {n}\n"
            ))
        })
        .unwrap();
    }
    let token = blocking(|| {
        cp.kubectl(&[
            "create",
            "token",
            "petrel",
            "-n",
            "petrel-system",
            "--bound-object-kind",
            "Node",
            "--bound-object-name",
            &a,
        ])
    })
    .unwrap();
    let client_a = token_client(cp, token.trim()).await;
    let admin = KubeIpamStore::new(admin_client(cp).await);
    let store_a = KubeIpamStore::new(client_a.clone());
    let id = std::process::id() % 200;
    let own = block_spec(&format!("10.{}.0.0/26", 20 + id % 30), &a);
    let theirs = block_spec(&format!("10.{}.0.64/26", 20 + id % 30), &b);

    // The policy takes effect shortly after it is applied: retry until the
    // foreign create is refused.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match store_a
            .create_block(&block_name(&theirs.cidr), &theirs)
            .await
        {
            Err(e) if http_code(&e) == Some(403) => break,
            Ok(s) => {
                admin.delete_block(&s.name, &s.version).await.unwrap();
                assert!(Instant::now() < deadline, "node A created node B's block");
            }
            Err(e) => panic!("unexpected error: {e:#?}"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let mine = store_a
        .create_block(&block_name(&own.cidr), &own)
        .await
        .expect("node A creates its own block");
    let mut confirmed = own.clone();
    confirmed.state = BlockState::Confirmed;
    let mine = store_a
        .update_block(&mine.name, &confirmed, &mine.version)
        .await
        .expect("node A updates its own block");

    // Node B's block (created by an admin): no update, no take-over, no delete.
    let b_block = admin
        .create_block(&block_name(&theirs.cidr), &theirs)
        .await
        .unwrap();
    let steal = block_spec(&theirs.cidr.to_string(), &a);
    for r in [
        store_a
            .update_block(&b_block.name, &theirs, &b_block.version)
            .await,
        store_a
            .update_block(&b_block.name, &steal, &b_block.version)
            .await,
    ] {
        assert_eq!(r.as_ref().err().and_then(http_code), Some(403), "{r:?}");
    }
    let r = store_a.delete_block(&b_block.name, &b_block.version).await;
    assert_eq!(r.as_ref().err().and_then(http_code), Some(403), "{r:?}");
    // Nor give its own block away.
    let give = block_spec(&own.cidr.to_string(), &b);
    let r = store_a.update_block(&mine.name, &give, &mine.version).await;
    assert_eq!(r.as_ref().err().and_then(http_code), Some(403), "{r:?}");

    // Affinities.
    let aff = |node: &str, cidr| BlockAffinitySpec {
        node: node.into(),
        cidr,
        state: AffinityState::Pending,
    };
    store_a
        .create_affinity(&affinity_name(&a, &own.cidr), &aff(&a, own.cidr))
        .await
        .expect("own affinity");
    let r = store_a
        .create_affinity(&affinity_name(&b, &theirs.cidr), &aff(&b, theirs.cidr))
        .await;
    assert_eq!(r.as_ref().err().and_then(http_code), Some(403), "{r:?}");
    store_a
        .delete_block(&mine.name, &mine.version)
        .await
        .expect("own delete");

    // Status: node A's writer creates and fills PetrelNode A; node B's is refused.
    let (tx, rx) = tokio_watch::channel(NodeStatusReport {
        agent_version: "test".into(),
        peers: vec![PeerReport {
            name: "tor".into(),
            address: "192.0.2.1".into(),
            state: "Established".into(),
            since: Some(std::time::SystemTime::now()),
            prefixes_received: 4,
            prefixes_advertised: 1,
            last_error: None,
        }],
        ..Default::default()
    });
    let opts = StatusWriterOptions {
        min_interval: Duration::from_millis(200),
        ..Default::default()
    };
    let writer = spawn_status_writer_with(client_a.clone(), a.clone(), rx, opts);
    let nodes: Api<PetrelNode> = Api::all(admin_client(cp).await);
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = nodes.get_opt(&a).await.unwrap().and_then(|n| n.status) {
            break s;
        }
        assert!(Instant::now() < deadline, "PetrelNode {a} has no status");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(status.peer_summary, "1/1");
    assert_eq!(status.peers[0].prefixes_received, 4);
    let table = blocking(|| cp.kubectl(&["get", "petrelnodes", &a])).unwrap();
    assert!(
        table.contains("ESTABLISHED") && table.contains("1/1"),
        "{table}"
    );
    drop(tx);
    writer.await.unwrap();
    let foreign = PetrelNode {
        metadata: kube::api::ObjectMeta {
            name: Some(b.clone()),
            ..Default::default()
        },
        spec: PetrelNodeSpec {},
        status: None,
    };
    let r = Api::<PetrelNode>::all(client_a.clone())
        .create(&PostParams::default(), &foreign)
        .await;
    assert!(
        matches!(&r, Err(kube::Error::Api(s)) if s.code == 403),
        "{r:?}"
    );

    // A token of the same ServiceAccount bound to no node writes nothing.
    let unbound =
        blocking(|| cp.kubectl(&["create", "token", "petrel", "-n", "petrel-system"])).unwrap();
    let store_unbound = KubeIpamStore::new(token_client(cp, unbound.trim()).await);
    let r = store_unbound
        .create_block(&block_name(&own.cidr), &own)
        .await;
    assert_eq!(r.as_ref().err().and_then(http_code), Some(403), "{r:?}");

    // Secrets: only those named in the Role.
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(client_a.clone(), "petrel-system");
    let r = secrets.get_opt("not-listed").await;
    assert!(
        matches!(&r, Err(kube::Error::Api(s)) if s.code == 403),
        "{r:?}"
    );
    assert!(secrets.get_opt("bgp-passwords").await.is_ok());

    // The datastore works with node A's token (RBAC grants every watch).
    let tmp = tempfile::tempdir().unwrap();
    let (mut rx, task) = watch(client_a, options(&a, &tmp.path().join("c.json")));
    wait_for(&mut rx, Duration::from_secs(20), "node A's own Node", |s| {
        s.nodes
            .iter()
            .any(|n| n.metadata.name.as_deref() == Some(a.as_str()))
    })
    .await
    .unwrap();
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_ipam_store_is_compare_and_swap() {
    // The sequential semantics (AlreadyExists, Conflict, NotFound, no ABA,
    // affinities) are `petrel_ipam::store::conformance`, which CI runs
    // against a real API server (`cargo test --lib -- --ignored
    // datastore::kube::ipam`); here: concurrent writers on a shared cluster.
    let cp = shared();
    let store = KubeIpamStore::new(admin_client(cp).await);
    let node = unique("cas");
    let id = std::process::id() % 200;
    let spec = block_spec(&format!("10.{}.0.0/26", 60 + id % 30), &node);
    let name = block_name(&spec.cidr);
    if let Some(old) = store.get_block(&name).await.unwrap() {
        store.delete_block(&name, &old.version).await.unwrap();
    }

    // Concurrent claims of one block: exactly one create wins; then
    // concurrent updates from the same version: exactly one wins.
    let racers: Vec<_> = (0..8)
        .map(|i| {
            let s = store.clone();
            let spec = block_spec(&spec.cidr.to_string(), &format!("{node}-{i}"));
            let name = name.clone();
            tokio::spawn(async move { s.create_block(&name, &spec).await })
        })
        .collect();
    let mut won = Vec::new();
    for r in racers {
        match r.await.unwrap() {
            Ok(s) => won.push(s),
            Err(StoreError::AlreadyExists { .. }) => {}
            Err(e) => panic!("unexpected: {e:#?}"),
        }
    }
    assert_eq!(won.len(), 1, "exactly one claim wins");
    let base = won.pop().unwrap();
    let racers: Vec<_> = (0..8)
        .map(|i| {
            let s = store.clone();
            let mut spec = base.spec.clone();
            spec.state = BlockState::Confirmed;
            spec.reserved.push(petrel_crd::ReservedAddress {
                address: spec.cidr.addr(),
                reason: format!("racer-{i}"),
            });
            let (name, version) = (name.clone(), base.version.clone());
            tokio::spawn(async move { s.update_block(&name, &spec, &version).await })
        })
        .collect();
    let mut ok = 0;
    for r in racers {
        match r.await.unwrap() {
            Ok(_) => ok += 1,
            Err(StoreError::Conflict { .. }) => {}
            Err(e) => panic!("unexpected: {e:#?}"),
        }
    }
    assert_eq!(ok, 1, "exactly one update from one version wins");
    let last = store.get_block(&name).await.unwrap().unwrap();
    store.delete_block(&name, &last.version).await.unwrap();

    // Invalid names never reach the API server.
    let r = store.get_block("Not_A_Name").await;
    assert!(matches!(r, Err(StoreError::Invalid { .. })), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flapping_peer_does_not_flood_the_api_server() {
    let cp = shared();
    let client = admin_client(cp).await;
    let node = unique("flap");
    let report = |state: &str| NodeStatusReport {
        agent_version: "test".into(),
        peers: vec![PeerReport {
            name: "tor".into(),
            address: "192.0.2.1".into(),
            state: state.into(),
            since: Some(std::time::SystemTime::now()),
            prefixes_received: 0,
            prefixes_advertised: 0,
            last_error: None,
        }],
        ..Default::default()
    };
    let (tx, rx) = tokio_watch::channel(report("Idle"));
    let opts = StatusWriterOptions {
        min_interval: Duration::from_secs(1),
        ..Default::default()
    };
    let writer = spawn_status_writer_with(client.clone(), node.clone(), rx, opts);
    let nodes: Api<PetrelNode> = Api::all(client);
    // Count the status writes (resourceVersion changes) while the peer flaps
    // 60 times in 3 s.
    let poller = {
        let (nodes, node) = (nodes.clone(), node.clone());
        tokio::spawn(async move {
            let mut versions = std::collections::BTreeSet::new();
            let end = Instant::now() + Duration::from_millis(4500);
            while Instant::now() < end {
                if let Ok(Some(n)) = nodes.get_opt(&node).await
                    && n.status.is_some()
                {
                    versions.insert(n.metadata.resource_version.unwrap_or_default());
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            versions.len()
        })
    };
    for i in 0..60 {
        let state = if i % 2 == 0 { "Established" } else { "Active" };
        tx.send_replace(report(state));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tx.send_replace(report("Established"));
    let writes = poller.await.unwrap();
    eprintln!("60 peer state changes in 3 s → {writes} status writes");
    assert!((1..=6).contains(&writes), "{writes} status writes");
    // The last report is written (coalesced, not dropped).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let s = nodes.get(&node).await.unwrap().status.unwrap();
        if s.peer_summary == "1/1" {
            break;
        }
        assert!(Instant::now() < deadline, "last report not written: {s:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(tx);
    writer.await.unwrap();
}
