//! Tests of the Kubernetes IPAM store: error mapping, and (ignored, run by
//! CI with `--ignored`) the store conformance checks on a real API server.

use super::*;
use kube::core::Status;

fn api(code: u16, reason: &str) -> kube::Error {
    kube::Error::Api(Status::failure("m", reason).with_code(code).boxed())
}

#[test]
fn api_errors_map_to_the_store_semantics() {
    let k = ObjectKind::Block;
    let create = |e| write_error(k, "b", "create", None, e);
    let update = |e| write_error(k, "b", "update", Some("7"), e);
    assert!(matches!(
        create(api(409, "AlreadyExists")),
        StoreError::AlreadyExists { .. }
    ));
    assert!(matches!(
        update(api(409, "Conflict")),
        StoreError::Conflict { ref expected, .. } if expected == "7"
    ));
    assert!(matches!(
        update(api(404, "NotFound")),
        StoreError::NotFound { .. }
    ));
    assert!(matches!(
        create(api(422, "Invalid")),
        StoreError::Invalid { .. }
    ));
    // Forbidden (RBAC or the admission policy) is a backend failure that
    // keeps the API error for the caller.
    match update(api(403, "Forbidden")) {
        StoreError::Backend { source, .. } => assert!(matches!(
            source.downcast_ref::<kube::Error>(),
            Some(kube::Error::Api(s)) if s.code == 403
        )),
        other => panic!("{other:?}"),
    }
}

#[test]
fn invalid_names_are_refused_locally() {
    assert!(check_name(ObjectKind::Block, "10-244-1-0-26").is_ok());
    assert!(matches!(
        check_name(ObjectKind::Affinity, "Bad_Name"),
        Err(StoreError::Invalid { .. })
    ));
}

/// A control plane started with `testbed/k8s/controlplane.sh` for this
/// test; stopped (and its directory removed) on drop.
struct ControlPlane {
    dir: std::path::PathBuf,
    kubeconfig: std::path::PathBuf,
}

fn script() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testbed/k8s/controlplane.sh")
}

impl ControlPlane {
    fn start() -> ControlPlane {
        let dir = std::env::temp_dir().join(format!("petrel-k8s-ipam-{}", std::process::id()));
        let out = std::process::Command::new("bash")
            .arg(script())
            .args(["start", "--dir"])
            .arg(&dir)
            .args(["--watch-pid", &std::process::id().to_string()])
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run controlplane.sh");
        assert!(
            out.status.success(),
            "controlplane.sh start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let kubeconfig = stdout
            .lines()
            .last()
            .expect("kubeconfig path")
            .trim()
            .into();
        ControlPlane { dir, kubeconfig }
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        let _ = std::process::Command::new("bash")
            .arg(script())
            .args(["stop", "--dir"])
            .arg(&self.dir)
            .status();
    }
}

/// The same conformance checks as the file store's, on a real API server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "starts a real kube-apiserver (testbed/k8s/controlplane.sh); run with --ignored"]
async fn passes_the_store_conformance_checks_on_a_real_api_server() {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::CustomResourceExt;
    let cp = tokio::task::spawn_blocking(ControlPlane::start)
        .await
        .unwrap();
    let kc = kube::config::Kubeconfig::read_from(&cp.kubeconfig).unwrap();
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    let client = kube::Client::try_from(cfg).unwrap();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in [IPAMBlock::crd(), BlockAffinity::crd()] {
        crds.create(&PostParams::default(), &crd).await.unwrap();
    }
    let plain = KubeIpamStore::new(client.clone());
    // Until the CRDs are Established, their endpoints answer 404.
    let deadline = Instant::now() + Duration::from_secs(30);
    while plain.list_blocks().await.is_err() || plain.list_affinities().await.is_err() {
        assert!(Instant::now() < deadline, "CRDs not served");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The store the agent uses: lists answered by the watch, own writes
    // visible at once.
    let watched = KubeIpamStore::new(client.clone()).with_watch();
    petrel_ipam::store::conformance::check(&watched).await;
    empty(&plain).await;
    petrel_ipam::store::conformance::check(&plain).await;
    empty(&plain).await;

    // Another writer's changes reach the watched store's lists.
    let spec = IpamBlockSpec {
        cidr: "10.9.1.0/26".parse().unwrap(),
        affinity: petrel_crd::affinity_for("b"),
        state: petrel_crd::BlockState::Confirmed,
        allocations: Default::default(),
        reserved: Vec::new(),
    };
    let name = petrel_crd::block_name(&spec.cidr);
    let created = plain.create_block(&name, &spec).await.unwrap();
    eventually(&watched, |l| l == std::slice::from_ref(&created)).await;
    plain.delete_block(&name, &created.version).await.unwrap();
    eventually(&watched, <[_]>::is_empty).await;

    // The watch may still be on its first list (its first attempt can meet
    // the CRDs' 404 and back off; lists fall back to the API server until
    // then): wait until one list of the watched store costs no LIST.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let b = list_count(&client).await;
        watched.list_blocks().await.unwrap();
        if list_count(&client).await == b {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the watched store never answered lists from its watch"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // And they cost no LIST: a hundred lists of the watched store leave
    // the API server's LIST count of IPAMBlocks where it was.
    let before = list_count(&client).await;
    for _ in 0..100 {
        watched.list_blocks().await.unwrap();
    }
    let after = list_count(&client).await;
    assert_eq!(
        after, before,
        "lists of a watched store went to the API server"
    );
    for _ in 0..3 {
        plain.list_blocks().await.unwrap();
    }
    assert!(
        list_count(&client).await >= after + 3.0,
        "the LIST counter does not count (the check above could not fail)"
    );
    drop(cp);
}

use std::time::{Duration, Instant};

/// Deletes every IPAM object (the conformance check needs an empty store).
async fn empty(store: &KubeIpamStore) {
    for b in store.list_blocks().await.unwrap() {
        store.delete_block(&b.name, &b.version).await.unwrap();
    }
    for a in store.list_affinities().await.unwrap() {
        store.delete_affinity(&a.name, &a.version).await.unwrap();
    }
}

/// Waits up to 5 s for the store's list of blocks to satisfy `ok`.
async fn eventually(store: &KubeIpamStore, ok: impl Fn(&[Stored<IpamBlockSpec>]) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let l = store.list_blocks().await.unwrap();
        if ok(&l) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the watched store still lists {l:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The API server's count of LIST requests of IPAMBlocks (its
/// `apiserver_request_total` metric, summed over codes and scopes).
async fn list_count(client: &kube::Client) -> f64 {
    let req = http::Request::get("/metrics").body(Vec::new()).unwrap();
    let text = client.request_text(req).await.unwrap();
    text.lines()
        .filter(|l| {
            l.starts_with("apiserver_request_total{")
                && l.contains("verb=\"LIST\"")
                && l.contains("resource=\"ipamblocks\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
