//! Status views of the speaker, as domain types: peers (RFC 4271 §8 states),
//! the Loc-RIB with the reason each path lost (RFC 4271 §9.1.2), per peer the
//! pre-policy Adj-RIB-In and the Adj-RIB-Out (RFC 4271 §3.2), and the events
//! (session transitions, best-path changes) that `petrel events` follows.
//! `petrel-api` turns them into the gRPC wire types; the metrics and the
//! PetrelNode status read them directly.

use super::Speaker;
use petrel_bgp::fsm::State;
use petrel_bgp::rib::Path;
use petrel_bgp::wire::{Family, PathAttributes};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

/// The kind of a peer, for `petrel peers`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerKind {
    RouteReflectorClient,
    Mesh,
    Node,
    External,
}

impl PeerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PeerKind::RouteReflectorClient => "route-reflector-client",
            PeerKind::Mesh => "mesh",
            PeerKind::Node => "node",
            PeerKind::External => "external",
        }
    }
}

/// Where the graceful restart (RFC 4724 §4.2) of a peer is, as its helper.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPhase {
    /// The session is down; waiting for the peer to come back.
    Restarting,
    /// The session is back; waiting for the peer's End-of-RIB.
    AwaitingEndOfRib,
}

impl RestartPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            RestartPhase::Restarting => "restarting",
            RestartPhase::AwaitingEndOfRib => "awaiting-end-of-rib",
        }
    }
}

/// One peer and its session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStatus {
    /// The configuration's name of the peer, e.g. `bgppeer/tor1`.
    pub name: String,
    pub address: IpAddr,
    pub port: u16,
    pub local_as: u32,
    pub peer_as: u32,
    pub state: State,
    /// Set while a session is negotiated (OpenConfirm, Established).
    pub peer_router_id: Option<Ipv4Addr>,
    /// Negotiated hold and keepalive times (RFC 4271 §4.2).
    pub hold_time: Option<u16>,
    pub keepalive_time: Option<u16>,
    /// Time since the session became Established.
    pub uptime: Option<Duration>,
    pub prefixes_received: u64,
    pub prefixes_accepted: u64,
    pub prefixes_advertised: u64,
    pub last_error: String,
    /// The negotiated families, or the configured ones without a session.
    pub families: Vec<Family>,
    pub passive: bool,
    pub messages_received: u64,
    pub messages_sent: u64,
    pub connection_attempts: u64,
    pub established_transitions: u64,
    pub last_notification: String,
    pub kind: PeerKind,
    /// Negotiated capabilities by name (`4-octet-as`, `graceful-restart(120s)`, ...).
    pub capabilities: Vec<String>,
    /// Set while this node keeps the routes of the restarting peer.
    pub graceful_restart: Option<RestartPhase>,
    pub stale_routes: u64,
    pub graceful_restart_remaining: Option<Duration>,
    /// Routes ignored because their family was not negotiated (RFC 4760),
    /// per family; families with none are left out.
    pub unnegotiated_routes: Vec<(Family, u64)>,
    /// BFD state (`Up`, `Down`, `Init`, `AdminDown`) when the peer has a
    /// BFD profile; `None` without BFD.
    pub bfd: Option<String>,
}

impl Default for PeerStatus {
    /// A peer with no session: Idle, nothing negotiated, no counts.
    fn default() -> PeerStatus {
        PeerStatus {
            name: String::new(),
            address: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            port: 179,
            local_as: 0,
            peer_as: 0,
            state: State::Idle,
            peer_router_id: None,
            hold_time: None,
            keepalive_time: None,
            uptime: None,
            prefixes_received: 0,
            prefixes_accepted: 0,
            prefixes_advertised: 0,
            last_error: String::new(),
            families: Vec::new(),
            passive: false,
            messages_received: 0,
            messages_sent: 0,
            connection_attempts: 0,
            established_transitions: 0,
            last_notification: String::new(),
            kind: PeerKind::External,
            capabilities: Vec::new(),
            graceful_restart: None,
            stale_routes: 0,
            graceful_restart_remaining: None,
            unnegotiated_routes: Vec::new(),
            bfd: None,
        }
    }
}

impl PeerStatus {
    pub fn established(&self) -> bool {
        self.state == State::Established
    }
}

/// One path of the Loc-RIB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteStatus {
    pub prefix: ipnet::IpNet,
    /// The forwarding next hop; `None` for local routes.
    pub next_hop: Option<IpAddr>,
    /// The configuration's name of the peer it came from (`local` for ours).
    pub peer: String,
    pub attrs: Arc<PathAttributes>,
    /// Selected (best, or kept for multipath).
    pub best: bool,
    /// Why the path is not the best (`multipath` for a kept one).
    pub reason: Option<String>,
    /// A stale path of a gracefully restarting peer.
    pub stale: bool,
}

/// One route of a peer's Adj-RIB-In (before policy) or Adj-RIB-Out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdjRibRoute {
    pub peer: String,
    pub peer_address: IpAddr,
    pub prefix: ipnet::IpNet,
    pub path_id: u32,
    /// The next hop as on the wire (link-local and unspecified hops included).
    pub next_hop: Option<IpAddr>,
    pub attrs: Arc<PathAttributes>,
    /// `Err(reason)` for a received route that import policy rejects.
    pub verdict: Result<(), String>,
}

/// A session's state change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionTransition {
    pub peer: String,
    pub address: IpAddr,
    pub from: State,
    pub to: State,
    pub reason: String,
}

/// A new selection for a prefix; `best: None` when it was withdrawn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteChange {
    pub prefix: ipnet::IpNet,
    pub best: Option<BestRoute>,
}

/// The selected route of a [`RouteChange`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BestRoute {
    pub peer: String,
    /// Every multipath next hop.
    pub next_hops: Vec<IpAddr>,
    pub as_path: Vec<u32>,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    Session(SessionTransition),
    Route(RouteChange),
}

/// An event of the speaker, with its time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpeakerEvent {
    pub time: SystemTime,
    pub kind: EventKind,
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

/// One Adj-RIB route; `verdict` is `Err(reason)` for a received route that
/// import policy rejects.
pub(super) fn adj_rib_route(
    peer: &str,
    peer_address: IpAddr,
    prefix: &ipnet::IpNet,
    path_id: u32,
    attrs: &Arc<PathAttributes>,
    verdict: Result<(), String>,
) -> AdjRibRoute {
    AdjRibRoute {
        peer: peer.to_string(),
        peer_address,
        prefix: *prefix,
        path_id,
        next_hop: wire_next_hop(attrs, Family::of(prefix)),
        attrs: attrs.clone(),
        verdict,
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

/// The event for a changed Loc-RIB entry (`None`: withdrawn).
pub(super) fn route_change(
    prefix: &ipnet::IpNet,
    dest: Option<&petrel_bgp::rib::Destination>,
) -> RouteChange {
    let best = dest.and_then(|d| d.best()).map(|b| BestRoute {
        peer: b.source.name.to_string(),
        next_hops: dest
            .map(|d| d.multipath_paths())
            .unwrap_or_default()
            .iter()
            .filter_map(|p| p.next_hop)
            .collect(),
        as_path: b
            .attrs
            .as_path
            .iter()
            .flat_map(|s| s.asns.iter().copied())
            .collect(),
    });
    RouteChange {
        prefix: *prefix,
        best,
    }
}

/// The kind of peer, for `petrel peers`.
fn peer_kind(c: &petrel_datastore::resolved::PeerConfig) -> PeerKind {
    use petrel_datastore::resolved::PeerOrigin;
    match &c.origin {
        _ if c.route_reflector_client => PeerKind::RouteReflectorClient,
        PeerOrigin::Mesh(_) | PeerOrigin::Mesh6(_) => PeerKind::Mesh,
        PeerOrigin::BgpPeerNode(..) => PeerKind::Node,
        PeerOrigin::BgpPeer(_) => PeerKind::External,
    }
}

/// Negotiated capabilities by name (RFC 6793, RFC 2918, RFC 7313, RFC 8654,
/// RFC 4724 as the peer advertised it).
fn capabilities(n: &petrel_bgp::fsm::Negotiated) -> Vec<String> {
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

    fn publish(&self, kind: EventKind) {
        let _ = self.events.send(SpeakerEvent {
            time: SystemTime::now(),
            kind,
        });
    }

    /// The state of session `id` before an event, when someone watches.
    pub(super) fn watched_state(&self, id: u32) -> Option<State> {
        if !self.watched() {
            return None;
        }
        let origin = self.ids.get(&id)?;
        self.peers.get(origin).map(|e| e.state)
    }

    /// Publishes a transition of session `id` away from `before`.
    pub(super) fn publish_transition(&self, id: u32, before: Option<State>) {
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
        self.publish(EventKind::Session(SessionTransition {
            peer: origin.to_string(),
            address: e.config.address,
            from: before,
            to: e.state,
            reason: if e.state == State::Established {
                String::new()
            } else {
                e.last_error.clone()
            },
        }));
    }

    /// Publishes the end of a session whose peer was removed from the
    /// configuration (the session goes to Idle and is gone).
    pub(super) fn publish_removed(
        &self,
        origin: &petrel_datastore::resolved::PeerOrigin,
        address: IpAddr,
        state: State,
        reason: &str,
    ) {
        if !self.watched() || state == State::Idle {
            return;
        }
        self.publish(EventKind::Session(SessionTransition {
            peer: origin.to_string(),
            address,
            from: state,
            to: State::Idle,
            reason: format!("peer removed: {reason}"),
        }));
    }

    /// Publishes the new selection of every changed prefix.
    pub(super) fn publish_route_changes(&self, changed: &std::collections::BTreeSet<ipnet::IpNet>) {
        if !self.watched() {
            return;
        }
        let time = SystemTime::now();
        for prefix in changed {
            let _ = self.events.send(SpeakerEvent {
                time,
                kind: EventKind::Route(route_change(prefix, self.rib.get(prefix))),
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
    ) -> Vec<AdjRibRoute> {
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
                                match super::import::evaluate(
                                    node,
                                    &e.config,
                                    &e.own_addresses(),
                                    key.0,
                                    attrs,
                                ) {
                                    Err(reason) => Err(reason),
                                    Ok(_) => Err("not in the Loc-RIB".to_string()),
                                }
                            }
                            None => Err("no node configuration".to_string()),
                        }
                    };
                    out.push(adj_rib_route(
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
                    out.push(adj_rib_route(
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

    pub(super) fn peer_views(&self) -> Vec<PeerStatus> {
        self.peers
            .values()
            .map(|e| {
                let neg = e.negotiated.as_ref();
                PeerStatus {
                    name: e.config.origin.to_string(),
                    address: e.config.address,
                    port: e.config.port,
                    local_as: e.config.local_as,
                    peer_as: e.config.peer_as,
                    state: e.state,
                    peer_router_id: neg.map(|n| n.remote_open.router_id),
                    hold_time: neg.map(|n| n.hold_time),
                    keepalive_time: neg.map(|n| n.keepalive),
                    uptime: e.established_at.map(|t| t.elapsed()),
                    prefixes_received: e.adj_in_pre.len() as u64,
                    prefixes_accepted: self.rib.adj_in_total(e.id) as u64,
                    prefixes_advertised: e.adj_out.len() as u64,
                    last_error: e.last_error.clone(),
                    families: neg
                        .map(|n| n.families.clone())
                        .unwrap_or_else(|| e.config.families.clone())
                        .into_iter()
                        .collect(),
                    passive: e.config.passive,
                    messages_received: e.stats.messages_received.load(Ordering::Relaxed),
                    messages_sent: e.stats.messages_sent.load(Ordering::Relaxed),
                    connection_attempts: e.stats.connection_attempts.load(Ordering::Relaxed),
                    established_transitions: e.established_transitions,
                    last_notification: e.last_notification.clone(),
                    kind: peer_kind(&e.config),
                    capabilities: neg.map(|n| capabilities(n)).unwrap_or_default(),
                    graceful_restart: e.graceful.as_ref().map(|h| match h.phase {
                        super::graceful::Phase::Restarting => RestartPhase::Restarting,
                        super::graceful::Phase::AwaitingEor => RestartPhase::AwaitingEndOfRib,
                    }),
                    stale_routes: e.graceful.as_ref().map_or(0, |h| h.stale.len() as u64),
                    graceful_restart_remaining: e.graceful.as_ref().map(|h| {
                        h.deadline
                            .saturating_duration_since(std::time::Instant::now())
                    }),
                    unnegotiated_routes: Family::ALL
                        .iter()
                        .zip(&e.stats.unnegotiated_routes)
                        .map(|(f, n)| (*f, n.load(Ordering::Relaxed)))
                        .filter(|(_, n)| *n > 0)
                        .collect(),
                    bfd: e.config.bfd.as_ref().map(|_| {
                        e.bfd
                            .state
                            .unwrap_or(crate::bfd::BfdState::Down)
                            .as_str()
                            .to_string()
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

    pub(super) fn route_views(&self, family: Option<Family>) -> Vec<RouteStatus> {
        let mut out = Vec::new();
        for (prefix, dest) in self.rib.iter() {
            if family.is_some_and(|f| f != Family::of(prefix)) {
                continue;
            }
            for (i, p) in dest.paths.iter().enumerate() {
                let best = i < dest.multipath.max(1);
                let reason = if best && i == 0 {
                    None
                } else if best {
                    Some("multipath".to_string())
                } else {
                    dest.reason(i).map(|r| r.to_string())
                };
                out.push(RouteStatus {
                    prefix: *prefix,
                    next_hop: p.next_hop,
                    peer: p.source.name.to_string(),
                    attrs: p.attrs.clone(),
                    best,
                    reason,
                    stale: self.is_stale(prefix, p),
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use petrel_bgp::wire::{AsSegment, AsSegmentKind, MpNextHop, Origin};
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
        let a = Arc::new(attrs());
        let r = adj_rib_route(
            "bgppeer/bird",
            addr,
            &prefix,
            7,
            &a,
            Err("AS path loop: contains local AS 65001".into()),
        );
        assert_eq!(r.peer, "bgppeer/bird");
        assert_eq!(r.peer_address, addr);
        assert_eq!(r.prefix, prefix);
        assert_eq!(r.path_id, 7);
        assert_eq!(r.next_hop, Some("10.0.0.2".parse().unwrap()));
        assert!(Arc::ptr_eq(&r.attrs, &a));
        assert_eq!(
            r.verdict,
            Err("AS path loop: contains local AS 65001".to_string())
        );
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
        let r = adj_rib_route(
            "p",
            "fd00::2".parse().unwrap(),
            &prefix,
            0,
            &Arc::new(a),
            Ok(()),
        );
        assert_eq!(r.next_hop, Some("fe80::1".parse().unwrap()));
        assert!(r.verdict.is_ok());
    }

    #[test]
    fn peer_query_matches_address_or_name() {
        let a: IpAddr = "fd00:10::2".parse().unwrap();
        assert!(peer_matches("fd00:10:0::2", "bgppeer/bird6", a));
        assert!(peer_matches("bgppeer/bird6", "bgppeer/bird6", a));
        assert!(!peer_matches("fd00:10::3", "bgppeer/bird6", a));
        assert!(!peer_matches("bgppeer/bird", "bgppeer/bird6", a));
    }

    #[test]
    fn peer_kinds_and_restart_phases_have_stable_names() {
        assert_eq!(
            PeerKind::RouteReflectorClient.as_str(),
            "route-reflector-client"
        );
        assert_eq!(PeerKind::External.as_str(), "external");
        assert_eq!(
            RestartPhase::AwaitingEndOfRib.as_str(),
            "awaiting-end-of-rib"
        );
    }
}
