//! OPEN decoding errors (RFC 4271 §6.2, RFC 5492, RFC 6793, RFC 7607,
//! RFC 9072) and capability negotiation.

use super::*;
use std::net::Ipv4Addr;

/// OPEN body: version, My AS, hold time, BGP ID, then `params` (raw, with
/// the optional parameters length prepended).
fn open(version: u8, my_as: u16, hold: u16, id: [u8; 4], params: &[u8]) -> Vec<u8> {
    let mut b = vec![version];
    b.extend_from_slice(&my_as.to_be_bytes());
    b.extend_from_slice(&hold.to_be_bytes());
    b.extend_from_slice(&id);
    b.push(params.len() as u8);
    b.extend_from_slice(params);
    msg(1, &b)
}

fn caps(c: &str) -> Vec<u8> {
    let c = hex(c);
    let mut p = vec![2, c.len() as u8];
    p.extend_from_slice(&c);
    p
}

fn open_err(bytes: &[u8]) -> Notification {
    decode(bytes, &WireContext::initial())
        .expect_err("OPEN error")
        .notification()
}

fn decoded(bytes: &[u8]) -> Open {
    match decode(bytes, &WireContext::initial())
        .expect("OPEN")
        .message
    {
        Message::Open(o) => o,
        m => panic!("{m:?}"),
    }
}

#[test]
fn open_errors_have_exact_codes() {
    let n = open_err(&open(3, 65000, 90, [1, 1, 1, 1], &[]));
    assert_eq!((n.code, n.subcode, n.data), (2, 1, vec![0, 4]));
    for hold in [1, 2] {
        let n = open_err(&open(4, 65000, hold, [1, 1, 1, 1], &[]));
        assert_eq!((n.code, n.subcode), (2, 6));
    }
    let n = open_err(&open(4, 65000, 90, [0, 0, 0, 0], &[]));
    assert_eq!((n.code, n.subcode), (2, 3));
    let n = open_err(&open(4, 65000, 90, [1, 1, 1, 1], &hex("01 02 0000")));
    assert_eq!((n.code, n.subcode), (2, 4));
    let n = open_err(&open(4, 0, 90, [1, 1, 1, 1], &[]));
    assert_eq!((n.code, n.subcode), (2, 2));
    let n = open_err(&open(4, 23456, 90, [1, 1, 1, 1], &caps("41 04 00000000")));
    assert_eq!((n.code, n.subcode), (2, 2));
    // My AS neither AS_TRANS nor the 4-octet AS.
    let n = open_err(&open(4, 65000, 90, [1, 1, 1, 1], &caps("41 04 0000fde9")));
    assert_eq!((n.code, n.subcode), (2, 2));
    // Parameter overrunning the OPEN, capability overrunning its parameter.
    let n = open_err(&open(4, 65000, 90, [1, 1, 1, 1], &hex("02 05 0200")));
    assert_eq!((n.code, n.subcode), (2, 0));
    let n = open_err(&open(4, 65000, 90, [1, 1, 1, 1], &hex("02 02 0105")));
    assert_eq!((n.code, n.subcode), (2, 0));
    // Too short for an OPEN: header error with the length.
    let n = open_err(&msg(1, &[4, 0, 1]));
    assert_eq!((n.code, n.subcode, n.data), (1, 2, vec![0, 22]));
}

#[test]
fn hold_time_zero_and_three_are_accepted() {
    assert_eq!(decoded(&open(4, 65000, 0, [1, 1, 1, 1], &[])).hold_time, 0);
    assert_eq!(decoded(&open(4, 65000, 3, [1, 1, 1, 1], &[])).hold_time, 3);
}

#[test]
fn unknown_capabilities_and_families_never_fail_the_open() {
    let o = decoded(&open(
        4,
        65000,
        90,
        [1, 1, 1, 1],
        &caps(
            "01 04 0001 00 49  01 04 0001 00 01  45 08 0001 80 03 0002 01 02  49 03 616263  80 00",
        ),
    ));
    assert_eq!(o.caps.multiprotocol, vec![Family::Ipv4Unicast]);
    assert_eq!(
        o.caps.add_path,
        vec![(Family::Ipv6Unicast, AddPathMode::Send)]
    );
    assert_eq!(
        o.caps.unknown,
        vec![(1, hex("0001 00 49")), (73, b"abc".to_vec()), (128, vec![]),]
    );
    assert_eq!(o.asn, 65000);
}

#[test]
fn capabilities_in_separate_parameters_and_rfc9072() {
    let mut params = caps("01 04 0002 00 01");
    params.extend(caps("41 04 fa56ea01"));
    let o = decoded(&open(4, 23456, 90, [1, 1, 1, 1], &params));
    assert_eq!(
        (o.asn, o.caps.multiprotocol.clone()),
        (4_200_000_001, vec![Family::Ipv6Unicast])
    );
    // RFC 9072 extended optional parameters: ff ff <len16> then type/len16.
    let ext = hex("ff ff 0009 02 0006 41 04 fa56ea01");
    let mut body = vec![4];
    body.extend_from_slice(&hex("5ba0 005a 01010101"));
    body.push(255);
    body.extend_from_slice(&ext[1..]);
    let o = decoded(&msg(1, &body));
    assert_eq!(o.asn, 4_200_000_001);
}

#[test]
fn graceful_restart_n_bit_and_forwarding_flags() {
    let o = decoded(&open(
        4,
        65000,
        90,
        [1, 1, 1, 1],
        &caps("40 0a c0b4 0001 01 00 0002 01 80"),
    ));
    let gr = o.caps.graceful_restart.unwrap();
    assert!(gr.restart_state && gr.notification);
    assert_eq!(gr.restart_time, 180);
    assert_eq!(
        gr.families,
        vec![(Family::Ipv4Unicast, false), (Family::Ipv6Unicast, true)]
    );
}

#[test]
fn open_encoding_uses_as_trans_and_refuses_inconsistent_asn() {
    let mut o = Open {
        asn: 4_200_000_001,
        hold_time: 90,
        router_id: Ipv4Addr::new(1, 1, 1, 1),
        caps: Capabilities::default(),
    };
    assert!(encode(&Message::Open(o.clone()), &WireContext::initial()).is_err());
    o.caps.four_octet_as = Some(4_200_000_001);
    let b = encode(&Message::Open(o.clone()), &WireContext::initial()).unwrap();
    assert_eq!(&b[20..22], &[0x5b, 0xa0]);
    assert_eq!(decoded(&b), o);
}

#[test]
fn negotiation() {
    let mk = |caps: Capabilities| Open {
        asn: 65000,
        hold_time: 90,
        router_id: Ipv4Addr::new(1, 1, 1, 1),
        caps,
    };
    let local = mk(Capabilities {
        four_octet_as: Some(65000),
        extended_message: true,
        add_path: vec![
            (Family::Ipv4Unicast, AddPathMode::Both),
            (Family::Ipv6Unicast, AddPathMode::Receive),
        ],
        ..Default::default()
    });
    let remote = mk(Capabilities {
        four_octet_as: Some(65001),
        add_path: vec![
            (Family::Ipv4Unicast, AddPathMode::Receive),
            (Family::Ipv6Unicast, AddPathMode::Both),
        ],
        ..Default::default()
    });
    let ctx = WireContext::negotiated(&local, &remote);
    assert!(ctx.four_octet_as && !ctx.extended_message);
    assert_eq!(ctx.add_path_rx, vec![Family::Ipv6Unicast]);
    assert_eq!(ctx.add_path_tx, vec![Family::Ipv4Unicast]);
    assert_eq!(ctx.max_message_len(), 4096);
    let both_ext = mk(Capabilities {
        extended_message: true,
        ..Default::default()
    });
    let ctx = WireContext::negotiated(&both_ext, &both_ext);
    assert!(!ctx.four_octet_as);
    assert_eq!(ctx.max_message_len(), 65535);
    assert_eq!(WireContext::initial().max_message_len(), 4096);
}
