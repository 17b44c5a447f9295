//! Public value types of the service advertiser: configuration, object keys,
//! address kinds, per-address dispositions, rejection reasons, deltas and
//! input errors.

use ipnet::IpNet;
use petrel_crd::{BgpConfigurationSpec, LoadBalancerAggregation};
use std::fmt;
use std::net::IpAddr;

/// Which service CIDRs this node may advertise, from the `default`
/// BGPConfiguration (`serviceClusterIPs`, `serviceExternalIPs`,
/// `serviceLoadBalancerIPs`, `serviceLoadBalancerAggregation`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdvertisementConfig {
    /// `serviceClusterIPs`: every node advertises each CIDR as an aggregate.
    pub cluster_ips: Vec<IpNet>,
    /// `serviceExternalIPs`: the allow-list for `spec.externalIPs`.
    pub external_ips: Vec<IpNet>,
    /// `serviceLoadBalancerIPs`: the allow-list for `status.loadBalancer.ingress[].ip`.
    pub load_balancer_ips: Vec<IpNet>,
    /// `serviceLoadBalancerAggregation: Enabled` (the default): the
    /// `serviceLoadBalancerIPs` CIDRs are advertised as aggregates. When false
    /// (`Disabled`), no LoadBalancer aggregate is advertised; instead each
    /// `externalTrafficPolicy: Cluster` LoadBalancer IP is advertised as a host
    /// route from every node while its Service has a ready endpoint anywhere.
    pub load_balancer_aggregation: bool,
    /// The node carries `node.kubernetes.io/exclude-from-external-load-balancers`:
    /// it advertises no service address at all (Calico's node exclusion).
    pub node_excluded: bool,
}

impl Default for AdvertisementConfig {
    fn default() -> Self {
        Self {
            cluster_ips: Vec::new(),
            external_ips: Vec::new(),
            load_balancer_ips: Vec::new(),
            load_balancer_aggregation: true,
            node_excluded: false,
        }
    }
}

impl AdvertisementConfig {
    /// The service settings of a BGPConfiguration spec (`node_excluded` is
    /// false: it comes from the Node's labels, not from BGPConfiguration).
    pub fn from_spec(spec: &BgpConfigurationSpec) -> Self {
        Self {
            cluster_ips: spec.service_cluster_ips.iter().map(|b| b.cidr).collect(),
            external_ips: spec.service_external_ips.iter().map(|b| b.cidr).collect(),
            load_balancer_ips: spec
                .service_load_balancer_ips
                .iter()
                .map(|b| b.cidr)
                .collect(),
            load_balancer_aggregation: spec.service_load_balancer_aggregation
                != Some(LoadBalancerAggregation::Disabled),
            node_excluded: false,
        }
    }

    /// The configured CIDRs for one kind of address.
    pub fn cidrs(&self, kind: AddressKind) -> &[IpNet] {
        match kind {
            AddressKind::ClusterIp => &self.cluster_ips,
            AddressKind::ExternalIp => &self.external_ips,
            AddressKind::LoadBalancerIp => &self.load_balancer_ips,
        }
    }
}

/// `namespace/name` of a Service or an EndpointSlice.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// The three kinds of service address, each with its own allow-list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AddressKind {
    /// `spec.clusterIPs` (or `spec.clusterIP`).
    ClusterIp,
    /// `spec.externalIPs`.
    ExternalIp,
    /// `status.loadBalancer.ingress[]`.
    LoadBalancerIp,
}

impl AddressKind {
    /// All kinds, in a fixed order.
    pub const ALL: [AddressKind; 3] = [
        AddressKind::ClusterIp,
        AddressKind::ExternalIp,
        AddressKind::LoadBalancerIp,
    ];

    /// The BGPConfiguration field holding this kind's CIDRs.
    pub fn config_field(self) -> &'static str {
        match self {
            AddressKind::ClusterIp => "serviceClusterIPs",
            AddressKind::ExternalIp => "serviceExternalIPs",
            AddressKind::LoadBalancerIp => "serviceLoadBalancerIPs",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for AddressKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AddressKind::ClusterIp => "cluster IP",
            AddressKind::ExternalIp => "external IP",
            AddressKind::LoadBalancerIp => "load-balancer IP",
        })
    }
}

/// An IP address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IpFamily {
    V4,
    V6,
}

impl IpFamily {
    pub fn of(ip: &IpAddr) -> Self {
        match ip {
            IpAddr::V4(_) => IpFamily::V4,
            IpAddr::V6(_) => IpFamily::V6,
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for IpFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IpFamily::V4 => "IPv4",
            IpFamily::V6 => "IPv6",
        })
    }
}

/// Why one address of a Service is not advertised by this node.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RejectReason {
    /// The string is not an IP address.
    InvalidAddress,
    /// The kind's CIDR list in BGPConfiguration is empty: this kind of
    /// address is not advertised at all.
    NotEnabled,
    /// The address lies outside every CIDR configured for its kind.
    OutsideCidrs,
    /// Local traffic policy, and this node has no ready endpoint of the
    /// address's family.
    NoReadyLocalEndpoint { family: IpFamily },
    /// `serviceLoadBalancerAggregation: Disabled`, Cluster policy, and the
    /// Service has no ready endpoint of this family on any node.
    NoReadyEndpoint { family: IpFamily },
    /// Headless Service (`clusterIP: None`): kube-proxy does not serve it.
    Headless,
    /// No cluster IP assigned: kube-proxy does not serve the Service.
    NoClusterIp,
    /// `type: ExternalName`: a DNS alias, not proxied.
    ExternalName,
    /// A `spec.type` petrel does not know.
    UnsupportedType(String),
    /// A load-balancer ingress on a Service whose type is not LoadBalancer.
    NotLoadBalancerType,
    /// A load-balancer ingress with a hostname and no IP.
    HostnameOnly,
    /// `ipMode: Proxy`: the load balancer sends traffic to node addresses,
    /// so nodes do not accept traffic for the VIP itself.
    ProxyIpMode,
    /// This node is excluded from service advertisement.
    NodeExcluded,
}

impl RejectReason {
    /// Whether the reason follows from the cluster's normal operation (no
    /// local endpoint, feature off, DNS-only Services) rather than from a
    /// configuration mistake; drivers may log these at a lower level.
    pub fn is_routine(&self) -> bool {
        matches!(
            self,
            RejectReason::NotEnabled
                | RejectReason::NoReadyLocalEndpoint { .. }
                | RejectReason::NoReadyEndpoint { .. }
                | RejectReason::Headless
                | RejectReason::ExternalName
                | RejectReason::NodeExcluded
        )
    }

    /// Human-readable explanation for an address of `kind`.
    pub fn describe(&self, kind: AddressKind) -> String {
        match self {
            RejectReason::InvalidAddress => "not a valid IP address".into(),
            RejectReason::NotEnabled => format!("{} is empty", kind.config_field()),
            RejectReason::OutsideCidrs => {
                format!("not inside any {} CIDR", kind.config_field())
            }
            RejectReason::NoReadyLocalEndpoint { family } => {
                format!("traffic policy Local and no ready {family} endpoint on this node")
            }
            RejectReason::NoReadyEndpoint { family } => format!(
                "serviceLoadBalancerAggregation Disabled and no ready {family} endpoint on any node"
            ),
            RejectReason::Headless => "headless Service (clusterIP None)".into(),
            RejectReason::NoClusterIp => "Service has no cluster IP".into(),
            RejectReason::ExternalName => "Service of type ExternalName".into(),
            RejectReason::UnsupportedType(t) => format!("unsupported Service type {t:?}"),
            RejectReason::NotLoadBalancerType => {
                "load-balancer ingress on a Service not of type LoadBalancer".into()
            }
            RejectReason::HostnameOnly => "load-balancer ingress has a hostname, no IP".into(),
            RejectReason::ProxyIpMode => "load-balancer ingress has ipMode Proxy".into(),
            RejectReason::NodeExcluded => "this node is excluded from service advertisement".into(),
        }
    }
}

/// What this node does with one address of a Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Advertised as this host route (/32 or /128) on behalf of the Service.
    HostRoute(IpNet),
    /// Reachable through this configured aggregate, which every node advertises.
    Aggregate(IpNet),
    /// Not advertised, for this reason.
    Rejected(RejectReason),
}

/// One address of a Service and what this node does with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressStatus {
    pub kind: AddressKind,
    /// The address as written in the object (may be unparsable or a hostname).
    pub address: String,
    pub disposition: Disposition,
}

/// An address this node does not advertise, and why.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Rejection {
    pub service: ObjectKey,
    pub kind: AddressKind,
    pub address: String,
    pub reason: RejectReason,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "service {}: {} {:?} not advertised: {}",
            self.service,
            self.kind,
            self.address,
            self.reason.describe(self.kind)
        )
    }
}

/// Bad input that cannot be attributed to a Service.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceError {
    /// The object has no `metadata.name`, so it cannot be tracked.
    #[error("{kind} in namespace {namespace:?} has no metadata.name; ignored")]
    MissingName {
        kind: &'static str,
        namespace: String,
    },
}

/// The change in this node's advertised service prefixes caused by one call.
///
/// `advertise` and `withdraw` are sorted, free of duplicates and disjoint;
/// a prefix held for several reasons appears in `withdraw` only when the last
/// reason goes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delta {
    /// Prefixes to start advertising.
    pub advertise: Vec<IpNet>,
    /// Prefixes to stop advertising.
    pub withdraw: Vec<IpNet>,
    /// Rejections that did not exist before this call (log each once).
    pub newly_rejected: Vec<Rejection>,
    /// Objects ignored because they cannot be identified (from `sync`).
    pub invalid: Vec<ServiceError>,
}

impl Delta {
    /// No prefix changes, no new rejections and no invalid objects.
    pub fn is_empty(&self) -> bool {
        self.advertise.is_empty()
            && self.withdraw.is_empty()
            && self.newly_rejected.is_empty()
            && self.invalid.is_empty()
    }

    /// Whether the advertised set changed.
    pub fn changes_routes(&self) -> bool {
        !self.advertise.is_empty() || !self.withdraw.is_empty()
    }

    /// Combines this delta with a `later` one (for drivers that batch
    /// events): a prefix advertised then withdrawn (or the reverse) cancels.
    pub fn then(mut self, later: Delta) -> Delta {
        for p in later.advertise {
            if let Ok(i) = self.withdraw.binary_search(&p) {
                self.withdraw.remove(i);
            } else if let Err(i) = self.advertise.binary_search(&p) {
                self.advertise.insert(i, p);
            }
        }
        for p in later.withdraw {
            if let Ok(i) = self.advertise.binary_search(&p) {
                self.advertise.remove(i);
            } else if let Err(i) = self.withdraw.binary_search(&p) {
                self.withdraw.insert(i, p);
            }
        }
        self.newly_rejected.extend(later.newly_rejected);
        self.newly_rejected.sort();
        self.newly_rejected.dedup();
        self.invalid.extend(later.invalid);
        self
    }
}
