//! Per-attribute value parsing for UPDATE decoding (RFC 4271 §5, RFC 6793,
//! RFC 1997, RFC 4360, RFC 8092, RFC 4456) with the RFC 7606 §7 validity rules.
//!
//! Fixed-format attributes (ORIGIN, NEXT_HOP, MED, LOCAL_PREF,
//! ATOMIC_AGGREGATE, AGGREGATOR, ORIGINATOR_ID) are parsed by netgauze;
//! AS_PATH/AS4_PATH are parsed here because netgauze has no confederation
//! segment types (RFC 5065), and list attributes are plain fixed-size chunks.

use crate::wire::types::{AsSegment, AsSegmentKind, Origin};
use netgauze_bgp_pkt::path_attribute::{Aggregator, PathAttribute, PathAttributeValue};
use netgauze_bgp_pkt::wire::deserializer::BgpParsingContext;
use netgauze_parse_utils::reader::SliceReader;
use netgauze_parse_utils::traits::ParseFromWithOneInput;
use std::collections::HashMap;
use std::net::Ipv4Addr;

/// Attribute type codes.
pub(crate) mod code {
    pub const ORIGIN: u8 = 1;
    pub const AS_PATH: u8 = 2;
    pub const NEXT_HOP: u8 = 3;
    pub const MED: u8 = 4;
    pub const LOCAL_PREF: u8 = 5;
    pub const ATOMIC_AGGREGATE: u8 = 6;
    pub const AGGREGATOR: u8 = 7;
    pub const COMMUNITIES: u8 = 8;
    pub const ORIGINATOR_ID: u8 = 9;
    pub const CLUSTER_LIST: u8 = 10;
    pub const MP_REACH: u8 = 14;
    pub const MP_UNREACH: u8 = 15;
    pub const EXT_COMMUNITIES: u8 = 16;
    pub const AS4_PATH: u8 = 17;
    pub const AS4_AGGREGATOR: u8 = 18;
    pub const LARGE_COMMUNITIES: u8 = 32;
}

pub(crate) const FLAG_OPTIONAL: u8 = 0x80;
pub(crate) const FLAG_TRANSITIVE: u8 = 0x40;
pub(crate) const FLAG_PARTIAL: u8 = 0x20;
pub(crate) const FLAG_EXTENDED: u8 = 0x10;

/// The Optional and Transitive bits an attribute must carry, for the
/// attributes petrel knows.
pub(crate) fn expected_flags(c: u8) -> Option<u8> {
    use code::*;
    match c {
        ORIGIN | AS_PATH | NEXT_HOP | LOCAL_PREF | ATOMIC_AGGREGATE => Some(FLAG_TRANSITIVE),
        MED | ORIGINATOR_ID | CLUSTER_LIST | MP_REACH | MP_UNREACH => Some(FLAG_OPTIONAL),
        AGGREGATOR | COMMUNITIES | EXT_COMMUNITIES | AS4_PATH | AS4_AGGREGATOR
        | LARGE_COMMUNITIES => Some(FLAG_OPTIONAL | FLAG_TRANSITIVE),
        _ => None,
    }
}

pub(crate) type Malformed = String;

/// Parses one attribute value with netgauze, after re-framing it with the
/// canonical flags so that only the value is judged.
fn netgauze_value(c: u8, value: &[u8], asn4: bool) -> Result<PathAttributeValue, Malformed> {
    let mut buf = Vec::with_capacity(value.len() + 4);
    let flags = expected_flags(c).unwrap_or(FLAG_OPTIONAL | FLAG_TRANSITIVE);
    match u8::try_from(value.len()) {
        Ok(l) => buf.extend_from_slice(&[flags, c, l]),
        Err(_) => {
            let l = u16::try_from(value.len()).map_err(|_| "attribute too long".to_string())?;
            buf.extend_from_slice(&[flags | FLAG_EXTENDED, c]);
            buf.extend_from_slice(&l.to_be_bytes());
        }
    }
    buf.extend_from_slice(value);
    let mut ctx =
        BgpParsingContext::new(asn4, HashMap::new(), HashMap::new(), true, true, true, true);
    let mut cur = SliceReader::new(&buf);
    let attr = PathAttribute::parse(&mut cur, &mut ctx).map_err(|e| e.to_string())?;
    if !cur.is_empty() {
        return Err(format!("{} trailing bytes", cur.remaining()));
    }
    Ok(attr.value().clone())
}

fn want_len(value: &[u8], len: usize) -> Result<(), Malformed> {
    if value.len() == len {
        Ok(())
    } else {
        Err(format!("length {} (expected {len})", value.len()))
    }
}

pub(crate) fn origin(v: &[u8]) -> Result<Origin, Malformed> {
    want_len(v, 1)?;
    match netgauze_value(code::ORIGIN, v, true)? {
        PathAttributeValue::Origin(o) => Ok(match o as u8 {
            0 => Origin::Igp,
            1 => Origin::Egp,
            _ => Origin::Incomplete,
        }),
        _ => Err("not an ORIGIN".into()),
    }
}

/// NEXT_HOP (RFC 4271 §5.1.3). RFC 7606 §7.3: a semantically invalid address
/// (unspecified, loopback, multicast, broadcast) is also malformed.
pub(crate) fn next_hop(v: &[u8]) -> Result<Ipv4Addr, Malformed> {
    want_len(v, 4)?;
    let PathAttributeValue::NextHop(nh) = netgauze_value(code::NEXT_HOP, v, true)? else {
        return Err("not a NEXT_HOP".into());
    };
    let a = nh.next_hop();
    if a.is_unspecified() || a.is_loopback() || a.is_multicast() || a.is_broadcast() {
        return Err(format!("semantically invalid next hop {a}"));
    }
    Ok(a)
}

pub(crate) fn u32_attr(c: u8, v: &[u8]) -> Result<u32, Malformed> {
    want_len(v, 4)?;
    match netgauze_value(c, v, true)? {
        PathAttributeValue::MultiExitDiscriminator(m) => Ok(m.metric()),
        PathAttributeValue::LocalPreference(l) => Ok(l.metric()),
        _ => Err("unexpected attribute".into()),
    }
}

pub(crate) fn atomic_aggregate(v: &[u8]) -> Result<(), Malformed> {
    want_len(v, 0)?;
    netgauze_value(code::ATOMIC_AGGREGATE, v, true).map(|_| ())
}

/// AGGREGATOR: 6 bytes on a 2-octet session, 8 on a 4-octet one (RFC 6793 §3);
/// AS 0 is malformed (RFC 7607 §2).
pub(crate) fn aggregator(v: &[u8], asn4: bool) -> Result<(u32, Ipv4Addr), Malformed> {
    want_len(v, if asn4 { 8 } else { 6 })?;
    let (asn, ip) = match netgauze_value(code::AGGREGATOR, v, asn4)? {
        PathAttributeValue::Aggregator(Aggregator::As2Aggregator(a)) => {
            (u32::from(*a.asn()), a.origin())
        }
        PathAttributeValue::Aggregator(Aggregator::As4Aggregator(a)) => (*a.asn(), a.origin()),
        _ => return Err("not an AGGREGATOR".into()),
    };
    if asn == 0 {
        return Err("aggregator AS 0".into());
    }
    Ok((asn, ip))
}

/// AS4_AGGREGATOR (RFC 6793 §5): always 8 bytes; netgauze has no type for it.
pub(crate) fn as4_aggregator(v: &[u8]) -> Result<(u32, Ipv4Addr), Malformed> {
    let b: [u8; 8] = v
        .try_into()
        .map_err(|_| format!("length {} (expected 8)", v.len()))?;
    let asn = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    if asn == 0 {
        return Err("aggregator AS 0".into());
    }
    Ok((asn, Ipv4Addr::new(b[4], b[5], b[6], b[7])))
}

pub(crate) fn originator_id(v: &[u8]) -> Result<Ipv4Addr, Malformed> {
    want_len(v, 4)?;
    match netgauze_value(code::ORIGINATOR_ID, v, true)? {
        PathAttributeValue::Originator(o) => Ok(o.id()),
        _ => Err("not an ORIGINATOR_ID".into()),
    }
}

/// A non-empty list of `N`-byte items (RFC 7606 §7.8, §7.10, §7.14; RFC 8092 §11).
pub(crate) fn chunks<const N: usize>(v: &[u8]) -> Result<Vec<[u8; N]>, Malformed> {
    if v.is_empty() || !v.len().is_multiple_of(N) {
        return Err(format!(
            "length {} is not a non-zero multiple of {N}",
            v.len()
        ));
    }
    Ok(v.chunks_exact(N)
        .filter_map(|c| <[u8; N]>::try_from(c).ok())
        .collect())
}

/// AS_PATH or AS4_PATH segments (RFC 4271 §4.3, RFC 5065 §3, RFC 7606 §7.2).
/// `width` is 2 or 4. Zero-length segments, unknown segment types and any
/// overrun or trailing byte are malformed.
pub(crate) fn as_path(mut v: &[u8], width: usize) -> Result<Vec<AsSegment>, Malformed> {
    let mut segs = Vec::new();
    while !v.is_empty() {
        let [ty, count, ..] = *v else {
            return Err("truncated segment header".into());
        };
        let kind = match ty {
            1 => AsSegmentKind::Set,
            2 => AsSegmentKind::Sequence,
            3 => AsSegmentKind::ConfedSequence,
            4 => AsSegmentKind::ConfedSet,
            _ => return Err(format!("segment type {ty}")),
        };
        if count == 0 {
            return Err("zero-length segment".into());
        }
        let n = usize::from(count) * width;
        let Some(body) = v.get(2..2 + n) else {
            return Err(format!("segment of {count} ASes overruns the attribute"));
        };
        let asns = body
            .chunks_exact(width)
            .map(|c| c.iter().fold(0u32, |acc, &b| (acc << 8) | u32::from(b)))
            .collect();
        segs.push(AsSegment { kind, asns });
        v = &v[2 + n..];
    }
    Ok(segs)
}

/// Number of ASes an AS path counts for in path length (RFC 4271 §9.1.2.2,
/// RFC 5065 §5.3: a set counts 1, confederation segments 0).
fn path_len(segs: &[AsSegment]) -> usize {
    segs.iter()
        .map(|s| match s.kind {
            AsSegmentKind::Sequence => s.asns.len(),
            AsSegmentKind::Set => 1,
            _ => 0,
        })
        .sum()
}

/// RFC 6793 §4.2.3: reconstruct the path from AS_PATH and AS4_PATH.
/// Confederation segments in AS4_PATH are ignored; if AS_PATH is shorter
/// than AS4_PATH, AS4_PATH is ignored.
pub(crate) fn merge_as4_path(as_path: &[AsSegment], as4: Vec<AsSegment>) -> Vec<AsSegment> {
    let as4: Vec<AsSegment> = as4
        .into_iter()
        .filter(|s| matches!(s.kind, AsSegmentKind::Sequence | AsSegmentKind::Set))
        .collect();
    let (n, n4) = (path_len(as_path), path_len(&as4));
    if n < n4 {
        return as_path.to_vec();
    }
    let mut keep = n - n4;
    let mut out = Vec::new();
    for s in as_path {
        if keep == 0 {
            break;
        }
        match s.kind {
            AsSegmentKind::Sequence => {
                let take = keep.min(s.asns.len());
                out.push(AsSegment {
                    kind: s.kind,
                    asns: s.asns[..take].to_vec(),
                });
                keep -= take;
            }
            AsSegmentKind::Set => {
                out.push(s.clone());
                keep -= 1;
            }
            _ => out.push(s.clone()),
        }
    }
    // Join the kept prefix and AS4_PATH where one sequence was split.
    let mut as4 = as4.into_iter();
    if let Some(first) = as4.next() {
        match out.last_mut() {
            Some(last)
                if last.kind == AsSegmentKind::Sequence
                    && first.kind == AsSegmentKind::Sequence
                    && last.asns.len() + first.asns.len() <= 255 =>
            {
                last.asns.extend(first.asns)
            }
            _ => out.push(first),
        }
    }
    out.extend(as4);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(asns: &[u32]) -> AsSegment {
        AsSegment {
            kind: AsSegmentKind::Sequence,
            asns: asns.to_vec(),
        }
    }

    #[test]
    fn merge_replaces_as_trans_tail() {
        let p = vec![seq(&[65001, 23456, 23456])];
        let merged = merge_as4_path(&p, vec![seq(&[4200000001, 4200000002])]);
        assert_eq!(merged, vec![seq(&[65001, 4200000001, 4200000002])]);
        // AS4_PATH longer than AS_PATH: ignored.
        assert_eq!(merge_as4_path(&p, vec![seq(&[1, 2, 3, 4])]), p);
    }

    #[test]
    fn merge_keeps_as4_segment_structure() {
        // Regression (found by the round-trip property test): AS4_PATH
        // segments must not be joined with each other, only with the kept
        // AS_PATH prefix.
        let p = vec![seq(&[1]), seq(&[23456])];
        let as4 = vec![seq(&[1]), seq(&[65536])];
        assert_eq!(merge_as4_path(&p, as4.clone()), as4);
        let set = AsSegment {
            kind: AsSegmentKind::Set,
            asns: vec![65536, 65537],
        };
        let p = vec![
            seq(&[64512, 23456]),
            AsSegment {
                kind: AsSegmentKind::Set,
                asns: vec![23456],
            },
        ];
        let merged = merge_as4_path(&p, vec![seq(&[4_200_000_000]), set.clone()]);
        assert_eq!(merged, vec![seq(&[64512, 4_200_000_000]), set]);
    }

    #[test]
    fn as_path_rejects_malformed() {
        assert!(as_path(&[2, 0], 4).is_err());
        assert!(as_path(&[5, 1, 0, 1], 2).is_err());
        assert!(as_path(&[2, 2, 0, 1, 0], 2).is_err());
        assert!(as_path(&[2, 1, 0, 1, 9], 2).is_err());
        let ok = as_path(&[3, 1, 0, 0, 0xfd, 0xe8, 2, 1, 0, 0, 0xfd, 0xe9], 4).unwrap();
        assert_eq!(ok[0].kind, AsSegmentKind::ConfedSequence);
        assert_eq!(ok[1], seq(&[65001]));
    }
}
