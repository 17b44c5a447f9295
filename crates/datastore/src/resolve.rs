//! Resolution of the datastore's objects into one node's [`NodeConfig`],
//! following Calico's confd semantics (`confd/pkg/backends/calico`):
//! global BGPPeers first, then node-specific ones, then automatic reverse
//! peerings, the first peering to an (address, port) winning; the node-to-node
//! mesh on nodes that are not route reflectors; one session per address family.
//!
//! Where petrel differs from Calico, by design:
//! - an explicit BGPPeer to the same (address, port) as a mesh session replaces
//!   the mesh session (Calico would render both into BIRD);
//! - a literal `sourceAddress` (a petrel extension) applies to the forward
//!   peering only; automatic reverse peerings bind to the node's own address;
//! - `holdTime`, `passive` and `maxPrefixes` are petrel additions (reverse
//!   peerings get `holdTime` and `maxPrefixes`, never `passive`).
//!
//! Each session carries one family, the peer address's (Calico's separate
//! `bird`/`bird6` sessions); IPv4 routes over an IPv6 session (RFC 8950) are
//! not configured here.
//! RFC 4271 (sessions), RFC 4456 (route reflection), RFC 4724 (restart time),
//! RFC 1997 / RFC 8092 (communities of advertised prefixes).

use super::Snapshot;
use super::error::DatastoreError;
use super::node::{NodeInfo, node_info};
use super::resolved::{
    BfdSettings, BindMode, ConfigProblem, NextHopMode, NodeConfig, PeerConfig, PeerOrigin,
};
use super::validate::{community_by_name_or_value, lookup_secret};
use ipnet::IpNet;
use petrel_bgp::wire::Family;
use petrel_crd::selector::Selector;
use petrel_crd::{
    AddressFamilySpec, BGPPeer, BgpConfigurationSpec, BindModeSpec, NextHopModeSpec,
    ReversePeering, SourceAddress,
};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::IpAddr;
use std::time::Duration;

/// Calico's default AS number.
pub const DEFAULT_AS_NUMBER: u32 = 64512;
pub const DEFAULT_PORT: u16 = 179;
pub const DEFAULT_HOLD_TIME: Duration = Duration::from_secs(90);
/// BIRD's default graceful-restart time, which Calico keeps.
pub const DEFAULT_MAX_RESTART_TIME: Duration = Duration::from_secs(120);
/// Default `maxPaths`: as many equal-cost paths as BIRD's `merge paths` limit.
pub const DEFAULT_MAX_PATHS: u16 = 16;

/// Computes the configuration of `node_name`.
pub fn resolve(snapshot: &Snapshot, node_name: &str) -> Result<NodeConfig, DatastoreError> {
    resolve_with(snapshot, node_name, None)
}

/// [`resolve`], given the last configuration resolved for this node: a peer
/// whose Secret key or BGPFilter is missing keeps its last password and
/// filters (the node-to-node mesh its last password), and the problem is
/// reported in [`NodeConfig::problems`] with those of the snapshot.
pub fn resolve_with(
    snapshot: &Snapshot,
    node_name: &str,
    previous: Option<&NodeConfig>,
) -> Result<NodeConfig, DatastoreError> {
    let fail = |reason: String| DatastoreError::Resolve {
        node: node_name.to_string(),
        reason,
    };
    let default_spec = BgpConfigurationSpec::default();
    let cfg = snapshot
        .bgp_configuration
        .as_ref()
        .map_or(&default_spec, |c| &c.spec);

    let mut infos = Vec::new();
    for node in &snapshot.nodes {
        let name = node.metadata.name.clone().unwrap_or_default();
        match node_info(node) {
            Ok(i) => infos.push(i),
            Err(errs) if name == node_name => {
                let list: Vec<String> = errs.iter().map(|(f, r)| format!("{f}: {r}")).collect();
                return Err(fail(format!("invalid Node: {}", list.join("; "))));
            }
            Err(errs) => {
                tracing::warn!(
                    node = node_name,
                    other = name.as_str(),
                    ?errs,
                    "ignoring invalid Node"
                );
            }
        }
    }
    infos.sort_by(|a, b| a.name.cmp(&b.name));
    let me = infos
        .iter()
        .find(|i| i.name == node_name)
        .ok_or_else(|| fail("no Node object with this name in the datastore".into()))?;
    if me.ipv4.is_none() && me.ipv6.is_none() {
        return Err(fail(
            "the node has no address: set the petrel.dev/ipv4-address or petrel.dev/ipv6-address annotation \
             or give it an InternalIP in status.addresses"
                .into(),
        ));
    }
    let router_id = me.router_id.or(me.ipv4.map(|n| n.addr())).ok_or_else(|| {
        fail(
            "no router ID: the node has no IPv4 address; set the petrel.dev/router-id annotation"
                .into(),
        )
    })?;

    let global_as = cfg.as_number.unwrap_or(DEFAULT_AS_NUMBER);
    let mut r = Resolver {
        snapshot,
        cfg,
        me,
        infos: &infos,
        global_as,
        local_as: me.as_number.unwrap_or(global_as),
        listen_port: cfg.listen_port.unwrap_or(DEFAULT_PORT),
        peers: BTreeMap::new(),
        used: HashSet::new(),
        previous,
        problems: BTreeSet::new(),
    };
    r.explicit_peers().map_err(fail)?;
    r.mesh_peers().map_err(fail)?;

    let mut filters = BTreeMap::new();
    for name in r.peers.values().flat_map(|p| &p.filters) {
        // A filter kept from the last configuration (deleted since) keeps
        // its last spec.
        let spec = snapshot
            .filters
            .iter()
            .find(|f| f.metadata.name.as_deref() == Some(name.as_str()))
            .map(|f| &f.spec)
            .or_else(|| previous.and_then(|p| p.filters.get(name)))
            .ok_or_else(|| fail(format!("BGPFilter {name:?} not found")))?;
        filters.insert(name.clone(), spec.clone());
    }

    let mut problems: BTreeSet<ConfigProblem> = snapshot.problems.iter().cloned().collect();
    problems.append(&mut r.problems);
    if let Some(reason) = &me.graceful_shutdown_problem {
        problems.insert(ConfigProblem {
            kind: "Node".into(),
            name: me.name.clone(),
            reason: reason.clone(),
        });
    }
    let problems: Vec<ConfigProblem> = problems.into_iter().collect();

    let mut prefix_communities = Vec::new();
    for pa in &cfg.prefix_advertisements {
        let comms = pa
            .communities
            .iter()
            .map(|c| community_by_name_or_value(cfg, c))
            .collect::<Result<Vec<_>, _>>()
            .map_err(fail)?;
        prefix_communities.push((pa.cidr.trunc(), comms));
    }

    let mut config = NodeConfig {
        node_name: node_name.to_string(),
        local_as: r.local_as,
        router_id,
        ipv4_address: me.ipv4,
        ipv6_address: me.ipv6,
        route_reflector_cluster_id: me.rr_cluster_id,
        listen_port: r.listen_port,
        bind_mode: match cfg.bind_mode {
            Some(BindModeSpec::NodeIp) => BindMode::NodeIp,
            Some(BindModeSpec::None) | None => BindMode::None,
        },
        originate: BTreeMap::new(),
        peers: r.peers,
        filters,
        prefix_communities,
        pod_cidrs: me.pod_cidrs.clone(),
        cluster: Default::default(),
        max_paths: usize::from(cfg.max_paths.unwrap_or(DEFAULT_MAX_PATHS)),
        problems,
        pass_unknown_attributes: cfg.pass_unknown_attributes.unwrap_or(false),
        graceful_shutdown: me.graceful_shutdown.clone(),
    };
    let service_cidrs: Vec<IpNet> = cfg
        .service_cluster_ips
        .iter()
        .chain(&cfg.service_external_ips)
        .chain(&cfg.service_load_balancer_ips)
        .map(|b| b.cidr.trunc())
        .collect();
    // Service CIDRs are advertised by `petrel_services` (which knows about
    // single-address CIDRs, aggregation and node exclusion); here they only
    // feed the import policy.
    for cidr in &me.pod_cidrs {
        let comms = config.communities_for(cidr);
        config.originate.insert(*cidr, comms);
    }
    config.cluster = petrel_bgp::policy::ClusterView {
        pools: snapshot
            .ip_pools
            .iter()
            .map(|p| p.spec.cidr.trunc())
            .collect(),
        blocks: infos
            .iter()
            .flat_map(|n| n.pod_cidrs.iter().map(|c| (*c, n.name.clone())))
            .collect(),
        service_cidrs,
        router_ids: infos
            .iter()
            .filter_map(|n| Some((n.router_id.or(n.ipv4.map(|a| a.addr()))?, n.name.clone())))
            .collect(),
        reflectors: infos
            .iter()
            .filter(|n| n.rr_cluster_id.is_some())
            .map(|n| n.name.clone())
            .collect(),
    };
    Ok(config)
}

/// A remote end produced by a BGPPeer or the mesh, before the session settings.
struct Target {
    origin: PeerOrigin,
    ip: IpAddr,
    port: u16,
    peer_as: u32,
    /// Route-reflector cluster ID of the remote node, if it is one.
    rr_cluster_id: Option<std::net::Ipv4Addr>,
    /// The address belongs to a node of the cluster (Calico `CalicoNode`).
    cluster_node: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Pass {
    Global,
    NodeSpecific,
    Reverse,
}

struct Resolver<'a> {
    snapshot: &'a Snapshot,
    cfg: &'a BgpConfigurationSpec,
    me: &'a NodeInfo,
    infos: &'a [NodeInfo],
    global_as: u32,
    local_as: u32,
    listen_port: u16,
    peers: BTreeMap<PeerOrigin, PeerConfig>,
    used: HashSet<(IpAddr, u16)>,
    /// The last configuration resolved for this node, whose peers keep their
    /// password and filters when a Secret or BGPFilter goes missing.
    previous: Option<&'a NodeConfig>,
    problems: BTreeSet<ConfigProblem>,
}

fn family_of(ip: IpAddr) -> Family {
    match ip {
        IpAddr::V4(_) => Family::Ipv4Unicast,
        IpAddr::V6(_) => Family::Ipv6Unicast,
    }
}

/// Calico makes node-to-node sessions one-directional to avoid connection
/// collisions aborting graceful restart: the session on the node whose address
/// is *lower* is passive, so the node with the higher address connects. The
/// comparison is Calico's: on the addresses' text, so that petrel and Calico
/// nodes agree during a migration.
pub(crate) fn calico_passive(peer: IpAddr, me: IpAddr) -> bool {
    peer.to_string() > me.to_string()
}

fn parse_selector(s: &str, peer: &str, field: &str) -> Result<Selector, String> {
    Selector::parse(s).map_err(|e| format!("BGPPeer {peer:?}: spec.{field}: {e}"))
}

impl<'a> Resolver<'a> {
    /// A node-to-node mesh session of the last resolved configuration (they
    /// share the mesh's password and BFD profile), if the mesh ran.
    fn last_mesh_peer(&self) -> Option<&'a PeerConfig> {
        self.previous.and_then(|p| {
            p.peers
                .values()
                .find(|c| matches!(c.origin, PeerOrigin::Mesh(_) | PeerOrigin::Mesh6(_)))
        })
    }

    fn problem(&mut self, kind: &str, name: &str, reason: String) {
        self.problems.insert(ConfigProblem {
            kind: kind.to_string(),
            name: name.to_string(),
            reason,
        });
    }

    fn node_as(&self, n: &NodeInfo) -> u32 {
        n.as_number.unwrap_or(self.global_as)
    }

    /// Targets for the nodes of `nodes`, in the given families.
    fn node_targets(&self, peer: &str, nodes: &[&NodeInfo], v4: bool, v6: bool) -> Vec<Target> {
        let mut out = Vec::new();
        for n in nodes {
            let addrs = [
                (v4, n.ipv4.map(|a| IpAddr::V4(a.addr()))),
                (v6, n.ipv6.map(|a| IpAddr::V6(a.addr()))),
            ];
            for (wanted, addr) in addrs {
                let Some(ip) = addr.filter(|_| wanted) else {
                    continue;
                };
                out.push(Target {
                    origin: PeerOrigin::BgpPeerNode(
                        peer.to_string(),
                        n.name.clone(),
                        family_of(ip),
                    ),
                    ip,
                    port: self.listen_port,
                    peer_as: self.node_as(n),
                    rr_cluster_id: n.rr_cluster_id,
                    cluster_node: false,
                });
            }
        }
        out
    }

    fn selected(&self, sel: &Selector) -> Vec<&'a NodeInfo> {
        self.infos
            .iter()
            .filter(|n| sel.matches(&n.labels))
            .collect()
    }

    fn explicit_peers(&mut self) -> Result<(), String> {
        let snapshot = self.snapshot;
        let mut bgp_peers: Vec<&BGPPeer> = snapshot.peers.iter().collect();
        bgp_peers.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        for pass in [Pass::Global, Pass::NodeSpecific] {
            for bp in &bgp_peers {
                let spec = &bp.spec;
                let name = bp.metadata.name.as_deref().unwrap_or("");
                if spec.local_workload_selector.is_some() {
                    continue;
                }
                let is_global = spec.node.is_none() && spec.node_selector.is_none();
                let applies = match pass {
                    Pass::Global => is_global,
                    _ => {
                        !is_global
                            && (spec.node.as_deref() == Some(self.me.name.as_str())
                                || match &spec.node_selector {
                                    Some(s) => parse_selector(s, name, "nodeSelector")?
                                        .matches(&self.me.labels),
                                    None => false,
                                })
                    }
                };
                if !applies {
                    continue;
                }
                let targets = if let Some(ps) = &spec.peer_selector {
                    let sel = parse_selector(ps, name, "peerSelector")?;
                    self.node_targets(name, &self.selected(&sel), true, true)
                } else if let (Some(pip), Some(asn)) = (spec.peer_ip, spec.as_number) {
                    let node_match = self
                        .infos
                        .iter()
                        .any(|n| n.addresses().any(|a| a == pip.ip) && self.node_as(n) == asn);
                    let port = pip.port.unwrap_or(if node_match {
                        self.listen_port
                    } else {
                        DEFAULT_PORT
                    });
                    vec![Target {
                        origin: PeerOrigin::BgpPeer(name.to_string()),
                        ip: pip.ip,
                        port,
                        peer_as: asn,
                        rr_cluster_id: None,
                        cluster_node: self
                            .infos
                            .iter()
                            .any(|n| n.addresses().any(|a| a == pip.ip)),
                    }]
                } else {
                    Vec::new()
                };
                for t in targets {
                    self.emit(bp, t, pass)?;
                }
            }
        }
        // Automatic reverse peerings: the nodes a BGPPeer points at peer back
        // with the nodes it applies to.
        for bp in &bgp_peers {
            let spec = &bp.spec;
            let name = bp.metadata.name.as_deref().unwrap_or("");
            if spec.reverse_peering == Some(ReversePeering::Manual)
                || spec.local_workload_selector.is_some()
            {
                continue;
            }
            let (i_am_target, v4, v6) = if let Some(ps) = &spec.peer_selector {
                (
                    parse_selector(ps, name, "peerSelector")?.matches(&self.me.labels),
                    true,
                    true,
                )
            } else if let Some(pip) = spec.peer_ip {
                let asn = spec.as_number.unwrap_or(self.global_as);
                let port_ok = match (pip.port, self.cfg.listen_port) {
                    (Some(p), Some(lp)) => p == lp,
                    _ => true,
                };
                let mine =
                    self.me.addresses().any(|a| a == pip.ip) && self.local_as == asn && port_ok;
                (mine, pip.ip.is_ipv4(), pip.ip.is_ipv6())
            } else {
                continue;
            };
            if !i_am_target {
                continue;
            }
            let peer_nodes: Vec<&NodeInfo> = if let Some(ns) = &spec.node_selector {
                self.selected(&parse_selector(ns, name, "nodeSelector")?)
            } else if let Some(node) = &spec.node {
                self.infos.iter().filter(|n| &n.name == node).collect()
            } else {
                self.infos.iter().collect()
            };
            for t in self.node_targets(name, &peer_nodes, v4, v6) {
                self.emit(bp, t, Pass::Reverse)?;
            }
        }
        Ok(())
    }

    fn emit(&mut self, bp: &BGPPeer, t: Target, pass: Pass) -> Result<(), String> {
        let spec = &bp.spec;
        let name = bp.metadata.name.as_deref().unwrap_or("");
        if self.me.addresses().any(|a| a == t.ip) {
            return Ok(()); // ourselves
        }
        let Some(my_addr) = self.me.address_like(t.ip) else {
            tracing::warn!(
                node = self.me.name.as_str(),
                peer = %t.origin,
                address = %t.ip,
                "skipping peering: this node has no address of the peer's family"
            );
            return Ok(());
        };
        if !self.used.insert((t.ip, t.port)) {
            return Ok(());
        }
        let forward = pass != Pass::Reverse;
        let local_as = match spec.local_as_number {
            Some(l) if forward => l,
            _ => self.local_as,
        };
        // A Secret key or a BGPFilter this peer depends on that is missing
        // or invalid must not take the session down: the peer keeps its last
        // resolved password and filters, and the problem is reported. A peer
        // never resolved before is left out until its references resolve.
        let previous = self.previous.and_then(|p| p.peers.get(&t.origin));
        let password = match spec
            .password
            .as_ref()
            .and_then(|p| p.secret_key_ref.as_ref())
        {
            Some(sel) => match lookup_secret(&self.snapshot.secrets, sel)
                .map_err(|r| crate::kube::forbidden_wording(&r, &self.snapshot.forbidden_secrets))
            {
                Ok(p) => p,
                Err(r) => match previous {
                    Some(prev) => {
                        self.problem(
                            "BGPPeer",
                            name,
                            format!("spec.password: {r}; keeping the last password"),
                        );
                        prev.password.clone()
                    }
                    None => {
                        self.problem(
                            "BGPPeer",
                            name,
                            format!("spec.password: {r}; the peer is left out until it resolves"),
                        );
                        return Ok(());
                    }
                },
            },
            None => None,
        };
        let missing: Vec<&String> = spec
            .filters
            .iter()
            .filter(|f| {
                !f.is_empty()
                    && !self
                        .snapshot
                        .filters
                        .iter()
                        .any(|x| x.metadata.name.as_ref() == Some(*f))
            })
            .collect();
        let filters = if missing.is_empty() {
            spec.filters
                .iter()
                .filter(|f| !f.is_empty())
                .cloned()
                .collect()
        } else {
            let list = missing
                .iter()
                .map(|f| format!("{f:?}"))
                .collect::<Vec<_>>()
                .join(", ");
            match previous {
                Some(prev) => {
                    self.problem(
                        "BGPPeer",
                        name,
                        format!(
                            "spec.filters: BGPFilter {list} not found; keeping the last filters"
                        ),
                    );
                    prev.filters.clone()
                }
                None => {
                    self.problem("BGPPeer", name, format!("spec.filters: BGPFilter {list} not found; the peer is left out until it resolves"));
                    return Ok(());
                }
            }
        };
        let bfd = match spec.bfd_profile.as_deref().filter(|b| !b.is_empty()) {
            None => None,
            Some(profile) => match self.bfd_profile(profile) {
                Some(settings) => Some(settings),
                None => match previous {
                    Some(prev) => {
                        self.problem(
                            "BGPPeer",
                            name,
                            format!("spec.bfdProfile: BFDProfile {profile:?} not found; keeping the last BFD settings"),
                        );
                        prev.bfd.clone()
                    }
                    None => {
                        self.problem(
                            "BGPPeer",
                            name,
                            format!("spec.bfdProfile: BFDProfile {profile:?} not found; the peer is left out until it resolves"),
                        );
                        return Ok(());
                    }
                },
            },
        };
        let source_address = match spec.source_address {
            None | Some(SourceAddress::UseNodeIp) => Some(my_addr),
            Some(SourceAddress::None) => None,
            Some(SourceAddress::Address(ip)) if forward => Some(ip),
            Some(SourceAddress::Address(_)) => Some(my_addr),
        };
        let ebgp = t.peer_as != local_as;
        let next_hop_mode = match spec.next_hop_mode {
            Some(NextHopModeSpec::Auto) => NextHopMode::Auto,
            Some(NextHopModeSpec::SelfHop) => NextHopMode::SelfHop,
            Some(NextHopModeSpec::Keep) => NextHopMode::Keep,
            None if spec.keep_original_next_hop == Some(true) && ebgp => NextHopMode::Keep,
            None => NextHopMode::Auto,
        };
        let passive = (forward && spec.passive == Some(true))
            || (pass == Pass::Global && t.cluster_node && calico_passive(t.ip, my_addr));
        let num_allowed_local_as = if forward {
            spec.num_allowed_local_as_numbers
                .and_then(|n| u8::try_from(n).ok())
                .unwrap_or(0)
        } else {
            0
        };
        let route_reflector_client = self
            .me
            .rr_cluster_id
            .is_some_and(|cid| !ebgp && t.rr_cluster_id != Some(cid));
        let config = PeerConfig {
            origin: t.origin.clone(),
            address: t.ip,
            port: t.port,
            peer_as: t.peer_as,
            local_as,
            password,
            ttl_security: spec.ttl_security.filter(|h| *h > 0),
            source_address,
            hold_time: spec
                .hold_time
                .map_or(DEFAULT_HOLD_TIME, |h| h.as_duration()),
            keepalive_time: spec
                .keepalive_time
                .map(|k| Duration::from_secs(k.rounded_secs())),
            max_restart_time: spec.max_restart_time.map_or(DEFAULT_MAX_RESTART_TIME, |d| {
                Duration::from_secs(d.rounded_secs())
            }),
            passive,
            next_hop_mode,
            num_allowed_local_as,
            max_prefixes: spec.max_prefixes,
            filters,
            bfd,
            families: if forward && !spec.families.is_empty() {
                let mut f: Vec<Family> = spec
                    .families
                    .iter()
                    .map(|f| match f {
                        AddressFamilySpec::Ipv4 => Family::Ipv4Unicast,
                        AddressFamilySpec::Ipv6 => Family::Ipv6Unicast,
                    })
                    .collect();
                f.sort();
                f.dedup();
                f
            } else {
                vec![family_of(t.ip)]
            },
            route_reflector_client,
        };
        self.peers.insert(t.origin, config);
        Ok(())
    }

    /// The settings of the BFDProfile `name`, if it exists.
    fn bfd_profile(&self, name: &str) -> Option<BfdSettings> {
        self.snapshot
            .bfd_profiles
            .iter()
            .find(|b| b.metadata.name.as_deref() == Some(name))
            .map(|b| BfdSettings::from_spec(name, &b.spec))
    }

    /// The node-to-node mesh (Calico `processMeshPeers`): skipped on route
    /// reflectors and towards them; see [`calico_passive`] for which side connects.
    fn mesh_peers(&mut self) -> Result<(), String> {
        if self.cfg.node_to_node_mesh_enabled == Some(false) || self.me.rr_cluster_id.is_some() {
            return Ok(());
        }
        let password = match self
            .cfg
            .node_mesh_password
            .as_ref()
            .and_then(|p| p.secret_key_ref.as_ref())
        {
            Some(sel) => match lookup_secret(&self.snapshot.secrets, sel)
                .map_err(|r| crate::kube::forbidden_wording(&r, &self.snapshot.forbidden_secrets))
            {
                Ok(p) => p,
                Err(r) => {
                    // Keep the mesh's last password; with none (the mesh never
                    // ran), leave the mesh out until the Secret resolves.
                    let last = self.last_mesh_peer();
                    let Some(last) = last else {
                        self.problem(
                            "BGPConfiguration",
                            "default",
                            format!("spec.nodeMeshPassword: {r}; the node-to-node mesh is left out until it resolves"),
                        );
                        return Ok(());
                    };
                    self.problem(
                        "BGPConfiguration",
                        "default",
                        format!("spec.nodeMeshPassword: {r}; keeping the mesh's last password"),
                    );
                    last.password.clone()
                }
            },
            None => None,
        };
        let bfd = match self
            .cfg
            .node_mesh_bfd_profile
            .as_deref()
            .filter(|b| !b.is_empty())
        {
            None => None,
            Some(profile) => match self.bfd_profile(profile) {
                Some(settings) => Some(settings),
                None => {
                    let last = self.last_mesh_peer();
                    let Some(last) = last else {
                        self.problem(
                            "BGPConfiguration",
                            "default",
                            format!("spec.nodeMeshBFDProfile: BFDProfile {profile:?} not found; the node-to-node mesh is left out until it resolves"),
                        );
                        return Ok(());
                    };
                    self.problem(
                        "BGPConfiguration",
                        "default",
                        format!("spec.nodeMeshBFDProfile: BFDProfile {profile:?} not found; keeping the mesh's last BFD settings"),
                    );
                    last.bfd.clone()
                }
            },
        };
        let max_restart_time = self
            .cfg
            .node_mesh_max_restart_time
            .map_or(DEFAULT_MAX_RESTART_TIME, |d| {
                Duration::from_secs(d.rounded_secs())
            });
        let mut seen_names = BTreeSet::new();
        for other in self.infos {
            if other.name == self.me.name
                || other.rr_cluster_id.is_some()
                || !seen_names.insert(&other.name)
            {
                continue;
            }
            for ip in other.addresses().collect::<Vec<_>>() {
                let Some(my_addr) = self.me.address_like(ip) else {
                    continue;
                };
                if ip == my_addr || !self.used.insert((ip, self.listen_port)) {
                    continue;
                }
                let origin = match ip {
                    IpAddr::V4(_) => PeerOrigin::Mesh(other.name.clone()),
                    IpAddr::V6(_) => PeerOrigin::Mesh6(other.name.clone()),
                };
                let config = PeerConfig {
                    origin: origin.clone(),
                    address: ip,
                    port: self.listen_port,
                    peer_as: self.node_as(other),
                    local_as: self.local_as,
                    password: password.clone(),
                    ttl_security: None,
                    source_address: Some(my_addr),
                    hold_time: DEFAULT_HOLD_TIME,
                    keepalive_time: None,
                    max_restart_time,
                    passive: calico_passive(ip, my_addr),
                    next_hop_mode: NextHopMode::Auto,
                    num_allowed_local_as: 0,
                    max_prefixes: None,
                    filters: Vec::new(),
                    families: vec![family_of(ip)],
                    route_reflector_client: false,
                    bfd: bfd.clone(),
                };
                self.peers.insert(origin, config);
            }
        }
        Ok(())
    }
}
