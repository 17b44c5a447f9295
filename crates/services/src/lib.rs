//! Service address advertisement: which Kubernetes Service prefixes this
//! node announces over BGP (RFC 4271 routes originated by the node; host
//! routes are /32 or /128, aggregates are the configured CIDRs).
//!
//! [`ServiceAdvertiser`] is a pure, incremental engine (no I/O, no clock,
//! no tokio). It is fed the BGPConfiguration service CIDRs
//! ([`AdvertisementConfig`]), v1 `Service` and `discovery.k8s.io/v1`
//! `EndpointSlice` objects one watch event at a time (or whole directories
//! through [`ServiceAdvertiser::sync`]), and answers each call with a
//! [`Delta`] of prefixes to advertise and withdraw.
//!
//! # Rules (Calico's documented behaviour, "Advertise Kubernetes service IP addresses")
//!
//! Only addresses inside the CIDRs of BGPConfiguration `serviceClusterIPs`,
//! `serviceExternalIPs` and `serviceLoadBalancerIPs` are ever advertised.
//!
//! - **Aggregates.** Every node advertises each configured CIDR as an
//!   aggregate, whether or not a Service uses it (as Calico does: the CIDRs
//!   are static routes, so Service churn never flaps them and routers get
//!   ECMP over all nodes). Two exceptions, both Calico's: a single-address
//!   CIDR (/32, /128) is not an aggregate but is advertised per Service (see
//!   below), and `serviceLoadBalancerAggregation: Disabled` drops the
//!   LoadBalancer aggregates.
//! - **`externalTrafficPolicy: Local`** (every address kind), and
//!   **`internalTrafficPolicy: Local`** (cluster IPs): the address's host
//!   route is advertised only while this node has a *ready* endpoint of the
//!   address's family (EndpointSlices labelled `kubernetes.io/service-name`
//!   in the Service's namespace, `nodeName` equal to this node,
//!   `conditions.ready` not false). Families are judged separately, so a
//!   dual-stack Service with only IPv4 endpoints here advertises only its
//!   IPv4 addresses. Terminating endpoints are not ready, so a draining pod
//!   stops attracting new traffic.
//! - **`externalTrafficPolicy: Cluster`**: external and LoadBalancer IPs are
//!   served by the aggregate; an address that is itself a single-address
//!   CIDR is advertised as its host route from every node. With
//!   LoadBalancer aggregation disabled, each LoadBalancer IP is advertised as
//!   a host route from every node while its Service has a ready endpoint.
//! - LoadBalancer IPs come from `status.loadBalancer.ingress[].ip` of Services
//!   of type LoadBalancer (`ipMode: Proxy` ingresses are skipped: nodes do not
//!   accept traffic for those VIPs).
//! - Headless, ExternalName and unallocated Services are not proxied by
//!   kube-proxy, so none of their addresses is advertised.
//! - A node excluded from service advertisement
//!   (`node.kubernetes.io/exclude-from-external-load-balancers`) advertises
//!   nothing.
//!
//! Where petrel is stricter than Calico's `confd` code (deliberately):
//! every address is checked against its own kind's CIDRs (Calico advertises
//! a Local Service's cluster IP whenever any `serviceClusterIPs` is set);
//! families are judged separately (Calico: one decision per Service);
//! `internalTrafficPolicy: Local` is honoured for cluster IPs (as Cilium
//! does; Calico ignores it); a single-address `serviceExternalIPs` CIDR is
//! handled per Service like a single-address LoadBalancer CIDR (Calico
//! announces it from every node, which attracts a Local Service's traffic
//! to nodes without endpoints); and under Cluster policy only the
//! single address itself becomes a host route, not the Service's other
//! addresses.
//!
//! Every address not advertised is listed by [`ServiceAdvertiser::rejections`]
//! with a [`RejectReason`]; [`Delta::newly_rejected`] reports each new one
//! once so drivers log it once.
//!
//! # Cost
//!
//! EndpointSlices are reduced to counts on arrival; per Service the engine
//! keeps ready endpoint counts (local and anywhere, per family), and per
//! prefix a reference count. An EndpointSlice event costs O(endpoints in the
//! slice) and re-evaluates its Service only when one of its four
//! "has a ready endpoint" facts flips; a Service event costs O(its
//! addresses); only a configuration change re-evaluates every Service.

mod evaluate;
mod model;
mod parse;
/// What the service engine decided, for the management API and the metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServicesView {
    /// Service prefixes this node advertises (aggregates and host routes).
    pub advertised: Vec<ipnet::IpNet>,
    /// Service addresses this node does not advertise, with the reason.
    pub rejections: Vec<Rejection>,
}

#[cfg(test)]
mod tests;

pub use model::{
    AddressKind, AddressStatus, AdvertisementConfig, Delta, Disposition, IpFamily, ObjectKey,
    RejectReason, Rejection, ServiceError,
};
pub use parse::{DEFAULT_NAMESPACE, SERVICE_NAME_LABEL};

use evaluate::{Cidrs, Counts, Evaluation, evaluate};
use ipnet::IpNet;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use parse::{ParsedService, ParsedSlice, object_key, parse_service, parse_slice};
use std::collections::{HashMap, HashSet};

type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
type FastSet<K> = HashSet<K, foldhash::fast::RandomState>;

/// Rejections of one Service as (kind, address, reason), for change detection.
type RejectionSet = Vec<(AddressKind, String, RejectReason)>;

#[derive(Debug)]
struct ServiceEntry {
    parsed: ParsedService,
    eval: Evaluation,
}

impl ServiceEntry {
    fn rejection_set(&self) -> RejectionSet {
        rejection_set(&self.eval)
    }
}

fn rejection_set(eval: &Evaluation) -> RejectionSet {
    eval.statuses
        .iter()
        .filter_map(|s| match &s.disposition {
            Disposition::Rejected(r) => Some((s.kind, s.address.clone(), r.clone())),
            _ => None,
        })
        .collect()
}

/// What one public call changed, turned into a [`Delta`] at the end.
#[derive(Default)]
struct Tx {
    /// Prefixes whose reference count crossed zero, with whether they were
    /// advertised before the call (first crossing wins).
    prefixes: FastMap<IpNet, bool>,
    /// Services whose evaluation changed, with their rejections before the call.
    services: FastMap<ObjectKey, RejectionSet>,
    invalid: Vec<ServiceError>,
}

/// Decides which service prefixes this node advertises. See the module docs.
#[derive(Debug)]
pub struct ServiceAdvertiser {
    node: String,
    config: AdvertisementConfig,
    cidrs: Cidrs,
    aggregates: Vec<IpNet>,
    services: FastMap<ObjectKey, ServiceEntry>,
    slices: FastMap<ObjectKey, ParsedSlice>,
    counts: FastMap<ObjectKey, Counts>,
    refs: FastMap<IpNet, u32>,
}

impl ServiceAdvertiser {
    /// An engine for node `node_name` (compared with EndpointSlice
    /// `endpoints[].nodeName`). It starts with no Services; the aggregates of
    /// `config` are advertised from the start: read them with
    /// [`advertised`](Self::advertised).
    pub fn new(node_name: impl Into<String>, config: AdvertisementConfig) -> Self {
        let mut this = Self {
            node: node_name.into(),
            config: AdvertisementConfig::default(),
            cidrs: Cidrs::new(&AdvertisementConfig::default()),
            aggregates: Vec::new(),
            services: FastMap::default(),
            slices: FastMap::default(),
            counts: FastMap::default(),
            refs: FastMap::default(),
        };
        this.set_config(config);
        this
    }

    /// This node's name.
    pub fn node_name(&self) -> &str {
        &self.node
    }

    /// The configuration in force.
    pub fn config(&self) -> &AdvertisementConfig {
        &self.config
    }

    /// Replaces the configuration (BGPConfiguration changed, or the node's
    /// exclusion label). Re-evaluates every Service.
    pub fn set_config(&mut self, config: AdvertisementConfig) -> Delta {
        let mut tx = Tx::default();
        let cidrs = Cidrs::new(&config);
        self.config = config;
        if cidrs != self.cidrs {
            self.cidrs = cidrs;
            let aggregates = self.cidrs.aggregates();
            let old = std::mem::take(&mut self.aggregates);
            self.swap_claims(&old, &aggregates, &mut tx);
            self.aggregates = aggregates;
            let keys: Vec<ObjectKey> = self.services.keys().cloned().collect();
            for key in keys {
                self.reevaluate(&key, &mut tx);
            }
        }
        self.finish(tx)
    }

    /// A Service was added or modified.
    pub fn upsert_service(&mut self, svc: &Service) -> Result<Delta, ServiceError> {
        let key = object_key(&svc.metadata, "Service")?;
        let mut tx = Tx::default();
        self.apply_service(key, parse_service(svc), &mut tx);
        Ok(self.finish(tx))
    }

    /// A Service was deleted. Its EndpointSlices may still arrive or leave.
    pub fn delete_service(&mut self, namespace: &str, name: &str) -> Delta {
        let mut tx = Tx::default();
        self.remove_service(&ObjectKey::new(namespace, name), &mut tx);
        self.finish(tx)
    }

    /// An EndpointSlice was added or modified.
    pub fn upsert_endpoint_slice(&mut self, slice: &EndpointSlice) -> Result<Delta, ServiceError> {
        let key = object_key(&slice.metadata, "EndpointSlice")?;
        let parsed = parse_slice(slice, &key.namespace, &self.node);
        let mut tx = Tx::default();
        self.apply_slice(key, parsed, &mut tx);
        Ok(self.finish(tx))
    }

    /// An EndpointSlice was deleted.
    pub fn delete_endpoint_slice(&mut self, namespace: &str, name: &str) -> Delta {
        let mut tx = Tx::default();
        self.remove_slice(&ObjectKey::new(namespace, name), &mut tx);
        self.finish(tx)
    }

    /// Makes the state equal to exactly these objects (a reloaded file
    /// datastore, or a relisted watch): objects not given are deleted, and
    /// only objects whose relevant content changed are re-evaluated. The
    /// delta is the net change; objects without a name are skipped and
    /// reported in [`Delta::invalid`].
    pub fn sync(&mut self, services: &[Service], slices: &[EndpointSlice]) -> Delta {
        let mut tx = Tx::default();
        // Slices first, so each changed Service is evaluated once, with its
        // final counts.
        let mut seen: FastSet<ObjectKey> = FastSet::default();
        for slice in slices {
            match object_key(&slice.metadata, "EndpointSlice") {
                Ok(key) => {
                    let parsed = parse_slice(slice, &key.namespace, &self.node);
                    seen.insert(key.clone());
                    self.apply_slice(key, parsed, &mut tx);
                }
                Err(e) => tx.invalid.push(e),
            }
        }
        let gone: Vec<ObjectKey> = self
            .slices
            .keys()
            .filter(|k| !seen.contains(*k))
            .cloned()
            .collect();
        for key in gone {
            self.remove_slice(&key, &mut tx);
        }

        seen.clear();
        for svc in services {
            match object_key(&svc.metadata, "Service") {
                Ok(key) => {
                    seen.insert(key.clone());
                    self.apply_service(key, parse_service(svc), &mut tx);
                }
                Err(e) => tx.invalid.push(e),
            }
        }
        let gone: Vec<ObjectKey> = self
            .services
            .keys()
            .filter(|k| !seen.contains(*k))
            .cloned()
            .collect();
        for key in gone {
            self.remove_service(&key, &mut tx);
        }
        self.finish(tx)
    }

    /// Every prefix this node advertises, sorted.
    pub fn advertised(&self) -> Vec<IpNet> {
        let mut v: Vec<IpNet> = self.refs.keys().copied().collect();
        v.sort();
        v
    }

    /// Whether `prefix` is advertised.
    pub fn is_advertised(&self, prefix: &IpNet) -> bool {
        self.refs.contains_key(prefix)
    }

    /// Every address not advertised by this node, with the reason; sorted.
    pub fn rejections(&self) -> Vec<Rejection> {
        let mut out = Vec::new();
        for (key, entry) in &self.services {
            for (kind, address, reason) in entry.rejection_set() {
                out.push(Rejection {
                    service: key.clone(),
                    kind,
                    address,
                    reason,
                });
            }
        }
        out.sort();
        out
    }

    /// What this node does with each address of one Service (for the CLI),
    /// or `None` for an unknown Service.
    pub fn service_status(&self, namespace: &str, name: &str) -> Option<&[AddressStatus]> {
        self.services
            .get(&ObjectKey::new(namespace, name))
            .map(|e| e.eval.statuses.as_slice())
    }

    /// Number of Services and EndpointSlices tracked.
    pub fn object_counts(&self) -> (usize, usize) {
        (self.services.len(), self.slices.len())
    }

    // ---- internals ----

    fn apply_service(&mut self, key: ObjectKey, parsed: ParsedService, tx: &mut Tx) {
        if let Some(entry) = self.services.get(&key)
            && entry.parsed == parsed
        {
            return;
        }
        let counts = self.counts.get(&key).copied().unwrap_or_default();
        let eval = evaluate(&parsed, &self.cidrs, &counts);
        let old = self.services.remove(&key);
        let (old_claims, old_rejections) = match &old {
            Some(e) => (e.eval.claims.as_slice(), e.rejection_set()),
            None => (&[][..], Vec::new()),
        };
        self.swap_claims(old_claims, &eval.claims, tx);
        tx.services.entry(key.clone()).or_insert(old_rejections);
        self.services.insert(key, ServiceEntry { parsed, eval });
    }

    fn remove_service(&mut self, key: &ObjectKey, tx: &mut Tx) {
        if let Some(old) = self.services.remove(key) {
            self.swap_claims(&old.eval.claims, &[], tx);
            tx.services
                .entry(key.clone())
                .or_insert_with(|| old.rejection_set());
        }
    }

    /// Re-runs the rules for one Service (counts or configuration changed).
    fn reevaluate(&mut self, key: &ObjectKey, tx: &mut Tx) {
        let Some(entry) = self.services.get(key) else {
            return;
        };
        let counts = self.counts.get(key).copied().unwrap_or_default();
        let eval = evaluate(&entry.parsed, &self.cidrs, &counts);
        if eval == entry.eval {
            return;
        }
        let old_claims = entry.eval.claims.clone();
        let old_rejections = entry.rejection_set();
        self.swap_claims(&old_claims, &eval.claims, tx);
        tx.services.entry(key.clone()).or_insert(old_rejections);
        if let Some(entry) = self.services.get_mut(key) {
            entry.eval = eval;
        }
    }

    fn apply_slice(&mut self, key: ObjectKey, parsed: ParsedSlice, tx: &mut Tx) {
        if self.slices.get(&key) == Some(&parsed) {
            return;
        }
        let old = self.slices.insert(key, parsed.clone());
        self.move_counts(old.as_ref(), Some(&parsed), tx);
    }

    fn remove_slice(&mut self, key: &ObjectKey, tx: &mut Tx) {
        if let Some(old) = self.slices.remove(key) {
            self.move_counts(Some(&old), None, tx);
        }
    }

    /// Subtracts `old`'s counts from its Service and adds `new`'s to its
    /// Service, re-evaluating each Service whose facts flipped.
    fn move_counts(&mut self, old: Option<&ParsedSlice>, new: Option<&ParsedSlice>, tx: &mut Tx) {
        let mut flipped: Vec<ObjectKey> = Vec::new();
        if let Some(s) = old
            && let Some(svc) = &s.service
            && self.adjust(svc, s, false)
        {
            flipped.push(svc.clone());
        }
        if let Some(s) = new
            && let Some(svc) = &s.service
            && self.adjust(svc, s, true)
            && !flipped.contains(svc)
        {
            flipped.push(svc.clone());
        }
        for svc in flipped {
            self.reevaluate(&svc, tx);
        }
    }

    /// Adds (or subtracts) one slice's counts; true when the Service's
    /// evaluation inputs changed.
    fn adjust(&mut self, svc: &ObjectKey, slice: &ParsedSlice, add: bool) -> bool {
        let counts = match self.counts.get_mut(svc) {
            Some(c) => c,
            None if add => self.counts.entry(svc.clone()).or_default(),
            None => return false,
        };
        let before = counts.flags();
        let apply = |v: &mut u32, d: u32| {
            *v = if add {
                v.saturating_add(d)
            } else {
                v.saturating_sub(d)
            }
        };
        apply(&mut counts.slices, 1);
        if let Some(f) = slice.family {
            apply(&mut counts.local_ready[f.index()], slice.local_ready);
            apply(&mut counts.ready[f.index()], slice.ready);
        }
        let after = counts.flags();
        if counts.slices == 0 {
            self.counts.remove(svc);
        }
        before != after
    }

    /// Moves the references of one owner from `old` to `new` (both sorted
    /// and free of duplicates).
    fn swap_claims(&mut self, old: &[IpNet], new: &[IpNet], tx: &mut Tx) {
        let (mut i, mut j) = (0, 0);
        while i < old.len() || j < new.len() {
            match (old.get(i), new.get(j)) {
                (Some(a), Some(b)) if a == b => {
                    i += 1;
                    j += 1;
                }
                (Some(a), Some(b)) if a < b => {
                    self.release(*a, tx);
                    i += 1;
                }
                (Some(a), None) => {
                    self.release(*a, tx);
                    i += 1;
                }
                (_, Some(b)) => {
                    self.hold(*b, tx);
                    j += 1;
                }
                (None, None) => break,
            }
        }
    }

    fn hold(&mut self, prefix: IpNet, tx: &mut Tx) {
        let n = self.refs.entry(prefix).or_insert(0);
        if *n == 0 {
            tx.prefixes.entry(prefix).or_insert(false);
        }
        *n += 1;
    }

    fn release(&mut self, prefix: IpNet, tx: &mut Tx) {
        match self.refs.get_mut(&prefix) {
            Some(n) if *n > 1 => *n -= 1,
            Some(_) => {
                self.refs.remove(&prefix);
                tx.prefixes.entry(prefix).or_insert(true);
            }
            None => debug_assert!(false, "released unheld prefix {prefix}"),
        }
    }

    fn finish(&self, tx: Tx) -> Delta {
        let mut delta = Delta {
            invalid: tx.invalid,
            ..Delta::default()
        };
        for (prefix, was) in tx.prefixes {
            match (was, self.refs.contains_key(&prefix)) {
                (false, true) => delta.advertise.push(prefix),
                (true, false) => delta.withdraw.push(prefix),
                _ => {}
            }
        }
        delta.advertise.sort();
        delta.withdraw.sort();
        for (key, before) in tx.services {
            let Some(entry) = self.services.get(&key) else {
                continue;
            };
            for (kind, address, reason) in entry.rejection_set() {
                if !before
                    .iter()
                    .any(|(k, a, r)| *k == kind && *a == address && *r == reason)
                {
                    delta.newly_rejected.push(Rejection {
                        service: key.clone(),
                        kind,
                        address,
                        reason,
                    });
                }
            }
        }
        delta.newly_rejected.sort();
        delta
    }
}
