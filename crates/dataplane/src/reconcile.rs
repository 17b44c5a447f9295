//! The pure heart of the dataplane: compare the desired routes with the routes of ours the kernel
//! holds and produce the minimal list of operations. No I/O, no clocks; the netlink task feeds it.
//!
//! Rules (each has a unit test below):
//! - a route is replaced only when its normalised kernel form differs (no flap of unchanged
//!   routes; next hops compare as sets);
//! - `actual` holds only routes carrying our protocol in our table, so foreign routes are never
//!   deleted; a prefix where a foreign route sits at our metric is a conflict and is never
//!   replaced (a replace would overwrite the foreign route);
//! - a route adopted at start-up (stale) that is not desired stays until the sweep;
//! - a desired route none of whose next hops resolves is not installed (and removed if present).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use ipnet::IpNet;

use super::model::{KernelNextHop, KernelRoute, RouteOp, RouteTarget};
use super::resolve::Resolution;

/// What reconciliation needs to know besides the two route sets.
#[derive(Clone, Copy, Debug)]
pub struct ReconcileView<'a> {
    /// The resolution of every next hop used by a desired route (a missing one counts as
    /// unresolved).
    pub resolutions: &'a HashMap<IpAddr, Resolution>,
    /// Prefixes where a route of another protocol sits at the metric we would install at.
    pub conflicts: &'a BTreeSet<IpNet>,
    /// Adopted routes not yet claimed by the desired set and not yet swept.
    pub stale: &'a BTreeSet<IpNet>,
}

/// The kernel form of a desired route, or `None` when no next hop resolves.
pub fn kernel_route(
    prefix: &IpNet,
    target: &RouteTarget,
    view: &ReconcileView<'_>,
) -> Option<KernelRoute> {
    match target {
        RouteTarget::Blackhole => Some(KernelRoute::Blackhole),
        RouteTarget::Via(next_hops) => {
            let v4 = matches!(prefix, IpNet::V4(_));
            let hops: Vec<KernelNextHop> = next_hops
                .iter()
                .filter(|nh| nh.is_ipv4() == v4)
                .filter_map(|nh| match view.resolutions.get(nh) {
                    Some(Resolution::Paths(paths)) => Some(paths.iter().copied()),
                    _ => None,
                })
                .flatten()
                .collect();
            (!hops.is_empty()).then(|| KernelRoute::unicast(hops))
        }
    }
}

/// The operation (if any) that brings one prefix to its desired state.
pub fn reconcile_prefix(
    prefix: &IpNet,
    desired: Option<&RouteTarget>,
    actual: Option<&KernelRoute>,
    view: &ReconcileView<'_>,
) -> Option<RouteOp> {
    let delete = || {
        let keep_stale = desired.is_none() && view.stale.contains(prefix);
        (actual.is_some() && !keep_stale).then_some(RouteOp::Delete { prefix: *prefix })
    };
    if view.conflicts.contains(prefix) {
        // Never replace over a foreign route. A route of ours that coexists with it (appended
        // by someone) is left alone while desired and removed when not.
        return if desired.is_some() { None } else { delete() };
    }
    match desired.and_then(|target| kernel_route(prefix, target, view)) {
        Some(want) if actual == Some(&want) => None,
        Some(want) => Some(RouteOp::Replace {
            prefix: *prefix,
            route: want,
        }),
        None => delete(),
    }
}

/// Reconciles the whole desired set against the whole set of our kernel routes.
pub fn reconcile(
    desired: &BTreeMap<IpNet, RouteTarget>,
    actual: &BTreeMap<IpNet, KernelRoute>,
    view: &ReconcileView<'_>,
) -> Vec<RouteOp> {
    let mut ops: Vec<RouteOp> = desired
        .iter()
        .filter_map(|(prefix, target)| {
            reconcile_prefix(prefix, Some(target), actual.get(prefix), view)
        })
        .collect();
    ops.extend(
        actual
            .iter()
            .filter(|(prefix, _)| !desired.contains_key(prefix))
            .filter_map(|(prefix, route)| reconcile_prefix(prefix, None, Some(route), view)),
    );
    ops
}

/// Desired routes that cannot be installed as asked, for status and logs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Diagnosis {
    /// `(prefix, next hop)` for every desired next hop that does not resolve.
    pub unresolved: Vec<(IpNet, IpAddr)>,
    /// Desired prefixes held by a route of another protocol.
    pub conflicts: Vec<IpNet>,
}

/// Lists the unresolved next hops and conflicts of the desired set.
pub fn diagnose(desired: &BTreeMap<IpNet, RouteTarget>, view: &ReconcileView<'_>) -> Diagnosis {
    let mut out = Diagnosis::default();
    for (prefix, target) in desired {
        if let RouteTarget::Via(next_hops) = target {
            let v4 = matches!(prefix, IpNet::V4(_));
            for nh in next_hops {
                let resolved = nh.is_ipv4() == v4
                    && matches!(view.resolutions.get(nh), Some(Resolution::Paths(_)));
                if !resolved {
                    out.unresolved.push((*prefix, *nh));
                }
            }
        }
    }
    out.conflicts = view
        .conflicts
        .iter()
        .filter(|p| desired.contains_key(p))
        .copied()
        .collect();
    out
}

#[cfg(test)]
#[path = "reconcile_tests.rs"]
mod tests;
