use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use ipnet::IpNet;
use proptest::prelude::*;

use super::*;
use crate::resolve::UnresolvedReason;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}
fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}
fn hop(gw: &str, oif: u32) -> KernelNextHop {
    KernelNextHop::new(ip(gw), oif)
}

/// Next hops: A and B connected on oif 2 and 3, R recursive through 10.0.0.1 on oif 2, U and the
/// IPv6 one unresolved.
struct World {
    resolutions: HashMap<IpAddr, Resolution>,
    conflicts: BTreeSet<IpNet>,
    stale: BTreeSet<IpNet>,
}

const A: &str = "10.0.0.10";
const B: &str = "10.0.1.10";
const R: &str = "192.168.5.5";
const U: &str = "10.99.0.1";
const V6: &str = "2001:db8::1";

impl World {
    fn new() -> Self {
        let mut resolutions = HashMap::new();
        resolutions.insert(ip(A), Resolution::Paths(vec![hop(A, 2)]));
        resolutions.insert(ip(B), Resolution::Paths(vec![hop(B, 3)]));
        resolutions.insert(ip(R), Resolution::Paths(vec![hop("10.0.0.1", 2)]));
        resolutions.insert(ip(U), Resolution::Unresolved(UnresolvedReason::NoRoute));
        resolutions.insert(ip(V6), Resolution::Paths(vec![hop("fe80::1", 2)]));
        Self {
            resolutions,
            conflicts: BTreeSet::new(),
            stale: BTreeSet::new(),
        }
    }
    fn view(&self) -> ReconcileView<'_> {
        ReconcileView {
            resolutions: &self.resolutions,
            conflicts: &self.conflicts,
            stale: &self.stale,
        }
    }
}

fn via(list: &[&str]) -> RouteTarget {
    RouteTarget::Via(list.iter().map(|s| ip(s)).collect())
}

#[test]
fn nothing_to_do_when_both_sides_are_empty() {
    let w = World::new();
    assert!(reconcile(&BTreeMap::new(), &BTreeMap::new(), &w.view()).is_empty());
}

#[test]
fn new_route_is_replaced_in_and_equal_route_is_left_alone() {
    let w = World::new();
    let p = net("10.244.1.0/26");
    let desired = BTreeMap::from([(p, via(&[A]))]);
    let ops = reconcile(&desired, &BTreeMap::new(), &w.view());
    assert_eq!(
        ops,
        vec![RouteOp::Replace {
            prefix: p,
            route: KernelRoute::unicast(vec![hop(A, 2)])
        }]
    );
    let actual = BTreeMap::from([(p, KernelRoute::unicast(vec![hop(A, 2)]))]);
    assert!(reconcile(&desired, &actual, &w.view()).is_empty());
}

#[test]
fn ecmp_next_hop_sets_compare_regardless_of_order_and_duplicates() {
    let w = World::new();
    let p = net("10.244.2.0/26");
    let actual = BTreeMap::from([(p, KernelRoute::unicast(vec![hop(B, 3), hop(A, 2)]))]);
    for target in [via(&[A, B]), via(&[B, A]), via(&[A, B, A])] {
        let desired = BTreeMap::from([(p, target)]);
        assert!(reconcile(&desired, &actual, &w.view()).is_empty());
    }
    let desired = BTreeMap::from([(p, via(&[A]))]);
    assert_eq!(
        reconcile(&desired, &actual, &w.view()).len(),
        1,
        "a removed path is a change"
    );
}

#[test]
fn withdrawn_route_is_deleted_and_changed_route_replaced() {
    let w = World::new();
    let gone = net("10.244.3.0/26");
    let moved = net("10.244.4.0/26");
    let actual = BTreeMap::from([
        (gone, KernelRoute::unicast(vec![hop(A, 2)])),
        (moved, KernelRoute::unicast(vec![hop(A, 2)])),
    ]);
    let desired = BTreeMap::from([(moved, via(&[B]))]);
    let ops = reconcile(&desired, &actual, &w.view());
    assert_eq!(ops.len(), 2);
    assert!(ops.contains(&RouteOp::Delete { prefix: gone }));
    assert!(ops.contains(&RouteOp::Replace {
        prefix: moved,
        route: KernelRoute::unicast(vec![hop(B, 3)])
    }));
}

#[test]
fn recursive_next_hop_installs_the_resolved_gateway() {
    let w = World::new();
    let p = net("10.244.5.0/26");
    let ops = reconcile(
        &BTreeMap::from([(p, via(&[R]))]),
        &BTreeMap::new(),
        &w.view(),
    );
    assert_eq!(
        ops,
        vec![RouteOp::Replace {
            prefix: p,
            route: KernelRoute::unicast(vec![hop("10.0.0.1", 2)])
        }]
    );
}

#[test]
fn unresolved_next_hops_are_skipped_and_fully_unresolved_routes_removed() {
    let w = World::new();
    let partial = net("10.244.6.0/26");
    let dead = net("10.244.7.0/26");
    let desired = BTreeMap::from([(partial, via(&[U, A])), (dead, via(&[U]))]);
    let actual = BTreeMap::from([(dead, KernelRoute::unicast(vec![hop(A, 2)]))]);
    let ops = reconcile(&desired, &actual, &w.view());
    assert_eq!(
        ops,
        vec![
            RouteOp::Replace {
                prefix: partial,
                route: KernelRoute::unicast(vec![hop(A, 2)])
            },
            RouteOp::Delete { prefix: dead },
        ]
    );
    let d = diagnose(&desired, &w.view());
    assert_eq!(d.unresolved, vec![(partial, ip(U)), (dead, ip(U))]);
}

#[test]
fn next_hop_of_the_other_family_is_never_used() {
    let w = World::new();
    let p = net("10.244.8.0/26");
    let desired = BTreeMap::from([(p, via(&[V6]))]);
    assert!(reconcile(&desired, &BTreeMap::new(), &w.view()).is_empty());
    assert_eq!(diagnose(&desired, &w.view()).unresolved, vec![(p, ip(V6))]);
    let p6 = net("2001:db8:1::/64");
    let ops = reconcile(
        &BTreeMap::from([(p6, via(&[V6, A]))]),
        &BTreeMap::new(),
        &w.view(),
    );
    assert_eq!(
        ops,
        vec![RouteOp::Replace {
            prefix: p6,
            route: KernelRoute::unicast(vec![hop("fe80::1", 2)])
        }]
    );
}

#[test]
fn blackhole_and_unicast_differ_and_unsupported_is_replaced() {
    let w = World::new();
    let p = net("10.244.9.0/26");
    let desired = BTreeMap::from([(p, RouteTarget::Blackhole)]);
    let actual = BTreeMap::from([(p, KernelRoute::unicast(vec![hop(A, 2)]))]);
    assert_eq!(reconcile(&desired, &actual, &w.view()).len(), 1);
    let actual = BTreeMap::from([(p, KernelRoute::Unsupported { kind: 7 })]);
    assert_eq!(
        reconcile(&desired, &actual, &w.view()),
        vec![RouteOp::Replace {
            prefix: p,
            route: KernelRoute::Blackhole
        }]
    );
    let actual = BTreeMap::from([(p, KernelRoute::Blackhole)]);
    assert!(reconcile(&desired, &actual, &w.view()).is_empty());
}

#[test]
fn stale_routes_survive_until_swept_unless_claimed() {
    let mut w = World::new();
    let kept = net("10.244.10.0/26");
    let claimed = net("10.244.11.0/26");
    let claimed_dead = net("10.244.12.0/26");
    for p in [kept, claimed, claimed_dead] {
        w.stale.insert(p);
    }
    let actual: BTreeMap<_, _> = [kept, claimed, claimed_dead]
        .into_iter()
        .map(|p| (p, KernelRoute::unicast(vec![hop(A, 2)])))
        .collect();
    let desired = BTreeMap::from([(claimed, via(&[A])), (claimed_dead, via(&[U]))]);
    let ops = reconcile(&desired, &actual, &w.view());
    assert_eq!(
        ops,
        vec![RouteOp::Delete {
            prefix: claimed_dead
        }]
    );
    w.stale.clear();
    let ops = reconcile(&desired, &actual, &w.view());
    assert_eq!(
        ops,
        vec![
            RouteOp::Delete {
                prefix: claimed_dead
            },
            RouteOp::Delete { prefix: kept }
        ]
    );
}

#[test]
fn conflicting_prefix_is_never_replaced_and_reported() {
    let mut w = World::new();
    let p = net("10.244.13.0/26");
    w.conflicts.insert(p);
    let desired = BTreeMap::from([(p, via(&[A]))]);
    assert!(reconcile(&desired, &BTreeMap::new(), &w.view()).is_empty());
    assert_eq!(diagnose(&desired, &w.view()).conflicts, vec![p]);
    let actual = BTreeMap::from([(p, KernelRoute::unicast(vec![hop(B, 3)]))]);
    assert!(reconcile(&desired, &actual, &w.view()).is_empty());
    assert_eq!(
        reconcile(&BTreeMap::new(), &actual, &w.view()),
        vec![RouteOp::Delete { prefix: p }],
        "ours next to a foreign route is still removed when withdrawn"
    );
    assert!(diagnose(&BTreeMap::new(), &w.view()).conflicts.is_empty());
}

/// Applies ops to a model of the kernel's view of our routes.
fn apply(actual: &mut BTreeMap<IpNet, KernelRoute>, ops: &[RouteOp]) {
    for op in ops {
        match op {
            RouteOp::Replace { prefix, route } => {
                actual.insert(*prefix, route.clone());
            }
            RouteOp::Delete { prefix } => {
                actual.remove(prefix);
            }
        }
    }
}

/// Every combination of desired state, kernel state, staleness and conflict for one prefix.
#[test]
fn exhaustive_single_prefix_table() {
    let p = net("10.244.20.0/26");
    let targets: Vec<Option<RouteTarget>> = vec![
        None,
        Some(RouteTarget::Blackhole),
        Some(via(&[A])),
        Some(via(&[B])),
        Some(via(&[A, B])),
        Some(via(&[B, A])),
        Some(via(&[U])),
        Some(via(&[A, U])),
        Some(via(&[R])),
        Some(via(&[])),
    ];
    let kernel: Vec<Option<KernelRoute>> = vec![
        None,
        Some(KernelRoute::Blackhole),
        Some(KernelRoute::unicast(vec![hop(A, 2)])),
        Some(KernelRoute::unicast(vec![hop(A, 2), hop(B, 3)])),
        Some(KernelRoute::unicast(vec![hop("10.0.0.1", 2)])),
        Some(KernelRoute::Unsupported { kind: 7 }),
    ];
    let mut cases = 0;
    for want in &targets {
        for have in &kernel {
            for stale in [false, true] {
                for conflict in [false, true] {
                    cases += 1;
                    let mut w = World::new();
                    if stale {
                        w.stale.insert(p);
                    }
                    if conflict {
                        w.conflicts.insert(p);
                    }
                    let view = w.view();
                    let op = reconcile_prefix(&p, want.as_ref(), have.as_ref(), &view);
                    let built = want.as_ref().and_then(|t| kernel_route(&p, t, &view));
                    let ctx =
                        format!("want={want:?} have={have:?} stale={stale} conflict={conflict}");
                    match &op {
                        Some(RouteOp::Replace { route, .. }) => {
                            assert!(!conflict, "replace over a foreign route: {ctx}");
                            assert_eq!(Some(route), built.as_ref(), "{ctx}");
                            assert_ne!(Some(route), have.as_ref(), "flap: {ctx}");
                        }
                        Some(RouteOp::Delete { .. }) => {
                            assert!(have.is_some(), "delete of nothing: {ctx}");
                            assert!(!(stale && want.is_none()), "stale swept early: {ctx}");
                            assert!(built.is_none() || conflict, "deleted a usable route: {ctx}");
                            assert!(!(conflict && want.is_some()), "{ctx}");
                        }
                        None => {
                            let done = conflict
                                || (built.is_some() && built == *have)
                                || (built.is_none()
                                    && (have.is_none() || (stale && want.is_none())));
                            assert!(done, "left undone: {ctx}");
                        }
                    }
                    // Applying the op converges: a second pass does nothing.
                    let mut actual: BTreeMap<IpNet, KernelRoute> =
                        have.iter().map(|k| (p, k.clone())).collect();
                    let desired: BTreeMap<IpNet, RouteTarget> =
                        want.iter().map(|t| (p, t.clone())).collect();
                    let first = reconcile(&desired, &actual, &view);
                    assert_eq!(first, op.into_iter().collect::<Vec<_>>(), "{ctx}");
                    apply(&mut actual, &first);
                    assert!(
                        reconcile(&desired, &actual, &view).is_empty(),
                        "not idempotent: {ctx}"
                    );
                }
            }
        }
    }
    assert_eq!(cases, 10 * 6 * 2 * 2);
}

fn arb_target() -> impl Strategy<Value = RouteTarget> {
    prop_oneof![
        Just(RouteTarget::Blackhole),
        proptest::collection::vec(
            prop_oneof![Just(ip(A)), Just(ip(B)), Just(ip(R)), Just(ip(U))],
            0..4
        )
        .prop_map(RouteTarget::Via),
    ]
}

fn arb_kernel() -> impl Strategy<Value = KernelRoute> {
    prop_oneof![
        Just(KernelRoute::Blackhole),
        Just(KernelRoute::unicast(vec![hop(A, 2)])),
        Just(KernelRoute::unicast(vec![hop(B, 3), hop(A, 2)])),
        Just(KernelRoute::Unsupported { kind: 8 }),
    ]
}

proptest! {
    /// On random tables: applying the ops yields exactly the installable desired routes plus the
    /// kept stale and conflicting ones, and a second pass is empty.
    #[test]
    fn reconcile_converges(
        desired in proptest::collection::btree_map(0u8..32, arb_target(), 0..24),
        actual in proptest::collection::btree_map(0u8..32, arb_kernel(), 0..24),
        stale in proptest::collection::btree_set(0u8..32, 0..8),
        conflicts in proptest::collection::btree_set(0u8..32, 0..4),
    ) {
        let key = |i: u8| IpNet::new(IpAddr::from([10, 244, i, 0]), 24).unwrap();
        let desired: BTreeMap<_, _> = desired.into_iter().map(|(k, v)| (key(k), v)).collect();
        let mut actual: BTreeMap<_, _> = actual.into_iter().map(|(k, v)| (key(k), v)).collect();
        let mut w = World::new();
        w.stale = stale.into_iter().map(key).collect();
        w.conflicts = conflicts.into_iter().map(key).collect();
        let view = w.view();
        let before = actual.clone();
        let ops = reconcile(&desired, &actual, &view);
        let touched: BTreeSet<_> = ops.iter().map(|op| *op.prefix()).collect();
        prop_assert_eq!(touched.len(), ops.len(), "one op per prefix");
        apply(&mut actual, &ops);
        prop_assert!(reconcile(&desired, &actual, &view).is_empty());
        for (p, t) in &desired {
            if !w.conflicts.contains(p) {
                let want = kernel_route(p, t, &view);
                prop_assert_eq!(actual.get(p), want.as_ref());
            }
        }
        for (p, k) in &before {
            let kept = w.conflicts.contains(p) && desired.contains_key(p);
            let stale_kept = w.stale.contains(p) && !desired.contains_key(p);
            if kept || stale_kept {
                prop_assert_eq!(actual.get(p), Some(k));
            }
        }
    }
}
