//! A node's kernel routing table as `ip -j route` prints it (rtnetlink
//! `RTM_GETROUTE` dumps, no RFC), reduced to what the tests compare:
//! destination, protocol, metric, type and every next hop.
//!
//! ```no_run
//! # fn f(lab: &petrel_testbed::Lab) -> anyhow::Result<()> {
//! for r in lab.kernel_routes_for("petrel", "198.51.100.0/24")? {
//!     println!("{r}"); // unicast 198.51.100.0/24 via 10.0.0.2 dev eth1 proto petrel metric 0
//! }
//! # Ok(()) }
//! ```

use crate::Lab;
use anyhow::{Context, bail};
use serde_json::Value;
use std::fmt;

/// One path of a kernel route.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Hop {
    /// Empty for a path without a gateway (a device route).
    pub gateway: String,
    pub dev: String,
}

/// One entry of `ip -j route show table main`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelRoute {
    /// Always with a prefix length (`ip` omits it for host routes), or
    /// `default`.
    pub dst: String,
    /// As `ip` prints it: a name from `rt_protos` or a number; `boot` when
    /// `ip` prints none.
    pub protocol: String,
    /// The kernel default (0 for IPv4) when `ip` prints none.
    pub metric: u32,
    /// `unicast`, `blackhole`, ...
    pub kind: String,
    /// Every next hop, sorted: one for a single-path route, several for
    /// `RTA_MULTIPATH`.
    pub hops: Vec<Hop>,
    /// Whether `ip` printed a `nexthops` array (`RTA_MULTIPATH`).
    pub multipath: bool,
}

impl KernelRoute {
    /// Whether petrel installed it (protocol 200, named `petrel` when
    /// `/etc/iproute2/rt_protos.d/petrel.conf` exists).
    pub fn is_petrel(&self) -> bool {
        self.protocol == "200" || self.protocol == "petrel"
    }

    /// The gateways, sorted.
    pub fn gateways(&self) -> Vec<&str> {
        self.hops.iter().map(|h| h.gateway.as_str()).collect()
    }

    fn parse(v: &Value) -> anyhow::Result<KernelRoute> {
        let s = |key: &str| v.get(key).and_then(Value::as_str).map(str::to_string);
        let mut dst = s("dst").context("route without dst")?;
        if dst != "default" && !dst.contains('/') {
            dst.push_str(if dst.contains(':') { "/128" } else { "/32" });
        }
        let nexthops = v.get("nexthops").and_then(Value::as_array);
        let mut hops = Vec::new();
        if let Some(nhs) = nexthops {
            for nh in nhs {
                let field = |key: &str| {
                    nh.get(key)
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string()
                };
                hops.push(Hop {
                    gateway: field("gateway"),
                    dev: field("dev"),
                });
            }
        } else if let Some(gateway) = s("gateway") {
            hops.push(Hop {
                gateway,
                dev: s("dev").unwrap_or_default(),
            });
        }
        hops.sort();
        Ok(KernelRoute {
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
            multipath: nexthops.is_some(),
        })
    }
}

impl fmt::Display for KernelRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind, self.dst)?;
        for h in &self.hops {
            write!(f, " via {} dev {}", h.gateway, h.dev)?;
        }
        write!(f, " proto {} metric {}", self.protocol, self.metric)
    }
}

/// Parses the JSON array `ip -j route` prints.
pub fn parse_routes(json: &str) -> anyhow::Result<Vec<KernelRoute>> {
    let v: Value = serde_json::from_str(json.trim()).with_context(|| {
        format!(
            "ip -j route output is not JSON: {:?}",
            json.chars().take(200).collect::<String>()
        )
    })?;
    let Value::Array(items) = v else {
        bail!("ip -j route: expected an array, got {v}");
    };
    items.iter().map(KernelRoute::parse).collect()
}

fn family(v6: bool) -> &'static str {
    if v6 { "-6" } else { "-4" }
}

impl Lab {
    /// Every route of the main table of one family in `node`'s namespace.
    pub fn kernel_routes(&self, node: &str, v6: bool) -> anyhow::Result<Vec<KernelRoute>> {
        let cmd = format!("ip -j {} route show table main", family(v6));
        parse_routes(&self.exec(node, &cmd)?).with_context(|| format!("{node}: {cmd}"))
    }

    /// The main table's routes for exactly `prefix` (any protocol, metric or
    /// type) in `node`'s namespace.
    pub fn kernel_routes_for(&self, node: &str, prefix: &str) -> anyhow::Result<Vec<KernelRoute>> {
        let cmd = format!(
            "ip -j {} route show table main exact {prefix}",
            family(prefix.contains(':'))
        );
        parse_routes(&self.exec(node, &cmd)?).with_context(|| format!("{node}: {cmd}"))
    }

    /// `node`'s kernel next hops for exactly `prefix` (sorted), empty when it
    /// has no route; an error when it has several routes for it.
    pub fn kernel_hops(&self, node: &str, prefix: &str) -> anyhow::Result<Vec<String>> {
        let routes = self.kernel_routes_for(node, prefix)?;
        anyhow::ensure!(routes.len() <= 1, "several routes for {prefix}: {routes:?}");
        let mut hops: Vec<String> = routes
            .first()
            .map(|r| r.gateways().into_iter().map(str::to_string).collect())
            .unwrap_or_default();
        hops.sort();
        Ok(hops)
    }

    /// Polls until `node` routes `prefix` via exactly `want` (addresses
    /// compared as addresses), at most `within`; how long it took.
    pub fn wait_kernel_hops(
        &self,
        node: &str,
        prefix: &str,
        want: &[&str],
        within: std::time::Duration,
    ) -> anyhow::Result<std::time::Duration> {
        let start = std::time::Instant::now();
        crate::wait_for(
            within,
            &format!("{node} to route {prefix} via {want:?}"),
            || {
                let hops = self.kernel_hops(node, prefix)?;
                anyhow::ensure!(
                    same_hops(&hops, want),
                    "{node} routes {prefix} via {hops:?}"
                );
                Ok(())
            },
        )?;
        Ok(start.elapsed())
    }
}

/// Whether `hops` are exactly the addresses `want` (in any order and
/// spelling: `fd00::1` and `fd00:0::1` are the same).
pub fn same_hops(hops: &[String], want: &[&str]) -> bool {
    hops.len() == want.len()
        && want
            .iter()
            .all(|w| hops.iter().any(|h| crate::status::same_addr(h, w)))
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
          {"dst":"2001:db8::/48","gateway":"fd00::2","dev":"eth1","protocol":"bird","metric":1024,"flags":[],"pref":"medium"},
          {"dst":"10.0.0.0/24","dev":"eth1","protocol":"kernel","scope":"link"}
        ]"#;
        let r = parse_routes(json).unwrap();
        assert_eq!(r.len(), 6);
        assert!(r[0].is_petrel() && r[0].gateways() == ["10.0.0.2"] && r[0].metric == 0);
        assert!(!r[0].multipath);
        assert!(r[1].is_petrel() && r[1].multipath);
        assert_eq!(r[1].gateways(), ["10.0.1.2", "10.0.2.2"]);
        assert_eq!(r[1].hops[0].dev, "eth1");
        assert!(!r[2].is_petrel() && r[2].kind == "blackhole" && r[2].metric == 100);
        assert!(r[2].hops.is_empty());
        assert_eq!(r[3].dst, "10.9.9.9/32");
        assert_eq!(r[3].protocol, "boot");
        assert!(!r[4].is_petrel() && r[4].metric == 1024);
        assert!(!r[5].is_petrel() && r[5].kind == "unicast" && r[5].gateways().is_empty());
        assert_eq!(
            r[1].to_string(),
            "unicast 192.0.2.0/24 via 10.0.1.2 dev eth1 via 10.0.2.2 dev eth2 proto 200 metric 0"
        );
        assert!(parse_routes("not json").is_err());
        assert!(parse_routes(r#"{"dst":"10.0.0.0/24"}"#).is_err());
        assert!(parse_routes(r#"[{"gateway":"10.0.0.2"}]"#).is_err());
        assert!(parse_routes(" [] \n").unwrap().is_empty());
    }
}
