//! The configuration of one node, resolved from the datastore's objects.
//!
//! This is what the BGP speaker consumes: every selector evaluated, every
//! secret looked up, every default applied. The speaker compares two of these
//! to decide which sessions to add, reset, update in place or remove.

use ipnet::IpNet;
use petrel_bgp::wire::Family;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

pub use petrel_crd::{Community, CommunityParseError};

/// How the next hop is set on routes sent to a peer (Calico `nextHopMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NextHopMode {
    #[default]
    Auto,
    SelfHop,
    Keep,
}

/// Address this agent binds its listening socket to (Calico `bindMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BindMode {
    /// Listen on all addresses.
    #[default]
    None,
    /// Listen only on the node's own IPv4/IPv6 addresses.
    NodeIp,
}

/// Where a peer came from; also the stable key used by the speaker.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PeerOrigin {
    /// A `BGPPeer` object, by name.
    BgpPeer(String),
    /// The node-to-node mesh, by the other node's name.
    Mesh(String),
    /// The IPv6 session of the node-to-node mesh, by the other node's name
    /// (Calico runs separate sessions per family; `Mesh` is the IPv4 one).
    Mesh6(String),
    /// A session to another node derived from a `BGPPeer` (its `peerSelector`,
    /// or the automatic reverse peering): (BGPPeer name, node name, family).
    BgpPeerNode(String, String, Family),
}

impl std::fmt::Display for PeerOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PeerOrigin::BgpPeer(n) => write!(f, "bgppeer/{n}"),
            PeerOrigin::Mesh(n) => write!(f, "mesh/{n}"),
            PeerOrigin::Mesh6(n) => write!(f, "mesh6/{n}"),
            PeerOrigin::BgpPeerNode(p, n, fam) => write!(f, "bgppeer/{p}/{n}/{}", fam.name()),
        }
    }
}

/// One BGP session this node should run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConfig {
    pub origin: PeerOrigin,
    pub address: IpAddr,
    /// TCP port of the peer (from `peerIP` `addr:port`), default 179.
    pub port: u16,
    pub peer_as: u32,
    /// Local AS for this session (`localASNumber`, else the node's AS).
    pub local_as: u32,
    /// TCP MD5 key (RFC 2385), resolved from the Secret.
    pub password: Option<String>,
    /// GTSM: maximum hop count (`ttlSecurity`), `None` when off.
    pub ttl_security: Option<u8>,
    /// Local address to bind the outgoing connection to.
    pub source_address: Option<IpAddr>,
    pub hold_time: Duration,
    /// `keepaliveTime`; `None` means hold_time / 3.
    pub keepalive_time: Option<Duration>,
    /// `maxRestartTime`, graceful-restart time advertised to this peer.
    pub max_restart_time: Duration,
    /// Never initiate the TCP connection.
    pub passive: bool,
    pub next_hop_mode: NextHopMode,
    pub num_allowed_local_as: u8,
    /// Per-family limit on accepted prefixes.
    pub max_prefixes: Option<u32>,
    /// Names of `BGPFilter`s applied to this peer, in order.
    pub filters: Vec<String>,
    /// Families to negotiate. Derived from the peer address family (Calico runs
    /// separate v4 and v6 sessions), or both for an IPv4 peer with `families` set.
    pub families: Vec<Family>,
    /// This node is a route reflector (it has a cluster ID) and this iBGP peer
    /// is one of its clients (RFC 4456): routes learned from other iBGP peers
    /// are reflected to it. Calico: the peer has no cluster ID or a different one.
    pub route_reflector_client: bool,
    /// BFD for this session (`bfdProfile`, `nodeMeshBFDProfile`); `None`: off.
    pub bfd: Option<BfdSettings>,
}

/// The BFD parameters of a session, from its BFDProfile (RFC 5880 §6.8.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BfdSettings {
    /// The BFDProfile's name.
    pub profile: String,
    /// bfd.RequiredMinRxInterval (`receiveInterval`).
    pub receive_interval: Duration,
    /// bfd.DesiredMinTxInterval (`transmitInterval`).
    pub transmit_interval: Duration,
    /// bfd.DetectMult (`detectMultiplier`).
    pub detect_multiplier: u8,
    /// Passive role (`passiveMode`).
    pub passive: bool,
    /// Smallest TTL accepted on multihop sessions (`minimumTtl`).
    pub minimum_ttl: u8,
}

impl BfdSettings {
    /// The settings of profile `name` (a validated spec; out-of-range values
    /// are clamped rather than trusted).
    pub fn from_spec(name: &str, spec: &petrel_crd::BfdProfileSpec) -> BfdSettings {
        BfdSettings {
            profile: name.to_string(),
            receive_interval: Duration::from_millis(u64::from(spec.receive_interval_ms().max(1))),
            transmit_interval: Duration::from_millis(u64::from(spec.transmit_interval_ms().max(1))),
            detect_multiplier: spec.detect_multiplier_or_default().clamp(1, 255) as u8,
            passive: spec.passive_mode.unwrap_or(false),
            minimum_ttl: spec.minimum_ttl_or_default().clamp(1, 255) as u8,
        }
    }
}

/// The resolved configuration for this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeConfig {
    pub node_name: String,
    pub local_as: u32,
    pub router_id: Ipv4Addr,
    /// Node IPv4 address with prefix length (from the annotation or InternalIP).
    pub ipv4_address: Option<ipnet::Ipv4Net>,
    pub ipv6_address: Option<ipnet::Ipv6Net>,
    pub route_reflector_cluster_id: Option<Ipv4Addr>,
    pub listen_port: u16,
    pub bind_mode: BindMode,
    /// Prefixes this node originates (service CIDRs from BGPConfiguration,
    /// later pod blocks from IPAM), with the communities to attach.
    pub originate: BTreeMap<IpNet, Vec<Community>>,
    /// Sessions by their origin.
    pub peers: BTreeMap<PeerOrigin, PeerConfig>,
    /// BGPFilters by name.
    pub filters: BTreeMap<String, petrel_crd::BgpFilterSpec>,
    /// Calico `prefixAdvertisements`: every route this node advertises that
    /// lies within the CIDR (`net ~ cidr` in BIRD) gets these communities added.
    /// Several rules can match one route; their communities accumulate.
    pub prefix_communities: Vec<(IpNet, Vec<Community>)>,
    /// This node's pod blocks (`Node.spec.podCIDRs` until petrel's IPAM
    /// assigns blocks): originated over BGP and blackholed in the kernel.
    pub pod_cidrs: Vec<IpNet>,
    /// What the safe import defaults need: pools, every node's blocks, and
    /// the service prefixes.
    pub cluster: petrel_bgp::policy::ClusterView,
    /// Most equal-cost paths per prefix (`maxPaths`, default 16).
    pub max_paths: usize,
    /// Objects that are invalid (on their own or because of another object)
    /// and for which the last valid version, or the last resolved form, is
    /// used instead: reported in the node's status, metrics and `petrel status`.
    pub problems: Vec<ConfigProblem>,
    /// `passUnknownAttributes`: re-advertise unknown optional transitive
    /// attributes (with the Partial bit) instead of stripping them.
    pub pass_unknown_attributes: bool,
    /// Why this node drains, when it does (RFC 8326 graceful shutdown): it is
    /// cordoned or annotated `petrel.dev/graceful-shutdown: "true"`. Its
    /// routes then go out with GRACEFUL_SHUTDOWN, and LOCAL_PREF 0 on iBGP.
    pub graceful_shutdown: Option<String>,
}

/// An object the configuration could not use as it is.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConfigProblem {
    /// `BGPPeer`, `BGPFilter`, `BGPConfiguration`, `IPPool`, `Node`, ...
    pub kind: String,
    /// The object's name (`namespace/name` for namespaced kinds).
    pub name: String,
    /// What is wrong, and what petrel does instead.
    pub reason: String,
}

impl std::fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}: {}", self.kind, self.name, self.reason)
    }
}

impl NodeConfig {
    /// Communities that `prefixAdvertisements` attach to an advertised prefix:
    /// the union, in rule order and without repeats, of every rule whose CIDR
    /// contains `prefix`.
    pub fn communities_for(&self, prefix: &IpNet) -> Vec<Community> {
        let mut out = Vec::new();
        for (cidr, comms) in &self.prefix_communities {
            if cidr.contains(prefix) {
                for c in comms {
                    if !out.contains(c) {
                        out.push(*c);
                    }
                }
            }
        }
        out
    }
}
