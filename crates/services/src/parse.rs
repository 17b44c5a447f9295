//! Reduces Kubernetes `Service` and `EndpointSlice` objects to the few facts
//! that decide advertisement. Odd objects never fail here: an unusable
//! address becomes a per-address [`RejectReason`].

use super::model::{AddressKind, IpFamily, ObjectKey, RejectReason, ServiceError};
use k8s_openapi::api::core::v1::{Service, ServiceSpec};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::net::IpAddr;

/// Label linking an EndpointSlice to its Service (same namespace).
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Namespace assumed when an object has none (as `kubectl apply` does).
pub const DEFAULT_NAMESPACE: &str = "default";

/// The key of an object, or an error when it has no name.
pub(crate) fn object_key(meta: &ObjectMeta, kind: &'static str) -> Result<ObjectKey, ServiceError> {
    let namespace = meta.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE);
    match meta.name.as_deref() {
        Some(name) if !name.is_empty() => Ok(ObjectKey::new(namespace, name)),
        _ => Err(ServiceError::MissingName {
            kind,
            namespace: namespace.to_string(),
        }),
    }
}

/// One address of a Service as written, with its parse result or the reason
/// it can never be advertised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawAddress {
    pub kind: AddressKind,
    pub text: String,
    pub ip: Result<IpAddr, RejectReason>,
}

/// The advertisement-relevant facts of a Service.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct ParsedService {
    /// Set when kube-proxy does not serve the Service at all; every address
    /// is then rejected with this reason.
    pub skip: Option<RejectReason>,
    /// `externalTrafficPolicy: Local`.
    pub external_local: bool,
    /// `internalTrafficPolicy: Local`.
    pub internal_local: bool,
    pub addresses: Vec<RawAddress>,
}

fn parse_ip(text: &str) -> Result<IpAddr, RejectReason> {
    text.parse::<IpAddr>()
        .map_err(|_| RejectReason::InvalidAddress)
}

pub(crate) fn parse_service(svc: &Service) -> ParsedService {
    let no_spec = ServiceSpec::default();
    let spec = svc.spec.as_ref().unwrap_or(&no_spec);
    let service_type = spec.type_.as_deref().unwrap_or("ClusterIP");
    let lb_type = service_type == "LoadBalancer";

    // Dual-stack Services list every cluster IP in clusterIPs; older objects
    // (and hand-written manifests) may only set clusterIP.
    let cluster_ips: Vec<&str> = match spec.cluster_ips.as_deref() {
        Some(list) if !list.is_empty() => list.iter().map(String::as_str).collect(),
        _ => spec.cluster_ip.as_deref().into_iter().collect(),
    };
    let cluster_ips: Vec<&str> = cluster_ips.into_iter().filter(|s| !s.is_empty()).collect();
    let headless = cluster_ips.contains(&"None");

    let skip = match service_type {
        "ExternalName" => Some(RejectReason::ExternalName),
        "ClusterIP" | "NodePort" | "LoadBalancer" => {
            if headless {
                Some(RejectReason::Headless)
            } else if cluster_ips.is_empty() {
                Some(RejectReason::NoClusterIp)
            } else {
                None
            }
        }
        other => Some(RejectReason::UnsupportedType(other.to_string())),
    };

    let mut addresses = Vec::new();
    for text in cluster_ips.iter().filter(|s| **s != "None") {
        addresses.push(RawAddress {
            kind: AddressKind::ClusterIp,
            text: (*text).to_string(),
            ip: parse_ip(text),
        });
    }
    for text in spec.external_ips.iter().flatten() {
        if text.is_empty() {
            continue;
        }
        addresses.push(RawAddress {
            kind: AddressKind::ExternalIp,
            text: text.clone(),
            ip: parse_ip(text),
        });
    }
    let ingress = svc
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref());
    for ing in ingress.into_iter().flatten() {
        let (text, ip) = match (ing.ip.as_deref(), ing.hostname.as_deref()) {
            (Some(ip), _) if !ip.is_empty() => {
                let parsed = if !lb_type {
                    Err(RejectReason::NotLoadBalancerType)
                } else if ing.ip_mode.as_deref() == Some("Proxy") {
                    Err(RejectReason::ProxyIpMode)
                } else {
                    parse_ip(ip)
                };
                (ip.to_string(), parsed)
            }
            (_, Some(host)) if !host.is_empty() => {
                (host.to_string(), Err(RejectReason::HostnameOnly))
            }
            _ => continue,
        };
        addresses.push(RawAddress {
            kind: AddressKind::LoadBalancerIp,
            text,
            ip,
        });
    }

    ParsedService {
        skip,
        external_local: spec.external_traffic_policy.as_deref() == Some("Local"),
        internal_local: spec.internal_traffic_policy.as_deref() == Some("Local"),
        addresses,
    }
}

/// The advertisement-relevant facts of an EndpointSlice: which Service it
/// belongs to, its family and how many of its endpoints are ready (on this
/// node and anywhere).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct ParsedSlice {
    /// From the `kubernetes.io/service-name` label; `None` for slices not
    /// managed for a Service (they never matter).
    pub service: Option<ObjectKey>,
    /// `None` for `addressType: FQDN` (or anything unknown).
    pub family: Option<IpFamily>,
    pub local_ready: u32,
    pub ready: u32,
}

pub(crate) fn parse_slice(slice: &EndpointSlice, namespace: &str, node: &str) -> ParsedSlice {
    let service = slice
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(SERVICE_NAME_LABEL))
        .filter(|s| !s.is_empty())
        .map(|s| ObjectKey::new(namespace, s.as_str()));
    let family = match slice.address_type.as_str() {
        "IPv4" => Some(IpFamily::V4),
        "IPv6" => Some(IpFamily::V6),
        _ => None,
    };
    let mut local_ready = 0u32;
    let mut ready = 0u32;
    if family.is_some() {
        for ep in &slice.endpoints {
            // EndpointSlice API: a nil `ready` is to be read as ready.
            // Terminating endpoints have ready=false (unless the Service
            // publishes not-ready addresses), so they do not count.
            let is_ready = ep.conditions.as_ref().and_then(|c| c.ready) != Some(false);
            if !is_ready {
                continue;
            }
            ready = ready.saturating_add(1);
            if ep.node_name.as_deref() == Some(node) {
                local_ready = local_ready.saturating_add(1);
            }
        }
    }
    ParsedSlice {
        service,
        family,
        local_ready,
        ready,
    }
}
