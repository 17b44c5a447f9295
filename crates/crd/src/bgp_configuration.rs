//! `BGPConfiguration` (petrel.dev/v1): cluster-wide BGP settings, a singleton
//! named `default`. Field names follow Calico's `projectcalico.org/v3`.
//! Related RFCs: RFC 6793 (AS numbers), RFC 1997 / RFC 8092 (communities),
//! RFC 2385 (mesh password), RFC 4724 (mesh graceful-restart time).

use super::{BgpPassword, CommunityValue, KubeDuration};
use ipnet::IpNet;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};
use std::fmt;

// The `x_kube` rules make the API server enforce the cross-field checks of
// the datastore loader (`petrel_datastore::validate`).
/// Cluster-wide BGP configuration. Only the object named `default` is used.
#[derive(
    CustomResource, KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default,
)]
#[kube(
    group = "petrel.dev",
    version = "v1",
    kind = "BGPConfiguration",
    plural = "bgpconfigurations",
    shortname = "bgpc",
    shortname = "bgpconfig",
    category = "petrel",
    derive = "PartialEq",
    doc = "Cluster-wide BGP configuration (singleton named `default`); Calico-compatible fields.",
    printcolumn = r#"{"name":"ASN","type":"integer","jsonPath":".spec.asNumber"}"#,
    printcolumn = r#"{"name":"Mesh","type":"boolean","jsonPath":".spec.nodeToNodeMeshEnabled"}"#,
    printcolumn = r#"{"name":"Port","type":"integer","jsonPath":".spec.listenPort"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    validation = Rule::new("self.metadata.name == 'default'")
        .message("metadata.name must be \"default\": petrel supports only the BGPConfiguration named default (per-node configurations are not; use petrel.dev/* annotations on the Node)")
        .reason(Reason::FieldValueInvalid)
)]
#[schemars(transform = super::bgp_peer::kubernetes_int_formats)]
#[x_kube(validation = Rule::new("!has(self.nodeMeshPassword) || !has(self.nodeToNodeMeshEnabled) || self.nodeToNodeMeshEnabled")
    .message("nodeMeshPassword cannot be set when nodeToNodeMeshEnabled is false")
    .field_path(".nodeMeshPassword")
    .reason(Reason::FieldValueForbidden))]
#[x_kube(validation = Rule::new("!has(self.nodeMeshMaxRestartTime) || !has(self.nodeToNodeMeshEnabled) || self.nodeToNodeMeshEnabled")
    .message("nodeMeshMaxRestartTime cannot be set when nodeToNodeMeshEnabled is false")
    .field_path(".nodeMeshMaxRestartTime")
    .reason(Reason::FieldValueForbidden))]
#[x_kube(validation = Rule::new("!has(self.prefixAdvertisements) || self.prefixAdvertisements.all(pa, \
        !has(pa.communities) || pa.communities.all(c, c.matches('^[0-9]+:[0-9]+(:[0-9]+)?$') \
        || (has(self.communities) && self.communities.exists(n, n.name == c))))")
    .message("prefixAdvertisements: every community must be a name defined in communities or a value aa:nn or aa:nn:mm")
    .field_path(".prefixAdvertisements"))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BgpConfigurationSpec {
    /// Calico's log level for BIRD. Accepted for compatibility and ignored:
    /// petrel's log level is set with RUST_LOG / --log-level.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_severity_screen: Option<String>,
    /// Whether every node peers with every other node (iBGP full mesh). [Default: true]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_to_node_mesh_enabled: Option<bool>,
    /// Default AS number of the nodes. [Default: 64512]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 4294967295u32))]
    pub as_number: Option<u32>,
    /// CIDRs of Service LoadBalancer IPs to advertise.
    #[serde(
        rename = "serviceLoadBalancerIPs",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    #[schemars(length(max = 1024))]
    pub service_load_balancer_ips: Vec<CidrBlock>,
    /// CIDRs of Service external IPs to advertise.
    #[serde(
        rename = "serviceExternalIPs",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    #[schemars(length(max = 1024))]
    pub service_external_ips: Vec<CidrBlock>,
    /// CIDRs of Service cluster IPs to advertise.
    #[serde(
        rename = "serviceClusterIPs",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    #[schemars(length(max = 1024))]
    pub service_cluster_ips: Vec<CidrBlock>,
    /// How LoadBalancer IPs are advertised: `Enabled` advertises the
    /// `serviceLoadBalancerIPs` CIDRs; `Disabled` advertises each LoadBalancer
    /// IP as a /32 or /128 instead, while its Service has a ready endpoint.
    /// [Default: Enabled]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_load_balancer_aggregation: Option<LoadBalancerAggregation>,
    /// Named communities, usable by name in `prefixAdvertisements`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub communities: Vec<CommunityName>,
    /// Communities added to advertised routes that lie within a CIDR.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 128))]
    pub prefix_advertisements: Vec<PrefixAdvertisement>,
    /// TCP port petrel listens on for BGP. [Default: 179]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub listen_port: Option<u16>,
    /// TCP MD5 password for the node-to-node mesh sessions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_mesh_password: Option<BgpPassword>,
    /// Graceful-restart time advertised on mesh sessions. [Default: 120s]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = Rule::new("duration(self) >= duration('0s') && duration(self) <= duration('4095s')")
        .message("must be at most 4095s: the graceful-restart time is a 12-bit number of seconds (RFC 4724)"))]
    pub node_mesh_max_restart_time: Option<KubeDuration>,
    /// `None`: listen on all addresses; `NodeIP`: only on the node's addresses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind_mode: Option<BindModeSpec>,
    /// petrel addition: the most equal-cost paths installed for one prefix
    /// (ECMP). 1 disables multipath. [Default: 16]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 256))]
    pub max_paths: Option<u16>,
    /// petrel addition: pass unknown optional transitive path attributes on
    /// when re-advertising a route, with the Partial bit set (RFC 4271 §5),
    /// as a route reflector should. [Default: false: they are stripped, a
    /// node agent is not a transit router]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pass_unknown_attributes: Option<bool>,
    /// petrel addition: the name of a BFDProfile for the node-to-node mesh
    /// sessions (BFD, RFC 5880). [Default: no BFD]
    #[serde(
        default,
        rename = "nodeMeshBFDProfile",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(length(min = 1, max = 253))]
    pub node_mesh_bfd_profile: Option<String>,
}

/// A CIDR block (`{cidr: 10.96.0.0/12}`).
#[derive(Serialize, Deserialize, KubeSchema, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CidrBlock {
    #[schemars(schema_with = "super::cidr_schema", length(max = 64))]
    #[x_kube(validation = Rule::new("isCIDR(self)").message("must be a CIDR such as 10.96.0.0/12 or fd00:10:96::/112"))]
    pub cidr: IpNet,
}

/// A named community.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CommunityName {
    #[schemars(length(min = 1, max = 64))]
    pub name: String,
    /// `aa:nn` (standard) or `aa:nn:mm` (large).
    pub value: CommunityValue,
}

/// Communities to add to routes within `cidr`.
#[derive(Serialize, Deserialize, KubeSchema, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrefixAdvertisement {
    #[schemars(schema_with = "super::cidr_schema", length(max = 64))]
    #[x_kube(validation = Rule::new("isCIDR(self)").message("must be a CIDR such as 10.96.0.0/12 or fd00:10:96::/112"))]
    pub cidr: IpNet,
    /// Names from `communities`, or literal `aa:nn` / `aa:nn:mm` values.
    #[serde(default)]
    #[schemars(length(max = 16), inner(length(min = 1, max = 64)))]
    pub communities: Vec<String>,
}

/// Calico `bindMode`.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindModeSpec {
    None,
    #[serde(rename = "NodeIP")]
    NodeIp,
}

/// Calico `serviceLoadBalancerAggregation`.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadBalancerAggregation {
    Enabled,
    Disabled,
}

impl fmt::Display for BindModeSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BindModeSpec::None => "None",
            BindModeSpec::NodeIp => "NodeIP",
        })
    }
}

// `CidrBlock` values print as the bare CIDR in error messages.
impl fmt::Display for CidrBlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.cidr.fmt(f)
    }
}
