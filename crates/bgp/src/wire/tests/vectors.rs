//! Byte-exact vectors written from the RFC formats, checked both ways.

use super::*;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

#[test]
fn open_with_all_capabilities() {
    let bytes = hex(&format!(
        "{MARKER} 0055 01
         04 5ba0 005a 0a000001 38
         02 36
           01 04 0001 00 01
           01 04 0002 00 01
           02 00
           46 00
           41 04 fa56ea01
           45 08 0001 01 03 0002 01 01
           06 00
           40 06 4078 0001 01 80
           05 06 0001 0001 0002
           c8 02 6162"
    ));
    let open = Open {
        asn: 4_200_000_001,
        hold_time: 90,
        router_id: Ipv4Addr::new(10, 0, 0, 1),
        caps: Capabilities {
            multiprotocol: vec![Family::Ipv4Unicast, Family::Ipv6Unicast],
            route_refresh: true,
            enhanced_route_refresh: true,
            four_octet_as: Some(4_200_000_001),
            add_path: vec![
                (Family::Ipv4Unicast, AddPathMode::Both),
                (Family::Ipv6Unicast, AddPathMode::Receive),
            ],
            extended_message: true,
            graceful_restart: Some(GracefulRestartCap {
                restart_state: false,
                notification: true,
                restart_time: 120,
                families: vec![(Family::Ipv4Unicast, true)],
            }),
            extended_next_hop: vec![(Family::Ipv4Unicast, 2)],
            unknown: vec![(200, b"ab".to_vec())],
        },
    };
    both_ways(&bytes, &Message::Open(open), &WireContext::initial());
}

#[test]
fn open_two_octet_as_without_capabilities() {
    let bytes = hex(&format!("{MARKER} 001d 01 04 fde8 00b4 c0a80001 00"));
    let open = Open {
        asn: 65000,
        hold_time: 180,
        router_id: Ipv4Addr::new(192, 168, 0, 1),
        caps: Capabilities::default(),
    };
    both_ways(&bytes, &Message::Open(open), &WireContext::initial());
}

#[test]
fn keepalive() {
    both_ways(
        &hex(&format!("{MARKER} 0013 04")),
        &Message::Keepalive,
        &WireContext::initial(),
    );
}

#[test]
fn notification_with_shutdown_communication() {
    let bytes = hex(&format!("{MARKER} 0021 03 06 02 0b 6d61696e74656e616e6365"));
    let n = Notification::cease_with_message(notification::CEASE_ADMIN_SHUTDOWN, "maintenance");
    both_ways(
        &bytes,
        &Message::Notification(n.clone()),
        &WireContext::initial(),
    );
    assert_eq!(n.shutdown_message().as_deref(), Some("maintenance"));
    assert_eq!(n.describe(), "Cease/Administrative Shutdown");
}

#[test]
fn route_refresh() {
    let ctx = ctx4();
    let rr = |family, subtype| Message::RouteRefresh(RouteRefresh { family, subtype });
    both_ways(
        &hex(&format!("{MARKER} 0017 05 0002 00 01")),
        &rr(Family::Ipv6Unicast, 0),
        &ctx,
    );
    both_ways(
        &hex(&format!("{MARKER} 0017 05 0001 01 01")),
        &rr(Family::Ipv4Unicast, 1),
        &ctx,
    );
    both_ways(
        &hex(&format!("{MARKER} 0017 05 0001 02 01")),
        &rr(Family::Ipv4Unicast, 2),
        &ctx,
    );
}

fn v4_attrs() -> PathAttributes {
    PathAttributes {
        origin: Some(Origin::Igp),
        as_path: vec![seq(&[65001, 4_200_000_001])],
        next_hop: Some(Ipv4Addr::new(10, 0, 0, 1)),
        med: Some(100),
        local_pref: Some(100),
        communities: vec![0xfde8_0001],
        large_communities: vec![[4_200_000_001, 1, 2]],
        ..PathAttributes::default()
    }
}

#[test]
fn update_ipv4() {
    let bytes = hex(&format!(
        "{MARKER} 005c 02 0000 003c
         40 01 01 00
         40 02 0a 02 02 0000fde9 fa56ea01
         40 03 04 0a000001
         80 04 04 00000064
         40 05 04 00000064
         c0 08 04 fde80001
         c0 20 0c fa56ea01 00000001 00000002
         18 0af401  1a 0af40200"
    ));
    let u = Update {
        withdrawn: vec![],
        attrs: Some(Arc::new(v4_attrs())),
        announced: vec![net("10.244.1.0/24"), net("10.244.2.0/26")],
    };
    both_ways(&bytes, &Message::Update(u), &ctx4());
}

#[test]
fn update_ipv6_mp_reach_with_link_local() {
    let bytes = hex(&format!(
        "{MARKER} 0055 02 0000 003e
         80 0e 2e 0002 01 20
            20010db8000000000000000000000001 fe800000000000000000000000000001
            00 40 fd000010 02440001
         40 01 01 00
         40 02 06 02 01 0000fde9"
    ));
    let pa = PathAttributes {
        origin: Some(Origin::Igp),
        as_path: vec![seq(&[65001])],
        mp_next_hop: Some(MpNextHop {
            global: "2001:db8::1".parse::<IpAddr>().unwrap(),
            link_local: Some("fe80::1".parse().unwrap()),
        }),
        ..PathAttributes::default()
    };
    let u = Update {
        withdrawn: vec![],
        attrs: Some(Arc::new(pa)),
        announced: vec![net("fd00:10:244:1::/64")],
    };
    both_ways(&bytes, &Message::Update(u), &ctx4());
}

#[test]
fn withdraw_ipv4_and_ipv6() {
    let v4 = hex(&format!("{MARKER} 001d 02 0006 180af401 080a 0000"));
    let u = Update {
        withdrawn: vec![net("10.244.1.0/24"), net("10.0.0.0/8")],
        attrs: None,
        announced: vec![],
    };
    both_ways(&v4, &Message::Update(u), &ctx4());
    let v6 = hex(&format!(
        "{MARKER} 0026 02 0000 000f 80 0f 0c 0002 01 40 fd000010 02440001"
    ));
    let u = Update {
        withdrawn: vec![net("fd00:10:244:1::/64")],
        attrs: None,
        announced: vec![],
    };
    both_ways(&v6, &Message::Update(u), &ctx4());
}

#[test]
fn end_of_rib_both_families() {
    both_ways(
        &hex(&format!("{MARKER} 0017 02 0000 0000")),
        &Message::EndOfRib(Family::Ipv4Unicast),
        &ctx4(),
    );
    both_ways(
        &hex(&format!("{MARKER} 001d 02 0000 0006 80 0f 03 0002 01")),
        &Message::EndOfRib(Family::Ipv6Unicast),
        &ctx4(),
    );
}

#[test]
fn add_path_ipv4() {
    let ctx = WireContext {
        four_octet_as: true,
        add_path_rx: vec![Family::Ipv4Unicast],
        add_path_tx: vec![Family::Ipv4Unicast],
        extended_message: false,
        ebgp: false,
    };
    let bytes = hex(&format!(
        "{MARKER} 0035 02 0000 000e
         40 01 01 00  40 02 00  40 03 04 0a000001
         00000001 18 0af401  00000002 18 0af401"
    ));
    let pa = PathAttributes {
        origin: Some(Origin::Igp),
        next_hop: Some(Ipv4Addr::new(10, 0, 0, 1)),
        ..Default::default()
    };
    let p: ipnet::IpNet = "10.244.1.0/24".parse().unwrap();
    let u = Update {
        withdrawn: vec![],
        attrs: Some(Arc::new(pa)),
        announced: vec![
            Nlri {
                prefix: p,
                path_id: Some(1),
            },
            Nlri {
                prefix: p,
                path_id: Some(2),
            },
        ],
    };
    both_ways(&bytes, &Message::Update(u), &ctx);
    // Without ADD-PATH negotiated the same bytes mean other prefixes: the
    // context, not a guess, decides.
    let rx = decode(&bytes, &ctx4()).unwrap();
    assert_eq!(update_msg(&rx).announced.len(), 10);
    assert!(
        update_msg(&rx)
            .announced
            .iter()
            .all(|n| n.path_id.is_none())
    );
}

#[test]
fn add_path_ipv6_withdraw() {
    let ctx = WireContext {
        four_octet_as: true,
        add_path_rx: vec![Family::Ipv6Unicast],
        add_path_tx: vec![Family::Ipv6Unicast],
        extended_message: false,
        ebgp: false,
    };
    let bytes = hex(&format!(
        "{MARKER} 002a 02 0000 0013 80 0f 10 0002 01 00000007 40 fd000010 02440001"
    ));
    let u = Update {
        withdrawn: vec![Nlri {
            prefix: "fd00:10:244:1::/64".parse().unwrap(),
            path_id: Some(7),
        }],
        attrs: None,
        announced: vec![],
    };
    both_ways(&bytes, &Message::Update(u), &ctx);
}

#[test]
fn two_octet_session_as4_path_and_as4_aggregator() {
    let bytes = hex(&format!(
        "{MARKER} 0050 02 0000 0035
         40 01 01 00
         40 02 06 02 02 fde9 5ba0
         40 03 04 0a000001
         c0 07 06 5ba0 0a000009
         c0 11 0a 02 02 0000fde9 fa56ea01
         c0 12 08 fa56ea01 0a000009
         18 0af401"
    ));
    let pa = PathAttributes {
        origin: Some(Origin::Igp),
        as_path: vec![seq(&[65001, 4_200_000_001])],
        next_hop: Some(Ipv4Addr::new(10, 0, 0, 1)),
        aggregator: Some((4_200_000_001, Ipv4Addr::new(10, 0, 0, 9))),
        ..Default::default()
    };
    let u = Update {
        withdrawn: vec![],
        attrs: Some(Arc::new(pa)),
        announced: vec![net("10.244.1.0/24")],
    };
    both_ways(&bytes, &Message::Update(u), &WireContext::initial());
}

#[test]
fn two_octet_session_small_asns_need_no_as4_path() {
    let bytes = hex(&format!(
        "{MARKER} 002a 02 0000 0012
         40 01 01 02  40 02 04 02 01 fde9  40 03 04 0a000001
         00"
    ));
    let pa = PathAttributes {
        origin: Some(Origin::Incomplete),
        as_path: vec![seq(&[65001])],
        next_hop: Some(Ipv4Addr::new(10, 0, 0, 1)),
        ..Default::default()
    };
    let u = Update {
        withdrawn: vec![],
        attrs: Some(Arc::new(pa)),
        announced: vec![net("0.0.0.0/0")],
    };
    both_ways(&bytes, &Message::Update(u), &WireContext::initial());
}

#[test]
fn confederation_segments_round_trip() {
    let bytes = hex(&format!(
        "{MARKER} 0036 02 0000 001e
         40 01 01 00  40 02 10 03 01 0000fde8 02 02 0000fde9 0000fdea  40 03 04 0a000001
         00"
    ));
    let pa = PathAttributes {
        origin: Some(Origin::Igp),
        as_path: vec![
            AsSegment {
                kind: AsSegmentKind::ConfedSequence,
                asns: vec![65000],
            },
            seq(&[65001, 65002]),
        ],
        next_hop: Some(Ipv4Addr::new(10, 0, 0, 1)),
        ..Default::default()
    };
    let u = Update {
        withdrawn: vec![],
        attrs: Some(Arc::new(pa)),
        announced: vec![net("0.0.0.0/0")],
    };
    both_ways(&bytes, &Message::Update(u), &ctx4());
}
