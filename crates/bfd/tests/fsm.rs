//! The session state machine: every cell of the RFC 5880 §6.8.6 transition
//! table, detection expiry (§6.8.4), administrative control on both sides
//! (§6.8.16, RFC 5882 §4.2), the session-level drop rules and the passive
//! role (§6.1).

mod common;

use common::*;
use petrel_bfd::transport::DEFAULT_MULTIHOP_MIN_TTL;
use petrel_bfd::{
    Action, AuthSection, AuthType, ConfigError, Diagnostic, Hop, RxDrop, RxMeta, Session,
    SessionConfig, State,
};
use std::time::Duration;

/// A session in `state` whose remote discriminator is known (except Down).
fn in_state(state: State) -> Session<Fixed> {
    match state {
        State::Down => session().0,
        State::Init => {
            let (mut s, _) = session();
            rx(&mut s, at(5), &remote(State::Down, 0));
            assert_eq!(s.state(), State::Init);
            s
        }
        State::Up => up_session(),
        State::AdminDown => {
            let (mut s, _) = session();
            rx(&mut s, at(5), &remote(State::Down, 0));
            s.admin_down(at(6), Diagnostic::ADMINISTRATIVELY_DOWN);
            s
        }
    }
}

const ALL: [State; 4] = [State::AdminDown, State::Down, State::Init, State::Up];

/// RFC 5880 §6.8.6: (local, received) → (new local, diagnostic if changed).
fn expected(local: State, received: State) -> Option<(State, Diagnostic)> {
    use State::*;
    match (local, received) {
        (AdminDown, _) => None,
        (Down, Down) => Some((Init, Diagnostic::NONE)),
        (Down, Init) => Some((Up, Diagnostic::NONE)),
        (Down, AdminDown | Up) => None,
        (Init, AdminDown) => Some((Down, Diagnostic::NEIGHBOR_SIGNALED_SESSION_DOWN)),
        (Init, Init | Up) => Some((Up, Diagnostic::NONE)),
        (Init, Down) => None,
        (Up, AdminDown | Down) => Some((Down, Diagnostic::NEIGHBOR_SIGNALED_SESSION_DOWN)),
        (Up, Init | Up) => None,
    }
}

#[test]
fn every_cell_of_the_reception_state_table() {
    for local in ALL {
        for received in ALL {
            let mut s = in_state(local);
            let actions = rx(&mut s, at(100), &remote(received, LOCAL));
            let got = changes(&actions);
            match expected(local, received) {
                None => {
                    assert_eq!(s.state(), local, "{local} + {received}");
                    assert!(got.is_empty(), "{local} + {received}: {got:?}");
                }
                Some((to, diag)) => {
                    assert_eq!(s.state(), to, "{local} + {received}");
                    assert_eq!(got.len(), 1);
                    assert_eq!(
                        (got[0].from, got[0].to, got[0].diagnostic),
                        (local, to, diag)
                    );
                    assert_eq!(got[0].remote_state, received);
                    assert_eq!(got[0].at, at(100));
                    // The change is announced at once with the new state.
                    let p = sent(&actions).pop().expect("state change announced");
                    assert_eq!((p.state, p.diagnostic), (to, diag));
                    assert_eq!(p.your_discriminator, REMOTE);
                }
            }
            assert_encodable(&actions);
        }
    }
}

#[test]
fn detection_expiry_in_each_state() {
    for local in ALL {
        let mut s = in_state(local);
        // Refresh the detection timer from the remote, where the state table
        // allows it without a transition.
        let deadline = match s.status().detection_time {
            Some(_) => detect_deadline_after_packet(&mut s),
            None => {
                assert_eq!(local, State::Down, "only a fresh session has no remote");
                continue;
            }
        };
        let actions = s.on_detect_timer(deadline);
        let got = changes(&actions);
        match local {
            State::Init | State::Up => {
                assert_eq!(s.state(), State::Down);
                assert_eq!(got.len(), 1);
                assert_eq!(
                    got[0].diagnostic,
                    Diagnostic::CONTROL_DETECTION_TIME_EXPIRED
                );
                assert_eq!(got[0].is_failure(), local == State::Up);
                let p = only_sent(&actions);
                assert_eq!((p.state, p.your_discriminator), (State::Down, 0));
            }
            _ => {
                assert_eq!(s.state(), local);
                assert!(got.is_empty());
            }
        }
        // §6.8.1: bfd.RemoteDiscr is zero after a Detection Time of silence.
        assert_eq!(s.status().remote_discriminator, 0);
        assert_eq!(s.status().detection_time, None);
    }
}

/// Refresh the detection timer with a packet that causes no transition.
fn detect_deadline_after_packet(s: &mut Session<Fixed>) -> std::time::Instant {
    let p = match s.state() {
        State::Up => remote(State::Up, LOCAL),
        State::Init => remote(State::Down, LOCAL),
        State::Down | State::AdminDown => remote(State::AdminDown, LOCAL),
    };
    let before = s.state();
    let actions = rx(s, at(200), &p);
    assert_eq!(s.state(), before);
    detect_timer(&actions)
        .flatten()
        .expect("detection timer armed")
}

#[test]
fn detection_expiry_in_down_forgets_the_remote_without_a_transition() {
    let mut s = up_session();
    let a = rx(&mut s, at(100), &remote(State::Down, LOCAL));
    assert_eq!(s.state(), State::Down);
    let deadline = detect_timer(&a).flatten().unwrap();
    assert_eq!(deadline, at(100 + 900));
    let actions = s.on_detect_timer(deadline);
    assert!(changes(&actions).is_empty());
    assert_eq!(s.status().remote_discriminator, 0);
    assert_eq!(
        s.status().remote_required_min_rx,
        Duration::from_micros(1),
        "§6.8.18 reset"
    );
    // The next packet no longer names the remote.
    let tx_at = s.status().last_state_change + Duration::from_secs(5);
    let p = only_sent(&s.on_tx_timer(tx_at));
    assert_eq!((p.state, p.your_discriminator), (State::Down, 0));
}

#[test]
fn active_session_sends_down_at_once_at_the_slow_rate() {
    let (s, actions) = session();
    let p = only_sent(&actions);
    assert_eq!(p.state, State::Down);
    assert_eq!(p.diagnostic, Diagnostic::NONE);
    assert_eq!(p.my_discriminator, LOCAL);
    assert_eq!(p.your_discriminator, 0);
    assert_eq!(p.detect_mult, 3);
    assert_eq!(p.desired_min_tx_us, 1_000_000, "1 s while not Up (§6.8.3)");
    assert_eq!(p.required_min_rx_us, 300_000);
    assert_eq!(p.required_min_echo_rx_us, 0, "no Echo");
    assert!(!p.poll && !p.final_ && !p.demand && !p.control_plane_independent);
    assert_eq!(tx_timer(&actions), Some(Some(at(1000))));
    assert_eq!(
        detect_timer(&actions),
        None,
        "nothing to detect before the first packet"
    );
    assert_eq!(s.status().counters.packets_sent, 1);
    assert_encodable(&actions);
}

#[test]
fn passive_session_is_silent_until_the_peer_speaks() {
    let (mut s, actions) = session_with(SessionConfig {
        passive: true,
        ..SessionConfig::default()
    });
    assert!(actions.is_empty());
    assert_eq!(s.on_tx_timer(at(5000)), vec![Action::DisarmTxTimer]);
    let actions = rx(&mut s, at(10), &remote(State::Down, 0));
    assert_eq!(s.state(), State::Init);
    let p = only_sent(&actions);
    assert_eq!((p.state, p.your_discriminator), (State::Init, REMOTE));
    assert_eq!(tx_timer(&actions), Some(Some(at(1010))));
}

#[test]
fn passive_session_falls_silent_again_when_the_peer_disappears() {
    let (mut s, _) = session_with(SessionConfig {
        passive: true,
        ..SessionConfig::default()
    });
    let a = rx(&mut s, at(10), &remote(State::Down, 0));
    let deadline = detect_timer(&a).flatten().unwrap();
    assert_eq!(deadline, at(10 + 900), "3 × max(300 ms, 300 ms)");
    let actions = s.on_detect_timer(deadline);
    assert_eq!(s.state(), State::Down);
    assert!(
        sent(&actions).is_empty(),
        "passive with no remote discriminator: silent"
    );
    assert_eq!(tx_timer(&actions), Some(None));
}

#[test]
fn three_way_handshake_from_both_sides_down() {
    let (mut s, _) = session();
    let a = rx(&mut s, at(10), &remote(State::Down, 0));
    assert_eq!(only_sent(&a).state, State::Init);
    let a = rx(&mut s, at(20), &remote(State::Up, LOCAL));
    assert_eq!(s.state(), State::Up);
    let c = changes(&a);
    assert_eq!(
        (c[0].from, c[0].to, c[0].diagnostic),
        (State::Init, State::Up, Diagnostic::NONE)
    );
    let status = s.status();
    assert!(status.has_been_up);
    assert_eq!(status.counters.up_transitions, 1);
    assert_eq!(status.last_state_change, at(20));
}

#[test]
fn a_remote_restart_takes_the_session_down_as_a_failure() {
    let mut s = up_session();
    // The restarted peer no longer knows our discriminator.
    let actions = rx(&mut s, at(500), &remote(State::Down, 0));
    let c = changes(&actions);
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].diagnostic, Diagnostic::NEIGHBOR_SIGNALED_SESSION_DOWN);
    assert!(c[0].is_failure());
    assert_eq!(s.status().counters.failures, 1);
    assert_eq!(
        s.status().last_down_diagnostic,
        Some(Diagnostic::NEIGHBOR_SIGNALED_SESSION_DOWN)
    );
}

#[test]
fn diagnostic_is_cleared_on_the_way_back_up_but_remembered() {
    let mut s = up_session();
    let deadline = s.status().last_received.unwrap() + s.detection_time().unwrap();
    s.on_detect_timer(deadline);
    assert_eq!(
        s.status().local_diagnostic,
        Diagnostic::CONTROL_DETECTION_TIME_EXPIRED
    );
    rx(&mut s, at(9000), &remote(State::Down, 0));
    rx(&mut s, at(9010), &remote(State::Up, LOCAL));
    let status = s.status();
    assert_eq!(status.state, State::Up);
    assert_eq!(status.local_diagnostic, Diagnostic::NONE);
    assert_eq!(
        status.last_down_diagnostic,
        Some(Diagnostic::CONTROL_DETECTION_TIME_EXPIRED)
    );
    assert_eq!(status.counters.up_transitions, 2);
}

#[test]
fn a_poll_is_answered_at_once_with_final_in_every_state() {
    for local in ALL {
        let mut s = in_state(local);
        let mut p = remote(
            if local == State::Down {
                State::AdminDown
            } else {
                State::Up
            },
            LOCAL,
        );
        if local == State::Init {
            p.state = State::Down;
        }
        p.poll = true;
        let actions = rx(&mut s, at(300), &p);
        let finals: Vec<_> = sent(&actions).into_iter().filter(|p| p.final_).collect();
        assert_eq!(finals.len(), 1, "{local}");
        assert!(!finals[0].poll, "never P and F together");
        assert_eq!(finals[0].state, local);
        assert_encodable(&actions);
    }
}

#[test]
fn admin_down_is_announced_and_kept_at_the_slow_rate() {
    let mut s = up_session();
    let actions = s.admin_down(at(1000), Diagnostic::ADMINISTRATIVELY_DOWN);
    let c = changes(&actions);
    assert_eq!((c[0].from, c[0].to), (State::Up, State::AdminDown));
    assert!(!c[0].is_failure(), "RFC 5882 §4.2: administrative");
    let p = only_sent(&actions);
    assert_eq!(
        (p.state, p.diagnostic),
        (State::AdminDown, Diagnostic::ADMINISTRATIVELY_DOWN)
    );
    assert_eq!(p.desired_min_tx_us, 1_000_000);
    assert!(!p.poll, "no Poll Sequence in AdminDown");
    assert_eq!(tx_timer(&actions), Some(Some(at(2000))));
    // It keeps transmitting AdminDown (§6.8.16).
    let next = s.on_tx_timer(at(2000));
    assert_eq!(only_sent(&next).state, State::AdminDown);
    // The remote's packets change nothing.
    let a = rx(&mut s, at(2100), &remote(State::Down, LOCAL));
    assert!(changes(&a).is_empty() && sent(&a).is_empty());
    assert_eq!(s.state(), State::AdminDown);
    // Idempotent.
    assert!(s.admin_down(at(2200), Diagnostic::PATH_DOWN).is_empty());
    assert_eq!(
        s.status().local_diagnostic,
        Diagnostic::ADMINISTRATIVELY_DOWN
    );
}

#[test]
fn admin_down_with_path_down_diagnostic() {
    let mut s = up_session();
    let actions = s.admin_down(at(50), Diagnostic::PATH_DOWN);
    assert_eq!(only_sent(&actions).diagnostic, Diagnostic::PATH_DOWN);
}

#[test]
fn admin_up_returns_to_down_and_renegotiates() {
    let mut s = up_session();
    s.admin_down(at(100), Diagnostic::ADMINISTRATIVELY_DOWN);
    let actions = s.admin_up(at(200));
    let c = changes(&actions);
    assert_eq!((c[0].from, c[0].to), (State::AdminDown, State::Down));
    assert_eq!(only_sent(&actions).state, State::Down);
    // Not a no-op twice.
    assert!(s.admin_up(at(300)).is_empty());
    rx(&mut s, at(400), &remote(State::Down, LOCAL));
    rx(&mut s, at(410), &remote(State::Up, LOCAL));
    assert_eq!(s.state(), State::Up);
}

#[test]
fn remote_admin_down_is_not_a_failure() {
    let mut s = up_session();
    let mut p = remote(State::AdminDown, LOCAL);
    p.diagnostic = Diagnostic::ADMINISTRATIVELY_DOWN;
    let actions = rx(&mut s, at(400), &p);
    let c = changes(&actions);
    assert_eq!(c[0].to, State::Down);
    assert_eq!(c[0].diagnostic, Diagnostic::NEIGHBOR_SIGNALED_SESSION_DOWN);
    assert!(!c[0].is_failure());
    let status = s.status();
    assert_eq!(status.counters.failures, 0);
    assert_eq!(status.remote_diagnostic, Diagnostic::ADMINISTRATIVELY_DOWN);
    // While the remote stays AdminDown we stay Down.
    rx(&mut s, at(1400), &p);
    assert_eq!(s.state(), State::Down);
}

#[test]
fn detection_expiry_from_up_is_a_failure_with_the_remote_state_it_last_saw() {
    let mut s = up_session();
    let a = rx(&mut s, at(100), &remote(State::Up, LOCAL));
    let deadline = detect_timer(&a).flatten().unwrap();
    let actions = s.on_detect_timer(deadline);
    let c = changes(&actions)[0];
    assert_eq!(c.remote_state, State::Up);
    assert!(c.is_failure());
    assert_eq!(s.status().remote_state, State::Down);
}

#[test]
fn early_or_stale_timer_expiries_are_resynchronised() {
    let mut s = up_session();
    let a = rx(&mut s, at(100), &remote(State::Up, LOCAL));
    let deadline = detect_timer(&a).flatten().unwrap();
    assert_eq!(
        s.on_detect_timer(at(101)),
        vec![Action::ArmDetectTimer(deadline)]
    );
    assert_eq!(s.state(), State::Up);
    let tx_deadline = s.on_tx_timer(at(100));
    assert!(matches!(tx_deadline.as_slice(), [Action::ArmTxTimer(_)]));
    assert!(sent(&tx_deadline).is_empty());
    s.on_detect_timer(deadline);
    assert_eq!(
        s.on_detect_timer(deadline + Duration::from_secs(1)),
        vec![Action::DisarmDetectTimer]
    );
}

// --- Session-level drop rules ------------------------------------------------

#[test]
fn single_hop_drops_ttl_below_255() {
    let mut s = up_session();
    for ttl in [0u8, 1, 64, 254] {
        let r = s.receive(
            at(100),
            &remote(State::Down, LOCAL),
            RxMeta {
                ttl,
                source: source(),
            },
        );
        assert_eq!(
            r,
            Err(RxDrop::Ttl {
                ttl,
                hop: Hop::SingleHop
            })
        );
    }
    assert_eq!(s.state(), State::Up, "a dropped packet changes nothing");
    assert_eq!(s.status().counters.dropped_ttl, 4);
}

#[test]
fn multihop_accepts_ttl_down_to_the_configured_minimum() {
    let hop = Hop::MultiHop {
        min_ttl: DEFAULT_MULTIHOP_MIN_TTL,
    };
    let (mut s, _) = session_with(SessionConfig {
        hop,
        ..SessionConfig::default()
    });
    let meta = |ttl| RxMeta {
        ttl,
        source: source(),
    };
    assert_eq!(
        s.receive(at(1), &remote(State::Down, 0), meta(253)),
        Err(RxDrop::Ttl { ttl: 253, hop })
    );
    assert_eq!(s.state(), State::Down);
    s.receive(at(2), &remote(State::Down, 0), meta(254))
        .unwrap();
    assert_eq!(s.state(), State::Init);
    s.receive(at(3), &remote(State::Up, LOCAL), meta(255))
        .unwrap();
    assert_eq!(s.state(), State::Up);
    // The minimum is configurable at run time.
    let cfg = SessionConfig {
        hop: Hop::MultiHop { min_ttl: 250 },
        ..SessionConfig::default()
    };
    s.reconfigure(at(4), cfg).unwrap();
    s.receive(at(5), &remote(State::Up, LOCAL), meta(250))
        .unwrap();
    assert_eq!(s.status().counters.dropped_ttl, 1);
}

#[test]
fn packets_with_the_a_bit_are_dropped_and_counted() {
    let mut s = up_session();
    let mut p = remote(State::Down, LOCAL);
    p.auth = Some(AuthSection {
        auth_type: AuthType::KEYED_SHA1,
        data: vec![1, 0, 0, 0],
    });
    assert_eq!(
        s.receive(at(100), &p, meta()),
        Err(RxDrop::AuthNotConfigured)
    );
    assert_eq!(s.state(), State::Up);
    let status = s.status();
    assert_eq!(status.counters.dropped_auth, 1);
    assert_eq!(
        status.counters.packets_received, 1,
        "only the handshake packet"
    );
}

#[test]
fn your_discriminator_of_another_session_is_dropped() {
    let mut s = up_session();
    let r = s.receive(at(100), &remote(State::Down, LOCAL + 1), meta());
    assert_eq!(
        r,
        Err(RxDrop::DiscriminatorMismatch {
            received: LOCAL + 1,
            local: LOCAL
        })
    );
    assert_eq!(s.state(), State::Up);
    assert_eq!(s.status().counters.dropped_discriminator, 1);
}

#[test]
fn a_dropped_packet_does_not_refresh_the_detection_timer() {
    let mut s = up_session();
    let a = rx(&mut s, at(100), &remote(State::Up, LOCAL));
    let deadline = detect_timer(&a).flatten().unwrap();
    let bad = s.receive(
        at(500),
        &remote(State::Up, LOCAL),
        RxMeta {
            ttl: 1,
            source: source(),
        },
    );
    assert!(bad.is_err());
    let actions = s.on_detect_timer(deadline);
    assert_eq!(s.state(), State::Down, "{actions:?}");
}

#[test]
fn invalid_configurations_are_refused() {
    let new = |cfg| Session::new(LOCAL, cfg, t0(), NO_JITTER).map(|_| ());
    let d = SessionConfig::default();
    assert_eq!(
        new(SessionConfig {
            detect_mult: 0,
            ..d
        }),
        Err(ConfigError::ZeroDetectMult)
    );
    assert!(matches!(
        new(SessionConfig {
            desired_min_tx: Duration::from_nanos(999),
            ..d
        }),
        Err(ConfigError::ZeroInterval(_))
    ));
    assert!(matches!(
        new(SessionConfig {
            required_min_rx: Duration::from_secs(4295),
            ..d
        }),
        Err(ConfigError::IntervalTooLong { .. })
    ));
    assert_eq!(
        new(SessionConfig {
            hop: Hop::MultiHop { min_ttl: 0 },
            ..d
        }),
        Err(ConfigError::ZeroMinTtl)
    );
    assert_eq!(
        Session::new(0, d, t0(), NO_JITTER).map(|_| ()),
        Err(ConfigError::ZeroDiscriminator)
    );
    assert!(
        new(SessionConfig {
            required_min_rx: Duration::from_secs(4294),
            ..d
        })
        .is_ok()
    );
}

#[test]
fn sent_and_received_packets_are_counted() {
    let (mut s, _) = session();
    rx(&mut s, at(10), &remote(State::Down, 0));
    s.on_tx_timer(at(1010));
    let c = s.status().counters;
    assert_eq!((c.packets_sent, c.packets_received), (3, 1));
    assert_eq!(c.state_changes, 1);
}
