//! The dataplane task's state machine, without I/O: it is fed desired-route changes, kernel dumps,
//! notifications and operation results, and hands out the operations to execute next.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::time::SystemTime;

use ipnet::IpNet;
use tracing::{debug, info, warn};

use super::codec::{self, NLM_F_APPEND, NLM_F_REPLACE, NlHeader, ParsedRoute};
use super::model::{KernelRoute, RouteOp, RouteTarget, default_metric};
use super::netlink::OpResult;
use super::reconcile::{self, ReconcileView};
use super::resolve::{ForeignRoutes, Resolution};
use super::{DataplaneConfig, DataplaneStatus};

/// Routes read by a dump, split into ours and the foreign mirror.
pub struct Snapshot {
    table: u32,
    protocol: u8,
    ours: BTreeMap<IpNet, KernelRoute>,
    foreign: ForeignRoutes,
}

impl Snapshot {
    pub fn new(table: u32, protocol: u8) -> Self {
        Self {
            table,
            protocol,
            ours: BTreeMap::new(),
            foreign: ForeignRoutes::new(table),
        }
    }

    /// Adds one dumped `RTM_NEWROUTE` payload.
    pub fn add(&mut self, payload: &[u8]) {
        let Some(route) = codec::parse_route(payload) else {
            return;
        };
        if is_ours(&route, self.table, self.protocol) {
            self.ours.insert(route.prefix, route.kernel_route());
        } else if !(route.protocol == self.protocol && route.table == self.table) {
            self.foreign
                .insert(route.table, route.prefix, route.foreign_route(), false);
        }
    }

    pub fn ours(&self) -> usize {
        self.ours.len()
    }
}

/// Ours: our protocol in our table at the metric and TOS we install with. Routes with our
/// protocol at another metric or TOS were added by hand; they are left alone.
fn is_ours(route: &ParsedRoute, table: u32, protocol: u8) -> bool {
    route.protocol == protocol
        && route.table == table
        && route.metric == default_metric(&route.prefix)
        && route.tos == 0
}

pub struct State {
    table: u32,
    protocol: u8,
    via_default: bool,
    desired: BTreeMap<IpNet, RouteTarget>,
    nh_refs: HashMap<IpAddr, usize>,
    resolutions: HashMap<IpAddr, Resolution>,
    actual: BTreeMap<IpNet, KernelRoute>,
    stale: BTreeSet<IpNet>,
    foreign: ForeignRoutes,
    dirty: BTreeSet<IpNet>,
    full: bool,
    resolve_pending: bool,
    resync_needed: bool,
    failures: BTreeMap<IpNet, String>,
    reported_conflicts: BTreeSet<IpNet>,
    converged: bool,
    last_resync: Option<SystemTime>,
    resyncs: u64,
    ops_done: u64,
}

impl State {
    pub fn new(config: &DataplaneConfig) -> Self {
        Self {
            table: config.table,
            protocol: config.protocol,
            via_default: config.resolve_via_default,
            desired: BTreeMap::new(),
            nh_refs: HashMap::new(),
            resolutions: HashMap::new(),
            actual: BTreeMap::new(),
            stale: BTreeSet::new(),
            foreign: ForeignRoutes::new(config.table),
            dirty: BTreeSet::new(),
            full: false,
            resolve_pending: false,
            resync_needed: false,
            failures: BTreeMap::new(),
            reported_conflicts: BTreeSet::new(),
            converged: false,
            last_resync: None,
            resyncs: 0,
            ops_done: 0,
        }
    }

    /// Replaces the kernel view with a fresh dump. With `adopt`, every route of ours not yet
    /// desired becomes stale (start-up); otherwise staleness is kept for routes still present.
    pub fn load(&mut self, snapshot: Snapshot, now: SystemTime, adopt: bool) {
        self.actual = snapshot.ours;
        self.foreign = snapshot.foreign;
        if adopt && !self.converged {
            self.stale = self
                .actual
                .keys()
                .filter(|p| !self.desired.contains_key(p))
                .copied()
                .collect();
        } else {
            self.stale.retain(|p| self.actual.contains_key(p));
        }
        self.full = true;
        self.resolve_pending = true;
        self.resync_needed = false;
        self.last_resync = Some(now);
        self.resyncs += 1;
    }

    pub fn has_work(&self) -> bool {
        self.full || self.resolve_pending || self.resync_needed || !self.dirty.is_empty()
    }

    pub fn resync_needed(&self) -> bool {
        self.resync_needed
    }

    /// A resync dump failed: keep the current view (the next trigger retries).
    pub fn load_failed(&mut self) {
        self.resync_needed = false;
    }

    pub fn request_resync(&mut self) {
        self.resync_needed = true;
    }

    pub fn has_stale(&self) -> bool {
        !self.stale.is_empty()
    }

    pub fn has_failures(&self) -> bool {
        !self.failures.is_empty()
    }

    fn add_ref(&mut self, nh: IpAddr) {
        let count = self.nh_refs.entry(nh).or_default();
        *count += 1;
        if *count == 1 {
            let resolution = self.foreign.resolve(nh, nh.is_ipv4(), self.via_default);
            if let Resolution::Unresolved(reason) = &resolution {
                warn!(next_hop = %nh, %reason, "BGP next hop is unresolvable; routes via it are not installed");
            }
            self.resolutions.insert(nh, resolution);
        }
    }

    fn drop_ref(&mut self, nh: IpAddr) {
        if let Some(count) = self.nh_refs.get_mut(&nh) {
            *count -= 1;
            if *count == 0 {
                self.nh_refs.remove(&nh);
                self.resolutions.remove(&nh);
            }
        }
    }

    fn set_one(&mut self, prefix: IpNet, target: Option<RouteTarget>) {
        let prefix = prefix.trunc();
        if let Some(RouteTarget::Via(hops)) = &target {
            let unique: BTreeSet<IpAddr> = hops.iter().copied().collect();
            unique.into_iter().for_each(|nh| self.add_ref(nh));
        }
        let old = match target {
            Some(target) => self.desired.insert(prefix, target),
            None => self.desired.remove(&prefix),
        };
        if let Some(RouteTarget::Via(hops)) = old {
            let unique: BTreeSet<IpAddr> = hops.into_iter().collect();
            unique.into_iter().for_each(|nh| self.drop_ref(nh));
        }
        self.stale.remove(&prefix);
        self.dirty.insert(prefix);
    }

    /// Incremental desired-route changes (`None` withdraws).
    pub fn apply(&mut self, changes: Vec<(IpNet, Option<RouteTarget>)>) {
        for (prefix, target) in changes {
            self.set_one(prefix, target);
        }
    }

    /// A complete desired set: only the differences are applied. Adopted stale routes missing
    /// from the set stay until the sweep.
    pub fn set_routes(&mut self, routes: BTreeMap<IpNet, RouteTarget>) {
        let routes: BTreeMap<IpNet, RouteTarget> =
            routes.into_iter().map(|(p, t)| (p.trunc(), t)).collect();
        let gone: Vec<IpNet> = self
            .desired
            .keys()
            .filter(|p| !routes.contains_key(p))
            .copied()
            .collect();
        for prefix in gone {
            self.set_one(prefix, None);
        }
        for (prefix, target) in routes {
            if self.desired.get(&prefix) != Some(&target) {
                self.set_one(prefix, Some(target));
            } else {
                self.stale.remove(&prefix);
            }
        }
    }

    /// Every established peer has sent End-of-RIB (or the stale timer fired): stale routes go.
    pub fn sweep(&mut self) {
        self.converged = true;
        if !self.stale.is_empty() {
            info!(
                stale = self.stale.len(),
                "sweeping stale routes adopted at start-up"
            );
        }
        self.dirty.extend(std::mem::take(&mut self.stale));
    }

    pub fn retry_failures(&mut self) {
        self.dirty.extend(self.failures.keys().copied());
    }

    /// Handles one datagram from the monitor socket; `echo_port` is our request socket's port.
    pub fn monitor(&mut self, datagram: &[u8], echo_port: u32) {
        for (h, payload) in codec::messages(datagram) {
            match h.kind {
                codec::RTM_NEWROUTE | codec::RTM_DELROUTE if h.pid != echo_port => {
                    if let Some(route) = codec::parse_route(payload) {
                        self.route_event(&h, route);
                    }
                }
                codec::RTM_NEWLINK | codec::RTM_DELLINK => {
                    if let Some((oif, up)) = codec::parse_link(payload)
                        && (h.kind == codec::RTM_DELLINK || !up)
                    {
                        self.link_gone(oif);
                    }
                }
                _ => {}
            }
        }
    }

    fn route_event(&mut self, h: &NlHeader, route: ParsedRoute) {
        let added = h.kind == codec::RTM_NEWROUTE;
        let prefix = route.prefix;
        if is_ours(&route, self.table, self.protocol) {
            debug!(%prefix, added, "our route changed outside petrel");
            let merged = match (added, self.actual.get(&prefix), route.kernel_route()) {
                (true, Some(KernelRoute::Unicast(old)), KernelRoute::Unicast(new))
                    if h.flags & NLM_F_APPEND != 0 =>
                {
                    Some(KernelRoute::unicast(
                        old.iter().chain(&new).copied().collect(),
                    ))
                }
                (true, _, new) => Some(new),
                // An IPv6 next hop removed from a multipath route is notified on its own.
                (false, Some(KernelRoute::Unicast(old)), KernelRoute::Unicast(gone))
                    if prefix.addr().is_ipv6() && gone.len() == 1 && old.len() > 1 =>
                {
                    Some(KernelRoute::Unicast(
                        old.iter().filter(|h| **h != gone[0]).copied().collect(),
                    ))
                }
                (false, ..) => None,
            };
            match merged {
                Some(route) => self.actual.insert(prefix, route),
                None => self.actual.remove(&prefix),
            };
            self.dirty.insert(prefix);
            return;
        }
        if route.protocol == self.protocol && route.table == self.table {
            return; // ours at another metric/TOS: added by hand, left alone
        }
        let foreign = route.foreign_route();
        let changed = if added {
            let replace = h.flags & NLM_F_REPLACE != 0;
            if replace && route.table == self.table && foreign.metric == default_metric(&prefix) {
                // The kernel replaced whatever sat at this metric, possibly our route.
                if self.actual.remove(&prefix).is_some() {
                    warn!(%prefix, protocol = route.protocol, "our route was replaced by a route of another protocol");
                }
            }
            self.foreign.insert(route.table, prefix, foreign, replace)
        } else {
            self.foreign.remove(route.table, prefix, &foreign)
        };
        if changed {
            self.resolve_pending = true;
            if route.table == self.table {
                self.dirty.insert(prefix);
            }
        }
    }

    fn link_gone(&mut self, oif: u32) {
        // The kernel flushes IPv4 routes through a device that goes down without notifying.
        let gone: Vec<IpNet> = self
            .actual
            .iter()
            .filter(|(_, r)| r.oifs().next().is_some() && r.oifs().all(|o| o == oif))
            .map(|(p, _)| *p)
            .collect();
        for prefix in gone {
            self.actual.remove(&prefix);
            self.dirty.insert(prefix);
        }
        if self.foreign.purge_oif(oif) {
            self.resolve_pending = true;
        }
    }

    fn refresh_resolutions(&mut self) {
        self.resolve_pending = false;
        let fresh: HashMap<IpAddr, Resolution> = self
            .nh_refs
            .keys()
            .map(|nh| {
                (
                    *nh,
                    self.foreign.resolve(*nh, nh.is_ipv4(), self.via_default),
                )
            })
            .collect();
        if fresh == self.resolutions {
            return;
        }
        for (nh, new) in &fresh {
            let old = self.resolutions.get(nh);
            match (new, old) {
                (_, Some(old)) if old == new => {}
                (Resolution::Unresolved(reason), _) => {
                    warn!(next_hop = %nh, %reason, "BGP next hop became unresolvable; routes via it are withdrawn from the kernel");
                }
                (Resolution::Paths(paths), _) => {
                    info!(next_hop = %nh, ?paths, "BGP next hop resolved");
                }
            }
        }
        self.resolutions = fresh;
        self.full = true;
    }

    fn report_conflict(&mut self, prefix: IpNet, conflicting: bool) {
        if conflicting {
            if self.reported_conflicts.insert(prefix) {
                warn!(%prefix, "a route of another protocol holds this prefix; petrel does not overwrite it");
            }
        } else if self.reported_conflicts.remove(&prefix) {
            info!(%prefix, "conflict with a route of another protocol is gone");
        }
    }

    /// The operations to execute now; clears the pending work they cover.
    pub fn take_ops(&mut self) -> Vec<RouteOp> {
        if self.resolve_pending {
            self.refresh_resolutions();
        }
        let view = ReconcileView {
            resolutions: &self.resolutions,
            conflicts: self.foreign.occupied(),
            stale: &self.stale,
        };
        let (ops, checked): (Vec<RouteOp>, Vec<IpNet>) = if self.full {
            self.full = false;
            self.dirty.clear();
            let ops = reconcile::reconcile(&self.desired, &self.actual, &view);
            let checked = self
                .reported_conflicts
                .iter()
                .chain(view.conflicts.iter())
                .copied()
                .collect();
            (ops, checked)
        } else {
            let dirty = std::mem::take(&mut self.dirty);
            let ops = dirty
                .iter()
                .filter_map(|p| {
                    reconcile::reconcile_prefix(p, self.desired.get(p), self.actual.get(p), &view)
                })
                .collect();
            (ops, dirty.into_iter().collect())
        };
        for prefix in checked {
            let conflicting =
                self.foreign.occupied().contains(&prefix) && self.desired.contains_key(&prefix);
            self.report_conflict(prefix, conflicting);
        }
        ops
    }

    /// Records the outcome of one executed operation.
    pub fn op_done(&mut self, op: &RouteOp, result: OpResult) {
        self.ops_done += 1;
        let prefix = *op.prefix();
        match result {
            Ok(()) => {
                match op {
                    RouteOp::Replace { route, .. } => self.actual.insert(prefix, route.clone()),
                    RouteOp::Delete { .. } => self.actual.remove(&prefix),
                };
                if self.failures.remove(&prefix).is_some() {
                    info!(%prefix, "route programmed after earlier failure");
                }
            }
            Err((errno, message)) => {
                let text = format!(
                    "{}{}",
                    std::io::Error::from_raw_os_error(errno),
                    message.map(|m| format!(": {m}")).unwrap_or_default()
                );
                if self.failures.get(&prefix) != Some(&text) {
                    warn!(%prefix, op = ?op, error = %text, "kernel rejected route operation");
                }
                self.failures.insert(prefix, text);
            }
        }
    }

    /// Deletes for every route of ours (shutdown).
    pub fn withdraw_ops(&self) -> Vec<RouteOp> {
        self.actual
            .keys()
            .map(|prefix| RouteOp::Delete { prefix: *prefix })
            .collect()
    }

    pub fn status(&self) -> DataplaneStatus {
        let view = ReconcileView {
            resolutions: &self.resolutions,
            conflicts: self.foreign.occupied(),
            stale: &self.stale,
        };
        let diagnosis = reconcile::diagnose(&self.desired, &view);
        let stale = self
            .stale
            .iter()
            .filter(|p| self.actual.contains_key(p))
            .count();
        DataplaneStatus {
            desired: self.desired.len(),
            installed: self.actual.len() - stale,
            stale,
            unresolved: diagnosis.unresolved,
            conflicts: diagnosis.conflicts,
            errors: self.failures.iter().map(|(p, e)| (*p, e.clone())).collect(),
            converged: self.converged,
            last_resync: self.last_resync,
            resyncs: self.resyncs,
            operations: self.ops_done,
            reconcile_latency: Default::default(),
        }
    }
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
