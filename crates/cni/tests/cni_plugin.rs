//! End-to-end tests of the `petrel-ipam` CNI plugin binary (CNI spec
//! 1.0.0/1.1.0) against the real `petrel.v1.IpamService` server over a Unix
//! socket, with an in-memory IPAM backend; and of the real `ptp` plugin of
//! Debian's containernetworking-plugins delegating to it, inside throwaway
//! network namespaces (a "host" and a "pod" one; the machine's own
//! interfaces and routes are never touched).

use petrel_dataplane::netns::Netns;
use petrel_ipam::backend::{
    AllocateArgs, AllocationInfo, AttachmentKey, IpamBackend, IpamBackendError, IpamStatusInfo,
    PodAddress,
};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;

const PTP: &str = "/usr/lib/cni/ptp";

/// An in-memory IPAM: one IPv4 and (optionally) one IPv6 block with the
/// first host address as gateway, lowest free address first.
struct FakeIpam {
    v6: bool,
    /// Allocate from a second block (10.77.0.64/26, fd77::40/122) while the
    /// gateway stays in the first one: a node-wide gateway per family.
    second_block: bool,
    capacity: usize,
    ready: bool,
    allocs: Mutex<BTreeMap<AttachmentKey, AllocationInfo>>,
}

impl FakeIpam {
    fn new(v6: bool, capacity: usize) -> Self {
        FakeIpam {
            v6,
            second_block: false,
            capacity,
            ready: true,
            allocs: Mutex::default(),
        }
    }

    fn held(&self) -> Vec<String> {
        self.allocs
            .lock()
            .unwrap()
            .keys()
            .map(|k| format!("{}/{}", k.container_id, k.ifname))
            .collect()
    }
}

fn pod_address(v4: bool, second_block: bool, host: u8) -> PodAddress {
    let host = if second_block { host + 64 } else { host };
    let (block, gw, addr): (&str, IpAddr, IpAddr) = match (v4, second_block) {
        (true, false) => (
            "10.77.0.0/26",
            "10.77.0.1".parse().unwrap(),
            format!("10.77.0.{host}").parse().unwrap(),
        ),
        (true, true) => (
            "10.77.0.64/26",
            "10.77.0.1".parse().unwrap(),
            format!("10.77.0.{host}").parse().unwrap(),
        ),
        (false, false) => (
            "fd77::/122",
            "fd77::1".parse().unwrap(),
            format!("fd77::{host:x}").parse().unwrap(),
        ),
        (false, true) => (
            "fd77::40/122",
            "fd77::1".parse().unwrap(),
            format!("fd77::{host:x}").parse().unwrap(),
        ),
    };
    let block: ipnet::IpNet = block.parse().unwrap();
    PodAddress {
        address: ipnet::IpNet::new(addr, block.prefix_len()).unwrap(),
        gateway: gw,
        block,
        pool: "test-pool".into(),
    }
}

#[tonic::async_trait]
impl IpamBackend for FakeIpam {
    async fn allocate(&self, a: AllocateArgs) -> Result<Vec<PodAddress>, IpamBackendError> {
        let mut allocs = self.allocs.lock().unwrap();
        if let Some(held) = allocs.get(&a.attachment) {
            return Ok(held.addresses.clone());
        }
        if allocs.len() >= self.capacity {
            return Err(IpamBackendError::Exhausted(
                "pool test-pool (10.77.0.0/26) is exhausted and has no free block to claim".into(),
            ));
        }
        // Lowest host number not in use; 1 is the gateway.
        let used: Vec<IpAddr> = allocs
            .values()
            .flat_map(|x| x.addresses.iter().map(|p| p.address.addr()))
            .collect();
        let host = (2u8..)
            .find(|h| !used.contains(&pod_address(true, self.second_block, *h).address.addr()))
            .unwrap();
        let mut addresses = vec![pod_address(true, self.second_block, host)];
        if self.v6 {
            addresses.push(pod_address(false, self.second_block, host));
        }
        allocs.insert(
            a.attachment.clone(),
            AllocationInfo {
                attachment: a.attachment,
                network: a.network,
                pod_namespace: a.pod_namespace,
                pod_name: a.pod_name,
                netns: a.netns,
                addresses: addresses.clone(),
            },
        );
        Ok(addresses)
    }

    async fn release(
        &self,
        k: AttachmentKey,
        _network: String,
    ) -> Result<Vec<PodAddress>, IpamBackendError> {
        Ok(self
            .allocs
            .lock()
            .unwrap()
            .remove(&k)
            .map(|a| a.addresses)
            .unwrap_or_default())
    }

    async fn check(
        &self,
        k: AttachmentKey,
        _network: String,
    ) -> Result<Option<AllocationInfo>, IpamBackendError> {
        Ok(self.allocs.lock().unwrap().get(&k).cloned())
    }

    async fn gc(
        &self,
        network: String,
        keep: Vec<AttachmentKey>,
    ) -> Result<Vec<AllocationInfo>, IpamBackendError> {
        let mut allocs = self.allocs.lock().unwrap();
        let gone: Vec<AttachmentKey> = allocs
            .iter()
            .filter(|(k, a)| a.network == network && !keep.contains(k))
            .map(|(k, _)| k.clone())
            .collect();
        Ok(gone.iter().filter_map(|k| allocs.remove(k)).collect())
    }

    async fn status(&self) -> Result<IpamStatusInfo, IpamBackendError> {
        Ok(IpamStatusInfo {
            node: "node1".into(),
            ready: self.ready,
            not_ready_reason: (!self.ready).then(|| "start-up reconcile is running".into()),
            ..Default::default()
        })
    }
}

/// The IPAM service on a temporary Unix socket, served until dropped.
struct Server {
    socket: PathBuf,
    backend: Arc<FakeIpam>,
    stop: CancellationToken,
    rt: Option<tokio::runtime::Runtime>,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start(backend: FakeIpam) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("petrel.sock");
        let backend = Arc::new(backend);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let stop = CancellationToken::new();
        let listener = {
            let _g = rt.enter();
            tokio::net::UnixListener::bind(&socket).unwrap()
        };
        let svc = petrel_api::ipam::service(backend.clone());
        let stopped = stop.clone().cancelled_owned();
        rt.spawn(async move {
            tonic::transport::Server::builder()
                .add_service(svc)
                .serve_with_incoming_shutdown(
                    tokio_stream::wrappers::UnixListenerStream::new(listener),
                    stopped,
                )
                .await
                .unwrap();
        });
        Server {
            socket,
            backend,
            stop,
            rt: Some(rt),
            _dir: dir,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(std::time::Duration::from_secs(2));
        }
    }
}

fn plugin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_petrel-ipam"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn netconf(version: &str, socket: &Path) -> Value {
    json!({
        "cniVersion": version,
        "name": "petrel-test",
        "type": "ptp",
        "ipMasq": false,
        "ipam": {"type": "petrel-ipam", "socket": socket, "timeoutSeconds": 10},
    })
}

/// What a plugin run printed.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}): {:?} / {}",
                self.stdout, self.stderr
            )
        })
    }
    fn ok(&self) -> &Self {
        assert_eq!(
            self.code, 0,
            "stdout {} stderr {}",
            self.stdout, self.stderr
        );
        self
    }
    /// A failed run with a CNI error result of `code`; returns its msg.
    fn cni_error(&self, code: u32) -> String {
        assert_ne!(self.code, 0, "expected a failure, got {}", self.stdout);
        let v = self.json();
        assert_eq!(v["code"], code, "{v}");
        v["msg"].as_str().unwrap().to_string()
    }
}

/// Runs `program` (optionally in `netns` with `ip netns exec`) the way a
/// runtime does: a clean environment with the CNI variables, `conf` on stdin.
fn exec(
    netns: Option<&str>,
    program: &str,
    cmd: &str,
    container: &str,
    pod_ns: &str,
    conf: &Value,
) -> Run {
    let mut c = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, program]);
            c
        }
        None => Command::new(program),
    };
    c.env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("CNI_COMMAND", cmd)
        .env("CNI_CONTAINERID", container)
        .env("CNI_NETNS", format!("/run/netns/{pod_ns}"))
        .env("CNI_IFNAME", "eth0")
        .env(
            "CNI_ARGS",
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0",
        )
        .env("CNI_PATH", plugin_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&serde_json::to_vec(conf).unwrap())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn ipam(cmd: &str, container: &str, conf: &Value) -> Run {
    exec(
        None,
        env!("CARGO_BIN_EXE_petrel-ipam"),
        cmd,
        container,
        "pod-x",
        conf,
    )
}

#[test]
fn version_lists_supported_versions() {
    let r = ipam("VERSION", "", &json!({"cniVersion": "1.1.0"}));
    r.ok();
    assert_eq!(
        r.json(),
        json!({"cniVersion": "1.1.0",
               "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]})
    );
}

#[test]
fn add_check_del_round_trip() {
    let srv = Server::start(FakeIpam::new(true, 10));
    let conf = netconf("1.1.0", &srv.socket);
    let add = ipam("ADD", "c1", &conf);
    add.ok();
    let result = add.json();
    assert_eq!(
        result,
        json!({
            "cniVersion": "1.1.0",
            "ips": [
                {"address": "10.77.0.2/26", "gateway": "10.77.0.1"},
                {"address": "fd77::2/122", "gateway": "fd77::1"}
            ],
            "routes": [
                {"dst": "0.0.0.0/0", "gw": "10.77.0.1"},
                {"dst": "::/0", "gw": "fd77::1"}
            ]
        })
    );
    // The pod's identity from CNI_ARGS reached the agent.
    {
        let allocs = srv.backend.allocs.lock().unwrap();
        let a = allocs.values().next().unwrap();
        assert_eq!(a.pod_name.as_deref(), Some("web-0"));
        assert_eq!(a.pod_namespace.as_deref(), Some("default"));
        assert_eq!(a.network, "petrel-test");
        assert_eq!(a.netns, "/run/netns/pod-x");
    }
    // ADD again: the same addresses (idempotent), nothing new held.
    assert_eq!(ipam("ADD", "c1", &conf).ok().json(), result);
    assert_eq!(srv.backend.held(), ["c1/eth0"]);
    // A second pod gets the next address.
    let add2 = ipam("ADD", "c2", &conf);
    assert_eq!(add2.ok().json()["ips"][0]["address"], "10.77.0.3/26");

    // CHECK with the ADD result as prevResult: success, no output.
    let mut check_conf = conf.clone();
    check_conf["prevResult"] = result.clone();
    let check = ipam("CHECK", "c1", &check_conf);
    check.ok();
    assert_eq!(check.stdout, "");
    // CHECK against a prevResult that lacks the address fails.
    let mut wrong = conf.clone();
    wrong["prevResult"] = json!({"cniVersion": "1.1.0", "ips": [{"address": "10.77.0.9/26"}]});
    let msg = ipam("CHECK", "c1", &wrong).cni_error(100);
    assert!(msg.contains("10.77.0.2"), "{msg}");

    // DEL releases; DEL again still succeeds; CHECK then fails.
    let del = ipam("DEL", "c1", &conf);
    del.ok();
    assert_eq!(del.stdout, "");
    assert_eq!(srv.backend.held(), ["c2/eth0"]);
    ipam("DEL", "c1", &conf).ok();
    let msg = ipam("CHECK", "c1", &check_conf).cni_error(100);
    assert!(msg.contains("no address is allocated"), "{msg}");
}

#[test]
fn results_for_older_configs_carry_ip_versions() {
    let srv = Server::start(FakeIpam::new(false, 10));
    let r = ipam("ADD", "c1", &netconf("0.3.1", &srv.socket));
    let v = r.ok().json();
    assert_eq!(v["cniVersion"], "0.3.1");
    assert_eq!(
        v["ips"],
        json!([{"version": "4", "address": "10.77.0.2/26", "gateway": "10.77.0.1"}])
    );
    assert_eq!(
        v["routes"],
        json!([{"dst": "0.0.0.0/0", "gw": "10.77.0.1"}])
    );
}

#[test]
fn gc_releases_what_the_runtime_no_longer_has() {
    let srv = Server::start(FakeIpam::new(false, 10));
    let conf = netconf("1.1.0", &srv.socket);
    for c in ["c1", "c2", "c3"] {
        ipam("ADD", c, &conf).ok();
    }
    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] = json!([
        {"containerID": "c2", "ifname": "eth0"},
        {"containerID": "c9", "ifname": "eth0"}
    ]);
    let r = ipam("GC", "", &gc);
    r.ok();
    assert_eq!(r.stdout, "");
    assert_eq!(srv.backend.held(), ["c2/eth0"]);
    // Without the list, GC refuses instead of releasing everything.
    ipam("GC", "", &conf).cni_error(7);
    assert_eq!(srv.backend.held(), ["c2/eth0"]);
}

#[test]
fn status_reports_agent_readiness() {
    let srv = Server::start(FakeIpam::new(false, 10));
    let r = ipam("STATUS", "", &netconf("1.1.0", &srv.socket));
    r.ok();
    assert_eq!(r.stdout, "");

    let mut starting = FakeIpam::new(false, 10);
    starting.ready = false;
    let srv = Server::start(starting);
    let msg = ipam("STATUS", "", &netconf("1.1.0", &srv.socket)).cni_error(50);
    assert!(msg.contains("start-up reconcile"), "{msg}");
}

#[test]
fn exhausted_pool_is_try_again_later_with_the_agents_message() {
    let srv = Server::start(FakeIpam::new(false, 1));
    let conf = netconf("1.0.0", &srv.socket);
    ipam("ADD", "c1", &conf).ok();
    let r = ipam("ADD", "c2", &conf);
    let msg = r.cni_error(11);
    assert!(
        msg.contains("pool test-pool (10.77.0.0/26) is exhausted"),
        "{msg}"
    );
    assert!(r.stderr.contains("exhausted"), "stderr: {}", r.stderr);
    assert_eq!(srv.backend.held(), ["c1/eth0"]);
}

#[test]
fn agent_not_running_is_try_again_later_and_del_fails() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("petrel.sock");
    let conf = netconf("1.0.0", &socket);
    for cmd in ["ADD", "DEL"] {
        let msg = ipam(cmd, "c1", &conf).cni_error(11);
        assert!(
            msg.contains(&socket.display().to_string()) && msg.contains("not reachable"),
            "{cmd}: {msg}"
        );
    }
    ipam("STATUS", "", &conf).cni_error(50);
    // A stale socket file with nothing listening: the same.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    assert!(socket.exists());
    ipam("ADD", "c1", &conf).cni_error(11);
}

// ---- the real ptp plugin ----

fn ip(ns: &Netns, args: &[&str]) -> String {
    ns.ip(args)
        .unwrap_or_else(|e| panic!("ip -n {} {args:?}: {e}", ns.name()))
}

/// What the pod should get: its address as in the result, and gateways.
struct Expect {
    v4: &'static str,
    v6: &'static str,
}

/// ADD, CHECK and DEL through the real ptp plugin in a host namespace, for
/// a pod in a pod namespace, checking the kernel state on both sides.
fn ptp_round_trip(backend: FakeIpam, want: Expect) {
    assert!(
        Path::new(PTP).exists(),
        "{PTP} is missing: install Debian's containernetworking-plugins"
    );
    let srv = Server::start(backend);
    let host = Netns::create("petrel-cni-host").expect("create host netns (needs root)");
    let pod = Netns::create("petrel-cni-pod").expect("create pod netns");
    // The Debian ptp (containernetworking-plugins 1.1.1) speaks up to 1.0.0.
    let conf = netconf("1.0.0", &srv.socket);
    let container = format!("ptp{}", std::process::id());
    let run =
        |cmd: &str, conf: &Value| exec(Some(host.name()), PTP, cmd, &container, pod.name(), conf);

    let add = run("ADD", &conf);
    add.ok();
    let result = add.json();
    assert_eq!(result["ips"][0]["address"], want.v4, "{result}");
    assert_eq!(result["ips"][0]["gateway"], "10.77.0.1");
    assert_eq!(result["ips"][1]["address"], want.v6, "{result}");
    assert_eq!(result["ips"][1]["gateway"], "fd77::1");
    let pod4 = want.v4.split('/').next().unwrap();
    let pod6 = want.v6.split('/').next().unwrap();
    assert_ne!(pod4, "10.77.0.1");
    let host_veth = result["interfaces"][0]["name"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(result["interfaces"][1]["name"], "eth0");

    // The pod has its address and routes everything via the gateway.
    let addrs = ip(&pod, &["addr", "show", "dev", "eth0"]);
    assert!(addrs.contains(&format!("inet {}", want.v4)), "{addrs}");
    assert!(addrs.contains(&format!("inet6 {}", want.v6)), "{addrs}");
    let routes = ip(&pod, &["-4", "route", "show"]);
    assert!(
        routes.contains("default via 10.77.0.1 dev eth0"),
        "{routes}"
    );
    assert!(routes.contains("10.77.0.1 dev eth0"), "{routes}");
    let routes6 = ip(&pod, &["-6", "route", "show"]);
    assert!(
        routes6.contains("default via fd77::1 dev eth0"),
        "{routes6}"
    );

    // The host side holds the gateway and a host route to the pod.
    let host_addrs = ip(&host, &["addr", "show", "dev", &host_veth]);
    assert!(host_addrs.contains("inet 10.77.0.1/32"), "{host_addrs}");
    assert!(host_addrs.contains("inet6 fd77::1/128"), "{host_addrs}");
    assert!(!host_addrs.contains(&format!("{pod4}/")), "{host_addrs}");
    assert!(!host_addrs.contains(&format!("{pod6}/")), "{host_addrs}");
    let host_routes = ip(&host, &["-4", "route", "show"]);
    assert!(
        host_routes.contains(&format!("{pod4} dev {host_veth}")),
        "{host_routes}"
    );
    // Traffic flows between the host namespace and the pod.
    let ping = Command::new("ip")
        .args([
            "netns",
            "exec",
            host.name(),
            "ping",
            "-c",
            "1",
            "-W",
            "2",
            pod4,
        ])
        .output()
        .unwrap();
    assert!(
        ping.status.success(),
        "ping: {}",
        String::from_utf8_lossy(&ping.stdout)
    );

    // CHECK through ptp (which delegates CHECK to petrel-ipam).
    let mut check = conf.clone();
    check["prevResult"] = result.clone();
    run("CHECK", &check).ok();

    // DEL through ptp: the link is gone and the address released.
    let mut del = conf.clone();
    del["prevResult"] = result;
    run("DEL", &del).ok();
    assert!(srv.backend.held().is_empty());
    assert!(pod.ip(&["link", "show", "dev", "eth0"]).is_err());
    run("DEL", &del).ok();
}

#[test]
fn ptp_plugin_wires_a_pod_with_petrel_ipam() {
    ptp_round_trip(
        FakeIpam::new(true, 10),
        Expect {
            v4: "10.77.0.2/26",
            v6: "fd77::2/122",
        },
    );
}

#[test]
fn ptp_reaches_a_node_wide_gateway_in_another_block() {
    // The pod's block does not hold the gateway: the result widens the
    // prefix so that the gateway is on-link when ptp adds the default route.
    let mut backend = FakeIpam::new(true, 10);
    backend.second_block = true;
    ptp_round_trip(
        backend,
        Expect {
            v4: "10.77.0.66/25",
            v6: "fd77::42/121",
        },
    );
}
