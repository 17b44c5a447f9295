//! `BGPFilter` (petrel.dev/v1): ordered import/export rules for peers, with
//! the fields of Calico's `projectcalico.org/v3` BGPFilter.
//! Related RFCs: RFC 4271 §9.1 (route selection and policy), RFC 1997 and
//! RFC 8092 (community matches and additions), RFC 4271 §5.1.2 (AS_PATH prepend).

use super::CommunityValue;
use ipnet::IpNet;
use kube::CustomResource;
use serde::{Deserialize, Serialize};

/// Import and export rules, per family. Rules are evaluated in order; the
/// first rule that matches decides (`Accept` or `Reject`). Routes no rule
/// matches fall through to the next filter of the peer, then to the default
/// (import: accept; export: petrel's normal export policy).
#[derive(
    CustomResource,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
    Debug,
    Clone,
    PartialEq,
    Eq,
    Default,
)]
#[kube(
    group = "petrel.dev",
    version = "v1",
    kind = "BGPFilter",
    plural = "bgpfilters",
    derive = "PartialEq",
    doc = "Ordered BGP import/export rules referenced by BGPPeer.spec.filters; Calico-compatible fields."
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BgpFilterSpec {
    /// Rules for IPv4 routes sent to the peer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub export_v4: Vec<BgpFilterRule>,
    /// Rules for IPv4 routes received from the peer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub import_v4: Vec<BgpFilterRule>,
    /// Rules for IPv6 routes sent to the peer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub export_v6: Vec<BgpFilterRule>,
    /// Rules for IPv6 routes received from the peer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub import_v6: Vec<BgpFilterRule>,
}

/// One rule: all the match fields that are set must match; then `action`
/// applies, after `operations` when the action is `Accept`.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BgpFilterRule {
    /// Prefix to compare the route with, using `matchOperator` (both or neither).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::cidr_schema")]
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
    pub as_path_prefix: Vec<u32>,
    /// Only routes with this priority (kernel metric, 1..=2147483646).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u32>,
    pub action: FilterAction,
    /// Modifications applied to matching routes before accepting them
    /// (only with `action: Accept`, at most 10).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub operations: Vec<BgpFilterOperation>,
}

/// Range of prefix lengths.
#[derive(
    Serialize, Deserialize, schemars::JsonSchema, Debug, Clone, Copy, PartialEq, Eq, Default,
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrefixLengthRange {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
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
    pub values: Vec<CommunityValue>,
}

/// One route modification; exactly one field is set.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Debug, Clone, PartialEq, Eq, Default)]
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
    pub prefix: Vec<u32>,
}

/// Set the route's priority (kernel metric, 1..=2147483646).
#[derive(Serialize, Deserialize, schemars::JsonSchema, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SetPriority {
    pub value: u32,
}
