//! Length limits (RFC 4271 §4.1/§6.1, RFC 8654) on read (FrameCodec,
//! decode) and on write (encode), plus header and short-message errors.

use super::*;
use bytes::BytesMut;
use std::net::Ipv4Addr;
use std::sync::Arc;
use tokio_util::codec::{Decoder, Encoder};

fn header_err(codec: &mut FrameCodec, bytes: &[u8]) -> Notification {
    match codec.decode(&mut BytesMut::from(bytes)) {
        Err(FrameError::Header(n)) => n,
        other => panic!("expected a header error, got {other:?}"),
    }
}

/// A syntactically valid UPDATE of exactly `len` bytes: withdrawals of
/// 0.0.0.0/0, one byte each.
fn big_update(len: usize) -> Vec<u8> {
    let m = update(&vec![0u8; len - 23], &[], &[]);
    assert_eq!(m.len(), len);
    m
}

#[test]
fn frame_codec_validates_header() {
    let mut c = FrameCodec::new(4096);
    let n = header_err(&mut c, &hex("ffffffffffffffffffffffffffff00ff 0013 04"));
    assert_eq!((n.code, n.subcode, n.data), (1, 1, vec![]));
    // A bad marker is caught before the header is complete.
    assert_eq!(header_err(&mut c, &[0xff, 0x00]).subcode, 1);
    let n = header_err(&mut c, &hex(&format!("{MARKER} 0012 04")));
    assert_eq!((n.code, n.subcode, n.data), (1, 2, vec![0x00, 0x12]));
    let n = header_err(&mut c, &hex(&format!("{MARKER} 0013 06")));
    assert_eq!((n.code, n.subcode, n.data), (1, 3, vec![6]));
    let n = header_err(&mut c, &hex(&format!("{MARKER} 0013 00")));
    assert_eq!((n.code, n.subcode, n.data), (1, 3, vec![0]));
}

#[test]
fn frame_codec_length_limit_4096_vs_65535() {
    let m = big_update(4097);
    let mut c = FrameCodec::new(4096);
    let n = header_err(&mut c, &m);
    assert_eq!((n.code, n.subcode, n.data), (1, 2, vec![0x10, 0x01]));
    let ok = big_update(4096);
    assert_eq!(
        c.decode(&mut BytesMut::from(&ok[..]))
            .unwrap()
            .unwrap()
            .len(),
        4096
    );
    c.set_max_len(65535);
    assert_eq!(c.max_len(), 65535);
    let mut buf = BytesMut::from(&m[..]);
    assert_eq!(c.decode(&mut buf).unwrap().unwrap().as_ref(), &m[..]);
    assert!(buf.is_empty());
    let max = big_update(65535);
    assert_eq!(
        c.decode(&mut BytesMut::from(&max[..]))
            .unwrap()
            .unwrap()
            .len(),
        65535
    );
}

#[test]
fn frame_codec_reassembles_partial_and_splits_coalesced() {
    let ka = hex(&format!("{MARKER} 0013 04"));
    let mut stream = ka.clone();
    stream.extend_from_slice(&big_update(100));
    stream.extend_from_slice(&ka);
    let mut c = FrameCodec::default();
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    for piece in stream.chunks(7) {
        buf.extend_from_slice(piece);
        while let Some(f) = c.decode(&mut buf).unwrap() {
            frames.push(f);
        }
    }
    assert_eq!(
        frames.iter().map(|f| f.len()).collect::<Vec<_>>(),
        vec![19, 100, 19]
    );
    let mut out = BytesMut::new();
    for f in frames {
        c.encode(f, &mut out).unwrap();
    }
    assert_eq!(&out[..], &stream[..]);
}

#[test]
fn decode_enforces_negotiated_length() {
    let m = big_update(5000);
    let e = decode(&m, &ctx4()).unwrap_err();
    assert_eq!(e.notification(), Notification::new(1, 2, vec![0x13, 0x88]));
    let ext = WireContext {
        extended_message: true,
        ..ctx4()
    };
    assert!(decode(&m, &ext).is_ok());
    // OPEN stays limited to 4096 even with extended messages (RFC 8654 §3).
    let mut big_open = vec![4, 0xfd, 0xe8, 0, 90, 1, 1, 1, 1, 0];
    big_open.resize(5000 - 19, 0);
    let e = decode(&msg(1, &big_open), &ext).unwrap_err();
    assert_eq!(e.notification(), Notification::new(1, 2, vec![0x13, 0x88]));
    // Frame shorter than its length field.
    let e = decode(&m[..4000], &ext).unwrap_err();
    assert_eq!((e.notification().code, e.notification().subcode), (1, 2));
}

#[test]
fn per_type_minimum_lengths() {
    let ctx = ctx4();
    let n = decode(&msg(4, &[0]), &ctx).unwrap_err().notification();
    assert_eq!((n.code, n.subcode, n.data), (1, 2, vec![0, 20]));
    let n = decode(&msg(3, &[6]), &ctx).unwrap_err().notification();
    assert_eq!((n.code, n.subcode, n.data), (1, 2, vec![0, 20]));
    let n = decode(&msg(2, &[0, 0, 0]), &ctx)
        .unwrap_err()
        .notification();
    assert_eq!((n.code, n.subcode, n.data), (1, 2, vec![0, 22]));
    // ROUTE-REFRESH of the wrong length: 7/1 with the whole message (RFC 7313 §5).
    let rr = msg(5, &[0, 1, 0, 1, 0]);
    let n = decode(&rr, &ctx).unwrap_err().notification();
    assert_eq!((n.code, n.subcode, n.data), (7, 1, rr));
    // NOTIFICATION with just code/subcode is fine.
    let m = decode(&msg(3, &[4, 0]), &ctx).unwrap().message;
    assert_eq!(m, Message::Notification(Notification::new(4, 0, vec![])));
}

#[test]
fn unsupported_route_refresh_is_not_fatal() {
    for body in [[0u8, 1, 0, 128], [0, 25, 0, 65], [0, 1, 3, 1]] {
        let e = decode(&msg(5, &body), &ctx4()).unwrap_err();
        assert!(!e.is_fatal(), "{e}");
    }
}

fn many_v4(n: usize) -> Vec<Nlri> {
    (0..n)
        .map(|i| Nlri::new(format!("10.{}.{}.0/24", i / 256, i % 256).parse().unwrap()))
        .collect()
}

#[test]
fn encode_refuses_messages_over_the_limit() {
    let pa = PathAttributes {
        origin: Some(Origin::Igp),
        next_hop: Some(Ipv4Addr::new(10, 0, 0, 1)),
        ..Default::default()
    };
    let u = Message::Update(Update {
        withdrawn: vec![],
        attrs: Some(Arc::new(pa)),
        announced: many_v4(1100),
    });
    // 1100 * 4 bytes of NLRI: over 4096, under 65535.
    match encode(&u, &ctx4()) {
        Err(EncodeError::TooLong { len, max: 4096 }) => assert!(len > 4096),
        other => panic!("{other:?}"),
    }
    let ext = WireContext {
        extended_message: true,
        ..ctx4()
    };
    let b = encode(&u, &ext).unwrap();
    assert!(b.len() > 4096);
    assert_eq!(usize::from(u16::from_be_bytes([b[16], b[17]])), b.len());
    assert_eq!(decode(&b, &ext).unwrap().message, u);
    // Over 65535: netgauze would silently truncate the length field; we refuse.
    let huge = Message::Update(Update {
        withdrawn: many_v4(17000),
        attrs: None,
        announced: vec![],
    });
    assert!(matches!(
        encode(&huge, &ext),
        Err(EncodeError::TooLong { max: 65535, .. })
    ));
    // NOTIFICATION data obeys the limit too.
    let n = Message::Notification(Notification::new(6, 2, vec![0; 4096]));
    assert!(matches!(
        encode(&n, &ctx4()),
        Err(EncodeError::TooLong { .. })
    ));
    assert!(encode(&n, &ext).is_ok());
}
