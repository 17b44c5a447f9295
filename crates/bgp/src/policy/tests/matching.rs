//! One match field at a time, table-driven. Every row names the rule's match
//! fields in manifest form, the route, and whether the rule must match.

use super::{comm, matches, net, seq, set, view};
use crate::policy::{PeerType, RouteView, local_pref_for_priority, priority_from_local_pref};
use crate::wire::{AsSegment, AsSegmentKind, PathAttributes};

fn check_prefix_table(rows: &[(&str, &str, bool)]) {
    let attrs = PathAttributes::default();
    for (fields, prefix, want) in rows {
        assert_eq!(
            matches(fields, &view(prefix, &attrs)),
            *want,
            "rule {{{fields}}} on route {prefix}"
        );
    }
}

/// Calico: "Equal" requires an exact prefix match, "NotEqual" is its negation
/// (BIRD `net = cidr` / `net != cidr`).
#[test]
fn equal_and_not_equal() {
    let eq = "cidr: 10.0.0.0/8, matchOperator: Equal";
    let ne = "cidr: 10.0.0.0/8, matchOperator: NotEqual";
    let rows = [
        ("10.0.0.0/8", true),
        ("10.1.0.0/16", false),
        ("10.0.0.0/9", false),
        ("10.0.0.0/7", false),
        ("11.0.0.0/8", false),
        ("0.0.0.0/0", false),
        // Host bits in the announced prefix do not make it a different prefix.
        ("10.1.2.3/8", true),
    ];
    for (prefix, want) in rows {
        check_prefix_table(&[(eq, prefix, want), (ne, prefix, !want)]);
    }
}

/// Calico: "In" requires the route to be contained within the CIDR (or equal),
/// "NotIn" is its negation (BIRD `net ~ cidr` / `net !~ cidr`).
#[test]
fn in_and_not_in() {
    let is_in = "cidr: 10.0.0.0/8, matchOperator: In";
    let not_in = "cidr: 10.0.0.0/8, matchOperator: NotIn";
    let rows = [
        ("10.0.0.0/8", true),
        ("10.1.0.0/16", true),
        ("10.255.255.255/32", true),
        ("10.0.0.0/7", false),
        ("0.0.0.0/0", false),
        ("11.0.0.0/8", false),
        ("9.255.255.255/32", false),
    ];
    for (prefix, want) in rows {
        check_prefix_table(&[(is_in, prefix, want), (not_in, prefix, !want)]);
    }
}

/// Calico doc example: CIDR 10.0.0.0/8, In, prefixLength {min: 16, max: 24}
/// "matches any route within 10.0.0.0/8 whose prefix length is between /16
/// and /24"; defaults are the CIDR's own length and /32 (V4) or /128 (V6);
/// confd clamps min up to the CIDR length and max down to the family maximum.
#[test]
fn prefix_length_ranges() {
    let r16_24 = "cidr: 10.0.0.0/8, matchOperator: In, prefixLength: {min: 16, max: 24}";
    let min24 = "cidr: 10.0.0.0/8, matchOperator: In, prefixLength: {min: 24}";
    let max16 = "cidr: 10.0.0.0/8, matchOperator: In, prefixLength: {max: 16}";
    let min_below = "cidr: 10.0.0.0/8, matchOperator: In, prefixLength: {min: 0, max: 8}";
    let max_above = "cidr: 10.0.0.0/8, matchOperator: In, prefixLength: {min: 30, max: 200}";
    let not_in = "cidr: 10.0.0.0/8, matchOperator: NotIn, prefixLength: {min: 16, max: 24}";
    check_prefix_table(&[
        (r16_24, "10.0.0.0/8", false),
        (r16_24, "10.0.0.0/15", false),
        (r16_24, "10.1.0.0/16", true),
        (r16_24, "10.1.2.0/24", true),
        (r16_24, "10.1.2.0/25", false),
        (r16_24, "10.1.2.3/32", false),
        (r16_24, "11.1.0.0/16", false),
        (min24, "10.1.2.0/23", false),
        (min24, "10.1.2.0/24", true),
        (min24, "10.1.2.3/32", true),
        (max16, "10.0.0.0/8", true),
        (max16, "10.1.0.0/16", true),
        (max16, "10.1.0.0/17", false),
        // min 0 is raised to the CIDR's /8, so only 10.0.0.0/8 itself fits.
        (min_below, "10.0.0.0/8", true),
        (min_below, "10.0.0.0/9", false),
        (min_below, "0.0.0.0/0", false),
        // max 200 is lowered to 32.
        (max_above, "10.1.2.3/32", true),
        (max_above, "10.1.2.0/29", false),
        // NotIn negates the whole (prefix, length) match.
        (not_in, "10.1.0.0/16", false),
        (not_in, "10.0.0.0/8", true),
        (not_in, "10.1.2.3/32", true),
        (not_in, "11.0.0.0/16", true),
    ]);
}

/// Equal with prefixLength: the prefix must be exactly the CIDR and the CIDR's
/// length must be inside the (clamped) range.
#[test]
fn equal_with_prefix_length() {
    check_prefix_table(&[
        (
            "cidr: 10.0.0.0/8, matchOperator: Equal, prefixLength: {min: 8, max: 16}",
            "10.0.0.0/8",
            true,
        ),
        (
            "cidr: 10.0.0.0/8, matchOperator: Equal, prefixLength: {max: 16}",
            "10.0.0.0/8",
            true,
        ),
        (
            "cidr: 10.0.0.0/8, matchOperator: Equal, prefixLength: {min: 16}",
            "10.0.0.0/8",
            false,
        ),
        (
            "cidr: 10.0.0.0/8, matchOperator: NotEqual, prefixLength: {min: 16}",
            "10.0.0.0/8",
            true,
        ),
        (
            "cidr: 10.0.0.0/8, matchOperator: Equal, prefixLength: {min: 8}",
            "10.1.0.0/16",
            false,
        ),
    ]);
}

/// Edge lengths: /0, /32, /128 and an empty range (min > max, which
/// validation rejects: defined here as "no prefix is in the range").
#[test]
fn prefix_length_edges() {
    check_prefix_table(&[
        ("cidr: 0.0.0.0/0, matchOperator: In", "0.0.0.0/0", true),
        ("cidr: 0.0.0.0/0, matchOperator: In", "203.0.113.7/32", true),
        ("cidr: 0.0.0.0/0, matchOperator: Equal", "0.0.0.0/0", true),
        ("cidr: 0.0.0.0/0, matchOperator: Equal", "10.0.0.0/8", false),
        (
            "cidr: 0.0.0.0/0, matchOperator: In, prefixLength: {max: 0}",
            "0.0.0.0/0",
            true,
        ),
        (
            "cidr: 0.0.0.0/0, matchOperator: In, prefixLength: {max: 0}",
            "10.0.0.0/8",
            false,
        ),
        (
            "cidr: 0.0.0.0/0, matchOperator: NotIn, prefixLength: {max: 0}",
            "10.0.0.0/8",
            true,
        ),
        (
            "cidr: 10.1.2.3/32, matchOperator: Equal",
            "10.1.2.3/32",
            true,
        ),
        (
            "cidr: 10.1.2.3/32, matchOperator: Equal",
            "10.1.2.2/32",
            false,
        ),
        ("cidr: 10.1.2.3/32, matchOperator: In", "10.1.2.3/32", true),
        ("cidr: 10.1.2.3/32, matchOperator: In", "10.1.2.0/24", false),
        (
            "cidr: 10.0.0.0/8, matchOperator: In, prefixLength: {min: 32}",
            "10.9.9.9/32",
            true,
        ),
        (
            "cidr: 10.0.0.0/8, matchOperator: In, prefixLength: {min: 32}",
            "10.9.9.8/31",
            false,
        ),
        (
            "cidr: \"fd00::/8\", matchOperator: In",
            "fd00:1::1/128",
            true,
        ),
        ("cidr: \"fd00::/8\", matchOperator: In", "fe00::/8", false),
        (
            "cidr: \"fd00::/8\", matchOperator: In, prefixLength: {min: 128}",
            "fd00::1/128",
            true,
        ),
        (
            "cidr: \"fd00::/8\", matchOperator: In, prefixLength: {min: 128}",
            "fd00::/64",
            false,
        ),
        (
            "cidr: \"fd00::/8\", matchOperator: In, prefixLength: {min: 48, max: 64}",
            "fd00:1:2::/48",
            true,
        ),
        (
            "cidr: \"fd00::/8\", matchOperator: In, prefixLength: {min: 48, max: 64}",
            "fd00:1:2:3:4::/80",
            false,
        ),
        ("cidr: \"::/0\", matchOperator: Equal", "::/0", true),
        ("cidr: \"::/0\", matchOperator: In", "2001:db8::/32", true),
        (
            "cidr: 10.0.0.0/8, matchOperator: In, prefixLength: {min: 24, max: 16}",
            "10.1.0.0/16",
            false,
        ),
        (
            "cidr: 10.0.0.0/8, matchOperator: In, prefixLength: {min: 24, max: 16}",
            "10.1.2.0/24",
            false,
        ),
        (
            "cidr: 10.0.0.0/8, matchOperator: In, prefixLength: {min: 24, max: 16}",
            "10.1.0.0/20",
            false,
        ),
        (
            "cidr: 10.0.0.0/8, matchOperator: NotIn, prefixLength: {min: 24, max: 16}",
            "10.1.0.0/20",
            true,
        ),
    ]);
}

/// A cidr of the other family (rejected by validation) never contains the
/// route: In/Equal fail, NotIn/NotEqual hold.
#[test]
fn cidr_of_other_family() {
    check_prefix_table(&[
        ("cidr: \"fd00::/8\", matchOperator: In", "10.0.0.0/8", false),
        (
            "cidr: \"fd00::/8\", matchOperator: Equal",
            "10.0.0.0/8",
            false,
        ),
        (
            "cidr: \"fd00::/8\", matchOperator: NotIn",
            "10.0.0.0/8",
            true,
        ),
        ("cidr: \"::/0\", matchOperator: NotEqual", "0.0.0.0/0", true),
        ("cidr: 0.0.0.0/0, matchOperator: In", "::/0", false),
        ("cidr: 0.0.0.0/0, matchOperator: NotIn", "fd00::/8", true),
    ]);
}

/// Calico `source: RemotePeers` renders `defined(source) && source ~ [RTS_BGP]`:
/// only routes learned from BGP peers, not the node's own.
#[test]
fn source_remote_peers() {
    let attrs = PathAttributes::default();
    let own = view("10.244.1.0/26", &attrs);
    let learned = RouteView {
        learned_from_peer: true,
        ..own
    };
    assert!(!matches("source: RemotePeers", &own));
    assert!(matches("source: RemotePeers", &learned));
    // Without `source`, both match.
    assert!(matches("", &own) && matches("", &learned));
}

/// Calico `interface` renders `defined(ifname) && ifname ~ "<pattern>"`: BIRD
/// string patterns with `*` and `?`; a route without an interface never matches.
#[test]
fn interface_patterns() {
    let attrs = PathAttributes::default();
    let rows: [(&str, Option<&str>, bool); 14] = [
        ("eth0", Some("eth0"), true),
        ("eth0", Some("eth1"), false),
        ("eth0", Some("eth00"), false),
        ("eth0", None, false),
        ("eth*", Some("eth0"), true),
        ("eth*", Some("eth"), true),
        ("eth*", Some("ens3"), false),
        ("*", Some("lo"), true),
        ("*", None, false),
        ("cali*", Some("cali12ab34cd56e"), true),
        ("*0", Some("eth0"), true),
        ("*0", Some("eth01"), false),
        ("e*h*1", Some("eth0.101"), true),
        ("e?h0", Some("eth0"), true),
    ];
    for (pattern, ifname, want) in rows {
        let route = RouteView {
            interface: ifname,
            ..view("10.0.0.0/24", &attrs)
        };
        let fields = format!("interface: \"{pattern}\"");
        assert_eq!(
            matches(&fields, &route),
            want,
            "pattern {pattern:?} on {ifname:?}"
        );
    }
}

/// Calico `peerType`: iBGP rules run only when the peer is in the local AS
/// (`is_same_as`), eBGP rules only otherwise.
#[test]
fn peer_type() {
    let attrs = PathAttributes::default();
    let ebgp = view("10.0.0.0/24", &attrs);
    let ibgp = RouteView {
        peer_type: PeerType::Ibgp,
        ..ebgp
    };
    assert!(matches("peerType: eBGP", &ebgp));
    assert!(!matches("peerType: eBGP", &ibgp));
    assert!(matches("peerType: iBGP", &ibgp));
    assert!(!matches("peerType: iBGP", &ebgp));
}

/// Calico `communities.values`: `aa:nn` checks `bgp_community`, `aa:nn:mm`
/// checks `bgp_large_community`.
#[test]
fn communities() {
    let none = PathAttributes::default();
    let std = PathAttributes {
        communities: vec![comm(65000, 1), comm(65000, 100)],
        ..Default::default()
    };
    let large = PathAttributes {
        large_communities: vec![[65000, 100, 999]],
        ..Default::default()
    };
    let both = PathAttributes {
        communities: vec![comm(65000, 100)],
        large_communities: vec![[65000, 100, 999]],
        ..Default::default()
    };
    let rows: [(&str, &PathAttributes, bool); 9] = [
        ("65000:100", &std, true),
        ("65000:100", &none, false),
        ("65000:101", &std, false),
        ("65000:100", &large, false),
        ("65000:100:999", &large, true),
        ("65000:100:999", &std, false),
        ("65000:100:998", &large, false),
        ("65000:100:999", &both, true),
        ("65000:100", &both, true),
    ];
    for (value, attrs, want) in rows {
        let fields = format!("communities: {{values: [\"{value}\"]}}");
        assert_eq!(
            matches(&fields, &view("10.0.0.0/24", attrs)),
            want,
            "community {value} on {attrs:?}"
        );
    }
    // Several values (petrel accepts them; validation allows only one): all required.
    let two = "communities: {values: [\"65000:100\", \"65000:100:999\"]}";
    assert!(matches(two, &view("10.0.0.0/24", &both)));
    assert!(!matches(two, &view("10.0.0.0/24", &std)));
}

/// Calico `asPathPrefix` renders `bgp_path ~ [= a b * =]`: the path begins
/// with the listed ASNs. An AS_SET is one position; confederation segments
/// are not part of the path.
#[test]
fn as_path_prefix() {
    let p = |segs: Vec<AsSegment>| PathAttributes {
        as_path: segs,
        ..Default::default()
    };
    let confed = AsSegment {
        kind: AsSegmentKind::ConfedSequence,
        asns: vec![65100],
    };
    let rows: Vec<(&str, PathAttributes, bool)> = vec![
        ("[65000]", p(vec![seq(&[65000, 65001])]), true),
        ("[65000, 65001]", p(vec![seq(&[65000, 65001, 65002])]), true),
        (
            "[65000, 65001]",
            p(vec![seq(&[65000]), seq(&[65001])]),
            true,
        ),
        ("[65001]", p(vec![seq(&[65000, 65001])]), false),
        ("[65001, 65000]", p(vec![seq(&[65000, 65001])]), false),
        ("[65000, 65001]", p(vec![seq(&[65000])]), false),
        ("[65000]", p(vec![]), false),
        ("[65000]", p(vec![set(&[65002, 65000])]), true),
        ("[65000, 65002]", p(vec![set(&[65002, 65000])]), false),
        (
            "[65000, 65003]",
            p(vec![set(&[65002, 65000]), seq(&[65003])]),
            true,
        ),
        ("[65000]", p(vec![confed.clone(), seq(&[65000])]), true),
        ("[65100]", p(vec![confed, seq(&[65000])]), false),
        ("[4200000000]", p(vec![seq(&[4_200_000_000])]), true),
    ];
    for (prefix, attrs, want) in rows {
        let fields = format!("asPathPrefix: {prefix}");
        assert_eq!(
            matches(&fields, &view("10.0.0.0/24", &attrs)),
            want,
            "asPathPrefix {prefix} on {:?}",
            attrs.as_path
        );
    }
}

/// Calico `priority`: the route's priority (kernel metric) equals the value.
/// Calico carries it as LOCAL_PREF = 2^31 - 1 - priority.
#[test]
fn priority() {
    let attrs = PathAttributes::default();
    let base = view("10.0.0.0/24", &attrs);
    for (route_prio, want) in [(Some(512), true), (Some(1024), false), (None, false)] {
        let route = RouteView {
            priority: route_prio,
            ..base
        };
        assert_eq!(
            matches("priority: 512", &route),
            want,
            "priority 512 on {route_prio:?}"
        );
    }
    assert_eq!(local_pref_for_priority(512), 2_147_483_135);
    assert_eq!(priority_from_local_pref(2_147_483_135), Some(512));
    assert_eq!(priority_from_local_pref(100), Some(2_147_483_547));
    assert_eq!(priority_from_local_pref(u32::MAX), None);
    assert_eq!(local_pref_for_priority(u32::MAX), 0);
}

/// All match fields set on a rule are AND-ed; a rule without any matches all.
#[test]
fn fields_are_conjunctive() {
    let attrs = PathAttributes {
        communities: vec![comm(65000, 42)],
        as_path: vec![seq(&[65000])],
        ..Default::default()
    };
    let good = RouteView {
        learned_from_peer: true,
        interface: Some("eth1"),
        priority: Some(100),
        ..view("192.168.7.0/24", &attrs)
    };
    let all = "cidr: 192.168.0.0/16, matchOperator: In, source: RemotePeers, interface: eth1, peerType: eBGP, \
               communities: {values: [\"65000:42\"]}, asPathPrefix: [65000], priority: 100";
    assert!(matches(all, &good));
    assert!(matches("", &good));
    let other_attrs = PathAttributes {
        as_path: vec![seq(&[65000])],
        ..Default::default()
    };
    let spoiled = [
        RouteView {
            prefix: net("192.169.7.0/24"),
            ..good
        },
        RouteView {
            learned_from_peer: false,
            ..good
        },
        RouteView {
            interface: Some("eth2"),
            ..good
        },
        RouteView {
            peer_type: PeerType::Ibgp,
            ..good
        },
        RouteView {
            attrs: &other_attrs,
            ..good
        },
        RouteView {
            priority: Some(101),
            ..good
        },
    ];
    for (i, route) in spoiled.iter().enumerate() {
        assert!(
            !matches(all, route),
            "spoiled field #{i} must stop the match"
        );
    }
    let no_path = PathAttributes {
        communities: vec![comm(65000, 42)],
        ..Default::default()
    };
    assert!(!matches(
        all,
        &RouteView {
            attrs: &no_path,
            ..good
        }
    ));
}
