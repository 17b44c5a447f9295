//! Helpers for the kernel route tests: reading a node's routing table with
//! `ip -j route`, waiting on it, and controlling the petrel process directly
//! (SIGKILL / SIGTERM of the agent alone, `ip monitor route`), which the
//! testbed library does not offer (its `stop_node` always sends SIGTERM with
//! a 3 s grace period, and the agent removes its routes on SIGTERM).
#![allow(dead_code)]

pub mod process;

use anyhow::{Context, bail};
use petrel_testbed::{Lab, wait_for};
use serde_json::Value;
use std::fmt;
use std::time::Duration;

pub use crate::common::petrel::wait_petrel_established;
pub use crate::common::{PROPAGATE, UP, deploy};

/// How fast petrel must repair a route someone else deleted.
pub const REPAIR: Duration = Duration::from_secs(2);

/// One path of a kernel route.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Hop {
    pub gateway: String,
    pub dev: String,
}

/// One entry of `ip -j route show table main`, reduced to what the tests
/// compare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KRoute {
    /// Always with a prefix length (`ip` omits it for host routes).
    pub dst: String,
    /// As `ip` prints it: a name from `rt_protos` or a number.
    pub protocol: String,
    /// The kernel default (0 for IPv4) when `ip` prints none.
    pub metric: u32,
    /// `unicast`, `blackhole`, ...
    pub kind: String,
    /// Every next hop, sorted: one for a single-path route, several for
    /// `RTA_MULTIPATH`.
    pub hops: Vec<Hop>,
}

impl KRoute {
    /// Whether petrel installed it (protocol 200, named `petrel` when
    /// `/etc/iproute2/rt_protos.d/petrel.conf` exists).
    pub fn is_petrel(&self) -> bool {
        self.protocol == "200" || self.protocol == "petrel"
    }

    /// The gateways, sorted.
    pub fn gateways(&self) -> Vec<&str> {
        self.hops.iter().map(|h| h.gateway.as_str()).collect()
    }

    fn parse(v: &Value) -> anyhow::Result<KRoute> {
        let s = |key: &str| v.get(key).and_then(Value::as_str).map(str::to_string);
        let mut dst = s("dst").context("route without dst")?;
        if dst != "default" && !dst.contains('/') {
            dst.push_str(if dst.contains(':') { "/128" } else { "/32" });
        }
        let mut hops = Vec::new();
        if let Some(nhs) = v.get("nexthops").and_then(Value::as_array) {
            for nh in nhs {
                hops.push(Hop {
                    gateway: nh
                        .get("gateway")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    dev: nh
                        .get("dev")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                });
            }
        } else if let Some(gateway) = s("gateway") {
            hops.push(Hop {
                gateway,
                dev: s("dev").unwrap_or_default(),
            });
        }
        hops.sort();
        Ok(KRoute {
            dst,
            protocol: match v.get("protocol") {
                Some(Value::String(p)) => p.clone(),
                Some(Value::Number(n)) => n.to_string(),
                _ => "boot".to_string(),
            },
            metric: v
                .get("metric")
                .and_then(Value::as_u64)
                .and_then(|m| u32::try_from(m).ok())
                .unwrap_or(0),
            kind: s("type").unwrap_or_else(|| "unicast".to_string()),
            hops,
        })
    }
}

impl fmt::Display for KRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind, self.dst)?;
        for h in &self.hops {
            write!(f, " via {} dev {}", h.gateway, h.dev)?;
        }
        write!(f, " proto {} metric {}", self.protocol, self.metric)
    }
}

/// Parses the JSON array `ip -j route` prints.
pub fn parse_routes(json: &str) -> anyhow::Result<Vec<KRoute>> {
    let v: Value = serde_json::from_str(json.trim()).with_context(|| {
        format!(
            "ip -j route output is not JSON: {:?}",
            &json[..json.len().min(200)]
        )
    })?;
    let Value::Array(items) = v else {
        bail!("ip -j route: expected an array, got {v}");
    };
    items.iter().map(KRoute::parse).collect()
}

/// Every route of the main table of one family in `node`'s namespace.
pub fn kernel_routes(lab: &Lab, node: &str, v6: bool) -> anyhow::Result<Vec<KRoute>> {
    let family = if v6 { "-6" } else { "-4" };
    parse_routes(&lab.exec(node, &format!("ip -j {family} route show table main"))?)
}

/// The routes of the main table for exactly `prefix` (any protocol, metric).
pub fn routes_for(lab: &Lab, node: &str, prefix: &str) -> anyhow::Result<Vec<KRoute>> {
    Ok(kernel_routes(lab, node, prefix.contains(':'))?
        .into_iter()
        .filter(|r| r.dst == prefix)
        .collect())
}

/// petrel's routes for `prefix`.
pub fn petrel_routes_for(lab: &Lab, node: &str, prefix: &str) -> anyhow::Result<Vec<KRoute>> {
    Ok(routes_for(lab, node, prefix)?
        .into_iter()
        .filter(KRoute::is_petrel)
        .collect())
}

/// Every route of petrel's in both families.
pub fn all_petrel_routes(lab: &Lab, node: &str) -> anyhow::Result<Vec<KRoute>> {
    let mut out = kernel_routes(lab, node, false)?;
    out.extend(kernel_routes(lab, node, true)?);
    out.retain(KRoute::is_petrel);
    Ok(out)
}

/// Checks that `prefix` has exactly one route of petrel's, unicast, with
/// exactly the gateways `gateways` (any order) at the kernel default metric.
pub fn check_petrel_route(
    lab: &Lab,
    node: &str,
    prefix: &str,
    gateways: &[&str],
) -> anyhow::Result<KRoute> {
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
) -> anyhow::Result<KRoute> {
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
pub fn list(routes: &[KRoute]) -> String {
    if routes.is_empty() {
        return "none".to_string();
    }
    routes
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_single_path_multipath_blackhole_and_host_routes() {
        let json = r#"[
          {"dst":"198.51.100.0/24","gateway":"10.0.0.2","dev":"eth1","protocol":"petrel","flags":[]},
          {"dst":"192.0.2.0/24","protocol":"200","flags":[],"nexthops":[
             {"gateway":"10.0.2.2","dev":"eth2","weight":1,"flags":[]},
             {"gateway":"10.0.1.2","dev":"eth1","weight":1,"flags":[]}]},
          {"type":"blackhole","dst":"10.244.0.0/26","protocol":"static","metric":100,"flags":[]},
          {"dst":"10.9.9.9","gateway":"10.0.0.2","dev":"eth1","flags":[]},
          {"dst":"2001:db8::/48","gateway":"fd00::2","dev":"eth1","protocol":"bird","metric":1024,"flags":[],"pref":"medium"}
        ]"#;
        let r = parse_routes(json).unwrap();
        assert_eq!(r.len(), 5);
        assert!(r[0].is_petrel() && r[0].gateways() == ["10.0.0.2"] && r[0].metric == 0);
        assert!(r[1].is_petrel());
        assert_eq!(r[1].gateways(), ["10.0.1.2", "10.0.2.2"]);
        assert_eq!(r[1].hops[0].dev, "eth1");
        assert!(!r[2].is_petrel() && r[2].kind == "blackhole" && r[2].metric == 100);
        assert_eq!(r[3].dst, "10.9.9.9/32");
        assert_eq!(r[3].protocol, "boot");
        assert!(!r[4].is_petrel() && r[4].metric == 1024);
        assert!(parse_routes("not json").is_err());
    }
}
