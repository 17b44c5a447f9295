//! Value types shared by the pure reconciler and the netlink driver: the desired routes the speaker
//! hands us, and the normalised form of a route as the kernel holds it.

use std::net::IpAddr;

use ipnet::IpNet;

/// The metric the kernel gives a route added without `RTA_PRIORITY`: 0 for IPv4 and
/// `IP6_RT_PRIO_USER` (1024) for IPv6. petrel installs every route at this metric.
pub const fn default_metric(prefix: &IpNet) -> u32 {
    match prefix {
        IpNet::V4(_) => 0,
        IpNet::V6(_) => 1024,
    }
}

/// Where traffic for a desired prefix goes.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum RouteTarget {
    /// Forward to one or more BGP next hops. More than one distinct next hop becomes a single ECMP
    /// route (`RTA_MULTIPATH`). Next hops that are not on a connected subnet are resolved through
    /// the kernel's own route towards them (recursive next hop, e.g. eBGP multihop).
    Via(Vec<IpAddr>),
    /// Discard traffic (our own pod address blocks, so that unallocated addresses do not loop).
    Blackhole,
}

impl RouteTarget {
    /// The target for a speaker FIB change (`bgp::speaker::FibChanges`): an empty next-hop list
    /// means the prefix was withdrawn.
    pub fn from_next_hops(next_hops: Vec<IpAddr>) -> Option<Self> {
        (!next_hops.is_empty()).then_some(Self::Via(next_hops))
    }
}

/// One desired kernel route.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct DesiredRoute {
    pub prefix: IpNet,
    pub target: RouteTarget,
}

impl From<DesiredRoute> for (IpNet, RouteTarget) {
    fn from(route: DesiredRoute) -> Self {
        (route.prefix, route.target)
    }
}

impl From<(IpNet, RouteTarget)> for DesiredRoute {
    fn from((prefix, target): (IpNet, RouteTarget)) -> Self {
        Self { prefix, target }
    }
}

/// One resolved forwarding path of a kernel route: the directly reachable gateway and the output
/// interface. `weight` is the kernel's `rtnh_hops` value (`ip route` prints `weight + 1`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KernelNextHop {
    pub gateway: IpAddr,
    pub oif: u32,
    pub weight: u8,
}

impl KernelNextHop {
    pub const fn new(gateway: IpAddr, oif: u32) -> Self {
        Self {
            gateway,
            oif,
            weight: 0,
        }
    }
}

/// A route of ours as the kernel holds it, normalised so that two descriptions of the same
/// forwarding state compare equal (next hops sorted and deduplicated).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KernelRoute {
    /// A unicast route over one path (`RTA_GATEWAY` + `RTA_OIF`) or several (`RTA_MULTIPATH`).
    Unicast(Vec<KernelNextHop>),
    /// `RTN_BLACKHOLE`.
    Blackhole,
    /// A route carrying our protocol number that petrel never installs in this form (a device
    /// route, `unreachable`, ...). It never equals a desired route, so it is replaced or deleted.
    Unsupported {
        /// The `rtm_type` of the route.
        kind: u8,
    },
}

impl KernelRoute {
    /// A unicast route with its next hops put in canonical order.
    pub fn unicast(mut hops: Vec<KernelNextHop>) -> Self {
        hops.sort_unstable();
        hops.dedup();
        Self::Unicast(hops)
    }

    /// The output interfaces this route uses.
    pub fn oifs(&self) -> impl Iterator<Item = u32> + '_ {
        let hops: &[KernelNextHop] = match self {
            Self::Unicast(hops) => hops,
            _ => &[],
        };
        hops.iter().map(|hop| hop.oif)
    }
}

/// One change the netlink task applies to the kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteOp {
    /// `RTM_NEWROUTE` with `NLM_F_CREATE | NLM_F_REPLACE`: install or overwrite our route.
    Replace { prefix: IpNet, route: KernelRoute },
    /// `RTM_DELROUTE` restricted to our protocol and table (ESRCH/ENOENT count as success).
    Delete { prefix: IpNet },
}

impl RouteOp {
    pub const fn prefix(&self) -> &IpNet {
        match self {
            Self::Replace { prefix, .. } | Self::Delete { prefix } => prefix,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unicast_is_order_and_duplicate_insensitive() {
        let a = KernelNextHop::new("10.0.0.1".parse().unwrap(), 2);
        let b = KernelNextHop::new("10.0.0.2".parse().unwrap(), 3);
        assert_eq!(
            KernelRoute::unicast(vec![a, b]),
            KernelRoute::unicast(vec![b, a, b])
        );
        assert_ne!(
            KernelRoute::unicast(vec![a]),
            KernelRoute::unicast(vec![a, b])
        );
    }

    #[test]
    fn empty_next_hop_list_is_a_withdrawal() {
        assert_eq!(RouteTarget::from_next_hops(vec![]), None);
        let nh: IpAddr = "10.0.0.1".parse().unwrap();
        assert_eq!(
            RouteTarget::from_next_hops(vec![nh]),
            Some(RouteTarget::Via(vec![nh]))
        );
    }

    #[test]
    fn default_metric_per_family() {
        assert_eq!(default_metric(&"10.0.0.0/8".parse().unwrap()), 0);
        assert_eq!(default_metric(&"2001:db8::/32".parse().unwrap()), 1024);
    }
}
