//! Runs real CNI plugins the way a container runtime does (CNI spec 1.0 and
//! 1.1, as libcni implements it for a network configuration list).
//!
//! A pod is a network namespace named inside the lab's scheme
//! (`<lab prefix>-<node>-pod<n>`, so [`crate::Lab`]'s cleanup and `testbed
//! cleanup` remove leftovers). [`Cni::in_netns`] does the same for any named
//! namespace, e.g. a containerlab container's (`ip netns attach`). Each plugin of the chain runs *inside the
//! node's namespace* (`ip netns exec <node-ns> <plugin>`), with the plugin's
//! configuration on stdin (`name`, `cniVersion` and `prevResult` injected) and
//! `CNI_COMMAND`, `CNI_CONTAINERID`, `CNI_NETNS=/var/run/netns/<pod>`,
//! `CNI_IFNAME`, `CNI_ARGS` and `CNI_PATH` in the environment:
//!
//! * ADD runs the plugins in order, each getting the previous result; the last
//!   result is the pod's. A failed ADD is torn down with DEL, as runtimes do.
//! * DEL runs them in reverse order with the cached ADD result, CHECK in order.
//! * GC and STATUS run only for lists of version 1.1.0 or later (libcni skips
//!   them otherwise); [`Cni::delegate_ipam`] calls the IPAM plugin directly
//!   the way a main plugin delegates to it, for any command.
//!
//! ```no_run
//! # fn f(lab: &petrel_testbed::Lab) -> anyhow::Result<()> {
//! use petrel_testbed::cni::Cni;
//! let cni = Cni::new(lab, "node1", r#"{"cniVersion": "1.0.0", "name": "pods",
//!     "plugins": [{"type": "ptp", "ipam": {"type": "host-local",
//!     "ranges": [[{"subnet": "10.1.0.0/24"}]]}}]}"#)?;
//! let pod = cni.add()?;
//! pod.exec(&format!("ping -c 1 {}", pod.ipv4().unwrap()))?;
//! # Ok(()) }
//! ```

use crate::daemon::{petrel_bin, run};
use crate::lab::Lab;
use anyhow::{Context, bail};
use serde_json::{Value, json};
use std::fmt;
use std::io::{Read, Write};
use std::marker::PhantomData;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub mod capture;
pub mod ipam;
mod result;

pub use result::{CniError, CniInterface, CniIp, CniResult, IpPrefix, common_prefix_len};

/// Directories searched for the reference plugins (Debian, then upstream).
pub const SYSTEM_PLUGIN_DIRS: [&str; 2] = ["/usr/lib/cni", "/opt/cni/bin"];
/// How long one plugin invocation may take before it is killed.
pub const PLUGIN_TIMEOUT: Duration = Duration::from_secs(60);
/// CNI's error code for "try again later" (also: pool exhausted, agent down).
pub const CNI_ERR_TRY_AGAIN_LATER: u32 = 11;

static POD_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// The plugin search path a runtime would use here: the system plugin
/// directories that exist, then the directory of the petrel binary (where
/// cargo puts `petrel-ipam`).
pub fn default_cni_path() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = SYSTEM_PLUGIN_DIRS
        .iter()
        .map(PathBuf::from)
        .filter(|d| d.is_dir())
        .collect();
    if let Some(dir) = petrel_bin()
        .ok()
        .and_then(|b| b.parent().map(Path::to_path_buf))
    {
        dirs.push(dir);
    }
    dirs
}

/// The network configuration list a runtime uses on a petrel node (the one
/// `petrel agent --cni-conf-dir` writes): the reference `ptp` plugin,
/// delegating to `petrel-ipam` on the agent's API socket `socket`.
pub fn petrel_conflist(socket: &Path) -> String {
    json!({
        "cniVersion": "1.0.0",
        "name": "petrel",
        "plugins": [{
            "type": "ptp",
            "ipMasq": false,
            "ipam": {"type": "petrel-ipam", "socket": socket.display().to_string()},
        }],
    })
    .to_string()
}

/// A network configuration list and where and how to run it.
#[derive(Clone)]
pub struct Cni<'a> {
    /// Pods' namespaces are named `<prefix>-<node>-pod<n>`.
    prefix: String,
    node: String,
    node_netns: String,
    name: String,
    cni_version: String,
    plugins: Vec<Value>,
    cni_path: Vec<PathBuf>,
    ifname: String,
    lab: PhantomData<&'a Lab>,
}

impl<'a> Cni<'a> {
    /// A runner for `conf` (a `.conflist`, or a single-plugin `.conf`, as
    /// JSON text) on `node`, with [`default_cni_path`] and interface `eth0`.
    pub fn new(lab: &'a Lab, node: &str, conf: &str) -> anyhow::Result<Cni<'a>> {
        Cni::in_netns(lab.prefix(), node, &lab.netns(node)?, conf)
    }

    /// A runner for `conf` whose plugins run in the named network namespace
    /// `node_netns` (`/var/run/netns/<node_netns>`), for the node `node`;
    /// pods' namespaces are named `<prefix>-<node>-pod<n>`.
    pub fn in_netns(
        prefix: &str,
        node: &str,
        node_netns: &str,
        conf: &str,
    ) -> anyhow::Result<Cni<'a>> {
        let v: Value = serde_json::from_str(conf).context("CNI network configuration")?;
        let name = v
            .get("name")
            .and_then(Value::as_str)
            .context("network configuration has no \"name\"")?
            .to_string();
        let cni_version = v
            .get("cniVersion")
            .and_then(Value::as_str)
            .context("network configuration has no \"cniVersion\"")?
            .to_string();
        let plugins = match v.get("plugins") {
            Some(Value::Array(p)) if !p.is_empty() => p.clone(),
            Some(_) => bail!("\"plugins\" must be a non-empty array"),
            None => vec![v.clone()],
        };
        for (i, p) in plugins.iter().enumerate() {
            if p.get("type").and_then(Value::as_str).is_none() {
                bail!("plugin #{i} has no \"type\"");
            }
        }
        Ok(Cni {
            prefix: prefix.to_string(),
            node: node.to_string(),
            node_netns: node_netns.to_string(),
            name,
            cni_version,
            plugins,
            cni_path: default_cni_path(),
            ifname: "eth0".into(),
            lab: PhantomData,
        })
    }

    /// A runner for the configuration a runtime would pick in `dir`: the
    /// first `*.conflist`, `*.conf` or `*.json` file in lexical order.
    pub fn from_conf_dir(lab: &'a Lab, node: &str, dir: &Path) -> anyhow::Result<Cni<'a>> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .with_context(|| format!("listing CNI config dir {}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension()
                    .is_some_and(|e| e == "conflist" || e == "conf" || e == "json")
            })
            .collect();
        files.sort();
        let file = files
            .first()
            .with_context(|| format!("no CNI configuration in {}", dir.display()))?;
        let text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        Cni::new(lab, node, &text).with_context(|| format!("in {}", file.display()))
    }

    /// Replaces the plugin search path.
    pub fn with_cni_path(mut self, dirs: Vec<PathBuf>) -> Self {
        self.cni_path = dirs;
        self
    }

    /// The node the plugins run on.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The network name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The plugins' configurations (without injected keys).
    pub fn plugins(&self) -> &[Value] {
        &self.plugins
    }

    /// Creates a pod: a fresh network namespace with `lo` up, then ADD
    /// through the chain. On failure the pod is torn down (DEL, namespace
    /// removed) and the first plugin error is returned (a [`CniError`] when a
    /// plugin failed; use `downcast_ref`).
    pub fn add(&self) -> anyhow::Result<Pod<'a>> {
        let n = POD_COUNTER.fetch_add(1, Ordering::SeqCst);
        let pod_name = format!("pod{n}");
        let netns = format!("{}-{}-{pod_name}", self.prefix, self.node);
        let mut c = Command::new("ip");
        c.args(["netns", "add", &netns]);
        run(c).with_context(|| format!("creating pod namespace {netns}"))?;
        let mut pod = Pod {
            cni: self.clone(),
            name: pod_name,
            container_id: netns.clone(),
            netns,
            result: None,
            torn_down: false,
        };
        let mut c = Command::new("ip");
        c.args(["-n", &pod.netns, "link", "set", "lo", "up"]);
        run(c)?;
        let mut prev: Option<Value> = None;
        for plugin in &self.plugins {
            let out = self.invoke(plugin, "ADD", Some(&pod), prev.as_ref(), None)?;
            let out = out.with_context(|| {
                format!("ADD of plugin {} printed no result", plugin_type(plugin))
            })?;
            prev = Some(out);
        }
        let raw = prev.context("no plugins")?;
        pod.result = Some(CniResult::parse(raw).context("parsing the ADD result")?);
        Ok(pod)
    }

    /// GC with the given live attachments (`(container id, ifname)`), for
    /// every plugin; skipped (Ok) for lists older than 1.1.0, like libcni.
    pub fn gc(&self, valid: &[(&str, &str)]) -> anyhow::Result<()> {
        if !version_at_least(&self.cni_version, (1, 1, 0)) {
            return Ok(());
        }
        let attachments = attachments_json(valid);
        for plugin in &self.plugins {
            self.invoke(plugin, "GC", None, None, Some(&attachments))?;
        }
        Ok(())
    }

    /// STATUS of every plugin; skipped (Ok) for lists older than 1.1.0.
    pub fn status(&self) -> anyhow::Result<()> {
        if !version_at_least(&self.cni_version, (1, 1, 0)) {
            return Ok(());
        }
        for plugin in &self.plugins {
            self.invoke(plugin, "STATUS", None, None, None)?;
        }
        Ok(())
    }

    /// Runs the first plugin's IPAM plugin directly with `command`, exactly
    /// as the main plugin delegates to it (same environment, the main
    /// plugin's configuration on stdin) but with `cniVersion` set to
    /// `version`: the Debian ptp plugin stops at CNI 1.0, while GC and STATUS
    /// need 1.1. `pod` gives the attachment for ADD/DEL/CHECK; `valid` the
    /// live attachments for GC. Returns what the plugin printed.
    pub fn delegate_ipam(
        &self,
        command: &str,
        version: &str,
        pod: Option<&Pod<'_>>,
        valid: &[(&str, &str)],
    ) -> anyhow::Result<Option<Value>> {
        let main = self
            .plugins
            .iter()
            .find(|p| p.get("ipam").is_some())
            .context("no plugin of the list has an \"ipam\" section")?;
        let ipam_type = main["ipam"]
            .get("type")
            .and_then(Value::as_str)
            .context("ipam section has no \"type\"")?;
        let mut conf = main.clone();
        conf["type"] = json!(ipam_type);
        let mut this = self.clone();
        this.cni_version = version.to_string();
        let gc = (command == "GC").then(|| attachments_json(valid));
        let prev = pod.and_then(|p| p.result.as_ref().map(|r| r.raw.clone()));
        let prev = prev.filter(|_| command == "DEL" || command == "CHECK");
        this.invoke(&conf, command, pod, prev.as_ref(), gc.as_ref())
    }

    /// `VERSION` of a plugin by type.
    pub fn version(&self, plugin_type: &str) -> anyhow::Result<Value> {
        let conf = json!({ "type": plugin_type });
        self.invoke(&conf, "VERSION", None, None, None)?
            .context("VERSION printed nothing")
    }

    fn find_plugin(&self, plugin_type: &str) -> anyhow::Result<PathBuf> {
        self.cni_path
            .iter()
            .map(|d| d.join(plugin_type))
            .find(|p| p.is_file())
            .with_context(|| {
                format!(
                    "failed to find plugin {plugin_type:?} in path {:?}",
                    self.cni_path
                )
            })
    }

    /// Runs one plugin. `pod` gives the attachment (ADD/DEL/CHECK), `prev`
    /// the `prevResult`, `gc` the `cni.dev/valid-attachments` list.
    fn invoke(
        &self,
        plugin: &Value,
        command: &str,
        pod: Option<&Pod<'_>>,
        prev: Option<&Value>,
        gc: Option<&Value>,
    ) -> anyhow::Result<Option<Value>> {
        let ptype = plugin_type(plugin);
        let bin = self.find_plugin(&ptype)?;
        let stdin = if command == "VERSION" {
            json!({ "cniVersion": self.cni_version })
        } else {
            let mut conf = plugin.clone();
            conf["name"] = json!(self.name);
            conf["cniVersion"] = json!(self.cni_version);
            if let Some(prev) = prev {
                conf["prevResult"] = prev.clone();
            }
            if let Some(gc) = gc {
                conf["cni.dev/valid-attachments"] = gc.clone();
            }
            conf
        };
        let path = std::env::join_paths(&self.cni_path).context("CNI_PATH")?;
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.node_netns])
            .arg(&bin)
            .env("CNI_COMMAND", command)
            .env("CNI_PATH", path);
        for var in ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS"] {
            cmd.env_remove(var);
        }
        if let Some(pod) = pod {
            cmd.env("CNI_CONTAINERID", &pod.container_id)
                .env("CNI_NETNS", pod.netns_path())
                .env("CNI_IFNAME", &self.ifname)
                .env(
                    "CNI_ARGS",
                    format!(
                        "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={};\
                         K8S_POD_INFRA_CONTAINER_ID={}",
                        pod.name, pod.container_id
                    ),
                );
        }
        let input = serde_json::to_vec(&stdin)?;
        let (status, stdout, stderr) = run_with_input(cmd, &input, PLUGIN_TIMEOUT)
            .with_context(|| format!("running CNI plugin {}", bin.display()))?;
        let parsed: Option<Value> = if stdout.trim().is_empty() {
            None
        } else {
            Some(serde_json::from_str(&stdout).with_context(|| {
                format!(
                    "plugin {ptype} {command}: output is not JSON: {stdout:?}; stderr {stderr:?}"
                )
            })?)
        };
        if !status.success() {
            let field = |k: &str| {
                parsed
                    .as_ref()
                    .and_then(|v| v.get(k))
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            return Err(CniError {
                plugin: ptype,
                command: command.to_string(),
                code: parsed
                    .as_ref()
                    .and_then(|v| v.get("code"))
                    .and_then(Value::as_u64)
                    .map(|c| c as u32),
                msg: field("msg"),
                details: field("details"),
                stderr,
                exit: status.to_string(),
            }
            .into());
        }
        Ok(parsed)
    }
}

/// A pod: its namespace, attachment and ADD result. Dropping it runs DEL
/// and removes the namespace (errors are printed, not raised).
pub struct Pod<'a> {
    cni: Cni<'a>,
    name: String,
    netns: String,
    container_id: String,
    result: Option<CniResult>,
    torn_down: bool,
}

impl fmt::Debug for Pod<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pod {} on {} (", self.name, self.cni.node)?;
        let ips: Vec<String> = self.ips().iter().map(|i| i.address.to_string()).collect();
        write!(f, "{})", ips.join(", "))
    }
}

impl<'a> Pod<'a> {
    /// The pod's name (`pod<n>`, also `K8S_POD_NAME`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The node the pod runs on.
    pub fn node(&self) -> &str {
        &self.cni.node
    }

    /// The pod's network namespace name.
    pub fn netns(&self) -> &str {
        &self.netns
    }

    /// `/var/run/netns/<netns>`, the `CNI_NETNS` given to plugins.
    pub fn netns_path(&self) -> String {
        format!("/var/run/netns/{}", self.netns)
    }

    /// `CNI_CONTAINERID`.
    pub fn container_id(&self) -> &str {
        &self.container_id
    }

    /// `CNI_IFNAME`.
    pub fn ifname(&self) -> &str {
        &self.cni.ifname
    }

    /// The ADD result.
    pub fn result(&self) -> Option<&CniResult> {
        self.result.as_ref()
    }

    /// The result's addresses.
    pub fn ips(&self) -> &[CniIp] {
        self.result
            .as_ref()
            .map(|r| r.ips.as_slice())
            .unwrap_or(&[])
    }

    /// The pod's first IPv4 address.
    pub fn ipv4(&self) -> Option<Ipv4Addr> {
        self.result.as_ref().and_then(CniResult::ipv4)
    }

    /// The pod's first IPv6 address.
    pub fn ipv6(&self) -> Option<Ipv6Addr> {
        self.result.as_ref().and_then(CniResult::ipv6)
    }

    /// Runs `sh -c cmd` inside the pod's namespace; error (with stderr) on a
    /// non-zero exit.
    pub fn exec(&self, cmd: &str) -> anyhow::Result<String> {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.netns, "sh", "-c", cmd]);
        run(c).with_context(|| format!("exec in {self:?}: {cmd}"))
    }

    /// One ping from the pod to `addr` (v4 or v6), waiting at most 1 s.
    pub fn ping(&self, addr: IpAddr) -> anyhow::Result<()> {
        self.exec(&format!("ping -n -c 1 -W 1 {addr}")).map(drop)
    }

    /// CHECK through the chain (plugins in order, with the ADD result).
    pub fn check(&self) -> anyhow::Result<()> {
        let prev = self.result.as_ref().map(|r| r.raw.clone());
        for plugin in &self.cni.plugins {
            self.cni
                .invoke(plugin, "CHECK", Some(self), prev.as_ref(), None)?;
        }
        Ok(())
    }

    /// DEL through the chain (plugins in reverse order), then removes the
    /// namespace. The first error is returned after both were tried.
    pub fn delete(mut self) -> anyhow::Result<()> {
        self.teardown()
    }

    fn teardown(&mut self) -> anyhow::Result<()> {
        if self.torn_down {
            return Ok(());
        }
        self.torn_down = true;
        let prev = self.result.as_ref().map(|r| r.raw.clone());
        let mut first_err = None;
        for plugin in self.cni.plugins.iter().rev() {
            if let Err(e) = self
                .cni
                .invoke(plugin, "DEL", Some(self), prev.as_ref(), None)
            {
                first_err.get_or_insert(e);
            }
        }
        if let Ok(pids) = run({
            let mut c = Command::new("ip");
            c.args(["netns", "pids", &self.netns]);
            c
        }) {
            for pid in pids.split_whitespace() {
                let _ = Command::new("kill").args(["-KILL", pid]).status();
            }
        }
        let mut c = Command::new("ip");
        c.args(["netns", "del", &self.netns]);
        if let Err(e) = run(c) {
            first_err.get_or_insert(e);
        }
        match first_err {
            Some(e) => Err(e.context(format!("tearing down {self:?}"))),
            None => Ok(()),
        }
    }
}

impl Drop for Pod<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.teardown() {
            eprintln!("testbed: {e:#}");
        }
    }
}

fn plugin_type(plugin: &Value) -> String {
    plugin
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("?")
        .to_string()
}

fn attachments_json(valid: &[(&str, &str)]) -> Value {
    Value::Array(
        valid
            .iter()
            .map(|(id, ifname)| json!({ "containerID": id, "ifname": ifname }))
            .collect(),
    )
}

/// Whether a `major.minor.patch` version is at least `min`.
pub fn version_at_least(version: &str, min: (u32, u32, u32)) -> bool {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let v = (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    );
    v >= min
}

/// Runs `cmd` with `input` on stdin; returns exit status, stdout, stderr.
/// Kills it after `timeout`.
fn run_with_input(
    mut cmd: Command,
    input: &[u8],
    timeout: Duration,
) -> anyhow::Result<(std::process::ExitStatus, String, String)> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {cmd:?}"))?;
    let mut stdin = child.stdin.take().context("stdin")?;
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let mut out = child.stdout.take().context("stdout")?;
    let mut err = child.stderr.take().context("stderr")?;
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{cmd:?} did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let _ = writer.join();
    let stdout = out_reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    Ok((status, stdout, stderr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare() {
        assert!(version_at_least("1.1.0", (1, 1, 0)));
        assert!(version_at_least("1.2.0", (1, 1, 0)));
        assert!(!version_at_least("1.0.0", (1, 1, 0)));
        assert!(!version_at_least("0.4.0", (1, 1, 0)));
    }
}
