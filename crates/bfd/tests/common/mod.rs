//! Shared helpers for the integration tests: a fixed clock origin, a
//! pinned random source, a remote-packet builder and action filters.
#![allow(dead_code)]

use petrel_bfd::{
    Action, ControlPacket, Diagnostic, RandomSource, RxMeta, Session, SessionConfig, State,
    StateChange,
};
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The local discriminator of the session under test.
pub const LOCAL: u32 = 0x1111_1111;
/// The remote's discriminator.
pub const REMOTE: u32 = 0x2222_2222;

/// A fixed origin for all test instants.
pub fn t0() -> Instant {
    static T0: OnceLock<Instant> = OnceLock::new();
    *T0.get_or_init(Instant::now)
}

/// `t0 + ms` milliseconds.
pub fn at(ms: u64) -> Instant {
    t0() + Duration::from_millis(ms)
}

pub fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

/// Always returns the same value: 0 pins jitter to 75 %, `u32::MAX` to
/// 100 % (90 % with Detect Mult 1).
#[derive(Debug, Clone, Copy)]
pub struct Fixed(pub u32);

impl RandomSource for Fixed {
    fn next_u32(&mut self) -> u32 {
        self.0
    }
    fn fork(&mut self) -> Self {
        *self
    }
}

/// Jitter pinned to 100 %: periodic packets exactly one interval apart.
pub const NO_JITTER: Fixed = Fixed(u32::MAX);

pub fn source() -> SocketAddr {
    "192.0.2.2:49153".parse().unwrap()
}

/// Metadata of a packet from the peer, one hop away.
pub fn meta() -> RxMeta {
    RxMeta {
        ttl: 255,
        source: source(),
    }
}

/// A packet from the remote in `state`, 300 ms × 3, Your Discriminator
/// `your`.
pub fn remote(state: State, your: u32) -> ControlPacket {
    ControlPacket {
        diagnostic: Diagnostic::NONE,
        state,
        poll: false,
        final_: false,
        control_plane_independent: false,
        demand: false,
        detect_mult: 3,
        my_discriminator: REMOTE,
        your_discriminator: your,
        desired_min_tx_us: 300_000,
        required_min_rx_us: 300_000,
        required_min_echo_rx_us: 0,
        auth: None,
    }
}

/// An active single-hop session at t0 with the default 300 ms × 3 profile.
pub fn session() -> (Session<Fixed>, Vec<Action>) {
    session_with(SessionConfig::default())
}

pub fn session_with(config: SessionConfig) -> (Session<Fixed>, Vec<Action>) {
    Session::new(LOCAL, config, t0(), NO_JITTER).expect("valid config")
}

/// Feed a packet that must be accepted.
pub fn rx(s: &mut Session<Fixed>, now: Instant, p: &ControlPacket) -> Vec<Action> {
    s.receive(now, p, meta()).expect("packet accepted")
}

/// A session brought Up through the three-way handshake at t0 + 10 ms.
/// The remote's poll for its own speed-up has not happened; our poll
/// (started on Up) is outstanding.
pub fn up_session() -> Session<Fixed> {
    let (mut s, _) = session();
    rx(&mut s, at(10), &remote(State::Init, LOCAL));
    assert_eq!(s.state(), State::Up);
    s
}

/// Up at t0 + 10 ms, our Poll Sequence answered at 20 ms and a plain packet
/// received at 30 ms: nothing outstanding.
pub fn steady_up() -> Session<Fixed> {
    let mut s = up_session();
    let mut f = remote(State::Up, LOCAL);
    f.final_ = true;
    rx(&mut s, at(20), &f);
    rx(&mut s, at(30), &remote(State::Up, LOCAL));
    assert!(!s.status().poll_in_progress);
    s
}

pub fn sent(actions: &[Action]) -> Vec<ControlPacket> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send(p) => Some(p.clone()),
            _ => None,
        })
        .collect()
}

pub fn only_sent(actions: &[Action]) -> ControlPacket {
    let s = sent(actions);
    assert_eq!(s.len(), 1, "expected exactly one packet in {actions:?}");
    s.into_iter().next().unwrap()
}

pub fn changes(actions: &[Action]) -> Vec<StateChange> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::StateChanged(c) => Some(*c),
            _ => None,
        })
        .collect()
}

/// The last transmit-timer action: `Some(Some(t))` armed at t, `Some(None)`
/// disarmed, `None` untouched.
pub fn tx_timer(actions: &[Action]) -> Option<Option<Instant>> {
    actions.iter().rev().find_map(|a| match a {
        Action::ArmTxTimer(t) => Some(Some(*t)),
        Action::DisarmTxTimer => Some(None),
        _ => None,
    })
}

/// Like [`tx_timer`] for the detection timer.
pub fn detect_timer(actions: &[Action]) -> Option<Option<Instant>> {
    actions.iter().rev().find_map(|a| match a {
        Action::ArmDetectTimer(t) => Some(Some(*t)),
        Action::DisarmDetectTimer => Some(None),
        _ => None,
    })
}

/// Every packet a session emits must be encodable (the receiver's §6.8.6
/// checks pass).
pub fn assert_encodable(actions: &[Action]) {
    for p in sent(actions) {
        let bytes = p.encode().expect("session emitted an unencodable packet");
        assert_eq!(petrel_bfd::decode(&bytes).unwrap(), p);
    }
}
