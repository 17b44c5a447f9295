//! Next-hop resolution over a mirror of the kernel routes petrel does not own.
//!
//! BGP next hops (RFC 4271 §5.1.3) need not be on a connected subnet: an eBGP multihop peer or an
//! iBGP peer's loopback is reached through some other route. Like the kernel's own gateway check
//! (`fib_check_nh`), resolution is a longest-prefix match in our table, falling back to `main`,
//! over the routes of *other* protocols only: resolving a BGP route through another BGP route
//! could loop. A connected match (no gateway) keeps the next hop as gateway; a match through a
//! gateway installs that gateway instead (one level of recursion, as the kernel requires the
//! installed gateway to be directly reachable). Everything here is pure and unit-tested.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

use super::model::{KernelNextHop, default_metric};

/// The `main` routing table.
pub const RT_TABLE_MAIN: u32 = 254;
const RTN_UNICAST: u8 = 1;

/// One hop of a route of another protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ForeignHop {
    pub gateway: Option<IpAddr>,
    pub oif: u32,
}

/// A kernel route of another protocol, as far as resolution and conflict detection need it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForeignRoute {
    pub protocol: u8,
    pub metric: u32,
    pub tos: u8,
    /// `rtm_type`: unicast (1), blackhole (6), unreachable (7), prohibit (8), throw (9), ...
    pub kind: u8,
    pub hops: Vec<ForeignHop>,
}

impl ForeignRoute {
    /// Whether `other` is the same kernel route (the kernel's identity: metric and TOS, plus the
    /// device for IPv6 device routes, which may exist once per interface).
    fn same_identity(&self, other: &ForeignRoute) -> bool {
        self.metric == other.metric
            && self.tos == other.tos
            && self.first_device_route_oif() == other.first_device_route_oif()
    }

    fn first_device_route_oif(&self) -> Option<u32> {
        match self.hops.as_slice() {
            [hop] if hop.gateway.is_none() => Some(hop.oif),
            _ => None,
        }
    }
}

/// Why a next hop cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UnresolvedReason {
    /// No route of another protocol covers the next hop.
    NoRoute,
    /// Only the default route covers it and `resolve_via_default` is off.
    OnlyDefaultRoute,
    /// The covering route is a blackhole/unreachable/prohibit/throw route.
    Rejected { kind: u8 },
    /// An IPv4 prefix with an IPv6 next hop or the reverse (RFC 8950 next hops are not supported).
    FamilyMismatch,
    /// An IPv6 link-local next hop that is on-link on several interfaces.
    AmbiguousLinkLocal,
}

impl fmt::Display for UnresolvedReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoRoute => f.write_str("no route to the next hop"),
            Self::OnlyDefaultRoute => f.write_str(
                "only the default route covers the next hop (resolve_via_default is off)",
            ),
            Self::Rejected { kind } => {
                write!(
                    f,
                    "the route to the next hop is not unicast (rtm_type {kind})"
                )
            }
            Self::FamilyMismatch => f.write_str("next hop address family differs from the prefix"),
            Self::AmbiguousLinkLocal => {
                f.write_str("link-local next hop is on-link on several interfaces")
            }
        }
    }
}

/// The outcome of resolving one next hop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// The paths to install for this next hop (never empty, sorted).
    Paths(Vec<KernelNextHop>),
    Unresolved(UnresolvedReason),
}

/// A mirror of the kernel routes of other protocols in our table and in `main`.
#[derive(Clone, Debug, Default)]
pub struct ForeignRoutes {
    table: u32,
    routes: BTreeMap<(u32, IpNet), Vec<ForeignRoute>>,
    /// Prefixes of our table where a foreign route sits at the metric we would install at: a
    /// replace there would overwrite it, so those prefixes are conflicts.
    occupied: BTreeSet<IpNet>,
}

impl ForeignRoutes {
    /// An empty mirror for routes petrel installs in `table`.
    pub fn new(table: u32) -> Self {
        Self {
            table,
            ..Self::default()
        }
    }

    /// Whether routes of `table` are mirrored.
    pub fn tracks(&self, table: u32) -> bool {
        table == self.table || table == RT_TABLE_MAIN
    }

    /// Prefixes of our table occupied by a foreign route at our metric.
    pub fn occupied(&self) -> &BTreeSet<IpNet> {
        &self.occupied
    }

    pub fn len(&self) -> usize {
        self.routes.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// Records a route added (`replace`: the notification carried `NLM_F_REPLACE`, so it took the
    /// place of the route with the same metric and TOS). Returns whether anything changed.
    pub fn insert(
        &mut self,
        table: u32,
        prefix: IpNet,
        route: ForeignRoute,
        replace: bool,
    ) -> bool {
        if !self.tracks(table) {
            return false;
        }
        let entry = self.routes.entry((table, prefix)).or_default();
        let before = entry.clone();
        if replace {
            entry.retain(|r| r.metric != route.metric || r.tos != route.tos);
        } else {
            entry.retain(|r| !r.same_identity(&route));
        }
        entry.push(route);
        entry.sort_by_key(|r| (r.metric, r.tos));
        let changed = *entry != before;
        self.refresh_occupied(table, prefix);
        changed
    }

    /// Records a route deleted. Returns whether anything changed.
    pub fn remove(&mut self, table: u32, prefix: IpNet, route: &ForeignRoute) -> bool {
        let Some(entry) = self.routes.get_mut(&(table, prefix)) else {
            return false;
        };
        let before = entry.len();
        entry.retain(|r| !(r.same_identity(route) && r.protocol == route.protocol));
        let changed = entry.len() != before;
        if entry.is_empty() {
            self.routes.remove(&(table, prefix));
        }
        self.refresh_occupied(table, prefix);
        changed
    }

    /// Forgets every route through interface `oif` (the kernel flushes IPv4 routes of a device
    /// that goes down without notifying). Returns whether anything changed.
    pub fn purge_oif(&mut self, oif: u32) -> bool {
        let mut touched = Vec::new();
        for (key, entry) in &mut self.routes {
            let before = entry.len();
            entry.retain(|r| r.hops.is_empty() || r.hops.iter().any(|h| h.oif != oif));
            if entry.len() != before {
                touched.push(*key);
            }
        }
        for key in &touched {
            if self.routes.get(key).is_some_and(Vec::is_empty) {
                self.routes.remove(key);
            }
            self.refresh_occupied(key.0, key.1);
        }
        !touched.is_empty()
    }

    fn refresh_occupied(&mut self, table: u32, prefix: IpNet) {
        if table != self.table {
            return;
        }
        let metric = default_metric(&prefix);
        let occupied = self
            .routes
            .get(&(table, prefix))
            .is_some_and(|routes| routes.iter().any(|r| r.metric == metric && r.tos == 0));
        if occupied {
            self.occupied.insert(prefix);
        } else {
            self.occupied.remove(&prefix);
        }
    }

    /// Longest-prefix match of `addr` in `table`: the routes of the most specific covering prefix.
    fn lookup(&self, table: u32, addr: IpAddr) -> Option<(IpNet, &[ForeignRoute])> {
        let max = match addr {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        (0..=max).rev().find_map(|len| {
            let net = IpNet::new(addr, len).ok()?.trunc();
            self.routes
                .get(&(table, net))
                .map(|routes| (net, routes.as_slice()))
        })
    }

    /// Resolves one BGP next hop for a prefix of family `v4_prefix`.
    pub fn resolve(&self, next_hop: IpAddr, v4_prefix: bool, via_default: bool) -> Resolution {
        if next_hop.is_ipv4() != v4_prefix {
            return Resolution::Unresolved(UnresolvedReason::FamilyMismatch);
        }
        let found = self.lookup(self.table, next_hop).or_else(|| {
            self.lookup(RT_TABLE_MAIN, next_hop)
                .filter(|_| self.table != RT_TABLE_MAIN)
        });
        let Some((net, routes)) = found else {
            return Resolution::Unresolved(UnresolvedReason::NoRoute);
        };
        if net.prefix_len() == 0 && !via_default {
            return Resolution::Unresolved(UnresolvedReason::OnlyDefaultRoute);
        }
        // The kernel uses the lowest metric; IPv6 device routes at that metric may exist once per
        // interface (fe80::/64 on every link).
        let best = routes.iter().map(|r| r.metric).min().unwrap_or_default();
        let best: Vec<&ForeignRoute> = routes.iter().filter(|r| r.metric == best).collect();
        if let Some(rejecting) = best.iter().find(|r| r.kind != RTN_UNICAST) {
            return Resolution::Unresolved(UnresolvedReason::Rejected {
                kind: rejecting.kind,
            });
        }
        let device_routes = best
            .iter()
            .filter(|r| r.hops.iter().all(|h| h.gateway.is_none()))
            .count();
        let link_local = matches!(next_hop, IpAddr::V6(v6) if v6.is_unicast_link_local());
        let chosen: &[&ForeignRoute] = if device_routes > 1 {
            if link_local {
                return Resolution::Unresolved(UnresolvedReason::AmbiguousLinkLocal);
            }
            &best[..1]
        } else {
            &best
        };
        let mut paths: Vec<KernelNextHop> = chosen
            .iter()
            .flat_map(|r| r.hops.iter())
            .map(|hop| KernelNextHop::new(hop.gateway.unwrap_or(next_hop), hop.oif))
            .collect();
        paths.sort_unstable();
        paths.dedup();
        if paths.is_empty() {
            Resolution::Unresolved(UnresolvedReason::NoRoute)
        } else {
            Resolution::Paths(paths)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }
    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }
    fn device(oif: u32, metric: u32) -> ForeignRoute {
        ForeignRoute {
            protocol: 2,
            metric,
            tos: 0,
            kind: RTN_UNICAST,
            hops: vec![ForeignHop { gateway: None, oif }],
        }
    }
    fn via(gw: &str, oif: u32, metric: u32) -> ForeignRoute {
        ForeignRoute {
            protocol: 4,
            metric,
            tos: 0,
            kind: RTN_UNICAST,
            hops: vec![ForeignHop {
                gateway: Some(ip(gw)),
                oif,
            }],
        }
    }
    fn paths(list: &[(&str, u32)]) -> Resolution {
        Resolution::Paths(
            list.iter()
                .map(|(g, o)| KernelNextHop::new(ip(g), *o))
                .collect(),
        )
    }

    #[test]
    fn connected_next_hop_is_its_own_gateway() {
        let mut m = ForeignRoutes::new(RT_TABLE_MAIN);
        m.insert(254, net("10.0.0.0/24"), device(3, 0), false);
        assert_eq!(
            m.resolve(ip("10.0.0.7"), true, true),
            paths(&[("10.0.0.7", 3)])
        );
    }

    #[test]
    fn recursive_next_hop_uses_the_covering_gateway_and_most_specific_route() {
        let mut m = ForeignRoutes::new(RT_TABLE_MAIN);
        m.insert(254, net("10.0.0.0/24"), device(3, 0), false);
        m.insert(254, net("192.168.0.0/16"), via("10.0.0.1", 3, 0), false);
        m.insert(254, net("192.168.7.0/24"), via("10.0.0.2", 3, 0), false);
        assert_eq!(
            m.resolve(ip("192.168.7.9"), true, true),
            paths(&[("10.0.0.2", 3)])
        );
        assert_eq!(
            m.resolve(ip("192.168.8.9"), true, true),
            paths(&[("10.0.0.1", 3)])
        );
        assert!(m.remove(254, net("192.168.7.0/24"), &via("10.0.0.2", 3, 0)));
        assert_eq!(
            m.resolve(ip("192.168.7.9"), true, true),
            paths(&[("10.0.0.1", 3)])
        );
    }

    #[test]
    fn multipath_covering_route_yields_every_path() {
        let mut m = ForeignRoutes::new(RT_TABLE_MAIN);
        let mut r = via("10.0.0.1", 3, 0);
        r.hops.push(ForeignHop {
            gateway: Some(ip("10.0.1.1")),
            oif: 4,
        });
        m.insert(254, net("172.16.0.0/12"), r, false);
        assert_eq!(
            m.resolve(ip("172.16.0.1"), true, true),
            paths(&[("10.0.0.1", 3), ("10.0.1.1", 4)])
        );
    }

    #[test]
    fn unresolvable_cases() {
        let mut m = ForeignRoutes::new(RT_TABLE_MAIN);
        assert_eq!(
            m.resolve(ip("10.9.9.9"), true, true),
            Resolution::Unresolved(UnresolvedReason::NoRoute)
        );
        assert_eq!(
            m.resolve(ip("2001:db8::1"), true, true),
            Resolution::Unresolved(UnresolvedReason::FamilyMismatch)
        );
        m.insert(254, net("0.0.0.0/0"), via("10.0.0.1", 3, 0), false);
        assert_eq!(
            m.resolve(ip("10.9.9.9"), true, false),
            Resolution::Unresolved(UnresolvedReason::OnlyDefaultRoute)
        );
        assert_eq!(
            m.resolve(ip("10.9.9.9"), true, true),
            paths(&[("10.0.0.1", 3)])
        );
        let mut hole = device(0, 0);
        hole.kind = 6;
        hole.hops.clear();
        m.insert(254, net("10.9.0.0/16"), hole, false);
        assert_eq!(
            m.resolve(ip("10.9.9.9"), true, true),
            Resolution::Unresolved(UnresolvedReason::Rejected { kind: 6 })
        );
    }

    #[test]
    fn lowest_metric_wins_and_link_local_ambiguity_is_reported() {
        let mut m = ForeignRoutes::new(RT_TABLE_MAIN);
        m.insert(254, net("10.0.0.0/24"), device(3, 100), false);
        m.insert(254, net("10.0.0.0/24"), device(4, 50), false);
        assert_eq!(
            m.resolve(ip("10.0.0.5"), true, true),
            paths(&[("10.0.0.5", 4)])
        );
        m.insert(254, net("fe80::/64"), device(3, 256), false);
        assert_eq!(
            m.resolve(ip("fe80::1"), false, true),
            paths(&[("fe80::1", 3)])
        );
        m.insert(254, net("fe80::/64"), device(4, 256), false);
        assert_eq!(
            m.resolve(ip("fe80::1"), false, true),
            Resolution::Unresolved(UnresolvedReason::AmbiguousLinkLocal)
        );
    }

    #[test]
    fn own_table_is_searched_before_main() {
        let mut m = ForeignRoutes::new(100);
        m.insert(254, net("10.0.0.0/24"), device(3, 0), false);
        m.insert(100, net("10.0.0.0/16"), device(5, 0), false);
        assert_eq!(
            m.resolve(ip("10.0.0.5"), true, true),
            paths(&[("10.0.0.5", 5)])
        );
        m.insert(254, net("10.1.0.0/24"), device(3, 0), false);
        assert_eq!(
            m.resolve(ip("10.1.0.5"), true, true),
            paths(&[("10.1.0.5", 3)])
        );
        assert!(
            !m.insert(7, net("10.2.0.0/16"), device(5, 0), false),
            "table 7 untracked"
        );
    }

    #[test]
    fn occupied_tracks_foreign_routes_at_our_metric_in_our_table() {
        let mut m = ForeignRoutes::new(RT_TABLE_MAIN);
        m.insert(254, net("10.1.0.0/24"), via("10.0.0.1", 3, 10), false);
        assert!(
            m.occupied().is_empty(),
            "metric 10 does not collide with ours (0)"
        );
        m.insert(254, net("10.1.0.0/24"), via("10.0.0.1", 3, 0), false);
        assert!(m.occupied().contains(&net("10.1.0.0/24")));
        m.remove(254, net("10.1.0.0/24"), &via("10.0.0.1", 3, 0));
        assert!(m.occupied().is_empty());
        m.insert(254, net("2001:db8::/64"), via("fe80::1", 3, 1024), false);
        assert!(m.occupied().contains(&net("2001:db8::/64")));
        assert!(m.purge_oif(3));
        assert!(m.occupied().is_empty());
        assert!(m.resolve(ip("10.1.0.1"), true, true) != paths(&[("10.0.0.1", 3)]));
    }

    #[test]
    fn replace_notification_supersedes_same_metric_route() {
        let mut m = ForeignRoutes::new(RT_TABLE_MAIN);
        m.insert(254, net("10.5.0.0/16"), via("10.0.0.1", 3, 0), false);
        assert!(m.insert(254, net("10.5.0.0/16"), via("10.0.0.2", 3, 0), true));
        assert_eq!(m.len(), 1);
        assert_eq!(
            m.resolve(ip("10.5.1.1"), true, true),
            paths(&[("10.0.0.2", 3)])
        );
        assert!(!m.insert(254, net("10.5.0.0/16"), via("10.0.0.2", 3, 0), true));
    }
}
