//! A Secret the agent may not read (403 under the shipped RBAC) against a
//! real kube-apiserver: the peer naming it is left out and every other peer
//! published; the datastore logs it once, at WARN, as forbidden, and does
//! not ask again within 10 s (it used to relist every 4–7 s, with kube's
//! watcher logging the full 403 Status each time).
//!
//! Run: `cargo test -p petrel-testbed --test k8s_forbidden_secret` (builds
//! kube-apiserver and etcd on first use unless `.ci/setup-k8s` did; needs no
//! root).

use anyhow::Context;
use petrel_datastore::kube::{KubeOptions, watch};
use petrel_testbed::k8s::ControlPlane;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Every log line of this test binary (a global subscriber: the datastore's
/// tasks run on the runtime's worker threads).
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

fn install(cp: &ControlPlane) -> anyhow::Result<()> {
    let crds = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": petrel_crd::crds()});
    cp.kubectl_stdin(&["apply", "-f", "-"], &crds.to_string())?;
    cp.kubectl(&[
        "wait",
        "--for=condition=Established",
        "crd",
        "--all",
        "--timeout=60s",
    ])?;
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for file in ["manifests/rbac.yaml", "manifests/admission.yaml"] {
        let path = repo.join(file);
        cp.kubectl(&["apply", "-f", &path.to_string_lossy()])
            .with_context(|| format!("applying {file}"))?;
    }
    Ok(())
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forbidden_secret_is_logged_once_and_retried_rarely() {
    let logs = Captured::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .with_env_filter("petrel_datastore=debug")
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    let cp = ControlPlane::shared().expect("start the control plane");
    let node = format!("forbidden-{}", std::process::id());
    let peers = format!(
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: {node}\n  annotations:\n    petrel.dev/ipv4-address: 192.0.2.100/24\n---\n\
         apiVersion: petrel.dev/v1\nkind: BGPPeer\nmetadata:\n  name: {node}-ok\nspec:\n  peerIP: 192.0.2.1\n  asNumber: 64512\n---\n\
         apiVersion: petrel.dev/v1\nkind: BGPPeer\nmetadata:\n  name: {node}-locked\nspec:\n  peerIP: 192.0.2.2\n  asNumber: 64512\n  \
         password:\n    secretKeyRef:\n      name: not-listed\n      key: k\n"
    );
    tokio::task::block_in_place(|| -> anyhow::Result<()> {
        install(cp)?;
        cp.apply(&peers)?;
        Ok(())
    })
    .expect("install and apply");
    let token = tokio::task::block_in_place(|| {
        cp.kubectl(&[
            "create",
            "token",
            "petrel",
            "-n",
            "petrel-system",
            "--bound-object-kind",
            "Node",
            "--bound-object-name",
            &node,
        ])
    })
    .expect("token");
    let client = token_client(cp, token.trim()).await;
    let tmp = tempfile::tempdir().unwrap();
    let mut opts = KubeOptions::new(&node);
    opts.cache_file = Some(tmp.path().join("cache.json"));
    let (mut rx, task) = watch(client, opts);

    let has = |s: &petrel_datastore::Snapshot, name: &str| {
        s.peers
            .iter()
            .any(|p| p.metadata.name.as_deref() == Some(name))
    };
    let ok = format!("{node}-ok");
    let locked = format!("{node}-locked");
    let snapshot = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if let Some(s) = rx.borrow_and_update().as_deref()
                && has(s, &ok)
                && has(s, &locked)
            {
                return s.clone();
            }
            rx.changed().await.expect("datastore running");
        }
    })
    .await
    .expect("a snapshot with both peers within 30 s");
    // Resolution leaves out the peer whose Secret the agent may not read
    // (it never resolved) and reports it as forbidden, not missing.
    let cfg = petrel_datastore::resolve_with(&snapshot, &node, None).expect("resolves");
    let names: Vec<String> = cfg.peers.keys().map(|o| format!("{o:?}")).collect();
    assert!(
        names.iter().any(|n| n.contains(&ok)) && !names.iter().any(|n| n.contains(&locked)),
        "the peer naming a forbidden Secret is left out: {names:?}"
    );
    let problems: Vec<String> = cfg.problems.iter().map(ToString::to_string).collect();
    assert!(
        problems.iter().any(|p| p.contains(&locked)
            && p.contains("is forbidden to the agent (403)")
            && !p.contains("not found")),
        "the peer is reported as forbidden, not missing: {problems:?}"
    );

    // Long enough for the old 0.5–8 s backoff to relist several times.
    tokio::time::sleep(Duration::from_secs(10)).await;
    task.abort();
    let text = logs.text();
    let warned: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("forbidden"))
        .collect();
    assert_eq!(warned.len(), 1, "one WARN line: {text}");
    assert!(warned[0].contains("not-listed"), "{}", warned[0]);
    assert!(
        !text.contains("still cannot watch"),
        "retried within 10 s: {text}"
    );
    assert!(
        !text.contains("\"not-listed\" not found"),
        "the Secret is never called missing: {text}"
    );
}
