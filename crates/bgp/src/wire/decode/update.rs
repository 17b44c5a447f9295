//! UPDATE decoding with RFC 7606 error handling (RFC 4271 §4.3/§6.3,
//! RFC 4760 MP_REACH/MP_UNREACH, RFC 7911 ADD-PATH, RFC 6793 AS4_PATH
//! merge, RFC 4724 End-of-RIB).

use super::Received;
use super::attrs::{self, FLAG_EXTENDED, FLAG_OPTIONAL, FLAG_PARTIAL, FLAG_TRANSITIVE, code};
use super::nlri::parse_prefixes;
use crate::wire::context::WireContext;
use crate::wire::error::{AttrAction, AttributeError, DecodeError};
use crate::wire::notification as n;
use crate::wire::types::{Family, Message, MpNextHop, Nlri, PathAttributes, RawAttribute, Update};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

/// Largest NOTIFICATION data we put in a reset, so the NOTIFICATION fits in
/// a 4096-byte message.
const MAX_NOTIFICATION_DATA: usize = 4096 - 21;

fn attr_data(raw: &[u8]) -> Vec<u8> {
    raw[..raw.len().min(MAX_NOTIFICATION_DATA)].to_vec()
}

/// RFC 7606 §7 action for a malformed attribute petrel knows.
fn malformed_action(c: u8) -> AttrAction {
    match c {
        code::ATOMIC_AGGREGATE | code::AGGREGATOR | code::AS4_PATH | code::AS4_AGGREGATOR => {
            AttrAction::Discard
        }
        _ => AttrAction::TreatAsWithdraw,
    }
}

#[derive(Default)]
struct State {
    pa: PathAttributes,
    announced: Vec<Nlri>,
    withdrawn: Vec<Nlri>,
    errors: Vec<AttributeError>,
    seen: Vec<bool>,
    has_as_path: bool,
    as4_path: Option<Vec<crate::wire::types::AsSegment>>,
    as4_aggregator: Option<(u32, Ipv4Addr)>,
    withdraw_all: bool,
    attr_count: usize,
    /// Family of an empty MP_UNREACH (End-of-RIB candidate).
    empty_unreach: Option<Family>,
}

impl State {
    fn note(&mut self, c: u8, action: AttrAction, reason: impl Into<String>) {
        if action == AttrAction::TreatAsWithdraw {
            self.withdraw_all = true;
        }
        self.errors.push(AttributeError {
            code: c,
            action,
            reason: reason.into(),
        });
    }
}

pub(super) fn decode_update(
    body: &[u8],
    declared: u16,
    ctx: &WireContext,
) -> Result<Received, DecodeError> {
    let malformed_list =
        |reason: String| DecodeError::update(n::UPD_MALFORMED_ATTRIBUTE_LIST, Vec::new(), reason);
    if body.len() < 4 {
        return Err(DecodeError::bad_length(
            declared,
            "UPDATE shorter than 23 bytes",
        ));
    }
    // RFC 4271 §6.3: lengths that overrun the message => Malformed Attribute List.
    let wlen = usize::from(u16::from_be_bytes([body[0], body[1]]));
    let Some(wbuf) = body.get(2..2 + wlen) else {
        return Err(malformed_list(format!(
            "withdrawn routes length {wlen} overruns the message"
        )));
    };
    let rest = &body[2 + wlen..];
    let Some(&[h, l]) = rest.first_chunk::<2>() else {
        return Err(malformed_list(
            "no room for the total path attribute length".into(),
        ));
    };
    let alen = usize::from(u16::from_be_bytes([h, l]));
    let Some(abuf) = rest.get(2..2 + alen) else {
        return Err(malformed_list(format!(
            "total path attribute length {alen} overruns the message"
        )));
    };
    let nlri_buf = &rest[2 + alen..];

    let invalid_network = |what: &str, e: String| {
        DecodeError::update(
            n::UPD_INVALID_NETWORK_FIELD,
            Vec::new(),
            format!("{what}: {e}"),
        )
    };
    let v4_ap = ctx.rx_add_path(Family::Ipv4Unicast);
    let mut st = State {
        withdrawn: parse_prefixes(wbuf, Family::Ipv4Unicast, v4_ap)
            .map_err(|e| invalid_network("withdrawn routes", e))?,
        seen: vec![false; 256],
        ..State::default()
    };
    let classic_nlri = parse_prefixes(nlri_buf, Family::Ipv4Unicast, v4_ap)
        .map_err(|e| invalid_network("NLRI", e))?;

    walk_attributes(abuf, ctx, &mut st)?;

    let has_classic_nlri = !classic_nlri.is_empty();
    st.announced.extend(classic_nlri);

    // End-of-RIB (RFC 4724 §2).
    if st.withdrawn.is_empty() && st.announced.is_empty() && st.errors.is_empty() {
        if abuf.is_empty() {
            return Ok(Received {
                message: Message::EndOfRib(Family::Ipv4Unicast),
                errors: Vec::new(),
            });
        }
        if let (1, Some(fam)) = (st.attr_count, st.empty_unreach) {
            return Ok(Received {
                message: Message::EndOfRib(fam),
                errors: Vec::new(),
            });
        }
    }

    // RFC 6793 §4.2.3: on a 2-octet session, rebuild the real path and
    // aggregator. When AGGREGATOR (not AS_TRANS) and AS4_AGGREGATOR are both
    // present, the aggregation happened at an old speaker: AS4_AGGREGATOR
    // and AS4_PATH are ignored. AS4_AGGREGATOR without AGGREGATOR is ignored.
    if !ctx.four_octet_as {
        let as4_agg = st.as4_aggregator.take();
        let stale = match (st.pa.aggregator, as4_agg) {
            (Some((asn, _)), Some(_)) if asn != 23456 => true,
            (Some(_), Some(a4)) => {
                st.pa.aggregator = Some(a4);
                false
            }
            _ => false,
        };
        if let Some(p4) = st.as4_path.take().filter(|_| !stale) {
            st.pa.as_path = attrs::merge_as4_path(&st.pa.as_path, p4);
        }
    }

    // RFC 7606 §3.d: missing well-known mandatory attributes.
    if !st.announced.is_empty() && !st.withdraw_all {
        if st.pa.origin.is_none() {
            st.note(
                code::ORIGIN,
                AttrAction::TreatAsWithdraw,
                "missing well-known attribute ORIGIN",
            );
        }
        if !st.has_as_path {
            st.note(
                code::AS_PATH,
                AttrAction::TreatAsWithdraw,
                "missing well-known attribute AS_PATH",
            );
        }
        if has_classic_nlri && st.pa.next_hop.is_none() {
            st.note(
                code::NEXT_HOP,
                AttrAction::TreatAsWithdraw,
                "missing well-known attribute NEXT_HOP",
            );
        }
    }

    let mut update = Update {
        withdrawn: st.withdrawn,
        attrs: None,
        announced: Vec::new(),
    };
    if st.withdraw_all {
        update.withdrawn.extend(st.announced);
    } else {
        update.announced = st.announced;
        if st.pa != PathAttributes::default() || st.has_as_path {
            update.attrs = Some(Arc::new(st.pa));
        }
    }
    Ok(Received {
        message: Message::Update(update),
        errors: st.errors,
    })
}

fn walk_attributes(mut buf: &[u8], ctx: &WireContext, st: &mut State) -> Result<(), DecodeError> {
    while !buf.is_empty() {
        // RFC 7606 §4: an attribute that overruns the attribute list => treat-as-withdraw,
        // the NLRI field is still located by the Total Path Attribute Length.
        let (flags, c) = match *buf {
            [f, c, ..] => (f, c),
            _ => {
                st.note(
                    0,
                    AttrAction::TreatAsWithdraw,
                    "attribute list ends inside an attribute header",
                );
                return Ok(());
            }
        };
        let hdr = if flags & FLAG_EXTENDED != 0 { 4 } else { 3 };
        let Some(lenb) = buf.get(2..hdr) else {
            st.note(
                c,
                AttrAction::TreatAsWithdraw,
                "attribute list ends inside an attribute header",
            );
            return Ok(());
        };
        let len = lenb
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        let Some(value) = buf.get(hdr..hdr + len) else {
            st.note(
                c,
                AttrAction::TreatAsWithdraw,
                format!("attribute length {len} overruns the attribute list"),
            );
            return Ok(());
        };
        let raw = &buf[..hdr + len];
        buf = &buf[hdr + len..];
        st.attr_count += 1;

        // RFC 7606 §3.g: repeated MP_REACH/MP_UNREACH => reset; others: keep the first.
        if st.seen[usize::from(c)] {
            if c == code::MP_REACH || c == code::MP_UNREACH {
                return Err(DecodeError::update(
                    n::UPD_MALFORMED_ATTRIBUTE_LIST,
                    Vec::new(),
                    format!("attribute {c} appears more than once"),
                ));
            }
            st.note(
                c,
                AttrAction::Discard,
                "repeated attribute, first occurrence kept",
            );
            continue;
        }
        st.seen[usize::from(c)] = true;
        attribute(flags, c, value, raw, ctx, st)?;
    }
    Ok(())
}

fn attribute(
    flags: u8,
    c: u8,
    v: &[u8],
    raw: &[u8],
    ctx: &WireContext,
    st: &mut State,
) -> Result<(), DecodeError> {
    let Some(expected) = attrs::expected_flags(c) else {
        return unknown_attribute(flags, c, v, raw, st);
    };
    let ot = flags & (FLAG_OPTIONAL | FLAG_TRANSITIVE);
    if ot != expected {
        if c == code::MP_REACH || c == code::MP_UNREACH {
            return Err(DecodeError::update(
                n::UPD_ATTRIBUTE_FLAGS_ERROR,
                attr_data(raw),
                format!("attribute {c} flags {flags:#04x}"),
            ));
        }
        // RFC 7606 §3.c: flag conflicts make the attribute malformed.
        st.note(
            c,
            malformed_action(c),
            format!("attribute flags {flags:#04x} conflict with the type"),
        );
        return Ok(());
    }
    let asn4 = ctx.four_octet_as;
    // RFC 7606 §7.5, §7.9, §7.10 (and RFC 4271 §5.1.5): from an external
    // peer these are discarded, well-formed or not; only a malformed one is
    // reported.
    if ctx.ebgp
        && matches!(
            c,
            code::LOCAL_PREF | code::ORIGINATOR_ID | code::CLUSTER_LIST
        )
    {
        let check = match c {
            code::LOCAL_PREF => attrs::u32_attr(c, v).map(drop),
            code::ORIGINATOR_ID => attrs::originator_id(v).map(drop),
            _ => attrs::chunks::<4>(v).map(drop),
        };
        if let Err(reason) = check {
            st.note(
                c,
                AttrAction::Discard,
                format!("{reason} (from an external peer)"),
            );
        }
        return Ok(());
    }
    let res: Result<(), attrs::Malformed> = match c {
        code::ORIGIN => attrs::origin(v).map(|o| st.pa.origin = Some(o)),
        code::AS_PATH => attrs::as_path(v, if asn4 { 4 } else { 2 }).map(|p| {
            st.pa.as_path = p;
            st.has_as_path = true;
        }),
        code::NEXT_HOP => attrs::next_hop(v).map(|a| st.pa.next_hop = Some(a)),
        code::MED => attrs::u32_attr(c, v).map(|m| st.pa.med = Some(m)),
        code::LOCAL_PREF => attrs::u32_attr(c, v).map(|m| st.pa.local_pref = Some(m)),
        code::ATOMIC_AGGREGATE => {
            attrs::atomic_aggregate(v).map(|()| st.pa.atomic_aggregate = true)
        }
        code::AGGREGATOR => attrs::aggregator(v, asn4).map(|a| st.pa.aggregator = Some(a)),
        code::COMMUNITIES => attrs::chunks::<4>(v)
            .map(|cs| st.pa.communities = cs.into_iter().map(u32::from_be_bytes).collect()),
        code::ORIGINATOR_ID => attrs::originator_id(v).map(|a| st.pa.originator_id = Some(a)),
        code::CLUSTER_LIST => attrs::chunks::<4>(v)
            .map(|cs| st.pa.cluster_list = cs.into_iter().map(Ipv4Addr::from).collect()),
        code::EXT_COMMUNITIES => attrs::chunks::<8>(v).map(|cs| st.pa.ext_communities = cs),
        code::LARGE_COMMUNITIES => attrs::chunks::<12>(v).map(|cs| {
            st.pa.large_communities = cs
                .into_iter()
                .map(|b| {
                    let w = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
                    [w(0), w(4), w(8)]
                })
                .collect()
        }),
        // RFC 6793 §4.1: a 4-octet speaker ignores AS4_PATH/AS4_AGGREGATOR from a 4-octet peer.
        code::AS4_PATH if asn4 => Ok(()),
        code::AS4_AGGREGATOR if asn4 => Ok(()),
        code::AS4_PATH => attrs::as_path(v, 4).map(|p| st.as4_path = Some(p)),
        code::AS4_AGGREGATOR => attrs::as4_aggregator(v).map(|a| st.as4_aggregator = Some(a)),
        code::MP_REACH => return mp_reach(v, raw, ctx, st),
        code::MP_UNREACH => return mp_unreach(v, raw, ctx, st),
        _ => return unknown_attribute(flags, c, v, raw, st),
    };
    if let Err(reason) = res {
        st.note(c, malformed_action(c), reason);
    }
    Ok(())
}

fn unknown_attribute(
    flags: u8,
    c: u8,
    v: &[u8],
    raw: &[u8],
    st: &mut State,
) -> Result<(), DecodeError> {
    if flags & FLAG_OPTIONAL == 0 {
        return Err(DecodeError::update(
            n::UPD_UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE,
            attr_data(raw),
            format!("unrecognized well-known attribute {c}"),
        ));
    }
    // RFC 4271 §5: unrecognized optional non-transitive attributes are quietly
    // ignored; optional transitive ones are kept with the Partial bit set.
    if flags & FLAG_TRANSITIVE != 0 {
        st.pa.unknown.push(RawAttribute {
            flags: (flags | FLAG_PARTIAL) & !FLAG_EXTENDED,
            code: c,
            value: v.to_vec(),
        });
    }
    Ok(())
}

fn mp_reset(raw: &[u8], reason: String) -> DecodeError {
    // RFC 7606 §7.11 / RFC 4760 §7: session reset with Optional Attribute Error.
    DecodeError::update(n::UPD_OPTIONAL_ATTRIBUTE_ERROR, attr_data(raw), reason)
}

fn mp_reach(v: &[u8], raw: &[u8], ctx: &WireContext, st: &mut State) -> Result<(), DecodeError> {
    let [a0, a1, safi, nh_len, ..] = *v else {
        return Err(mp_reset(
            raw,
            format!("MP_REACH_NLRI of length {}", v.len()),
        ));
    };
    let afi = u16::from_be_bytes([a0, a1]);
    let Some(fam) = Family::from_afi_safi(afi, safi) else {
        st.note(
            c_mp(true),
            AttrAction::Discard,
            format!("MP_REACH_NLRI for unsupported AFI {afi} SAFI {safi} ignored"),
        );
        return Ok(());
    };
    let nh_len = usize::from(nh_len);
    let Some(nh) = v.get(4..4 + nh_len) else {
        return Err(mp_reset(
            raw,
            format!("next hop length {nh_len} overruns MP_REACH_NLRI"),
        ));
    };
    // One reserved octet follows the next hop (RFC 4760 §3).
    let Some(nlri) = v.get(5 + nh_len..) else {
        return Err(mp_reset(
            raw,
            "MP_REACH_NLRI ends before the reserved octet".into(),
        ));
    };
    let v6 = |b: &[u8]| <[u8; 16]>::try_from(b).map(Ipv6Addr::from).ok();
    let next_hop = match (fam, nh_len) {
        (Family::Ipv4Unicast, 4) => <[u8; 4]>::try_from(nh).ok().map(|b| MpNextHop {
            global: IpAddr::V4(Ipv4Addr::from(b)),
            link_local: None,
        }),
        // RFC 8950 IPv6 next hop for IPv4 NLRI, and plain IPv6.
        (_, 16) => v6(nh).map(|g| MpNextHop {
            global: IpAddr::V6(g),
            link_local: None,
        }),
        (_, 32) => match (v6(&nh[..16]), v6(&nh[16..])) {
            (Some(g), Some(ll)) => Some(MpNextHop {
                global: IpAddr::V6(g),
                link_local: Some(ll),
            }),
            _ => None,
        },
        _ => None,
    };
    let Some(next_hop) = next_hop else {
        return Err(mp_reset(
            raw,
            format!("next hop length {nh_len} invalid for {}", fam.name()),
        ));
    };
    let prefixes = parse_prefixes(nlri, fam, ctx.rx_add_path(fam))
        .map_err(|e| mp_reset(raw, format!("MP_REACH_NLRI NLRI: {e}")))?;
    st.pa.mp_next_hop = Some(next_hop);
    st.announced.extend(prefixes);
    Ok(())
}

fn c_mp(reach: bool) -> u8 {
    if reach {
        code::MP_REACH
    } else {
        code::MP_UNREACH
    }
}

fn mp_unreach(v: &[u8], raw: &[u8], ctx: &WireContext, st: &mut State) -> Result<(), DecodeError> {
    let [a0, a1, safi, ..] = *v else {
        return Err(mp_reset(
            raw,
            format!("MP_UNREACH_NLRI of length {}", v.len()),
        ));
    };
    let afi = u16::from_be_bytes([a0, a1]);
    let Some(fam) = Family::from_afi_safi(afi, safi) else {
        st.note(
            c_mp(false),
            AttrAction::Discard,
            format!("MP_UNREACH_NLRI for unsupported AFI {afi} SAFI {safi} ignored"),
        );
        return Ok(());
    };
    let prefixes = parse_prefixes(&v[3..], fam, ctx.rx_add_path(fam))
        .map_err(|e| mp_reset(raw, format!("MP_UNREACH_NLRI NLRI: {e}")))?;
    if prefixes.is_empty() {
        st.empty_unreach = Some(fam);
    }
    st.withdrawn.extend(prefixes);
    Ok(())
}
