//! The generated topology of `testbed scale`: `n` petrel nodes in two racks,
//! each rack one bridge behind an FRR top-of-rack router, two in-cluster
//! route reflectors, IPv4 and IPv6 pools, and the file datastore with one
//! IPAM directory shared by every agent.
//!
//! ```text
//!   tora (FRR, AS 65101) eth2 ---- eth2 torb (FRR, AS 65102)
//!        eth1                          eth1
//!         |                             |
//!        swa (bridge, rack a)          swb (bridge, rack b)
//!   rr1, n001, n003, ...          rr2, n002, n004, ...
//! ```
//!
//! * Nodes (AS 64512) peer eBGP with their rack's ToR over IPv4 and IPv6
//!   (a `BGPPeer` per rack and family with `nodeSelector: rack == 'a'`; the
//!   ToRs accept them as dynamic neighbours, `bgp listen range`). The ToRs
//!   peer with each other and carry the rack subnets and every pod block
//!   between the racks; nodes reach the other rack through their default
//!   route to the ToR. Routes a ToR sends back to a node carry AS 64512 and
//!   are dropped as AS-path loops: the cluster's blocks travel over iBGP.
//! * iBGP: every node peers with the two reflectors `rr1` and `rr2` (label
//!   `route-reflector: "true"`, annotation
//!   `petrel.dev/route-reflector-cluster-id: 1.1.1.1`), Calico's
//!   `peerSelector` pattern; there is no node-to-node mesh.
//! * Pools: `10.64.0.0/16` in /29 blocks and `fd00:64::/104` in /125 blocks
//!   (small blocks, so that a handful of allocations makes a node claim a
//!   new block: the propagation measurement of `testbed scale`).
//! * Graceful restart: the reflector sessions advertise a restart time of
//!   [`RESTART_TIME_S`] s (`maxRestartTime`), so the "with graceful restart"
//!   withdrawal of a crashed node takes that long by design; the last node
//!   (label `graceful-restart: "off"`, its own `BGPPeer`) advertises 0 s,
//!   for the withdrawal "without graceful restart".

use anyhow::Context;
use std::fmt::Write as _;
use std::path::Path;

/// Graceful-restart time of the sessions with the reflectors, in seconds.
pub const RESTART_TIME_S: u64 = 10;
/// The reflectors' cluster ID.
pub const CLUSTER_ID: &str = "1.1.1.1";
/// The IPv4 pool.
pub const POOL_V4: &str = "10.64.0.0/16";
/// The IPv4 pool's block size.
pub const BLOCK_V4: u8 = 29;
/// The IPv6 pool.
pub const POOL_V6: &str = "fd00:64::/104";
/// The IPv6 pool's block size.
pub const BLOCK_V6: u8 = 125;
/// Most petrel nodes a generated topology may have (address plan: 250 per
/// /24 of a rack's /16, and interface names of four digits).
pub const MAX_NODES: usize = 2000;

/// One rack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rack {
    A,
    B,
}

impl Rack {
    pub fn name(self) -> &'static str {
        match self {
            Rack::A => "a",
            Rack::B => "b",
        }
    }

    /// Second octet of the rack's IPv4 subnet (10.<o>.0.0/16).
    fn octet(self) -> u32 {
        match self {
            Rack::A => 1,
            Rack::B => 2,
        }
    }

    pub fn tor(self) -> &'static str {
        match self {
            Rack::A => "tora",
            Rack::B => "torb",
        }
    }

    pub fn bridge(self) -> &'static str {
        match self {
            Rack::A => "swa",
            Rack::B => "swb",
        }
    }

    pub fn tor_as(self) -> u32 {
        match self {
            Rack::A => 65101,
            Rack::B => 65102,
        }
    }

    pub fn tor_v4(self) -> String {
        format!("10.{}.0.1", self.octet())
    }

    pub fn tor_v6(self) -> String {
        format!("fd00:{}::1", self.octet())
    }
}

/// One petrel node of the generated topology.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScaleNode {
    pub name: String,
    pub rack: Rack,
    /// Index within its rack (0 is the rack's reflector).
    pub index: usize,
    pub v4: String,
    pub v6: String,
    pub reflector: bool,
    /// Its reflector sessions advertise a restart time (the last node's do
    /// not).
    pub graceful: bool,
}

/// The petrel nodes of a cluster of `n` nodes in all: `rr1` and `rr2`, then
/// `n0001`.. alternating between the racks.
pub fn nodes(n: usize) -> anyhow::Result<Vec<ScaleNode>> {
    anyhow::ensure!(
        (3..=MAX_NODES).contains(&n),
        "--nodes must be 3..={MAX_NODES} (two of them are the reflectors)"
    );
    let mut next = [0usize; 2];
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let rack = if i % 2 == 0 { Rack::A } else { Rack::B };
        let slot = &mut next[i % 2];
        let index = *slot;
        *slot += 1;
        let reflector = i < 2;
        let name = if reflector {
            format!("rr{}", i + 1)
        } else {
            format!("n{:04}", i - 1)
        };
        // Host part: 10 + index, spread over the /16 (250 per /24).
        let host = 10 + index;
        let (hi, lo) = (host / 250, host % 250);
        out.push(ScaleNode {
            name,
            rack,
            index,
            v4: format!("10.{}.{hi}.{lo}", rack.octet()),
            v6: format!("fd00:{}::{:x}", rack.octet(), host),
            reflector,
            graceful: i + 1 < n,
        });
    }
    Ok(out)
}

/// Writes the topology (`topology.clab.yaml`, `petrel/`, `tora.conf`,
/// `torb.conf`) into `dir` for `nodes`.
pub fn write(dir: &Path, nodes: &[ScaleNode]) -> anyhow::Result<()> {
    let manifests = dir.join("petrel");
    std::fs::create_dir_all(&manifests)
        .with_context(|| format!("creating {}", manifests.display()))?;
    let files = [
        (dir.join("topology.clab.yaml"), topology_yaml(nodes)),
        (dir.join("tora.conf"), tor_conf(Rack::A)),
        (dir.join("torb.conf"), tor_conf(Rack::B)),
        (manifests.join("cluster.yaml"), cluster_manifests()),
        (manifests.join("nodes.yaml"), node_manifests(nodes)),
    ];
    for (path, text) in files {
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn port(rack: Rack, index: usize) -> String {
    format!("{}{index:04}", rack.name())
}

/// The containerlab-format topology.
pub fn topology_yaml(nodes: &[ScaleNode]) -> String {
    let mut y = String::new();
    let _ = writeln!(
        y,
        "# Generated by `testbed scale` ({} petrel nodes): see testbed/src/scale/generate.rs.",
        nodes.len()
    );
    y.push_str("name: scale\ntopology:\n  nodes:\n");
    for rack in [Rack::A, Rack::B] {
        let ports: Vec<String> = nodes
            .iter()
            .filter(|n| n.rack == rack)
            .map(|n| port(rack, n.index))
            .chain(std::iter::once(format!("{}tor", rack.name())))
            .collect();
        let _ = writeln!(
            y,
            "    {}:\n      kind: linux\n      exec:\n        - ip link add br0 type bridge && ip link set br0 up\n        - for p in {}; do ip link set $p master br0; done",
            rack.bridge(),
            ports.join(" ")
        );
        let _ = writeln!(
            y,
            "    {}:\n      kind: frr\n      config: {}.conf\n      exec:\n        - ip addr add {}/16 dev eth1\n        - ip addr add {}/64 dev eth1\n        - ip addr add 10.0.0.{}/30 dev eth2\n        - ip addr add fd00:ab::{}/64 dev eth2\n        - sysctl -q -w net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1",
            rack.tor(),
            rack.tor(),
            rack.tor_v4(),
            rack.tor_v6(),
            rack.octet(),
            rack.octet(),
        );
    }
    for n in nodes {
        let _ = writeln!(
            y,
            "    {}:\n      kind: linux\n      image: petrel:dev\n      binds:\n        - petrel:/etc/petrel/manifests:ro\n        - __clabDir__/ipam:/var/lib/petrel/ipam\n      cmd: agent --ipam-dir /var/lib/petrel/ipam\n      exec:\n        - ip addr add {}/16 dev eth1\n        - ip addr add {}/64 dev eth1\n        - ip route add default via {}\n        - ip -6 route add default via {}",
            n.name,
            n.v4,
            n.v6,
            n.rack.tor_v4(),
            n.rack.tor_v6()
        );
    }
    y.push_str("  links:\n");
    y.push_str("    - endpoints: [\"tora:eth2\", \"torb:eth2\"]\n");
    for rack in [Rack::A, Rack::B] {
        let _ = writeln!(
            y,
            "    - endpoints: [\"{}:eth1\", \"{}:{}tor\"]",
            rack.tor(),
            rack.bridge(),
            rack.name()
        );
    }
    for n in nodes {
        let _ = writeln!(
            y,
            "    - endpoints: [\"{}:eth1\", \"{}:{}\"]",
            n.name,
            n.rack.bridge(),
            port(n.rack, n.index)
        );
    }
    y
}

/// A ToR: dynamic eBGP neighbours for its rack's nodes (IPv4 and IPv6), and
/// the other ToR.
pub fn tor_conf(rack: Rack) -> String {
    let o = rack.octet();
    let other = if rack == Rack::A { Rack::B } else { Rack::A };
    format!(
        "! Generated by `testbed scale`: ToR of rack {name} (AS {asn}).
frr defaults datacenter
hostname {tor}
log stdout warnings
!
router bgp {asn}
 bgp router-id 10.0.0.{o}
 no bgp default ipv4-unicast
 no bgp ebgp-requires-policy
 no bgp network import-check
 bgp listen limit 5000
 bgp bestpath as-path multipath-relax
 neighbor NODES peer-group
 neighbor NODES remote-as 64512
 neighbor NODES6 peer-group
 neighbor NODES6 remote-as 64512
 bgp listen range 10.{o}.0.0/16 peer-group NODES
 bgp listen range fd00:{o}::/64 peer-group NODES6
 neighbor 10.0.0.{oo} remote-as {other_as}
 neighbor 10.0.0.{oo} timers connect 2
 neighbor fd00:ab::{oo} remote-as {other_as}
 neighbor fd00:ab::{oo} timers connect 2
 !
 address-family ipv4 unicast
  network 10.{o}.0.0/16
  neighbor NODES activate
  neighbor 10.0.0.{oo} activate
  maximum-paths 64
 exit-address-family
 !
 address-family ipv6 unicast
  network fd00:{o}::/64
  neighbor NODES6 activate
  neighbor fd00:ab::{oo} activate
  maximum-paths 64
 exit-address-family
exit
",
        name = rack.name(),
        tor = rack.tor(),
        asn = rack.tor_as(),
        oo = other.octet(),
        other_as = other.tor_as(),
    )
}

/// BGPConfiguration, pools and peers.
pub fn cluster_manifests() -> String {
    let mut y = format!(
        "# Generated by `testbed scale`.
apiVersion: petrel.dev/v1
kind: BGPConfiguration
metadata:
  name: default
spec:
  asNumber: 64512
  nodeToNodeMeshEnabled: false
---
apiVersion: petrel.dev/v1
kind: IPPool
metadata:
  name: scale-v4
spec:
  cidr: {POOL_V4}
  blockSize: {BLOCK_V4}
  ipipMode: Never
  vxlanMode: Never
---
apiVersion: petrel.dev/v1
kind: IPPool
metadata:
  name: scale-v6
spec:
  cidr: {POOL_V6}
  blockSize: {BLOCK_V6}
---
# Calico's route-reflector pattern: every node peers with both reflectors.
apiVersion: petrel.dev/v1
kind: BGPPeer
metadata:
  name: peer-with-route-reflectors
spec:
  nodeSelector: '!has(graceful-restart)'
  peerSelector: route-reflector == 'true'
  maxRestartTime: {RESTART_TIME_S}s
---
# The same for the node(s) without graceful restart (restart time 0).
apiVersion: petrel.dev/v1
kind: BGPPeer
metadata:
  name: peer-with-route-reflectors-no-gr
spec:
  nodeSelector: graceful-restart == 'off'
  peerSelector: route-reflector == 'true'
  maxRestartTime: 0s
"
    );
    for rack in [Rack::A, Rack::B] {
        for (family, ip) in [("v4", rack.tor_v4()), ("v6", rack.tor_v6())] {
            let _ = write!(
                y,
                "---
apiVersion: petrel.dev/v1
kind: BGPPeer
metadata:
  name: tor-{r}-{family}
spec:
  nodeSelector: rack == '{r}'
  peerIP: {ip}
  asNumber: {asn}
",
                r = rack.name(),
                asn = rack.tor_as(),
            );
        }
    }
    y
}

/// One `Node` per petrel node.
pub fn node_manifests(nodes: &[ScaleNode]) -> String {
    let mut y = String::from("# Generated by `testbed scale`.\n");
    for n in nodes {
        let _ = write!(
            y,
            "---\napiVersion: v1\nkind: Node\nmetadata:\n  name: {}\n  labels:\n    rack: {}\n",
            n.name,
            n.rack.name()
        );
        if n.reflector {
            y.push_str("    route-reflector: \"true\"\n");
        }
        if !n.graceful {
            y.push_str("    graceful-restart: \"off\"\n");
        }
        let _ = writeln!(
            y,
            "  annotations:\n    petrel.dev/ipv4-address: {}/16\n    petrel.dev/ipv6-address: {}/64",
            n.v4, n.v6
        );
        if n.reflector {
            let _ = writeln!(y, "    petrel.dev/route-reflector-cluster-id: {CLUSTER_ID}");
        }
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Topology;

    #[test]
    fn generated_topology_parses_and_is_consistent() {
        let nodes = nodes(7).unwrap();
        assert_eq!(nodes[0].name, "rr1");
        assert_eq!(nodes[1].name, "rr2");
        assert_eq!(nodes[2].name, "n0001");
        assert!(nodes[0].reflector && nodes[1].reflector && !nodes[2].reflector);
        assert_eq!((nodes[0].rack, nodes[1].rack), (Rack::A, Rack::B));
        assert_eq!(nodes[2].v4, "10.1.0.11");
        assert_eq!(nodes[3].v6, "fd00:2::b");
        let topo = Topology::parse(&topology_yaml(&nodes)).unwrap();
        // 7 petrel nodes, two bridges, two ToRs.
        assert_eq!(topo.topology.nodes.len(), 11);
        assert_eq!(topo.links().unwrap().len(), 7 + 2 + 1);
        assert!(topo.topology.nodes["n0001"].ipam_dir.is_some());
        let all: Vec<String> = nodes.iter().map(|n| n.v4.clone()).collect();
        let unique: std::collections::BTreeSet<_> = all.iter().collect();
        assert_eq!(unique.len(), all.len());
        assert!(super::nodes(2).is_err());
        assert!(super::nodes(MAX_NODES + 1).is_err());
        let big = super::nodes(MAX_NODES).unwrap();
        assert!(
            big.iter()
                .all(|n| n.v4.split('.').nth(3).unwrap().parse::<u8>().is_ok())
        );
    }

    #[test]
    fn manifests_parse_as_the_datastore_reads_them() {
        let nodes = nodes(5).unwrap();
        let dir = std::env::temp_dir().join(format!("scale-gen-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        write(&dir, &nodes).unwrap();
        let snap = petrel_datastore::load_dir(&dir.join("petrel")).unwrap();
        assert_eq!(snap.nodes.len(), 5);
        assert_eq!(snap.ip_pools.len(), 2);
        assert_eq!(snap.peers.len(), 6);
        assert!(!nodes[4].graceful && nodes[3].graceful);
        let conf = std::fs::read_to_string(dir.join("tora.conf")).unwrap();
        assert!(conf.contains("bgp listen range 10.1.0.0/16 peer-group NODES"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
