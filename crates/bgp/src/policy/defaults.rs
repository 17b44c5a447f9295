//! petrel's default import policy when no `BGPFilter` rule decides
//! (RFC 4271 §9.1.1 input policy): routes from other cluster nodes are
//! accepted only for the pool blocks the sending node owns and for service
//! prefixes, so that no node can hijack another node's block; routes from
//! external peers are accepted except inside the cluster's IP pools.

use ipnet::IpNet;
use std::fmt;

/// What the import defaults need to know about the cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterView {
    /// IP pools (IPv4 and IPv6).
    pub pools: Vec<IpNet>,
    /// IPAM blocks with the node each is affine to.
    pub blocks: Vec<(IpNet, String)>,
    /// Prefixes service addresses are advertised from (cluster IPs,
    /// external IPs, load-balancer IPs).
    pub service_cidrs: Vec<IpNet>,
    /// Every node's BGP router id, with the node's name.
    pub router_ids: Vec<(std::net::Ipv4Addr, String)>,
    /// Nodes that are route reflectors (have a cluster ID).
    pub reflectors: Vec<String>,
}

impl ClusterView {
    /// The node whose route is judged when `sender` sends a route with
    /// `originator_id`: for a route reflected by a route-reflector node, the
    /// node with that router id (RFC 4456 ORIGINATOR_ID); else the sender.
    pub fn originating_node<'a>(
        &'a self,
        sender: &'a str,
        originator_id: Option<std::net::Ipv4Addr>,
    ) -> &'a str {
        match originator_id {
            Some(id) if self.reflectors.iter().any(|r| r == sender) => self
                .router_ids
                .iter()
                .find(|(r, _)| *r == id)
                .map_or(sender, |(_, n)| n.as_str()),
            _ => sender,
        }
    }
}

/// Verdict of a default import rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportVerdict {
    Accept,
    Reject(RejectReason),
}

/// Why a default import rule rejected a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RejectReason {
    /// The prefix is (inside) a block another node owns: a hijack attempt.
    NotOwner { block: IpNet, owner: String },
    /// The prefix lies in a pool but in none of the sending node's blocks.
    NotSendersBlock { pool: IpNet },
    /// An external peer announced a prefix inside one of our pools.
    InsidePool(IpNet),
    /// From a cluster node: neither a block of that node, nor a pool prefix,
    /// nor a service prefix.
    NotAllowed,
}

impl RejectReason {
    /// Stable short name, for counters and metric labels.
    pub fn label(&self) -> &'static str {
        match self {
            RejectReason::NotOwner { .. } => "not_owner",
            RejectReason::NotSendersBlock { .. } => "not_senders_block",
            RejectReason::InsidePool(_) => "inside_pool",
            RejectReason::NotAllowed => "not_allowed",
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RejectReason::NotOwner { block, owner } => {
                write!(f, "inside block {block}, which belongs to node {owner}")
            }
            RejectReason::NotSendersBlock { pool } => {
                write!(
                    f,
                    "inside IP pool {pool} but not inside a block of the sending node"
                )
            }
            RejectReason::InsidePool(pool) => {
                write!(f, "inside IP pool {pool}, announced by an external peer")
            }
            RejectReason::NotAllowed => {
                f.write_str("neither a block of the sending node nor a service prefix")
            }
        }
    }
}

/// Whether `prefix` equals or lies within `outer` (same family only).
fn within(outer: &IpNet, prefix: &IpNet) -> bool {
    outer.trunc().contains(&prefix.trunc())
}

/// Default import from another cluster node `from_node`, checked in this
/// order: inside one of `from_node`'s blocks → accept; inside another node's
/// block → reject (hijack); inside a service CIDR → accept; inside a pool →
/// reject; anything else → reject.
pub fn default_import_from_node(
    view: &ClusterView,
    from_node: &str,
    prefix: IpNet,
) -> ImportVerdict {
    if view
        .blocks
        .iter()
        .any(|(b, owner)| owner == from_node && within(b, &prefix))
    {
        return ImportVerdict::Accept;
    }
    if let Some((block, owner)) = view.blocks.iter().find(|(b, _)| within(b, &prefix)) {
        return ImportVerdict::Reject(RejectReason::NotOwner {
            block: *block,
            owner: owner.clone(),
        });
    }
    if view.service_cidrs.iter().any(|s| within(s, &prefix)) {
        return ImportVerdict::Accept;
    }
    if let Some(pool) = view.pools.iter().find(|p| within(p, &prefix)) {
        return ImportVerdict::Reject(RejectReason::NotSendersBlock { pool: *pool });
    }
    ImportVerdict::Reject(RejectReason::NotAllowed)
}

/// Default import from an external (non-cluster) peer: accept, except
/// prefixes equal to or inside one of the cluster's IP pools. A prefix that
/// merely covers a pool (such as a default route) is accepted: the pool's
/// more specific routes still win.
pub fn default_import_from_external(view: &ClusterView, prefix: IpNet) -> ImportVerdict {
    match view.pools.iter().find(|p| within(p, &prefix)) {
        Some(pool) => ImportVerdict::Reject(RejectReason::InsidePool(*pool)),
        None => ImportVerdict::Accept,
    }
}
