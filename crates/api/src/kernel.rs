//! Kernel routes for the management API: the routes of petrel's table read
//! over rtnetlink (RFC 3549) and the longest-prefix match the kernel uses for
//! one address (RFC 1812 §5.2.4.3), without policy routing rules.

use super::pb;
use petrel_dataplane::codec::{self, ParsedRoute};
use petrel_dataplane::netlink::RequestSocket;
use std::net::IpAddr;

/// Name of a route type (`rtm_type`) as `ip route` prints it.
pub fn route_type_name(kind: u8) -> String {
    match kind {
        1 => "unicast".into(),
        2 => "local".into(),
        3 => "broadcast".into(),
        4 => "anycast".into(),
        5 => "multicast".into(),
        6 => "blackhole".into(),
        7 => "unreachable".into(),
        8 => "prohibit".into(),
        9 => "throw".into(),
        n => format!("type {n}"),
    }
}

fn interface_name(oif: u32) -> String {
    if oif == 0 {
        return String::new();
    }
    nix::net::if_::if_indextoname(oif)
        .ok()
        .and_then(|n| n.into_string().ok())
        .unwrap_or_else(|| format!("if {oif}"))
}

/// The API form of a parsed kernel route; `interface` names output
/// interfaces.
pub fn route_view(
    r: &ParsedRoute,
    protocol: u8,
    interface: impl Fn(u32) -> String,
) -> pb::KernelRoute {
    pb::KernelRoute {
        prefix: r.prefix.to_string(),
        r#type: route_type_name(r.kind),
        next_hops: r
            .hops
            .iter()
            .map(|h| pb::KernelNextHop {
                gateway: h.gateway.map(|g| g.to_string()).unwrap_or_default(),
                interface: interface(h.oif),
                weight: u32::from(h.weight) + 1,
            })
            .collect(),
        protocol: u32::from(r.protocol),
        owned: r.protocol == protocol,
        metric: r.metric,
    }
}

/// The route of `routes` the kernel uses for `addr`: the longest matching
/// prefix, then the lowest metric (TOS-specific routes are skipped).
pub fn longest_match(routes: &[ParsedRoute], addr: IpAddr) -> Option<&ParsedRoute> {
    routes
        .iter()
        .filter(|r| r.tos == 0 && r.prefix.contains(&addr))
        .min_by_key(|r| (std::cmp::Reverse(r.prefix.prefix_len()), r.metric))
}

/// Reads every route of `table` of the families asked for, in the calling
/// thread's network namespace.
pub async fn read_table(
    table: u32,
    protocol: u8,
    v4: bool,
    v6: bool,
) -> Result<Vec<ParsedRoute>, String> {
    let mut sock = RequestSocket::open(table, protocol)
        .map_err(|e| format!("cannot open a netlink socket: {e}"))?;
    let mut routes = Vec::new();
    for (wanted, is_v4) in [(v4, true), (v6, false)] {
        if !wanted {
            continue;
        }
        sock.dump(is_v4, table, |h, payload| {
            if h.kind == codec::RTM_NEWROUTE
                && let Some(r) = codec::parse_route(payload)
                && r.table == table
            {
                routes.push(r);
            }
        })
        .await
        .map_err(|e| format!("cannot read kernel table {table}: {e}"))?;
    }
    routes.sort_by(|a, b| {
        (a.prefix.addr(), a.prefix.prefix_len(), a.metric).cmp(&(
            b.prefix.addr(),
            b.prefix.prefix_len(),
            b.metric,
        ))
    });
    Ok(routes)
}

/// `ListKernelRoutes`: petrel's routes of `table`, or the one route used
/// for `lookup`.
pub async fn list(
    table: u32,
    protocol: u8,
    family: Option<petrel_bgp::wire::Family>,
    lookup: Option<IpAddr>,
) -> Result<pb::ListKernelRoutesResponse, String> {
    use petrel_bgp::wire::Family;
    let (v4, v6) = match (lookup, family) {
        (Some(a), _) => (a.is_ipv4(), a.is_ipv6()),
        (None, Some(Family::Ipv4Unicast)) => (true, false),
        (None, Some(Family::Ipv6Unicast)) => (false, true),
        (None, None) => (true, true),
    };
    let all = read_table(table, protocol, v4, v6).await?;
    let routes = match lookup {
        Some(a) => longest_match(&all, a)
            .map(|r| route_view(r, protocol, interface_name))
            .into_iter()
            .collect(),
        None => all
            .iter()
            .filter(|r| r.protocol == protocol)
            .map(|r| route_view(r, protocol, interface_name))
            .collect(),
    };
    Ok(pb::ListKernelRoutesResponse {
        table,
        protocol: u32::from(protocol),
        routes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use petrel_dataplane::codec::ParsedHop;

    fn route(prefix: &str, metric: u32, protocol: u8, kind: u8) -> ParsedRoute {
        ParsedRoute {
            prefix: prefix.parse().unwrap(),
            table: 254,
            protocol,
            metric,
            tos: 0,
            kind,
            hops: vec![],
            exotic: false,
        }
    }

    #[test]
    fn longest_match_prefers_length_then_metric() {
        let routes = vec![
            route("0.0.0.0/0", 0, 4, 1),
            route("10.65.0.0/16", 0, 4, 1),
            route("10.65.1.0/26", 20, 2, 1),
            route("10.65.1.0/26", 10, 200, 1),
            route("10.65.2.0/26", 0, 200, 1),
        ];
        let hit = longest_match(&routes, "10.65.1.5".parse().unwrap()).unwrap();
        assert_eq!(hit.prefix.to_string(), "10.65.1.0/26");
        assert_eq!(hit.metric, 10);
        let hit = longest_match(&routes, "10.66.0.1".parse().unwrap()).unwrap();
        assert_eq!(hit.prefix.to_string(), "0.0.0.0/0");
        assert!(longest_match(&routes, "fd00::1".parse().unwrap()).is_none());
    }

    #[test]
    fn view_names_type_interface_and_ownership() {
        let mut r = route("10.65.1.0/26", 0, 200, 1);
        r.hops = vec![
            ParsedHop {
                gateway: Some("10.0.0.2".parse().unwrap()),
                oif: 3,
                weight: 0,
            },
            ParsedHop {
                gateway: Some("10.0.1.2".parse().unwrap()),
                oif: 4,
                weight: 1,
            },
        ];
        let v = route_view(&r, 200, |i| format!("eth{i}"));
        assert_eq!(v.r#type, "unicast");
        assert!(v.owned);
        assert_eq!(v.next_hops.len(), 2);
        assert_eq!(v.next_hops[0].gateway, "10.0.0.2");
        assert_eq!(v.next_hops[0].interface, "eth3");
        assert_eq!(v.next_hops[0].weight, 1);
        assert_eq!(v.next_hops[1].weight, 2);
        let v = route_view(&route("10.65.2.0/26", 0, 4, 6), 200, |_| String::new());
        assert_eq!(v.r#type, "blackhole");
        assert!(!v.owned);
        assert_eq!(route_type_name(42), "type 42");
    }
}
