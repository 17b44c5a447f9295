//! Connection collision detection (RFC 4271 §6.8, RFC 6286 §2.3) and two
//! simultaneous connections.

use super::*;

const OUT: ConnId = ConnId::Outbound;
const IN: ConnId = ConnId::Inbound;

fn with_id(id: Ipv4Addr) -> SessionConfig {
    SessionConfig {
        router_id: id,
        ..cfg()
    }
}

/// Both connections in OpenSent.
fn both_open_sent(c: SessionConfig) -> Fsm {
    let mut f = open_sent(c);
    let a = f.handle(Event::TcpConnected(IN));
    assert_eq!(sent(&a, IN), vec![Message::Open(f.local_open())]);
    assert!(f.has_conn(OUT) && f.has_conn(IN));
    f
}

fn assert_lost(a: &[Action], loser: ConnId) {
    assert_eq!(code_sent(a, loser), Some((6, 7)), "{a:?}");
    assert!(closed(a, loser));
    assert!(code_sent(a, loser.other()).is_none());
    assert!(down(a).is_none(), "a collision is not a session failure");
}

#[test]
fn collision_keeps_connection_of_higher_router_id() {
    // (local id, connection whose OPEN arrives first, expected survivor)
    let higher = Ipv4Addr::new(10, 0, 0, 9);
    let cases = [
        (higher, IN, OUT),
        (higher, OUT, OUT),
        (LOCAL_ID, IN, IN),
        (LOCAL_ID, OUT, IN),
    ];
    for (local, first, keep) in cases {
        let mut f = both_open_sent(with_id(local));
        let a = f.handle(Event::Received(first, Message::Open(peer_open())));
        assert_lost(&a, keep.other());
        assert!(f.has_conn(keep) && !f.has_conn(keep.other()));
        let expected = if first == keep {
            State::OpenConfirm
        } else {
            State::OpenSent
        };
        assert_eq!(f.state(), expected, "local {local}, first {first}");
        assert_eq!(f.failures(), 0);
        if first != keep {
            // The survivor still completes.
            f.handle(Event::Received(keep, Message::Open(peer_open())));
            let a = f.handle(Event::Received(keep, Message::Keepalive));
            assert_eq!(established_action(&a).map(|n| n.conn), Some(keep));
        }
    }
}

#[test]
fn collision_with_open_confirm_follows_router_ids() {
    // Outbound reached OpenConfirm, then the peer's own connection brings an OPEN.
    for (local, keep) in [(Ipv4Addr::new(10, 0, 0, 9), OUT), (LOCAL_ID, IN)] {
        let mut f = open_confirm(with_id(local));
        f.handle(Event::TcpConnected(IN));
        assert_eq!(f.state(), State::OpenConfirm);
        let a = f.handle(Event::Received(IN, Message::Open(peer_open())));
        assert_lost(&a, keep.other());
        assert_eq!(f.state(), State::OpenConfirm);
        if keep == IN {
            assert_eq!(sent(&a, IN), vec![Message::Keepalive]);
            assert_eq!(
                timer_started(&a, Timer::Hold),
                Some(Duration::from_secs(90))
            );
            assert!(timer_started(&a, Timer::Keepalive).is_some());
        }
        let a = f.handle(Event::Received(keep, Message::Keepalive));
        assert_eq!(established_action(&a).map(|n| n.conn), Some(keep));
    }
}

#[test]
fn equal_router_ids_keep_connection_of_higher_as() {
    // eBGP peers may share a router id (RFC 6286 §2.2); the higher AS wins.
    for (local_as, keep) in [(65001u32, IN), (65003, OUT)] {
        let mut f = both_open_sent(SessionConfig { local_as, ..cfg() });
        let mut o = peer_open();
        o.router_id = LOCAL_ID;
        let a = f.handle(Event::Received(IN, Message::Open(o)));
        assert_lost(&a, keep.other());
        assert!(f.has_conn(keep));
    }
}

#[test]
fn established_closes_other_connection_with_collision_cease() {
    let mut f = open_confirm(cfg());
    f.handle(Event::TcpConnected(IN));
    let a = f.handle(Event::Received(OUT, Message::Keepalive));
    assert_eq!(f.state(), State::Established);
    assert_lost(&a, IN);
    assert!(established_action(&a).is_some());
}

#[test]
fn established_rejects_new_inbound_connection() {
    let mut f = established(cfg());
    let a = f.handle(Event::TcpConnected(IN));
    assert_eq!(
        a,
        vec![
            Action::Send(IN, Message::Notification(notif(6, 7))),
            Action::Close(IN),
        ]
    );
    assert_eq!(f.state(), State::Established);
    assert!(!f.has_conn(IN));
}

#[test]
fn failure_of_one_connection_keeps_the_other() {
    let failures: Vec<Event> = vec![
        Event::TcpClosed(IN),
        Event::Received(IN, Message::Notification(notif(6, 7))),
        Event::DecodeError(IN, notif(1, 1)),
        Event::Received(IN, Message::Keepalive),
    ];
    for e in failures {
        let mut f = both_open_sent(cfg());
        let a = f.handle(e.clone());
        assert!(closed(&a, IN), "{e:?}");
        assert!(down(&a).is_none(), "{e:?}");
        assert!(timer_started(&a, Timer::IdleHold).is_none());
        assert_eq!(f.state(), State::OpenSent);
        assert!(f.has_conn(OUT));
        assert_eq!(f.failures(), 0);
    }
}

#[test]
fn hold_expiry_of_open_confirm_leaves_waiting_connection() {
    let mut f = open_confirm(cfg());
    f.handle(Event::TcpConnected(IN));
    let a = f.handle(Event::TimerExpired(Timer::Hold));
    assert_eq!(code_sent(&a, OUT), Some((4, 0)));
    assert!(code_sent(&a, IN).is_none());
    assert!(timer_stopped(&a, Timer::Keepalive));
    assert_eq!(
        timer_started(&a, Timer::Hold),
        Some(Duration::from_secs(240))
    );
    assert!(down(&a).is_none());
    assert_eq!(f.state(), State::OpenSent);
    // The waiting connection is still guarded by the hold timer.
    let a = f.handle(Event::TimerExpired(Timer::Hold));
    assert_eq!(code_sent(&a, IN), Some((4, 0)));
    assert_eq!(f.state(), State::Idle);
}

#[test]
fn valid_inbound_open_abandons_pending_outbound_attempt() {
    let mut f = started(cfg());
    f.handle(Event::TcpConnected(IN));
    assert_eq!(f.state(), State::OpenSent);
    let a = f.handle(Event::Received(IN, Message::Open(peer_open())));
    assert!(closed(&a, OUT), "pending attempt aborted: {a:?}");
    assert_eq!(f.handle(Event::TcpConnected(OUT)), vec![Action::Close(OUT)]);
    assert_eq!(f.state(), State::OpenConfirm);
}

#[test]
fn outbound_success_while_inbound_waits_creates_second_connection() {
    let mut f = started(cfg());
    f.handle(Event::TcpConnected(IN));
    let a = f.handle(Event::TcpConnected(OUT));
    assert_eq!(sent(&a, OUT), vec![Message::Open(f.local_open())]);
    assert!(f.has_conn(IN) && f.has_conn(OUT));
}

#[test]
fn connect_failure_with_inbound_up_changes_nothing() {
    let mut f = started(cfg());
    f.handle(Event::TcpConnected(IN));
    let a = f.handle(Event::TcpConnectFailed);
    assert!(a.is_empty(), "{a:?}");
    assert_eq!(f.state(), State::OpenSent);
}

#[test]
fn last_connection_failure_aborts_pending_attempt() {
    let mut f = started(cfg());
    f.handle(Event::TcpConnected(IN));
    let a = f.handle(Event::TcpClosed(IN));
    assert!(closed(&a, OUT), "pending outbound attempt aborted");
    assert_eq!(f.state(), State::Idle);
    assert_eq!(down(&a), Some(DownReason::ConnectionClosed));
    assert_eq!(f.handle(Event::TcpConnected(OUT)), vec![Action::Close(OUT)]);
}
