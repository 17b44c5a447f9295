//! Operations of accepting rules (Calico `filterOperationStatements`):
//! `addCommunity` → `bgp_community.add` / `bgp_large_community.add` (set
//! semantics), `prependASPath` → `bgp_path.prepend` per ASN in reverse so the
//! path starts with `prefix` in order, `setPriority` → LOCAL_PREF
//! 2^31 - 1 - value (the kernel metric of the route).

use super::{LOCAL_AS, comm, run, seq, set, spec, view};
use crate::policy::{Direction, PeerType, PolicyOutcome, RouteView, local_pref_for_priority};
use crate::wire::{AsSegment, AsSegmentKind, PathAttributes};

/// Run one accepting rule with `ops` (YAML flow sequence) on `route`.
fn with_ops(ops: &str, dir: Direction, route: &RouteView) -> PolicyOutcome {
    let list = if dir == Direction::Import {
        "importV4"
    } else {
        "exportV4"
    };
    let s = spec(&format!("{list}: [{{action: Accept, operations: {ops}}}]"));
    let out = run(&[("ops", &s)], dir, route, false);
    assert!(
        out.accept && out.matched.is_some(),
        "the rule must match: {out:?}"
    );
    out
}

fn path(out: &PolicyOutcome) -> Vec<AsSegment> {
    out.attrs
        .as_ref()
        .expect("attributes changed")
        .as_path
        .clone()
}

#[test]
fn add_community_standard_and_large_without_duplicates() {
    let attrs = PathAttributes {
        communities: vec![comm(65000, 1)],
        ..Default::default()
    };
    let route = view("10.0.0.0/24", &attrs);
    let out = with_ops(
        "[{addCommunity: {value: \"65000:200\"}}]",
        Direction::Import,
        &route,
    );
    let a = out.attrs.expect("changed");
    assert_eq!(a.communities, vec![comm(65000, 1), comm(65000, 200)]);
    assert!(a.large_communities.is_empty());

    let out = with_ops(
        "[{addCommunity: {value: \"65000:300:400\"}}]",
        Direction::Export,
        &route,
    );
    let a = out.attrs.expect("changed");
    assert_eq!(a.large_communities, vec![[65000, 300, 400]]);
    assert_eq!(a.communities, vec![comm(65000, 1)]);

    // Already present: nothing changes, so no new attributes.
    let out = with_ops(
        "[{addCommunity: {value: \"65000:1\"}}]",
        Direction::Import,
        &route,
    );
    assert_eq!(out.attrs, None);
    // Added twice in one rule: once.
    let out = with_ops(
        "[{addCommunity: {value: \"65000:7\"}}, {addCommunity: {value: \"65000:7\"}}]",
        Direction::Import,
        &route,
    );
    assert_eq!(
        out.attrs.expect("changed").communities,
        vec![comm(65000, 1), comm(65000, 7)]
    );
}

/// Calico: "[65000, 65001] produces the path 65000 65001 <original>".
#[test]
fn prepend_on_import() {
    let attrs = PathAttributes {
        as_path: vec![seq(&[65010, 65020])],
        ..Default::default()
    };
    let route = RouteView {
        learned_from_peer: true,
        ..view("10.0.0.0/24", &attrs)
    };
    let out = with_ops(
        "[{prependASPath: {prefix: [65001, 65002]}}]",
        Direction::Import,
        &route,
    );
    assert_eq!(path(&out), vec![seq(&[65001, 65002, 65010, 65020])]);

    // Two operations run in order: the later one ends up in front.
    let out = with_ops(
        "[{prependASPath: {prefix: [65001]}}, {prependASPath: {prefix: [65002]}}]",
        Direction::Import,
        &route,
    );
    assert_eq!(path(&out), vec![seq(&[65002, 65001, 65010, 65020])]);

    // Empty path (a route of a peer in the local AS).
    let empty = PathAttributes::default();
    let out = with_ops(
        "[{prependASPath: {prefix: [65001, 65001]}}]",
        Direction::Import,
        &view("10.0.0.0/24", &empty),
    );
    assert_eq!(path(&out), vec![seq(&[65001, 65001])]);
}

/// A leading AS_SET or confederation segment stays where it must be.
#[test]
fn prepend_keeps_segment_rules() {
    let attrs = PathAttributes {
        as_path: vec![set(&[1, 2])],
        ..Default::default()
    };
    let out = with_ops(
        "[{prependASPath: {prefix: [65001]}}]",
        Direction::Import,
        &view("10.0.0.0/24", &attrs),
    );
    assert_eq!(path(&out), vec![seq(&[65001]), set(&[1, 2])]);

    let confed = AsSegment {
        kind: AsSegmentKind::ConfedSequence,
        asns: vec![65100],
    };
    let attrs = PathAttributes {
        as_path: vec![confed.clone(), seq(&[65010])],
        ..Default::default()
    };
    let out = with_ops(
        "[{prependASPath: {prefix: [65001]}}]",
        Direction::Import,
        &view("10.0.0.0/24", &attrs),
    );
    assert_eq!(path(&out), vec![confed, seq(&[65001, 65010])]);

    // A segment holds at most 255 ASNs.
    let long: Vec<u32> = (1..=250).collect();
    let attrs = PathAttributes {
        as_path: vec![seq(&long)],
        ..Default::default()
    };
    let out = with_ops(
        "[{prependASPath: {prefix: [65001, 65002, 65003, 65004, 65005, 65006, 65007, 65008, 65009, 65010]}}]",
        Direction::Import,
        &view("10.0.0.0/24", &attrs),
    );
    let p = path(&out);
    assert_eq!(
        p.iter().map(|s| s.asns.len()).collect::<Vec<_>>(),
        vec![255, 5]
    );
    let flat: Vec<u32> = p.iter().flat_map(|s| s.asns.clone()).collect();
    let want: Vec<u32> = (65001..=65010).chain(1..=250).collect();
    assert_eq!(flat, want);
}

/// On export to an eBGP peer the attributes already start with the local AS;
/// BIRD runs Calico's export filter before adding it, so the sent path is
/// `local_as <prefix> <original>` and asPathPrefix looks behind the local AS.
#[test]
fn prepend_and_match_on_export_use_local_as() {
    let attrs = PathAttributes {
        as_path: vec![seq(&[LOCAL_AS, 65010])],
        ..Default::default()
    };
    let route = RouteView {
        learned_from_peer: true,
        ..view("10.0.0.0/24", &attrs)
    };
    let out = with_ops(
        "[{prependASPath: {prefix: [64999, 64998]}}]",
        Direction::Export,
        &route,
    );
    assert_eq!(path(&out), vec![seq(&[LOCAL_AS, 64999, 64998, 65010])]);

    // Locally originated route to eBGP: path is just the local AS.
    let own = PathAttributes {
        as_path: vec![seq(&[LOCAL_AS])],
        ..Default::default()
    };
    let out = with_ops(
        "[{prependASPath: {prefix: [64999]}}]",
        Direction::Export,
        &view("10.244.0.0/26", &own),
    );
    assert_eq!(path(&out), vec![seq(&[LOCAL_AS, 64999])]);

    // iBGP export: no local AS is added, so the prefix goes in front.
    let ibgp = RouteView {
        peer_type: PeerType::Ibgp,
        ..route
    };
    let out = with_ops(
        "[{prependASPath: {prefix: [64999]}}]",
        Direction::Export,
        &ibgp,
    );
    assert_eq!(path(&out), vec![seq(&[64999, LOCAL_AS, 65010])]);

    // Import from eBGP: the path is the peer's, prepend in front.
    let out = with_ops(
        "[{prependASPath: {prefix: [64999]}}]",
        Direction::Import,
        &route,
    );
    assert_eq!(path(&out), vec![seq(&[64999, LOCAL_AS, 65010])]);

    // asPathPrefix skips the local AS only on eBGP export.
    let s = spec(
        "exportV4: [{asPathPrefix: [65010], action: Reject}]\nimportV4: [{asPathPrefix: [65010], action: Reject}]",
    );
    assert!(!run(&[("f", &s)], Direction::Export, &route, true).accept);
    assert!(run(&[("f", &s)], Direction::Export, &ibgp, true).accept);
    assert!(run(&[("f", &s)], Direction::Import, &route, true).accept);
}

#[test]
fn set_priority() {
    let attrs = PathAttributes {
        local_pref: Some(100),
        ..Default::default()
    };
    let route = RouteView {
        learned_from_peer: true,
        ..view("10.0.0.0/24", &attrs)
    };
    let op = "[{setPriority: {value: 256}}]";

    let out = with_ops(op, Direction::Import, &route);
    assert_eq!(out.priority, Some(256));
    assert_eq!(
        out.attrs.expect("changed").local_pref,
        Some(local_pref_for_priority(256))
    );

    let ibgp = RouteView {
        peer_type: PeerType::Ibgp,
        ..route
    };
    let out = with_ops(op, Direction::Export, &ibgp);
    assert_eq!(out.priority, Some(256));
    assert_eq!(out.attrs.expect("changed").local_pref, Some(2_147_483_391));

    // Never LOCAL_PREF toward an eBGP peer (RFC 4271 §5.1.5).
    let no_lp = PathAttributes::default();
    let out = with_ops(op, Direction::Export, &view("10.0.0.0/24", &no_lp));
    assert_eq!(out.priority, Some(256));
    assert_eq!(out.attrs, None);

    // The last setPriority wins.
    let out = with_ops(
        "[{setPriority: {value: 256}}, {setPriority: {value: 10}}]",
        Direction::Import,
        &route,
    );
    assert_eq!(out.priority, Some(10));
}

/// Calico example A rule 1: setPriority, addCommunity and prependASPath
/// together, applied only when the rule matches.
#[test]
fn operations_combined_and_only_on_match() {
    let attrs = PathAttributes {
        as_path: vec![seq(&[65000])],
        communities: vec![comm(65000, 100)],
        ..Default::default()
    };
    let s = spec(
        "importV4:\n  - cidr: 10.244.0.0/16\n    matchOperator: In\n    prefixLength: {min: 24, max: 28}\n    communities: {values: [\"65000:100\"]}\n    asPathPrefix: [65000]\n    action: Accept\n    operations:\n      - setPriority: {value: 256}\n      - addCommunity: {value: \"65000:200\"}\n      - prependASPath: {prefix: [65001, 65002]}\n",
    );
    let route = RouteView {
        learned_from_peer: true,
        peer_type: PeerType::Ibgp,
        ..view("10.244.5.0/24", &attrs)
    };
    let out = run(&[("full-example", &s)], Direction::Import, &route, true);
    assert!(out.accept);
    assert_eq!(out.priority, Some(256));
    let a = out.attrs.expect("changed");
    assert_eq!(a.as_path, vec![seq(&[65001, 65002, 65000])]);
    assert_eq!(a.communities, vec![comm(65000, 100), comm(65000, 200)]);
    assert_eq!(a.local_pref, Some(local_pref_for_priority(256)));

    // /29 is outside {24,28}: no rule matches, default accept, nothing changed.
    let out = run(
        &[("full-example", &s)],
        Direction::Import,
        &RouteView {
            prefix: "10.244.5.0/29".parse().unwrap(),
            ..route
        },
        true,
    );
    assert!(out.accept && out.matched.is_none());
    assert_eq!((out.attrs, out.priority), (None, None));
}
