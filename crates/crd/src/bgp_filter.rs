//! `BGPFilter` (petrel.dev/v1): ordered import/export rules for peers, with
//! the fields of Calico's `projectcalico.org/v3` BGPFilter.
//! Related RFCs: RFC 4271 §9.1 (route selection and policy), RFC 1997 and
//! RFC 8092 (community matches and additions), RFC 4271 §5.1.2 (AS_PATH prepend).

use super::CommunityValue;
use ipnet::IpNet;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// Import and export rules, per family. Rules are evaluated in order; the
/// first rule that matches decides (`Accept` or `Reject`). Routes no rule
/// matches fall through to the next filter of the peer, then to the default
/// (import: accept; export: petrel's normal export policy).
//
// The `x_kube` rules make the API server enforce the checks of the
// datastore loader (`petrel_datastore::validate`), including that the
// `*V4` lists hold IPv4 prefixes and the `*V6` lists IPv6 prefixes.
#[derive(
    CustomResource, KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default,
)]
#[kube(
    group = "petrel.dev",
    version = "v1",
    kind = "BGPFilter",
    plural = "bgpfilters",
    shortname = "bgpf",
    category = "petrel",
    derive = "PartialEq",
    doc = "Ordered BGP import/export rules referenced by BGPPeer.spec.filters; Calico-compatible fields.",
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[schemars(transform = super::bgp_peer::kubernetes_int_formats)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BgpFilterSpec {
    /// Rules for IPv4 routes sent to the peer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1000))]
    #[x_kube(validation = Rule::new("self.all(r, !has(r.cidr) || !isCIDR(r.cidr) || cidr(r.cidr).ip().family() == 4)")
        .message("exportV4 rules need IPv4 prefixes in cidr"))]
    #[x_kube(validation = Rule::new("self.all(r, !has(r.prefixLength) || ((!has(r.prefixLength.min) || r.prefixLength.min <= 32) && (!has(r.prefixLength.max) || r.prefixLength.max <= 32)))")
        .message("exportV4 rules need prefixLength min and max in 0..32"))]
    pub export_v4: Vec<BgpFilterRule>,
    /// Rules for IPv4 routes received from the peer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1000))]
    #[x_kube(validation = Rule::new("self.all(r, !has(r.cidr) || !isCIDR(r.cidr) || cidr(r.cidr).ip().family() == 4)")
        .message("importV4 rules need IPv4 prefixes in cidr"))]
    #[x_kube(validation = Rule::new("self.all(r, !has(r.prefixLength) || ((!has(r.prefixLength.min) || r.prefixLength.min <= 32) && (!has(r.prefixLength.max) || r.prefixLength.max <= 32)))")
        .message("importV4 rules need prefixLength min and max in 0..32"))]
    pub import_v4: Vec<BgpFilterRule>,
    /// Rules for IPv6 routes sent to the peer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1000))]
    #[x_kube(validation = Rule::new("self.all(r, !has(r.cidr) || !isCIDR(r.cidr) || cidr(r.cidr).ip().family() == 6)")
        .message("exportV6 rules need IPv6 prefixes in cidr"))]
    #[x_kube(validation = Rule::new("self.all(r, !has(r.prefixLength) || ((!has(r.prefixLength.min) || r.prefixLength.min <= 128) && (!has(r.prefixLength.max) || r.prefixLength.max <= 128)))")
        .message("exportV6 rules need prefixLength min and max in 0..128"))]
    pub export_v6: Vec<BgpFilterRule>,
    /// Rules for IPv6 routes received from the peer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1000))]
    #[x_kube(validation = Rule::new("self.all(r, !has(r.cidr) || !isCIDR(r.cidr) || cidr(r.cidr).ip().family() == 6)")
        .message("importV6 rules need IPv6 prefixes in cidr"))]
    #[x_kube(validation = Rule::new("self.all(r, !has(r.prefixLength) || ((!has(r.prefixLength.min) || r.prefixLength.min <= 128) && (!has(r.prefixLength.max) || r.prefixLength.max <= 128)))")
        .message("importV6 rules need prefixLength min and max in 0..128"))]
    pub import_v6: Vec<BgpFilterRule>,
}

/// One rule: all the match fields that are set must match; then `action`
/// applies, after `operations` when the action is `Accept`.
#[derive(Serialize, Deserialize, KubeSchema, Debug, Clone, PartialEq, Eq)]
#[x_kube(validation = Rule::new("has(self.cidr) == has(self.matchOperator)")
    .message("cidr and matchOperator must both be set or both be empty"))]
#[x_kube(validation = Rule::new("!has(self.prefixLength) || has(self.cidr)")
    .message("cidr is required when prefixLength is set")
    .field_path(".prefixLength")
    .reason(Reason::FieldValueRequired))]
#[x_kube(validation = Rule::new("!has(self.operations) || size(self.operations) == 0 || self.action == 'Accept'")
    .message("operations may only be used with action Accept")
    .field_path(".operations")
    .reason(Reason::FieldValueForbidden))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BgpFilterRule {
    /// Prefix to compare the route with, using `matchOperator` (both or neither).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::cidr_schema", length(max = 64))]
    #[x_kube(validation = Rule::new("isCIDR(self)").message("must be a CIDR such as 10.0.0.0/8 or fd00::/8"))]
    pub cidr: Option<IpNet>,
    /// With `cidr`: allowed prefix lengths of the route. Default min is the
    /// CIDR's length and max is 32 (IPv4) or 128 (IPv6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix_length: Option<PrefixLengthRange>,
    /// `RemotePeers`: only routes learned from BGP peers (not locally originated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<FilterSource>,
    /// Only routes whose outgoing interface matches this name (`*` is a wildcard).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9_.*-]{1,15}$"))]
    pub interface: Option<String>,
    /// How the route's prefix is compared with `cidr`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_operator: Option<MatchOperator>,
    /// Only for peers of this type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_type: Option<FilterPeerType>,
    /// Only routes carrying this community.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub communities: Option<CommunityMatch>,
    /// Only routes whose AS path starts with this sequence.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(range(min = 1, max = 4294967295u32)))]
    pub as_path_prefix: Vec<u32>,
    /// Only routes with this priority (kernel metric, 1..=2147483646).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 2147483646))]
    pub priority: Option<u32>,
    pub action: FilterAction,
    /// Modifications applied to matching routes before accepting them
    /// (only with `action: Accept`, at most 10).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10))]
    pub operations: Vec<BgpFilterOperation>,
}

/// Range of prefix lengths.
#[derive(Serialize, Deserialize, KubeSchema, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[x_kube(validation = Rule::new("!has(self.min) || !has(self.max) || self.min <= self.max")
    .message("min must not be greater than max"))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrefixLengthRange {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 128))]
    pub min: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 128))]
    pub max: Option<u8>,
}

/// Calico `source`.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterSource {
    RemotePeers,
}

/// Calico `matchOperator`.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchOperator {
    /// The route's prefix is exactly `cidr`.
    Equal,
    /// The route's prefix is not exactly `cidr`.
    NotEqual,
    /// The route's prefix lies within `cidr` (or equals it).
    In,
    /// The route's prefix does not lie within `cidr`.
    NotIn,
}

/// Calico `peerType`.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterPeerType {
    #[serde(rename = "eBGP")]
    Ebgp,
    #[serde(rename = "iBGP")]
    Ibgp,
}

/// Calico `action`.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterAction {
    Accept,
    Reject,
}

/// Community match (Calico accepts exactly one value).
#[derive(Serialize, Deserialize, schemars::JsonSchema, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CommunityMatch {
    #[schemars(length(min = 1, max = 1))]
    pub values: Vec<CommunityValue>,
}

/// One route modification; exactly one field is set.
#[derive(Serialize, Deserialize, KubeSchema, Debug, Clone, PartialEq, Eq, Default)]
#[x_kube(validation = Rule::new("(has(self.addCommunity) ? 1 : 0) + (has(self.prependASPath) ? 1 : 0) + (has(self.setPriority) ? 1 : 0) == 1")
    .message("exactly one of addCommunity, prependASPath, setPriority must be set"))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BgpFilterOperation {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub add_community: Option<AddCommunity>,
    #[serde(
        rename = "prependASPath",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub prepend_as_path: Option<PrependAsPath>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_priority: Option<SetPriority>,
}

/// Add a community to the route.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AddCommunity {
    pub value: CommunityValue,
}

/// Prepend AS numbers to the AS path; the path then starts with `prefix` in order.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrependAsPath {
    #[schemars(length(min = 1, max = 10), inner(range(min = 1, max = 4294967295u32)))]
    pub prefix: Vec<u32>,
}

/// Set the route's priority (kernel metric, 1..=2147483646).
#[derive(Serialize, Deserialize, schemars::JsonSchema, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SetPriority {
    #[schemars(range(min = 1, max = 2147483646))]
    pub value: u32,
}
