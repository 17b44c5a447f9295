//! encode_announce / encode_withdraw packing.

use super::*;
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};

fn v4(n: usize) -> Vec<Nlri> {
    (0..n)
        .map(|i| Nlri::new(format!("10.{}.{}.0/24", i / 256, i % 256).parse().unwrap()))
        .collect()
}

fn v6(n: usize) -> Vec<Nlri> {
    (0..n)
        .map(|i| Nlri::new(format!("fd00:10:244:{i:x}::/64").parse().unwrap()))
        .collect()
}

fn attrs() -> PathAttributes {
    PathAttributes {
        origin: Some(Origin::Igp),
        as_path: vec![seq(&[64512])],
        next_hop: Some(Ipv4Addr::new(192, 0, 2, 1)),
        mp_next_hop: Some(MpNextHop {
            global: "2001:db8::1".parse::<IpAddr>().unwrap(),
            link_local: Some("fe80::1".parse().unwrap()),
        }),
        communities: vec![0xfc00_0001],
        ..Default::default()
    }
}

/// Decodes every message, checks sizes, returns (announced, withdrawn, attrs seen).
fn unpack(
    msgs: &[bytes::Bytes],
    ctx: &WireContext,
) -> (BTreeSet<Nlri>, BTreeSet<Nlri>, Vec<PathAttributes>) {
    let (mut a, mut w, mut pas) = (BTreeSet::new(), BTreeSet::new(), Vec::new());
    for m in msgs {
        assert!(
            m.len() <= ctx.max_message_len(),
            "{} > {}",
            m.len(),
            ctx.max_message_len()
        );
        let rx = decode(m, ctx).expect("packed UPDATE decodes");
        assert!(rx.errors.is_empty(), "{:?}", rx.errors);
        let u = update_msg(&rx);
        for n in &u.announced {
            assert!(a.insert(*n), "duplicate {n:?}");
        }
        for n in &u.withdrawn {
            assert!(w.insert(*n), "duplicate {n:?}");
        }
        if let Some(pa) = &u.attrs {
            pas.push((**pa).clone());
        }
    }
    (a, w, pas)
}

#[test]
fn announce_packs_ipv4_and_ipv6_into_few_messages() {
    let ctx = ctx4();
    let mut nlri = v4(3000);
    nlri.extend(v6(1500));
    let msgs = encode_announce(&attrs(), &nlri, &ctx).unwrap();
    // 3000 * 4 bytes of IPv4 NLRI and 1500 * 9 bytes of IPv6 NLRI: the
    // minimum is 3 + 4 messages at 4096 bytes.
    assert!(msgs.len() <= 8, "{} messages", msgs.len());
    assert!(msgs.iter().filter(|m| m.len() > 4000).count() >= 5);
    let (a, w, pas) = unpack(&msgs, &ctx);
    assert_eq!(a, nlri.iter().copied().collect());
    assert!(w.is_empty());
    let mut v4_attrs = attrs();
    v4_attrs.mp_next_hop = None;
    let mut v6_attrs = attrs();
    v6_attrs.next_hop = None;
    for pa in pas {
        assert!(pa == v4_attrs || pa == v6_attrs, "{pa:?}");
    }
}

#[test]
fn announce_with_extended_messages_uses_one_message_per_family() {
    let ctx = WireContext {
        extended_message: true,
        ..ctx4()
    };
    let mut nlri = v4(3000);
    nlri.extend(v6(1500));
    let msgs = encode_announce(&attrs(), &nlri, &ctx).unwrap();
    assert_eq!(msgs.len(), 2);
    assert_eq!(unpack(&msgs, &ctx).0, nlri.iter().copied().collect());
}

#[test]
fn announce_with_add_path_keeps_path_ids() {
    let ctx = WireContext {
        four_octet_as: true,
        add_path_rx: vec![Family::Ipv4Unicast, Family::Ipv6Unicast],
        add_path_tx: vec![Family::Ipv4Unicast, Family::Ipv6Unicast],
        extended_message: false,
        ebgp: false,
    };
    let nlri: Vec<Nlri> = v4(900)
        .into_iter()
        .chain(v6(400))
        .enumerate()
        .map(|(i, n)| Nlri {
            path_id: Some(i as u32 % 3 + 1),
            ..n
        })
        .collect();
    let msgs = encode_announce(&attrs(), &nlri, &ctx).unwrap();
    assert!(msgs.len() >= 3);
    assert_eq!(unpack(&msgs, &ctx).0, nlri.iter().copied().collect());
}

#[test]
fn withdraw_packs_both_families() {
    let ctx = ctx4();
    let mut nlri = v4(2500);
    nlri.extend(v6(1000));
    let msgs = encode_withdraw(&nlri, &ctx).unwrap();
    // 10000 bytes of IPv4 and 9000 bytes of IPv6 withdrawals.
    assert!(msgs.len() <= 6, "{} messages", msgs.len());
    let (a, w, pas) = unpack(&msgs, &ctx);
    assert!(a.is_empty() && pas.is_empty());
    assert_eq!(w, nlri.iter().copied().collect());
}

#[test]
fn exact_fill_stays_within_limit() {
    // Sizes near the boundary: every count from 1000 to 1030 /24s.
    let ctx = ctx4();
    for n in 1000..1030 {
        let msgs = encode_announce(&attrs(), &v4(n), &ctx).unwrap();
        assert_eq!(unpack(&msgs, &ctx).0.len(), n);
        let msgs = encode_withdraw(&v4(n), &ctx).unwrap();
        assert_eq!(unpack(&msgs, &ctx).1.len(), n);
    }
}

#[test]
fn empty_input_gives_no_messages() {
    assert!(encode_announce(&attrs(), &[], &ctx4()).unwrap().is_empty());
    assert!(encode_withdraw(&[], &ctx4()).unwrap().is_empty());
}

#[test]
fn ipv6_without_next_hop_is_an_error() {
    let pa = PathAttributes {
        origin: Some(Origin::Igp),
        ..Default::default()
    };
    assert!(encode_announce(&pa, &v6(2), &ctx4()).is_err());
}
