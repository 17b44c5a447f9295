//! Conversion of petrel UPDATE contents into netgauze's UPDATE for
//! serialization (RFC 4271 §4.3, RFC 4760, RFC 6793 §4.2.2, RFC 7911,
//! RFC 7606 §5.1 attribute order: MP_REACH/MP_UNREACH first).

use super::AS_TRANS;
use crate::wire::context::WireContext;
use crate::wire::error::EncodeError;
use crate::wire::types::{AsSegment, AsSegmentKind, Family, Nlri, Origin, PathAttributes};
use ipnet::IpNet;
use netgauze_bgp_pkt::community::{Community, LargeCommunity};
use netgauze_bgp_pkt::nlri::{Ipv4Unicast, Ipv4UnicastAddress, Ipv6Unicast, Ipv6UnicastAddress};
use netgauze_bgp_pkt::path_attribute::Aggregator as NgAggregator;
use netgauze_bgp_pkt::path_attribute::{
    As2Aggregator, As2PathSegment, As4Aggregator, As4Path, As4PathSegment, AsPath,
    AsPathSegmentType, AtomicAggregate, ClusterId, ClusterList, Communities, LargeCommunities,
    LocalPreference, MpReach, MpUnreach, MultiExitDiscriminator, NextHop, Origin as NgOrigin,
    Originator, PathAttribute, PathAttributeValue, UnknownAttribute,
};
use netgauze_bgp_pkt::update::BgpUpdateMessage;
use netgauze_parse_utils::WritablePdu;
use std::net::IpAddr;

const O: u8 = 0x80;
const T: u8 = 0x40;
const P: u8 = 0x20;

/// Wraps a value in a PathAttribute, choosing the Extended Length bit from
/// the real value length (netgauze would otherwise truncate it).
fn mk(flags: u8, value: PathAttributeValue) -> Result<PathAttribute, EncodeError> {
    let (o, t, p) = (flags & O != 0, flags & T != 0, flags & P != 0);
    let short = PathAttribute::from(o, t, p, false, value)
        .map_err(|(_, e)| EncodeError::invalid("path attribute", e))?;
    let mut probe = Vec::new();
    short
        .write(&mut probe)
        .map_err(|e| EncodeError::invalid("path attribute", e))?;
    let value_len = probe.len().saturating_sub(3);
    if value_len <= 255 {
        return Ok(short);
    }
    if value_len > usize::from(u16::MAX) {
        return Err(EncodeError::invalid(
            "path attribute",
            format!("value of {value_len} bytes"),
        ));
    }
    PathAttribute::from(o, t, p, true, short.value().clone())
        .map_err(|(_, e)| EncodeError::invalid("path attribute", e))
}

fn raw(flags: u8, code: u8, value: Vec<u8>) -> Result<PathAttribute, EncodeError> {
    mk(
        flags,
        PathAttributeValue::UnknownAttribute(UnknownAttribute::new(code, value)),
    )
}

fn v4_nlri(nlri: &[&Nlri], add_path: bool) -> Result<Vec<Ipv4UnicastAddress>, EncodeError> {
    nlri.iter()
        .map(|n| match n.prefix {
            IpNet::V4(p) => Ipv4Unicast::from_net(p.trunc())
                .map(|u| Ipv4UnicastAddress::new(add_path.then(|| n.path_id.unwrap_or(0)), u))
                .map_err(|_| EncodeError::invalid("NLRI", format!("{p} is not a unicast prefix"))),
            IpNet::V6(p) => Err(EncodeError::invalid(
                "NLRI",
                format!("{p} in an IPv4 field"),
            )),
        })
        .collect()
}

fn v6_nlri(nlri: &[&Nlri], add_path: bool) -> Result<Vec<Ipv6UnicastAddress>, EncodeError> {
    nlri.iter()
        .map(|n| match n.prefix {
            IpNet::V6(p) => Ipv6Unicast::from_net(p.trunc())
                .map(|u| Ipv6UnicastAddress::new(add_path.then(|| n.path_id.unwrap_or(0)), u))
                .map_err(|_| EncodeError::invalid("NLRI", format!("{p} is not a unicast prefix"))),
            IpNet::V4(p) => Err(EncodeError::invalid(
                "NLRI",
                format!("{p} in an IPv6 field"),
            )),
        })
        .collect()
}

fn split(nlri: &[Nlri]) -> (Vec<&Nlri>, Vec<&Nlri>) {
    nlri.iter()
        .partition(|n| Family::of(&n.prefix) == Family::Ipv4Unicast)
}

/// Builds the UPDATE. `eor` adds an empty MP_UNREACH for an IPv6 End-of-RIB
/// (IPv4 End-of-RIB is the empty UPDATE).
pub(super) fn build_update(
    withdrawn: &[Nlri],
    attrs: Option<&PathAttributes>,
    announced: &[Nlri],
    eor: Option<Family>,
    ctx: &WireContext,
) -> Result<BgpUpdateMessage, EncodeError> {
    let ap4 = ctx.tx_add_path(Family::Ipv4Unicast);
    let ap6 = ctx.tx_add_path(Family::Ipv6Unicast);
    let (w4, w6) = split(withdrawn);
    let (a4, a6) = split(announced);
    let mut out: Vec<PathAttribute> = Vec::new();
    let mut classic_nlri = Vec::new();

    if let Some(pa) = attrs {
        // IPv4 NLRI go in the classic field unless only an IPv6 next hop is
        // known (RFC 8950), in which case they need MP_REACH.
        let v4_next_hop = pa.next_hop.or(match pa.mp_next_hop.map(|m| m.global) {
            Some(IpAddr::V4(a)) => Some(a),
            _ => None,
        });
        let v4_in_mp = !a4.is_empty() && v4_next_hop.is_none();
        if v4_in_mp && !a6.is_empty() {
            return Err(EncodeError::invalid(
                "UPDATE",
                "IPv4 and IPv6 NLRI both need MP_REACH_NLRI",
            ));
        }
        let mp = match (v4_in_mp, a6.is_empty()) {
            (true, _) => Some((Family::Ipv4Unicast, &a4)),
            (false, false) => Some((Family::Ipv6Unicast, &a6)),
            _ => None,
        };
        if let Some((fam, nlri)) = mp {
            let Some(nh) = pa.mp_next_hop else {
                return Err(EncodeError::invalid(
                    "UPDATE",
                    format!("{} NLRI without a next hop", fam.name()),
                ));
            };
            let reach = match (fam, nh.global) {
                (Family::Ipv6Unicast, IpAddr::V6(g)) => MpReach::Ipv6Unicast {
                    next_hop_global: g,
                    next_hop_local: nh.link_local,
                    nlri: v6_nlri(nlri, ap6)?.into(),
                },
                (Family::Ipv4Unicast, IpAddr::V6(_)) => MpReach::Ipv4Unicast {
                    next_hop: nh.global,
                    next_hop_local: nh.link_local,
                    nlri: v4_nlri(nlri, ap4)?.into(),
                },
                _ => {
                    return Err(EncodeError::invalid(
                        "UPDATE",
                        format!("next hop {} for {} NLRI", nh.global, fam.name()),
                    ));
                }
            };
            out.push(mk(O, PathAttributeValue::MpReach(reach))?);
        }
        if !a4.is_empty() && !v4_in_mp {
            classic_nlri = v4_nlri(&a4, ap4)?;
        }
        if !announced.is_empty() && pa.origin.is_none() {
            return Err(EncodeError::invalid(
                "UPDATE",
                "announcement without ORIGIN",
            ));
        }
        if !w6.is_empty() {
            out.push(mk(
                O,
                PathAttributeValue::MpUnreach(MpUnreach::Ipv6Unicast {
                    nlri: v6_nlri(&w6, ap6)?.into(),
                }),
            )?);
        }
        path_attributes(
            pa,
            (!classic_nlri.is_empty()).then_some(v4_next_hop).flatten(),
            ctx,
            &mut out,
        )?;
    } else {
        if !announced.is_empty() {
            return Err(EncodeError::invalid(
                "UPDATE",
                "announced NLRI without path attributes",
            ));
        }
        if !w6.is_empty() || eor == Some(Family::Ipv6Unicast) {
            out.push(mk(
                O,
                PathAttributeValue::MpUnreach(MpUnreach::Ipv6Unicast {
                    nlri: v6_nlri(&w6, ap6)?.into(),
                }),
            )?);
        }
    }
    Ok(BgpUpdateMessage::new(v4_nlri(&w4, ap4)?, out, classic_nlri))
}

fn path_attributes(
    pa: &PathAttributes,
    next_hop: Option<std::net::Ipv4Addr>,
    ctx: &WireContext,
    out: &mut Vec<PathAttribute>,
) -> Result<(), EncodeError> {
    if let Some(o) = pa.origin {
        let ng = match o {
            Origin::Igp => NgOrigin::IGP,
            Origin::Egp => NgOrigin::EGP,
            Origin::Incomplete => NgOrigin::Incomplete,
        };
        out.push(mk(T, PathAttributeValue::Origin(ng))?);
    }
    let segs = split_segments(&pa.as_path)?;
    let needs_as4 = !ctx.four_octet_as && segs.iter().flat_map(|s| &s.asns).any(|&a| a > 0xffff);
    out.push(as_path(&segs, ctx.four_octet_as)?);
    if let Some(nh) = next_hop {
        out.push(mk(T, PathAttributeValue::NextHop(NextHop::new(nh)))?);
    }
    if let Some(m) = pa.med {
        out.push(mk(
            O,
            PathAttributeValue::MultiExitDiscriminator(MultiExitDiscriminator::new(m)),
        )?);
    }
    if let Some(lp) = pa.local_pref {
        out.push(mk(
            T,
            PathAttributeValue::LocalPreference(LocalPreference::new(lp)),
        )?);
    }
    if pa.atomic_aggregate {
        out.push(mk(T, PathAttributeValue::AtomicAggregate(AtomicAggregate))?);
    }
    let mut as4_aggregator = None;
    if let Some((asn, ip)) = pa.aggregator {
        let agg = if ctx.four_octet_as {
            NgAggregator::As4Aggregator(As4Aggregator::new(asn, ip))
        } else {
            if asn > 0xffff {
                let mut v = asn.to_be_bytes().to_vec();
                v.extend_from_slice(&ip.octets());
                as4_aggregator = Some(v);
            }
            NgAggregator::As2Aggregator(As2Aggregator::new(
                u16::try_from(asn).unwrap_or(AS_TRANS as u16),
                ip,
            ))
        };
        out.push(mk(O | T, PathAttributeValue::Aggregator(agg))?);
    }
    if !pa.communities.is_empty() {
        let cs: Vec<_> = pa.communities.iter().map(|c| Community::new(*c)).collect();
        out.push(mk(
            O | T,
            PathAttributeValue::Communities(Communities::new(cs)),
        )?);
    }
    if let Some(id) = pa.originator_id {
        out.push(mk(O, PathAttributeValue::Originator(Originator::new(id)))?);
    }
    if !pa.cluster_list.is_empty() {
        let ids: Vec<_> = pa.cluster_list.iter().map(|a| ClusterId::new(*a)).collect();
        out.push(mk(
            O,
            PathAttributeValue::ClusterList(ClusterList::new(ids)),
        )?);
    }
    if !pa.ext_communities.is_empty() {
        // Raw: petrel keeps extended communities as opaque 8-byte values.
        out.push(raw(O | T, 16, pa.ext_communities.concat())?);
    }
    if needs_as4 {
        let segs4: Vec<_> = segs
            .iter()
            .filter_map(|s| match s.kind {
                AsSegmentKind::Sequence => Some(As4PathSegment::new(
                    AsPathSegmentType::AsSequence,
                    s.asns.clone(),
                )),
                AsSegmentKind::Set => Some(As4PathSegment::new(
                    AsPathSegmentType::AsSet,
                    s.asns.clone(),
                )),
                _ => None,
            })
            .collect();
        out.push(mk(O | T, PathAttributeValue::As4Path(As4Path::new(segs4)))?);
    }
    if let Some(v) = as4_aggregator {
        // netgauze has no AS4_AGGREGATOR type.
        out.push(raw(O | T, 18, v)?);
    }
    if !pa.large_communities.is_empty() {
        let cs: Vec<_> = pa
            .large_communities
            .iter()
            .map(|[a, b, c]| LargeCommunity::new(*a, *b, *c))
            .collect();
        out.push(mk(
            O | T,
            PathAttributeValue::LargeCommunities(LargeCommunities::new(cs)),
        )?);
    }
    for u in &pa.unknown {
        out.push(raw(u.flags & (O | T | P), u.code, u.value.clone())?);
    }
    Ok(())
}

/// Splits AS_SEQUENCE segments longer than 255 ASes (RFC 4271 §4.3).
fn split_segments(segs: &[AsSegment]) -> Result<Vec<AsSegment>, EncodeError> {
    let mut out = Vec::new();
    for s in segs {
        if s.asns.is_empty() {
            continue;
        }
        if s.asns.len() > 255
            && s.kind != AsSegmentKind::Sequence
            && s.kind != AsSegmentKind::ConfedSequence
        {
            return Err(EncodeError::invalid(
                "AS_PATH",
                "AS_SET with more than 255 members",
            ));
        }
        for chunk in s.asns.chunks(255) {
            out.push(AsSegment {
                kind: s.kind,
                asns: chunk.to_vec(),
            });
        }
    }
    Ok(out)
}

/// AS_PATH with 4-octet ASNs, or 2-octet ASNs with AS_TRANS (RFC 6793 §4.2.2).
/// Confederation segments (RFC 5065) are written raw: netgauze lacks them.
fn as_path(segs: &[AsSegment], four: bool) -> Result<PathAttribute, EncodeError> {
    let confed = segs.iter().any(|s| {
        matches!(
            s.kind,
            AsSegmentKind::ConfedSequence | AsSegmentKind::ConfedSet
        )
    });
    let two = |a: u32| u16::try_from(a).unwrap_or(AS_TRANS as u16);
    if confed {
        let mut v = Vec::new();
        for s in segs {
            let ty = match s.kind {
                AsSegmentKind::Set => 1,
                AsSegmentKind::Sequence => 2,
                AsSegmentKind::ConfedSequence => 3,
                AsSegmentKind::ConfedSet => 4,
            };
            v.extend_from_slice(&[ty, s.asns.len() as u8]);
            for &a in &s.asns {
                if four {
                    v.extend_from_slice(&a.to_be_bytes());
                } else {
                    v.extend_from_slice(&two(a).to_be_bytes());
                }
            }
        }
        return raw(T, 2, v);
    }
    let ty = |k: AsSegmentKind| {
        if k == AsSegmentKind::Set {
            AsPathSegmentType::AsSet
        } else {
            AsPathSegmentType::AsSequence
        }
    };
    let path = if four {
        AsPath::As4PathSegments(
            segs.iter()
                .map(|s| As4PathSegment::new(ty(s.kind), s.asns.clone()))
                .collect(),
        )
    } else {
        AsPath::As2PathSegments(
            segs.iter()
                .map(|s| {
                    As2PathSegment::new(
                        ty(s.kind),
                        s.asns.iter().map(|&a| two(a)).collect::<Vec<_>>(),
                    )
                })
                .collect(),
        )
    };
    mk(T, PathAttributeValue::AsPath(path))
}
