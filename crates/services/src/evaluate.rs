//! The advertisement rules, as a pure function of one Service, the
//! configured CIDRs and the Service's endpoint counts.

use super::model::{
    AddressKind, AddressStatus, AdvertisementConfig, Disposition, IpFamily, RejectReason,
};
use super::parse::ParsedService;
use ipnet::IpNet;
use std::net::IpAddr;

/// Ready endpoint counts of one Service, summed over its EndpointSlices,
/// indexed by [`IpFamily::index`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    /// Number of slices contributing (the entry is dropped at zero).
    pub slices: u32,
    pub local_ready: [u32; 2],
    pub ready: [u32; 2],
}

impl Counts {
    /// The only facts evaluation reads: one bit per (local|any, family).
    pub fn flags(&self) -> u8 {
        u8::from(self.local_ready[0] > 0)
            | u8::from(self.local_ready[1] > 0) << 1
            | u8::from(self.ready[0] > 0) << 2
            | u8::from(self.ready[1] > 0) << 3
    }
}

/// The configuration with CIDRs normalised (host bits cleared, sorted,
/// deduplicated) and the aggregates it implies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Cidrs {
    by_kind: [Vec<IpNet>; 3],
    lb_aggregation: bool,
    excluded: bool,
}

fn normalise(list: &[IpNet]) -> Vec<IpNet> {
    let mut v: Vec<IpNet> = list.iter().map(IpNet::trunc).collect();
    v.sort();
    v.dedup();
    v
}

fn is_host(net: &IpNet) -> bool {
    net.prefix_len() == net.max_prefix_len()
}

/// The /32 or /128 of an address.
pub(crate) fn host_route(ip: IpAddr) -> IpNet {
    IpNet::from(ip)
}

impl Cidrs {
    pub fn new(config: &AdvertisementConfig) -> Self {
        Self {
            by_kind: [
                normalise(&config.cluster_ips),
                normalise(&config.external_ips),
                normalise(&config.load_balancer_ips),
            ],
            lb_aggregation: config.load_balancer_aggregation,
            excluded: config.node_excluded,
        }
    }

    /// The aggregates every node advertises regardless of Services: every
    /// configured CIDR that is not a single address (single addresses are
    /// advertised per Service, so that a Local Service's address is not
    /// attracted to nodes without endpoints), except LoadBalancer CIDRs
    /// when aggregation is disabled. Nothing when the node is excluded.
    pub fn aggregates(&self) -> Vec<IpNet> {
        if self.excluded {
            return Vec::new();
        }
        let mut out = Vec::new();
        for kind in AddressKind::ALL {
            if kind == AddressKind::LoadBalancerIp && !self.lb_aggregation {
                continue;
            }
            out.extend(self.by_kind[kind.index()].iter().filter(|n| !is_host(n)));
        }
        out.sort();
        out.dedup();
        out
    }

    /// Does a single-address CIDR of `kind` equal `ip`?
    fn single(&self, kind: AddressKind, ip: &IpAddr) -> bool {
        self.by_kind[kind.index()]
            .iter()
            .any(|n| is_host(n) && n.addr() == *ip)
    }

    /// The longest non-single CIDR of `kind` containing `ip`.
    fn covering(&self, kind: AddressKind, ip: &IpAddr) -> Option<IpNet> {
        self.by_kind[kind.index()]
            .iter()
            .filter(|n| !is_host(n) && n.contains(ip))
            .max_by_key(|n| n.prefix_len())
            .copied()
    }

    fn allowed(&self, kind: AddressKind, ip: &IpAddr) -> Result<(), RejectReason> {
        let list = &self.by_kind[kind.index()];
        if list.is_empty() {
            Err(RejectReason::NotEnabled)
        } else if list.iter().any(|n| n.contains(ip)) {
            Ok(())
        } else {
            Err(RejectReason::OutsideCidrs)
        }
    }
}

/// The outcome for one Service: the host routes it holds (sorted, no
/// duplicates) and what happens to each of its addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Evaluation {
    pub claims: Vec<IpNet>,
    pub statuses: Vec<AddressStatus>,
}

/// Applies the rules to every address of `svc`:
///
/// 1. a Service kube-proxy does not serve (headless, ExternalName, no
///    cluster IP, unknown type) advertises nothing;
/// 2. unusable addresses (unparsable, hostname-only, `ipMode: Proxy`,
///    ingress on a non-LoadBalancer Service) are rejected;
/// 3. an excluded node advertises nothing;
/// 4. an address outside its kind's CIDRs is rejected;
/// 5. Local policy (`externalTrafficPolicy: Local` for every kind, and
///    `internalTrafficPolicy: Local` for cluster IPs): host route only with
///    a ready endpoint of the address's family on this node;
/// 6. Cluster policy: host route from every node when the address is itself
///    a single-address CIDR; with LoadBalancer aggregation disabled, a
///    LoadBalancer IP's host route from every node while the Service has a
///    ready endpoint of its family anywhere; otherwise the address is
///    covered by the configured aggregate.
pub(crate) fn evaluate(svc: &ParsedService, cidrs: &Cidrs, counts: &Counts) -> Evaluation {
    let mut claims = Vec::new();
    let mut statuses = Vec::with_capacity(svc.addresses.len());
    for raw in &svc.addresses {
        let disposition = match dispose(svc, cidrs, counts, raw.kind, &raw.ip) {
            Ok(d) => d,
            Err(reason) => Disposition::Rejected(reason),
        };
        if let Disposition::HostRoute(p) = disposition {
            claims.push(p);
        }
        statuses.push(AddressStatus {
            kind: raw.kind,
            address: raw.text.clone(),
            disposition,
        });
    }
    claims.sort();
    claims.dedup();
    Evaluation { claims, statuses }
}

fn dispose(
    svc: &ParsedService,
    cidrs: &Cidrs,
    counts: &Counts,
    kind: AddressKind,
    ip: &Result<IpAddr, RejectReason>,
) -> Result<Disposition, RejectReason> {
    if let Some(reason) = &svc.skip {
        return Err(reason.clone());
    }
    let ip = ip.as_ref().map_err(Clone::clone)?;
    if cidrs.excluded {
        return Err(RejectReason::NodeExcluded);
    }
    cidrs.allowed(kind, ip)?;
    let family = IpFamily::of(ip);
    let local = svc.external_local || (kind == AddressKind::ClusterIp && svc.internal_local);
    if local {
        return if counts.local_ready[family.index()] > 0 {
            Ok(Disposition::HostRoute(host_route(*ip)))
        } else {
            Err(RejectReason::NoReadyLocalEndpoint { family })
        };
    }
    if cidrs.single(kind, ip) {
        return Ok(Disposition::HostRoute(host_route(*ip)));
    }
    if kind == AddressKind::LoadBalancerIp && !cidrs.lb_aggregation {
        return if counts.ready[family.index()] > 0 {
            Ok(Disposition::HostRoute(host_route(*ip)))
        } else {
            Err(RejectReason::NoReadyEndpoint { family })
        };
    }
    match cidrs.covering(kind, ip) {
        Some(net) => Ok(Disposition::Aggregate(net)),
        // Unreachable: allowed() found a containing CIDR and it is not a
        // single address equal to ip, so it is a non-single CIDR.
        None => Err(RejectReason::OutsideCidrs),
    }
}
