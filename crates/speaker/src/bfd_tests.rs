//! BFD coupled to BGP (`bfd/coupling.rs`, RFC 5882 §4.3, RFC 9384), driven
//! through the speaker's event handlers with fake session and BFD drivers.

use super::*;
use crate::bfd::{BfdEvent, BfdState, Diagnostic, StateChange};
use petrel_bgp::fsm::{ConnId, DownReason, Negotiated};
use petrel_bgp::wire::{
    AsSegment, AsSegmentKind, Capabilities, GracefulRestartCap, Notification, Open, Update,
    notification as n,
};
use petrel_datastore::resolved::{BfdSettings, PeerConfig};
use std::time::{Duration, Instant};

const ROUTE: &str = "198.51.100.0/24";

fn origin() -> PeerOrigin {
    PeerOrigin::BgpPeer("tor".into())
}

fn node(bfd: bool) -> NodeConfig {
    let mut peers = BTreeMap::new();
    peers.insert(
        origin(),
        PeerConfig {
            passive: true,
            bfd: bfd.then(|| BfdSettings {
                profile: "fast".into(),
                receive_interval: Duration::from_millis(300),
                transmit_interval: Duration::from_millis(300),
                detect_multiplier: 3,
                passive: false,
                minimum_ttl: 254,
            }),
            ..crate::fixtures::peer("192.0.2.1")
        },
    );
    NodeConfig {
        peers,
        ..crate::fixtures::node()
    }
}

/// `n_bit`: both sides negotiated graceful restart with the N-bit and the
/// peer keeps forwarding state for IPv4.
fn negotiated(n_bit: bool) -> Box<Negotiated> {
    let open = |asn, id: &str| Open {
        asn,
        hold_time: 90,
        router_id: id.parse().unwrap(),
        caps: Capabilities::default(),
    };
    let gr = GracefulRestartCap {
        restart_state: false,
        notification: n_bit,
        restart_time: 120,
        families: vec![(Family::Ipv4Unicast, true)],
    };
    let mut local_open = open(64512, "10.0.0.1");
    local_open.caps.graceful_restart = Some(gr.clone());
    Box::new(Negotiated {
        local_open,
        remote_open: open(65000, "192.0.2.1"),
        hold_time: 90,
        keepalive: 30,
        families: vec![Family::Ipv4Unicast],
        four_octet_as: true,
        route_refresh: true,
        enhanced_route_refresh: false,
        extended_message: false,
        peer_graceful_restart: Some(gr),
        conn: ConnId::Outbound,
    })
}

async fn speaker(
    bfd: bool,
) -> (
    Speaker,
    mpsc::UnboundedReceiver<SessionCmd>,
    mpsc::UnboundedReceiver<FibMsg>,
) {
    let (tx, _rx) = mpsc::channel(16);
    let (fib, fib_rx) = mpsc::unbounded_channel();
    let (events, _) = tokio::sync::broadcast::channel(16);
    let mut s = Speaker::new(
        tx,
        Some(fib),
        events,
        &SpeakerOptions::default(),
        Default::default(),
    );
    // The test plays the BFD driver: no thread, no sockets.
    s.bfd_autostart = false;
    s.apply_config(node(bfd)).await;
    let e = s.peers.get_mut(&origin()).unwrap();
    e.task.abort();
    let (cmd, rx) = mpsc::unbounded_channel();
    e.cmd = cmd;
    (s, rx, fib_rx)
}

fn id(s: &Speaker) -> u32 {
    s.peers[&origin()].id
}

fn establish_with_route(s: &mut Speaker, n_bit: bool) {
    let id = id(s);
    s.session_event(
        id,
        SessionEvent::Established {
            negotiated: negotiated(n_bit),
            local: "192.0.2.2:40000".parse().unwrap(),
            remote: "192.0.2.1:179".parse().unwrap(),
        },
    );
    let attrs = PathAttributes {
        as_path: vec![AsSegment {
            kind: AsSegmentKind::Sequence,
            asns: vec![65000],
        }],
        next_hop: Some("192.0.2.1".parse().unwrap()),
        ..Default::default()
    };
    s.session_event(
        id,
        SessionEvent::Received(Message::Update(Update {
            withdrawn: vec![],
            attrs: Some(Arc::new(attrs)),
            announced: vec![Nlri::new(ROUTE.parse().unwrap())],
        })),
    );
    s.flush();
    assert_eq!(s.rib.adj_in_total(id), 1, "the peer's route is in the RIB");
}

fn change(from: BfdState, to: BfdState, remote: BfdState, c_bit: bool) -> BfdEvent {
    BfdEvent {
        peer: "192.0.2.1".parse().unwrap(),
        change: StateChange {
            from,
            to,
            diagnostic: Diagnostic::CONTROL_DETECTION_TIME_EXPIRED,
            remote_state: remote,
            remote_control_plane_independent: c_bit,
            at: Instant::now(),
        },
    }
}

fn bfd_failure(c_bit: bool) -> BfdEvent {
    change(BfdState::Up, BfdState::Down, BfdState::Up, c_bit)
}

/// The NOTIFICATIONs of the Stop and Reset commands sent to the session
/// driver, with whether the session starts again.
fn stops(rx: &mut mpsc::UnboundedReceiver<SessionCmd>) -> Vec<(u8, u8, bool)> {
    std::iter::from_fn(|| rx.try_recv().ok())
        .filter_map(|c| match c {
            SessionCmd::Stop {
                notification,
                restart,
            } => Some((notification.code, notification.subcode, restart)),
            SessionCmd::Reset(n) => Some((n.code, n.subcode, true)),
            _ => None,
        })
        .collect()
}

fn withdrawn_from_kernel(rx: &mut mpsc::UnboundedReceiver<FibMsg>) -> bool {
    let route: IpNet = ROUTE.parse().unwrap();
    std::iter::from_fn(|| rx.try_recv().ok()).any(|m| match m {
        FibMsg::Changes(c) => c.iter().any(|(p, t)| *p == route && t.is_none()),
        FibMsg::Converged => false,
    })
}

/// The session driver reports the stop the speaker asked for.
fn stopped(s: &mut Speaker) {
    let id = id(s);
    s.session_event(
        id,
        SessionEvent::Down {
            reason: DownReason::Stopped,
            was_established: true,
        },
    );
    s.flush();
}

#[tokio::test]
async fn bfd_down_ends_the_session_with_cease_bfd_down_and_withdraws_its_routes() {
    let (mut s, mut cmds, mut fib) = speaker(true).await;
    s.bfd_event(change(
        BfdState::Down,
        BfdState::Init,
        BfdState::Down,
        false,
    ));
    s.bfd_event(change(BfdState::Init, BfdState::Up, BfdState::Init, false));
    establish_with_route(&mut s, false);
    let _ = withdrawn_from_kernel(&mut fib);
    assert_eq!(s.peer_views()[0].bfd.as_deref(), Some("Up"));
    s.bfd_event(bfd_failure(false));
    assert_eq!(stops(&mut cmds), vec![(n::CEASE, n::CEASE_BFD_DOWN, true)]);
    stopped(&mut s);
    assert_eq!(s.rib.adj_in_total(id(&s)), 0);
    assert!(
        withdrawn_from_kernel(&mut fib),
        "the route leaves the kernel"
    );
    let view = &s.peer_views()[0];
    assert_eq!(view.bfd.as_deref(), Some("Down"));
    assert!(view.last_error.contains("BFD down"), "{}", view.last_error);
    assert!(
        view.last_notification.contains("BFD Down"),
        "{}",
        view.last_notification
    );
}

#[tokio::test]
async fn only_a_path_failure_on_an_established_session_counts() {
    let (mut s, mut cmds, _fib) = speaker(true).await;
    // Not established yet: BFD does not hold BGP back, nor stop it.
    s.bfd_event(bfd_failure(false));
    assert_eq!(stops(&mut cmds), vec![]);
    establish_with_route(&mut s, false);
    // The peer going AdminDown is not a failure (RFC 5882 §3.2).
    s.bfd_event(change(
        BfdState::Up,
        BfdState::Down,
        BfdState::AdminDown,
        false,
    ));
    // Neither is a session that never came up.
    s.bfd_event(change(
        BfdState::Init,
        BfdState::Down,
        BfdState::Init,
        false,
    ));
    s.bfd_event(change(
        BfdState::Up,
        BfdState::AdminDown,
        BfdState::Up,
        false,
    ));
    assert_eq!(stops(&mut cmds), vec![]);
    assert_eq!(s.rib.adj_in_total(id(&s)), 1);
}

#[tokio::test]
async fn a_peer_without_a_bfd_profile_ignores_bfd_events() {
    let (mut s, mut cmds, _fib) = speaker(false).await;
    establish_with_route(&mut s, false);
    s.bfd_event(bfd_failure(false));
    assert_eq!(stops(&mut cmds), vec![]);
    assert_eq!(s.peer_views()[0].bfd, None);
}

#[tokio::test]
async fn with_the_n_bit_bfd_down_is_a_hard_reset_and_nothing_is_kept() {
    // The path failed: the peer must not keep this node's routes through
    // graceful restart (RFC 8538 §5), nor this node the peer's.
    let (mut s, mut cmds, mut fib) = speaker(true).await;
    establish_with_route(&mut s, true);
    let _ = withdrawn_from_kernel(&mut fib);
    s.bfd_event(bfd_failure(false));
    let sent: Vec<Notification> = std::iter::from_fn(|| cmds.try_recv().ok())
        .filter_map(|c| match c {
            SessionCmd::Reset(n) => Some(n),
            _ => None,
        })
        .collect();
    assert_eq!(
        sent,
        vec![Notification {
            code: n::CEASE,
            subcode: n::CEASE_HARD_RESET,
            data: vec![n::CEASE, n::CEASE_BFD_DOWN],
        }]
    );
    stopped(&mut s);
    assert_eq!(s.rib.adj_in_total(id(&s)), 0);
    assert!(s.peers[&origin()].graceful.is_none());
    assert!(withdrawn_from_kernel(&mut fib));
}

/// The peer restarted (its routes are stale, awaiting End-of-RIB) and is
/// back; then BFD goes down.
async fn bfd_down_during_a_restart(c_bit: bool) -> Speaker {
    let (mut s, mut cmds, _fib) = speaker(true).await;
    establish_with_route(&mut s, true);
    let id = id(&s);
    s.session_event(
        id,
        SessionEvent::Down {
            reason: DownReason::ConnectionClosed,
            was_established: true,
        },
    );
    assert!(s.peers[&origin()].graceful.is_some());
    establish_with_route(&mut s, true);
    assert!(s.peers[&origin()].graceful.is_some(), "awaiting End-of-RIB");
    s.bfd_event(bfd_failure(c_bit));
    assert_eq!(stops(&mut cmds).len(), 1);
    stopped(&mut s);
    s
}

#[tokio::test]
async fn bfd_down_with_the_c_bit_during_a_restart_keeps_the_routes() {
    let s = bfd_down_during_a_restart(true).await;
    assert_eq!(s.rib.adj_in_total(s.peers[&origin()].id), 1);
    assert!(s.peers[&origin()].graceful.is_some());
}

#[tokio::test]
async fn bfd_down_without_the_c_bit_during_a_restart_withdraws() {
    let s = bfd_down_during_a_restart(false).await;
    assert_eq!(s.rib.adj_in_total(s.peers[&origin()].id), 0);
    assert!(s.peers[&origin()].graceful.is_none());
}
