//! Outputs of petrel-ipam (CNI spec 1.1.0 §5 "Result Types"): the abbreviated
//! ADD success result of a delegated IPAM plugin (no `interfaces`, no
//! `interface` index in `ips`), the VERSION result and the error result.
//!
//! For configurations at 0.3.x/0.4.0 every entry of `ips` also carries the
//! `version` ("4" or "6") those versions require; 1.0.0 removed it.
//!
//! Addresses are in CIDR notation with the prefix length of the pod's block
//! (e.g. `10.65.0.5/26`), not /32: the ptp plugin deletes the connected
//! route the kernel creates for the address and routes the prefix via the
//! gateway, and the kernel creates no such route for an IPv4 /32 (ptp's
//! ADD would fail). The gateway must be on-link through that prefix when
//! the default route is added, so the prefix always contains it.

use super::config::{Dns, RouteConf};
use super::error::CniError;
use super::{SUPPORTED_VERSIONS, pb};
use ipnet::IpNet;
use serde::Serialize;
use std::collections::HashSet;
use std::net::IpAddr;

/// One pod address from the agent, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckedAddress {
    /// Pod address with its block's prefix length.
    pub address: IpNet,
    pub gateway: IpAddr,
}

/// Parses the agent's addresses, refusing anything a CNI plugin must not
/// be given: unparsable strings, mixed families, a gateway equal to the
/// pod address, two addresses of one family. The prefix is widened to hold
/// the gateway when needed (see `covering`).
pub fn check_addresses(addrs: &[pb::AllocatedAddress]) -> Result<Vec<CheckedAddress>, String> {
    if addrs.is_empty() {
        return Err("no address allocated".into());
    }
    let mut seen = HashSet::new();
    addrs
        .iter()
        .map(|a| {
            let address: IpNet = a
                .address
                .parse()
                .map_err(|_| format!("address {:?} is not in CIDR notation", a.address))?;
            let gateway: IpAddr = a
                .gateway
                .parse()
                .map_err(|_| format!("gateway {:?} is not an IP address", a.gateway))?;
            if address.addr().is_ipv4() != gateway.is_ipv4() {
                return Err(format!(
                    "gateway {gateway} and address {address} are of different families"
                ));
            }
            if gateway == address.addr() {
                return Err(format!("gateway {gateway} is the pod address itself"));
            }
            let address = covering(address, gateway);
            if !seen.insert(address.addr().is_ipv4()) {
                return Err(format!("two addresses of one family ({address})"));
            }
            Ok(CheckedAddress { address, gateway })
        })
        .collect()
}

/// `address` with its prefix shortened, if needed, to also contain
/// `gateway`: ptp adds the default route via the gateway while the
/// connected route of the address is the only way to reach it, so the
/// gateway must be on-link. A gateway inside the block (the usual case)
/// keeps the block's prefix length; a node-wide gateway in another block
/// gives the longest prefix holding both.
fn covering(address: IpNet, gateway: IpAddr) -> IpNet {
    if address.contains(&gateway) {
        return address;
    }
    let common = match (address.addr(), gateway) {
        (IpAddr::V4(a), IpAddr::V4(g)) => (u32::from(a) ^ u32::from(g)).leading_zeros(),
        (IpAddr::V6(a), IpAddr::V6(g)) => (u128::from(a) ^ u128::from(g)).leading_zeros(),
        _ => return address,
    };
    // `common` is below the address's prefix length here, so it is valid.
    IpNet::new(address.addr(), common as u8).unwrap_or(address)
}

/// `ips[]` of the result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IpConfig {
    /// "4" or "6", only before 1.0.0.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<&'static str>,
    pub address: String,
    pub gateway: String,
}

/// `routes[]` of the result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RouteOut {
    pub dst: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gw: Option<String>,
}

/// The ADD success result of a delegated IPAM plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IpamResult {
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    pub ips: Vec<IpConfig>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<RouteOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns: Option<Dns>,
}

/// The version results carry `version` in `ips` (0.3.x and 0.4.0).
fn legacy(cni_version: &str) -> bool {
    cni_version.starts_with("0.")
}

/// Builds the ADD result. Routes are the configured ones (limited to the
/// families that got an address), or a default route per family via the
/// gateway.
pub fn ipam_result(
    cni_version: &str,
    addrs: &[CheckedAddress],
    routes: Option<&[RouteConf]>,
    dns: Option<&Dns>,
) -> IpamResult {
    let ips = addrs
        .iter()
        .map(|a| IpConfig {
            version: legacy(cni_version).then_some(if a.address.addr().is_ipv4() {
                "4"
            } else {
                "6"
            }),
            address: a.address.to_string(),
            gateway: a.gateway.to_string(),
        })
        .collect();
    let has = |v4: bool| addrs.iter().any(|a| a.address.addr().is_ipv4() == v4);
    let routes = match routes {
        Some(list) => list
            .iter()
            .filter(|r| has(r.dst.addr().is_ipv4()))
            .map(|r| RouteOut {
                dst: r.dst.to_string(),
                gw: r.gw.map(|g| g.to_string()),
            })
            .collect(),
        None => addrs
            .iter()
            .map(|a| RouteOut {
                dst: if a.address.addr().is_ipv4() {
                    "0.0.0.0/0".into()
                } else {
                    "::/0".into()
                },
                gw: Some(a.gateway.to_string()),
            })
            .collect(),
    };
    IpamResult {
        cni_version: cni_version.to_string(),
        ips,
        routes,
        dns: dns.cloned(),
    }
}

/// The VERSION result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VersionResult {
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    #[serde(rename = "supportedVersions")]
    pub supported_versions: Vec<&'static str>,
}

impl VersionResult {
    /// Answers a VERSION request labelled `cni_version`.
    pub fn new(cni_version: String) -> Self {
        VersionResult {
            cni_version,
            supported_versions: SUPPORTED_VERSIONS.to_vec(),
        }
    }
}

/// The error result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErrorResult {
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    pub code: u32,
    pub msg: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<String>,
}

impl ErrorResult {
    /// The result for `e`; `details` is the chain of underlying causes.
    pub fn new(cni_version: String, e: &CniError) -> Self {
        let mut causes = Vec::new();
        let mut cur = std::error::Error::source(e);
        while let Some(c) = cur {
            causes.push(c.to_string());
            cur = c.source();
        }
        ErrorResult {
            cni_version,
            code: e.code(),
            msg: e.to_string(),
            details: (!causes.is_empty()).then(|| causes.join(": ")),
        }
    }
}

/// The addresses (without prefix length) of `prevResult.ips`.
pub fn prev_result_addresses(prev: &serde_json::Value) -> Result<Vec<IpAddr>, String> {
    let Some(ips) = prev.get("ips") else {
        return Ok(Vec::new());
    };
    let ips = ips.as_array().ok_or("prevResult.ips is not a list")?;
    ips.iter()
        .map(|ip| {
            let s = ip
                .get("address")
                .and_then(|a| a.as_str())
                .ok_or("prevResult.ips entry without \"address\"")?;
            s.parse::<IpNet>()
                .map(|n| n.addr())
                .map_err(|_| format!("prevResult address {s:?} is not in CIDR notation"))
        })
        .collect()
}
