//! A real Kubernetes control plane for tests: etcd and kube-apiserver, built
//! from their Go modules (`testbed/k8s/{apiserver,etcd}/go.mod`), started on
//! loopback by `testbed/k8s/controlplane.sh`, the same command users and CI
//! run.
//!
//! Every [`ControlPlane`] has its own directory (certificates, etcd data,
//! logs) and its own free ports on 127.0.0.1, so parallel tests never share
//! state. Dropping it stops both processes and removes the directory, also
//! while a test panics; and because the script watches this process, the
//! control plane also stops when the test process dies without unwinding.
//!
//! ```no_run
//! use petrel_testbed::k8s::ControlPlane;
//! let cp = ControlPlane::start()?;
//! cp.kubectl(&["apply", "-f", "manifests/crds.yaml"])?;
//! let peers = cp.kubectl(&["get", "bgppeers"])?;
//! # anyhow::Ok(())
//! ```
//!
//! The first start on a machine builds the binaries (several minutes;
//! `.ci/setup-k8s` does it ahead of the tests) into `/var/cache/petrel/k8s`.

use anyhow::{Context, bail};
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

/// The control-plane script (`testbed/k8s/controlplane.sh`).
pub fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("k8s/controlplane.sh")
}

/// A running etcd + kube-apiserver pair; stopped on drop.
#[derive(Debug)]
pub struct ControlPlane {
    dir: PathBuf,
    kubeconfig: PathBuf,
    kubectl: PathBuf,
    server: String,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Free TCP ports on 127.0.0.1, distinct from each other, chosen below the
/// kernel's ephemeral range (`net.ipv4.ip_local_port_range`), so that no
/// outgoing connection of this or any other process is given one of them
/// between this check and the server's bind. Another test can still pick the
/// same port at the same moment; the script then retries with others.
fn free_ports(n: usize) -> anyhow::Result<Vec<u16>> {
    let (lo, hi) = static_port_range();
    let span = u32::from(hi - lo);
    // Start somewhere that differs between processes and calls.
    let mut next = (std::process::id() ^ COUNTER.fetch_add(1, Ordering::SeqCst).wrapping_mul(7919))
        .wrapping_mul(2_654_435_761)
        % span;
    let mut held = Vec::with_capacity(n);
    for _ in 0..span {
        if held.len() == n {
            break;
        }
        let port = lo + (next % span) as u16;
        next = next.wrapping_add(1);
        if let Ok(l) = TcpListener::bind(("127.0.0.1", port)) {
            held.push(l);
        }
    }
    if held.len() < n {
        bail!("no {n} free TCP ports on 127.0.0.1 in {lo}..{hi}");
    }
    held.iter().map(|l| Ok(l.local_addr()?.port())).collect()
}

/// Ports from 10000 up to the start of the ephemeral range (32768 on a
/// default kernel), or 10000..20000 when that range starts lower.
fn static_port_range() -> (u16, u16) {
    let start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    if start > 11_000 {
        (10_000, start)
    } else {
        (10_000, 20_000)
    }
}

fn run_script(args: &[&str]) -> anyhow::Result<Output> {
    run_bash(&script(), args)
}

/// Runs `bash SCRIPT ARGS` and returns its output.
pub(crate) fn run_bash(script: &Path, args: &[&str]) -> anyhow::Result<Output> {
    Command::new("bash")
        .arg(script)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {} {}", script.display(), args.join(" ")))
}

/// Runs `bash SCRIPT ARGS` from a `Drop`: a failure is printed, not returned.
pub(crate) fn run_bash_on_drop(script: &Path, args: &[&str]) {
    let name = script.file_name().unwrap_or_default().to_string_lossy();
    match run_bash(script, args) {
        Ok(out) if out.status.success() => {}
        Ok(out) => eprintln!(
            "{name} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim_end()
        ),
        Err(e) => eprintln!("{name} {}: {e:#}", args.join(" ")),
    }
}

/// The last `n` lines of a log file, for error messages.
pub(crate) fn log_tail(path: &Path, n: usize) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(n)..].join("\n")
        }
        Err(e) => format!("({}: {e})", path.display()),
    }
}

impl ControlPlane {
    /// Starts a new control plane in a fresh directory under the system
    /// temporary directory and waits until the API server is ready (its
    /// `/readyz` answers `ok`). Builds the binaries first when they are
    /// not cached yet.
    pub fn start() -> anyhow::Result<Self> {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("petrel-k8s-{}-{n}", std::process::id()));
        let ports = free_ports(3)?;
        let (etcd, peer, api) = (
            ports[0].to_string(),
            ports[1].to_string(),
            ports[2].to_string(),
        );
        let pid = std::process::id().to_string();
        let dir_s = dir.to_string_lossy().into_owned();
        let out = run_script(&[
            "start",
            "--dir",
            &dir_s,
            "--etcd-port",
            &etcd,
            "--etcd-peer-port",
            &peer,
            "--apiserver-port",
            &api,
            "--watch-pid",
            &pid,
        ])?;
        if !out.status.success() {
            let logs = dir.join("logs");
            let msg = format!(
                "controlplane.sh start failed ({}):\n{}\n--- etcd log ---\n{}\n--- kube-apiserver log ---\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim_end(),
                log_tail(&logs.join("etcd.log"), 20),
                log_tail(&logs.join("kube-apiserver.log"), 40),
            );
            let _ = std::fs::remove_dir_all(&dir);
            bail!(msg);
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        let kubeconfig = PathBuf::from(
            stdout
                .lines()
                .last()
                .context("controlplane.sh start printed no kubeconfig path")?
                .trim(),
        );
        let api_port = std::fs::read_to_string(dir.join("apiserver.port"))
            .context("reading apiserver.port")?;
        let cp = ControlPlane {
            server: format!("https://127.0.0.1:{}", api_port.trim()),
            kubectl: kubectl_path()?,
            dir,
            kubeconfig,
        };
        Ok(cp)
    }

    /// One control plane shared by all tests of this process (started on
    /// first use). It is never dropped: the script's watchdog stops it and
    /// removes its directory when the process exits. Tests that share it
    /// must use distinct object names.
    pub fn shared() -> anyhow::Result<&'static ControlPlane> {
        static SHARED: OnceLock<Result<ControlPlane, String>> = OnceLock::new();
        SHARED
            .get_or_init(|| ControlPlane::start().map_err(|e| format!("{e:#}")))
            .as_ref()
            .map_err(|e| anyhow::anyhow!("{e}"))
    }

    /// Path of the admin kubeconfig (user in `system:masters`).
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The API server's URL, `https://127.0.0.1:<port>`.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The control plane's directory: `pki/`, `logs/`, `etcd/`, kubeconfigs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The kubectl binary in use.
    pub fn kubectl_path(&self) -> &Path {
        &self.kubectl
    }

    /// Runs kubectl as the admin and returns its output whatever the exit
    /// status (for checks that expect a failure).
    pub fn kubectl_output(&self, args: &[&str]) -> anyhow::Result<Output> {
        self.kubectl_as_output(&self.kubeconfig, args, None)
    }

    /// Runs kubectl as the admin; `Ok(stdout)` when it succeeds, else an
    /// error with the command and its stderr.
    pub fn kubectl(&self, args: &[&str]) -> anyhow::Result<String> {
        checked(args, self.kubectl_output(args)?)
    }

    /// Runs kubectl as the admin with `stdin` as its standard input (for
    /// `apply -f -`).
    pub fn kubectl_stdin(&self, args: &[&str], stdin: &str) -> anyhow::Result<String> {
        checked(
            args,
            self.kubectl_as_output(&self.kubeconfig, args, Some(stdin))?,
        )
    }

    /// `kubectl apply -f -` of a YAML document (or several).
    pub fn apply(&self, yaml: &str) -> anyhow::Result<String> {
        self.kubectl_stdin(&["apply", "-f", "-"], yaml)
    }

    /// Runs kubectl with another kubeconfig (see [`Self::user_kubeconfig`]),
    /// returning its output whatever the exit status.
    pub fn kubectl_as_output(
        &self,
        kubeconfig: &Path,
        args: &[&str],
        stdin: Option<&str>,
    ) -> anyhow::Result<Output> {
        run_kubectl(&self.kubectl, kubeconfig, args, stdin)
    }

    /// Writes a kubeconfig for a client-certificate user `name` in `groups`
    /// (signed by this control plane's CA) and returns its path. RBAC then
    /// decides what it may do; e.g. `("system:node:worker-1", &["system:nodes"])`.
    pub fn user_kubeconfig(&self, name: &str, groups: &[&str]) -> anyhow::Result<PathBuf> {
        let dir = self.dir.to_string_lossy().into_owned();
        let mut args = vec!["user", "--dir", dir.as_str(), name];
        args.extend_from_slice(groups);
        let out = run_script(&args)?;
        if !out.status.success() {
            bail!(
                "controlplane.sh user {name} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim_end()
            );
        }
        Ok(PathBuf::from(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .last()
                .context("controlplane.sh user printed no path")?
                .trim(),
        ))
    }

    /// Writes a kubeconfig holding a token of ServiceAccount
    /// `namespace/name` (`kubectl create token`, valid for 24 hours) and
    /// returns its path. With `bound_node`, the token is bound to that Node
    /// object, so the API server reports the node's name in the user's extra
    /// `authentication.kubernetes.io/node-name`, as for an agent's projected
    /// token. The ServiceAccount (and the Node) must exist.
    pub fn service_account_kubeconfig(
        &self,
        namespace: &str,
        name: &str,
        bound_node: Option<&str>,
    ) -> anyhow::Result<PathBuf> {
        let mut args = vec!["create", "token", name, "-n", namespace, "--duration=24h"];
        if let Some(node) = bound_node {
            args.extend_from_slice(&["--bound-object-kind", "Node", "--bound-object-name", node]);
        }
        let token = self.kubectl(&args)?;
        let file = self.dir.join(format!(
            "sa-{namespace}-{name}-{}.kubeconfig",
            bound_node.unwrap_or("unbound")
        ));
        let config = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: petrel-test\n  cluster:\n    server: {}\n    certificate-authority: {}\nusers:\n- name: {name}\n  user:\n    token: {}\ncontexts:\n- name: {name}@petrel-test\n  context:\n    cluster: petrel-test\n    user: {name}\ncurrent-context: {name}@petrel-test\n",
            self.server,
            self.dir.join("pki/ca.crt").display(),
            token.trim()
        );
        std::fs::write(&file, config).with_context(|| format!("writing {}", file.display()))?;
        Ok(file)
    }

    /// Kills kube-apiserver with SIGKILL, as a crash (etcd keeps running).
    pub fn kill_apiserver(&self) -> anyhow::Result<()> {
        self.apiserver("kill")
    }

    /// Stops kube-apiserver cleanly (SIGTERM; etcd keeps running).
    pub fn stop_apiserver(&self) -> anyhow::Result<()> {
        self.apiserver("stop")
    }

    /// Starts kube-apiserver again after [`Self::kill_apiserver`] or
    /// [`Self::stop_apiserver`], with the same flags, certificates and port,
    /// and waits until it is ready. Objects survive (they live in etcd).
    pub fn start_apiserver(&self) -> anyhow::Result<()> {
        self.apiserver("start")
    }

    fn apiserver(&self, action: &str) -> anyhow::Result<()> {
        let dir = self.dir.to_string_lossy().into_owned();
        let out = run_script(&["apiserver", action, "--dir", &dir])?;
        if !out.status.success() {
            bail!(
                "controlplane.sh apiserver {action} failed: {}\n--- kube-apiserver log ---\n{}",
                String::from_utf8_lossy(&out.stderr).trim_end(),
                self.apiserver_log_tail(30)
            );
        }
        Ok(())
    }

    /// The last lines of the API server's log (for failure messages).
    pub fn apiserver_log_tail(&self, lines: usize) -> String {
        log_tail(&self.dir.join("logs/kube-apiserver.log"), lines)
    }

    /// Stops the control plane now (the same as dropping it).
    pub fn stop(self) {}
}

/// Runs `kubectl --kubeconfig KUBECONFIG ARGS` with `stdin` (if any) as its
/// standard input and returns its output whatever the exit status.
pub(crate) fn run_kubectl(
    kubectl: &Path,
    kubeconfig: &Path,
    args: &[&str],
    stdin: Option<&str>,
) -> anyhow::Result<Output> {
    let mut cmd = Command::new(kubectl);
    cmd.arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {}", kubectl.display()))?;
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().context("kubectl stdin")?;
        pipe.write_all(input.as_bytes())
            .context("writing kubectl's stdin")?;
    }
    child
        .wait_with_output()
        .with_context(|| format!("waiting for kubectl {}", args.join(" ")))
}

/// `Ok(stdout)` when kubectl succeeded, else an error with the command and
/// its stderr.
pub(crate) fn checked(args: &[&str], out: Output) -> anyhow::Result<String> {
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        bail!(
            "kubectl {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim_end()
        )
    }
}

/// The kubectl the script picks (`PETREL_KUBECTL`, the one `.ci/setup-k8s`
/// installed, or `kubectl` on PATH).
pub fn kubectl_path() -> anyhow::Result<PathBuf> {
    let out = run_script(&["kubectl"])?;
    if !out.status.success() {
        bail!("{}", String::from_utf8_lossy(&out.stderr).trim_end());
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        let dir = self.dir.to_string_lossy().into_owned();
        run_bash_on_drop(&script(), &["stop", "--dir", &dir]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_distinct_and_bindable() {
        let ports = free_ports(3).unwrap();
        assert_eq!(ports.len(), 3);
        assert!(ports[0] != ports[1] && ports[1] != ports[2] && ports[0] != ports[2]);
        let (lo, hi) = static_port_range();
        for p in ports {
            assert!((lo..hi).contains(&p), "{p} is outside {lo}..{hi}");
            TcpListener::bind(("127.0.0.1", p)).expect("port is free again");
        }
    }

    #[test]
    fn log_tail_keeps_the_last_lines() {
        let dir = std::env::temp_dir().join(format!("petrel-k8s-logtail-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("x.log");
        std::fs::write(&f, "a\nb\nc\nd\n").unwrap();
        assert_eq!(log_tail(&f, 2), "c\nd");
        assert_eq!(log_tail(&f, 10), "a\nb\nc\nd");
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(log_tail(&f, 1).contains("x.log"));
    }
}
