//! rtnetlink framing (RFC 3549, Linux `rtnetlink(7)`): netlink headers are handled here by hand
//! so many requests can share one datagram; route payloads are built and parsed with
//! `netlink-packet-route` (imported through rtnetlink's re-export so versions cannot diverge).

use std::net::IpAddr;

use ipnet::IpNet;
use rtnetlink::packet_core::{Emitable, Parseable};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::packet_route::route::RouteFlags;
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteNextHop, RouteProtocol,
    RouteScope, RouteType,
};

use super::model::{KernelNextHop, KernelRoute, RouteOp};
use super::resolve::{ForeignHop, ForeignRoute};

pub const NLMSG_HDRLEN: usize = 16;
pub const NLMSG_ERROR: u16 = 2;
pub const NLMSG_DONE: u16 = 3;
pub const RTM_NEWLINK: u16 = 16;
pub const RTM_DELLINK: u16 = 17;
pub const RTM_NEWROUTE: u16 = 24;
pub const RTM_DELROUTE: u16 = 25;
pub const RTM_GETROUTE: u16 = 26;

pub const NLM_F_REQUEST: u16 = 0x1;
pub const NLM_F_ACK: u16 = 0x4;
pub const NLM_F_DUMP_INTR: u16 = 0x10;
pub const NLM_F_DUMP: u16 = 0x300;
pub const NLM_F_REPLACE: u16 = 0x100;
pub const NLM_F_CREATE: u16 = 0x400;
pub const NLM_F_APPEND: u16 = 0x800;
const NLM_F_CAPPED: u16 = 0x100;
const NLM_F_ACK_TLVS: u16 = 0x200;
const NLMSGERR_ATTR_MSG: u16 = 1;

pub const RTNLGRP_LINK: u32 = 1;
pub const RTNLGRP_IPV4_ROUTE: u32 = 7;
pub const RTNLGRP_IPV6_ROUTE: u32 = 11;

pub const RTN_UNICAST: u8 = 1;
pub const RTN_BLACKHOLE: u8 = 6;
const RT_TABLE_COMPAT: u8 = 252;
const IFF_UP: u32 = 0x1;

/// A netlink message header (`struct nlmsghdr`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NlHeader {
    pub len: u32,
    pub kind: u16,
    pub flags: u16,
    pub seq: u32,
    pub pid: u32,
}

/// Iterates over the netlink messages of one datagram, yielding each header and its payload.
/// Stops at the first malformed header (the kernel never sends one).
pub fn messages(buf: &[u8]) -> impl Iterator<Item = (NlHeader, &[u8])> {
    let mut rest = buf;
    std::iter::from_fn(move || {
        if rest.len() < NLMSG_HDRLEN {
            return None;
        }
        let u32_at =
            |i: usize| u32::from_ne_bytes([rest[i], rest[i + 1], rest[i + 2], rest[i + 3]]);
        let u16_at = |i: usize| u16::from_ne_bytes([rest[i], rest[i + 1]]);
        let header = NlHeader {
            len: u32_at(0),
            kind: u16_at(4),
            flags: u16_at(6),
            seq: u32_at(8),
            pid: u32_at(12),
        };
        let len = header.len as usize;
        if len < NLMSG_HDRLEN || len > rest.len() {
            return None;
        }
        let payload = &rest[NLMSG_HDRLEN..len];
        rest = &rest[align4(len).min(rest.len())..];
        Some((header, payload))
    })
}

const fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// Appends one netlink message carrying `msg` to `buf`.
pub fn encode(buf: &mut Vec<u8>, kind: u16, flags: u16, seq: u32, msg: &RouteMessage) {
    let start = buf.len();
    let len = NLMSG_HDRLEN + msg.buffer_len();
    buf.resize(start + align4(len), 0);
    let out = &mut buf[start..];
    out[0..4].copy_from_slice(&(len as u32).to_ne_bytes());
    out[4..6].copy_from_slice(&kind.to_ne_bytes());
    out[6..8].copy_from_slice(&flags.to_ne_bytes());
    out[8..12].copy_from_slice(&seq.to_ne_bytes());
    out[12..16].copy_from_slice(&0u32.to_ne_bytes());
    msg.emit(&mut out[NLMSG_HDRLEN..len]);
}

fn family(prefix: &IpNet) -> AddressFamily {
    match prefix {
        IpNet::V4(_) => AddressFamily::Inet,
        IpNet::V6(_) => AddressFamily::Inet6,
    }
}

fn header(family: AddressFamily, table: u32) -> RouteHeader {
    RouteHeader {
        address_family: family,
        table: u8::try_from(table).unwrap_or(RT_TABLE_COMPAT),
        ..RouteHeader::default()
    }
}

/// The `RTM_NEWROUTE`/`RTM_DELROUTE` message type, flags and payload for one operation.
pub fn op_message(op: &RouteOp, table: u32, protocol: u8) -> (u16, u16, RouteMessage) {
    let prefix = op.prefix();
    let mut msg = RouteMessage::default();
    msg.header = header(family(prefix), table);
    msg.header.destination_prefix_length = prefix.prefix_len();
    msg.header.protocol = RouteProtocol::from(protocol);
    msg.attributes
        .push(RouteAttribute::Destination(prefix.addr().into()));
    msg.attributes.push(RouteAttribute::Table(table));
    match op {
        RouteOp::Delete { prefix } => {
            msg.header.scope = RouteScope::NoWhere;
            if let IpNet::V6(_) = prefix {
                msg.attributes
                    .push(RouteAttribute::Priority(super::model::default_metric(
                        prefix,
                    )));
            }
            (RTM_DELROUTE, NLM_F_REQUEST, msg)
        }
        RouteOp::Replace { route, .. } => {
            msg.header.scope = RouteScope::Universe;
            match route {
                KernelRoute::Blackhole => msg.header.kind = RouteType::BlackHole,
                KernelRoute::Unicast(hops) if hops.len() == 1 => {
                    msg.header.kind = RouteType::Unicast;
                    msg.attributes
                        .push(RouteAttribute::Gateway(hops[0].gateway.into()));
                    msg.attributes.push(RouteAttribute::Oif(hops[0].oif));
                }
                KernelRoute::Unicast(hops) => {
                    msg.header.kind = RouteType::Unicast;
                    let hops = hops
                        .iter()
                        .map(|hop| {
                            let mut nh = RouteNextHop::default();
                            nh.interface_index = hop.oif;
                            nh.hops = hop.weight;
                            nh.attributes
                                .push(RouteAttribute::Gateway(hop.gateway.into()));
                            nh
                        })
                        .collect();
                    msg.attributes.push(RouteAttribute::MultiPath(hops));
                }
                KernelRoute::Unsupported { kind } => msg.header.kind = RouteType::from(*kind),
            }
            (
                RTM_NEWROUTE,
                NLM_F_REQUEST | NLM_F_CREATE | NLM_F_REPLACE,
                msg,
            )
        }
    }
}

/// An `RTM_GETROUTE` dump request for one family and table (filtered by the kernel when the
/// socket has `NETLINK_GET_STRICT_CHK`).
pub fn dump_request(v4: bool, table: u32) -> RouteMessage {
    let family = if v4 {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let mut msg = RouteMessage::default();
    msg.header = header(family, table);
    if table > u32::from(u8::MAX) {
        msg.header.table = 0;
    }
    msg.attributes.push(RouteAttribute::Table(table));
    msg
}

/// One next hop of a parsed route (`gateway` is `None` for a device route).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParsedHop {
    pub gateway: Option<IpAddr>,
    pub oif: u32,
    pub weight: u8,
}

/// The fields of a kernel route petrel cares about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedRoute {
    pub prefix: IpNet,
    pub table: u32,
    pub protocol: u8,
    pub metric: u32,
    pub tos: u8,
    pub kind: u8,
    pub hops: Vec<ParsedHop>,
    /// The route used `RTA_VIA` or another form petrel does not model.
    pub exotic: bool,
}

fn ip_of(addr: &RouteAddress) -> Option<IpAddr> {
    match addr {
        RouteAddress::Inet(a) => Some(IpAddr::V4(*a)),
        RouteAddress::Inet6(a) => Some(IpAddr::V6(*a)),
        _ => None,
    }
}

/// Parses an `RTM_NEWROUTE`/`RTM_DELROUTE` payload. `None` for families other than IPv4/IPv6,
/// cloned/cached entries and payloads that do not parse.
pub fn parse_route(payload: &[u8]) -> Option<ParsedRoute> {
    let msg = RouteMessage::parse(payload).ok()?;
    let h = &msg.header;
    let unspecified: IpAddr = match h.address_family {
        AddressFamily::Inet => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        AddressFamily::Inet6 => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
        _ => return None,
    };
    if h.flags.contains(RouteFlags::Cloned) {
        return None; // a route cache / exception entry
    }
    let mut route = ParsedRoute {
        prefix: IpNet::new(unspecified, 0).ok()?,
        table: u32::from(h.table),
        protocol: u8::from(h.protocol),
        metric: 0,
        tos: h.tos,
        kind: u8::from(h.kind),
        hops: Vec::new(),
        exotic: false,
    };
    let mut dst = unspecified;
    let mut single = ParsedHop {
        gateway: None,
        oif: 0,
        weight: 0,
    };
    let mut multipath = None;
    for attr in &msg.attributes {
        match attr {
            RouteAttribute::Destination(a) => dst = ip_of(a)?,
            RouteAttribute::Table(t) => route.table = *t,
            RouteAttribute::Priority(m) => route.metric = *m,
            RouteAttribute::Gateway(a) => single.gateway = ip_of(a),
            RouteAttribute::Oif(o) => single.oif = *o,
            RouteAttribute::Via(_) | RouteAttribute::Encap(_) | RouteAttribute::NhId(_) => {
                route.exotic = true;
            }
            RouteAttribute::MultiPath(hops) => {
                let mut list = Vec::with_capacity(hops.len());
                for nh in hops {
                    let mut hop = ParsedHop {
                        gateway: None,
                        oif: nh.interface_index,
                        weight: nh.hops,
                    };
                    for a in &nh.attributes {
                        match a {
                            RouteAttribute::Gateway(g) => hop.gateway = ip_of(g),
                            RouteAttribute::Via(_) | RouteAttribute::Encap(_) => {
                                route.exotic = true
                            }
                            _ => {}
                        }
                    }
                    list.push(hop);
                }
                multipath = Some(list);
            }
            _ => {}
        }
    }
    route.prefix = IpNet::new(dst, h.destination_prefix_length).ok()?;
    route.hops = match multipath {
        Some(list) => list,
        None if single.gateway.is_some() || single.oif != 0 => vec![single],
        None => Vec::new(),
    };
    Some(route)
}

impl ParsedRoute {
    /// The normalised form of a route of ours.
    pub fn kernel_route(&self) -> KernelRoute {
        match self.kind {
            RTN_BLACKHOLE => KernelRoute::Blackhole,
            RTN_UNICAST
                if !self.exotic
                    && !self.hops.is_empty()
                    && self.hops.iter().all(|h| h.gateway.is_some()) =>
            {
                KernelRoute::unicast(
                    self.hops
                        .iter()
                        .filter_map(|h| {
                            Some(KernelNextHop {
                                gateway: h.gateway?,
                                oif: h.oif,
                                weight: h.weight,
                            })
                        })
                        .collect(),
                )
            }
            kind => KernelRoute::Unsupported { kind },
        }
    }

    /// The form kept in the foreign-route mirror (hops petrel cannot model are dropped).
    pub fn foreign_route(&self) -> ForeignRoute {
        ForeignRoute {
            protocol: self.protocol,
            metric: self.metric,
            tos: self.tos,
            kind: self.kind,
            hops: if self.exotic {
                Vec::new()
            } else {
                self.hops
                    .iter()
                    .map(|h| ForeignHop {
                        gateway: h.gateway,
                        oif: h.oif,
                    })
                    .collect()
            },
        }
    }
}

/// The error code (negative errno, 0 for an ack) and extended-ack message of an `NLMSG_ERROR`.
pub fn parse_error(header: &NlHeader, payload: &[u8]) -> (i32, Option<String>) {
    let Some(code) = payload.get(..4) else {
        return (-libc::EPROTO, None);
    };
    let code = i32::from_ne_bytes([code[0], code[1], code[2], code[3]]);
    if header.flags & NLM_F_ACK_TLVS == 0 {
        return (code, None);
    }
    let orig_len = payload
        .get(4..8)
        .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .unwrap_or(NLMSG_HDRLEN);
    let skip = if header.flags & NLM_F_CAPPED != 0 {
        NLMSG_HDRLEN
    } else {
        orig_len
    };
    let mut tlvs = payload.get(4 + align4(skip)..).unwrap_or_default();
    while tlvs.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([tlvs[0], tlvs[1]]));
        let kind = u16::from_ne_bytes([tlvs[2], tlvs[3]]);
        if len < 4 || len > tlvs.len() {
            break;
        }
        if kind == NLMSGERR_ATTR_MSG {
            let text = &tlvs[4..len];
            let text = text.split(|b| *b == 0).next().unwrap_or_default();
            return (code, Some(String::from_utf8_lossy(text).into_owned()));
        }
        tlvs = &tlvs[align4(len).min(tlvs.len())..];
    }
    (code, None)
}

/// `(ifindex, is_up)` of an `RTM_NEWLINK`/`RTM_DELLINK` payload (`struct ifinfomsg`).
pub fn parse_link(payload: &[u8]) -> Option<(u32, bool)> {
    let b = payload.get(..12)?;
    let index = i32::from_ne_bytes([b[4], b[5], b[6], b[7]]);
    let flags = u32::from_ne_bytes([b[8], b[9], b[10], b[11]]);
    Some((u32::try_from(index).ok()?, flags & IFF_UP != 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(op: &RouteOp, table: u32) -> (NlHeader, ParsedRoute) {
        let (kind, flags, msg) = op_message(op, table, 200);
        let mut buf = Vec::new();
        encode(&mut buf, kind, flags | NLM_F_ACK, 7, &msg);
        encode(&mut buf, kind, flags, 8, &msg);
        let all: Vec<_> = messages(&buf).collect();
        assert_eq!(all.len(), 2);
        assert_eq!(all[1].0.seq, 8);
        let (h, payload) = all[0];
        (h, parse_route(payload).expect("parses"))
    }

    #[test]
    fn replace_roundtrips_single_multipath_and_blackhole() {
        let hops = vec![
            KernelNextHop::new("10.0.0.1".parse().unwrap(), 3),
            KernelNextHop::new("10.0.1.1".parse().unwrap(), 4),
        ];
        for (prefix, route) in [
            ("10.244.0.0/26", KernelRoute::unicast(hops[..1].to_vec())),
            ("10.244.0.64/26", KernelRoute::unicast(hops.clone())),
            ("10.244.0.0/16", KernelRoute::Blackhole),
            (
                "2001:db8::/64",
                KernelRoute::unicast(vec![
                    KernelNextHop::new("fe80::1".parse().unwrap(), 3),
                    KernelNextHop::new("fe80::2".parse().unwrap(), 3),
                ]),
            ),
        ] {
            let op = RouteOp::Replace {
                prefix: prefix.parse().unwrap(),
                route: route.clone(),
            };
            let (h, parsed) = roundtrip(&op, 1000);
            assert_eq!(h.kind, RTM_NEWROUTE);
            assert_eq!(
                h.flags,
                NLM_F_REQUEST | NLM_F_CREATE | NLM_F_REPLACE | NLM_F_ACK
            );
            assert_eq!(h.seq, 7);
            assert_eq!(parsed.prefix, prefix.parse::<IpNet>().unwrap());
            assert_eq!(parsed.table, 1000);
            assert_eq!(parsed.protocol, 200);
            assert_eq!(parsed.kernel_route(), route);
        }
    }

    #[test]
    fn delete_carries_protocol_and_table() {
        let op = RouteOp::Delete {
            prefix: "2001:db8:5::/48".parse().unwrap(),
        };
        let (h, parsed) = roundtrip(&op, 254);
        assert_eq!(h.kind, RTM_DELROUTE);
        assert_eq!(
            (parsed.protocol, parsed.table, parsed.metric),
            (200, 254, 1024)
        );
    }

    #[test]
    fn error_with_extended_ack_message() {
        let mut payload = (-22i32).to_ne_bytes().to_vec();
        payload.extend_from_slice(&[20, 0, 0, 0, 24, 0, 5, 0, 9, 0, 0, 0, 0, 0, 0, 0]);
        let text = b"Nexthop has invalid gateway\0";
        let tlv_len = 4 + text.len();
        payload.extend_from_slice(&(tlv_len as u16).to_ne_bytes());
        payload.extend_from_slice(&NLMSGERR_ATTR_MSG.to_ne_bytes());
        payload.extend_from_slice(text);
        let h = NlHeader {
            len: 0,
            kind: NLMSG_ERROR,
            flags: NLM_F_CAPPED | NLM_F_ACK_TLVS,
            seq: 9,
            pid: 0,
        };
        assert_eq!(
            parse_error(&h, &payload),
            (-22, Some("Nexthop has invalid gateway".to_string()))
        );
        let plain = NlHeader { flags: 0, ..h };
        assert_eq!(parse_error(&plain, &payload[..4]), (-22, None));
        assert_eq!(parse_error(&plain, &[]).0, -libc::EPROTO);
    }

    #[test]
    fn truncated_datagrams_stop_iteration() {
        let op = RouteOp::Delete {
            prefix: "10.0.0.0/8".parse().unwrap(),
        };
        let (kind, flags, msg) = op_message(&op, 254, 200);
        let mut buf = Vec::new();
        encode(&mut buf, kind, flags, 1, &msg);
        assert_eq!(messages(&buf[..buf.len() - 1]).count(), 0);
        assert_eq!(messages(&buf[..10]).count(), 0);
        assert!(parse_route(&[1, 2, 3]).is_none());
    }
}
