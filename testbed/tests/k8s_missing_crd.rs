//! The Kubernetes datastore when a CRD is missing (a cluster upgraded from an
//! older `manifests/crds.yaml` without the IPPool CRD): the other kinds are
//! still published, and the missing kind's objects appear once its CRD is
//! installed. Against a real kube-apiserver (`testbed/k8s/controlplane.sh`).
//!
//! Run: `cargo test -p petrel-testbed --test k8s_missing_crd` (needs no root).

use petrel_datastore::Snapshot;
use petrel_datastore::kube::{KubeOptions, watch};
use petrel_testbed::k8s::ControlPlane;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch as tokio_watch;

/// Every CRD as `petrel crds` writes it, the IPPool one only `with_pools`.
fn crds(with_pools: bool) -> String {
    let crds: Vec<serde_json::Value> = petrel_crd::crds()
        .into_iter()
        .filter(|c| with_pools || c["spec"]["names"]["kind"] != "IPPool")
        .collect();
    serde_json::json!({"apiVersion": "v1", "kind": "List", "items": crds}).to_string()
}

fn apply_crds(cp: &ControlPlane, with_pools: bool) {
    cp.kubectl_stdin(&["apply", "-f", "-"], &crds(with_pools))
        .expect("apply CRDs");
    cp.kubectl(&[
        "wait",
        "--for=condition=Established",
        "crd",
        "--all",
        "--timeout=60s",
    ])
    .expect("CRDs established");
}

async fn wait_for(
    rx: &mut tokio_watch::Receiver<Option<Arc<Snapshot>>>,
    within: Duration,
    what: &str,
    pred: impl Fn(&Snapshot) -> bool,
) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if rx.borrow_and_update().as_deref().is_some_and(&pred) {
            return;
        }
        if tokio::time::timeout_at(deadline, rx.changed())
            .await
            .is_err()
        {
            panic!(
                "no snapshot with {what} within {within:?}; last: {:?}",
                rx.borrow()
                    .as_deref()
                    .map(|s| (s.peers.len(), s.ip_pools.len()))
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_crd_does_not_hold_back_the_others() {
    let cp = ControlPlane::start().expect("start the control plane");
    tokio::task::block_in_place(|| {
        apply_crds(&cp, false);
        cp.apply(
            "apiVersion: petrel.dev/v1\nkind: BGPPeer\nmetadata: {name: tor}\nspec: {peerIP: 10.0.0.254, asNumber: 65000}\n",
        )
        .expect("apply the peer");
    });
    let kc = kube::config::Kubeconfig::read_from(cp.kubeconfig()).expect("kubeconfig");
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .expect("config");
    let client = kube::Client::try_from(cfg).expect("client");
    let (mut rx, task) = watch(client, KubeOptions::new("node-a"));
    wait_for(&mut rx, Duration::from_secs(30), "the BGPPeer", |s| {
        s.peers.len() == 1 && s.ip_pools.is_empty()
    })
    .await;
    // The CRD arrives later, with a pool: the watch picks it up.
    tokio::task::block_in_place(|| {
        apply_crds(&cp, true);
        cp.apply(
            "apiVersion: petrel.dev/v1\nkind: IPPool\nmetadata: {name: pods}\nspec: {cidr: 10.244.0.0/16}\n",
        )
        .expect("apply the pool");
    });
    wait_for(&mut rx, Duration::from_secs(30), "the IPPool", |s| {
        s.peers.len() == 1 && s.ip_pools.len() == 1
    })
    .await;
    task.abort();
}
