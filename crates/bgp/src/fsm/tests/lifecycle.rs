//! Start, Stop, connection attempts, passive mode, stale driver events,
//! Established behaviour and configuration updates.

use super::*;
use crate::wire::{RouteRefresh, Update};

const OUT: ConnId = ConnId::Outbound;
const IN: ConnId = ConnId::Inbound;

#[test]
fn new_session_is_idle_and_silent() {
    let f = Fsm::new(cfg());
    assert_eq!(f.state(), State::Idle);
    assert!(!f.is_started());
    assert!(f.negotiated().is_none());
}

#[test]
fn start_connects_and_arms_jittered_connect_retry() {
    let mut f = Fsm::new(cfg());
    let a = f.handle(Event::Start);
    assert_eq!(connects(&a), 1);
    let d = timer_started(&a, Timer::ConnectRetry).expect("ConnectRetry armed");
    assert!(
        d >= Duration::from_millis(3750) && d <= Duration::from_secs(5),
        "{d:?}"
    );
    assert_eq!(state_change(&a), Some((State::Idle, State::Connect)));
}

#[test]
fn passive_never_connects() {
    let c = SessionConfig {
        passive: true,
        ..cfg()
    };
    let mut f = Fsm::new(c);
    let mut all = f.handle(Event::Start);
    assert_eq!(f.state(), State::Active);
    // Every way back to Active: a failed session, its backoff, a stale retry.
    all.extend(f.handle(Event::TimerExpired(Timer::ConnectRetry)));
    all.extend(f.handle(Event::TcpConnected(IN)));
    all.extend(f.handle(Event::TcpClosed(IN)));
    all.extend(f.handle(Event::TimerExpired(Timer::IdleHold)));
    assert_eq!(f.state(), State::Active);
    assert_eq!(connects(&all), 0, "{all:?}");
    assert!(timer_started(&all, Timer::ConnectRetry).is_none());
}

#[test]
fn passive_accepts_inbound_and_reaches_established() {
    let c = SessionConfig {
        passive: true,
        ..cfg()
    };
    let mut f = started(c);
    let a = f.handle(Event::TcpConnected(IN));
    assert_eq!(sent(&a, IN), vec![Message::Open(f.local_open())]);
    assert_eq!(
        timer_started(&a, Timer::Hold),
        Some(Duration::from_secs(240))
    );
    f.handle(Event::Received(IN, Message::Open(peer_open())));
    let a = f.handle(Event::Received(IN, Message::Keepalive));
    assert_eq!(f.state(), State::Established);
    assert_eq!(established_action(&a).map(|n| n.conn), Some(IN));
}

#[test]
fn connect_failure_goes_active_then_retries() {
    let mut f = started(cfg());
    let a = f.handle(Event::TcpConnectFailed);
    assert_eq!(f.state(), State::Active);
    assert!(
        timer_started(&a, Timer::ConnectRetry).is_some(),
        "ConnectRetry restarted"
    );
    assert!(
        down(&a).is_none(),
        "a refused connect is not a session failure"
    );
    let a = f.handle(Event::TimerExpired(Timer::ConnectRetry));
    assert_eq!(connects(&a), 1);
    assert!(!closed(&a, OUT), "no attempt to abort in Active");
    assert_eq!(f.state(), State::Connect);
    assert_eq!(f.failures(), 0);
}

#[test]
fn connect_retry_in_connect_aborts_and_reconnects() {
    let mut f = started(cfg());
    let a = f.handle(Event::TimerExpired(Timer::ConnectRetry));
    let close = a
        .iter()
        .position(|x| *x == Action::Close(OUT))
        .expect("abort");
    let connect = a
        .iter()
        .position(|x| *x == Action::Connect)
        .expect("reconnect");
    assert!(close < connect);
    assert!(timer_started(&a, Timer::ConnectRetry).is_some());
    assert_eq!(f.state(), State::Connect);
}

#[test]
fn tcp_connected_sends_our_open_and_arms_four_minute_hold() {
    let mut f = started(cfg());
    let a = f.handle(Event::TcpConnected(OUT));
    assert_eq!(sent(&a, OUT), vec![Message::Open(f.local_open())]);
    assert_eq!(
        timer_started(&a, Timer::Hold),
        Some(Duration::from_secs(240))
    );
    assert!(timer_stopped(&a, Timer::ConnectRetry));
}

#[test]
fn late_outbound_success_after_abandon_is_closed() {
    let mut f = started(cfg());
    f.handle(Event::Stop(cease(2, None)));
    let a = f.handle(Event::TcpConnected(OUT));
    assert_eq!(a, vec![Action::Close(OUT)]);
    assert!(!f.has_conn(OUT));
}

#[test]
fn duplicate_tcp_connected_is_ignored() {
    let mut f = open_sent(cfg());
    assert!(f.handle(Event::TcpConnected(OUT)).is_empty());
    assert_eq!(f.state(), State::OpenSent);
    f.handle(Event::TcpConnected(IN));
    assert!(f.handle(Event::TcpConnected(IN)).is_empty());
    assert!(f.has_conn(OUT) && f.has_conn(IN));
}

#[test]
fn stopped_session_rejects_inbound_with_connection_rejected() {
    let mut f = Fsm::new(cfg());
    let a = f.handle(Event::TcpConnected(IN));
    assert_eq!(code_sent(&a, IN), Some((6, 5)));
    assert!(closed(&a, IN));
    assert!(!f.has_conn(IN));
}

#[test]
fn inbound_during_backoff_is_accepted() {
    let mut f = established(cfg());
    f.handle(Event::TcpClosed(OUT));
    assert_eq!(f.state(), State::Idle);
    assert!(f.is_started());
    let a = f.handle(Event::TcpConnected(IN));
    assert!(timer_stopped(&a, Timer::IdleHold));
    assert_eq!(sent(&a, IN), vec![Message::Open(f.local_open())]);
    assert_eq!(f.state(), State::OpenSent);
    // The stale IdleHold expiry does not start a parallel outbound attempt.
    assert!(f.handle(Event::TimerExpired(Timer::IdleHold)).is_empty());
}

#[test]
fn stop_sends_cease_closes_and_stays_idle() {
    let mut f = established(cfg());
    let a = f.handle(Event::Stop(cease(3, Some("ignored"))));
    let n = notification_sent(&a, OUT).expect("Cease sent");
    assert_eq!((n.code, n.subcode), (6, 3));
    assert!(
        n.data.is_empty(),
        "only subcodes 2 and 4 carry a communication"
    );
    assert!(closed(&a, OUT));
    assert_eq!(down(&a), Some(DownReason::Stopped));
    for t in [
        Timer::Hold,
        Timer::Keepalive,
        Timer::SendHold,
        Timer::StableReset,
    ] {
        assert!(timer_stopped(&a, t), "{t} stopped");
    }
    assert!(
        timer_started(&a, Timer::IdleHold).is_none(),
        "no automatic restart"
    );
    assert!(!f.is_started());
    assert!(f.handle(Event::TimerExpired(Timer::IdleHold)).is_empty());
    assert_eq!(f.state(), State::Idle);
}

#[test]
fn stop_with_two_connections_ceases_both() {
    let mut f = open_sent(cfg());
    f.handle(Event::TcpConnected(IN));
    let a = f.handle(Event::Stop(cease(4, None)));
    assert_eq!(code_sent(&a, OUT), Some((6, 4)));
    assert_eq!(code_sent(&a, IN), Some((6, 4)));
    assert!(closed(&a, OUT) && closed(&a, IN));
}

#[test]
fn stop_while_connecting_aborts_attempt() {
    let mut f = started(cfg());
    let a = f.handle(Event::Stop(cease(2, None)));
    assert!(closed(&a, OUT));
    assert!(timer_stopped(&a, Timer::ConnectRetry));
    assert!(down(&a).is_none(), "no Down before OpenSent");
}

#[test]
fn stop_during_backoff_cancels_automatic_restart() {
    let mut f = open_sent(cfg());
    f.handle(Event::TcpClosed(OUT));
    assert_eq!(f.state(), State::Idle);
    let a = f.handle(Event::Stop(cease(2, None)));
    assert_eq!(a, vec![Action::StopTimer(Timer::IdleHold)]);
    assert!(f.handle(Event::TimerExpired(Timer::IdleHold)).is_empty());
    assert!(!f.is_started());
}

#[test]
fn start_while_running_or_backing_off_is_ignored() {
    let mut f = started(cfg());
    assert!(f.handle(Event::Start).is_empty());
    f.handle(Event::TcpConnected(OUT));
    f.handle(Event::TcpClosed(OUT));
    assert!(
        f.handle(Event::Start).is_empty(),
        "the backoff is not bypassed"
    );
    assert_eq!(f.failures(), 1);
}

#[test]
fn start_after_stop_restarts_with_clean_backoff() {
    let mut f = open_sent(cfg());
    f.handle(Event::TcpClosed(OUT));
    assert_eq!(f.failures(), 1);
    f.handle(Event::Stop(cease(2, None)));
    let a = f.handle(Event::Start);
    assert_eq!(connects(&a), 1);
    assert_eq!(f.failures(), 0);
}

#[test]
fn established_emits_negotiated_and_timers() {
    let mut f = open_confirm(cfg());
    let a = f.handle(Event::Received(OUT, Message::Keepalive));
    let n = established_action(&a).expect("Established action");
    assert_eq!(n.conn, OUT);
    assert_eq!(f.negotiated(), Some(&n));
    assert_eq!(
        timer_started(&a, Timer::Hold),
        Some(Duration::from_secs(90))
    );
    assert_eq!(
        timer_started(&a, Timer::SendHold),
        Some(Duration::from_secs(480))
    );
    assert_eq!(
        timer_started(&a, Timer::StableReset),
        Some(Duration::from_secs(60))
    );
    let change = a
        .iter()
        .position(|x| matches!(x, Action::StateChange { .. }))
        .unwrap();
    let est = a
        .iter()
        .position(|x| matches!(x, Action::Established(_)))
        .unwrap();
    assert!(change < est, "StateChange comes before Established");
}

#[test]
fn messages_in_established_restart_hold_and_are_delivered() {
    let mut f = established(cfg());
    let upd = Message::Update(Update::default());
    for m in [
        upd.clone(),
        Message::Keepalive,
        Message::EndOfRib(Family::Ipv6Unicast),
    ] {
        let a = f.handle(Event::Received(OUT, m.clone()));
        assert_eq!(
            timer_started(&a, Timer::Hold),
            Some(Duration::from_secs(90)),
            "{m:?}"
        );
        let expected = if m == Message::Keepalive {
            vec![]
        } else {
            vec![m.clone()]
        };
        assert_eq!(delivered(&a), expected);
    }
}

#[test]
fn route_refresh_for_negotiated_family_is_delivered_others_ignored() {
    let mut c = cfg();
    c.families = vec![Family::Ipv4Unicast];
    let mut f = established(c);
    let v4 = Message::RouteRefresh(RouteRefresh {
        family: Family::Ipv4Unicast,
        subtype: 0,
    });
    let v6 = Message::RouteRefresh(RouteRefresh {
        family: Family::Ipv6Unicast,
        subtype: 0,
    });
    assert_eq!(
        delivered(&f.handle(Event::Received(OUT, v4.clone()))),
        vec![v4]
    );
    assert!(delivered(&f.handle(Event::Received(OUT, v6))).is_empty());
    assert_eq!(f.state(), State::Established);
}

#[test]
fn hold_time_zero_runs_no_hold_or_keepalive_timers() {
    let c = SessionConfig {
        hold_time: 0,
        ..cfg()
    };
    let mut f = open_sent(c);
    let a = f.handle(Event::Received(OUT, Message::Open(peer_open())));
    assert!(timer_started(&a, Timer::Keepalive).is_none());
    assert_eq!(
        timer_started(&a, Timer::Hold),
        Some(Duration::from_secs(240)),
        "OpenConfirm guard"
    );
    let a = f.handle(Event::Received(OUT, Message::Keepalive));
    assert!(timer_stopped(&a, Timer::Hold));
    assert!(timer_started(&a, Timer::SendHold).is_none());
    assert_eq!(
        established_action(&a).map(|n| (n.hold_time, n.keepalive)),
        Some((0, 0))
    );
    let a = f.handle(Event::Received(OUT, Message::Update(Update::default())));
    assert!(timer_started(&a, Timer::Hold).is_none());
}

#[test]
fn events_for_closed_connection_are_ignored() {
    let mut f = established(cfg());
    for e in [
        Event::Received(IN, Message::Keepalive),
        Event::TcpClosed(IN),
        Event::DecodeError(IN, notif(1, 1)),
    ] {
        assert!(f.handle(e).is_empty());
    }
    assert_eq!(f.state(), State::Established);
}

#[test]
fn update_config_applies_timer_changes_without_reset() {
    let mut f = established(cfg());
    let c = SessionConfig {
        connect_retry: Duration::from_secs(9),
        keepalive_time: Some(10),
        ..cfg()
    };
    assert!(f.update_config(c));
    assert_eq!(f.config().connect_retry, Duration::from_secs(9));
    assert_eq!(f.negotiated().map(|n| n.keepalive), Some(10));
    // keepalive_time applies from the next arming.
    let a = f.handle(Event::TimerExpired(Timer::Keepalive));
    assert_eq!(sent(&a, OUT), vec![Message::Keepalive]);
    let d = timer_started(&a, Timer::Keepalive).expect("re-armed");
    assert!(
        d >= Duration::from_millis(7500) && d <= Duration::from_secs(10),
        "{d:?}"
    );
}

#[test]
fn update_config_refuses_changes_that_need_a_reset() {
    let changes: Vec<(&str, SessionConfig)> = vec![
        (
            "local_as",
            SessionConfig {
                local_as: 1,
                ..cfg()
            },
        ),
        (
            "peer_as",
            SessionConfig {
                peer_as: 1,
                ..cfg()
            },
        ),
        (
            "router_id",
            SessionConfig {
                router_id: Ipv4Addr::new(1, 1, 1, 1),
                ..cfg()
            },
        ),
        (
            "hold_time",
            SessionConfig {
                hold_time: 30,
                ..cfg()
            },
        ),
        (
            "families",
            SessionConfig {
                families: vec![Family::Ipv4Unicast],
                ..cfg()
            },
        ),
        (
            "route_refresh",
            SessionConfig {
                route_refresh: false,
                ..cfg()
            },
        ),
        (
            "enhanced_route_refresh",
            SessionConfig {
                enhanced_route_refresh: false,
                ..cfg()
            },
        ),
        (
            "extended_message",
            SessionConfig {
                extended_message: false,
                ..cfg()
            },
        ),
        (
            "passive",
            SessionConfig {
                passive: true,
                ..cfg()
            },
        ),
        (
            "graceful_restart",
            SessionConfig {
                graceful_restart: Some(GracefulRestartCap::default()),
                ..cfg()
            },
        ),
    ];
    for (field, c) in changes {
        let mut f = established(cfg());
        assert!(!f.update_config(c.clone()), "{field}");
        assert_eq!(f.config(), &cfg(), "{field}: old config kept");
        f.handle(Event::Stop(cease(6, None)));
        assert!(
            f.update_config(c.clone()),
            "{field}: accepted while stopped"
        );
        assert_eq!(f.local_open(), Fsm::new(c).local_open(), "{field}");
    }
}

#[test]
fn clearing_the_restart_state_bit_needs_no_reset() {
    let gr = |restart_state| GracefulRestartCap {
        restart_state,
        notification: true,
        restart_time: 120,
        families: vec![],
    };
    let restarting = SessionConfig {
        graceful_restart: Some(gr(true)),
        ..cfg()
    };
    let mut f = established(restarting);
    let done = SessionConfig {
        graceful_restart: Some(gr(false)),
        ..cfg()
    };
    assert!(f.update_config(done.clone()), "no reset for the R-bit");
    assert_eq!(f.state(), State::Established);
    // The next OPEN carries the bit clear.
    assert_eq!(
        f.local_open()
            .caps
            .graceful_restart
            .map(|c| c.restart_state),
        Some(false)
    );
    // Any other change of the capability still needs a reset.
    let longer = SessionConfig {
        graceful_restart: Some(GracefulRestartCap {
            restart_time: 300,
            ..gr(false)
        }),
        ..cfg()
    };
    assert!(!f.update_config(longer));
}
