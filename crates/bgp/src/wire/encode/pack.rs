//! Packing many NLRI into as few UPDATEs as fit the negotiated maximum
//! length (RFC 4271 §4.3, RFC 4760, RFC 8654, RFC 7911).

use super::attrs::build_update;
use super::write_checked;
use crate::wire::context::WireContext;
use crate::wire::error::EncodeError;
use crate::wire::types::{Family, Nlri, PathAttributes};
use bytes::Bytes;
use netgauze_bgp_pkt::BgpMessage;
use netgauze_parse_utils::WritablePdu;
use std::net::IpAddr;

/// Wire size of one NLRI entry.
fn nlri_size(n: &Nlri, ctx: &WireContext) -> usize {
    let ap = if ctx.tx_add_path(Family::of(&n.prefix)) {
        4
    } else {
        0
    };
    ap + 1 + usize::from(n.prefix.prefix_len()).div_ceil(8)
}

/// Splits `nlri` into chunks whose messages fit, given a function that
/// builds the message for a chunk. The fixed overhead is measured from a
/// one-NLRI message, plus one byte of slack for the attribute length field
/// switching to Extended Length as the MP attribute grows.
fn pack(
    nlri: &[Nlri],
    ctx: &WireContext,
    build: &dyn Fn(&[Nlri]) -> Result<BgpMessage, EncodeError>,
) -> Result<Vec<Bytes>, EncodeError> {
    let Some(first) = nlri.first() else {
        return Ok(Vec::new());
    };
    let max = ctx.max_message_len();
    let one = build(std::slice::from_ref(first))?.len();
    let overhead = one - nlri_size(first, ctx) + 1;
    if one > max {
        return Err(EncodeError::TooLong { len: one, max });
    }
    let budget = max - overhead;
    let mut out = Vec::new();
    let mut start = 0;
    let mut used = 0;
    for (i, n) in nlri.iter().enumerate() {
        let s = nlri_size(n, ctx);
        if used + s > budget && i > start {
            out.push(write_checked(&build(&nlri[start..i])?, max)?);
            start = i;
            used = 0;
        }
        used += s;
    }
    out.push(write_checked(&build(&nlri[start..])?, max)?);
    Ok(out)
}

/// Announces `nlri` with one attribute set in as few UPDATEs as fit:
/// IPv4 in the classic NLRI field (or MP_REACH when only an IPv6 next hop is
/// given, RFC 8950), IPv6 in MP_REACH_NLRI. Each message is at most
/// `ctx.max_message_len()` bytes.
pub fn encode_announce(
    attrs: &PathAttributes,
    nlri: &[Nlri],
    ctx: &WireContext,
) -> Result<Vec<Bytes>, EncodeError> {
    let (v4, v6): (Vec<Nlri>, Vec<Nlri>) = nlri
        .iter()
        .partition(|n| Family::of(&n.prefix) == Family::Ipv4Unicast);
    let mut out = Vec::new();
    for group in [v4, v6] {
        if group.is_empty() {
            continue;
        }
        // Only the family being packed needs its next hop; keep the attributes
        // otherwise identical.
        let mut pa = attrs.clone();
        if Family::of(&group[0].prefix) == Family::Ipv6Unicast {
            pa.next_hop = None;
        } else if pa.next_hop.is_some()
            || matches!(pa.mp_next_hop.map(|m| m.global), Some(IpAddr::V4(_)))
        {
            pa.mp_next_hop = pa.mp_next_hop.filter(|m| m.global.is_ipv4());
        }
        out.extend(pack(&group, ctx, &|chunk| {
            build_update(&[], Some(&pa), chunk, None, ctx).map(BgpMessage::Update)
        })?);
    }
    Ok(out)
}

/// Withdraws `nlri` in as few UPDATEs as fit: IPv4 in the classic Withdrawn
/// Routes field, IPv6 in MP_UNREACH_NLRI.
pub fn encode_withdraw(nlri: &[Nlri], ctx: &WireContext) -> Result<Vec<Bytes>, EncodeError> {
    let (v4, v6): (Vec<Nlri>, Vec<Nlri>) = nlri
        .iter()
        .partition(|n| Family::of(&n.prefix) == Family::Ipv4Unicast);
    let mut out = Vec::new();
    for group in [v4, v6] {
        out.extend(pack(&group, ctx, &|chunk| {
            build_update(chunk, None, &[], None, ctx).map(BgpMessage::Update)
        })?);
    }
    Ok(out)
}
