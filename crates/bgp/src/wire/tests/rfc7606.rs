//! RFC 7606 outcomes: treat-as-withdraw, attribute discard, session reset.

use super::*;
use crate::wire::AttrAction::{Discard, TreatAsWithdraw};

const ORIGIN: &str = "40 01 01 00";
const AS_PATH: &str = "40 02 06 02 01 0000fde9";
const NEXT_HOP: &str = "40 03 04 0a000001";
/// 10.244.1.0/24 and 10.244.2.0/24.
const NLRI: &str = "18 0af401 18 0af402";

fn base_plus(extra: &str) -> Vec<u8> {
    hex(&format!("{ORIGIN} {AS_PATH} {NEXT_HOP} {extra}"))
}

/// Decodes an UPDATE with the base attributes plus `extra` and two NLRI.
fn rx(extra: &str) -> Received {
    decode(&update(&[], &base_plus(extra), &hex(NLRI)), &ctx4()).expect("non-fatal")
}

fn assert_withdrawn(r: &Received, code: u8) {
    let u = update_msg(r);
    assert!(u.announced.is_empty(), "still announced: {u:?}");
    assert!(u.attrs.is_none());
    assert_eq!(
        u.withdrawn,
        vec![net("10.244.1.0/24"), net("10.244.2.0/24")]
    );
    assert!(
        r.errors
            .iter()
            .any(|e| e.code == code && e.action == TreatAsWithdraw),
        "{:?}",
        r.errors
    );
}

fn assert_discarded(r: &Received, code: u8) -> PathAttributes {
    let u = update_msg(r);
    assert_eq!(u.announced.len(), 2);
    assert!(u.withdrawn.is_empty());
    assert_eq!(r.errors.len(), 1, "{:?}", r.errors);
    assert_eq!((r.errors[0].code, r.errors[0].action), (code, Discard));
    (**u.attrs.as_ref().unwrap()).clone()
}

fn reset(bytes: &[u8], ctx: &WireContext) -> Notification {
    let e = decode(bytes, ctx).expect_err("session reset");
    assert!(e.is_fatal());
    e.notification()
}

#[test]
fn clean_update_has_no_errors() {
    let r = rx("");
    assert!(r.errors.is_empty());
    assert_eq!(update_msg(&r).announced.len(), 2);
}

#[test]
fn malformed_origin_is_treat_as_withdraw() {
    let bad = hex(&format!("40 01 01 07 {AS_PATH} {NEXT_HOP}"));
    assert_withdrawn(&decode(&update(&[], &bad, &hex(NLRI)), &ctx4()).unwrap(), 1);
    let bad = hex(&format!("40 01 02 00 00 {AS_PATH} {NEXT_HOP}"));
    assert_withdrawn(&decode(&update(&[], &bad, &hex(NLRI)), &ctx4()).unwrap(), 1);
}

#[test]
fn malformed_as_path_is_treat_as_withdraw() {
    for path in [
        "40 02 02 02 00",
        "40 02 06 02 02 0000fde9",
        "40 02 06 07 01 0000fde9",
        "40 02 07 02 01 0000fde9 00",
    ] {
        let bad = hex(&format!("{ORIGIN} {path} {NEXT_HOP}"));
        assert_withdrawn(&decode(&update(&[], &bad, &hex(NLRI)), &ctx4()).unwrap(), 2);
    }
    // A 4-octet path read on a 2-octet session has an odd layout: 2-byte
    // ASNs make "02 01 0000 fde9" a one-AS segment plus 2 trailing bytes.
    let bad = base_plus("");
    let r = decode(&update(&[], &bad, &hex(NLRI)), &WireContext::initial()).unwrap();
    assert_withdrawn(&r, 2);
}

#[test]
fn malformed_next_hop_is_treat_as_withdraw() {
    for nh in [
        "40 03 05 0a00000100",
        "40 03 04 00000000",
        "40 03 04 7f000001",
        "40 03 04 e0000001",
    ] {
        let bad = hex(&format!("{ORIGIN} {AS_PATH} {nh}"));
        assert_withdrawn(&decode(&update(&[], &bad, &hex(NLRI)), &ctx4()).unwrap(), 3);
    }
}

#[test]
fn malformed_med_local_pref_communities_are_treat_as_withdraw() {
    assert_withdrawn(&rx("80 04 05 0000000001"), 4);
    assert_withdrawn(&rx("40 05 03 000001"), 5);
    assert_withdrawn(&rx("c0 08 02 0001"), 8);
    assert_withdrawn(&rx("c0 08 00"), 8);
    assert_withdrawn(&rx("80 09 03 010203"), 9);
    assert_withdrawn(&rx("80 0a 05 0102030405"), 10);
    assert_withdrawn(&rx("c0 10 07 00020000fde800"), 16);
    assert_withdrawn(&rx("c0 20 08 0000000100000002"), 32);
}

#[test]
fn malformed_aggregator_and_atomic_aggregate_are_discarded() {
    let pa = assert_discarded(&rx("40 06 01 00"), 6);
    assert!(!pa.atomic_aggregate);
    let pa = assert_discarded(&rx("c0 07 07 0000fde90a0000"), 7);
    assert_eq!(pa.aggregator, None);
    // RFC 7607: aggregator AS 0.
    assert_discarded(&rx("c0 07 08 00000000 0a000009"), 7);
    // A good one is kept.
    let r = rx("40 06 00 c0 07 08 0000fde9 0a000009");
    let pa = update_msg(&r).attrs.clone().unwrap();
    assert!(pa.atomic_aggregate);
    assert_eq!(pa.aggregator, Some((65001, "10.0.0.9".parse().unwrap())));
}

#[test]
fn malformed_as4_path_on_two_octet_session_is_discarded() {
    let attrs = hex(&format!(
        "{ORIGIN} 40 02 04 02 01 fde9 {NEXT_HOP} c0 11 03 02 01 00"
    ));
    let r = decode(&update(&[], &attrs, &hex(NLRI)), &WireContext::initial()).unwrap();
    let pa = assert_discarded(&r, 17);
    assert_eq!(pa.as_path, vec![seq(&[65001])]);
}

#[test]
fn as4_path_ignored_when_aggregator_is_not_as_trans() {
    // RFC 6793 §4.2.3: AGGREGATOR with a real 2-octet AS voids AS4_PATH/AS4_AGGREGATOR.
    let attrs = hex(&format!(
        "{ORIGIN} 40 02 04 02 01 5ba0 {NEXT_HOP} c0 07 06 fde9 0a000009 c0 11 06 02 01 fa56ea01 c0 12 08 fa56ea01 0a000009"
    ));
    let r = decode(&update(&[], &attrs, &hex(NLRI)), &WireContext::initial()).unwrap();
    let pa = update_msg(&r).attrs.clone().unwrap();
    assert_eq!(pa.as_path, vec![seq(&[23456])]);
    assert_eq!(pa.aggregator, Some((65001, "10.0.0.9".parse().unwrap())));
}

#[test]
fn as4_aggregator_without_aggregator_is_ignored() {
    let attrs = hex(&format!(
        "{ORIGIN} 40 02 04 02 01 5ba0 {NEXT_HOP} c0 11 06 02 01 fa56ea01 c0 12 08 fa56ea01 0a000009"
    ));
    let r = decode(&update(&[], &attrs, &hex(NLRI)), &WireContext::initial()).unwrap();
    let pa = update_msg(&r).attrs.clone().unwrap();
    assert_eq!(pa.as_path, vec![seq(&[4_200_000_001])]);
    assert_eq!(pa.aggregator, None);
    // On a 4-octet session AS4_PATH is ignored entirely (RFC 6793 §4.1).
    let attrs = hex(&format!(
        "{ORIGIN} {AS_PATH} {NEXT_HOP} c0 11 06 02 01 fa56ea01"
    ));
    let r = decode(&update(&[], &attrs, &hex(NLRI)), &ctx4()).unwrap();
    assert_eq!(
        update_msg(&r).attrs.as_ref().unwrap().as_path,
        vec![seq(&[65001])]
    );
}

#[test]
fn attribute_flag_conflicts() {
    // ORIGIN marked optional: treat-as-withdraw (RFC 7606 §3.c).
    let bad = hex(&format!("c0 01 01 00 {AS_PATH} {NEXT_HOP}"));
    assert_withdrawn(&decode(&update(&[], &bad, &hex(NLRI)), &ctx4()).unwrap(), 1);
    // AGGREGATOR marked well-known: discard.
    assert_discarded(&rx("40 07 08 0000fde9 0a000009"), 7);
    // MP_REACH_NLRI marked transitive: reset, Attribute Flags Error with the attribute.
    let mp = "c0 0e 15 0002 01 10 20010db8000000000000000000000001 00";
    let n = reset(&update(&[], &hex(mp), &[]), &ctx4());
    assert_eq!((n.code, n.subcode, n.data), (3, 4, hex(mp)));
}

#[test]
fn missing_mandatory_attributes_are_treat_as_withdraw() {
    let no_origin = hex(&format!("{AS_PATH} {NEXT_HOP}"));
    assert_withdrawn(
        &decode(&update(&[], &no_origin, &hex(NLRI)), &ctx4()).unwrap(),
        1,
    );
    let no_path = hex(&format!("{ORIGIN} {NEXT_HOP}"));
    assert_withdrawn(
        &decode(&update(&[], &no_path, &hex(NLRI)), &ctx4()).unwrap(),
        2,
    );
    let no_nh = hex(&format!("{ORIGIN} {AS_PATH}"));
    assert_withdrawn(
        &decode(&update(&[], &no_nh, &hex(NLRI)), &ctx4()).unwrap(),
        3,
    );
    // IPv6 in MP_REACH needs no NEXT_HOP attribute.
    let v6 = hex(&format!(
        "80 0e 1a 0002 01 10 20010db8000000000000000000000001 00 20 fd000010 {ORIGIN} {AS_PATH}"
    ));
    let r = decode(&update(&[], &v6, &[]), &ctx4()).unwrap();
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(update_msg(&r).announced, vec![net("fd00:10::/32")]);
    // A pure withdrawal needs no attributes at all.
    let r = decode(&update(&hex("18 0af401"), &[], &[]), &ctx4()).unwrap();
    assert!(r.errors.is_empty());
}

#[test]
fn repeated_attributes() {
    // Second MED ignored, first kept (RFC 7606 §3.g).
    let r = rx("80 04 04 00000001 80 04 04 00000002");
    let pa = assert_discarded(&r, 4);
    assert_eq!(pa.med, Some(1));
    // Repeated MP_REACH_NLRI: reset with Malformed Attribute List.
    let mp = "80 0e 1a 0002 01 10 20010db8000000000000000000000001 00 20 fd000010";
    let n = reset(
        &update(&[], &hex(&format!("{mp} {mp} {ORIGIN} {AS_PATH}")), &[]),
        &ctx4(),
    );
    assert_eq!((n.code, n.subcode, n.data.len()), (3, 1, 0));
    let un = "80 0f 03 0002 01";
    let n = reset(&update(&[], &hex(&format!("{un} {un}")), &[]), &ctx4());
    assert_eq!((n.code, n.subcode), (3, 1));
}

#[test]
fn attribute_length_overrun_is_treat_as_withdraw() {
    // The last attribute claims 9 bytes but only 4 remain in the attribute list;
    // the NLRI are still found through the total attribute length.
    let r = rx("c0 08 09 fde80001");
    assert_withdrawn(&r, 8);
    // Fewer than 3 bytes left for an attribute header.
    assert_withdrawn(&rx("c0 08"), 8);
}

#[test]
fn unknown_attributes() {
    // Optional transitive: kept with Partial set.
    let r = rx("c0 63 02 0102");
    let pa = update_msg(&r).attrs.clone().unwrap();
    assert!(r.errors.is_empty());
    assert_eq!(
        pa.unknown,
        vec![RawAttribute {
            flags: 0xe0,
            code: 99,
            value: vec![1, 2]
        }]
    );
    // Garbage attribute 28 (the 2023 incident) with extended length: still kept.
    let r = rx("d0 1c 0003 ffffff");
    assert_eq!(
        update_msg(&r).attrs.as_ref().unwrap().unknown[0].flags,
        0xe0
    );
    // Optional non-transitive: dropped quietly.
    let r = rx("80 63 02 0102");
    assert!(update_msg(&r).attrs.as_ref().unwrap().unknown.is_empty());
    assert_eq!(update_msg(&r).announced.len(), 2);
    // Unknown well-known: reset 3/2 with the attribute as data.
    let n = reset(
        &update(&[], &base_plus("40 63 02 0102"), &hex(NLRI)),
        &ctx4(),
    );
    assert_eq!((n.code, n.subcode, n.data), (3, 2, hex("40 63 02 0102")));
}

#[test]
fn malformed_mp_reach_resets_session() {
    // IPv6 next hop of length 8.
    let mp = "80 0e 0d 0002 01 08 20010db800000000 00";
    let n = reset(
        &update(&[], &hex(&format!("{mp} {ORIGIN} {AS_PATH}")), &[]),
        &ctx4(),
    );
    assert_eq!((n.code, n.subcode, n.data), (3, 9, hex(mp)));
    // Prefix length 129.
    let mp = "80 0e 17 0002 01 10 20010db8000000000000000000000001 00 81 fd";
    let n = reset(
        &update(&[], &hex(&format!("{mp} {ORIGIN} {AS_PATH}")), &[]),
        &ctx4(),
    );
    assert_eq!((n.code, n.subcode, n.data), (3, 9, hex(mp)));
    // Truncated MP_UNREACH.
    let n = reset(&update(&[], &hex("80 0f 02 0002"), &[]), &ctx4());
    assert_eq!((n.code, n.subcode), (3, 9));
    // Next hop length overrunning the attribute.
    let n = reset(&update(&[], &hex("80 0e 05 0002 01 10 20"), &[]), &ctx4());
    assert_eq!((n.code, n.subcode), (3, 9));
}

#[test]
fn mp_reach_for_unsupported_family_is_ignored() {
    // AFI 1 / SAFI 128 (VPNv4): not ours; the rest of the UPDATE stands.
    let r = rx("80 0e 09 0001 80 04 0a000001 00");
    assert_eq!(update_msg(&r).announced.len(), 2);
    assert_eq!(r.errors.len(), 1);
    assert_eq!(r.errors[0].code, 14);
}

#[test]
fn unparseable_nlri_and_lengths_reset() {
    let n = reset(
        &update(&[], &base_plus(""), &hex("21 0a000000 01")),
        &ctx4(),
    );
    assert_eq!((n.code, n.subcode), (3, 10));
    let n = reset(&update(&hex("18 0a"), &[], &[]), &ctx4());
    assert_eq!((n.code, n.subcode), (3, 10));
    // Withdrawn Routes Length overruns the message.
    let n = reset(&msg(2, &hex("0010 0000")), &ctx4());
    assert_eq!((n.code, n.subcode), (3, 1));
    // Total Path Attribute Length overruns the message.
    let n = reset(&msg(2, &hex("0000 0010 40 01 01 00")), &ctx4());
    assert_eq!((n.code, n.subcode), (3, 1));
}

#[test]
fn treat_as_withdraw_includes_mp_reach_nlri() {
    let mp = "80 0e 1a 0002 01 10 20010db8000000000000000000000001 00 20 fd000010";
    let attrs = hex(&format!("{mp} 40 01 01 09 {AS_PATH}"));
    let r = decode(&update(&[], &attrs, &[]), &ctx4()).unwrap();
    let u = update_msg(&r);
    assert!(u.announced.is_empty() && u.attrs.is_none());
    assert_eq!(u.withdrawn, vec![net("fd00:10::/32")]);
}

/// RFC 7606 §7.5, §7.9, §7.10: from an external peer LOCAL_PREF,
/// ORIGINATOR_ID and CLUSTER_LIST are discarded, malformed or not; the routes
/// stay.
#[test]
fn ibgp_only_attributes_from_an_external_peer_are_discarded() {
    let ebgp = WireContext {
        ebgp: true,
        ..ctx4()
    };
    let rx_ebgp = |extra: &str| {
        decode(&update(&[], &base_plus(extra), &hex(NLRI)), &ebgp).expect("non-fatal")
    };
    for (extra, code) in [
        ("40 05 03 000001", 5),
        ("80 09 03 010203", 9),
        ("80 0a 05 0102030405", 10),
    ] {
        let pa = assert_discarded(&rx_ebgp(extra), code);
        assert_eq!(
            (pa.local_pref, pa.originator_id, pa.cluster_list.len()),
            (None, None, 0)
        );
    }
    // Well-formed ones are dropped without a report.
    let r = rx_ebgp("40 05 04 00000064 80 09 04 0a000001 80 0a 04 0a000002");
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    let u = update_msg(&r);
    assert_eq!(u.announced.len(), 2);
    let pa = u.attrs.as_ref().unwrap();
    assert_eq!(
        (pa.local_pref, pa.originator_id, pa.cluster_list.len()),
        (None, None, 0)
    );
    // From an internal peer they are kept.
    let pa = update_msg(&rx("40 05 04 00000064 80 09 04 0a000001"))
        .attrs
        .clone()
        .unwrap();
    assert_eq!(pa.local_pref, Some(100));
    assert_eq!(pa.originator_id, Some("10.0.0.1".parse().unwrap()));
}

#[test]
fn negotiated_context_knows_external_sessions() {
    let open = |asn: u32| Open {
        asn: 23456,
        hold_time: 90,
        router_id: "10.0.0.1".parse().unwrap(),
        caps: Capabilities {
            four_octet_as: Some(asn),
            ..Capabilities::default()
        },
    };
    assert!(WireContext::negotiated(&open(4_200_000_001), &open(4_200_000_002)).ebgp);
    assert!(!WireContext::negotiated(&open(4_200_000_001), &open(4_200_000_001)).ebgp);
}
