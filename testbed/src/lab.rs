//! A deployed topology: one network namespace per node, veth pairs for links,
//! one daemon per node. Dropping the [`Lab`] tears everything down, also when
//! a test panics.

pub use crate::apiproxy::KubeAccess;
use crate::apiproxy::{ApiProxy, NODE_API_PORT};
use crate::daemon::{DaemonPaths, petrel_bin, run};
use crate::topology::{Datastore, Kind, Topology};
use anyhow::{Context, bail};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

static LAB_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// How long a daemon may take to answer on its control socket after start.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a daemon gets to exit after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(3);

struct LabNode {
    paths: DaemonPaths,
    children: Mutex<Vec<Child>>,
}

/// A running topology.
pub struct Lab {
    topo: Topology,
    prefix: String,
    root: PathBuf,
    nodes: BTreeMap<String, LabNode>,
    namespaces: Vec<String>,
    /// Set once the logs were printed, so a panic does not print them twice.
    logs_dumped: AtomicBool,
    /// API server access for `datastore: kubernetes` nodes.
    kube: Option<KubeAccess>,
    /// Forwarders from the nodes' loopback to the API server.
    proxy: Option<ApiProxy>,
    /// When the daemons were started (after namespaces, links and addresses).
    daemons_started: Option<Instant>,
}

impl Lab {
    /// Creates namespaces, links and addresses, then starts every daemon and
    /// waits until each answers on its control interface.
    pub fn deploy(topology: &Path) -> anyhow::Result<Lab> {
        Lab::deploy_with(topology, None)
    }

    /// [`Lab::deploy`] for topologies with `datastore: kubernetes` petrel
    /// nodes: their agents run `--datastore kubernetes` with a kubeconfig
    /// from `access`, reaching the API server through [`ApiProxy`] (no
    /// interface or route is added to the host).
    pub fn deploy_kube(topology: &Path, access: KubeAccess) -> anyhow::Result<Lab> {
        Lab::deploy_with(topology, Some(access))
    }

    fn deploy_with(topology: &Path, kube: Option<KubeAccess>) -> anyhow::Result<Lab> {
        let topo = Topology::load(topology)?;
        let n = LAB_COUNTER.fetch_add(1, Ordering::SeqCst);
        let prefix = format!("pt{}x{}", std::process::id(), n);
        let root = std::env::temp_dir().join(&prefix);
        if root.exists() {
            std::fs::remove_dir_all(&root)
                .with_context(|| format!("removing stale {}", root.display()))?;
        }
        std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
        // From here on, an early return drops `lab`, which cleans up.
        let mut lab = Lab {
            topo,
            prefix,
            root,
            nodes: BTreeMap::new(),
            namespaces: Vec::new(),
            logs_dumped: AtomicBool::new(false),
            kube,
            proxy: None,
            daemons_started: None,
        };
        lab.build()
            .with_context(|| format!("deploying topology {}", topology.display()))?;
        Ok(lab)
    }

    fn build(&mut self) -> anyhow::Result<()> {
        let specs = self.topo.topology.nodes.clone();
        for (name, spec) in &specs {
            let netns = format!("{}-{name}", self.prefix);
            ip(&["netns", "add", &netns])?;
            self.namespaces.push(netns.clone());
            ip(&["-n", &netns, "link", "set", "lo", "up"])?;
            // No duplicate address detection: v6 addresses are usable at once.
            netns_run(
                &netns,
                &[
                    "sysctl",
                    "-q",
                    "-w",
                    "net.ipv6.conf.all.accept_dad=0",
                    "net.ipv6.conf.default.accept_dad=0",
                ],
            )?;
            let paths = DaemonPaths {
                node: name.clone(),
                kind: spec.kind,
                netns,
                rundir: self.root.join(name),
                env: spec.env.clone(),
                ipam_dir: spec.ipam_dir.as_ref().map(|d| self.root.join(d)),
            };
            std::fs::create_dir_all(&paths.rundir)?;
            if let (Some(src), Some(dst)) = (self.topo.config_path(name), paths.config_copy()) {
                copy_config(&src, &dst, &paths)
                    .with_context(|| format!("node {name}: config {}", src.display()))?;
            }
            paths.prepare()?;
            self.nodes.insert(
                name.clone(),
                LabNode {
                    paths,
                    children: Mutex::new(Vec::new()),
                },
            );
        }
        for (a, b) in self.topo.links()? {
            let (na, nb) = (self.netns(&a.node)?, self.netns(&b.node)?);
            ip(&[
                "-n", &na, "link", "add", &a.iface, "type", "veth", "peer", "name", &b.iface,
                "netns", &nb,
            ])
            .with_context(|| format!("link {a} <-> {b}"))?;
            ip(&["-n", &na, "link", "set", &a.iface, "up"])?;
            ip(&["-n", &nb, "link", "set", &b.iface, "up"])?;
        }
        for (name, spec) in &specs {
            for cmd in spec.exec.iter().filter(|c| !is_daemon_command(c)) {
                self.exec(name, &self.substitute_node(name, cmd)?)?;
            }
        }
        self.start_api_proxy()?;
        self.daemons_started = Some(Instant::now());
        for name in specs.keys() {
            self.spawn(name)?;
        }
        for name in specs.keys() {
            self.wait_ready(name)?;
            self.run_daemon_commands(name)?;
        }
        Ok(())
    }

    /// Whether `node` is a petrel node with `datastore: kubernetes`.
    fn is_kube_node(&self, node: &str) -> bool {
        self.topo
            .topology
            .nodes
            .get(node)
            .is_some_and(|s| s.kind == Kind::Petrel && s.datastore == Datastore::Kubernetes)
    }

    /// For `datastore: kubernetes` nodes: the host forwarder, one forwarder
    /// per node on its `127.0.0.1:6443`, and each node's kubeconfig.
    fn start_api_proxy(&mut self) -> anyhow::Result<()> {
        let kube_nodes: Vec<String> = self
            .nodes
            .keys()
            .filter(|n| self.is_kube_node(n))
            .cloned()
            .collect();
        if kube_nodes.is_empty() {
            return Ok(());
        }
        let access = self.kube.as_ref().with_context(|| {
            format!(
                "nodes {kube_nodes:?} use `datastore: kubernetes`: deploy with Lab::deploy_kube"
            )
        })?;
        let mut proxy = ApiProxy::start(&self.root.join("apiserver.sock"), access.upstream()?)?;
        for node in &kube_nodes {
            proxy.add_node(&self.netns(node)?, NODE_API_PORT)?;
            let file = self.kubeconfig(node)?;
            std::fs::write(&file, access.node_kubeconfig(node)?)
                .with_context(|| format!("writing {}", file.display()))?;
        }
        self.proxy = Some(proxy);
        Ok(())
    }

    /// The kubeconfig a `datastore: kubernetes` node's agent uses (server
    /// `https://127.0.0.1:6443`, valid inside the node's namespace).
    pub fn kubeconfig(&self, node: &str) -> anyhow::Result<PathBuf> {
        Ok(self.rundir(node)?.join("kubeconfig"))
    }

    /// Where a `datastore: kubernetes` node's agent caches its last good
    /// configuration.
    pub fn kube_cache_file(&self, node: &str) -> anyhow::Result<PathBuf> {
        Ok(self.rundir(node)?.join("kube-cache.json"))
    }

    /// Starts a `datastore: kubernetes` agent the way
    /// [`DaemonPaths::spawn`] starts the others.
    fn spawn_kube_agent(&self, node: &str) -> anyhow::Result<Vec<Child>> {
        let paths = &self.node(node)?.paths;
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &paths.netns])
            .arg(petrel_bin()?)
            .args(["agent", "--node-name", node, "--datastore", "kubernetes"])
            .arg("--kubeconfig")
            .arg(self.kubeconfig(node)?)
            .arg("--cache-file")
            .arg(self.kube_cache_file(node)?)
            .arg("--api-socket")
            .arg(paths.petrel_socket());
        let filter = std::env::var("PETREL_TESTBED_LOG").unwrap_or_else(|_| "info".into());
        cmd.env("RUST_LOG", filter).env("NO_COLOR", "1");
        Ok(vec![paths.spawn_logged(cmd)?])
    }

    /// Runs the node's `exec` commands that talk to its daemon (see
    /// [`is_daemon_command`]); done after every start of the daemon.
    fn run_daemon_commands(&self, node: &str) -> anyhow::Result<()> {
        let cmds = self
            .topo
            .topology
            .nodes
            .get(node)
            .map(|s| s.exec.clone())
            .unwrap_or_default();
        for cmd in cmds.iter().filter(|c| is_daemon_command(c)) {
            self.exec(node, &self.substitute_node(node, cmd)?)?;
        }
        Ok(())
    }

    /// [`substitute`] with `node`'s values (for `exec` commands).
    fn substitute_node(&self, node: &str, text: &str) -> anyhow::Result<String> {
        Ok(substitute(text, &self.node(node)?.paths))
    }

    /// Topology name (`name:` in the file).
    /// When deploying started the daemons (namespaces, links and addresses
    /// were ready): the start of a cold-start measurement.
    pub fn daemons_started_at(&self) -> Option<Instant> {
        self.daemons_started
    }

    pub fn name(&self) -> &str {
        &self.topo.name
    }

    /// The unique prefix of this lab's namespaces (`pt<pid>x<n>`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Per-lab temporary directory holding every node's runtime directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Node names, sorted.
    pub fn nodes(&self) -> impl Iterator<Item = &str> {
        self.nodes.keys().map(String::as_str)
    }

    /// A node's kind.
    pub fn kind(&self, node: &str) -> anyhow::Result<Kind> {
        Ok(self.node(node)?.paths.kind)
    }

    /// The network namespace a node lives in.
    pub fn netns(&self, node: &str) -> anyhow::Result<String> {
        Ok(self.node(node)?.paths.netns.clone())
    }

    /// A node's runtime directory.
    pub fn rundir(&self, node: &str) -> anyhow::Result<PathBuf> {
        Ok(self.node(node)?.paths.rundir.clone())
    }

    /// petrel's live manifest directory (edit files here to reconfigure).
    /// Panics if `node` is unknown.
    pub fn node_dir(&self, node: &str) -> PathBuf {
        match self.node(node) {
            Ok(n) => n.paths.manifests(),
            Err(e) => panic!("{e}"),
        }
    }

    /// petrel's API socket for a node.
    pub fn api_socket(&self, node: &str) -> anyhow::Result<PathBuf> {
        Ok(self.node(node)?.paths.petrel_socket())
    }

    fn node(&self, node: &str) -> anyhow::Result<&LabNode> {
        self.nodes.get(node).with_context(|| {
            format!(
                "lab {}: no node {node:?} (nodes: {})",
                self.topo.name,
                self.nodes.keys().cloned().collect::<Vec<_>>().join(", ")
            )
        })
    }

    /// Runs `sh -c cmd` inside the node's namespace; error (with stderr) on
    /// a non-zero exit.
    pub fn exec(&self, node: &str, cmd: &str) -> anyhow::Result<String> {
        let ns = self.netns(node)?;
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &ns, "sh", "-c", cmd]);
        run(c).with_context(|| format!("exec on {node}: {cmd}"))
    }

    /// `birdc <cmd>` against a BIRD node.
    pub fn birdc(&self, node: &str, cmd: &str) -> anyhow::Result<String> {
        self.node(node)?.paths.birdc(cmd)
    }

    /// `vtysh -c <line>` for each line of `cmd`, against an FRR node.
    pub fn vtysh(&self, node: &str, cmd: &str) -> anyhow::Result<String> {
        self.node(node)?.paths.vtysh(cmd)
    }

    /// `gobgp <args>` (whitespace-separated) against a GoBGP node.
    pub fn gobgp(&self, node: &str, args: &str) -> anyhow::Result<String> {
        self.node(node)?.paths.gobgp(args)
    }

    /// `petrel --api-socket <sock> <args>` against a petrel node.
    pub fn petrel(&self, node: &str, args: &str) -> anyhow::Result<String> {
        self.node(node)?.paths.petrel(args)
    }

    /// Whether the node's daemon is running (`false` for `linux` nodes).
    pub fn is_running(&self, node: &str) -> anyhow::Result<bool> {
        let n = self.node(node)?;
        let mut children = lock(&n.children);
        for c in children.iter_mut() {
            if c.try_wait()?.is_none() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Stops the node's daemon: SIGTERM to its process group, SIGKILL after
    /// a grace period. Stopping a stopped node is not an error.
    pub fn stop_node(&self, node: &str) -> anyhow::Result<()> {
        let n = self.node(node)?;
        let children = std::mem::take(&mut *lock(&n.children));
        stop_children(children, &n.paths);
        Ok(())
    }

    /// Kills the node's daemon with SIGKILL, as a crash would: no
    /// NOTIFICATION, no clean-up by the daemon. Killing a stopped node is not
    /// an error.
    pub fn kill_node(&self, node: &str) -> anyhow::Result<()> {
        let n = self.node(node)?;
        let children = std::mem::take(&mut *lock(&n.children));
        signal_children(children, &n.paths, "-KILL");
        Ok(())
    }

    /// Starts the node's daemon again and waits until it answers.
    pub fn start_node(&self, node: &str) -> anyhow::Result<()> {
        if self.is_running(node)? {
            bail!("node {node}: daemon is already running");
        }
        self.spawn(node)?;
        self.wait_ready(node)?;
        self.run_daemon_commands(node)
    }

    /// [`Lab::start_node`] with extra environment variables for the daemon
    /// (test hooks such as `PETREL_TEST_IPAM_START_DELAY_MS`); file datastore
    /// nodes only.
    pub fn start_node_with_env(&self, node: &str, env: &[(&str, &str)]) -> anyhow::Result<()> {
        if self.is_running(node)? {
            bail!("node {node}: daemon is already running");
        }
        if self.is_kube_node(node) {
            bail!("node {node}: start_node_with_env is for file datastore nodes");
        }
        let n = self.node(node)?;
        *lock(&n.children) = n.paths.spawn_with_env(env)?;
        self.wait_ready(node)?;
        self.run_daemon_commands(node)
    }

    /// [`Lab::stop_node`] then [`Lab::start_node`].
    pub fn restart_node(&self, node: &str) -> anyhow::Result<()> {
        self.stop_node(node)?;
        self.start_node(node)
    }

    fn spawn(&self, node: &str) -> anyhow::Result<()> {
        let n = self.node(node)?;
        let children = if self.is_kube_node(node) {
            self.spawn_kube_agent(node)?
        } else {
            n.paths.spawn()?
        };
        *lock(&n.children) = children;
        Ok(())
    }

    fn wait_ready(&self, node: &str) -> anyhow::Result<()> {
        let n = self.node(node)?;
        let start = Instant::now();
        loop {
            let exited = lock(&n.children)
                .iter_mut()
                .find_map(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                bail!(
                    "node {node} ({}): daemon exited with {status} during startup; log:\n{}",
                    n.paths.kind,
                    tail(&self.log(node), 60)
                );
            }
            match n.paths.probe() {
                Ok(()) => return Ok(()),
                Err(e) if start.elapsed() > READY_TIMEOUT => {
                    bail!(
                        "node {node} ({}): not ready after {READY_TIMEOUT:?}: {e:#}; log:\n{}",
                        n.paths.kind,
                        tail(&self.log(node), 60)
                    )
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// The daemon's captured stdout and stderr (all starts so far).
    pub fn log(&self, node: &str) -> String {
        match self.node(node) {
            Ok(n) => std::fs::read_to_string(n.paths.log_file()).unwrap_or_default(),
            Err(e) => format!("{e}"),
        }
    }

    /// Print this on failure, after the failure itself: per node, the few
    /// log lines that explain it and the path of its full log, copied to
    /// `/tmp/petrel-testbed-logs/<test>/` (see [`crate::faillog`]).
    pub fn dump_logs(&self) -> String {
        let dir =
            Path::new(crate::faillog::LOG_ROOT).join(crate::faillog::test_name(&self.topo.name));
        let mut out = String::from("\n");
        for (name, n) in &self.nodes {
            if n.paths.kind == Kind::Linux {
                continue;
            }
            let log = self.log(name);
            let saved = crate::faillog::save(&dir, name, &log);
            out.push_str(&crate::faillog::node_summary(
                name,
                &n.paths.kind.to_string(),
                &log,
                &saved,
            ));
        }
        out
    }

    /// Runs `check` and panics with its error plus every node's log if it fails.
    pub fn check<T>(&self, check: impl FnOnce(&Lab) -> anyhow::Result<T>) -> T {
        match check(self) {
            Ok(v) => v,
            Err(e) => {
                self.logs_dumped.store(true, Ordering::SeqCst);
                panic!(
                    "lab {} ({}) failed: {e:#}\n{}",
                    self.topo.name,
                    self.prefix,
                    self.dump_logs()
                )
            }
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if std::thread::panicking() && !self.logs_dumped.load(Ordering::SeqCst) {
            eprintln!(
                "lab {} ({}) torn down during a panic; logs:{}",
                self.topo.name,
                self.prefix,
                self.dump_logs()
            );
        }
        for n in self.nodes.values() {
            let children = std::mem::take(&mut *lock(&n.children));
            stop_children(children, &n.paths);
        }
        drop(self.proxy.take());
        // Namespaces created in the lab's scheme by others (CNI pods) and
        // not removed by them go first: they hang off the nodes' links.
        if let Ok(list) = ip(&["netns", "list"]) {
            let mine = format!("{}-", self.prefix);
            for ns in list.lines().filter_map(|l| l.split_whitespace().next()) {
                if ns.starts_with(&mine) && !self.namespaces.iter().any(|n| n == ns) {
                    kill_netns_processes(ns);
                    if let Err(e) = ip(&["netns", "del", ns]) {
                        eprintln!("testbed: {e:#}");
                    }
                }
            }
        }
        for ns in self.namespaces.drain(..).rev() {
            kill_netns_processes(&ns);
            if let Err(e) = ip(&["netns", "del", &ns]) {
                eprintln!("testbed: {e:#}");
            }
        }
        if std::env::var_os("PETREL_TESTBED_KEEP").is_some() {
            eprintln!("testbed: keeping {}", self.root.display());
        } else if let Err(e) = std::fs::remove_dir_all(&self.root) {
            eprintln!("testbed: removing {}: {e}", self.root.display());
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Stops daemons in reverse start order: SIGTERM to each process group,
/// SIGKILL to the group after [`STOP_GRACE`].
fn stop_children(children: Vec<Child>, paths: &DaemonPaths) {
    signal_children(children, paths, "-TERM");
}

/// Sends `signal` to each child's process group (last started first), then
/// SIGKILL after a grace period, and removes the daemons' sockets.
fn signal_children(children: Vec<Child>, paths: &DaemonPaths, signal: &str) {
    for mut child in children.into_iter().rev() {
        let group = format!("-{}", child.id());
        let _ = Command::new("kill")
            .args([signal, "--", &group])
            .stderr(std::process::Stdio::null())
            .status();
        let start = Instant::now();
        while start.elapsed() < STOP_GRACE {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // Kill stragglers of the group even if the leader already exited.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(std::process::Stdio::null())
            .status();
        let _ = child.wait();
    }
    // Sockets and pid files of a stopped daemon must not fool the next probe.
    for f in [
        "bird.ctl",
        "bird.pid",
        "bgpd.vty",
        "bgpd.pid",
        "zebra.vty",
        "zebra.pid",
        "zserv.api",
    ] {
        let _ = std::fs::remove_file(paths.rundir.join(f));
    }
    let _ = std::fs::remove_file(paths.petrel_socket());
}

fn kill_netns_processes(ns: &str) {
    if let Ok(out) = run({
        let mut c = Command::new("ip");
        c.args(["netns", "pids", ns]);
        c
    }) {
        for pid in out.split_whitespace() {
            let _ = Command::new("kill").args(["-KILL", pid]).status();
        }
    }
}

/// `exec` commands that need the node's daemon running: those calling the
/// `gobgp` client (GoBGP has no static routes in its config file, so routes
/// are injected with `gobgp global rib add`). They run once the daemon is
/// ready, and again after each [`Lab::start_node`]; all other commands run
/// once, after the links are up and before any daemon starts.
pub fn is_daemon_command(cmd: &str) -> bool {
    cmd.split_whitespace().next() == Some("gobgp")
}

/// Last `n` lines of `s`.
pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    let start = lines.len().saturating_sub(n);
    lines[start..].join("\n")
}

fn ip(args: &[&str]) -> anyhow::Result<String> {
    let mut c = Command::new("ip");
    c.args(args);
    run(c)
}

fn netns_run(ns: &str, args: &[&str]) -> anyhow::Result<String> {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns]).args(args);
    run(c)
}

/// Replaces `{{rundir}}`, `{{node}}`, `{{netns}}` and `{{labdir}}` (the lab's
/// directory, shared by all nodes: the parent of every `rundir`) in config
/// text and `exec` commands.
pub fn substitute(text: &str, paths: &DaemonPaths) -> String {
    let labdir = paths.rundir.parent().unwrap_or(&paths.rundir);
    text.replace("{{labdir}}", &labdir.display().to_string())
        .replace("{{rundir}}", &paths.rundir.display().to_string())
        .replace("{{node}}", &paths.node)
        .replace("{{netns}}", &paths.netns)
}

/// Copies a config file, or a directory of files (recursively), substituting
/// placeholders in each file.
fn copy_config(src: &Path, dst: &Path, paths: &DaemonPaths) -> anyhow::Result<()> {
    if src.is_dir() {
        std::fs::create_dir_all(dst)?;
        for entry in std::fs::read_dir(src)? {
            let entry = entry?;
            copy_config(&entry.path(), &dst.join(entry.file_name()), paths)?;
        }
        return Ok(());
    }
    let text =
        std::fs::read_to_string(src).with_context(|| format!("reading {}", src.display()))?;
    std::fs::write(dst, substitute(&text, paths))
        .with_context(|| format!("writing {}", dst.display()))?;
    Ok(())
}

/// Deletes namespaces and temp dirs left by labs whose process is gone
/// (names `pt<pid>x<n>-*` where `<pid>` no longer runs). Returns what was removed.
pub fn cleanup_stale() -> anyhow::Result<Vec<String>> {
    let mut removed = Vec::new();
    let list = ip(&["netns", "list"])?;
    for line in list.lines() {
        let Some(ns) = line.split_whitespace().next() else {
            continue;
        };
        if stale_owner(ns).is_some() {
            kill_netns_processes(ns);
            ip(&["netns", "del", ns])?;
            removed.push(ns.to_string());
        }
    }
    if let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if stale_owner(&format!("{name}-")).is_some() && e.path().is_dir() {
                std::fs::remove_dir_all(e.path())?;
                removed.push(e.path().display().to_string());
            }
        }
    }
    Ok(removed)
}

/// For a name `pt<pid>x<n>-...` whose `<pid>` is not running, the pid.
fn stale_owner(name: &str) -> Option<u32> {
    let rest = name.strip_prefix("pt")?;
    let (pid, rest) = rest.split_once('x')?;
    let (n, _) = rest.split_once('-')?;
    let pid: u32 = pid.parse().ok()?;
    n.parse::<u32>().ok()?;
    (!Path::new(&format!("/proc/{pid}")).exists()).then_some(pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_owner_only_matches_dead_lab_names() {
        assert_eq!(stale_owner("pt999999999x0-petrel"), Some(999_999_999));
        let me = format!("pt{}x3-bird", std::process::id());
        assert_eq!(stale_owner(&me), None, "own process is alive");
        assert_eq!(stale_owner("ptx1-a"), None);
        assert_eq!(stale_owner("other-ns"), None);
        assert_eq!(stale_owner("pt12xab-c"), None);
    }

    #[test]
    fn tail_keeps_last_lines() {
        assert_eq!(tail("a\nb\nc", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
    }

    #[test]
    fn substitutes_placeholders() {
        let p = DaemonPaths {
            node: "r1".into(),
            kind: Kind::Bird,
            netns: "pt1x0-r1".into(),
            rundir: "/tmp/pt1x0/r1".into(),
            env: Default::default(),
            ipam_dir: None,
        };
        assert_eq!(
            substitute("s {{rundir}}/x {{node}} {{netns}} {{labdir}}/ipam", &p),
            "s /tmp/pt1x0/r1/x r1 pt1x0-r1 /tmp/pt1x0/ipam"
        );
    }
}
