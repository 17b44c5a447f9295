//! Helpers for the kernel route tests: checking and waiting on petrel's
//! routes in a node's routing table (read with
//! [`petrel_testbed::kernel`]), and controlling the petrel process directly
//! (SIGKILL / SIGTERM of the agent alone, `ip monitor route`), which the
//! testbed library does not offer (its `stop_node` always sends SIGTERM with
//! a 3 s grace period, and the agent removes its routes on SIGTERM).
#![allow(dead_code)]

pub mod process;

use anyhow::bail;
use petrel_testbed::{KernelRoute, Lab, wait_for};
use std::time::Duration;

// Re-exported for the kernel tests; other test crates that use `process`
// only do not need them.
#[allow(unused_imports)]
pub use crate::common::petrel::wait_petrel_established;
#[allow(unused_imports)]
pub use crate::common::{PROPAGATE, UP, deploy};

/// How fast petrel must repair a route someone else deleted.
pub const REPAIR: Duration = Duration::from_secs(2);

/// petrel's routes for `prefix`.
pub fn petrel_routes_for(lab: &Lab, node: &str, prefix: &str) -> anyhow::Result<Vec<KernelRoute>> {
    Ok(lab
        .kernel_routes_for(node, prefix)?
        .into_iter()
        .filter(KernelRoute::is_petrel)
        .collect())
}

/// Every route of petrel's in both families.
pub fn all_petrel_routes(lab: &Lab, node: &str) -> anyhow::Result<Vec<KernelRoute>> {
    let mut out = lab.kernel_routes(node, false)?;
    out.extend(lab.kernel_routes(node, true)?);
    out.retain(KernelRoute::is_petrel);
    Ok(out)
}

/// Checks that `prefix` has exactly one route of petrel's, unicast, with
/// exactly the gateways `gateways` (any order) at the kernel default metric.
pub fn check_petrel_route(
    lab: &Lab,
    node: &str,
    prefix: &str,
    gateways: &[&str],
) -> anyhow::Result<KernelRoute> {
    let ours = petrel_routes_for(lab, node, prefix)?;
    let [route] = ours.as_slice() else {
        bail!(
            "{prefix}: expected exactly one petrel route, seen {} ({})",
            ours.len(),
            list(&ours)
        );
    };
    let mut want: Vec<&str> = gateways.to_vec();
    want.sort_unstable();
    let default_metric = if prefix.contains(':') { 1024 } else { 0 };
    anyhow::ensure!(
        route.kind == "unicast" && route.gateways() == want && route.metric == default_metric,
        "{prefix}: expected a unicast route via {want:?} at metric {default_metric}, seen {route}"
    );
    Ok(route.clone())
}

/// Waits until [`check_petrel_route`] passes.
pub fn wait_petrel_route(
    lab: &Lab,
    node: &str,
    prefix: &str,
    gateways: &[&str],
    timeout: Duration,
) -> anyhow::Result<KernelRoute> {
    wait_for(
        timeout,
        &format!("{node}'s kernel to have petrel's route {prefix} via {gateways:?}"),
        || check_petrel_route(lab, node, prefix, gateways),
    )
}

/// Waits until `node`'s kernel has no route of petrel's for `prefix`.
pub fn wait_no_petrel_route(
    lab: &Lab,
    node: &str,
    prefix: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    wait_for(
        timeout,
        &format!("{node}'s kernel to lose petrel's route for {prefix}"),
        || {
            let ours = petrel_routes_for(lab, node, prefix)?;
            anyhow::ensure!(ours.is_empty(), "still there: {}", list(&ours));
            Ok(())
        },
    )
}

/// Routes as one line, for error messages.
pub fn list(routes: &[KernelRoute]) -> String {
    if routes.is_empty() {
        return "none".to_string();
    }
    routes
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}
