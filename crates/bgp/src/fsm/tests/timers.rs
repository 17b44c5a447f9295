//! Hold, keepalive, send hold (RFC 9687), jitter (RFC 4271 §10) and the
//! IdleHold backoff.

use super::super::rng::{Rng, backoff};
use super::*;

const OUT: ConnId = ConnId::Outbound;

#[test]
fn jitter_in_range() {
    let mut r = Rng::new(42);
    let d = Duration::from_secs(100);
    let (mut lo, mut hi) = (d, Duration::ZERO);
    for _ in 0..10_000 {
        let j = r.jitter(d);
        assert!(j >= Duration::from_secs(75) && j <= d, "{j:?}");
        lo = lo.min(j);
        hi = hi.max(j);
    }
    // The whole range is used, not a constant factor.
    assert!(
        lo < Duration::from_secs(76) && hi > Duration::from_secs(99),
        "{lo:?}..{hi:?}"
    );
    assert_eq!(r.jitter(Duration::ZERO), Duration::ZERO);
}

#[test]
fn jitter_is_deterministic_per_seed() {
    let run = |seed| {
        let mut f = Fsm::new(SessionConfig { seed, ..cfg() });
        timer_started(&f.handle(Event::Start), Timer::ConnectRetry)
    };
    assert_eq!(run(1), run(1));
    assert_ne!(run(1), run(2));
}

#[test]
fn backoff_doubles_and_caps() {
    let (base, max) = (Duration::from_secs(1), Duration::from_secs(60));
    let got: Vec<u64> = (0..10).map(|n| backoff(base, max, n).as_secs()).collect();
    assert_eq!(got, vec![0, 1, 2, 4, 8, 16, 32, 60, 60, 60]);
    assert_eq!(backoff(base, max, u32::MAX), max, "no overflow");
    assert_eq!(
        backoff(Duration::from_secs(90), max, 1),
        max,
        "base above max is capped"
    );
}

/// Fails a session in OpenSent `n` times and returns the IdleHold durations.
fn idle_holds(f: &mut Fsm, n: usize) -> Vec<Duration> {
    let mut out = Vec::new();
    for _ in 0..n {
        f.handle(Event::TcpConnected(OUT));
        let mut o = peer_open();
        o.asn = 1;
        o.caps.four_octet_as = Some(1);
        let a = f.handle(Event::Received(OUT, Message::Open(o)));
        assert_eq!(code_sent(&a, OUT), Some((2, 2)));
        out.push(timer_started(&a, Timer::IdleHold).expect("IdleHold armed"));
        let a = f.handle(Event::TimerExpired(Timer::IdleHold));
        assert_eq!(connects(&a), 1, "automatic restart");
    }
    out
}

#[test]
fn wrong_as_peer_backs_off_exponentially() {
    let mut f = started(cfg());
    let holds = idle_holds(&mut f, 9);
    let nominal = [1u64, 2, 4, 8, 16, 32, 60, 60, 60];
    for (got, n) in holds.iter().zip(nominal) {
        let n = Duration::from_secs(n);
        assert!(*got <= n && *got >= n.mul_f64(0.75), "{got:?} vs {n:?}");
    }
    assert_eq!(f.failures(), 9);
}

#[test]
fn stable_established_session_resets_backoff() {
    let mut f = started(cfg());
    idle_holds(&mut f, 4);
    assert_eq!(f.failures(), 4);
    f.handle(Event::TcpConnected(OUT));
    f.handle(Event::Received(OUT, Message::Open(peer_open())));
    f.handle(Event::Received(OUT, Message::Keepalive));
    assert_eq!(f.failures(), 4, "not yet stable");
    assert!(f.handle(Event::TimerExpired(Timer::StableReset)).is_empty());
    assert_eq!(f.failures(), 0);
    let a = f.handle(Event::TcpClosed(OUT));
    let d = timer_started(&a, Timer::IdleHold).unwrap();
    assert!(
        d <= Duration::from_secs(1),
        "back to the initial backoff: {d:?}"
    );
}

#[test]
fn flapping_session_keeps_backoff() {
    let mut f = started(cfg());
    idle_holds(&mut f, 3);
    f.handle(Event::TcpConnected(OUT));
    f.handle(Event::Received(OUT, Message::Open(peer_open())));
    let a = f.handle(Event::Received(OUT, Message::Keepalive));
    assert!(timer_started(&a, Timer::StableReset).is_some());
    let a = f.handle(Event::Received(OUT, Message::Notification(notif(6, 1))));
    assert!(timer_stopped(&a, Timer::StableReset));
    assert_eq!(f.failures(), 4);
    let d = timer_started(&a, Timer::IdleHold).unwrap();
    assert!(
        d >= Duration::from_secs(6),
        "fourth failure: 8 s nominal, got {d:?}"
    );
    assert!(
        f.handle(Event::TimerExpired(Timer::StableReset)).is_empty(),
        "stale"
    );
    assert_eq!(f.failures(), 4);
}

#[test]
fn idle_hold_expiry_restarts_passive_in_active() {
    let c = SessionConfig {
        passive: true,
        ..cfg()
    };
    let mut f = started(c);
    f.handle(Event::TcpConnected(ConnId::Inbound));
    let a = f.handle(Event::TcpClosed(ConnId::Inbound));
    assert_eq!(f.state(), State::Idle);
    assert!(timer_started(&a, Timer::IdleHold).is_some());
    let a = f.handle(Event::TimerExpired(Timer::IdleHold));
    assert_eq!(state_change(&a), Some((State::Idle, State::Active)));
    assert_eq!(connects(&a), 0);
}

#[test]
fn connect_failures_do_not_grow_backoff() {
    let mut f = started(cfg());
    for _ in 0..5 {
        let a = f.handle(Event::TcpConnectFailed);
        let d = timer_started(&a, Timer::ConnectRetry).unwrap();
        assert!(d >= Duration::from_millis(3750) && d <= Duration::from_secs(5));
        f.handle(Event::TimerExpired(Timer::ConnectRetry));
    }
    assert_eq!(f.failures(), 0);
    assert_eq!(f.state(), State::Connect);
}

#[test]
fn keepalive_timer_sends_keepalive_and_rearms() {
    for mut f in [open_confirm(cfg()), established(cfg())] {
        let a = f.handle(Event::TimerExpired(Timer::Keepalive));
        assert_eq!(sent(&a, OUT), vec![Message::Keepalive]);
        let d = timer_started(&a, Timer::Keepalive).unwrap();
        assert!(
            d >= Duration::from_millis(22_500) && d <= Duration::from_secs(30),
            "{d:?}"
        );
    }
}

#[test]
fn hold_expiry_sends_code_4_and_backs_off() {
    let mut f = established(cfg());
    let a = f.handle(Event::TimerExpired(Timer::Hold));
    assert_eq!(code_sent(&a, OUT), Some((4, 0)));
    assert_eq!(down(&a), Some(DownReason::HoldTimerExpired));
    assert!(f.negotiated().is_none());
    assert_eq!(f.last_down(), Some(&DownReason::HoldTimerExpired));
    assert_eq!(f.failures(), 1);
}

#[test]
fn send_hold_expiry_sends_code_8() {
    let mut f = established(cfg());
    let a = f.handle(Event::TimerExpired(Timer::SendHold));
    let n = notification_sent(&a, OUT).unwrap();
    assert_eq!((n.code, n.subcode, n.data.len()), (8, 0, 0));
    let send = a
        .iter()
        .position(|x| matches!(x, Action::Send(..)))
        .unwrap();
    let close = a.iter().position(|x| *x == Action::Close(OUT)).unwrap();
    assert!(send < close);
    assert_eq!(down(&a), Some(DownReason::SendHoldTimerExpired));
    assert_eq!(f.state(), State::Idle);
}

#[test]
fn send_progress_restarts_send_hold() {
    let mut f = established(cfg());
    let a = f.handle(Event::SendProgress);
    assert_eq!(
        a,
        vec![Action::StartTimer(
            Timer::SendHold,
            Duration::from_secs(480)
        )]
    );
}

#[test]
fn send_hold_defaults_to_twice_a_long_hold_time() {
    let c = SessionConfig {
        hold_time: 600,
        ..cfg()
    };
    let mut o = peer_open();
    o.hold_time = 300;
    let mut f = open_sent(c);
    f.handle(Event::Received(OUT, Message::Open(o)));
    let a = f.handle(Event::Received(OUT, Message::Keepalive));
    assert_eq!(
        timer_started(&a, Timer::SendHold),
        Some(Duration::from_secs(600))
    );
}

#[test]
fn configured_send_hold_is_used() {
    let c = SessionConfig {
        send_hold_time: Some(Duration::from_secs(200)),
        ..cfg()
    };
    let mut f = open_confirm(c);
    let a = f.handle(Event::Received(OUT, Message::Keepalive));
    assert_eq!(
        timer_started(&a, Timer::SendHold),
        Some(Duration::from_secs(200))
    );
    assert_eq!(
        f.handle(Event::SendProgress),
        vec![Action::StartTimer(
            Timer::SendHold,
            Duration::from_secs(200)
        )]
    );
}

#[test]
fn send_progress_outside_established_is_ignored() {
    for mut f in [
        Fsm::new(cfg()),
        started(cfg()),
        open_sent(cfg()),
        open_confirm(cfg()),
    ] {
        assert!(f.handle(Event::SendProgress).is_empty());
    }
}

#[test]
fn stale_timer_expiry_is_ignored() {
    let mut f = established(cfg());
    // Established stops nothing it does not own; ConnectRetry was stopped on TCP connect.
    assert!(
        f.handle(Event::TimerExpired(Timer::ConnectRetry))
            .is_empty()
    );
    assert!(f.handle(Event::TimerExpired(Timer::IdleHold)).is_empty());
    f.handle(Event::TimerExpired(Timer::Hold));
    assert_eq!(f.state(), State::Idle);
    // A second Hold expiry (raced with the stop) changes nothing.
    assert!(f.handle(Event::TimerExpired(Timer::Hold)).is_empty());
    assert_eq!(f.failures(), 1);
}

#[test]
fn open_sent_hold_expiry_fails_every_waiting_connection() {
    let mut f = open_sent(cfg());
    f.handle(Event::TcpConnected(ConnId::Inbound));
    let a = f.handle(Event::TimerExpired(Timer::Hold));
    assert_eq!(code_sent(&a, OUT), Some((4, 0)));
    assert_eq!(code_sent(&a, ConnId::Inbound), Some((4, 0)));
    assert_eq!(down(&a), Some(DownReason::HoldTimerExpired));
    assert_eq!(f.state(), State::Idle);
    assert_eq!(f.failures(), 1, "one session failure, not two");
}
