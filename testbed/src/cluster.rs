//! A real Kubernetes cluster on this machine for end-to-end tests: the
//! control plane, N nodes with their own containerd, kubelet and kube-proxy,
//! and an FRR top-of-rack router, all in network namespaces, brought up by
//! `testbed/k8s/cluster.sh` (the same command users run; its README says
//! what runs where).
//!
//! Every [`Cluster`] has its own directory and namespaces. Dropping it runs
//! `cluster.sh down`, also while a test panics; the script also watches this
//! process and takes the cluster down when it dies without unwinding.
//!
//! ```no_run
//! use petrel_testbed::cluster::Cluster;
//! let c = Cluster::up(3, &[])?;
//! let nodes = c.kubectl(&["get", "nodes", "-o", "name"])?;
//! let routes = c.exec("node1", &["ip", "route"])?;
//! let bgp = c.vtysh("show bgp summary")?;
//! # anyhow::Ok(())
//! ```
//!
//! The first `up` on a machine builds the binaries (several minutes;
//! `.ci/setup-k8s` does it ahead of the tests) into `/var/cache/petrel/k8s`.

use crate::k8s::{checked, kubectl_path, log_tail, run_bash, run_bash_on_drop, run_kubectl};
use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// The cluster script (`testbed/k8s/cluster.sh`).
pub fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("k8s/cluster.sh")
}

/// The ToR's address on the node segment (the nodes' BGPPeer address).
pub const TOR_IP: &str = "10.10.0.1";
/// The ToR's AS number.
pub const TOR_AS: u32 = 65000;
/// The AS number every node is annotated with.
pub const NODE_AS: u32 = 64512;

/// The address of node `i` (1-based) on the node segment.
pub fn node_ip(i: usize) -> String {
    format!("10.10.0.{}", 10 + i)
}

/// A running cluster; taken down on drop.
#[derive(Debug)]
pub struct Cluster {
    dir: PathBuf,
    kubeconfig: PathBuf,
    kubectl: PathBuf,
    nodes: usize,
    /// Whether `down` is still to run (on drop).
    running: bool,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn run_script(args: &[&str]) -> anyhow::Result<Output> {
    run_bash(&script(), args)
}

fn last_line(out: &Output) -> Option<String> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .map(|l| l.trim().to_owned())
}

impl Cluster {
    /// Brings up a cluster of `nodes` nodes in a fresh directory and waits
    /// until every node has registered. `images` are `(name, tarball)`
    /// pairs imported into every node (e.g. `("petrel:dev", "petrel.tar")`,
    /// a `docker save` or OCI archive); without one for petrel, the script
    /// takes `petrel:dev` from the local Docker engine when it has it.
    pub fn up(nodes: usize, images: &[(&str, &Path)]) -> anyhow::Result<Self> {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("petrel-cluster-{}-{n}", std::process::id()));
        let dir_s = dir.to_string_lossy().into_owned();
        let nodes_s = nodes.to_string();
        let pid = std::process::id().to_string();
        let specs: Vec<String> = images
            .iter()
            .map(|(name, tar)| format!("{name}={}", tar.display()))
            .collect();
        let mut args = vec![
            "up",
            "--dir",
            &dir_s,
            "--nodes",
            &nodes_s,
            "--watch-pid",
            &pid,
        ];
        for spec in &specs {
            args.extend_from_slice(&["--image", spec]);
        }
        let out = run_script(&args)?;
        if !out.status.success() {
            let msg = format!(
                "cluster.sh up failed ({}):\n{}\n--- node1 kubelet log ---\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim_end(),
                log_tail(&dir.join("nodes/node1/logs/kubelet.log"), 20),
            );
            let _ = run_script(&["down", "--dir", &dir_s]);
            bail!(msg);
        }
        let kubeconfig =
            PathBuf::from(last_line(&out).context("cluster.sh up printed no kubeconfig path")?);
        Ok(Cluster {
            kubectl: kubectl_path()?,
            dir,
            kubeconfig,
            nodes,
            running: true,
        })
    }

    /// The admin kubeconfig (user in `system:masters`).
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The cluster's directory: logs, certificates, node state.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The node names, `node1..N`.
    pub fn nodes(&self) -> Vec<String> {
        (1..=self.nodes).map(|i| format!("node{i}")).collect()
    }

    /// Runs kubectl as the admin and returns its output whatever the exit
    /// status.
    pub fn kubectl_output(&self, args: &[&str]) -> anyhow::Result<Output> {
        run_kubectl(&self.kubectl, &self.kubeconfig, args, None)
    }

    /// Runs kubectl as the admin; `Ok(stdout)` when it succeeds.
    pub fn kubectl(&self, args: &[&str]) -> anyhow::Result<String> {
        checked(args, self.kubectl_output(args)?)
    }

    /// `kubectl apply -f -` of a YAML document (or several).
    pub fn apply(&self, yaml: &str) -> anyhow::Result<String> {
        let args = ["apply", "-f", "-"];
        checked(
            &args,
            run_kubectl(&self.kubectl, &self.kubeconfig, &args, Some(yaml))?,
        )
    }

    /// Runs `cmd` in a node's network, mount and UTS namespaces (`node<i>`;
    /// `tor` and `cp` for the router's and the control plane's network
    /// namespace) and returns its output whatever the exit status.
    pub fn exec_output(&self, node: &str, cmd: &[&str]) -> anyhow::Result<Output> {
        let dir = self.dir.to_string_lossy().into_owned();
        let mut args = vec!["exec", node, "--dir", &dir, "--"];
        args.extend_from_slice(cmd);
        run_script(&args)
    }

    /// Runs `cmd` in a node's namespaces; `Ok(stdout)` when it succeeds.
    pub fn exec(&self, node: &str, cmd: &[&str]) -> anyhow::Result<String> {
        let out = self.exec_output(node, cmd)?;
        if !out.status.success() {
            bail!(
                "{} on {node} failed ({}): {}",
                cmd.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim_end()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `vtysh -c LINE` on the ToR, one `-c` per line of `cmd`.
    pub fn vtysh(&self, cmd: &str) -> anyhow::Result<String> {
        let mut c = Command::new("vtysh");
        c.arg("--vty_socket").arg(self.dir.join("tor"));
        for line in cmd.lines() {
            c.arg("-c").arg(line);
        }
        let out = c
            .stdin(Stdio::null())
            .output()
            .context("running vtysh (is FRR installed?)")?;
        if !out.status.success() {
            bail!(
                "vtysh -c {cmd:?} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim_end()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The last lines of a node daemon's log (`kubelet`, `containerd`,
    /// `kube-proxy`, `node`), for failure messages.
    pub fn node_log_tail(&self, node: &str, daemon: &str, lines: usize) -> String {
        log_tail(
            &self.dir.join(format!("nodes/{node}/logs/{daemon}.log")),
            lines,
        )
    }

    /// Takes the cluster down now and reports a failure of `down` (dropping
    /// only prints it).
    pub fn down(mut self) -> anyhow::Result<()> {
        self.running = false;
        let dir = self.dir.to_string_lossy().into_owned();
        let out = run_script(&["down", "--dir", &dir])?;
        if !out.status.success() {
            bail!(
                "cluster.sh down --dir {dir}: {}",
                String::from_utf8_lossy(&out.stderr).trim_end()
            );
        }
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if !self.running {
            return;
        }
        let dir = self.dir.to_string_lossy().into_owned();
        run_bash_on_drop(&script(), &["down", "--dir", &dir]);
    }
}
