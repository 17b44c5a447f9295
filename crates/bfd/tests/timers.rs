//! Timer negotiation (RFC 5880 §6.8.2, §6.8.3, §6.8.7), Poll Sequences in
//! both directions (§6.5), the Detection Time (§6.8.4), jitter (§6.8.7) and
//! the remote's Demand mode (§6.6).

mod common;

use common::*;
use petrel_bfd::timers::{detection_time, jittered};
use petrel_bfd::{Action, ConfigError, Hop, Session, SessionConfig, SplitMix64, State};
use std::time::{Duration, Instant};

fn with_final(mut p: petrel_bfd::ControlPacket) -> petrel_bfd::ControlPacket {
    p.final_ = true;
    p
}

fn with_poll(mut p: petrel_bfd::ControlPacket) -> petrel_bfd::ControlPacket {
    p.poll = true;
    p
}

fn profile(tx_ms: u64, rx_ms: u64, mult: u8) -> SessionConfig {
    SessionConfig {
        desired_min_tx: ms(tx_ms),
        required_min_rx: ms(rx_ms),
        detect_mult: mult,
        ..SessionConfig::default()
    }
}

fn armed(actions: &[Action]) -> Instant {
    tx_timer(actions).flatten().expect("transmit timer armed")
}

// --- Jitter -----------------------------------------------------------------

#[test]
fn jitter_spans_75_to_100_percent() {
    assert_eq!(jittered(1_000_000, 3, 0), ms(750));
    assert_eq!(jittered(1_000_000, 3, u32::MAX), ms(1000));
    assert_eq!(
        jittered(1_000_000, 3, u32::MAX / 2),
        Duration::from_micros(874_999)
    );
}

#[test]
fn jitter_spans_75_to_90_percent_with_detect_mult_one() {
    assert_eq!(jittered(1_000_000, 1, 0), ms(750));
    assert_eq!(jittered(1_000_000, 1, u32::MAX), ms(900));
}

#[test]
fn jitter_of_tiny_and_huge_intervals_stays_in_bounds() {
    assert_eq!(jittered(1, 3, u32::MAX), Duration::from_micros(1));
    assert_eq!(jittered(1, 3, 0), Duration::ZERO);
    assert_eq!(
        jittered(u32::MAX, 3, u32::MAX),
        Duration::from_micros(u64::from(u32::MAX))
    );
}

fn periodic_gaps(detect_mult: u8, seed: u64, count: usize) -> Vec<Duration> {
    let cfg = SessionConfig {
        detect_mult,
        ..SessionConfig::default()
    };
    let (mut s, _) = Session::new(LOCAL, cfg, t0(), SplitMix64::new(seed)).unwrap();
    let a = s
        .receive(at(10), &remote(State::Init, LOCAL), meta())
        .unwrap();
    assert_eq!(s.state(), State::Up);
    let mut next = armed(&a);
    let mut last = at(10);
    let mut gaps = Vec::new();
    let mut now = at(10);
    while gaps.len() < count {
        // Keep the session alive.
        s.receive(now, &remote(State::Up, LOCAL), meta()).unwrap();
        let a = s.on_tx_timer(next);
        assert_eq!(sent(&a).len(), 1);
        gaps.push(next - last);
        last = next;
        now = next;
        next = armed(&a);
    }
    gaps
}

#[test]
fn periodic_packets_are_jittered_between_75_and_100_percent() {
    let gaps = periodic_gaps(3, 42, 2000);
    let (lo, hi) = (ms(225), ms(300));
    assert!(gaps.iter().all(|g| *g >= lo && *g <= hi), "{gaps:?}");
    assert!(*gaps.iter().min().unwrap() < ms(230));
    assert!(*gaps.iter().max().unwrap() > ms(295));
    let mean = gaps.iter().sum::<Duration>() / gaps.len() as u32;
    assert!(
        mean > ms(258) && mean < ms(267),
        "mean {mean:?}, expected about 262.5 ms"
    );
}

#[test]
fn periodic_packets_with_detect_mult_one_never_exceed_90_percent() {
    let gaps = periodic_gaps(1, 7, 2000);
    assert!(
        gaps.iter().all(|g| *g >= ms(225) && *g <= ms(270)),
        "{gaps:?}"
    );
    assert!(*gaps.iter().max().unwrap() > ms(265));
}

// --- Negotiated transmit interval ----------------------------------------------

#[test]
fn transmits_once_a_second_until_up_then_at_the_negotiated_rate() {
    let (mut s, a) = session();
    assert_eq!(armed(&a), at(1000));
    let a = s.on_tx_timer(at(1000));
    assert_eq!(only_sent(&a).desired_min_tx_us, 1_000_000);
    assert_eq!(armed(&a), at(2000));
    let a = rx(&mut s, at(1500), &remote(State::Init, LOCAL));
    let p = only_sent(&a);
    assert_eq!(
        (p.state, p.desired_min_tx_us, p.poll),
        (State::Up, 300_000, true)
    );
    assert_eq!(armed(&a), at(1800));
    assert_eq!(s.status().tx_interval, Some(ms(300)));
}

#[test]
fn a_desired_interval_above_one_second_is_kept_while_not_up() {
    let (s, a) = session_with(profile(2000, 300, 3));
    assert_eq!(only_sent(&a).desired_min_tx_us, 2_000_000);
    assert_eq!(armed(&a), at(2000));
    assert_eq!(s.status().advertised_min_tx, ms(2000));
}

#[test]
fn going_down_restores_the_slow_rate_at_once() {
    let mut s = steady_up();
    let a = rx(&mut s, at(100), &remote(State::Down, LOCAL));
    let p = only_sent(&a);
    assert_eq!((p.state, p.desired_min_tx_us), (State::Down, 1_000_000));
    assert_eq!(armed(&a), at(1100));
}

#[test]
fn transmit_interval_is_the_larger_of_ours_and_the_remote_required_rx() {
    let mut s = steady_up();
    let mut p = remote(State::Up, LOCAL);
    p.required_min_rx_us = 500_000;
    rx(&mut s, at(40), &p);
    assert_eq!(s.status().tx_interval, Some(ms(500)));
    // The last packet went out on Up at 10 ms.
    let a = s.on_tx_timer(at(510));
    assert_eq!(armed(&a), at(1010));
}

#[test]
fn remote_raising_its_required_rx_postpones_our_next_packet() {
    let mut s = steady_up();
    // Last packet sent at 10 ms (on Up), next due at 310 ms.
    let mut p = remote(State::Up, LOCAL);
    p.required_min_rx_us = 2_000_000;
    let a = rx(&mut s, at(100), &p);
    assert_eq!(armed(&a), at(2010));
    assert!(sent(&a).is_empty());
}

#[test]
fn remote_lowering_its_required_rx_is_honoured_at_once() {
    let mut s = steady_up();
    let mut slow = remote(State::Up, LOCAL);
    slow.required_min_rx_us = 2_000_000;
    rx(&mut s, at(100), &slow);
    // Packet at 2010 ms, next due at 4010 ms.
    let a = s.on_tx_timer(at(2010));
    assert_eq!(armed(&a), at(4010));
    // 100 ms after the last packet the remote lowers to 300 ms: next at 2310.
    let a = rx(&mut s, at(2110), &remote(State::Up, LOCAL));
    assert_eq!(armed(&a), at(2310));
    // If the new interval has already passed since the last packet: now.
    rx(&mut s, at(2120), &slow);
    let a = s.on_tx_timer(at(4010));
    assert_eq!(armed(&a), at(6010));
    let a = rx(&mut s, at(4500), &remote(State::Up, LOCAL));
    assert_eq!(armed(&a), at(4500));
}

#[test]
fn remote_required_rx_of_zero_stops_periodic_packets_but_not_finals() {
    let mut s = steady_up();
    let mut p = remote(State::Up, LOCAL);
    p.required_min_rx_us = 0;
    let a = rx(&mut s, at(100), &p);
    assert_eq!(tx_timer(&a), Some(None));
    assert_eq!(s.status().tx_interval, None);
    let a = rx(&mut s, at(200), &with_poll(p));
    let f = only_sent(&a);
    assert!(f.final_);
}

// --- Detection Time -------------------------------------------------------------

#[test]
fn detection_time_is_remote_mult_times_the_slower_of_our_rx_and_their_tx() {
    assert_eq!(detection_time(3, 300_000, 300_000), ms(900));
    assert_eq!(detection_time(5, 300_000, 200_000), ms(1500));
    assert_eq!(detection_time(5, 300_000, 1_000_000), ms(5000));
    assert_eq!(
        detection_time(255, u32::MAX, 1),
        Duration::from_micros(255 * u64::from(u32::MAX))
    );
    let mut s = steady_up();
    let mut p = remote(State::Up, LOCAL);
    p.detect_mult = 5;
    p.desired_min_tx_us = 200_000;
    let a = rx(&mut s, at(100), &p);
    assert_eq!(detect_timer(&a), Some(Some(at(1600))));
    assert_eq!(s.status().detection_time, Some(ms(1500)));
    assert_eq!(s.status().rx_interval, Some(ms(300)));
}

#[test]
fn remote_poll_raising_its_tx_extends_detection_at_once_and_is_answered() {
    let mut s = steady_up();
    let mut p = with_poll(remote(State::Up, LOCAL));
    p.desired_min_tx_us = 1_000_000;
    let a = rx(&mut s, at(100), &p);
    assert_eq!(detect_timer(&a), Some(Some(at(3100))));
    let f = only_sent(&a);
    assert!(f.final_ && !f.poll);
    assert!(changes(&a).is_empty(), "no flap");
}

#[test]
fn remote_lowering_its_tx_shortens_detection() {
    let mut s = steady_up();
    let mut p = with_poll(remote(State::Up, LOCAL));
    p.desired_min_tx_us = 1_000_000;
    rx(&mut s, at(100), &p);
    let a = rx(&mut s, at(200), &with_poll(remote(State::Up, LOCAL)));
    assert_eq!(detect_timer(&a), Some(Some(at(1100))));
}

// --- Our Poll Sequences ------------------------------------------------------------

#[test]
fn our_poll_on_up_repeats_until_the_final() {
    let mut s = up_session();
    assert!(s.status().poll_in_progress);
    let a = s.on_tx_timer(at(310));
    assert!(only_sent(&a).poll, "P on the scheduled packets");
    let a = s.on_tx_timer(at(610));
    assert!(only_sent(&a).poll);
    let a = rx(&mut s, at(650), &with_final(remote(State::Up, LOCAL)));
    assert!(sent(&a).is_empty(), "a Final needs no answer");
    assert!(!s.status().poll_in_progress);
    let a = s.on_tx_timer(at(910));
    assert!(!only_sent(&a).poll);
}

#[test]
fn a_final_without_our_poll_is_harmless() {
    let mut s = steady_up();
    let a = rx(&mut s, at(100), &with_final(remote(State::Up, LOCAL)));
    assert!(changes(&a).is_empty());
    assert!(!s.status().poll_in_progress);
}

#[test]
fn raising_our_tx_waits_for_the_final_before_slowing_down() {
    let mut s = steady_up();
    let a = s.reconfigure(at(100), profile(1000, 300, 3)).unwrap();
    let p = only_sent(&a);
    assert_eq!((p.poll, p.desired_min_tx_us), (true, 1_000_000));
    assert_eq!(armed(&a), at(400), "still 300 ms");
    assert_eq!(s.status().tx_interval, Some(ms(300)));
    let a = s.on_tx_timer(at(400));
    assert!(only_sent(&a).poll);
    assert_eq!(armed(&a), at(700));
    let a = rx(&mut s, at(450), &with_final(remote(State::Up, LOCAL)));
    assert_eq!(armed(&a), at(1400), "1 s from the last packet");
    assert_eq!(s.status().tx_interval, Some(ms(1000)));
    assert!(changes(&a).is_empty());
}

#[test]
fn lowering_our_tx_applies_at_once() {
    let mut s = steady_up();
    let a = s.reconfigure(at(100), profile(100, 300, 3)).unwrap();
    let p = only_sent(&a);
    assert_eq!((p.poll, p.desired_min_tx_us), (true, 100_000));
    // The remote still requires 300 ms between its receptions.
    assert_eq!(armed(&a), at(400));
    let mut fast = with_final(remote(State::Up, LOCAL));
    fast.required_min_rx_us = 50_000;
    let a = rx(&mut s, at(120), &fast);
    assert_eq!(armed(&a), at(200));
}

#[test]
fn lowering_our_rx_keeps_the_old_detection_time_until_the_final() {
    let mut s = steady_up();
    let mut slow_remote = remote(State::Up, LOCAL);
    slow_remote.desired_min_tx_us = 50_000;
    rx(&mut s, at(40), &slow_remote);
    assert_eq!(s.detection_time(), Some(ms(900)));
    let a = s.reconfigure(at(100), profile(300, 100, 3)).unwrap();
    assert_eq!(only_sent(&a).required_min_rx_us, 100_000);
    assert_eq!(
        s.detection_time(),
        Some(ms(900)),
        "old Required Min RX until the Final"
    );
    let a = rx(&mut s, at(150), &with_final(slow_remote));
    assert_eq!(s.detection_time(), Some(ms(300)));
    assert_eq!(detect_timer(&a), Some(Some(at(450))));
}

#[test]
fn raising_our_rx_lengthens_detection_at_once() {
    let mut s = steady_up();
    let a = s.reconfigure(at(100), profile(300, 1000, 3)).unwrap();
    assert_eq!(s.detection_time(), Some(ms(3000)));
    assert_eq!(
        detect_timer(&a),
        Some(Some(at(3030))),
        "from the last packet at 30 ms"
    );
}

#[test]
fn a_change_that_must_wait_is_queued_behind_an_outstanding_poll() {
    let mut s = steady_up();
    s.reconfigure(at(100), profile(100, 300, 3)).unwrap();
    // Slowing down while that poll is outstanding must not ride on it.
    let a = s.reconfigure(at(110), profile(2000, 300, 3)).unwrap();
    assert!(sent(&a).is_empty());
    assert_eq!(s.status().advertised_min_tx, ms(100));
    rx(&mut s, at(120), &with_final(remote(State::Up, LOCAL)));
    assert_eq!(
        s.status().advertised_min_tx,
        ms(100),
        "waits for a packet without Final"
    );
    let a = rx(&mut s, at(130), &remote(State::Up, LOCAL));
    let p = only_sent(&a);
    assert_eq!((p.poll, p.desired_min_tx_us), (true, 2_000_000));
    assert_eq!(
        s.status().tx_interval,
        Some(ms(300)),
        "old rate until this poll's Final"
    );
    rx(&mut s, at(140), &with_final(remote(State::Up, LOCAL)));
    assert_eq!(s.status().tx_interval, Some(ms(2000)));
}

#[test]
fn a_change_that_must_wait_is_queued_until_a_packet_without_final_follows_a_poll() {
    let mut s = steady_up();
    s.reconfigure(at(100), profile(100, 300, 3)).unwrap();
    rx(&mut s, at(120), &with_final(remote(State::Up, LOCAL)));
    // A late duplicate Final could still arrive: a slower TX must not start yet.
    let a = s.reconfigure(at(130), profile(2000, 300, 3)).unwrap();
    assert!(sent(&a).is_empty(), "{a:?}");
    let a = rx(&mut s, at(140), &with_final(remote(State::Up, LOCAL)));
    assert!(sent(&a).is_empty());
    assert_eq!(s.status().tx_interval, Some(ms(300)));
    let a = rx(&mut s, at(150), &remote(State::Up, LOCAL));
    assert_eq!(only_sent(&a).desired_min_tx_us, 2_000_000);
    assert!(s.status().poll_in_progress);
}

#[test]
fn a_change_that_applies_at_once_restarts_the_poll() {
    let mut s = steady_up();
    s.reconfigure(at(100), profile(1000, 300, 3)).unwrap();
    let a = s.reconfigure(at(110), profile(1000, 500, 3)).unwrap();
    let p = only_sent(&a);
    assert_eq!(
        (p.poll, p.desired_min_tx_us, p.required_min_rx_us),
        (true, 1_000_000, 500_000)
    );
    rx(&mut s, at(120), &with_final(remote(State::Up, LOCAL)));
    assert_eq!(s.status().tx_interval, Some(ms(1000)));
    assert_eq!(s.status().detection_time, Some(ms(1500)));
}

#[test]
fn detect_mult_change_is_sent_at_once_without_a_poll() {
    let mut s = steady_up();
    let a = s.reconfigure(at(100), profile(300, 300, 5)).unwrap();
    let p = only_sent(&a);
    assert_eq!((p.detect_mult, p.poll), (5, false));
    assert!(!s.status().poll_in_progress);
    // Detect Mult 1 caps the jitter at 90 %.
    let a = s.reconfigure(at(200), profile(300, 300, 1)).unwrap();
    assert_eq!(armed(&a), at(470));
}

#[test]
fn unchanged_reconfiguration_sends_nothing() {
    let mut s = steady_up();
    let a = s.reconfigure(at(100), SessionConfig::default()).unwrap();
    assert!(a.is_empty(), "{a:?}");
}

#[test]
fn reconfiguration_errors_change_nothing() {
    let mut s = steady_up();
    let multihop = SessionConfig {
        hop: Hop::MultiHop { min_ttl: 254 },
        ..SessionConfig::default()
    };
    assert_eq!(
        s.reconfigure(at(100), multihop),
        Err(ConfigError::HopChange)
    );
    let bad = SessionConfig {
        detect_mult: 0,
        ..SessionConfig::default()
    };
    assert_eq!(
        s.reconfigure(at(100), bad),
        Err(ConfigError::ZeroDetectMult)
    );
    assert_eq!(*s.config(), SessionConfig::default());
}

#[test]
fn timer_changes_while_not_up_apply_at_once() {
    let (mut s, _) = session();
    rx(&mut s, at(10), &remote(State::Down, 0));
    assert_eq!(s.state(), State::Init);
    let a = s.reconfigure(at(20), profile(3000, 1000, 3)).unwrap();
    let p = only_sent(&a);
    assert_eq!(
        (p.desired_min_tx_us, p.required_min_rx_us),
        (3_000_000, 1_000_000)
    );
    assert_eq!(s.status().tx_interval, Some(ms(3000)));
    assert_eq!(s.detection_time(), Some(ms(3000)));
}

#[test]
fn no_poll_before_the_remote_discriminator_is_known() {
    let (mut s, _) = session();
    let a = s.reconfigure(at(20), profile(2000, 300, 3)).unwrap();
    let p = only_sent(&a);
    assert_eq!((p.poll, p.desired_min_tx_us), (false, 2_000_000));
}

// --- Remote Demand mode -----------------------------------------------------------

#[test]
fn remote_demand_mode_stops_our_periodic_packets_while_both_are_up() {
    let mut s = steady_up();
    let mut d = remote(State::Up, LOCAL);
    d.demand = true;
    let a = rx(&mut s, at(100), &d);
    assert_eq!(tx_timer(&a), Some(None));
    assert!(s.status().remote_demand);
    // Its polls are answered.
    let a = rx(&mut s, at(200), &with_poll(d.clone()));
    assert!(only_sent(&a).final_);
    // A change of ours travels in a Poll Sequence.
    let a = s.reconfigure(at(300), profile(300, 300, 4)).unwrap();
    let p = only_sent(&a);
    assert_eq!((p.poll, p.detect_mult), (true, 4));
    rx(&mut s, at(310), &with_final(d.clone()));
    assert!(!s.status().poll_in_progress);
    // Leaving Up resumes periodic transmission.
    let mut down = d;
    down.state = State::Down;
    let a = rx(&mut s, at(400), &down);
    assert_eq!(s.state(), State::Down);
    assert_eq!(armed(&a), at(1400));
}

#[test]
fn we_never_set_the_demand_bit() {
    let mut s = steady_up();
    let a = s.on_tx_timer(at(310));
    assert!(!only_sent(&a).demand);
}
