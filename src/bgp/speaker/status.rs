//! Status views of the speaker for the management API: peers (RFC 4271
//! §8 states), the Loc-RIB with the reason each path lost (RFC 4271 §9.1.2),
//! and per peer the pre-policy Adj-RIB-In and the Adj-RIB-Out (RFC 4271
//! §3.2).

use super::Speaker;
use crate::api::pb;
use crate::bgp::rib::Path;
use crate::bgp::wire::{Family, Origin, PathAttributes};
use std::net::IpAddr;
use std::sync::atomic::Ordering;

/// "65000:100" for a standard community (RFC 1997).
pub fn fmt_community(c: u32) -> String {
    format!("{}:{}", c >> 16, c & 0xffff)
}

fn route_view(prefix: &ipnet::IpNet, p: &Path, best: bool, reason: Option<String>) -> pb::Route {
    let a = &p.attrs;
    pb::Route {
        prefix: prefix.to_string(),
        next_hop: p.next_hop.map(|h| h.to_string()).unwrap_or_default(),
        peer: p.source.name.to_string(),
        as_path: a
            .as_path
            .iter()
            .flat_map(|s| s.asns.iter().copied())
            .collect(),
        origin: origin_name(a.origin),
        local_pref: a.local_pref.unwrap_or(100),
        has_med: a.med.is_some(),
        med: a.med.unwrap_or(0),
        communities: a.communities.iter().map(|c| fmt_community(*c)).collect(),
        large_communities: a
            .large_communities
            .iter()
            .map(|[g, l1, l2]| format!("{g}:{l1}:{l2}"))
            .collect(),
        best,
        reason: reason.unwrap_or_default(),
        stale: false,
    }
}

fn origin_name(o: Option<Origin>) -> String {
    match o {
        Some(Origin::Igp) => "igp",
        Some(Origin::Egp) => "egp",
        Some(Origin::Incomplete) | None => "incomplete",
    }
    .to_string()
}

/// The next hop carried by `attrs` for a route of `family`, as on the wire
/// (link-local and unspecified hops included).
fn wire_next_hop(attrs: &PathAttributes, family: Family) -> Option<IpAddr> {
    let mp = attrs.mp_next_hop.map(|m| m.global);
    match family {
        Family::Ipv4Unicast => attrs.next_hop.map(IpAddr::V4).or(mp),
        Family::Ipv6Unicast => mp,
    }
}

/// One Adj-RIB route for the API; `verdict` is `Err(reason)` for a received
/// route that import policy rejects.
pub(super) fn peer_route_view(
    peer: &str,
    peer_address: IpAddr,
    prefix: &ipnet::IpNet,
    path_id: u32,
    a: &PathAttributes,
    verdict: Result<(), String>,
) -> pb::PeerRoute {
    pb::PeerRoute {
        peer: peer.to_string(),
        peer_address: peer_address.to_string(),
        prefix: prefix.to_string(),
        path_id,
        next_hop: wire_next_hop(a, Family::of(prefix))
            .map(|h| h.to_string())
            .unwrap_or_default(),
        as_path: a
            .as_path
            .iter()
            .flat_map(|s| s.asns.iter().copied())
            .collect(),
        origin: origin_name(a.origin),
        has_local_pref: a.local_pref.is_some(),
        local_pref: a.local_pref.unwrap_or(0),
        has_med: a.med.is_some(),
        med: a.med.unwrap_or(0),
        communities: a.communities.iter().map(|c| fmt_community(*c)).collect(),
        large_communities: a
            .large_communities
            .iter()
            .map(|[g, l1, l2]| format!("{g}:{l1}:{l2}"))
            .collect(),
        accepted: verdict.is_ok(),
        reject_reason: verdict.err().unwrap_or_default(),
    }
}

/// Whether a peer (configuration name `name`, address `address`) matches a
/// query: an address (compared as an IP address) or a configuration name.
pub(super) fn peer_matches(query: &str, name: &str, address: IpAddr) -> bool {
    match query.parse::<IpAddr>() {
        Ok(ip) => ip == address,
        Err(_) => query == name,
    }
}

fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The event for a changed Loc-RIB entry (`None`: withdrawn).
pub(super) fn route_change(
    prefix: &ipnet::IpNet,
    dest: Option<&crate::bgp::rib::Destination>,
) -> pb::RouteChange {
    let best = dest.and_then(|d| d.best());
    match best {
        None => pb::RouteChange {
            prefix: prefix.to_string(),
            withdrawn: true,
            ..Default::default()
        },
        Some(b) => pb::RouteChange {
            prefix: prefix.to_string(),
            withdrawn: false,
            peer: b.source.name.to_string(),
            next_hops: dest
                .map(|d| d.multipath_paths())
                .unwrap_or_default()
                .iter()
                .filter_map(|p| p.next_hop.map(|h| h.to_string()))
                .collect(),
            as_path: b
                .attrs
                .as_path
                .iter()
                .flat_map(|s| s.asns.iter().copied())
                .collect(),
        },
    }
}

/// The kind of peer, for `petrel peers` (`Peer.peer_type`).
fn peer_type(c: &crate::datastore::resolved::PeerConfig) -> &'static str {
    use crate::datastore::resolved::PeerOrigin;
    match &c.origin {
        _ if c.route_reflector_client => "route-reflector-client",
        PeerOrigin::Mesh(_) | PeerOrigin::Mesh6(_) => "mesh",
        PeerOrigin::BgpPeerNode(..) => "node",
        PeerOrigin::BgpPeer(_) => "external",
    }
}

/// Negotiated capabilities by name (RFC 6793, RFC 2918, RFC 7313, RFC 8654,
/// RFC 4724 as the peer advertised it).
fn capabilities(n: &crate::bgp::fsm::Negotiated) -> Vec<String> {
    let mut out = Vec::new();
    for (on, name) in [
        (n.four_octet_as, "4-octet-as"),
        (n.route_refresh, "route-refresh"),
        (n.enhanced_route_refresh, "enhanced-route-refresh"),
        (n.extended_message, "extended-message"),
    ] {
        if on {
            out.push(name.to_string());
        }
    }
    if let Some(gr) = &n.peer_graceful_restart {
        out.push(format!("graceful-restart({}s)", gr.restart_time));
    }
    out
}

impl Speaker {
    fn watched(&self) -> bool {
        self.events.receiver_count() > 0
    }

    /// The state of session `id` before an event, when someone watches.
    pub(super) fn watched_state(&self, id: u32) -> Option<crate::bgp::fsm::State> {
        if !self.watched() {
            return None;
        }
        let origin = self.ids.get(&id)?;
        self.peers.get(origin).map(|e| e.state)
    }

    /// Publishes a transition of session `id` away from `before`.
    pub(super) fn publish_transition(&self, id: u32, before: Option<crate::bgp::fsm::State>) {
        let Some(before) = before else { return };
        let Some((origin, e)) = self
            .ids
            .get(&id)
            .and_then(|o| self.peers.get(o).map(|e| (o, e)))
        else {
            return;
        };
        if e.state == before {
            return;
        }
        let _ = self.events.send(pb::WatchEventsResponse {
            time_unix_ms: now_unix_ms(),
            event: Some(pb::watch_events_response::Event::Session(
                pb::SessionTransition {
                    peer: origin.to_string(),
                    address: e.config.address.to_string(),
                    from_state: before.to_string(),
                    to_state: e.state.to_string(),
                    reason: if e.state == crate::bgp::fsm::State::Established {
                        String::new()
                    } else {
                        e.last_error.clone()
                    },
                },
            )),
        });
    }

    /// Publishes the end of a session whose peer was removed from the
    /// configuration (the session goes to Idle and is gone).
    pub(super) fn publish_removed(
        &self,
        origin: &crate::datastore::resolved::PeerOrigin,
        address: std::net::IpAddr,
        state: crate::bgp::fsm::State,
        reason: &str,
    ) {
        if !self.watched() || state == crate::bgp::fsm::State::Idle {
            return;
        }
        let _ = self.events.send(pb::WatchEventsResponse {
            time_unix_ms: now_unix_ms(),
            event: Some(pb::watch_events_response::Event::Session(
                pb::SessionTransition {
                    peer: origin.to_string(),
                    address: address.to_string(),
                    from_state: state.to_string(),
                    to_state: crate::bgp::fsm::State::Idle.to_string(),
                    reason: format!("peer removed: {reason}"),
                },
            )),
        });
    }

    /// Publishes the new selection of every changed prefix.
    pub(super) fn publish_route_changes(&self, changed: &std::collections::BTreeSet<ipnet::IpNet>) {
        if !self.watched() {
            return;
        }
        let time_unix_ms = now_unix_ms();
        for prefix in changed {
            let _ = self.events.send(pb::WatchEventsResponse {
                time_unix_ms,
                event: Some(pb::watch_events_response::Event::Route(route_change(
                    prefix,
                    self.rib.get(prefix),
                ))),
            });
        }
    }

    /// Adj-RIB-In (pre-policy, `received`) or Adj-RIB-Out of the peers
    /// matching `peer` (all when `None`), sorted by prefix per peer.
    pub(super) fn peer_route_views(
        &self,
        peer: Option<&str>,
        received: bool,
        family: Option<Family>,
    ) -> Vec<pb::PeerRoute> {
        let mut out = Vec::new();
        let wanted = |p: &ipnet::IpNet| family.is_none_or(|f| f == Family::of(p));
        for (origin, e) in &self.peers {
            let name = origin.to_string();
            if peer.is_some_and(|q| !peer_matches(q, &name, e.config.address)) {
                continue;
            }
            if received {
                let mut keys: Vec<_> = e.adj_in_pre.keys().filter(|k| wanted(&k.0)).collect();
                keys.sort();
                for key in keys {
                    let attrs = &e.adj_in_pre[key];
                    let in_rib = self.rib.get(&key.0).is_some_and(|d| {
                        d.paths
                            .iter()
                            .any(|p| p.source.peer == e.id && p.path_id == key.1)
                    });
                    let verdict = if in_rib {
                        Ok(())
                    } else {
                        match self.node.as_ref() {
                            Some(node) => {
                                match super::import::evaluate(node, &e.config, key.0, attrs) {
                                    Err(reason) => Err(reason),
                                    Ok(_) => Err("not in the Loc-RIB".to_string()),
                                }
                            }
                            None => Err("no node configuration".to_string()),
                        }
                    };
                    out.push(peer_route_view(
                        &name,
                        e.config.address,
                        &key.0,
                        key.1,
                        attrs,
                        verdict,
                    ));
                }
            } else {
                let mut prefixes: Vec<_> = e.adj_out.keys().filter(|p| wanted(p)).collect();
                prefixes.sort();
                for prefix in prefixes {
                    out.push(peer_route_view(
                        &name,
                        e.config.address,
                        prefix,
                        0,
                        &e.adj_out[prefix],
                        Ok(()),
                    ));
                }
            }
        }
        out
    }

    pub(super) fn peer_views(&self) -> Vec<pb::Peer> {
        self.peers
            .values()
            .map(|e| {
                let neg = e.negotiated.as_ref();
                pb::Peer {
                    name: e.config.origin.to_string(),
                    address: e.config.address.to_string(),
                    port: u32::from(e.config.port),
                    local_as: e.config.local_as,
                    peer_as: e.config.peer_as,
                    state: e.state.to_string(),
                    peer_router_id: neg
                        .map(|n| n.remote_open.router_id.to_string())
                        .unwrap_or_default(),
                    hold_time: neg.map(|n| u32::from(n.hold_time)).unwrap_or(0),
                    uptime_seconds: e.established_at.map(|t| t.elapsed().as_secs()).unwrap_or(0),
                    prefixes_received: e.adj_in_pre.len() as u64,
                    prefixes_accepted: self.rib.adj_in_total(e.id) as u64,
                    prefixes_advertised: e.adj_out.len() as u64,
                    last_error: e.last_error.clone(),
                    families: neg
                        .map(|n| n.families.clone())
                        .unwrap_or_else(|| e.config.families.clone())
                        .iter()
                        .map(|f| f.name().to_string())
                        .collect(),
                    passive: e.config.passive,
                    messages_received: e.stats.messages_received.load(Ordering::Relaxed),
                    messages_sent: e.stats.messages_sent.load(Ordering::Relaxed),
                    connection_attempts: e.stats.connection_attempts.load(Ordering::Relaxed),
                    established_transitions: e.established_transitions,
                    last_notification: e.last_notification.clone(),
                    peer_type: peer_type(&e.config).to_string(),
                    capabilities: neg.map(|n| capabilities(n)).unwrap_or_default(),
                    keepalive_time: neg.map(|n| u32::from(n.keepalive)).unwrap_or(0),
                    graceful_restart: match e.graceful.as_ref().map(|h| h.phase) {
                        Some(super::graceful::Phase::Restarting) => "restarting".into(),
                        Some(super::graceful::Phase::AwaitingEor) => "awaiting-end-of-rib".into(),
                        None => String::new(),
                    },
                    stale_routes: e.graceful.as_ref().map_or(0, |h| h.stale.len() as u64),
                    graceful_restart_remaining_seconds: e.graceful.as_ref().map_or(0, |h| {
                        h.deadline
                            .saturating_duration_since(std::time::Instant::now())
                            .as_secs()
                    }),
                }
            })
            .collect()
    }

    /// Whether `p` is a stale path of a gracefully restarting peer.
    fn is_stale(&self, prefix: &ipnet::IpNet, p: &Path) -> bool {
        self.ids
            .get(&p.source.peer)
            .and_then(|o| self.peers.get(o))
            .and_then(|e| e.graceful.as_ref())
            .is_some_and(|h| h.stale.contains(&(*prefix, p.path_id)))
    }

    pub(super) fn route_views(&self, family: Option<Family>) -> Vec<pb::Route> {
        let mut out = Vec::new();
        for (prefix, dest) in self.rib.iter() {
            if family.is_some_and(|f| f != Family::of(prefix)) {
                continue;
            }
            for (i, p) in dest.paths.iter().enumerate() {
                let reason = dest.reason(i).map(|r| r.to_string());
                let best = i < dest.multipath.max(1);
                let reason = if best && i > 0 {
                    Some("multipath".to_string())
                } else {
                    reason
                };
                let mut view =
                    route_view(prefix, p, best, if best && i == 0 { None } else { reason });
                view.stale = self.is_stale(prefix, p);
                out.push(view);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bgp::wire::{AsSegment, AsSegmentKind, MpNextHop};
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn attrs() -> PathAttributes {
        PathAttributes {
            origin: Some(Origin::Igp),
            as_path: vec![AsSegment {
                kind: AsSegmentKind::Sequence,
                asns: vec![65002, 65010],
            }],
            next_hop: Some(Ipv4Addr::new(10, 0, 0, 2)),
            med: Some(5),
            communities: vec![(65002 << 16) | 100],
            large_communities: vec![[65002, 1, 2]],
            ..Default::default()
        }
    }

    #[test]
    fn received_route_keeps_wire_attributes_and_verdict() {
        let prefix: ipnet::IpNet = "198.51.100.0/24".parse().unwrap();
        let addr: IpAddr = "10.0.0.2".parse().unwrap();
        let r = peer_route_view(
            "bgppeer/bird",
            addr,
            &prefix,
            7,
            &attrs(),
            Err("AS path loop: contains local AS 65001".into()),
        );
        assert_eq!(r.peer, "bgppeer/bird");
        assert_eq!(r.peer_address, "10.0.0.2");
        assert_eq!(r.prefix, "198.51.100.0/24");
        assert_eq!(r.path_id, 7);
        assert_eq!(r.next_hop, "10.0.0.2");
        assert_eq!(r.as_path, vec![65002, 65010]);
        assert_eq!(r.origin, "igp");
        assert!(!r.has_local_pref);
        assert!(r.has_med && r.med == 5);
        assert_eq!(r.communities, vec!["65002:100"]);
        assert_eq!(r.large_communities, vec!["65002:1:2"]);
        assert!(!r.accepted);
        assert_eq!(r.reject_reason, "AS path loop: contains local AS 65001");
    }

    #[test]
    fn ipv6_route_takes_the_mp_next_hop_even_link_local() {
        let prefix: ipnet::IpNet = "2001:db8::/48".parse().unwrap();
        let mut a = attrs();
        a.next_hop = None;
        a.mp_next_hop = Some(MpNextHop {
            global: IpAddr::V6("fe80::1".parse::<Ipv6Addr>().unwrap()),
            link_local: None,
        });
        let r = peer_route_view("p", "fd00::2".parse().unwrap(), &prefix, 0, &a, Ok(()));
        assert_eq!(r.next_hop, "fe80::1");
        assert!(r.accepted && r.reject_reason.is_empty());
    }

    #[test]
    fn peer_query_matches_address_or_name() {
        let a: IpAddr = "fd00:10::2".parse().unwrap();
        assert!(peer_matches("fd00:10:0::2", "bgppeer/bird6", a));
        assert!(peer_matches("bgppeer/bird6", "bgppeer/bird6", a));
        assert!(!peer_matches("fd00:10::3", "bgppeer/bird6", a));
        assert!(!peer_matches("bgppeer/bird", "bgppeer/bird6", a));
    }
}
