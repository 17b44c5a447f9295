//! Session table: discriminator allocation (RFC 5880 §6.3, §6.8.1),
//! demultiplexing (§6.8.6; RFC 5881 §3; RFC 5883 §4.1), the receive path's
//! counters, and the transport helpers (RFC 5881 §4).

mod common;

use common::*;
use petrel_bfd::transport::{
    CONTROL_PORT, MULTIHOP_CONTROL_PORT, SOURCE_PORTS, is_valid_source_port, source_port_candidate,
};
use petrel_bfd::{
    ConfigError, DecodeError, Hop, PathKey, Received, RxDrop, RxError, SessionConfig, SessionTable,
    SplitMix64, State, TableError,
};
use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};

const IFINDEX: u32 = 7;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn single(peer: &str) -> PathKey {
    PathKey::SingleHop {
        peer: ip(peer),
        interface: Some(IFINDEX),
    }
}

fn multihop_config() -> SessionConfig {
    SessionConfig {
        hop: Hop::MultiHop { min_ttl: 254 },
        ..SessionConfig::default()
    }
}

fn from(peer: &str, multihop: bool) -> Received {
    Received {
        source: SocketAddr::new(ip(peer), 49200),
        local: ip("192.0.2.1"),
        interface: IFINDEX,
        ttl: 255,
        multihop,
    }
}

fn bytes(p: &petrel_bfd::ControlPacket) -> Vec<u8> {
    p.encode().unwrap()
}

fn table() -> SessionTable {
    SessionTable::new(SplitMix64::new(1))
}

#[test]
fn discriminators_are_unique_and_nonzero() {
    let mut t = table();
    let mut seen = HashSet::new();
    for i in 0..5000u32 {
        let peer = IpAddr::from([10, (i >> 16) as u8, (i >> 8) as u8, i as u8]);
        let key = PathKey::SingleHop {
            peer,
            interface: None,
        };
        let (d, _) = t.insert(key, SessionConfig::default(), t0()).unwrap();
        assert_ne!(d, 0);
        assert!(seen.insert(d), "discriminator {d} reused");
        assert_eq!(t.get(d).unwrap().local_discriminator(), d);
    }
    assert_eq!(t.len(), 5000);
}

#[test]
fn allocation_skips_zero_and_taken_values_and_reports_exhaustion() {
    let mut t = SessionTable::new(Fixed(0));
    assert_eq!(
        t.insert(single("192.0.2.2"), SessionConfig::default(), t0())
            .map(|_| ()),
        Err(TableError::DiscriminatorsExhausted)
    );
    let mut t = SessionTable::new(Fixed(5));
    let (d, _) = t
        .insert(single("192.0.2.2"), SessionConfig::default(), t0())
        .unwrap();
    assert_eq!(d, 5);
    assert_eq!(
        t.insert(single("192.0.2.3"), SessionConfig::default(), t0())
            .map(|_| ()),
        Err(TableError::DiscriminatorsExhausted)
    );
    assert!(
        t.find(&single("192.0.2.3")).is_none(),
        "a failed insert leaves nothing behind"
    );
}

#[test]
fn a_path_has_at_most_one_session() {
    let mut t = table();
    t.insert(single("192.0.2.2"), SessionConfig::default(), t0())
        .unwrap();
    assert_eq!(
        t.insert(single("192.0.2.2"), SessionConfig::default(), t0())
            .map(|_| ()),
        Err(TableError::DuplicatePath(single("192.0.2.2")))
    );
}

#[test]
fn path_and_hop_mode_must_agree() {
    let mut t = table();
    let r = t
        .insert(single("192.0.2.2"), multihop_config(), t0())
        .map(|_| ());
    assert!(matches!(r, Err(TableError::HopMismatch { .. })));
    let bad = SessionConfig {
        detect_mult: 0,
        ..SessionConfig::default()
    };
    let r = t.insert(single("192.0.2.2"), bad, t0()).map(|_| ());
    assert_eq!(r, Err(TableError::Config(ConfigError::ZeroDetectMult)));
    assert!(t.is_empty());
}

#[test]
fn first_packet_is_demultiplexed_by_peer_and_interface() {
    let mut t = table();
    let (a, _) = t
        .insert(single("192.0.2.2"), SessionConfig::default(), t0())
        .unwrap();
    let (b, _) = t
        .insert(single("192.0.2.3"), SessionConfig::default(), t0())
        .unwrap();
    let pkt = bytes(&remote(State::Down, 0));
    let (d, actions) = t.receive(at(1), &pkt, &from("192.0.2.3", false)).unwrap();
    assert_eq!(d, b);
    assert_eq!(t.get(b).unwrap().state(), State::Init);
    assert_eq!(t.get(a).unwrap().state(), State::Down);
    assert_eq!(only_sent(&actions).your_discriminator, REMOTE);
    // Same peer on another interface: no session.
    let other_if = Received {
        interface: IFINDEX + 1,
        ..from("192.0.2.2", false)
    };
    let r = t.receive(at(2), &pkt, &other_if);
    assert!(matches!(r, Err(RxError::NoSessionForPath(_))));
    assert_eq!(t.counters().no_session_for_path, 1);
}

#[test]
fn an_unbound_session_matches_any_interface_and_an_exact_one_wins() {
    let mut t = table();
    let any = PathKey::SingleHop {
        peer: ip("192.0.2.2"),
        interface: None,
    };
    let (unbound, _) = t.insert(any, SessionConfig::default(), t0()).unwrap();
    let pkt = bytes(&remote(State::Down, 0));
    let on_9 = Received {
        interface: 9,
        ..from("192.0.2.2", false)
    };
    assert_eq!(t.receive(at(1), &pkt, &on_9).unwrap().0, unbound);
    let (bound, _) = t
        .insert(single("192.0.2.2"), SessionConfig::default(), t0())
        .unwrap();
    assert_eq!(
        t.receive(at(2), &pkt, &from("192.0.2.2", false)).unwrap().0,
        bound
    );
}

#[test]
fn later_packets_are_demultiplexed_by_your_discriminator_only() {
    let mut t = table();
    let (d, _) = t
        .insert(single("192.0.2.2"), SessionConfig::default(), t0())
        .unwrap();
    t.receive(
        at(1),
        &bytes(&remote(State::Down, 0)),
        &from("192.0.2.2", false),
    )
    .unwrap();
    // RFC 5880 §6.3: the source address may change once discriminators are known.
    let moved = Received {
        interface: 3,
        ..from("198.51.100.9", false)
    };
    let (got, _) = t
        .receive(at(2), &bytes(&remote(State::Up, d)), &moved)
        .unwrap();
    assert_eq!(got, d);
    assert_eq!(t.get(d).unwrap().state(), State::Up);
    assert_eq!(t.get(d).unwrap().status().last_source, Some(moved.source));
}

#[test]
fn unknown_your_discriminator_is_discarded_and_counted() {
    let mut t = table();
    t.insert(single("192.0.2.2"), SessionConfig::default(), t0())
        .unwrap();
    let r = t.receive(
        at(1),
        &bytes(&remote(State::Up, 12345)),
        &from("192.0.2.2", false),
    );
    assert_eq!(r.map(|_| ()), Err(RxError::UnknownDiscriminator(12345)));
    assert_eq!(t.counters().unknown_discriminator, 1);
}

#[test]
fn multihop_first_packet_is_demultiplexed_by_address_pair() {
    let mut t = table();
    let key = PathKey::MultiHop {
        peer: ip("203.0.113.5"),
        local: ip("192.0.2.1"),
    };
    let (d, _) = t.insert(key, multihop_config(), t0()).unwrap();
    let pkt = bytes(&remote(State::Down, 0));
    let mut rx = from("203.0.113.5", true);
    rx.ttl = 254;
    assert_eq!(t.receive(at(1), &pkt, &rx).unwrap().0, d);
    let other_local = Received {
        local: ip("192.0.2.99"),
        ..rx
    };
    assert!(matches!(
        t.receive(at(2), &pkt, &other_local),
        Err(RxError::NoSessionForPath(_))
    ));
}

#[test]
fn a_packet_on_the_other_hop_modes_port_is_discarded() {
    let mut t = table();
    let (d, _) = t
        .insert(single("192.0.2.2"), SessionConfig::default(), t0())
        .unwrap();
    let r = t.receive(
        at(1),
        &bytes(&remote(State::Up, d)),
        &from("192.0.2.2", true),
    );
    assert_eq!(r.map(|_| ()), Err(RxError::WrongPort { discriminator: d }));
    assert_eq!(t.counters().wrong_port, 1);
}

#[test]
fn ipv4_mapped_sources_match_ipv4_sessions() {
    let mut t = table();
    let (d, _) = t
        .insert(single("192.0.2.2"), SessionConfig::default(), t0())
        .unwrap();
    let mapped = from("::ffff:192.0.2.2", false);
    assert_eq!(
        t.receive(at(1), &bytes(&remote(State::Down, 0)), &mapped)
            .unwrap()
            .0,
        d
    );
    assert_eq!(
        t.find(&PathKey::SingleHop {
            peer: ip("::ffff:192.0.2.2"),
            interface: Some(IFINDEX)
        }),
        Some(d)
    );
}

#[test]
fn ipv6_single_hop_sessions_demultiplex_like_ipv4() {
    let mut t = table();
    let (d, _) = t
        .insert(single("fe80::2"), SessionConfig::default(), t0())
        .unwrap();
    assert_eq!(
        t.receive(
            at(1),
            &bytes(&remote(State::Down, 0)),
            &from("fe80::2", false)
        )
        .unwrap()
        .0,
        d
    );
}

#[test]
fn malformed_datagrams_are_counted_by_rule() {
    let mut t = table();
    let rx = from("192.0.2.2", false);
    let good = bytes(&remote(State::Down, 0));
    let mut bad_version = good.clone();
    bad_version[0] = 0x40;
    let mut zero_mult = good.clone();
    zero_mult[2] = 0;
    for (payload, expected) in [
        (&good[..10], DecodeError::Truncated { payload: 10 }),
        (&bad_version[..], DecodeError::BadVersion(2)),
        (&zero_mult[..], DecodeError::ZeroDetectMult),
    ] {
        assert_eq!(
            t.receive(at(1), payload, &rx).map(|_| ()),
            Err(RxError::Malformed(expected))
        );
    }
    let m = t.counters().malformed;
    assert_eq!(
        (m.truncated, m.bad_version, m.zero_detect_mult, m.total()),
        (1, 1, 1, 3)
    );
}

#[test]
fn session_drops_surface_with_the_session_and_reason() {
    let mut t = table();
    let (d, _) = t
        .insert(single("192.0.2.2"), SessionConfig::default(), t0())
        .unwrap();
    let rx = Received {
        ttl: 254,
        ..from("192.0.2.2", false)
    };
    let r = t.receive(at(1), &bytes(&remote(State::Down, 0)), &rx);
    assert_eq!(
        r.map(|_| ()),
        Err(RxError::Dropped {
            discriminator: d,
            reason: RxDrop::Ttl {
                ttl: 254,
                hop: Hop::SingleHop
            }
        })
    );
    assert_eq!(t.get(d).unwrap().status().counters.dropped_ttl, 1);
}

#[test]
fn removing_a_session_frees_its_path_and_discriminator() {
    let mut t = table();
    let (d, _) = t
        .insert(single("192.0.2.2"), SessionConfig::default(), t0())
        .unwrap();
    let (path, s) = t.remove(d).unwrap();
    assert_eq!((path, s.local_discriminator()), (single("192.0.2.2"), d));
    assert!(t.get(d).is_none() && t.find(&path).is_none());
    let r = t.receive(
        at(1),
        &bytes(&remote(State::Up, d)),
        &from("192.0.2.2", false),
    );
    assert!(matches!(r, Err(RxError::UnknownDiscriminator(_))));
    t.insert(path, SessionConfig::default(), t0()).unwrap();
    assert_eq!(t.iter().count(), 1);
}

#[test]
fn source_ports_stay_in_the_rfc_5881_range_and_walk_all_of_it() {
    assert_eq!((CONTROL_PORT, MULTIHOP_CONTROL_PORT), (3784, 4784));
    assert!(is_valid_source_port(49152) && is_valid_source_port(65535));
    assert!(!is_valid_source_port(49151) && !is_valid_source_port(3784));
    let ports: HashSet<u16> = (0..16384)
        .map(|a| source_port_candidate(0xdead_beef, a))
        .collect();
    assert_eq!(ports.len(), 16384);
    assert!(ports.iter().all(|p| SOURCE_PORTS.contains(p)));
    assert_ne!(source_port_candidate(1, 0), source_port_candidate(2, 0));
    assert_eq!(
        source_port_candidate(u32::MAX, u16::MAX),
        source_port_candidate(u32::MAX, u16::MAX)
    );
}
