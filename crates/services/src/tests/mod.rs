//! Unit tests of the service advertiser: the rules (`rules`), incremental
//! bookkeeping (`incremental`) and a property test against a from-scratch
//! recomputation (`property`).

mod incremental;
mod property;
mod rules;

use super::*;
use k8s_openapi::api::core::v1::{
    LoadBalancerIngress, LoadBalancerStatus, ServiceSpec, ServiceStatus,
};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::collections::BTreeMap;

pub(super) const ME: &str = "node-a";
pub(super) const OTHER: &str = "node-b";

pub(super) fn net(s: &str) -> IpNet {
    s.parse().expect("test CIDR")
}

pub(super) fn nets(list: &[&str]) -> Vec<IpNet> {
    list.iter().map(|s| net(s)).collect()
}

/// A configuration with the three CIDR lists.
pub(super) fn cfg(cluster: &[&str], external: &[&str], lb: &[&str]) -> AdvertisementConfig {
    AdvertisementConfig {
        cluster_ips: nets(cluster),
        external_ips: nets(external),
        load_balancer_ips: nets(lb),
        ..AdvertisementConfig::default()
    }
}

/// The configuration most tests use: both families for every kind.
pub(super) fn standard() -> AdvertisementConfig {
    cfg(
        &["10.96.0.0/12", "fd00:96::/108"],
        &["203.0.113.0/24", "2001:db8:e::/64"],
        &["198.18.0.0/15", "2001:db8:1b::/64"],
    )
}

/// A Service under construction.
#[derive(Clone, Debug)]
pub(super) struct Svc {
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub type_: Option<String>,
    pub cluster: Vec<String>,
    pub external: Vec<String>,
    pub ingress: Vec<LoadBalancerIngress>,
    pub etp: Option<String>,
    pub itp: Option<String>,
}

impl Svc {
    pub fn new(name: &str) -> Self {
        Self {
            namespace: Some("default".into()),
            name: Some(name.into()),
            type_: Some("ClusterIP".into()),
            cluster: Vec::new(),
            external: Vec::new(),
            ingress: Vec::new(),
            etp: None,
            itp: None,
        }
    }
    pub fn ns(mut self, ns: &str) -> Self {
        self.namespace = Some(ns.into());
        self
    }
    pub fn typ(mut self, t: &str) -> Self {
        self.type_ = Some(t.into());
        self
    }
    pub fn lb(self) -> Self {
        self.typ("LoadBalancer")
    }
    pub fn cluster(mut self, ips: &[&str]) -> Self {
        self.cluster = ips.iter().map(|s| s.to_string()).collect();
        self
    }
    pub fn external(mut self, ips: &[&str]) -> Self {
        self.external = ips.iter().map(|s| s.to_string()).collect();
        self
    }
    pub fn ingress_ip(mut self, ip: &str) -> Self {
        self.ingress.push(LoadBalancerIngress {
            ip: Some(ip.into()),
            ..Default::default()
        });
        self
    }
    pub fn etp(mut self, p: &str) -> Self {
        self.etp = Some(p.into());
        self
    }
    pub fn local(self) -> Self {
        self.etp("Local")
    }
    pub fn itp_local(mut self) -> Self {
        self.itp = Some("Local".into());
        self
    }
    pub fn build(&self) -> Service {
        Service {
            metadata: ObjectMeta {
                namespace: self.namespace.clone(),
                name: self.name.clone(),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                type_: self.type_.clone(),
                cluster_ip: self.cluster.first().cloned(),
                cluster_ips: (!self.cluster.is_empty()).then(|| self.cluster.clone()),
                external_ips: (!self.external.is_empty()).then(|| self.external.clone()),
                external_traffic_policy: self.etp.clone(),
                internal_traffic_policy: self.itp.clone(),
                ..Default::default()
            }),
            status: (!self.ingress.is_empty()).then(|| ServiceStatus {
                load_balancer: Some(LoadBalancerStatus {
                    ingress: Some(self.ingress.clone()),
                }),
                ..Default::default()
            }),
        }
    }
}

/// One endpoint: (node, ready condition).
pub(super) type Ep<'a> = (Option<&'a str>, Option<bool>);

/// An EndpointSlice in namespace `default` for `service` (no label if None).
pub(super) fn slice(name: &str, service: Option<&str>, family: &str, eps: &[Ep]) -> EndpointSlice {
    slice_in("default", name, service, family, eps)
}

pub(super) fn slice_in(
    ns: &str,
    name: &str,
    service: Option<&str>,
    family: &str,
    eps: &[Ep],
) -> EndpointSlice {
    let addr = |i: usize| match family {
        "IPv6" => format!("fd00:10::{}", i + 1),
        _ => format!("10.0.0.{}", i + 1),
    };
    EndpointSlice {
        address_type: family.into(),
        metadata: ObjectMeta {
            namespace: Some(ns.into()),
            name: Some(name.into()),
            labels: service
                .map(|s| BTreeMap::from([(SERVICE_NAME_LABEL.to_string(), s.to_string())])),
            ..Default::default()
        },
        endpoints: eps
            .iter()
            .enumerate()
            .map(|(i, (node, ready))| Endpoint {
                addresses: vec![addr(i)],
                node_name: node.map(str::to_string),
                conditions: Some(EndpointConditions {
                    ready: *ready,
                    ..Default::default()
                }),
                ..Default::default()
            })
            .collect(),
        ports: None,
    }
}

/// A local ready endpoint.
pub(super) const LOCAL: Ep<'static> = (Some(ME), Some(true));
/// A ready endpoint on another node.
pub(super) const REMOTE: Ep<'static> = (Some(OTHER), Some(true));

pub(super) fn adv(config: AdvertisementConfig) -> ServiceAdvertiser {
    ServiceAdvertiser::new(ME, config)
}

/// Upserts and unwraps.
pub(super) fn up(a: &mut ServiceAdvertiser, s: &Svc) -> Delta {
    a.upsert_service(&s.build()).expect("named service")
}

pub(super) fn up_slice(a: &mut ServiceAdvertiser, s: &EndpointSlice) -> Delta {
    a.upsert_endpoint_slice(s).expect("named slice")
}

/// The status of one address of a Service.
pub(super) fn status_of(a: &ServiceAdvertiser, svc: &str, address: &str) -> Disposition {
    a.service_status("default", svc)
        .expect("service known")
        .iter()
        .find(|s| s.address == address)
        .unwrap_or_else(|| panic!("address {address} of {svc}"))
        .disposition
        .clone()
}
