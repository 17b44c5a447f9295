//! Rule order, first match wins (within a filter and across a peer's
//! filters), family selection and the no-match default. Calico renders each
//! filter as a BIRD function whose rules are `if (...) then { accept; }` /
//! `reject;` statements, called in `BGPPeer.spec.filters` order and followed
//! by `accept;` (import) or the normal export policy (export).

use super::{net, run, spec, view};
use crate::policy::{Direction, PeerType, RouteView};
use crate::wire::PathAttributes;

const ORDERED: &str = "
importV4:
  - {cidr: 10.1.0.0/16, matchOperator: In, action: Reject}
  - {cidr: 10.0.0.0/8, matchOperator: In, action: Accept}
  - {action: Reject}
";

#[test]
fn first_matching_rule_decides() {
    let s = spec(ORDERED);
    let attrs = PathAttributes::default();
    let rows = [
        ("10.1.2.0/24", false, 0),
        ("10.1.0.0/16", false, 0),
        ("10.2.0.0/16", true, 1),
        ("10.0.0.0/8", true, 1),
        ("192.168.0.0/24", false, 2),
    ];
    for (prefix, accept, index) in rows {
        let out = run(
            &[("ordered", &s)],
            Direction::Import,
            &view(prefix, &attrs),
            true,
        );
        assert_eq!(out.accept, accept, "{prefix}");
        assert_eq!(
            out.matched,
            Some(("ordered".to_string(), index)),
            "{prefix}"
        );
        assert_eq!(
            out.attrs, None,
            "{prefix}: no operations, no changed attributes"
        );
        assert_eq!(out.priority, None, "{prefix}");
    }
}

#[test]
fn reason_names_filter_list_and_rule() {
    let s = spec(
        "exportV4:\n  - {cidr: 10.0.0.0/8, matchOperator: Equal, action: Accept}\n  - {peerType: iBGP, action: Accept}\n  - {action: Reject}\n",
    );
    let attrs = PathAttributes::default();
    let out = run(
        &[("tor-out", &s)],
        Direction::Export,
        &view("10.244.0.0/26", &attrs),
        true,
    );
    assert!(!out.accept);
    assert_eq!(out.reason, "rejected by filter tor-out rule exportV4[2]");
    let out = run(
        &[("tor-out", &s)],
        Direction::Export,
        &view("10.0.0.0/8", &attrs),
        false,
    );
    assert!(out.accept);
    assert_eq!(out.reason, "accepted by filter tor-out rule exportV4[0]");
}

/// A filter whose rules do not match falls through to the next filter; the
/// first filter with a matching rule decides and later filters are not run.
#[test]
fn first_match_wins_across_filters() {
    let only_v6 = spec("importV4: [{cidr: 192.168.0.0/16, matchOperator: In, action: Reject}]");
    let reject_all = spec("importV4: [{action: Reject}]");
    let accept_pods = spec("importV4: [{cidr: 10.244.0.0/16, matchOperator: In, action: Accept}]");
    let attrs = PathAttributes::default();
    let pod = view("10.244.3.0/26", &attrs);

    let out = run(
        &[("a", &only_v6), ("b", &reject_all)],
        Direction::Import,
        &pod,
        true,
    );
    assert!(!out.accept);
    assert_eq!(out.matched, Some(("b".to_string(), 0)));

    let out = run(
        &[("pods", &accept_pods), ("b", &reject_all)],
        Direction::Import,
        &pod,
        false,
    );
    assert!(
        out.accept,
        "the accepting filter comes first and ends evaluation"
    );
    assert_eq!(out.matched, Some(("pods".to_string(), 0)));

    let out = run(
        &[("b", &reject_all), ("pods", &accept_pods)],
        Direction::Import,
        &pod,
        true,
    );
    assert!(!out.accept, "order of filters matters");
    assert_eq!(out.matched, Some(("b".to_string(), 0)));
}

/// No rule of any filter matches: `default_accept` decides.
#[test]
fn no_match_uses_default() {
    let s = spec("importV4: [{cidr: 10.0.0.0/8, matchOperator: Equal, action: Reject}]");
    let attrs = PathAttributes::default();
    let route = view("192.0.2.0/24", &attrs);
    for default in [true, false] {
        let out = run(&[("f", &s), ("g", &s)], Direction::Import, &route, default);
        assert_eq!(out.accept, default);
        assert_eq!(out.matched, None);
        assert_eq!(out.attrs, None);
        let verdict = if default { "accepted" } else { "rejected" };
        assert_eq!(
            out.reason,
            format!("{verdict} by default (no importV4 rule matched in filters f, g)")
        );
        let out = run(&[], Direction::Import, &route, default);
        assert_eq!(out.accept, default);
        assert_eq!(out.reason, format!("{verdict} by default (no filters)"));
    }
}

/// Rules of the other direction never apply.
#[test]
fn direction_selects_rule_list() {
    let s = spec("exportV4: [{action: Reject}]\nimportV4: [{action: Accept}]");
    let attrs = PathAttributes::default();
    let route = view("10.0.0.0/24", &attrs);
    assert!(run(&[("f", &s)], Direction::Import, &route, false).accept);
    assert!(!run(&[("f", &s)], Direction::Export, &route, true).accept);
    let import_only = spec("importV4: [{action: Reject}]");
    let out = run(&[("f", &import_only)], Direction::Export, &route, true);
    assert!(out.accept && out.matched.is_none());
}

/// IPv4 routes use the V4 lists and IPv6 routes the V6 lists.
#[test]
fn family_selects_rule_list() {
    let s = spec(
        "importV4: [{action: Reject}]\nimportV6: [{cidr: \"fd00:10::/32\", matchOperator: In, action: Accept}, {action: Reject}]\nexportV6: [{action: Accept}]",
    );
    let attrs = PathAttributes::default();
    let rows = [
        (
            Direction::Import,
            "10.0.0.0/24",
            false,
            Some(0),
            "importV4[0]",
        ),
        (
            Direction::Import,
            "fd00:10::/64",
            true,
            Some(0),
            "importV6[0]",
        ),
        (
            Direction::Import,
            "fd00:11::/64",
            false,
            Some(1),
            "importV6[1]",
        ),
        (
            Direction::Export,
            "fd00:11::/64",
            true,
            Some(0),
            "exportV6[0]",
        ),
        // No exportV4 rules: default.
        (Direction::Export, "10.0.0.0/24", false, None, "by default"),
    ];
    for (dir, prefix, accept, index, reason) in rows {
        let out = run(&[("f", &s)], dir, &view(prefix, &attrs), false);
        assert_eq!(out.accept, accept, "{dir:?} {prefix}");
        assert_eq!(out.matched.map(|m| m.1), index, "{dir:?} {prefix}");
        assert!(
            out.reason.contains(reason),
            "{dir:?} {prefix}: {}",
            out.reason
        );
    }
}

/// Calico example A: rules guarded by peerType are skipped on the other kind
/// of session, and evaluation falls through to the next rule.
#[test]
fn peer_type_guards_fall_through() {
    let s = spec(
        "importV4:\n  - {cidr: 10.244.0.0/16, matchOperator: In, peerType: iBGP, action: Accept}\n  - {cidr: 10.244.0.0/16, matchOperator: In, peerType: eBGP, priority: 100, action: Accept}\n  - {action: Reject}\n",
    );
    let attrs = PathAttributes::default();
    let ibgp = RouteView {
        peer_type: PeerType::Ibgp,
        learned_from_peer: true,
        ..view("10.244.5.0/24", &attrs)
    };
    let ebgp = RouteView {
        peer_type: PeerType::Ebgp,
        ..ibgp
    };
    let ebgp_prio = RouteView {
        priority: Some(100),
        ..ebgp
    };
    let r = |route: &RouteView| {
        let o = run(&[("full", &s)], Direction::Import, route, true);
        (o.accept, o.matched.map(|m| m.1))
    };
    assert_eq!(r(&ibgp), (true, Some(0)));
    assert_eq!(r(&ebgp), (false, Some(2)));
    assert_eq!(r(&ebgp_prio), (true, Some(1)));
    assert_eq!(
        r(&RouteView {
            prefix: net("10.245.0.0/24"),
            ..ibgp
        }),
        (false, Some(2))
    );
}
