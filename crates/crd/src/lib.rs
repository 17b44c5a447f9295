//! Kubernetes resource types served as CustomResources (petrel.dev/v1).
//!
//! The spec field names are exactly those of Calico's `projectcalico.org/v3`
//! resources (`BGPConfiguration`, `BGPPeer`, `BGPFilter`), so a Calico manifest
//! converts by changing its `apiVersion`. petrel's additions are marked as such
//! in the field documentation. Every spec rejects unknown fields, so a typo such
//! as `peerIp` is an error rather than a silently ignored setting.
//!
//! Values with a fixed syntax are typed and checked while deserializing
//! (durations, peer addresses, CIDRs, communities); rules that span several
//! fields are checked by the datastore loader (`petrel_datastore`).
//!
//! Related RFCs: RFC 4271 (BGP-4 timers and AS numbers), RFC 6793 (4-octet AS
//! numbers), RFC 1997 and RFC 8092 (communities), RFC 2385 (TCP MD5 password),
//! RFC 5082 (GTSM, `ttlSecurity`), RFC 4724 (graceful restart, `maxRestartTime`),
//! RFC 4456 (route reflection).

mod bfd_profile;
mod bgp_configuration;
mod bgp_filter;
mod bgp_peer;
mod community;
mod duration;
mod ip_pool;
mod ipam_objects;
mod node_status;
pub mod selector;

pub use bfd_profile::{
    BFDProfile, BfdProfileSpec, DEFAULT_BFD_DETECT_MULTIPLIER, DEFAULT_BFD_INTERVAL_MS,
    DEFAULT_BFD_MINIMUM_TTL, ECHO_INTERVAL_UNSUPPORTED, ECHO_MODE_UNSUPPORTED,
};
pub use bgp_configuration::{
    BGPConfiguration, BgpConfigurationSpec, BindModeSpec, CidrBlock, CommunityName,
    LoadBalancerAggregation, PrefixAdvertisement,
};
pub use bgp_filter::{
    AddCommunity, BGPFilter, BgpFilterOperation, BgpFilterRule, BgpFilterSpec, CommunityMatch,
    FilterAction, FilterPeerType, FilterSource, MatchOperator, PrefixLengthRange, PrependAsPath,
    SetPriority,
};
pub use bgp_peer::{
    AddressFamilySpec, BGPPeer, BgpPeerSpec, NextHopModeSpec, PeerIp, ReversePeering, SourceAddress,
};
pub use duration::{DurationError, KubeDuration, parse_go_duration};
pub use ip_pool::{
    AllowedUse, AssignmentMode, BLOCK_SIZE_RANGE_V4, BLOCK_SIZE_RANGE_V6, DEFAULT_BLOCK_SIZE_V4,
    DEFAULT_BLOCK_SIZE_V6, EncapsulationMode, IPPool, IpPoolSpec, PoolOverlap, check_pool_overlaps,
    nets_overlap,
};
pub use ipam_objects::{
    AFFINITY_HOST_PREFIX, AffinityState, BlockAffinity, BlockAffinitySpec, BlockAllocation,
    BlockState, IPAMBlock, IpamBlockSpec, RESERVED_GATEWAY, ReservedAddress, affinity_for,
    affinity_name, affinity_node, allocation_key, block_name, is_valid_object_name, stable_hash,
};
pub use node_status::{
    BlockReport, BlockStatus, ConditionReport, FIELD_MANAGER, NodeStatusReport, PeerReport,
    PeerStatus, PetrelNode, PetrelNodeSpec, PetrelNodeStatus, StatusCondition, build_status,
    rfc3339, same_status,
};

pub use community::{Community, CommunityParseError};
use kube::CustomResourceExt;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// API group of petrel's resources.
pub const GROUP: &str = "petrel.dev";
/// API version of petrel's resources.
pub const VERSION: &str = "v1";
/// `apiVersion` of petrel's resources.
pub const API_VERSION: &str = "petrel.dev/v1";
/// `apiVersion` of the Calico resources petrel's mirror.
pub const CALICO_API_VERSION: &str = "projectcalico.org/v3";

/// A reference to one key of a Secret (Kubernetes `SecretKeySelector`).
#[derive(Serialize, Deserialize, schemars::JsonSchema, Debug, Clone, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretKeySelector {
    /// Name of the Secret (in the namespace petrel runs in).
    pub name: String,
    /// The key of the Secret's data to use.
    pub key: String,
    /// When true, a missing Secret or key means "no password" instead of an error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optional: Option<bool>,
}

/// Ways to specify a BGP password (TCP MD5 signature, RFC 2385).
#[derive(Serialize, Deserialize, schemars::JsonSchema, Debug, Clone, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BgpPassword {
    /// Selects a key of a Secret holding the password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<SecretKeySelector>,
}

/// A community written as `aa:nn` (standard, RFC 1997) or `aa:nn:mm` (large, RFC 8092).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CommunityValue(pub Community);

impl Serialize for CommunityValue {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for CommunityValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = CommunityValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a community string \"aa:nn\" or \"aa:nn:mm\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<CommunityValue, E> {
                v.parse().map(CommunityValue).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

impl schemars::JsonSchema for CommunityValue {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "CommunityValue".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^(\\d+):(\\d+)$|^(\\d+):(\\d+):(\\d+)$",
            "description": "A standard community aa:nn (16-bit parts) or a large community aa:nn:mm (32-bit parts)."
        })
    }
    fn inline_schema() -> bool {
        true
    }
}

/// OpenAPI schema of a CIDR field: a plain string, so the CRD schema stays
/// structural (ipnet's own schema uses `oneOf` without a top-level type).
pub(crate) fn cidr_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "string",
        "description": "An IPv4 or IPv6 prefix in CIDR notation, e.g. 10.96.0.0/12 or fd00:10:96::/112."
    })
}

/// Removes `null` from the `enum` of nullable properties. kube writes optional
/// enums as `nullable: true` with `null` among the values; the API server
/// accepts that, but kubectl's client-side validation rejects it ("unknown
/// object type nil"), and `nullable` already allows the null.
pub fn drop_null_enum_values(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            if map.get("nullable").and_then(|n| n.as_bool()) == Some(true)
                && let Some(serde_json::Value::Array(values)) = map.get_mut("enum")
            {
                values.retain(|x| !x.is_null());
            }
            map.values_mut().for_each(drop_null_enum_values);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(drop_null_enum_values),
        _ => {}
    }
}

/// All of petrel's CustomResourceDefinitions, as `kubectl` takes them (with
/// [`drop_null_enum_values`] applied).
pub fn crds() -> Vec<serde_json::Value> {
    [
        BGPConfiguration::crd(),
        BGPPeer::crd(),
        BGPFilter::crd(),
        BFDProfile::crd(),
        IPPool::crd(),
        IPAMBlock::crd(),
        BlockAffinity::crd(),
        PetrelNode::crd(),
    ]
    .iter()
    .map(|c| {
        let mut v = serde_json::to_value(c).unwrap_or_default();
        drop_null_enum_values(&mut v);
        v
    })
    .collect()
}

/// All of petrel's CustomResourceDefinitions as one multi-document YAML string
/// (the content of `manifests/crds.yaml`).
pub fn crd_manifests() -> String {
    let crds = crds();
    let body = serde_saphyr::to_string_multiple(&crds)
        // Serializing plain data structures into a String cannot fail; keep the
        // error visible in the output rather than panicking if it ever does.
        .unwrap_or_else(|e| format!("# error: cannot serialize the CRDs: {e}\n"));
    format!(
        "# petrel CustomResourceDefinitions (group {GROUP}, version {VERSION}).\n\
         # Generated from src/k8s by `petrel crds`; do not edit by hand.\n\
         ---\n{body}"
    )
}

#[cfg(test)]
mod tests;
