//! `BGPPeer` (petrel.dev/v1): a BGP session, or a set of sessions selected by
//! labels. Field names follow Calico's `projectcalico.org/v3`; `holdTime`,
//! `passive` and `maxPrefixes` are petrel additions.
//! Related RFCs: RFC 4271 (hold/keepalive timers), RFC 6793 (AS numbers),
//! RFC 2385 (password), RFC 5082 (GTSM), RFC 4724 (graceful restart),
//! RFC 4456 (route reflection).

use super::{BgpPassword, KubeDuration};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

/// Schema transform for CRDs: Kubernetes knows only the integer formats
/// `int32` and `int64` and warns on every `kubectl apply` about others
/// (`uint8`, `uint32`, ... from unsigned Rust types). Replaces each such
/// format by the range it implies (keeping narrower explicit bounds).
pub(crate) fn kubernetes_int_formats(schema: &mut schemars::Schema) {
    if let Some(map) = schema.as_object_mut() {
        replace_int_formats(map);
    }
}

fn replace_int_formats(map: &mut serde_json::Map<String, serde_json::Value>) {
    let range = match map.get("format").and_then(|f| f.as_str()) {
        Some("uint8") => Some((0, Some(u64::from(u8::MAX)))),
        Some("uint16") => Some((0, Some(u64::from(u16::MAX)))),
        Some("uint32") => Some((0, Some(u64::from(u32::MAX)))),
        // The API server stores int64; a maximum of 2^63-1 is rejected as a
        // bound (it is not exactly representable), so only the minimum.
        Some("uint64" | "uint") => Some((0, None)),
        _ => None,
    };
    // schemars writes `ip` for IpAddr; Kubernetes knows `ipv4` and `ipv6` only.
    if map.get("format").and_then(|f| f.as_str()) == Some("ip") {
        map.remove("format");
    }
    if let Some((min, max)) = range {
        map.remove("format");
        map.entry("minimum").or_insert(min.into());
        if let Some(max) = max {
            map.entry("maximum").or_insert(max.into());
        }
    }
    for v in map.values_mut() {
        match v {
            serde_json::Value::Object(m) => replace_int_formats(m),
            serde_json::Value::Array(items) => items
                .iter_mut()
                .filter_map(|i| i.as_object_mut())
                .for_each(replace_int_formats),
            _ => {}
        }
    }
}

/// CEL: the address part of `peerIP` (which may carry a port), for family checks.
macro_rules! peer_host {
    () => {
        "(self.peerIP.startsWith('[') ? self.peerIP.substring(1, self.peerIP.indexOf(']')) \
         : (self.peerIP.contains('.') && self.peerIP.contains(':') \
         ? self.peerIP.substring(0, self.peerIP.indexOf(':')) : self.peerIP))"
    };
}

/// CEL rule of `peerIP`: an address, `<IPv4>:<port>` or `[<IPv6>]:<port>`, port 1..=65535.
const PEER_IP_RULE: &str = "isIP(self) \
    || (self.matches('^[0-9.]+:[0-9]{1,5}$') && isIP(self.substring(0, self.indexOf(':'))) \
        && int(self.substring(self.indexOf(':') + 1)) >= 1 \
        && int(self.substring(self.indexOf(':') + 1)) <= 65535) \
    || (self.matches('^\\\\[[0-9a-fA-F:.]+\\\\]:[0-9]{1,5}$') && isIP(self.substring(1, self.indexOf(']'))) \
        && int(self.substring(self.indexOf(']') + 2)) >= 1 \
        && int(self.substring(self.indexOf(']') + 2)) <= 65535)";

/// CEL rule of a hold time: 0 or 3..=65535 whole seconds (RFC 4271 §4.2).
const HOLD_TIME_RULE: &str = "duration(self) == duration('0s') \
    || (duration(self) >= duration('3s') && duration(self) <= duration('65535s') \
        && duration(self).getMilliseconds() % 1000 == 0)";

// The `x_kube` rules make the API server enforce the cross-field checks of
// the datastore loader (`petrel_datastore::validate`), so `kubectl apply`
// rejects an invalid peer with the name of the offending field.
/// One BGP peering (or a set of peerings chosen by selectors).
#[derive(
    CustomResource, KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default,
)]
#[kube(
    group = "petrel.dev",
    version = "v1",
    kind = "BGPPeer",
    plural = "bgppeers",
    shortname = "bgpp",
    category = "petrel",
    derive = "PartialEq",
    doc = "A BGP peering for some or all nodes; Calico-compatible fields plus holdTime, passive, maxPrefixes.",
    printcolumn = r#"{"name":"Node","type":"string","jsonPath":".spec.node"}"#,
    printcolumn = r#"{"name":"Node Selector","type":"string","jsonPath":".spec.nodeSelector"}"#,
    printcolumn = r#"{"name":"Peer IP","type":"string","jsonPath":".spec.peerIP"}"#,
    printcolumn = r#"{"name":"Peer Selector","type":"string","jsonPath":".spec.peerSelector"}"#,
    printcolumn = r#"{"name":"Peer ASN","type":"integer","jsonPath":".spec.asNumber"}"#,
    printcolumn = r#"{"name":"Local ASN","type":"integer","jsonPath":".spec.localASNumber"}"#,
    printcolumn = r#"{"name":"Filters","type":"string","priority":1,"jsonPath":".spec.filters"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    selectable = ".spec.node",
    selectable = ".spec.peerIP"
)]
#[schemars(transform = kubernetes_int_formats)]
#[x_kube(validation = Rule::new("!has(self.node) || !has(self.nodeSelector)")
    .message("node and nodeSelector cannot both be set")
    .field_path(".nodeSelector")
    .reason(Reason::FieldValueForbidden))]
#[x_kube(validation = Rule::new("!has(self.peerIP) || !has(self.peerSelector)")
    .message("peerIP and peerSelector cannot both be set")
    .field_path(".peerSelector")
    .reason(Reason::FieldValueForbidden))]
#[x_kube(validation = Rule::new("has(self.peerIP) || has(self.peerSelector)")
    .message("one of peerIP or peerSelector must be set")
    .field_path(".peerIP")
    .reason(Reason::FieldValueRequired))]
#[x_kube(validation = Rule::new("!has(self.peerIP) || has(self.asNumber)")
    .message("asNumber is required when peerIP is set")
    .field_path(".asNumber")
    .reason(Reason::FieldValueRequired))]
#[x_kube(validation = Rule::new("!has(self.peerSelector) || !has(self.asNumber)")
    .message("asNumber must be empty when peerSelector is set (the AS number comes from the selected nodes)")
    .field_path(".asNumber")
    .reason(Reason::FieldValueForbidden))]
#[x_kube(validation = Rule::new("!has(self.keepOriginalNextHop) || !self.keepOriginalNextHop || !has(self.nextHopMode)")
    .message("keepOriginalNextHop and nextHopMode cannot both be set; keepOriginalNextHop is deprecated, use nextHopMode")
    .field_path(".keepOriginalNextHop")
    .reason(Reason::FieldValueForbidden))]
#[x_kube(validation = Rule::new("!has(self.localWorkloadSelector)")
    .message("peering with local workloads is not supported by petrel")
    .field_path(".localWorkloadSelector")
    .reason(Reason::FieldValueForbidden))]
#[x_kube(validation = Rule::new("!has(self.reachableBy) || has(self.peerIP)")
    .message("reachableBy must be empty when peerIP is empty")
    .field_path(".reachableBy")
    .reason(Reason::FieldValueForbidden))]
#[x_kube(validation = Rule::new(concat!(
        "!has(self.reachableBy) || !has(self.peerIP) || !isIP(self.reachableBy) || !isIP(", peer_host!(),
        ") || ip(self.reachableBy).family() == ip(", peer_host!(), ").family()"))
    .message("address family does not match peerIP")
    .field_path(".reachableBy"))]
#[x_kube(validation = Rule::new("!has(self.sourceAddress) || self.sourceAddress in ['UseNodeIP', 'None'] || has(self.peerIP)")
    .message("a literal sourceAddress needs peerIP (use UseNodeIP or None with peerSelector)")
    .field_path(".sourceAddress")
    .reason(Reason::FieldValueForbidden))]
#[x_kube(validation = Rule::new(concat!(
        "!has(self.sourceAddress) || !has(self.peerIP) || !isIP(self.sourceAddress) || !isIP(", peer_host!(),
        ") || ip(self.sourceAddress).family() == ip(", peer_host!(), ").family()"))
    .message("address family does not match peerIP")
    .field_path(".sourceAddress"))]
#[x_kube(validation = Rule::new("!has(self.keepaliveTime) || (has(self.holdTime) && duration(self.holdTime) == duration('0s')) \
        || duration(self.keepaliveTime) < (has(self.holdTime) ? duration(self.holdTime) : duration('90s'))")
    .message("keepaliveTime must be shorter than the hold time (holdTime, default 90s)")
    .field_path(".keepaliveTime"))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BgpPeerSpec {
    /// The node that has this peering. Neither `node` nor `nodeSelector`: all nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub node: Option<String>,
    /// Selector (Calico syntax) of the nodes that have this peering.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    #[x_kube(validation = Rule::new(crate::selector::SELECTOR_CEL_RULE).message(crate::selector::SELECTOR_CEL_MESSAGE))]
    pub node_selector: Option<String>,
    /// Address of the peer, with an optional port: `10.0.0.1`, `10.0.0.1:1179`,
    /// `fd00::1`, `[fd00::1]:1179`.
    #[serde(rename = "peerIP", default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(PEER_IP_RULE)
        .message("must be an IP address, <IPv4>:<port> or [<IPv6>]:<port> with a port in 1..65535"))]
    pub peer_ip: Option<PeerIp>,
    /// AS number of the peer (required with `peerIP`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 4294967295u32))]
    pub as_number: Option<u32>,
    /// Local AS number for this peering instead of the node's.
    #[serde(
        rename = "localASNumber",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(range(min = 1, max = 4294967295u32))]
    pub local_as_number: Option<u32>,
    /// Selector of other nodes to peer with (one peering per selected node and family).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    #[x_kube(validation = Rule::new(crate::selector::SELECTOR_CEL_RULE).message(crate::selector::SELECTOR_CEL_MESSAGE))]
    pub peer_selector: Option<String>,
    /// Deprecated Calico field: `true` is `nextHopMode: Keep` for eBGP peers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_original_next_hop: Option<bool>,
    /// Next hop on routes sent to this peer: `Auto` (BGP default), `Self`, `Keep`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_hop_mode: Option<NextHopModeSpec>,
    /// TCP MD5 password (RFC 2385) from a Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<BgpPassword>,
    /// Local address of the TCP connection: `UseNodeIP` (default) binds to the
    /// node's address of the peer's family, `None` lets the kernel choose;
    /// petrel also accepts a literal IP address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self in ['UseNodeIP', 'None'] || isIP(self)")
        .message("must be UseNodeIP, None or an IP address"))]
    pub source_address: Option<SourceAddress>,
    /// Graceful-restart time advertised to this peer (RFC 4724). [Default: 120s]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = Rule::new("duration(self) >= duration('0s') && duration(self) <= duration('4095s')")
        .message("must be at most 4095s: the graceful-restart time is a 12-bit number of seconds (RFC 4724)"))]
    pub max_restart_time: Option<KubeDuration>,
    /// Interval between KEEPALIVE messages. [Default: one third of the hold time]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = Rule::new("duration(self) >= duration('1s') && duration(self) <= duration('65535s')")
        .message("must be 1s..65535s"))]
    pub keepalive_time: Option<KubeDuration>,
    /// How many times our own AS may appear in received AS paths (0..=255).
    #[serde(
        rename = "numAllowedLocalASNumbers",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(range(min = 0, max = 255))]
    pub num_allowed_local_as_numbers: Option<i32>,
    /// GTSM (RFC 5082): the number of hops to the peer; 0 or absent disables it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_security: Option<u8>,
    /// Calico installs a static route to the peer through this gateway.
    /// Accepted for compatibility (the address is checked) and ignored by petrel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = Rule::new("isIP(self)").message("must be an IP address"))]
    pub reachable_by: Option<String>,
    /// Names of BGPFilters applied to this peering, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(length(min = 1, max = 253)))]
    pub filters: Vec<String>,
    /// Calico's peering with local workloads. Not supported by petrel (rejected if set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub local_workload_selector: Option<String>,
    /// Whether nodes selected by `peerSelector` (or owning `peerIP`) get the
    /// reverse peering automatically (`Auto`, default) or need their own BGPPeer (`Manual`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reverse_peering: Option<ReversePeering>,
    /// petrel addition: hold time proposed in OPEN (0 or at least 3s). [Default: 90s]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = Rule::new(HOLD_TIME_RULE)
        .message("must be 0 or 3s..65535s in whole seconds (RFC 4271)"))]
    pub hold_time: Option<KubeDuration>,
    /// petrel addition: never initiate the TCP connection, only accept it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passive: Option<bool>,
    /// petrel addition: maximum number of prefixes accepted per family; the
    /// session is closed with a Cease NOTIFICATION (RFC 4486) when exceeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_prefixes: Option<u32>,
    /// petrel addition: address families negotiated on this session
    /// (`IPv4`, `IPv6`). Default: the family of the peer address, one session
    /// per family as Calico runs them; `[IPv4, IPv6]` on an IPv4 peer carries
    /// IPv6 routes with IPv6 next hops over the IPv4 session (RFC 4760).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 2))]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub families: Vec<AddressFamilySpec>,
    /// petrel addition (MetalLB's field): the name of a BFDProfile. BFD
    /// (RFC 5880) runs on the sessions of this peer with its parameters; once
    /// BFD has been up, BFD down ends the BGP session at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub bfd_profile: Option<String>,
}

/// petrel `families` entry.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressFamilySpec {
    #[serde(rename = "IPv4")]
    Ipv4,
    #[serde(rename = "IPv6")]
    Ipv6,
}

/// Calico `nextHopMode`.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextHopModeSpec {
    Auto,
    #[serde(rename = "Self")]
    SelfHop,
    Keep,
}

/// Calico `reversePeering`.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReversePeering {
    Auto,
    Manual,
}

/// A peer address with an optional TCP port (Calico `peerIP`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerIp {
    pub ip: IpAddr,
    pub port: Option<u16>,
}

impl FromStr for PeerIp {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(PeerIp { ip, port: None });
        }
        match s.parse::<SocketAddr>() {
            Ok(sa) if sa.port() == 0 => Err(format!("invalid peerIP {s:?}: port 0 is not allowed")),
            Ok(sa) => Ok(PeerIp {
                ip: sa.ip(),
                port: Some(sa.port()),
            }),
            Err(_) => Err(format!(
                "invalid peerIP {s:?}: expected an IP address, <IPv4>:<port> or [<IPv6>]:<port>"
            )),
        }
    }
}

impl fmt::Display for PeerIp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.ip, self.port) {
            (ip, None) => ip.fmt(f),
            (IpAddr::V4(ip), Some(p)) => write!(f, "{ip}:{p}"),
            (IpAddr::V6(ip), Some(p)) => write!(f, "[{ip}]:{p}"),
        }
    }
}

/// Calico `sourceAddress`, extended with literal addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceAddress {
    /// Bind to the node's address of the peer's family (Calico default).
    UseNodeIp,
    /// Do not bind; the kernel picks the source address.
    None,
    /// petrel extension: bind to this address.
    Address(IpAddr),
}

impl FromStr for SourceAddress {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "UseNodeIP" => Ok(SourceAddress::UseNodeIp),
            "None" => Ok(SourceAddress::None),
            other => other.parse().map(SourceAddress::Address).map_err(|_| {
                format!(
                    "invalid sourceAddress {s:?}: expected \"UseNodeIP\", \"None\" or an IP address"
                )
            }),
        }
    }
}

impl fmt::Display for SourceAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceAddress::UseNodeIp => f.write_str("UseNodeIP"),
            SourceAddress::None => f.write_str("None"),
            SourceAddress::Address(ip) => ip.fmt(f),
        }
    }
}

macro_rules! string_serde {
    ($ty:ty, $expecting:literal, $schema_name:literal, $desc:literal) => {
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct Visitor;
                impl serde::de::Visitor<'_> for Visitor {
                    type Value = $ty;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str($expecting)
                    }
                    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<$ty, E> {
                        v.parse().map_err(E::custom)
                    }
                }
                deserializer.deserialize_str(Visitor)
            }
        }
        impl schemars::JsonSchema for $ty {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                $schema_name.into()
            }
            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({ "type": "string", "maxLength": 64, "description": $desc })
            }
            fn inline_schema() -> bool {
                true
            }
        }
    };
}

string_serde!(
    PeerIp,
    "a peer address such as \"10.0.0.1\", \"10.0.0.1:179\" or \"[fd00::1]:179\"",
    "PeerIP",
    "IP address of the peer with an optional port: 10.0.0.1, 10.0.0.1:179, fd00::1, [fd00::1]:179."
);
string_serde!(
    SourceAddress,
    "\"UseNodeIP\", \"None\" or an IP address",
    "SourceAddress",
    "UseNodeIP (default), None, or a literal IP address (petrel extension)."
);
