//! BGP identity of a Kubernetes Node: AS number, addresses, router ID and
//! route-reflector cluster ID, from `petrel.dev/*` annotations or, for the
//! addresses, from `status.addresses` (InternalIP). RFC 4271 (BGP identifier),
//! RFC 6286 (AS-wide unique router ID), RFC 4456 (cluster ID).

use ipnet::{Ipv4Net, Ipv6Net};
use k8s_openapi::api::core::v1::Node;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

pub const ANNOTATION_AS_NUMBER: &str = "petrel.dev/as-number";
pub const ANNOTATION_IPV4_ADDRESS: &str = "petrel.dev/ipv4-address";
pub const ANNOTATION_IPV6_ADDRESS: &str = "petrel.dev/ipv6-address";
pub const ANNOTATION_ROUTER_ID: &str = "petrel.dev/router-id";
pub const ANNOTATION_RR_CLUSTER_ID: &str = "petrel.dev/route-reflector-cluster-id";
/// `"true"`: the node drains its routes (RFC 8326 graceful shutdown), as when
/// it is cordoned; `"false"`: a cordon does not drain it.
pub const ANNOTATION_GRACEFUL_SHUTDOWN: &str = "petrel.dev/graceful-shutdown";

/// What petrel needs to know about a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NodeInfo {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub as_number: Option<u32>,
    pub ipv4: Option<Ipv4Net>,
    pub ipv6: Option<Ipv6Net>,
    pub router_id: Option<Ipv4Addr>,
    pub rr_cluster_id: Option<Ipv4Addr>,
    /// `spec.podCIDRs` (or `spec.podCIDR`): the node's pod blocks until
    /// petrel's own IPAM assigns them.
    pub pod_cidrs: Vec<ipnet::IpNet>,
    /// Why the node drains (RFC 8326 graceful shutdown), when it does: it is
    /// cordoned (`spec.unschedulable`) or annotated
    /// `petrel.dev/graceful-shutdown: "true"`.
    pub graceful_shutdown: Option<String>,
    /// An invalid `petrel.dev/graceful-shutdown` value (ignored).
    pub graceful_shutdown_problem: Option<String>,
}

impl NodeInfo {
    /// The node's address of the same family as `like`.
    pub fn address_like(&self, like: IpAddr) -> Option<IpAddr> {
        match like {
            IpAddr::V4(_) => self.ipv4.map(|n| IpAddr::V4(n.addr())),
            IpAddr::V6(_) => self.ipv6.map(|n| IpAddr::V6(n.addr())),
        }
    }

    pub fn addresses(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.ipv4
            .map(|n| IpAddr::V4(n.addr()))
            .into_iter()
            .chain(self.ipv6.map(|n| IpAddr::V6(n.addr())))
    }
}

/// A problem with one field of a Node: (field path, reason).
pub(crate) type FieldError = (String, String);

fn annotation_field(key: &str) -> String {
    format!("metadata.annotations[{key:?}]")
}

/// Extracts the identity of a node; collects every problem found.
pub(crate) fn node_info(node: &Node) -> Result<NodeInfo, Vec<FieldError>> {
    let name = node.metadata.name.clone().unwrap_or_default();
    let empty = BTreeMap::new();
    let ann = node.metadata.annotations.as_ref().unwrap_or(&empty);
    let mut errors = Vec::new();

    let as_number = ann
        .get(ANNOTATION_AS_NUMBER)
        .and_then(|v| match v.trim().parse::<u32>() {
            Ok(0) | Err(_) => {
                errors.push((
                    annotation_field(ANNOTATION_AS_NUMBER),
                    format!("invalid AS number {v:?}: expected an integer 1..=4294967295"),
                ));
                None
            }
            Ok(n) => Some(n),
        });

    let ipv4 = match ann.get(ANNOTATION_IPV4_ADDRESS) {
        Some(v) => parse_v4(v)
            .map_err(|r| errors.push((annotation_field(ANNOTATION_IPV4_ADDRESS), r)))
            .ok(),
        None => internal_ip(node, true).and_then(|ip| match ip {
            IpAddr::V4(a) => Some(Ipv4Net::from(a)),
            IpAddr::V6(_) => None,
        }),
    };
    let ipv6 = match ann.get(ANNOTATION_IPV6_ADDRESS) {
        Some(v) => parse_v6(v)
            .map_err(|r| errors.push((annotation_field(ANNOTATION_IPV6_ADDRESS), r)))
            .ok(),
        None => internal_ip(node, false).and_then(|ip| match ip {
            IpAddr::V6(a) => Some(Ipv6Net::from(a)),
            IpAddr::V4(_) => None,
        }),
    };
    let router_id = ann.get(ANNOTATION_ROUTER_ID).and_then(|v| {
        parse_id(v, "router ID")
            .map_err(|r| errors.push((annotation_field(ANNOTATION_ROUTER_ID), r)))
            .ok()
    });
    let rr_cluster_id = ann.get(ANNOTATION_RR_CLUSTER_ID).and_then(|v| {
        parse_id(v, "route-reflector cluster ID")
            .map_err(|r| errors.push((annotation_field(ANNOTATION_RR_CLUSTER_ID), r)))
            .ok()
    });

    let spec = node.spec.as_ref();
    let cordoned = spec.and_then(|s| s.unschedulable).unwrap_or(false);
    let graceful_shutdown = match ann.get(ANNOTATION_GRACEFUL_SHUTDOWN).map(|v| v.trim()) {
        Some(v) if v.eq_ignore_ascii_case("true") => {
            Some(format!("annotation {ANNOTATION_GRACEFUL_SHUTDOWN}=true"))
        }
        Some(v) if v.eq_ignore_ascii_case("false") => None,
        // Not an error that would drop the node from the mesh: an invalid
        // value is reported (see `graceful_shutdown_problem`) and ignored.
        Some(_) | None => cordoned.then(|| "node cordoned (spec.unschedulable)".to_string()),
    };
    let graceful_shutdown_problem = ann
        .get(ANNOTATION_GRACEFUL_SHUTDOWN)
        .map(|v| v.trim())
        .filter(|v| !v.eq_ignore_ascii_case("true") && !v.eq_ignore_ascii_case("false"))
        .map(|v| {
            format!(
                "{}: invalid value {v:?}, expected \"true\" or \"false\"; ignored",
                annotation_field(ANNOTATION_GRACEFUL_SHUTDOWN)
            )
        });
    let cidrs: Vec<String> = spec
        .and_then(|s| s.pod_cidrs.clone())
        .filter(|v| !v.is_empty())
        .or_else(|| spec.and_then(|s| s.pod_cidr.clone()).map(|c| vec![c]))
        .unwrap_or_default();
    let mut pod_cidrs = Vec::new();
    for (i, c) in cidrs.iter().enumerate() {
        match c.trim().parse::<ipnet::IpNet>() {
            Ok(n) if n == n.trunc() => pod_cidrs.push(n),
            Ok(n) => errors.push((
                format!("spec.podCIDRs[{i}]"),
                format!("{c:?} has host bits set; did you mean {}?", n.trunc()),
            )),
            Err(e) => errors.push((
                format!("spec.podCIDRs[{i}]"),
                format!("invalid CIDR {c:?}: {e}"),
            )),
        }
    }

    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(NodeInfo {
        pod_cidrs,
        name,
        labels: node.metadata.labels.clone().unwrap_or_default(),
        as_number,
        ipv4,
        ipv6,
        router_id,
        rr_cluster_id,
        graceful_shutdown,
        graceful_shutdown_problem,
    })
}

/// The first InternalIP of the wanted family in `status.addresses`.
fn internal_ip(node: &Node, v4: bool) -> Option<IpAddr> {
    let addrs = node.status.as_ref()?.addresses.as_ref()?;
    addrs
        .iter()
        .filter(|a| a.type_ == "InternalIP")
        .filter_map(|a| a.address.trim().parse::<IpAddr>().ok())
        .find(|ip| ip.is_ipv4() == v4)
}

fn parse_v4(v: &str) -> Result<Ipv4Net, String> {
    let v = v.trim();
    if let Ok(n) = v.parse::<Ipv4Net>() {
        return Ok(n);
    }
    v.parse::<Ipv4Addr>()
        .map(Ipv4Net::from)
        .map_err(|_| format!("invalid IPv4 address {v:?}: expected CIDR form such as 10.0.1.2/24"))
}

fn parse_v6(v: &str) -> Result<Ipv6Net, String> {
    let v = v.trim();
    if let Ok(n) = v.parse::<Ipv6Net>() {
        return Ok(n);
    }
    v.parse::<std::net::Ipv6Addr>()
        .map(Ipv6Net::from)
        .map_err(|_| format!("invalid IPv6 address {v:?}: expected CIDR form such as fd00::2/64"))
}

fn parse_id(v: &str, what: &str) -> Result<Ipv4Addr, String> {
    match v.trim().parse::<Ipv4Addr>() {
        Ok(a) if a.is_unspecified() => Err(format!("invalid {what} {v:?}: 0.0.0.0 is not allowed")),
        Ok(a) => Ok(a),
        Err(_) => Err(format!(
            "invalid {what} {v:?}: expected an IPv4 address such as 10.0.1.2"
        )),
    }
}
