//! FSM tests: plain `#[test]` functions feeding events and checking actions.
//! Run with `cargo test --lib bgp::fsm`.

mod collision;
mod lifecycle;
mod notify;
mod open;
mod props;
mod table;
mod timers;

use super::*;
use crate::wire::{Capabilities, Family, Message, Notification, Open};
use std::net::Ipv4Addr;
use std::time::Duration;

pub(super) const LOCAL_ID: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
pub(super) const PEER_ID: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

pub(super) fn cfg() -> SessionConfig {
    SessionConfig {
        local_as: 65001,
        peer_as: 65002,
        router_id: LOCAL_ID,
        hold_time: 90,
        keepalive_time: None,
        connect_retry: Duration::from_secs(5),
        idle_hold: Duration::from_secs(1),
        max_idle_hold: Duration::from_secs(60),
        passive: false,
        families: vec![Family::Ipv4Unicast, Family::Ipv6Unicast],
        route_refresh: true,
        enhanced_route_refresh: true,
        extended_message: true,
        graceful_restart: None,
        send_hold_time: None,
        seed: 7,
    }
}

pub(super) fn ibgp_cfg() -> SessionConfig {
    SessionConfig {
        peer_as: 65001,
        ..cfg()
    }
}

/// A well-formed OPEN from the peer of [`cfg`].
pub(super) fn peer_open() -> Open {
    Open {
        asn: 65002,
        hold_time: 90,
        router_id: PEER_ID,
        caps: Capabilities {
            multiprotocol: vec![Family::Ipv4Unicast, Family::Ipv6Unicast],
            route_refresh: true,
            enhanced_route_refresh: true,
            four_octet_as: Some(65002),
            extended_message: true,
            ..Capabilities::default()
        },
    }
}

pub(super) fn notif(code: u8, subcode: u8) -> Notification {
    Notification {
        code,
        subcode,
        data: Vec::new(),
    }
}

pub(super) fn started(c: SessionConfig) -> Fsm {
    let mut f = Fsm::new(c);
    f.handle(Event::Start);
    f
}

/// Outbound connection in OpenSent.
pub(super) fn open_sent(c: SessionConfig) -> Fsm {
    let mut f = started(c);
    f.handle(Event::TcpConnected(ConnId::Outbound));
    assert_eq!(f.state(), State::OpenSent);
    f
}

pub(super) fn open_confirm(c: SessionConfig) -> Fsm {
    let mut f = open_sent(c);
    f.handle(Event::Received(
        ConnId::Outbound,
        Message::Open(peer_open()),
    ));
    assert_eq!(f.state(), State::OpenConfirm);
    f
}

pub(super) fn established(c: SessionConfig) -> Fsm {
    let mut f = open_confirm(c);
    f.handle(Event::Received(ConnId::Outbound, Message::Keepalive));
    assert_eq!(f.state(), State::Established);
    f
}

/// Messages sent on `id`, in order.
pub(super) fn sent(actions: &[Action], id: ConnId) -> Vec<Message> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send(c, m) if *c == id => Some(m.clone()),
            _ => None,
        })
        .collect()
}

/// The NOTIFICATION sent on `id`, if exactly one was.
pub(super) fn notification_sent(actions: &[Action], id: ConnId) -> Option<Notification> {
    let ns: Vec<Notification> = sent(actions, id)
        .into_iter()
        .filter_map(|m| match m {
            Message::Notification(n) => Some(n),
            _ => None,
        })
        .collect();
    assert!(ns.len() <= 1, "more than one NOTIFICATION on {id}: {ns:?}");
    ns.into_iter().next()
}

pub(super) fn code_sent(actions: &[Action], id: ConnId) -> Option<(u8, u8)> {
    notification_sent(actions, id).map(|n| (n.code, n.subcode))
}

/// The last duration `t` was (re)armed with.
pub(super) fn timer_started(actions: &[Action], t: Timer) -> Option<Duration> {
    actions.iter().rev().find_map(|a| match a {
        Action::StartTimer(x, d) if *x == t => Some(*d),
        _ => None,
    })
}

pub(super) fn timer_stopped(actions: &[Action], t: Timer) -> bool {
    actions.contains(&Action::StopTimer(t))
}

pub(super) fn closed(actions: &[Action], id: ConnId) -> bool {
    actions.contains(&Action::Close(id))
}

pub(super) fn connects(actions: &[Action]) -> usize {
    actions.iter().filter(|a| **a == Action::Connect).count()
}

pub(super) fn down(actions: &[Action]) -> Option<DownReason> {
    actions.iter().find_map(|a| match a {
        Action::Down(r) => Some(r.clone()),
        _ => None,
    })
}

pub(super) fn state_change(actions: &[Action]) -> Option<(State, State)> {
    let changes: Vec<(State, State)> = actions
        .iter()
        .filter_map(|a| match a {
            Action::StateChange { from, to } => Some((*from, *to)),
            _ => None,
        })
        .collect();
    assert!(
        changes.len() <= 1,
        "more than one state change: {changes:?}"
    );
    changes.first().copied()
}

pub(super) fn established_action(actions: &[Action]) -> Option<Negotiated> {
    actions.iter().find_map(|a| match a {
        Action::Established(n) => Some(n.clone()),
        _ => None,
    })
}

pub(super) fn delivered(actions: &[Action]) -> Vec<Message> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Deliver(m) => Some(m.clone()),
            _ => None,
        })
        .collect()
}
