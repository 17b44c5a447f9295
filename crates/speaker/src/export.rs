//! The update-send process (RFC 4271 §9.2): per-peer Adj-RIB-Out and the
//! export rules of a cluster node.
//!
//! - Split horizon: a route is never sent back to the peer it came from, and
//!   iBGP-learned routes go to iBGP peers only through route reflection
//!   (RFC 4456 §6: client routes to everyone, non-client routes to clients;
//!   ORIGINATOR_ID and CLUSTER_LIST set on reflection).
//! - The node is never transit: routes learned from an external (eBGP) peer
//!   are not sent to another external peer unless a `BGPFilter` rule accepts
//!   them explicitly.
//! - `nextHopMode` Auto/Self/Keep; AS_PATH prepend and LOCAL_PREF/MED/
//!   ORIGINATOR_ID/CLUSTER_LIST stripped toward eBGP (RFC 4271 §5.1);
//!   `prefixAdvertisements` communities added; unknown optional transitive
//!   attributes are re-advertised (Partial bit set) only with
//!   `passUnknownAttributes`, stripped by default.
//! - Routes sharing an attribute set are packed into one UPDATE.

use super::{PeerEntry, SessionCmd, Speaker, peers::same_family};
use ipnet::IpNet;
use petrel_bgp::policy::{self, Direction, PeerType, RouteView};
use petrel_bgp::rib::{Destination, Path};
use petrel_bgp::wire::{AsSegment, AsSegmentKind, Family, MpNextHop, Nlri, PathAttributes};
use petrel_datastore::resolved::{Community, NextHopMode, NodeConfig, PeerOrigin};
use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

/// Why a route is not exported to a peer (for tests and logs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotExported {
    NoRoute,
    FamilyNotNegotiated,
    SplitHorizon,
    IbgpWithoutReflection,
    NoNextHop,
    /// RFC 1997 NO_ADVERTISE: to no peer at all.
    NoAdvertise,
    /// RFC 1997 NO_EXPORT / NO_EXPORT_SUBCONFED: not to an external peer.
    NoExport,
    Policy(String),
}

/// RFC 1997 well-known community NO_EXPORT.
pub const NO_EXPORT: u32 = 0xFFFF_FF01;
/// RFC 1997 well-known community NO_ADVERTISE.
pub const NO_ADVERTISE: u32 = 0xFFFF_FF02;
/// RFC 1997 well-known community NO_EXPORT_SUBCONFED.
pub const NO_EXPORT_SUBCONFED: u32 = 0xFFFF_FF03;

/// What export needs to know about the peer a route is sent to.
#[derive(Debug, Clone)]
pub struct ExportTarget<'a> {
    pub id: u32,
    pub ebgp: bool,
    pub local_as: u32,
    pub rr_client: bool,
    /// The peer is another node of the cluster.
    pub cluster_node: bool,
    pub next_hop_mode: NextHopMode,
    pub filters: &'a [String],
    /// Negotiated families.
    pub families: &'a [Family],
    /// Our address on the session.
    pub local_addr: IpAddr,
    /// Our address of the other family on the session's interface.
    pub other_family_hop: Option<IpAddr>,
    /// This node drains (RFC 8326): what it originates goes out marked.
    pub draining: bool,
}

impl PeerEntry {
    /// The export view of this peer, when its session is established.
    pub fn export_target(&self) -> Option<ExportTarget<'_>> {
        Some(ExportTarget {
            id: self.id,
            ebgp: self.ebgp(),
            local_as: self.config.local_as,
            rr_client: self.config.route_reflector_client,
            cluster_node: super::import::peer_node(&self.config.origin).is_some(),
            next_hop_mode: self.config.next_hop_mode,
            filters: &self.config.filters,
            families: &self.negotiated.as_ref()?.families,
            local_addr: self.local_addr?.ip().to_canonical(),
            other_family_hop: self.other_family_hop,
            draining: false,
        })
    }
}

/// Our address toward `peer` for a route of `family`.
fn self_next_hop(node: &NodeConfig, peer: &ExportTarget, family: Family) -> Option<IpAddr> {
    let local = peer.local_addr;
    if same_family(local, family) {
        return Some(local);
    }
    // The other family: our address on the session's interface, else the
    // node's own address of that family.
    if let Some(h) = peer.other_family_hop.filter(|h| same_family(*h, family)) {
        return Some(h);
    }
    match family {
        Family::Ipv4Unicast => node.ipv4_address.map(|a| IpAddr::V4(a.addr())),
        Family::Ipv6Unicast => node.ipv6_address.map(|a| IpAddr::V6(a.addr())),
    }
}

/// Prepend `asn` to an AS path (RFC 4271 §5.1.2).
fn prepend(path: &[AsSegment], asn: u32) -> Vec<AsSegment> {
    let mut out = path.to_vec();
    match out.first_mut() {
        Some(s) if s.kind == AsSegmentKind::Sequence && s.asns.len() < 255 => s.asns.insert(0, asn),
        _ => out.insert(
            0,
            AsSegment {
                kind: AsSegmentKind::Sequence,
                asns: vec![asn],
            },
        ),
    }
    out
}

/// Attributes to send `peer` for `prefix` (whose Loc-RIB entry is `dest`).
/// `source_is_client` tells whether the best path's peer is a route-reflector
/// client of this node.
pub fn export_attrs(
    node: &NodeConfig,
    peer: &ExportTarget,
    prefix: &IpNet,
    dest: Option<&Destination>,
    source_is_client: impl Fn(&Path) -> bool,
) -> Result<PathAttributes, NotExported> {
    let best = dest.and_then(|d| d.best()).ok_or(NotExported::NoRoute)?;
    let family = Family::of(prefix);
    if !peer.families.contains(&family) {
        return Err(NotExported::FamilyNotNegotiated);
    }
    let src = &best.source;
    if !src.local && src.peer == peer.id {
        return Err(NotExported::SplitHorizon);
    }
    let to_ebgp = peer.ebgp;
    let well_known = &best.attrs.communities;
    if well_known.contains(&NO_ADVERTISE) {
        return Err(NotExported::NoAdvertise);
    }
    if to_ebgp && (well_known.contains(&NO_EXPORT) || well_known.contains(&NO_EXPORT_SUBCONFED)) {
        return Err(NotExported::NoExport);
    }
    let mut reflected = false;
    let mut default_accept = true;
    if !src.local {
        if src.ebgp && to_ebgp {
            // Never transit between external peers unless a filter says so.
            default_accept = false;
        } else if src.cluster_node
            && !peer.cluster_node
            && node.route_reflector_cluster_id.is_none()
        {
            // Another node's routes (its blocks, its local-policy service
            // addresses) reach external peers from that node itself: passing
            // them on would draw its traffic through this node, and for
            // externalTrafficPolicy Local to a node without an endpoint. A
            // route reflector does pass them on: it speaks for its clients.
            default_accept = false;
        } else if !src.ebgp && !to_ebgp {
            let Some(_cluster) = node.route_reflector_cluster_id else {
                return Err(NotExported::IbgpWithoutReflection);
            };
            if !source_is_client(best) && !peer.rr_client {
                return Err(NotExported::IbgpWithoutReflection);
            }
            reflected = true;
        }
    }

    let mut a = PathAttributes {
        origin: best.attrs.origin,
        atomic_aggregate: best.attrs.atomic_aggregate,
        aggregator: best.attrs.aggregator,
        communities: best.attrs.communities.clone(),
        ext_communities: best.attrs.ext_communities.clone(),
        large_communities: best.attrs.large_communities.clone(),
        // Received unknown optional transitive attributes already carry the
        // Partial bit (set on decode, RFC 4271 §5).
        unknown: if node.pass_unknown_attributes {
            best.attrs.unknown.clone()
        } else {
            Vec::new()
        },
        ..Default::default()
    };
    for c in node.communities_for(prefix) {
        match c {
            Community::Standard(v) if !a.communities.contains(&v) => a.communities.push(v),
            Community::Large(v) if !a.large_communities.contains(&v) => a.large_communities.push(v),
            _ => {}
        }
    }
    if to_ebgp {
        a.as_path = prepend(&best.attrs.as_path, peer.local_as);
    } else {
        a.as_path = best.attrs.as_path.clone();
        a.local_pref = Some(best.attrs.local_pref.unwrap_or(100));
        // MED learned from another AS is not passed on to a third AS, but it
        // is kept inside ours (RFC 4271 §5.1.4).
        a.med = best.attrs.med;
        if reflected {
            a.originator_id = Some(best.attrs.originator_id.unwrap_or(src.router_id));
            let mut cl = vec![node.route_reflector_cluster_id.unwrap_or(node.router_id)];
            cl.extend(best.attrs.cluster_list.iter().copied());
            a.cluster_list = cl;
        }
    }

    let keep = match peer.next_hop_mode {
        NextHopMode::SelfHop => false,
        NextHopMode::Keep => true,
        // Auto: next hop self toward eBGP peers, unchanged toward iBGP peers.
        NextHopMode::Auto => !to_ebgp,
    };
    let hop = match (src.local, keep, best.next_hop) {
        (false, true, Some(h)) => h,
        _ => self_next_hop(node, peer, family).ok_or(NotExported::NoNextHop)?,
    };
    match (family, hop) {
        (Family::Ipv4Unicast, IpAddr::V4(h)) => a.next_hop = Some(h),
        (_, h) => {
            a.mp_next_hop = Some(MpNextHop {
                global: h,
                link_local: None,
            })
        }
    }

    let filters: Vec<(&str, &petrel_crd::BgpFilterSpec)> = peer
        .filters
        .iter()
        .filter_map(|n| node.filters.get(n).map(|f| (n.as_str(), f)))
        .collect();
    let view = RouteView {
        prefix: *prefix,
        attrs: &a,
        learned_from_peer: !src.local,
        interface: None,
        peer_type: if to_ebgp {
            PeerType::Ebgp
        } else {
            PeerType::Ibgp
        },
        priority: None,
    };
    let outcome = policy::apply(
        &filters,
        Direction::Export,
        &view,
        peer.local_as,
        default_accept,
    );
    if !outcome.accept {
        return Err(NotExported::Policy(outcome.reason));
    }
    let mut out = outcome.attrs.unwrap_or(a);
    // After the filters: a drain is not undone by an export rule.
    if peer.draining && src.local {
        super::drain::mark_draining(&mut out, to_ebgp);
    }
    Ok(out)
}

impl Speaker {
    /// Re-export the prefixes in `changed` to every established peer.
    pub(super) fn export_changes(&mut self, changed: &BTreeSet<IpNet>) {
        let origins: Vec<PeerOrigin> = self
            .peers
            .iter()
            .filter(|(_, p)| p.negotiated.is_some())
            .map(|(k, _)| k.clone())
            .collect();
        for o in origins {
            self.export_prefixes(&o, changed.iter().copied());
        }
    }

    /// Bring the peer's Adj-RIB-Out in line with the whole Loc-RIB.
    pub(super) fn export_full(&mut self, origin: &PeerOrigin) {
        let Some(peer) = self.peers.get(origin) else {
            return;
        };
        let mut all: BTreeSet<IpNet> = self.rib.iter().map(|(p, _)| *p).collect();
        all.extend(peer.adj_out.keys().copied());
        self.export_prefixes(origin, all.into_iter());
    }

    fn export_prefixes(&mut self, origin: &PeerOrigin, prefixes: impl Iterator<Item = IpNet>) {
        if self.deferring {
            // RFC 4724 §4.1: nothing goes out before the deferred selection.
            return;
        }
        let draining = self.drain_now().is_some();
        let Some(node) = self.node.as_ref() else {
            return;
        };
        let clients: BTreeSet<u32> = self
            .peers
            .values()
            .filter(|p| p.config.route_reflector_client)
            .map(|p| p.id)
            .collect();
        let Some(peer) = self.peers.get_mut(origin) else {
            return;
        };
        let Some(mut target) = peer.export_target() else {
            return;
        };
        target.draining = draining;
        let mut decided = Vec::new();
        for prefix in prefixes {
            let desired = export_attrs(node, &target, &prefix, self.rib.get(&prefix), |p| {
                clients.contains(&p.source.peer)
            })
            .ok();
            decided.push((prefix, desired));
        }
        let mut announce: HashMap<Arc<PathAttributes>, Vec<Nlri>> = HashMap::new();
        let mut withdraw = Vec::new();
        for (prefix, desired) in decided {
            match (desired, peer.adj_out.get(&prefix)) {
                (Some(a), Some(old)) if **old == a => {}
                (Some(a), _) => {
                    let a = Arc::new(a);
                    let key = announce
                        .get_key_value(&a)
                        .map(|(k, _)| k.clone())
                        .unwrap_or(a);
                    peer.adj_out.insert(prefix, key.clone());
                    announce.entry(key).or_default().push(Nlri::new(prefix));
                }
                (None, Some(_)) => {
                    peer.adj_out.remove(&prefix);
                    withdraw.push(Nlri::new(prefix));
                }
                (None, None) => {}
            }
        }
        if !withdraw.is_empty() {
            let _ = peer.cmd.send(SessionCmd::Withdraw(withdraw));
        }
        for (attrs, nlri) in announce {
            let _ = peer.cmd.send(SessionCmd::Announce(attrs, nlri));
        }
    }
}

#[cfg(test)]
#[path = "export_tests.rs"]
mod tests;
