//! UPDATE processing on receipt (RFC 4271 §9.1.1): the pre-policy
//! Adj-RIB-In, AS-path loop detection with allowas-in, route-reflection loop
//! checks (RFC 4456 §8), petrel's safe import defaults and `BGPFilter` import
//! rules, and the per-family prefix limit (RFC 4486 Cease/Maximum Number of
//! Prefixes Reached).

use super::{SessionCmd, Speaker};
use ipnet::IpNet;
use petrel_bgp::policy::{self, Direction, ImportVerdict, PeerType, RouteView};
use petrel_bgp::wire::{AsSegmentKind, Family, Nlri, PathAttributes, Update};
use petrel_datastore::resolved::{NodeConfig, PeerConfig, PeerOrigin};
use std::net::IpAddr;
use std::sync::Arc;
use tracing::warn;

/// Number of times `asn` occurs in the AS path (all segment kinds).
pub fn as_path_count(attrs: &PathAttributes, asn: u32) -> usize {
    attrs
        .as_path
        .iter()
        .filter(|s| {
            !matches!(
                s.kind,
                AsSegmentKind::ConfedSequence | AsSegmentKind::ConfedSet
            )
        })
        .map(|s| s.asns.iter().filter(|a| **a == asn).count())
        .sum()
}

/// The forwarding next hop of a route of `family` carried by `attrs`.
pub fn next_hop(attrs: &PathAttributes, family: Family) -> Option<IpAddr> {
    let mp = attrs.mp_next_hop.map(|m| m.global);
    let hop = match family {
        Family::Ipv4Unicast => attrs.next_hop.map(IpAddr::V4).or(mp),
        Family::Ipv6Unicast => mp,
    }?;
    // An unspecified or link-local-only global next hop cannot be installed
    // without an interface.
    match hop {
        IpAddr::V4(a) if a.is_unspecified() => None,
        IpAddr::V6(a) if a.is_unspecified() || a.is_unicast_link_local() => None,
        h => Some(h),
    }
}

/// The cluster node a session belongs to, when the peer is one of ours.
pub fn peer_node(origin: &PeerOrigin) -> Option<&str> {
    match origin {
        PeerOrigin::Mesh(n) | PeerOrigin::Mesh6(n) | PeerOrigin::BgpPeerNode(_, n, _) => Some(n),
        PeerOrigin::BgpPeer(_) => None,
    }
}

/// Import policy for one route from `peer`: the post-policy attributes and
/// next hop, or why it is rejected.
///
/// `own` are this node's addresses on the session (see
/// [`super::PeerEntry::own_addresses`]): a next hop equal to one of them is
/// refused (RFC 4271 §6.3), as if the route were withdrawn.
pub fn evaluate(
    node: &NodeConfig,
    peer: &PeerConfig,
    own: &[Option<IpAddr>],
    prefix: IpNet,
    attrs: &Arc<PathAttributes>,
) -> Result<(Arc<PathAttributes>, IpAddr), String> {
    let local_as = peer.local_as;
    if as_path_count(attrs, local_as) > usize::from(peer.num_allowed_local_as) {
        return Err(format!("AS path loop: contains local AS {local_as}"));
    }
    if attrs.originator_id == Some(node.router_id) {
        return Err("ORIGINATOR_ID is our router id (RFC 4456 loop)".into());
    }
    if let Some(cluster) = node.route_reflector_cluster_id
        && attrs.cluster_list.contains(&cluster)
    {
        return Err(format!(
            "CLUSTER_LIST contains our cluster id {cluster} (RFC 4456 loop)"
        ));
    }
    let hop = next_hop(attrs, Family::of(&prefix)).ok_or("no usable next hop")?;
    if own.contains(&Some(hop)) {
        return Err(format!(
            "NEXT_HOP {hop} is this node's own address on the session (RFC 4271 §6.3)"
        ));
    }
    let verdict = match peer_node(&peer.origin) {
        Some(from) => policy::default_import_from_node(
            &node.cluster,
            node.cluster.originating_node(from, attrs.originator_id),
            prefix,
        ),
        None => policy::default_import_from_external(&node.cluster, prefix),
    };
    let (default_accept, default_reason) = match verdict {
        ImportVerdict::Accept => (true, None),
        ImportVerdict::Reject(r) => (false, Some(r.to_string())),
    };
    let filters: Vec<(&str, &petrel_crd::BgpFilterSpec)> = peer
        .filters
        .iter()
        .filter_map(|n| node.filters.get(n).map(|f| (n.as_str(), f)))
        .collect();
    let ebgp = peer.peer_as != peer.local_as;
    let view = RouteView {
        prefix,
        attrs,
        learned_from_peer: true,
        interface: None,
        peer_type: if ebgp { PeerType::Ebgp } else { PeerType::Ibgp },
        priority: attrs.local_pref.and_then(policy::priority_from_local_pref),
    };
    let outcome = policy::apply(&filters, Direction::Import, &view, local_as, default_accept);
    if !outcome.accept {
        return Err(match (outcome.matched, default_reason) {
            (None, Some(r)) => r,
            _ => outcome.reason,
        });
    }
    let mut post = outcome.attrs.map(Arc::new).unwrap_or_else(|| attrs.clone());
    // LOCAL_PREF from an external peer is ignored (RFC 4271 §5.1.5), unless
    // a filter operation set it.
    if ebgp && post.local_pref.is_some() && Arc::ptr_eq(&post, attrs) {
        let mut a = (*post).clone();
        a.local_pref = None;
        post = Arc::new(a);
    }
    // RFC 8326 §4: the sender drains; prefer any other path.
    if let Some(a) = super::drain::import_draining(&post) {
        post = Arc::new(a);
    }
    Ok((post, hop))
}

impl Speaker {
    pub(super) fn import(&mut self, origin: &PeerOrigin, update: Update) {
        let Some(entry) = self.peers.get_mut(origin) else {
            return;
        };
        if entry.source.is_none() {
            return;
        }
        for w in &update.withdrawn {
            let key = (w.prefix, w.path_id.unwrap_or(0));
            entry.refresh_stale.remove(&key);
            if let Some(h) = &mut entry.graceful {
                h.refreshed(&key);
            }
            entry.adj_in_pre.remove(&key);
            self.rib.remove(entry.id, key.0, key.1);
        }
        let Some(attrs) = update.attrs else { return };
        if update.announced.is_empty() {
            return;
        }
        for nlri in &update.announced {
            let key = (nlri.prefix, nlri.path_id.unwrap_or(0));
            entry.refresh_stale.remove(&key);
            if let Some(h) = &mut entry.graceful {
                h.refreshed(&key);
            }
            entry.adj_in_pre.insert(key, attrs.clone());
        }
        self.import_routes(origin, &update.announced, &attrs);
    }

    /// Run import policy over routes already in the peer's pre-policy
    /// Adj-RIB-In and update the Loc-RIB.
    fn import_routes(&mut self, origin: &PeerOrigin, nlri: &[Nlri], attrs: &Arc<PathAttributes>) {
        let Some(node) = self.node.as_ref() else {
            return;
        };
        let Some(entry) = self.peers.get_mut(origin) else {
            return;
        };
        let Some(source) = entry.source.clone() else {
            return;
        };
        let mut families = Vec::new();
        let mut first_reject = None;
        let own = entry.own_addresses();
        for n in nlri {
            let path_id = n.path_id.unwrap_or(0);
            match evaluate(node, &entry.config, &own, n.prefix, attrs) {
                Ok((post, hop)) => {
                    self.rib.insert(&source, n.prefix, path_id, post, Some(hop));
                    let f = Family::of(&n.prefix);
                    if !families.contains(&f) {
                        families.push(f);
                    }
                }
                Err(reason) => {
                    self.rib.remove(entry.id, n.prefix, path_id);
                    first_reject.get_or_insert((n.prefix, reason));
                }
            }
        }
        if let Some((prefix, reason)) = first_reject {
            // Loops are routine (an eBGP upstream sends our own routes back);
            // policy rejections are worth seeing.
            if reason.starts_with("AS path loop") {
                tracing::debug!(peer = %origin, %prefix, %reason, "route rejected on import");
            } else {
                tracing::info!(peer = %origin, %prefix, %reason, "route rejected on import");
            }
        }
        self.check_prefix_limit(origin, &families);
    }

    /// Re-run import policy over every peer's pre-policy Adj-RIB-In (after a
    /// filter or cluster change), without asking peers to resend.
    pub(super) fn reimport_all(&mut self) {
        let origins: Vec<PeerOrigin> = self.peers.keys().cloned().collect();
        for origin in origins {
            let Some(entry) = self.peers.get(&origin) else {
                continue;
            };
            let mut by_attrs: std::collections::HashMap<Arc<PathAttributes>, Vec<Nlri>> =
                std::collections::HashMap::new();
            for ((prefix, path_id), attrs) in &entry.adj_in_pre {
                let path_id = if *path_id == 0 { None } else { Some(*path_id) };
                by_attrs.entry(attrs.clone()).or_default().push(Nlri {
                    prefix: *prefix,
                    path_id,
                });
            }
            for (attrs, nlri) in by_attrs {
                self.import_routes(&origin, &nlri, &attrs);
            }
        }
    }

    fn check_prefix_limit(&mut self, origin: &PeerOrigin, families: &[Family]) {
        let Some(entry) = self.peers.get_mut(origin) else {
            return;
        };
        let Some(limit) = entry.config.max_prefixes else {
            return;
        };
        for family in families {
            let count = self.rib.adj_in_count(entry.id, *family);
            if count > limit as usize {
                let reason = format!(
                    "maximum number of prefixes exceeded: {count} {} prefixes > limit {limit}",
                    family.name()
                );
                warn!(peer = %origin, %reason, "sending Cease/Maximum Number of Prefixes Reached");
                let (local, peer) = super::graceful::caps(entry.negotiated.as_deref());
                let sent = super::graceful::hard_reset_if_needed(
                    petrel_bgp::wire::Notification::max_prefixes(*family, limit),
                    local,
                    peer,
                );
                entry.last_error = reason.clone();
                entry.stop_reason = Some((reason, sent.clone()));
                let _ = entry.cmd.send(SessionCmd::Stop {
                    notification: sent,
                    restart: true,
                });
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use petrel_bgp::wire::{AsSegment, MpNextHop};

    #[test]
    fn loop_count_ignores_confederation_segments() {
        let a = PathAttributes {
            as_path: vec![
                AsSegment {
                    kind: AsSegmentKind::ConfedSequence,
                    asns: vec![65001],
                },
                AsSegment {
                    kind: AsSegmentKind::Sequence,
                    asns: vec![65002, 65001, 65001],
                },
            ],
            ..Default::default()
        };
        assert_eq!(as_path_count(&a, 65001), 2);
        assert_eq!(as_path_count(&a, 65009), 0);
    }

    #[test]
    fn next_hop_by_family() {
        let a = PathAttributes {
            next_hop: Some("192.0.2.1".parse().unwrap()),
            mp_next_hop: Some(MpNextHop {
                global: "2001:db8::1".parse().unwrap(),
                link_local: None,
            }),
            ..Default::default()
        };
        assert_eq!(
            next_hop(&a, Family::Ipv4Unicast),
            Some("192.0.2.1".parse().unwrap())
        );
        assert_eq!(
            next_hop(&a, Family::Ipv6Unicast),
            Some("2001:db8::1".parse().unwrap())
        );
        let ll = PathAttributes {
            mp_next_hop: Some(MpNextHop {
                global: "fe80::1".parse().unwrap(),
                link_local: None,
            }),
            ..Default::default()
        };
        assert_eq!(next_hop(&ll, Family::Ipv6Unicast), None);
    }

    fn test_node() -> NodeConfig {
        NodeConfig {
            ipv4_address: Some("10.0.0.1/24".parse().unwrap()),
            bind_mode: petrel_datastore::resolved::BindMode::None,
            ..crate::fixtures::node()
        }
    }

    fn test_peer() -> PeerConfig {
        PeerConfig {
            peer_as: 65001,
            ..crate::fixtures::peer("10.0.0.2")
        }
    }

    #[test]
    fn own_address_as_next_hop_is_refused() {
        let attrs = Arc::new(PathAttributes {
            origin: Some(petrel_bgp::wire::Origin::Igp),
            next_hop: Some("10.0.0.1".parse().unwrap()),
            ..Default::default()
        });
        let prefix: IpNet = "198.51.100.0/24".parse().unwrap();
        let own = [Some("10.0.0.1".parse().unwrap()), None];
        let err = evaluate(&test_node(), &test_peer(), &own, prefix, &attrs).unwrap_err();
        assert!(err.contains("RFC 4271 §6.3"), "{err}");
        // Another next hop on the same subnet is fine.
        let other = Arc::new(PathAttributes {
            next_hop: Some("10.0.0.2".parse().unwrap()),
            ..(*attrs).clone()
        });
        let (_, hop) = evaluate(&test_node(), &test_peer(), &own, prefix, &other).unwrap();
        assert_eq!(hop, "10.0.0.2".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn graceful_shutdown_routes_get_local_pref_zero() {
        let attrs = Arc::new(PathAttributes {
            origin: Some(petrel_bgp::wire::Origin::Igp),
            next_hop: Some("10.0.0.2".parse().unwrap()),
            communities: vec![crate::drain::GRACEFUL_SHUTDOWN],
            ..Default::default()
        });
        let prefix: IpNet = "198.51.100.0/24".parse().unwrap();
        // From an external peer (whose LOCAL_PREF is ignored) too.
        let (post, _) =
            evaluate(&test_node(), &test_peer(), &[None, None], prefix, &attrs).unwrap();
        assert_eq!(post.local_pref, Some(0));
        let plain = Arc::new(PathAttributes {
            communities: vec![],
            ..(*attrs).clone()
        });
        let (post, _) =
            evaluate(&test_node(), &test_peer(), &[None, None], prefix, &plain).unwrap();
        assert_eq!(post.local_pref, None);
    }

    #[test]
    fn cluster_node_of_each_origin() {
        assert_eq!(peer_node(&PeerOrigin::Mesh("n2".into())), Some("n2"));
        assert_eq!(peer_node(&PeerOrigin::BgpPeer("tor".into())), None);
    }
}
