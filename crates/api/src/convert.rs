//! Domain status to wire types: the only place where the speaker's peers,
//! routes and events (RFC 4271 §8 states, §9.1.2 selection, §3.2 Adj-RIBs)
//! become `petrel.v1` messages. Communities print as RFC 1997 `aa:nn` and
//! RFC 8092 `aa:nn:mm`.

use petrel_bgp::wire::{Origin, PathAttributes};
use petrel_proto::pb;
use petrel_speaker::{AdjRibRoute, EventKind, PeerStatus, RouteStatus, SpeakerEvent};
use std::time::SystemTime;

/// "65000:100" for a standard community (RFC 1997).
pub fn fmt_community(c: u32) -> String {
    format!("{}:{}", c >> 16, c & 0xffff)
}

fn origin_name(o: Option<Origin>) -> String {
    match o {
        Some(Origin::Igp) => "igp",
        Some(Origin::Egp) => "egp",
        Some(Origin::Incomplete) | None => "incomplete",
    }
    .to_string()
}

fn as_path(a: &PathAttributes) -> Vec<u32> {
    a.as_path
        .iter()
        .flat_map(|s| s.asns.iter().copied())
        .collect()
}

fn communities(a: &PathAttributes) -> Vec<String> {
    a.communities.iter().map(|c| fmt_community(*c)).collect()
}

fn large_communities(a: &PathAttributes) -> Vec<String> {
    a.large_communities
        .iter()
        .map(|[g, l1, l2]| format!("{g}:{l1}:{l2}"))
        .collect()
}

fn opt_string<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

/// Milliseconds since the Unix epoch (0 before it).
pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A peer for `ListPeers`.
pub fn peer(p: &PeerStatus) -> pb::Peer {
    pb::Peer {
        name: p.name.clone(),
        address: p.address.to_string(),
        port: u32::from(p.port),
        local_as: p.local_as,
        peer_as: p.peer_as,
        state: p.state.to_string(),
        peer_router_id: opt_string(p.peer_router_id),
        hold_time: p.hold_time.map(u32::from).unwrap_or(0),
        uptime_seconds: p.uptime.map(|d| d.as_secs()).unwrap_or(0),
        prefixes_received: p.prefixes_received,
        prefixes_accepted: p.prefixes_accepted,
        prefixes_advertised: p.prefixes_advertised,
        last_error: p.last_error.clone(),
        families: p.families.iter().map(|f| f.name().to_string()).collect(),
        passive: p.passive,
        messages_received: p.messages_received,
        messages_sent: p.messages_sent,
        connection_attempts: p.connection_attempts,
        established_transitions: p.established_transitions,
        last_notification: p.last_notification.clone(),
        peer_type: p.kind.as_str().to_string(),
        capabilities: p.capabilities.clone(),
        keepalive_time: p.keepalive_time.map(u32::from).unwrap_or(0),
        graceful_restart: p
            .graceful_restart
            .map(|g| g.as_str().to_string())
            .unwrap_or_default(),
        stale_routes: p.stale_routes,
        graceful_restart_remaining_seconds: p
            .graceful_restart_remaining
            .map(|d| d.as_secs())
            .unwrap_or(0),
        bfd_state: p.bfd.clone().unwrap_or_default(),
    }
}

fn micros(d: Option<std::time::Duration>) -> u64 {
    d.map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// The BFD sessions for `ListBfdSessions`.
pub fn bfd_sessions(s: &petrel_speaker::bfd::BfdSnapshot) -> pb::ListBfdSessionsResponse {
    pb::ListBfdSessionsResponse {
        sessions: s.sessions.iter().map(bfd_session).collect(),
        socket_errors: s.socket_errors.clone(),
        malformed_packets: s.counters.malformed.total(),
        unknown_discriminator_packets: s.counters.unknown_discriminator,
        no_session_packets: s.counters.no_session_for_path,
        max_timer_lateness_us: micros(Some(s.max_timer_lateness)),
        late_timers: s.late_timers,
    }
}

/// One BFD session (RFC 5880 §6.8.1 variables).
pub fn bfd_session(v: &petrel_speaker::bfd::BfdSessionView) -> pb::BfdSession {
    let st = &v.status;
    pb::BfdSession {
        peer: v.key.peer.to_string(),
        local_address: opt_string(v.key.local),
        multihop: v.key.multihop,
        state: st.state.as_str().to_string(),
        remote_state: st.remote_state.as_str().to_string(),
        local_discriminator: st.local_discriminator,
        remote_discriminator: st.remote_discriminator,
        tx_interval_us: micros(st.tx_interval),
        rx_interval_us: micros(st.rx_interval),
        detection_time_us: micros(st.detection_time),
        detect_multiplier: u32::from(st.detect_mult),
        remote_detect_multiplier: st.remote_detect_mult.map_or(0, u32::from),
        last_state_change_seconds: v.since_state_change.as_secs(),
        diagnostic: st.local_diagnostic.to_string(),
        last_down_diagnostic: st
            .last_down_diagnostic
            .map(|d| d.to_string())
            .unwrap_or_default(),
        remote_diagnostic: st.remote_diagnostic.to_string(),
        packets_received: st.counters.packets_received,
        packets_sent: st.counters.packets_sent,
        state_transitions: st.counters.state_changes,
        source_port: v.source_port.map_or(0, u32::from),
        passive: st.passive,
        has_been_up: st.has_been_up,
        desired_min_tx_us: micros(Some(st.desired_min_tx)),
        required_min_rx_us: micros(Some(st.required_min_rx)),
        error: v.error.clone().unwrap_or_default(),
        dropped_ttl: st.counters.dropped_ttl,
    }
}

/// A Loc-RIB path for `ListRoutes`.
pub fn route(r: &RouteStatus) -> pb::Route {
    let a = &r.attrs;
    pb::Route {
        prefix: r.prefix.to_string(),
        next_hop: opt_string(r.next_hop),
        peer: r.peer.clone(),
        as_path: as_path(a),
        origin: origin_name(a.origin),
        local_pref: a.local_pref.unwrap_or(100),
        has_med: a.med.is_some(),
        med: a.med.unwrap_or(0),
        communities: communities(a),
        large_communities: large_communities(a),
        best: r.best,
        reason: r.reason.clone().unwrap_or_default(),
        stale: r.stale,
    }
}

/// An Adj-RIB-In or Adj-RIB-Out route for `ListPeerRoutes`.
pub fn adj_rib_route(r: &AdjRibRoute) -> pb::PeerRoute {
    let a = &r.attrs;
    pb::PeerRoute {
        peer: r.peer.clone(),
        peer_address: r.peer_address.to_string(),
        prefix: r.prefix.to_string(),
        path_id: r.path_id,
        next_hop: opt_string(r.next_hop),
        as_path: as_path(a),
        origin: origin_name(a.origin),
        has_local_pref: a.local_pref.is_some(),
        local_pref: a.local_pref.unwrap_or(0),
        has_med: a.med.is_some(),
        med: a.med.unwrap_or(0),
        communities: communities(a),
        large_communities: large_communities(a),
        accepted: r.verdict.is_ok(),
        reject_reason: r.verdict.clone().err().unwrap_or_default(),
    }
}

/// A speaker event for `WatchEvents`.
pub fn event(e: &SpeakerEvent) -> pb::WatchEventsResponse {
    use pb::watch_events_response::Event;
    let event = match &e.kind {
        EventKind::Session(t) => Event::Session(pb::SessionTransition {
            peer: t.peer.clone(),
            address: t.address.to_string(),
            from_state: t.from.to_string(),
            to_state: t.to.to_string(),
            reason: t.reason.clone(),
        }),
        EventKind::Route(c) => Event::Route(match &c.best {
            None => pb::RouteChange {
                prefix: c.prefix.to_string(),
                withdrawn: true,
                ..Default::default()
            },
            Some(b) => pb::RouteChange {
                prefix: c.prefix.to_string(),
                withdrawn: false,
                peer: b.peer.clone(),
                next_hops: b.next_hops.iter().map(|h| h.to_string()).collect(),
                as_path: b.as_path.clone(),
            },
        }),
    };
    pb::WatchEventsResponse {
        time_unix_ms: unix_ms(e.time),
        event: Some(event),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use petrel_bgp::fsm::State;
    use petrel_bgp::wire::{AsSegment, AsSegmentKind, Family};
    use petrel_speaker::{BestRoute, PeerKind, RestartPhase, RouteChange, SessionTransition};
    use std::net::{IpAddr, Ipv4Addr};
    use std::sync::Arc;
    use std::time::Duration;

    fn attrs() -> Arc<PathAttributes> {
        Arc::new(PathAttributes {
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
        })
    }

    #[test]
    fn received_route_keeps_wire_attributes_and_verdict() {
        let r = adj_rib_route(&AdjRibRoute {
            peer: "bgppeer/bird".into(),
            peer_address: "10.0.0.2".parse().unwrap(),
            prefix: "198.51.100.0/24".parse().unwrap(),
            path_id: 7,
            next_hop: Some("10.0.0.2".parse().unwrap()),
            attrs: attrs(),
            verdict: Err("AS path loop: contains local AS 65001".into()),
        });
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
    fn loc_rib_route_defaults_local_pref_and_names_the_reason() {
        let r = route(&RouteStatus {
            prefix: "198.51.100.0/24".parse().unwrap(),
            next_hop: None,
            peer: "local".into(),
            attrs: attrs(),
            best: false,
            reason: Some("higher MED".into()),
            stale: true,
        });
        assert_eq!(r.next_hop, "");
        assert_eq!(r.local_pref, 100);
        assert_eq!(r.reason, "higher MED");
        assert!(!r.best && r.stale);
    }

    #[test]
    fn peer_without_session_reports_zeroes_and_names() {
        let p = peer(&PeerStatus {
            name: "bgppeer/tor".into(),
            address: "10.0.0.1".parse().unwrap(),
            port: 179,
            local_as: 65001,
            peer_as: 65000,
            state: State::Active,
            peer_router_id: None,
            hold_time: None,
            keepalive_time: None,
            uptime: None,
            prefixes_received: 0,
            prefixes_accepted: 0,
            prefixes_advertised: 0,
            last_error: "connection refused".into(),
            families: vec![Family::Ipv4Unicast, Family::Ipv6Unicast],
            passive: false,
            messages_received: 0,
            messages_sent: 0,
            connection_attempts: 3,
            established_transitions: 0,
            last_notification: String::new(),
            kind: PeerKind::External,
            capabilities: vec![],
            graceful_restart: Some(RestartPhase::Restarting),
            stale_routes: 2,
            graceful_restart_remaining: Some(Duration::from_millis(1500)),
            unnegotiated_routes: Vec::new(),
            bfd: Some("Down".into()),
        });
        assert_eq!(p.state, "Active");
        assert_eq!(p.bfd_state, "Down");
        assert_eq!(p.peer_router_id, "");
        assert_eq!(p.hold_time, 0);
        assert_eq!(p.families, vec!["ipv4-unicast", "ipv6-unicast"]);
        assert_eq!(p.peer_type, "external");
        assert_eq!(p.graceful_restart, "restarting");
        assert_eq!(p.graceful_restart_remaining_seconds, 1);
    }

    #[test]
    fn events_carry_time_states_and_withdrawals() {
        use pb::watch_events_response::Event;
        let t = std::time::UNIX_EPOCH + Duration::from_millis(1234);
        let e = event(&SpeakerEvent {
            time: t,
            kind: EventKind::Session(SessionTransition {
                peer: "mesh/node2".into(),
                address: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
                from: State::Established,
                to: State::Idle,
                reason: "hold timer expired".into(),
            }),
        });
        assert_eq!(e.time_unix_ms, 1234);
        let Some(Event::Session(s)) = e.event else {
            panic!("not a session event")
        };
        assert_eq!(
            (s.from_state.as_str(), s.to_state.as_str()),
            ("Established", "Idle")
        );
        let w = event(&SpeakerEvent {
            time: t,
            kind: EventKind::Route(RouteChange {
                prefix: "10.0.0.0/24".parse().unwrap(),
                best: None,
            }),
        });
        assert!(matches!(w.event, Some(Event::Route(ref r)) if r.withdrawn && r.peer.is_empty()));
        let a = event(&SpeakerEvent {
            time: t,
            kind: EventKind::Route(RouteChange {
                prefix: "10.0.0.0/24".parse().unwrap(),
                best: Some(BestRoute {
                    peer: "bgppeer/tor".into(),
                    next_hops: vec!["10.0.0.1".parse().unwrap(), "10.0.0.5".parse().unwrap()],
                    as_path: vec![65000],
                }),
            }),
        });
        let Some(Event::Route(r)) = a.event else {
            panic!("not a route event")
        };
        assert!(!r.withdrawn);
        assert_eq!(r.next_hops, vec!["10.0.0.1", "10.0.0.5"]);
    }
}
