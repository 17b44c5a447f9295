//! The demo and pods topologies under real containerlab (Docker containers,
//! `testbed/clab.sh`), checked for what the network-namespace tests check:
//!
//! | test | topology | asserts |
//! |------|----------|---------|
//! | `demo_under_containerlab` | `demo` | every session of petrel, BIRD, FRR and GoBGP Established (both families); the routers' prefixes in petrel's kernel table; petrel's service prefixes in each router's table |
//! | `pods_under_containerlab` | `pods` | pods wired by `ptp` + `petrel-ipam` in each petrel container ping every other node's pods over IPv4 and IPv6; the ToR learned every block from its owner; a capture on the ToR shows plain IP between the pods' own addresses |
//!
//! Ignored in plain `cargo test`: they need a Docker engine, containerlab and
//! the lab images, which `.ci/setup-clab` provides; `.ci/test` runs them with
//! `--ignored`. Each lab gets a unique name; containers, the namespaces the
//! test attaches and the host's sysctls are put back on success and failure.

mod common;

use anyhow::{Context, ensure};
use petrel_testbed::cni::capture::{Capture, IcmpKind, Packet};
use petrel_testbed::cni::{Cni, petrel_conflist};
use petrel_testbed::{is_root, wait_for};
use serde_json::Value;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// A lab deployed with `testbed/clab.sh`; dropping it destroys it.
struct ClabLab {
    topology: PathBuf,
    name: String,
    /// Named namespaces attached to containers (`ip netns attach`).
    attached: Vec<String>,
}

fn clab_sh() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("clab.sh")
}

/// Runs `cmd`; its stdout, or an error with both outputs.
fn run(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    ensure!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl ClabLab {
    fn deploy(topology: &str) -> ClabLab {
        assert!(is_root(), "containerlab tests must run as root");
        let lab = ClabLab {
            topology: common::topology(topology),
            name: format!("ci{topology}{}", std::process::id()),
            attached: Vec::new(),
        };
        let out = Command::new("bash")
            .arg(clab_sh())
            .arg("deploy")
            .arg(&lab.topology)
            .args(["--name", &lab.name, "--wait", "120"])
            .output()
            .expect("running testbed/clab.sh");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        println!("{text}");
        assert!(
            out.status.success(),
            "clab.sh deploy {topology} failed ({}): see above",
            out.status
        );
        lab
    }

    fn container(&self, node: &str) -> String {
        format!("clab-{}-{node}", self.name)
    }

    /// `docker exec <node> args...`.
    fn exec(&self, node: &str, args: &[&str]) -> anyhow::Result<String> {
        run(Command::new("docker")
            .arg("exec")
            .arg(self.container(node))
            .args(args))
    }

    /// Gives the container's network namespace a name, for `ip netns exec`.
    fn attach(&mut self, node: &str) -> anyhow::Result<String> {
        let pid = self.pid(node)?;
        let ns = format!("{}-{node}", self.name);
        run(Command::new("ip").args(["netns", "attach", &ns, &pid.to_string()]))?;
        self.attached.push(ns.clone());
        Ok(ns)
    }

    fn pid(&self, node: &str) -> anyhow::Result<u32> {
        let out = run(Command::new("docker").args([
            "inspect",
            "-f",
            "{{.State.Pid}}",
            &self.container(node),
        ]))?;
        out.trim().parse().context("container pid")
    }
}

impl Drop for ClabLab {
    fn drop(&mut self) {
        for ns in &self.attached {
            let _ = Command::new("ip").args(["netns", "delete", ns]).status();
        }
        match Command::new("bash")
            .arg(clab_sh())
            .arg("destroy")
            .arg(&self.topology)
            .args(["--name", &self.name])
            .output()
        {
            Ok(o) if o.status.success() => {}
            Ok(o) => eprintln!(
                "clab.sh destroy {}: {}{}",
                self.name,
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => eprintln!("clab.sh destroy {}: {e}", self.name),
        }
    }
}

/// The destinations of `node`'s kernel routes of one family (`-4`, `-6`).
fn kernel_routes(lab: &ClabLab, node: &str, family: &str) -> anyhow::Result<Vec<String>> {
    let out = lab.exec(node, &["ip", "-j", family, "route", "show"])?;
    let routes: Vec<Value> = serde_json::from_str(&out).context("ip -j route")?;
    Ok(routes
        .iter()
        .filter_map(|r| r["dst"].as_str().map(str::to_string))
        .collect())
}

#[test]
#[ignore = "needs Docker, containerlab and the lab images: .ci/setup-clab"]
fn demo_under_containerlab() {
    let lab = ClabLab::deploy("demo");
    // Routers to petrel: each router's prefixes in petrel's kernel table.
    wait_for(
        Duration::from_secs(30),
        "the routers' prefixes in petrel's kernel table",
        || {
            let v4 = kernel_routes(&lab, "petrel", "-4")?;
            let v6 = kernel_routes(&lab, "petrel", "-6")?;
            for p in ["192.0.2.10", "192.0.2.20", "192.0.2.30"] {
                ensure!(v4.iter().any(|d| d == p), "no {p} in {v4:?}");
            }
            for p in ["2001:db8:10::/48", "2001:db8:20::/48", "2001:db8:30::/48"] {
                ensure!(v6.iter().any(|d| d == p), "no {p} in {v6:?}");
            }
            Ok(())
        },
    )
    .unwrap();
    // petrel to the routers: its service prefixes in each router's table.
    wait_for(
        Duration::from_secs(30),
        "petrel's service prefixes at BIRD, FRR and GoBGP",
        || {
            for p in ["10.96.0.0/12", "fd00:96::/108"] {
                let bird = lab.exec("bird", &["birdc", "show", "route", "for", p, "all"])?;
                ensure!(bird.contains(p) && bird.contains("65001"), "BIRD: {bird}");
                let frr = lab.exec(
                    "frr",
                    &["vtysh", "-c", &format!("show bgp ipv4 unicast {p}")],
                );
                let frr = match frr {
                    Ok(o) if p.contains(':') => {
                        lab.exec(
                            "frr",
                            &["vtysh", "-c", &format!("show bgp ipv6 unicast {p}")],
                        )? + &o
                    }
                    Ok(o) => o,
                    Err(e) => return Err(e),
                };
                ensure!(
                    frr.contains("65001"),
                    "FRR has no path for {p} from AS 65001: {frr}"
                );
                let afi = if p.contains(':') { "ipv6" } else { "ipv4" };
                let gobgp = lab.exec("gobgp", &["gobgp", "global", "rib", "-a", afi])?;
                ensure!(gobgp.contains(p), "GoBGP: {gobgp}");
            }
            Ok(())
        },
    )
    .unwrap();
}

#[test]
#[ignore = "needs Docker, containerlab and the lab images: .ci/setup-clab"]
fn pods_under_containerlab() {
    let mut lab = ClabLab::deploy("pods");
    let nodes = ["node1", "node2", "node3"];
    let mut cnis = Vec::new();
    for node in nodes {
        let ns = lab.attach(node).unwrap();
        // petrel-ipam runs on the host, in the container's network namespace;
        // it reaches the agent's socket through the container's root.
        let socket = PathBuf::from(format!(
            "/proc/{}/root/run/petrel/petrel.sock",
            lab.pid(node).unwrap()
        ));
        let conf = petrel_conflist(&socket);
        cnis.push(Cni::in_netns(&lab.name, node, &ns, &conf).unwrap());
    }
    let tor = lab.attach("tor").unwrap();
    let mut pods = Vec::new();
    for cni in &cnis {
        for _ in 0..2 {
            // The agent may still be claiming its first blocks.
            pods.push(wait_for(Duration::from_secs(30), "a pod address", || cni.add()).unwrap());
        }
    }
    let mut lost = Vec::new();
    for from in &pods {
        for to in pods.iter().filter(|t| t.node() != from.node()) {
            let targets = [to.ipv4().map(IpAddr::V4), to.ipv6().map(IpAddr::V6)];
            assert!(
                targets.iter().all(Option::is_some),
                "{to:?} lacks an address"
            );
            for addr in targets.into_iter().flatten() {
                if wait_for(Duration::from_secs(20), "a ping reply", || from.ping(addr)).is_err() {
                    lost.push(format!("{} ({}) -> {addr}", from.name(), from.node()));
                }
            }
        }
    }
    assert!(lost.is_empty(), "pings lost: {lost:?}");
    // The ToR learned each node's blocks from that node.
    let routes = lab
        .exec("tor", &["vtysh", "-c", "show ip route bgp json"])
        .unwrap();
    let routes: Value = serde_json::from_str(&routes).unwrap();
    for (i, pod) in pods.iter().enumerate() {
        let node_addr = format!("10.0.{}.1", i / 2 + 1);
        let ip = pod.ipv4().unwrap();
        let covered = routes.as_object().unwrap().iter().any(|(prefix, entries)| {
            let net: ipnet::Ipv4Net = prefix.parse().unwrap();
            net.contains(&ip)
                && entries
                    .to_string()
                    .contains(&format!("\"ip\":\"{node_addr}\""))
        });
        assert!(
            covered,
            "the ToR has no route to {ip} via {node_addr}: {routes:#}"
        );
    }
    // Plain IP on the wire between the pods' own addresses.
    let (a, b) = (&pods[0], &pods[2]);
    let (a4, b4) = (a.ipv4().unwrap(), b.ipv4().unwrap());
    let capture = Capture::start_in(&tor, "eth1").unwrap();
    a.exec(&format!("ping -n -c 5 -i 0.2 -W 1 {b4}")).unwrap();
    let frames = capture.stop().unwrap();
    let packets: Vec<Packet> = frames.iter().filter_map(|f| Packet::parse(f)).collect();
    for (src, dst, kind) in [
        (IpAddr::V4(a4), IpAddr::V4(b4), IcmpKind::EchoRequest),
        (IpAddr::V4(b4), IpAddr::V4(a4), IcmpKind::EchoReply),
    ] {
        let n = packets
            .iter()
            .filter(|p| p.src == src && p.dst == dst && p.icmp == Some(kind))
            .count();
        assert!(
            n >= 5,
            "expected 5 {kind:?} {src} -> {dst} on tor:eth1, saw {n}"
        );
    }
    assert!(
        packets.iter().all(|p| p.encapsulation().is_none()),
        "encapsulated packets on tor:eth1"
    );
    drop(pods);
}
