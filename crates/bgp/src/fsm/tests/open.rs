//! Our OPEN, checks of the peer's OPEN and negotiation.

use super::*;

const OUT: ConnId = ConnId::Outbound;

/// Feeds `remote` to a session in OpenSent; returns the actions.
fn receive_open(c: SessionConfig, remote: Open) -> (Fsm, Vec<Action>) {
    let mut f = open_sent(c);
    let a = f.handle(Event::Received(OUT, Message::Open(remote)));
    (f, a)
}

fn assert_rejected(a: &[Action], f: &Fsm, code: u8, subcode: u8, data: &[u8]) {
    let n = notification_sent(a, OUT).expect("NOTIFICATION sent");
    assert_eq!((n.code, n.subcode), (code, subcode), "{n:?}");
    assert_eq!(n.data, data);
    assert!(closed(a, OUT));
    assert_eq!(f.state(), State::Idle);
    assert_eq!(down(a), Some(DownReason::NotificationSent(n)));
    assert!(timer_started(a, Timer::IdleHold).is_some());
}

#[test]
fn local_open_advertises_configured_capabilities() {
    let gr = GracefulRestartCap {
        restart_state: false,
        notification: true,
        restart_time: 120,
        families: vec![(Family::Ipv4Unicast, false)],
    };
    let c = SessionConfig {
        local_as: 4_200_000_001,
        graceful_restart: Some(gr.clone()),
        families: vec![
            Family::Ipv6Unicast,
            Family::Ipv4Unicast,
            Family::Ipv6Unicast,
        ],
        ..cfg()
    };
    let o = Fsm::new(c).local_open();
    assert_eq!(o.asn, 4_200_000_001);
    assert_eq!(o.hold_time, 90);
    assert_eq!(o.router_id, LOCAL_ID);
    assert_eq!(o.caps.four_octet_as, Some(4_200_000_001));
    assert_eq!(
        o.caps.multiprotocol,
        vec![Family::Ipv6Unicast, Family::Ipv4Unicast],
        "deduplicated"
    );
    assert!(o.caps.route_refresh && o.caps.enhanced_route_refresh && o.caps.extended_message);
    assert_eq!(o.caps.graceful_restart, Some(gr));
    assert!(o.caps.add_path.is_empty());

    let plain = SessionConfig {
        route_refresh: false,
        enhanced_route_refresh: false,
        extended_message: false,
        ..cfg()
    };
    let o = Fsm::new(plain).local_open();
    assert!(!o.caps.route_refresh && !o.caps.enhanced_route_refresh && !o.caps.extended_message);
    assert!(o.caps.graceful_restart.is_none());
}

#[test]
fn valid_open_sends_keepalive_and_enters_open_confirm() {
    let (f, a) = receive_open(cfg(), peer_open());
    assert_eq!(sent(&a, OUT), vec![Message::Keepalive]);
    assert_eq!(f.state(), State::OpenConfirm);
    assert_eq!(
        timer_started(&a, Timer::Hold),
        Some(Duration::from_secs(90))
    );
    let k = timer_started(&a, Timer::Keepalive).expect("keepalive armed");
    assert!(
        k >= Duration::from_millis(22_500) && k <= Duration::from_secs(30),
        "{k:?}"
    );
}

#[test]
fn asn_mismatch_sends_bad_peer_as() {
    // 4-octet capability present: data is the 4-octet AS.
    let mut o = peer_open();
    o.asn = 65099;
    o.caps.four_octet_as = Some(65099);
    let (f, a) = receive_open(cfg(), o);
    assert_rejected(&a, &f, 2, 2, &65099u32.to_be_bytes());
}

#[test]
fn asn_mismatch_without_as4_capability_returns_two_octet_my_as() {
    let mut o = peer_open();
    o.asn = 65099;
    o.caps.four_octet_as = None;
    let (f, a) = receive_open(cfg(), o);
    assert_rejected(&a, &f, 2, 2, &[0xfe, 0x4b]);
}

#[test]
fn four_octet_peer_as_is_matched_from_capability() {
    let c = SessionConfig {
        peer_as: 4_200_000_002,
        ..cfg()
    };
    let mut o = peer_open();
    o.asn = 23456;
    o.caps.four_octet_as = Some(4_200_000_002);
    let (f, a) = receive_open(c.clone(), o);
    assert_eq!(f.state(), State::OpenConfirm, "{a:?}");
    // A 2-octet-only peer cannot be AS 4200000002: it sends AS_TRANS.
    let mut o = peer_open();
    o.asn = 23456;
    o.caps.four_octet_as = None;
    let (f, a) = receive_open(c, o);
    assert_rejected(&a, &f, 2, 2, &23456u16.to_be_bytes());
}

#[test]
fn hold_time_one_is_rejected() {
    for hold in [1u16, 2] {
        let mut o = peer_open();
        o.hold_time = hold;
        let (f, a) = receive_open(cfg(), o);
        assert_rejected(&a, &f, 2, 6, &hold.to_be_bytes());
    }
}

#[test]
fn hold_time_negotiates_to_minimum() {
    let cases = [
        (90u16, 30u16, 30u16, 10u16),
        (30, 90, 30, 10),
        (90, 3, 3, 1),
        (0, 90, 0, 0),
        (90, 0, 0, 0),
    ];
    for (local, remote, hold, keepalive) in cases {
        let mut o = peer_open();
        o.hold_time = remote;
        let mut f = open_confirm_with(
            SessionConfig {
                hold_time: local,
                ..cfg()
            },
            o,
        );
        let a = f.handle(Event::Received(OUT, Message::Keepalive));
        let n = established_action(&a).expect("established");
        assert_eq!(
            (n.hold_time, n.keepalive),
            (hold, keepalive),
            "local {local} remote {remote}"
        );
    }
}

fn open_confirm_with(c: SessionConfig, o: Open) -> Fsm {
    let (f, a) = receive_open(c, o);
    assert_eq!(f.state(), State::OpenConfirm, "{a:?}");
    f
}

#[test]
fn configured_keepalive_is_capped_at_a_third_of_hold() {
    for (configured, expected) in [
        (Some(5u16), 5u16),
        (Some(60), 30),
        (Some(0), 30),
        (None, 30),
    ] {
        let c = SessionConfig {
            keepalive_time: configured,
            ..cfg()
        };
        let mut f = open_confirm_with(c, peer_open());
        let a = f.handle(Event::Received(OUT, Message::Keepalive));
        assert_eq!(
            established_action(&a).map(|n| n.keepalive),
            Some(expected),
            "{configured:?}"
        );
    }
}

#[test]
fn zero_router_id_is_bad_bgp_identifier() {
    let mut o = peer_open();
    o.router_id = Ipv4Addr::UNSPECIFIED;
    let (f, a) = receive_open(cfg(), o);
    assert_rejected(&a, &f, 2, 3, &[0, 0, 0, 0]);
}

#[test]
fn ibgp_peer_with_our_router_id_is_bad_bgp_identifier() {
    let mut o = peer_open();
    o.asn = 65001;
    o.caps.four_octet_as = Some(65001);
    o.router_id = LOCAL_ID;
    let (f, a) = receive_open(ibgp_cfg(), o);
    assert_rejected(&a, &f, 2, 3, &LOCAL_ID.octets());
}

#[test]
fn ebgp_peer_with_our_router_id_is_accepted() {
    let mut o = peer_open();
    o.router_id = LOCAL_ID;
    let (f, a) = receive_open(cfg(), o);
    assert!(notification_sent(&a, OUT).is_none());
    assert_eq!(f.state(), State::OpenConfirm);
}

#[test]
fn no_common_family_sends_unsupported_capability() {
    let c = SessionConfig {
        families: vec![Family::Ipv6Unicast],
        ..cfg()
    };
    let mut o = peer_open();
    o.caps.multiprotocol = vec![Family::Ipv4Unicast];
    let (f, a) = receive_open(c, o);
    // Our MP capability: code 1, length 4, AFI 2, reserved, SAFI 1.
    assert_rejected(&a, &f, 2, 7, &[1, 4, 0, 2, 0, 1]);
}

#[test]
fn peer_without_multiprotocol_capability_speaks_ipv4_unicast() {
    let mut o = peer_open();
    o.caps = Capabilities::default();
    o.asn = 65002;
    let mut f = open_confirm_with(cfg(), o.clone());
    let a = f.handle(Event::Received(OUT, Message::Keepalive));
    let n = established_action(&a).unwrap();
    assert_eq!(n.families, vec![Family::Ipv4Unicast]);
    assert!(!n.four_octet_as && !n.route_refresh && !n.extended_message);
    // ... so an IPv6-only session with such a peer is refused.
    let c = SessionConfig {
        families: vec![Family::Ipv6Unicast],
        ..cfg()
    };
    let (f, a) = receive_open(c, o);
    assert_rejected(&a, &f, 2, 7, &[1, 4, 0, 2, 0, 1]);
}

#[test]
fn peer_with_only_unknown_multiprotocol_capabilities_has_no_implied_ipv4() {
    // RFC 4760: IPv4 unicast is implied only when no multiprotocol
    // capability is sent. L2VPN EVPN (AFI 25, SAFI 70) alone is not IPv4.
    let c = SessionConfig {
        families: vec![Family::Ipv4Unicast],
        ..cfg()
    };
    let mut o = peer_open();
    o.caps.multiprotocol = vec![];
    o.caps.unknown = vec![(1, vec![0, 25, 0, 70])];
    let (f, a) = receive_open(c, o);
    assert_rejected(&a, &f, 2, 7, &[1, 4, 0, 1, 0, 1]);
}

#[test]
fn both_families_negotiate_over_one_session() {
    // The transport's address family plays no role: IPv6 routes over an IPv4
    // session (and the reverse) only need the multiprotocol capability.
    let mut f = open_confirm_with(cfg(), peer_open());
    let n = established_action(&f.handle(Event::Received(OUT, Message::Keepalive))).unwrap();
    assert_eq!(n.families, vec![Family::Ipv4Unicast, Family::Ipv6Unicast]);
    let mut o = peer_open();
    o.caps.multiprotocol = vec![Family::Ipv6Unicast];
    let mut f = open_confirm_with(cfg(), o);
    let n = established_action(&f.handle(Event::Received(OUT, Message::Keepalive))).unwrap();
    assert_eq!(n.families, vec![Family::Ipv6Unicast]);
}

#[test]
fn capabilities_negotiate_only_when_both_sides_advertise() {
    let gr = GracefulRestartCap {
        restart_time: 90,
        ..GracefulRestartCap::default()
    };
    let mut o = peer_open();
    o.caps.enhanced_route_refresh = false;
    o.caps.extended_message = false;
    o.caps.graceful_restart = Some(gr.clone());
    let mut f = open_confirm_with(
        SessionConfig {
            route_refresh: false,
            ..cfg()
        },
        o.clone(),
    );
    let n = established_action(&f.handle(Event::Received(OUT, Message::Keepalive))).unwrap();
    assert!(!n.route_refresh, "we did not advertise it");
    assert!(
        !n.enhanced_route_refresh && !n.extended_message,
        "peer did not advertise them"
    );
    assert!(n.four_octet_as);
    assert_eq!(n.peer_graceful_restart, Some(gr));
    assert_eq!(n.remote_open, o);
    assert_eq!(n.local_open, f.local_open());
    assert_eq!(n.peer_as(), 65002);
}

#[test]
fn unsupported_version_from_codec_is_sent_and_fails_session() {
    let mut f = open_sent(cfg());
    let n = Notification {
        code: 2,
        subcode: 1,
        data: vec![0, 4],
    };
    let a = f.handle(Event::DecodeError(OUT, n.clone()));
    assert_eq!(notification_sent(&a, OUT), Some(n.clone()));
    assert_eq!(down(&a), Some(DownReason::NotificationSent(n)));
    assert_eq!(f.failures(), 1);
}

#[test]
fn invalid_hold_time_config_is_reported_and_clamped() {
    for hold in [1u16, 2] {
        let c = SessionConfig {
            hold_time: hold,
            ..cfg()
        };
        assert_eq!(c.validate(), Err(ConfigError::HoldTime(hold)));
        assert_eq!(Fsm::new(c).local_open().hold_time, 3);
    }
    assert_eq!(
        SessionConfig {
            hold_time: 0,
            ..cfg()
        }
        .validate(),
        Ok(())
    );
    assert_eq!(
        SessionConfig {
            hold_time: 3,
            ..cfg()
        }
        .validate(),
        Ok(())
    );
}

#[test]
fn config_validation_names_the_bad_field() {
    let cases: Vec<(SessionConfig, ConfigError)> = vec![
        (
            SessionConfig {
                local_as: 0,
                ..cfg()
            },
            ConfigError::ZeroAs { field: "local_as" },
        ),
        (
            SessionConfig {
                peer_as: 0,
                ..cfg()
            },
            ConfigError::ZeroAs { field: "peer_as" },
        ),
        (
            SessionConfig {
                router_id: Ipv4Addr::UNSPECIFIED,
                ..cfg()
            },
            ConfigError::ZeroRouterId,
        ),
        (
            SessionConfig {
                families: vec![],
                ..cfg()
            },
            ConfigError::NoFamilies,
        ),
        (
            SessionConfig {
                connect_retry: Duration::ZERO,
                ..cfg()
            },
            ConfigError::ZeroConnectRetry,
        ),
        (
            SessionConfig {
                idle_hold: Duration::from_secs(61),
                ..cfg()
            },
            ConfigError::IdleHoldAboveMax {
                idle_hold: Duration::from_secs(61),
                max_idle_hold: Duration::from_secs(60),
            },
        ),
        (
            SessionConfig {
                send_hold_time: Some(Duration::from_secs(90)),
                ..cfg()
            },
            ConfigError::SendHoldTooShort {
                send_hold: Duration::from_secs(90),
                hold: 90,
            },
        ),
    ];
    for (c, e) in cases {
        assert_eq!(c.validate(), Err(e.clone()));
        assert!(!e.to_string().is_empty());
    }
    assert_eq!(cfg().validate(), Ok(()));
}
