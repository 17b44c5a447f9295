//! petrel's own BGP message types (RFC 4271, RFC 4760, RFC 5492, RFC 6793,
//! RFC 7911, RFC 8654, RFC 4724, RFC 2918, RFC 7313, RFC 1997, RFC 8092,
//! RFC 4360, RFC 4456, RFC 9003).
//!
//! These are the only BGP message types the rest of petrel sees. The codec in
//! `bgp::wire` converts them to and from the bytes on the wire; no type from
//! the underlying parser crate leaks past that module.

use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

/// An address family petrel routes: IPv4 unicast or IPv6 unicast.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum Family {
    Ipv4Unicast,
    Ipv6Unicast,
}

impl Family {
    pub const ALL: [Family; 2] = [Family::Ipv4Unicast, Family::Ipv6Unicast];
    pub fn afi(self) -> u16 {
        match self {
            Family::Ipv4Unicast => 1,
            Family::Ipv6Unicast => 2,
        }
    }
    pub fn safi(self) -> u8 {
        1
    }
    pub fn from_afi_safi(afi: u16, safi: u8) -> Option<Family> {
        match (afi, safi) {
            (1, 1) => Some(Family::Ipv4Unicast),
            (2, 1) => Some(Family::Ipv6Unicast),
            _ => None,
        }
    }
    pub fn of(prefix: &IpNet) -> Family {
        match prefix {
            IpNet::V4(_) => Family::Ipv4Unicast,
            IpNet::V6(_) => Family::Ipv6Unicast,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Family::Ipv4Unicast => "ipv4-unicast",
            Family::Ipv6Unicast => "ipv6-unicast",
        }
    }
}

/// ADD-PATH send/receive mode for one family (RFC 7911).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddPathMode {
    Receive,
    Send,
    Both,
}

impl AddPathMode {
    pub fn can_receive(self) -> bool {
        matches!(self, AddPathMode::Receive | AddPathMode::Both)
    }
    pub fn can_send(self) -> bool {
        matches!(self, AddPathMode::Send | AddPathMode::Both)
    }
}

/// Graceful-restart capability (RFC 4724, N-bit from RFC 8538).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GracefulRestartCap {
    pub restart_state: bool,
    pub notification: bool,
    pub restart_time: u16,
    /// Families with their "forwarding state preserved" flag.
    pub families: Vec<(Family, bool)>,
}

/// Capabilities carried in an OPEN (RFC 5492).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Capabilities {
    /// Multiprotocol families (RFC 4760). Unknown AFI/SAFI pairs go to `unknown`.
    pub multiprotocol: Vec<Family>,
    pub route_refresh: bool,
    pub enhanced_route_refresh: bool,
    /// The 4-octet AS number (RFC 6793), when the capability is present.
    pub four_octet_as: Option<u32>,
    pub add_path: Vec<(Family, AddPathMode)>,
    /// RFC 8654 extended messages.
    pub extended_message: bool,
    pub graceful_restart: Option<GracefulRestartCap>,
    /// RFC 8950 extended next hop: (NLRI family, next-hop AFI).
    pub extended_next_hop: Vec<(Family, u16)>,
    /// Capabilities petrel does not interpret: (code, value). Kept for display.
    pub unknown: Vec<(u8, Vec<u8>)>,
}

/// BGP OPEN message (RFC 4271 §4.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Open {
    /// The real AS number. On the wire, the 2-octet field carries AS_TRANS (23456)
    /// when this does not fit in 16 bits, and the 4-octet capability carries it.
    pub asn: u32,
    pub hold_time: u16,
    pub router_id: Ipv4Addr,
    pub caps: Capabilities,
}

/// ORIGIN attribute values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Origin {
    #[default]
    Igp = 0,
    Egp = 1,
    Incomplete = 2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AsSegmentKind {
    Set,
    Sequence,
    ConfedSequence,
    ConfedSet,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AsSegment {
    pub kind: AsSegmentKind,
    pub asns: Vec<u32>,
}

/// Next hop for MP_REACH_NLRI: a global address and, for IPv6, an optional link-local.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MpNextHop {
    pub global: IpAddr,
    pub link_local: Option<Ipv6Addr>,
}

/// A path attribute petrel does not interpret, kept as raw bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RawAttribute {
    pub flags: u8,
    pub code: u8,
    pub value: Vec<u8>,
}

impl RawAttribute {
    pub fn optional(&self) -> bool {
        self.flags & 0x80 != 0
    }
    pub fn transitive(&self) -> bool {
        self.flags & 0x40 != 0
    }
}

/// Path attributes of an UPDATE, fully decoded. AS numbers are always 4 octets
/// here: on a 2-octet session the codec merges AS4_PATH/AS4_AGGREGATOR
/// (RFC 6793 §4.2.3) on decode and splits them on encode.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct PathAttributes {
    pub origin: Option<Origin>,
    pub as_path: Vec<AsSegment>,
    /// NEXT_HOP attribute (IPv4 NLRI in the classic UPDATE fields).
    pub next_hop: Option<Ipv4Addr>,
    /// Next hop from MP_REACH_NLRI.
    pub mp_next_hop: Option<MpNextHop>,
    pub med: Option<u32>,
    pub local_pref: Option<u32>,
    pub atomic_aggregate: bool,
    pub aggregator: Option<(u32, Ipv4Addr)>,
    pub communities: Vec<u32>,
    pub ext_communities: Vec<[u8; 8]>,
    pub large_communities: Vec<[u32; 3]>,
    pub originator_id: Option<Ipv4Addr>,
    pub cluster_list: Vec<Ipv4Addr>,
    /// Unrecognised attributes. Optional transitive ones are kept with the
    /// Partial bit set on receipt; petrel does not re-advertise them unless
    /// configured to.
    pub unknown: Vec<RawAttribute>,
}

/// One NLRI entry, with its ADD-PATH path identifier when negotiated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Nlri {
    pub prefix: IpNet,
    pub path_id: Option<u32>,
}

impl Nlri {
    pub fn new(prefix: IpNet) -> Self {
        Nlri {
            prefix,
            path_id: None,
        }
    }
}

/// UPDATE message (RFC 4271 §4.3 with RFC 4760 MP_REACH/MP_UNREACH folded in).
///
/// `announced` holds IPv4 NLRI from the classic field and NLRI from
/// MP_REACH_NLRI; `withdrawn` holds the classic withdrawn routes and
/// MP_UNREACH_NLRI. The codec decides on encode which field each goes into.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Update {
    pub withdrawn: Vec<Nlri>,
    pub attrs: Option<Arc<PathAttributes>>,
    pub announced: Vec<Nlri>,
}

/// NOTIFICATION message (RFC 4271 §4.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub code: u8,
    pub subcode: u8,
    pub data: Vec<u8>,
}

/// ROUTE-REFRESH (RFC 2918), with the RFC 7313 message subtype
/// (0 normal, 1 BoRR, 2 EoRR).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteRefresh {
    pub family: Family,
    pub subtype: u8,
}

/// A BGP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Open(Open),
    Update(Update),
    Notification(Notification),
    Keepalive,
    RouteRefresh(RouteRefresh),
    /// End-of-RIB marker (RFC 4724 §2): an empty UPDATE for IPv4 unicast, an
    /// UPDATE with only an empty MP_UNREACH_NLRI for other families.
    EndOfRib(Family),
}
