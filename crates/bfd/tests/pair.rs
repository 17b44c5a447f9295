//! Two sessions talking through a simulated link with a virtual clock:
//! bring-up, failure detection when one direction is cut, profile changes
//! without flaps, administrative down, and a peer restart. Every packet is
//! encoded and decoded on the way, as a driver would.

mod common;

use common::*;
use petrel_bfd::{
    Action, Diagnostic, RxMeta, Session, SessionConfig, SplitMix64, State, StateChange, decode,
};
use std::time::{Duration, Instant};

const LATENCY: Duration = Duration::from_millis(1);

struct Node {
    session: Session<SplitMix64>,
    tx: Option<Instant>,
    detect: Option<Instant>,
    changes: Vec<StateChange>,
}

struct Link {
    nodes: [Node; 2],
    /// Datagrams in flight: (delivery time, destination node, bytes).
    flight: Vec<(Instant, usize, Vec<u8>)>,
    /// `cut[i]`: packets sent by node i are lost.
    cut: [bool; 2],
    now: Instant,
}

impl Link {
    fn new(config: [SessionConfig; 2], seed: u64) -> Link {
        let mut link = Link {
            nodes: [0, 1].map(|i| {
                let (session, _) = Session::new(
                    100 + i as u32,
                    config[i],
                    t0(),
                    SplitMix64::new(seed + i as u64),
                )
                .unwrap();
                Node {
                    session,
                    tx: None,
                    detect: None,
                    changes: Vec::new(),
                }
            }),
            flight: Vec::new(),
            cut: [false; 2],
            now: t0(),
        };
        // Start both from scratch so the first actions go through `apply`.
        for (i, cfg) in config.into_iter().enumerate() {
            link.restart(i, cfg, 100 + i as u32, seed + i as u64);
        }
        link
    }

    fn restart(&mut self, i: usize, config: SessionConfig, discriminator: u32, seed: u64) {
        let (session, actions) =
            Session::new(discriminator, config, self.now, SplitMix64::new(seed)).unwrap();
        self.nodes[i] = Node {
            session,
            tx: None,
            detect: None,
            changes: Vec::new(),
        };
        self.apply(i, actions);
    }

    fn apply(&mut self, i: usize, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::Send(p) => {
                    let bytes = p.encode().expect("encodable");
                    if !self.cut[i] {
                        self.flight.push((self.now + LATENCY, 1 - i, bytes));
                    }
                }
                Action::ArmTxTimer(t) => self.nodes[i].tx = Some(t),
                Action::DisarmTxTimer => self.nodes[i].tx = None,
                Action::ArmDetectTimer(t) => self.nodes[i].detect = Some(t),
                Action::DisarmDetectTimer => self.nodes[i].detect = None,
                Action::StateChanged(c) => self.nodes[i].changes.push(c),
            }
        }
    }

    /// Run every event up to and including `until`.
    fn run_until(&mut self, until: Instant) {
        loop {
            let mut next: Option<(Instant, u8, usize)> = None;
            let mut consider = |t: Option<Instant>, kind: u8, i: usize| {
                if let Some(t) = t
                    && t <= until
                    && next.is_none_or(|(n, _, _)| t < n)
                {
                    next = Some((t, kind, i));
                }
            };
            for i in 0..2 {
                consider(self.nodes[i].tx, 0, i);
                consider(self.nodes[i].detect, 1, i);
            }
            for (k, (t, _, _)) in self.flight.iter().enumerate() {
                consider(Some(*t), 2, k);
            }
            let Some((t, kind, i)) = next else { break };
            self.now = t;
            match kind {
                0 => {
                    let a = self.nodes[i].session.on_tx_timer(t);
                    self.apply(i, a);
                }
                1 => {
                    let a = self.nodes[i].session.on_detect_timer(t);
                    self.apply(i, a);
                }
                _ => {
                    let (_, dst, bytes) = self.flight.remove(i);
                    let packet = decode(&bytes).expect("valid on the wire");
                    let meta = RxMeta {
                        ttl: 255,
                        source: source(),
                    };
                    let a = self.nodes[dst]
                        .session
                        .receive(t, &packet, meta)
                        .expect("accepted");
                    self.apply(dst, a);
                }
            }
        }
        self.now = until;
    }

    fn run_for(&mut self, d: Duration) {
        self.run_until(self.now + d);
    }

    fn states(&self) -> [State; 2] {
        [self.nodes[0].session.state(), self.nodes[1].session.state()]
    }

    fn up_both(&mut self) {
        self.run_for(Duration::from_secs(3));
        assert_eq!(self.states(), [State::Up, State::Up]);
        for n in &mut self.nodes {
            n.changes.clear();
        }
    }

    /// When node `i` first went Down after `since`.
    fn down_at(&self, i: usize) -> Option<Instant> {
        self.nodes[i]
            .changes
            .iter()
            .find(|c| c.to == State::Down)
            .map(|c| c.at)
    }
}

fn profile(ms_interval: u64, mult: u8) -> SessionConfig {
    SessionConfig {
        desired_min_tx: ms(ms_interval),
        required_min_rx: ms(ms_interval),
        detect_mult: mult,
        ..SessionConfig::default()
    }
}

#[test]
fn two_sessions_come_up_quickly_and_stay_up() {
    for seed in [1, 2, 3] {
        let mut link = Link::new([profile(300, 3); 2], seed);
        link.run_for(ms(100));
        assert_eq!(
            link.states(),
            [State::Up, State::Up],
            "the handshake needs no timer"
        );
        link.run_for(Duration::from_secs(600));
        assert_eq!(link.states(), [State::Up, State::Up]);
        for n in &link.nodes {
            assert_eq!(
                n.changes.len(),
                2,
                "Down→Init→Up or Down→Up only: {:?}",
                n.changes
            );
            let st = n.session.status();
            assert_eq!(st.tx_interval, Some(ms(300)));
            assert_eq!(st.detection_time, Some(ms(900)));
            assert!(!st.poll_in_progress);
            // 600 s at 262.5 ms on average, plus the handshake.
            let sent = st.counters.packets_sent;
            assert!((2200..2400).contains(&sent), "sent {sent}");
        }
    }
}

#[test]
fn cutting_one_direction_is_detected_within_the_detection_time() {
    for (interval, bound) in [(300, 900), (100, 300)] {
        for seed in 0..20 {
            let mut link = Link::new([profile(interval, 3); 2], seed);
            link.up_both();
            link.run_for(ms(seed * 37 % 500));
            let cut = link.now;
            link.cut[0] = true;
            link.run_for(Duration::from_secs(5));
            let detected = link.down_at(1).expect("node 1 detects the loss") - cut;
            assert!(detected <= ms(bound), "{interval} ms × 3: {detected:?}");
            assert!(
                detected >= ms(bound) * 3 / 4 - ms(interval),
                "{detected:?} implausibly fast"
            );
            let c = link.nodes[1].changes[0];
            assert_eq!(c.diagnostic, Diagnostic::CONTROL_DETECTION_TIME_EXPIRED);
            assert!(c.is_failure());
            // Node 0 still hears node 1, which now says Down.
            let c0 = link.nodes[0].changes[0];
            assert_eq!(c0.diagnostic, Diagnostic::NEIGHBOR_SIGNALED_SESSION_DOWN);
            assert!(c0.is_failure());
            assert!(link.down_at(0).unwrap() - cut <= ms(bound) + 2 * LATENCY);
        }
    }
}

#[test]
fn sessions_come_back_up_when_the_link_heals() {
    let mut link = Link::new([profile(300, 3); 2], 9);
    link.up_both();
    link.cut = [true, true];
    link.run_for(Duration::from_secs(5));
    assert_eq!(link.states(), [State::Down, State::Down]);
    link.cut = [false, false];
    link.run_for(Duration::from_secs(3));
    assert_eq!(link.states(), [State::Up, State::Up]);
}

#[test]
fn profile_change_renegotiates_without_a_flap() {
    let mut link = Link::new([profile(300, 3); 2], 4);
    link.up_both();
    let a = link.nodes[0]
        .session
        .reconfigure(link.now, profile(100, 3))
        .unwrap();
    link.apply(0, a);
    link.run_for(Duration::from_secs(2));
    let s0 = link.nodes[0].session.status();
    let s1 = link.nodes[1].session.status();
    // Node 0 may send every 300 ms only: node 1 still requires that.
    assert_eq!(s0.tx_interval, Some(ms(300)));
    assert_eq!(s1.detection_time, Some(ms(900)));
    // Node 0 now requires 100 ms: node 1 speeds up, node 0 detects in 300 ms.
    assert_eq!(
        s1.tx_interval,
        Some(ms(300)),
        "node 1's own desired TX is still 300 ms"
    );
    assert_eq!(s0.detection_time, Some(ms(900)));
    let a = link.nodes[1]
        .session
        .reconfigure(link.now, profile(100, 3))
        .unwrap();
    link.apply(1, a);
    link.run_for(Duration::from_secs(2));
    for n in &link.nodes {
        let st = n.session.status();
        assert_eq!(
            (st.tx_interval, st.detection_time),
            (Some(ms(100)), Some(ms(300)))
        );
        assert!(n.changes.is_empty(), "no state change: {:?}", n.changes);
    }
    // And back to a slow profile, still without a flap.
    for i in 0..2 {
        let a = link.nodes[i]
            .session
            .reconfigure(link.now, profile(1000, 5))
            .unwrap();
        link.apply(i, a);
    }
    link.run_for(Duration::from_secs(10));
    for n in &link.nodes {
        let st = n.session.status();
        assert_eq!(
            (st.tx_interval, st.detection_time),
            (Some(ms(1000)), Some(ms(5000)))
        );
        assert!(n.changes.is_empty(), "no state change: {:?}", n.changes);
    }
}

#[test]
fn admin_down_on_one_side_is_not_a_failure_on_either() {
    let mut link = Link::new([profile(300, 3); 2], 5);
    link.up_both();
    let a = link.nodes[0]
        .session
        .admin_down(link.now, Diagnostic::ADMINISTRATIVELY_DOWN);
    link.apply(0, a);
    link.run_for(Duration::from_secs(10));
    assert_eq!(link.states(), [State::AdminDown, State::Down]);
    let c1 = link.nodes[1].changes[0];
    assert_eq!(c1.remote_state, State::AdminDown);
    assert!(!c1.is_failure());
    assert!(!link.nodes[0].changes[0].is_failure());
    assert_eq!(
        link.nodes[1].session.status().remote_diagnostic,
        Diagnostic::ADMINISTRATIVELY_DOWN
    );
    let a = link.nodes[0].session.admin_up(link.now);
    link.apply(0, a);
    link.run_for(Duration::from_secs(3));
    assert_eq!(link.states(), [State::Up, State::Up]);
}

#[test]
fn a_restarted_peer_is_noticed_and_the_session_comes_back() {
    let mut link = Link::new([profile(300, 3); 2], 6);
    link.up_both();
    // Node 1 restarts with a new discriminator and no memory.
    link.restart(1, profile(300, 3), 777, 99);
    link.run_for(Duration::from_secs(3));
    let c0 = &link.nodes[0].changes;
    assert_eq!(c0[0].to, State::Down);
    assert_eq!(c0[0].diagnostic, Diagnostic::NEIGHBOR_SIGNALED_SESSION_DOWN);
    assert_eq!(link.states(), [State::Up, State::Up]);
    assert_eq!(link.nodes[0].session.status().remote_discriminator, 777);
}

#[test]
fn a_passive_side_comes_up_with_an_active_one() {
    let passive = SessionConfig {
        passive: true,
        ..profile(300, 3)
    };
    let mut link = Link::new([profile(300, 3), passive], 8);
    link.run_for(Duration::from_secs(2));
    assert_eq!(link.states(), [State::Up, State::Up]);
}
