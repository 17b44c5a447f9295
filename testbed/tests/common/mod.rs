//! Helpers shared by the testbed's integration tests.
#![allow(dead_code)]

pub mod petrel;

use petrel_testbed::{DaemonRoute, Lab, is_root, wait_for};
use std::path::PathBuf;
use std::time::Duration;

/// How long sessions get to come up in a freshly deployed lab.
pub const UP: Duration = Duration::from_secs(30);
/// How long a route change gets to propagate.
pub const PROPAGATE: Duration = Duration::from_secs(20);

/// Path of `testbed/topologies/<name>/topology.clab.yaml`.
pub fn topology(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("topologies")
        .join(name)
        .join("topology.clab.yaml")
}

/// Deploys a topology from `testbed/topologies/`, panicking with a clear
/// message when not root or when deployment fails.
pub fn deploy(name: &str) -> Lab {
    assert!(
        is_root(),
        "the testbed integration tests create network namespaces and must run as root \
         (use .ci/test or sudo -E cargo test)"
    );
    match Lab::deploy(&topology(name)) {
        Ok(lab) => lab,
        Err(e) => panic!("deploying {name}: {e:#}"),
    }
}

/// Waits until `node`'s session with `peer` is Established.
pub fn wait_established(lab: &Lab, node: &str, peer: &str) -> anyhow::Result<()> {
    wait_established_within(lab, node, peer, UP)
}

/// [`wait_established`] with another timeout than [`UP`].
pub fn wait_established_within(
    lab: &Lab,
    node: &str,
    peer: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    wait_for(
        timeout,
        &format!("{node}'s session with {peer} to be Established"),
        || {
            let s = lab.session(node, peer)?;
            anyhow::ensure!(
                s.is_established(),
                "state {} (last error {:?})",
                s.state,
                s.last_error
            );
            Ok(())
        },
    )
}

/// Waits until `node`'s session with `peer` is anything but Established,
/// returning the session as then seen.
pub fn wait_not_established(
    lab: &Lab,
    node: &str,
    peer: &str,
) -> anyhow::Result<petrel_testbed::Session> {
    wait_for(
        PROPAGATE,
        &format!("{node}'s session with {peer} to go down"),
        || {
            let s = lab.session(node, peer)?;
            anyhow::ensure!(!s.is_established(), "still Established");
            Ok(s)
        },
    )
}

/// Waits until `node` has a best route for `prefix` and returns it.
pub fn wait_route(lab: &Lab, node: &str, prefix: &str) -> anyhow::Result<DaemonRoute> {
    wait_for(
        PROPAGATE,
        &format!("{node} to have a best route for {prefix}"),
        || lab.best_route(node, prefix),
    )
}

/// Waits until `node` has no route at all for `prefix`.
pub fn wait_no_route(lab: &Lab, node: &str, prefix: &str) -> anyhow::Result<()> {
    wait_for(
        PROPAGATE,
        &format!("{node} to lose every route for {prefix}"),
        || {
            let routes: Vec<String> = lab
                .routes(node, petrel_testbed::Afi::of(prefix))?
                .into_iter()
                .filter(|r| r.prefix == prefix)
                .map(|r| r.to_string())
                .collect();
            anyhow::ensure!(routes.is_empty(), "still has {routes:?}");
            Ok(())
        },
    )
}

/// Checks a route's AS path, next hop and communities, saying what differs.
pub fn check_route(
    route: &DaemonRoute,
    as_path: &[u32],
    next_hop: &str,
    communities: &[&str],
    large_communities: &[&str],
) -> anyhow::Result<()> {
    let mut problems = Vec::new();
    if route.as_path != as_path {
        problems.push(format!(
            "AS path: expected {as_path:?}, seen {:?}",
            route.as_path
        ));
    }
    if !petrel_testbed::status::same_addr(&route.next_hop, next_hop) {
        problems.push(format!(
            "next hop: expected {next_hop}, seen {}",
            route.next_hop
        ));
    }
    for c in communities {
        if !route.communities.iter().any(|x| x == c) {
            problems.push(format!(
                "community {c} missing, seen {:?}",
                route.communities
            ));
        }
    }
    for c in large_communities {
        if !route.large_communities.iter().any(|x| x == c) {
            problems.push(format!(
                "large community {c} missing, seen {:?}",
                route.large_communities
            ));
        }
    }
    anyhow::ensure!(
        problems.is_empty(),
        "route {route}: {}",
        problems.join("; ")
    );
    Ok(())
}

/// Waits until `node`'s session with `peer` is down and its last error
/// contains one of `needles` (case-insensitive). Daemons may report the
/// session down a moment before they show the reason (GoBGP's neighbor JSON
/// does), so the reason itself is polled.
pub fn wait_session_error(
    lab: &Lab,
    node: &str,
    peer: &str,
    needles: &[&str],
) -> anyhow::Result<petrel_testbed::Session> {
    wait_for(
        PROPAGATE,
        &format!(
            "{node}'s session with {peer} to be down with a last error containing one of {needles:?}"
        ),
        || {
            let s = lab.session(node, peer)?;
            let err = s
                .last_error
                .clone()
                .unwrap_or_default()
                .to_ascii_lowercase();
            anyhow::ensure!(
                !s.is_established()
                    && needles
                        .iter()
                        .any(|n| err.contains(&n.to_ascii_lowercase())),
                "state {}, last error {:?}",
                s.state,
                s.last_error
            );
            Ok(s)
        },
    )
}
