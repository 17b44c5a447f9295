//! Next-hop self for the other address family (RFC 4760 §3, RFC 2545 §3):
//! a route of one family sent over a session of the other family needs a
//! next hop of the route's family. Like BIRD and FRR, petrel takes it from
//! the interface the session runs over.

use std::net::IpAddr;

/// An address of the other family on the interface that holds `local`:
/// a global IPv6 address for an IPv4 session, an IPv4 address for an IPv6
/// session. `None` when the interface has none (or `local` is on none).
pub fn other_family_on_interface(local: IpAddr) -> Option<IpAddr> {
    let addrs: Vec<(String, IpAddr)> = nix::ifaddrs::getifaddrs()
        .ok()?
        .filter_map(|ifa| {
            let sa = ifa.address?;
            let ip = if let Some(v4) = sa.as_sockaddr_in() {
                IpAddr::V4(v4.ip())
            } else {
                IpAddr::V6(sa.as_sockaddr_in6()?.ip())
            };
            Some((ifa.interface_name, ip))
        })
        .collect();
    pick(&addrs, local)
}

/// The choice itself, over (interface, address) pairs.
fn pick(addrs: &[(String, IpAddr)], local: IpAddr) -> Option<IpAddr> {
    let local = local.to_canonical();
    let iface = &addrs.iter().find(|(_, a)| *a == local)?.0;
    addrs
        .iter()
        .filter(|(i, _)| i == iface)
        .map(|(_, a)| *a)
        .find(|a| match (local, a) {
            (IpAddr::V4(_), IpAddr::V6(v6)) => {
                !v6.is_unicast_link_local() && !v6.is_loopback() && !v6.is_unspecified()
            }
            (IpAddr::V6(_), IpAddr::V4(v4)) => !v4.is_loopback() && !v4.is_unspecified(),
            _ => false,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Vec<(String, IpAddr)> {
        [
            ("eth1", "10.0.0.1"),
            ("eth1", "fe80::1"),
            ("eth1", "fd00:10::1"),
            ("eth2", "10.0.1.1"),
            ("eth2", "fd00:11::1"),
            ("lo", "127.0.0.1"),
        ]
        .iter()
        .map(|(i, a)| (i.to_string(), a.parse().unwrap()))
        .collect()
    }

    #[test]
    fn global_ipv6_of_the_session_interface() {
        let t = table();
        assert_eq!(
            pick(&t, "10.0.1.1".parse().unwrap()),
            Some("fd00:11::1".parse().unwrap())
        );
        assert_eq!(
            pick(&t, "10.0.0.1".parse().unwrap()),
            Some("fd00:10::1".parse().unwrap())
        );
        assert_eq!(
            pick(&t, "::ffff:10.0.0.1".parse().unwrap()),
            Some("fd00:10::1".parse().unwrap())
        );
    }

    #[test]
    fn ipv4_of_the_session_interface_for_ipv6_sessions() {
        assert_eq!(
            pick(&table(), "fd00:11::1".parse().unwrap()),
            Some("10.0.1.1".parse().unwrap())
        );
    }

    #[test]
    fn none_without_a_usable_address() {
        let t = table();
        assert_eq!(pick(&t, "127.0.0.1".parse().unwrap()), None);
        assert_eq!(pick(&t, "192.0.2.9".parse().unwrap()), None);
    }

    #[test]
    fn real_interfaces_can_be_listed() {
        // Loopback has 127.0.0.1 and usually ::1, which is never chosen.
        assert_eq!(
            other_family_on_interface("127.0.0.1".parse().unwrap()),
            None
        );
    }
}
