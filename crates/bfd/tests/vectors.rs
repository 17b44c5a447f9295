//! Real packets captured from FRR 8.4.4 `bfdd` and BIRD 2.0.12 `protocol
//! bfd` (Debian 12) talking to each other over a veth pair between two
//! private network namespaces (`testdata/capture.sh` regenerates them).
//! They decode to what the daemons meant, re-encode byte for byte, and a
//! session put in BIRD's place (BIRD's discriminator, the same 300 ms × 3
//! profile) fed FRR's packets answers with exactly the bytes BIRD sent.

mod common;

use common::*;
use petrel_bfd::{
    Action, ControlPacket, Diagnostic, RxMeta, Session, SessionConfig, State, decode,
};
use std::time::Duration;

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

const FRR_DISCR: u32 = 0x157d_c7d2;
const BIRD_DISCR: u32 = 0xd35e_e619;

// IPv4 session, in capture order. Every packet left with TTL 255; BIRD used
// source port 59125 (Linux's ephemeral range, not RFC 5881's), FRR 49152.
const FRR_DOWN: &str = "20400318157dc7d200000000000f4240000f42400000c350";
const BIRD_DOWN: &str = "20400318d35ee61900000000000f4240000493e000000000";
const FRR_INIT: &str = "20800318157dc7d2d35ee619000f4240000f42400000c350";
const BIRD_UP_POLL: &str = "20e00318d35ee619157dc7d2000493e0000493e000000000";
const FRR_UP_POLL: &str = "20e00318157dc7d2d35ee619000493e0000493e00000c350";
const BIRD_UP_FINAL: &str = "20d00318d35ee619157dc7d2000493e0000493e000000000";
const FRR_UP_FINAL: &str = "20d00318157dc7d2d35ee619000493e0000493e00000c350";
const BIRD_UP: &str = "20c00318d35ee619157dc7d2000493e0000493e000000000";
const FRR_UP: &str = "20c00318157dc7d2d35ee619000493e0000493e00000c350";
// `shutdown` on the FRR peer: one AdminDown packet (FRR leaves Diag 0).
const FRR_ADMIN_DOWN: &str = "20000318157dc7d2d35ee619000493e0000493e00000c350";
// BIRD goes Down (diag 3) and polls with its slow rate; FRR answers in AdminDown.
const BIRD_DOWN_POLL: &str = "23600318d35ee619157dc7d2000f4240000493e000000000";
const FRR_ADMIN_DOWN_FINAL: &str = "20100318157dc7d2d35ee619000493e0000493e00000c350";
// FRR falls silent; a Detection Time later BIRD forgets its discriminator.
const BIRD_DOWN_FORGOTTEN: &str = "23400318d35ee61900000000000f4240000493e000000000";
// `no shutdown`: FRR comes back Down, BIRD goes Init, FRR Up with Poll.
const FRR_DOWN_AGAIN: &str = "20400318157dc7d2d35ee619000493e0000493e00000c350";
const BIRD_INIT: &str = "20800318d35ee619157dc7d2000f4240000493e000000000";

// IPv6 session of the same run (the payload format is the same).
const FRR6_INIT: &str = "2080031869608861ef8a46d2000f4240000f42400000c350";
const BIRD6_UP_POLL: &str = "20e00318ef8a46d269608861000493e0000493e000000000";
// A first run: BIRD disabled, FRR's detection time expired (Diag 1).
const FRR_DETECTION_EXPIRED: &str = "2140031875dede8f00000000000493e0000493e00000c350";

#[test]
fn captured_packets_decode_to_what_the_daemons_sent() {
    let p = decode(&hex(FRR_DOWN)).unwrap();
    assert_eq!(
        (p.state, p.your_discriminator, p.my_discriminator),
        (State::Down, 0, FRR_DISCR)
    );
    assert_eq!(
        (p.desired_min_tx_us, p.required_min_rx_us),
        (1_000_000, 1_000_000)
    );
    assert_eq!(
        p.required_min_echo_rx_us, 50_000,
        "FRR offers to loop Echo packets back"
    );
    let p = decode(&hex(FRR_UP_POLL)).unwrap();
    assert!(p.poll && !p.final_ && p.state == State::Up);
    let p = decode(&hex(BIRD_UP_FINAL)).unwrap();
    assert!(p.final_ && !p.poll);
    assert_eq!(
        (p.my_discriminator, p.your_discriminator),
        (BIRD_DISCR, FRR_DISCR)
    );
    let p = decode(&hex(FRR_ADMIN_DOWN)).unwrap();
    assert_eq!(
        (p.state, p.diagnostic),
        (State::AdminDown, Diagnostic::NONE)
    );
    let p = decode(&hex(BIRD_DOWN_POLL)).unwrap();
    assert_eq!(
        (p.state, p.diagnostic, p.poll),
        (
            State::Down,
            Diagnostic::NEIGHBOR_SIGNALED_SESSION_DOWN,
            true
        )
    );
    let p = decode(&hex(FRR_DETECTION_EXPIRED)).unwrap();
    assert_eq!(p.diagnostic, Diagnostic::CONTROL_DETECTION_TIME_EXPIRED);
    let p = decode(&hex(FRR6_INIT)).unwrap();
    assert_eq!((p.state, p.your_discriminator), (State::Init, 0xef8a_46d2));
}

#[test]
fn captured_packets_re_encode_byte_for_byte() {
    for v in [
        FRR_DOWN,
        BIRD_DOWN,
        FRR_INIT,
        BIRD_UP_POLL,
        FRR_UP_POLL,
        BIRD_UP_FINAL,
        FRR_UP_FINAL,
        BIRD_UP,
        FRR_UP,
        FRR_ADMIN_DOWN,
        BIRD_DOWN_POLL,
        FRR_ADMIN_DOWN_FINAL,
        BIRD_DOWN_FORGOTTEN,
        FRR_DOWN_AGAIN,
        BIRD_INIT,
        FRR6_INIT,
        BIRD6_UP_POLL,
        FRR_DETECTION_EXPIRED,
    ] {
        let bytes = hex(v);
        assert_eq!(decode(&bytes).unwrap().encode().unwrap(), bytes, "{v}");
    }
}

fn frr(s: &mut Session<Fixed>, now_ms: u64, v: &str) -> Vec<Action> {
    let meta = RxMeta {
        ttl: 255,
        source: "10.99.0.1:49152".parse().unwrap(),
    };
    s.receive(at(now_ms), &decode(&hex(v)).unwrap(), meta)
        .expect("accepted")
}

fn bytes_sent(actions: &[Action]) -> Vec<Vec<u8>> {
    sent(actions)
        .iter()
        .map(|p: &ControlPacket| p.encode().unwrap())
        .collect()
}

#[test]
fn a_session_in_birds_place_answers_frr_with_birds_bytes() {
    let (mut s, a) = Session::new(BIRD_DISCR, SessionConfig::default(), t0(), NO_JITTER).unwrap();
    assert_eq!(bytes_sent(&a), [hex(BIRD_DOWN)]);

    // FRR Init: Down → Up, announced at once with a Poll for the faster rate.
    let a = frr(&mut s, 100, FRR_INIT);
    assert_eq!(s.state(), State::Up);
    assert_eq!(bytes_sent(&a), [hex(BIRD_UP_POLL)]);
    // FRR's own Poll gets BIRD's Final; FRR's Final ends our Poll.
    assert_eq!(
        bytes_sent(&frr(&mut s, 101, FRR_UP_POLL)),
        [hex(BIRD_UP_FINAL)]
    );
    assert!(bytes_sent(&frr(&mut s, 102, FRR_UP_FINAL)).is_empty());
    assert!(!s.status().poll_in_progress);
    let a = frr(&mut s, 300, FRR_UP);
    assert!(a.iter().all(|a| !matches!(a, Action::Send(_))));
    assert_eq!(bytes_sent(&s.on_tx_timer(at(400))), [hex(BIRD_UP)]);
    assert_eq!(s.status().detection_time, Some(Duration::from_millis(900)));

    // FRR shutdown: we go Down with diag 3 (no failure) and poll slowly.
    let a = frr(&mut s, 500, FRR_ADMIN_DOWN);
    let c = changes(&a);
    assert_eq!(
        (c[0].to, c[0].remote_state, c[0].is_failure()),
        (State::Down, State::AdminDown, false)
    );
    assert_eq!(bytes_sent(&a), [hex(BIRD_DOWN_POLL)]);
    assert!(bytes_sent(&frr(&mut s, 501, FRR_ADMIN_DOWN_FINAL)).is_empty());
    assert!(!s.status().poll_in_progress);
    // FRR is silent now: after 900 ms we forget it and say so.
    let a = s.on_detect_timer(at(1401));
    assert!(changes(&a).is_empty());
    assert_eq!(bytes_sent(&a), [hex(BIRD_DOWN_FORGOTTEN)]);

    // FRR no shutdown.
    let a = frr(&mut s, 3000, FRR_DOWN_AGAIN);
    assert_eq!(s.state(), State::Init);
    assert_eq!(bytes_sent(&a), [hex(BIRD_INIT)]);
    let a = frr(&mut s, 3050, FRR_UP_POLL);
    assert_eq!(s.state(), State::Up);
    assert_eq!(bytes_sent(&a), [hex(BIRD_UP_FINAL)]);
    // Our Poll rides on the next periodic packet.
    let next = tx_timer(&a).flatten().unwrap_or(at(3350));
    assert_eq!(bytes_sent(&s.on_tx_timer(next)), [hex(BIRD_UP_POLL)]);
}

#[test]
fn the_ipv6_session_answers_the_same_way() {
    let (mut s, _) = Session::new(0xef8a_46d2, SessionConfig::default(), t0(), NO_JITTER).unwrap();
    let meta = RxMeta {
        ttl: 255,
        source: "[fd99::1]:49152".parse().unwrap(),
    };
    let a = s
        .receive(at(10), &decode(&hex(FRR6_INIT)).unwrap(), meta)
        .unwrap();
    assert_eq!(bytes_sent(&a), [hex(BIRD6_UP_POLL)]);
}
