//! Property test: any UPDATE petrel can build encodes and decodes back to
//! itself, on 2-octet and 4-octet sessions, with and without ADD-PATH.

use super::*;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

fn asn() -> impl Strategy<Value = u32> {
    prop_oneof![1u32..65535, 65536u32..=u32::MAX].prop_filter("AS_TRANS", |a| *a != 23456)
}

fn segment() -> impl Strategy<Value = AsSegment> {
    (any::<bool>(), proptest::collection::vec(asn(), 1..8)).prop_map(|(set, asns)| AsSegment {
        kind: if set {
            AsSegmentKind::Set
        } else {
            AsSegmentKind::Sequence
        },
        asns,
    })
}

fn unicast_v4() -> impl Strategy<Value = Ipv4Addr> {
    (1u8..=223, any::<[u8; 3]>())
        .prop_filter("loopback", |(a, _)| *a != 127)
        .prop_map(|(a, r)| Ipv4Addr::new(a, r[0], r[1], r[2]))
}

fn v4_prefix() -> impl Strategy<Value = IpNet> {
    (unicast_v4(), 8u8..=32).prop_map(|(a, l)| IpNet::V4(Ipv4Net::new(a, l).unwrap().trunc()))
}

fn v6_addr() -> impl Strategy<Value = Ipv6Addr> {
    (0x2000u16..0xfe00, any::<[u16; 7]>())
        .prop_map(|(h, r)| Ipv6Addr::new(h, r[0], r[1], r[2], r[3], r[4], r[5], r[6]))
}

fn v6_prefix() -> impl Strategy<Value = IpNet> {
    (v6_addr(), 16u8..=128).prop_map(|(a, l)| IpNet::V6(Ipv6Net::new(a, l).unwrap().trunc()))
}

#[derive(Debug, Clone)]
struct Case {
    ctx: WireContext,
    update: Update,
}

fn case() -> impl Strategy<Value = Case> {
    let ctx = (any::<bool>(), any::<bool>(), any::<bool>()).prop_map(|(four, ap4, ap6)| {
        let fams: Vec<Family> = [(ap4, Family::Ipv4Unicast), (ap6, Family::Ipv6Unicast)]
            .into_iter()
            .filter_map(|(on, f)| on.then_some(f))
            .collect();
        WireContext {
            four_octet_as: four,
            add_path_rx: fams.clone(),
            add_path_tx: fams,
            extended_message: true,
            ebgp: false,
        }
    });
    let nlri = |p: BoxedStrategy<IpNet>| proptest::collection::vec((p, any::<u32>()), 0..12);
    let attrs = (
        (
            0u8..3,
            proptest::collection::vec(segment(), 0..4),
            unicast_v4(),
            v6_addr(),
            proptest::option::of(v6_addr()),
        ),
        (
            any::<Option<u32>>(),
            any::<Option<u32>>(),
            any::<bool>(),
            proptest::option::of((asn(), unicast_v4())),
        ),
        (
            proptest::collection::vec(any::<u32>(), 0..5),
            proptest::collection::vec(any::<[u8; 8]>(), 0..3),
            proptest::collection::vec(any::<[u32; 3]>(), 0..3),
        ),
        (
            proptest::option::of(unicast_v4()),
            proptest::collection::vec(unicast_v4(), 0..3),
            proptest::collection::btree_map(
                99u8..=120,
                proptest::collection::vec(any::<u8>(), 0..300),
                0..3,
            ),
        ),
    );
    (
        ctx,
        nlri(v4_prefix().boxed()),
        nlri(v6_prefix().boxed()),
        nlri(v4_prefix().boxed()),
        nlri(v6_prefix().boxed()),
        attrs,
        any::<bool>(),
    )
        .prop_map(
            |(ctx, a4, a6, w4, w6, (base, opt, comms, rr), with_attrs)| {
                let mk = |v: Vec<(IpNet, u32)>| -> Vec<Nlri> {
                    v.into_iter()
                        .map(|(prefix, id)| Nlri {
                            prefix,
                            path_id: ctx.add_path_tx.contains(&Family::of(&prefix)).then_some(id),
                        })
                        .collect()
                };
                let (a4, a6) = (mk(a4), mk(a6));
                let with_attrs = with_attrs || !a4.is_empty() || !a6.is_empty();
                let (origin, as_path, nh, g6, ll) = base;
                let (med, local_pref, atomic_aggregate, aggregator) = opt;
                let (communities, ext_communities, large_communities) = comms;
                let (originator_id, cluster_list, unknown): (_, _, BTreeMap<u8, Vec<u8>>) = rr;
                let pa = PathAttributes {
                    origin: Some(
                        [Origin::Igp, Origin::Egp, Origin::Incomplete][usize::from(origin)],
                    ),
                    as_path,
                    next_hop: (!a4.is_empty()).then_some(nh),
                    mp_next_hop: (!a6.is_empty()).then_some(MpNextHop {
                        global: IpAddr::V6(g6),
                        link_local: ll,
                    }),
                    med,
                    local_pref,
                    atomic_aggregate,
                    aggregator,
                    communities,
                    ext_communities,
                    large_communities,
                    originator_id,
                    cluster_list,
                    unknown: unknown
                        .into_iter()
                        .map(|(code, value)| RawAttribute {
                            flags: 0xe0,
                            code,
                            value,
                        })
                        .collect(),
                };
                let update = Update {
                    withdrawn: mk(w4).into_iter().chain(mk(w6)).collect(),
                    attrs: with_attrs.then(|| Arc::new(pa)),
                    announced: a4.into_iter().chain(a6).collect(),
                };
                Case { ctx, update }
            },
        )
}

fn sorted(mut v: Vec<Nlri>) -> Vec<Nlri> {
    v.sort();
    v
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn update_round_trips(c in case()) {
        let u = &c.update;
        // An UPDATE with nothing in it is an End-of-RIB marker.
        prop_assume!(!(u.withdrawn.is_empty() && u.announced.is_empty() && u.attrs.is_none()));
        let bytes = encode(&Message::Update(u.clone()), &c.ctx).expect("encode");
        let rx = decode(&bytes, &c.ctx).expect("decode");
        prop_assert!(rx.errors.is_empty(), "{:?}", rx.errors);
        let Message::Update(got) = rx.message else { panic!("{:?}", rx.message) };
        prop_assert_eq!(&got.attrs, &u.attrs);
        prop_assert_eq!(sorted(got.announced), sorted(u.announced.clone()));
        prop_assert_eq!(sorted(got.withdrawn), sorted(u.withdrawn.clone()));
    }
}

/// Regression from `update_round_trips` (proptest seed cc 450c69e0…): on a
/// 2-octet session, a path whose second segment holds a 4-octet AS must
/// come back segment for segment after the AS4_PATH merge (RFC 6793 §4.2.3).
#[test]
fn two_octet_session_keeps_segments_around_a_four_octet_as() {
    let ctx = WireContext {
        extended_message: true,
        ..WireContext::default()
    };
    let attrs = PathAttributes {
        origin: Some(Origin::Igp),
        as_path: vec![
            AsSegment {
                kind: AsSegmentKind::Sequence,
                asns: vec![1],
            },
            AsSegment {
                kind: AsSegmentKind::Sequence,
                asns: vec![65536],
            },
        ],
        next_hop: Some(Ipv4Addr::new(1, 0, 0, 0)),
        ..Default::default()
    };
    let u = Update {
        withdrawn: vec![],
        attrs: Some(std::sync::Arc::new(attrs)),
        announced: vec![Nlri {
            prefix: "1.0.0.0/8".parse().unwrap(),
            path_id: None,
        }],
    };
    let bytes = encode(&Message::Update(u.clone()), &ctx).expect("encode");
    let rx = decode(&bytes, &ctx).expect("decode");
    assert!(rx.errors.is_empty(), "{:?}", rx.errors);
    assert_eq!(rx.message, Message::Update(u));
}

fn open_case() -> impl Strategy<Value = Open> {
    let fams = proptest::sample::subsequence(vec![Family::Ipv4Unicast, Family::Ipv6Unicast], 0..=2);
    let mode = prop_oneof![
        Just(AddPathMode::Receive),
        Just(AddPathMode::Send),
        Just(AddPathMode::Both)
    ];
    (
        (
            fams.clone(),
            any::<bool>(),
            any::<bool>(),
            proptest::option::of(1u32..=u32::MAX),
            any::<bool>(),
        ),
        (fams.clone(), mode.clone(), mode),
        proptest::option::of((
            any::<bool>(),
            any::<bool>(),
            0u16..4096,
            fams.clone(),
            any::<bool>(),
        )),
        (fams, 1u16..=2),
        proptest::collection::vec(
            (
                prop_oneof![Just(73u8), Just(128u8), 200u8..=238],
                proptest::collection::vec(any::<u8>(), 0..12),
            ),
            0..3,
        ),
        (
            1u16..=u16::MAX,
            prop_oneof![Just(0u16), 3u16..=u16::MAX],
            1u32..=u32::MAX,
        ),
    )
        .prop_map(
            |(
                (mp, rr, err, asn4, ext),
                (ap_fams, m1, m2),
                gr,
                (enhe, nh_afi),
                unknown,
                (my_as, hold, id),
            )| {
                let caps = Capabilities {
                    multiprotocol: mp,
                    route_refresh: rr,
                    enhanced_route_refresh: err,
                    four_octet_as: asn4,
                    add_path: ap_fams.iter().zip([m1, m2]).map(|(f, m)| (*f, m)).collect(),
                    extended_message: ext,
                    graceful_restart: gr.map(|(r, n, t, fams, fwd)| GracefulRestartCap {
                        restart_state: r,
                        notification: n,
                        restart_time: t,
                        families: fams.into_iter().map(|f| (f, fwd)).collect(),
                    }),
                    extended_next_hop: enhe.into_iter().map(|f| (f, nh_afi)).collect(),
                    unknown,
                };
                Open {
                    asn: asn4.unwrap_or(u32::from(my_as)),
                    hold_time: hold,
                    router_id: Ipv4Addr::from(id),
                    caps,
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn open_round_trips(o in open_case()) {
        let ctx = WireContext::initial();
        let bytes = encode(&Message::Open(o.clone()), &ctx).expect("encode");
        if o.asn > 0xffff {
            prop_assert_eq!(&bytes[20..22], &[0x5b, 0xa0]);
        }
        let rx = decode(&bytes, &ctx).expect("decode");
        prop_assert_eq!(rx.message, Message::Open(o));
    }
}
