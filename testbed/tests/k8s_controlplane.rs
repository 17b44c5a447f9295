//! The test control plane itself (`petrel_testbed::k8s::ControlPlane`,
//! `testbed/k8s/controlplane.sh`): two instances run side by side without
//! sharing anything, identities (admin, client-certificate users,
//! node-bound service-account tokens) are what RBAC tests expect, an API
//! server outage keeps the objects, and dropping an instance stops its
//! processes and removes its directory.
//!
//! Run: `cargo test -p petrel-testbed --test k8s_controlplane` (no root).

use anyhow::{Context, ensure};
use petrel_testbed::k8s::ControlPlane;
use std::path::Path;

/// Process ids whose command line mentions `needle`.
fn pids_mentioning(needle: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline"))
            && String::from_utf8_lossy(&cmdline).contains(needle)
        {
            pids.push(pid);
        }
    }
    pids
}

fn whoami(cp: &ControlPlane, kubeconfig: &Path) -> anyhow::Result<String> {
    let out = cp.kubectl_as_output(kubeconfig, &["auth", "whoami"], None)?;
    ensure!(
        out.status.success(),
        "auth whoami: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn two_control_planes_are_independent_and_stop_on_drop() -> anyhow::Result<()> {
    let a = ControlPlane::start()?;
    let b = ControlPlane::start()?;
    ensure!(a.server() != b.server(), "same server {}", a.server());
    ensure!(a.dir() != b.dir());
    let version = a.kubectl(&["version", "-o", "json"])?;
    ensure!(
        version.contains("\"serverVersion\""),
        "no server version:\n{version}"
    );

    // An object in one is not in the other: separate etcd data.
    a.kubectl(&["create", "namespace", "only-in-a"])?;
    a.kubectl(&["get", "namespace", "only-in-a"])?;
    let out = b.kubectl_output(&["get", "namespace", "only-in-a"])?;
    ensure!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("NotFound"),
        "namespace leaked into the second control plane"
    );

    let dir = a.dir().to_path_buf();
    let dir_s = dir.to_string_lossy().into_owned();
    ensure!(
        pids_mentioning(&dir_s).len() >= 2,
        "etcd and kube-apiserver of {dir_s} not found"
    );
    drop(a);
    ensure!(!dir.exists(), "{} left behind", dir.display());
    let left = pids_mentioning(&dir_s);
    ensure!(left.is_empty(), "processes left behind: {left:?}");
    // The other one is untouched.
    b.kubectl(&["get", "--raw", "/readyz"])?;
    Ok(())
}

#[test]
fn identities_for_rbac_tests() -> anyhow::Result<()> {
    let cp = ControlPlane::start()?;

    // The admin is in system:masters.
    let admin = whoami(&cp, cp.kubeconfig())?;
    ensure!(
        admin.contains("petrel-admin") && admin.contains("system:masters"),
        "{admin}"
    );

    // A client-certificate user has its name and groups and no rights.
    let node = cp.user_kubeconfig("system:node:worker-1", &["system:nodes"])?;
    let me = whoami(&cp, &node)?;
    ensure!(
        me.contains("system:node:worker-1") && me.contains("system:nodes"),
        "{me}"
    );
    let out = cp.kubectl_as_output(&node, &["get", "namespaces"], None)?;
    ensure!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("Forbidden"),
        "RBAC must deny an unbound user: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A service-account token bound to a Node carries the node's name.
    cp.kubectl(&["create", "namespace", "petrel-system"])?;
    cp.kubectl(&["create", "serviceaccount", "petrel", "-n", "petrel-system"])?;
    cp.apply("apiVersion: v1\nkind: Node\nmetadata:\n  name: worker-2\n")?;
    let sa = cp.service_account_kubeconfig("petrel-system", "petrel", Some("worker-2"))?;
    let me = whoami(&cp, &sa)?;
    ensure!(
        me.contains("system:serviceaccount:petrel-system:petrel"),
        "{me}"
    );
    let node_name = me
        .lines()
        .find(|l| l.contains("authentication.kubernetes.io/node-name"))
        .context(format!("no node-name extra:\n{me}"))?;
    ensure!(node_name.contains("[worker-2]"), "{node_name}");
    Ok(())
}

#[test]
fn apiserver_outage_keeps_objects() -> anyhow::Result<()> {
    let cp = ControlPlane::start()?;
    cp.kubectl(&["create", "namespace", "survives"])?;
    let port = cp.server().to_owned();

    cp.kill_apiserver()?;
    let out = cp.kubectl_output(&["get", "namespace", "survives", "--request-timeout=2s"])?;
    ensure!(
        !out.status.success(),
        "the API server still answers after kill_apiserver"
    );
    // Starting it twice is an error, not a second server.
    cp.start_apiserver()?;
    ensure!(
        cp.start_apiserver().is_err(),
        "start_apiserver succeeded while one runs"
    );
    ensure!(cp.server() == port);
    cp.kubectl(&["get", "namespace", "survives"])?;

    cp.stop_apiserver()?;
    ensure!(
        !cp.kubectl_output(&["get", "--raw", "/readyz", "--request-timeout=2s"])?
            .status
            .success(),
        "the API server still answers after stop_apiserver"
    );
    cp.start_apiserver()?;
    cp.kubectl(&["get", "namespace", "survives"])?;
    Ok(())
}
