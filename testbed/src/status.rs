//! Typed views of BGP state: petrel's CLI JSON, and the same questions asked
//! of BIRD (`birdc` text), FRR (`vtysh ... json`) and GoBGP (`gobgp -j`), so
//! tests can compare what each side sees.

use crate::lab::Lab;
use crate::parse;
use crate::topology::Kind;
use anyhow::{Context, bail};
use serde::Deserialize;

/// One element of `petrel peers -o json`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct PetrelPeer {
    pub name: String,
    pub address: String,
    pub port: u16,
    pub local_as: u32,
    pub peer_as: u32,
    /// "Idle", "Connect", "Active", "OpenSent", "OpenConfirm", "Established".
    pub state: String,
    pub peer_router_id: Option<String>,
    pub hold_time: Option<u64>,
    pub uptime_seconds: Option<u64>,
    pub prefixes_received: u64,
    pub prefixes_accepted: u64,
    pub prefixes_advertised: u64,
    pub last_error: Option<String>,
    /// The last NOTIFICATION sent or received (kept when later connection
    /// failures overwrite `last_error`).
    pub last_notification: Option<String>,
    pub families: Vec<String>,
    pub passive: bool,
    pub messages_received: u64,
    pub messages_sent: u64,
    pub connection_attempts: u64,
    pub established_transitions: u64,
    /// "restarting", "awaiting-end-of-rib" or "" (graceful restart).
    pub graceful_restart: String,
    /// Routes kept stale while the peer restarts.
    pub stale_routes: u64,
}

/// One element of `petrel routes -o json`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct PetrelRoute {
    pub prefix: String,
    pub next_hop: Option<String>,
    pub peer: Option<String>,
    pub as_path: Vec<u32>,
    pub origin: String,
    pub local_pref: Option<u32>,
    pub has_med: bool,
    pub med: Option<u32>,
    pub communities: Vec<String>,
    pub large_communities: Vec<String>,
    pub best: bool,
    pub reason: Option<String>,
    /// Kept from a gracefully restarting peer.
    pub stale: bool,
}

/// A BGP session as seen by any daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// BIRD protocol name, or the neighbor address for FRR/GoBGP, or the
    /// petrel peer name.
    pub name: String,
    /// Neighbor address.
    pub address: String,
    /// The daemon's own word for the state ("Established", "Active", ...).
    pub state: String,
    /// Last error / reset reason the daemon reports, if any.
    pub last_error: Option<String>,
}

/// The line the testbed prints once every session is up, from the number
/// of Established session *ends* it counted (every router reports its own
/// end, so a session between two lab nodes is seen twice).
pub fn established_summary(ends: usize) -> String {
    if ends.is_multiple_of(2) {
        format!(
            "all {} BGP sessions Established (each seen from both ends: {ends} session ends)",
            ends / 2
        )
    } else {
        format!("all {ends} BGP session ends Established (each router counts its own end)")
    }
}

impl Session {
    pub fn is_established(&self) -> bool {
        self.state.eq_ignore_ascii_case("established")
    }
}

/// A route in a daemon's table (BIRD, FRR, GoBGP or petrel).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DaemonRoute {
    pub prefix: String,
    /// First (global) next hop.
    pub next_hop: String,
    pub as_path: Vec<u32>,
    /// Standard communities as "asn:value".
    pub communities: Vec<String>,
    /// Large communities as "global:local1:local2".
    pub large_communities: Vec<String>,
    pub best: bool,
    /// Who the route came from (protocol name, neighbor address, ...), empty
    /// for locally originated routes.
    pub from: String,
}

impl std::fmt::Display for DaemonRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} via {} as_path {:?} communities {:?} large {:?}{} from {:?}",
            self.prefix,
            self.next_hop,
            self.as_path,
            self.communities,
            self.large_communities,
            if self.best { " best" } else { "" },
            self.from
        )
    }
}

impl From<&PetrelRoute> for DaemonRoute {
    fn from(r: &PetrelRoute) -> Self {
        DaemonRoute {
            prefix: r.prefix.clone(),
            next_hop: r.next_hop.clone().unwrap_or_default(),
            as_path: r.as_path.clone(),
            communities: r.communities.clone(),
            large_communities: r.large_communities.clone(),
            best: r.best,
            from: r.peer.clone().unwrap_or_default(),
        }
    }
}

/// Address family selector for route queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Afi {
    V4,
    V6,
}

impl Afi {
    pub fn of(prefix_or_addr: &str) -> Afi {
        if prefix_or_addr.contains(':') {
            Afi::V6
        } else {
            Afi::V4
        }
    }
}

impl Lab {
    /// `petrel peers -o json`, parsed.
    pub fn petrel_peers(&self, node: &str) -> anyhow::Result<Vec<PetrelPeer>> {
        let out = self.petrel(node, "peers -o json")?;
        serde_json::from_str(&out)
            .with_context(|| format!("parsing `petrel peers -o json` on {node}: {out}"))
    }

    /// `petrel routes -o json`, parsed.
    pub fn petrel_routes(&self, node: &str) -> anyhow::Result<Vec<PetrelRoute>> {
        let out = self.petrel(node, "routes -o json")?;
        serde_json::from_str(&out)
            .with_context(|| format!("parsing `petrel routes -o json` on {node}: {out}"))
    }

    /// The petrel peer with this neighbor address.
    pub fn petrel_peer(&self, node: &str, address: &str) -> anyhow::Result<PetrelPeer> {
        let peers = self.petrel_peers(node)?;
        match peers.iter().find(|p| same_addr(&p.address, address)) {
            Some(p) => Ok(p.clone()),
            None => bail!(
                "petrel on {node} has no peer {address}; peers: {:?}",
                peers
                    .iter()
                    .map(|p| format!("{}={} {}", p.name, p.address, p.state))
                    .collect::<Vec<_>>()
            ),
        }
    }

    /// Every BGP session of a node, whatever its kind.
    pub fn sessions(&self, node: &str) -> anyhow::Result<Vec<Session>> {
        match self.kind(node)? {
            Kind::Bird => Ok(parse::bird_sessions(
                &self.birdc(node, "show protocols all")?,
            )),
            Kind::Frr => parse::frr_sessions(&self.vtysh(node, "show bgp neighbors json")?),
            Kind::Gobgp => {
                // GoBGP's API has no reset reason; its log has one per "Peer Down".
                let log = self.log(node);
                let mut sessions = parse::gobgp_sessions(&self.gobgp(node, "-j neighbor")?)?;
                for s in &mut sessions {
                    s.last_error = parse::gobgp_last_down_reason(&log, &s.address);
                }
                Ok(sessions)
            }
            Kind::Petrel => Ok(self
                .petrel_peers(node)?
                .into_iter()
                .map(|p| Session {
                    name: p.name,
                    address: p.address,
                    state: p.state,
                    last_error: p.last_error,
                })
                .collect()),
            Kind::Linux => bail!("node {node} is a linux node and runs no BGP"),
        }
    }

    /// The session of `node` with neighbor `address`.
    pub fn session(&self, node: &str, address: &str) -> anyhow::Result<Session> {
        let all = self.sessions(node)?;
        all.iter()
            .find(|s| same_addr(&s.address, address))
            .cloned()
            .with_context(|| format!("{node} has no session with {address}; sessions: {all:?}"))
    }

    /// Routes in a node's table for one family (all paths, best marked).
    pub fn routes(&self, node: &str, afi: Afi) -> anyhow::Result<Vec<DaemonRoute>> {
        let fam = match afi {
            Afi::V4 => "ipv4",
            Afi::V6 => "ipv6",
        };
        match self.kind(node)? {
            Kind::Bird => {
                let table = if afi == Afi::V4 { "master4" } else { "master6" };
                Ok(parse::bird_routes(
                    &self.birdc(node, &format!("show route all table {table}"))?,
                ))
            }
            Kind::Frr => {
                let table = self.vtysh(node, &format!("show bgp {fam} unicast json"))?;
                let mut out = Vec::new();
                for prefix in parse::frr_table_prefixes(&table)? {
                    let detail =
                        self.vtysh(node, &format!("show bgp {fam} unicast {prefix} json"))?;
                    out.extend(parse::frr_prefix_routes(&detail)?);
                }
                Ok(out)
            }
            Kind::Gobgp => {
                parse::gobgp_routes(&self.gobgp(node, &format!("-j global rib -a {fam}"))?)
            }
            Kind::Petrel => Ok(self
                .petrel_routes(node)?
                .iter()
                .filter(|r| Afi::of(&r.prefix) == afi)
                .map(DaemonRoute::from)
                .collect()),
            Kind::Linux => bail!("node {node} is a linux node and has no BGP table"),
        }
    }

    /// The best route for `prefix` on `node`, or an error listing the table.
    pub fn best_route(&self, node: &str, prefix: &str) -> anyhow::Result<DaemonRoute> {
        let routes = self.routes(node, Afi::of(prefix))?;
        match routes.iter().find(|r| r.prefix == prefix && r.best) {
            Some(r) => Ok(r.clone()),
            None => bail!(
                "{node} has no best route for {prefix}; its table: [{}]",
                routes
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        }
    }

    /// Whether `node` has any route for `prefix`.
    pub fn has_route(&self, node: &str, prefix: &str) -> anyhow::Result<bool> {
        Ok(self
            .routes(node, Afi::of(prefix))?
            .iter()
            .any(|r| r.prefix == prefix))
    }
}

/// Compares two addresses textually after parsing (so `fd00::1` matches
/// `fd00:0::1`); falls back to string equality.
pub fn same_addr(a: &str, b: &str) -> bool {
    match (a.parse::<std::net::IpAddr>(), b.parse::<std::net::IpAddr>()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_are_counted_once() {
        // The demo: petrel with BIRD, FRR and GoBGP over IPv4 and IPv6.
        let line = established_summary(12);
        assert!(line.starts_with("all 6 BGP sessions Established"), "{line}");
        assert!(line.contains("12 session ends"), "{line}");
        assert!(established_summary(3).contains("3 BGP session ends"));
    }

    #[test]
    fn petrel_json_contract_parses() {
        let peers: Vec<PetrelPeer> = serde_json::from_str(
            r#"[{"name":"bird4","address":"10.0.0.2","port":179,"local_as":65001,
            "peer_as":65002,"state":"Established","peer_router_id":"10.0.0.2",
            "hold_time":90,"uptime_seconds":3,"prefixes_received":2,
            "prefixes_accepted":2,"prefixes_advertised":1,"last_error":null,
            "families":["ipv4-unicast"],"passive":false,"messages_received":5,
            "messages_sent":6,"connection_attempts":1,"established_transitions":1}]"#,
        )
        .unwrap();
        assert_eq!(peers[0].peer_as, 65002);
        assert_eq!(peers[0].last_error, None);
        let routes: Vec<PetrelRoute> = serde_json::from_str(
            r#"[{"prefix":"198.51.100.0/25","next_hop":"10.0.0.2","peer":"bird4",
            "as_path":[65002],"origin":"igp","local_pref":100,"has_med":false,"med":0,
            "communities":["65002:100"],"large_communities":["65002:1:2"],"best":true,
            "reason":null}]"#,
        )
        .unwrap();
        let r = DaemonRoute::from(&routes[0]);
        assert_eq!(r.as_path, vec![65002]);
        assert_eq!(r.large_communities, vec!["65002:1:2"]);
        assert!(r.best);
    }

    #[test]
    fn addresses_compare_semantically() {
        assert!(same_addr("fd00:0::1", "fd00::1"));
        assert!(!same_addr("10.0.0.1", "10.0.0.2"));
        assert!(same_addr("peer-a", "peer-a"));
    }
}
