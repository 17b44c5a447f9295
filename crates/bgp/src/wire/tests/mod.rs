//! Wire-format tests: hand-built RFC vectors (both directions), RFC 7606
//! outcomes, length limits, UPDATE packing and fuzz regressions.

mod limits;
mod open;
mod pack;
mod rfc7606;
mod roundtrip;
mod vectors;

use super::*;

/// Hex string (whitespace ignored) to bytes.
pub(super) fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    assert!(digits.len().is_multiple_of(2), "odd hex length");
    digits
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
        .collect()
}

pub(super) const MARKER: &str = "ffffffffffffffffffffffffffffffff";

/// A full message: marker, length, type, body.
pub(super) fn msg(ty: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![0xff; 16];
    m.extend_from_slice(&((body.len() + 19) as u16).to_be_bytes());
    m.push(ty);
    m.extend_from_slice(body);
    m
}

/// An UPDATE from raw withdrawn, attribute and NLRI bytes.
pub(super) fn update(withdrawn: &[u8], attrs: &[u8], nlri: &[u8]) -> Vec<u8> {
    let mut b = (withdrawn.len() as u16).to_be_bytes().to_vec();
    b.extend_from_slice(withdrawn);
    b.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    b.extend_from_slice(attrs);
    b.extend_from_slice(nlri);
    msg(2, &b)
}

pub(super) fn ctx4() -> WireContext {
    WireContext {
        four_octet_as: true,
        ..WireContext::default()
    }
}

pub(super) fn net(s: &str) -> Nlri {
    Nlri::new(s.parse().unwrap())
}

pub(super) fn seq(asns: &[u32]) -> AsSegment {
    AsSegment {
        kind: AsSegmentKind::Sequence,
        asns: asns.to_vec(),
    }
}

/// Asserts `bytes` decodes cleanly to `m` and `m` encodes to `bytes`.
pub(super) fn both_ways(bytes: &[u8], m: &Message, ctx: &WireContext) {
    let rx = decode(bytes, ctx).expect("decode");
    assert_eq!(&rx.message, m, "decode");
    assert!(rx.errors.is_empty(), "unexpected errors {:?}", rx.errors);
    let enc = encode(m, ctx).expect("encode");
    assert_eq!(enc.as_ref(), bytes, "encode");
}

pub(super) fn update_msg(rx: &Received) -> &Update {
    match &rx.message {
        Message::Update(u) => u,
        other => panic!("expected UPDATE, got {other:?}"),
    }
}
