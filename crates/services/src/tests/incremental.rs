//! Incremental bookkeeping: reference counts, slice moves, ordering of
//! events, configuration changes, `sync` and delta composition.

use super::*;

fn local_lb(name: &str, cluster: &str, lb: &str) -> Svc {
    Svc::new(name)
        .lb()
        .local()
        .cluster(&[cluster])
        .ingress_ip(lb)
}

#[test]
fn a_prefix_held_twice_is_withdrawn_when_both_reasons_go() {
    let mut a = adv(standard());
    // Two Services share an external IP (Kubernetes allows it).
    let s1 = Svc::new("a")
        .typ("NodePort")
        .local()
        .cluster(&["10.96.0.1"])
        .external(&["203.0.113.9"]);
    let s2 = Svc::new("b")
        .typ("NodePort")
        .local()
        .cluster(&["10.96.0.2"])
        .external(&["203.0.113.9"]);
    up(&mut a, &s1);
    up(&mut a, &s2);
    up_slice(&mut a, &slice("a-1", Some("a"), "IPv4", &[LOCAL]));
    let d = up_slice(&mut a, &slice("b-1", Some("b"), "IPv4", &[LOCAL]));
    assert_eq!(
        d.advertise,
        nets(&["10.96.0.2/32"]),
        "shared /32 already up"
    );
    let d = a.delete_service("default", "a");
    assert_eq!(d.withdraw, nets(&["10.96.0.1/32"]));
    assert!(a.is_advertised(&net("203.0.113.9/32")));
    let d = a.delete_endpoint_slice("default", "b-1");
    assert_eq!(d.withdraw, nets(&["10.96.0.2/32", "203.0.113.9/32"]));
}

#[test]
fn same_address_twice_in_one_service_and_in_aggregates() {
    let mut a = adv(cfg(&["10.96.0.0/12"], &["10.96.0.0/12"], &[]));
    // The same CIDR in two lists is one aggregate.
    assert_eq!(a.advertised(), nets(&["10.96.0.0/12"]));
    let s = Svc::new("d")
        .typ("NodePort")
        .local()
        .cluster(&["10.96.0.3"])
        .external(&["10.96.0.3", "10.96.0.3"]);
    up(&mut a, &s);
    let d = up_slice(&mut a, &slice("d-1", Some("d"), "IPv4", &[LOCAL]));
    assert_eq!(d.advertise, nets(&["10.96.0.3/32"]));
    let d = a.delete_service("default", "d");
    assert_eq!(d.withdraw, nets(&["10.96.0.3/32"]));
    let d = a.set_config(cfg(&["10.96.0.0/12"], &[], &[]));
    assert!(d.is_empty(), "still held by serviceClusterIPs: {d:?}");
    let d = a.set_config(cfg(&[], &[], &[]));
    assert_eq!(d.withdraw, nets(&["10.96.0.0/12"]));
}

#[test]
fn endpoint_moving_between_nodes() {
    let mut a = adv(standard());
    up(&mut a, &local_lb("m", "10.96.0.4", "198.18.0.4"));
    let on = slice("m-1", Some("m"), "IPv4", &[REMOTE, LOCAL]);
    let off = slice("m-1", Some("m"), "IPv4", &[REMOTE, REMOTE]);
    let d = up_slice(&mut a, &on);
    assert_eq!(d.advertise, nets(&["10.96.0.4/32", "198.18.0.4/32"]));
    let d = up_slice(&mut a, &off);
    assert_eq!(d.withdraw, nets(&["10.96.0.4/32", "198.18.0.4/32"]));
    let d = up_slice(&mut a, &off);
    assert!(d.is_empty(), "no-op update");
    let d = up_slice(&mut a, &on);
    assert_eq!(d.advertise.len(), 2);
    // Another ready local endpoint, then losing one of two: no change.
    let d = up_slice(&mut a, &slice("m-1", Some("m"), "IPv4", &[LOCAL, LOCAL]));
    assert!(d.is_empty());
    let d = up_slice(
        &mut a,
        &slice("m-1", Some("m"), "IPv4", &[LOCAL, (Some(ME), Some(false))]),
    );
    assert!(d.is_empty());
}

#[test]
fn multiple_slices_per_service() {
    let mut a = adv(standard());
    up(&mut a, &local_lb("ms", "10.96.0.5", "198.18.0.5"));
    up_slice(&mut a, &slice("ms-1", Some("ms"), "IPv4", &[LOCAL]));
    let d = up_slice(&mut a, &slice("ms-2", Some("ms"), "IPv4", &[LOCAL, REMOTE]));
    assert!(d.is_empty());
    // A not-ready endpoint in one slice does not withdraw what the other justifies.
    let d = up_slice(
        &mut a,
        &slice("ms-1", Some("ms"), "IPv4", &[(Some(ME), Some(false))]),
    );
    assert!(d.is_empty());
    let d = a.delete_endpoint_slice("default", "ms-2");
    assert_eq!(d.withdraw, nets(&["10.96.0.5/32", "198.18.0.5/32"]));
    let d = a.delete_endpoint_slice("default", "ms-1");
    assert!(!d.changes_routes());
    let d = a.delete_endpoint_slice("default", "never-existed");
    assert!(d.is_empty());
}

#[test]
fn slice_relabelled_to_another_service() {
    let mut a = adv(standard());
    up(&mut a, &local_lb("x", "10.96.0.6", "198.18.0.6"));
    up(&mut a, &local_lb("y", "10.96.0.7", "198.18.0.7"));
    up_slice(&mut a, &slice("s", Some("x"), "IPv4", &[LOCAL]));
    let d = up_slice(&mut a, &slice("s", Some("y"), "IPv4", &[LOCAL]));
    assert_eq!(d.withdraw, nets(&["10.96.0.6/32", "198.18.0.6/32"]));
    assert_eq!(d.advertise, nets(&["10.96.0.7/32", "198.18.0.7/32"]));
    assert_eq!(d.newly_rejected.len(), 2);
    assert!(d.newly_rejected.iter().all(|r| r.service.name == "x"));
}

#[test]
fn service_deleted_before_its_slices_and_slices_before_services() {
    let mut a = adv(standard());
    // Slice first: the Service is advertised as soon as it arrives.
    up_slice(&mut a, &slice("o-1", Some("o"), "IPv4", &[LOCAL]));
    let d = up(&mut a, &local_lb("o", "10.96.0.8", "198.18.0.8"));
    assert_eq!(d.advertise, nets(&["10.96.0.8/32", "198.18.0.8/32"]));
    // Service deleted first.
    let d = a.delete_service("default", "o");
    assert_eq!(d.withdraw, nets(&["10.96.0.8/32", "198.18.0.8/32"]));
    assert!(a.service_status("default", "o").is_none());
    // The slice still counts if the Service comes back.
    let d = up(&mut a, &local_lb("o", "10.96.0.8", "198.18.0.8"));
    assert_eq!(d.advertise.len(), 2);
    a.delete_service("default", "o");
    let d = a.delete_endpoint_slice("default", "o-1");
    assert!(d.is_empty());
    let d = up(&mut a, &local_lb("o", "10.96.0.8", "198.18.0.8"));
    assert!(!d.changes_routes(), "slice gone, counts gone: {d:?}");
    assert_eq!(a.object_counts(), (1, 0));
}

#[test]
fn service_changes_withdraw_what_is_no_longer_needed() {
    let mut a = adv(standard());
    up_slice(&mut a, &slice("c-1", Some("c"), "IPv4", &[LOCAL]));
    up(&mut a, &local_lb("c", "10.96.0.9", "198.18.0.9"));
    // New LB IP.
    let d = up(&mut a, &local_lb("c", "10.96.0.9", "198.18.0.10"));
    assert_eq!(d.withdraw, nets(&["198.18.0.9/32"]));
    assert_eq!(d.advertise, nets(&["198.18.0.10/32"]));
    // Local -> Cluster: host routes go, aggregates stay.
    let d = up(
        &mut a,
        &Svc::new("c")
            .lb()
            .cluster(&["10.96.0.9"])
            .ingress_ip("198.18.0.10"),
    );
    assert_eq!(d.withdraw, nets(&["10.96.0.9/32", "198.18.0.10/32"]));
    assert!(a.is_advertised(&net("198.18.0.0/15")));
    // Unchanged object: nothing at all.
    let d = up(
        &mut a,
        &Svc::new("c")
            .lb()
            .cluster(&["10.96.0.9"])
            .ingress_ip("198.18.0.10"),
    );
    assert!(d.is_empty());
}

#[test]
fn config_change_reevaluates_every_service() {
    let mut a = adv(standard());
    up_slice(&mut a, &slice("k-1", Some("k"), "IPv4", &[LOCAL]));
    up(&mut a, &local_lb("k", "10.96.0.11", "198.18.0.11"));
    up(
        &mut a,
        &Svc::new("agg")
            .lb()
            .cluster(&["10.96.0.12"])
            .ingress_ip("198.19.0.12"),
    );
    // Narrow the LB range: 198.18.0.11 falls outside.
    let mut narrow = standard();
    narrow.load_balancer_ips = nets(&["198.19.0.0/16"]);
    let d = a.set_config(narrow.clone());
    assert_eq!(
        d.withdraw,
        nets(&["198.18.0.0/15", "198.18.0.11/32", "2001:db8:1b::/64"])
    );
    assert_eq!(d.advertise, nets(&["198.19.0.0/16"]));
    assert_eq!(d.newly_rejected.len(), 1);
    assert_eq!(d.newly_rejected[0].reason, RejectReason::OutsideCidrs);
    assert_eq!(
        status_of(&a, "agg", "198.19.0.12"),
        Disposition::Aggregate(net("198.19.0.0/16"))
    );
    // Same config again: nothing.
    assert!(a.set_config(narrow).is_empty());
    // Back: everything as before.
    let d = a.set_config(standard());
    assert_eq!(
        d.advertise,
        nets(&["198.18.0.0/15", "198.18.0.11/32", "2001:db8:1b::/64"])
    );
    assert_eq!(d.withdraw, nets(&["198.19.0.0/16"]));
    // Dropping all cluster CIDRs withdraws the aggregate and the host route.
    let mut no_cluster = standard();
    no_cluster.cluster_ips.clear();
    let d = a.set_config(no_cluster);
    assert_eq!(
        d.withdraw,
        nets(&["10.96.0.0/12", "10.96.0.11/32", "fd00:96::/108"])
    );
}

#[test]
fn newly_rejected_is_reported_once() {
    let mut a = adv(standard());
    let s = Svc::new("r").cluster(&["172.16.0.1"]);
    assert_eq!(up(&mut a, &s).newly_rejected.len(), 1);
    assert!(
        up(&mut a, &s.clone().external(&["203.0.113.1"]))
            .newly_rejected
            .is_empty()
    );
    assert!(up(&mut a, &s).is_empty());
    assert_eq!(a.rejections().len(), 1);
    // The reason changes: reported again.
    let d = a.set_config(cfg(&[], &[], &[]));
    assert_eq!(d.newly_rejected[0].reason, RejectReason::NotEnabled);
}

#[test]
fn unrelated_slice_update_is_free() {
    let mut a = adv(standard());
    up(&mut a, &local_lb("u", "10.96.0.13", "198.18.0.13"));
    up_slice(&mut a, &slice("u-1", Some("u"), "IPv4", &[REMOTE]));
    let d = up_slice(
        &mut a,
        &slice(
            "u-1",
            Some("u"),
            "IPv4",
            &[REMOTE, REMOTE, (Some(OTHER), Some(false))],
        ),
    );
    assert!(d.is_empty());
}

#[test]
fn sync_applies_the_net_change() {
    let svcs = vec![
        local_lb("p", "10.96.0.14", "198.18.0.14").build(),
        local_lb("q", "10.96.0.15", "198.18.0.15").build(),
        Svc::new("r").cluster(&["172.16.0.1"]).build(),
    ];
    let slices = vec![
        slice("p-1", Some("p"), "IPv4", &[LOCAL]),
        slice("q-1", Some("q"), "IPv4", &[REMOTE]),
    ];
    let mut a = adv(standard());
    let d = a.sync(&svcs, &slices);
    assert_eq!(d.advertise, nets(&["10.96.0.14/32", "198.18.0.14/32"]));
    assert_eq!(d.newly_rejected.len(), 3);
    // Same as applying each object.
    let mut b = adv(standard());
    for s in &slices {
        b.upsert_endpoint_slice(s).unwrap();
    }
    for s in &svcs {
        b.upsert_service(s).unwrap();
    }
    assert_eq!(a.advertised(), b.advertised());
    assert_eq!(a.rejections(), b.rejections());
    // Re-sync unchanged: empty.
    assert!(a.sync(&svcs, &slices).is_empty());
    // The endpoint moves from p to q (a slice relabel plus a new slice), and r leaves.
    let slices2 = vec![
        slice("p-1", Some("q"), "IPv4", &[LOCAL]),
        slice("p-2", Some("p"), "IPv4", &[REMOTE]),
    ];
    let d = a.sync(&svcs[..2], &slices2);
    assert_eq!(d.withdraw, nets(&["10.96.0.14/32", "198.18.0.14/32"]));
    assert_eq!(d.advertise, nets(&["10.96.0.15/32", "198.18.0.15/32"]));
    assert_eq!(a.object_counts(), (2, 2));
    assert!(a.rejections().iter().all(|r| r.service.name == "p"));
    // Everything gone.
    let d = a.sync(&[], &[]);
    assert_eq!(d.withdraw.len(), 2);
    assert_eq!(a.advertised(), adv(standard()).advertised());
}

#[test]
fn sync_moves_within_one_call_do_not_flap() {
    let mut a = adv(standard());
    let svcs = vec![local_lb("f", "10.96.0.16", "198.18.0.16").build()];
    a.sync(&svcs, &[slice("f-1", Some("f"), "IPv4", &[LOCAL])]);
    // The local endpoint moves from slice f-1 to f-2 (f-1 removed).
    let d = a.sync(&svcs, &[slice("f-2", Some("f"), "IPv4", &[LOCAL])]);
    assert!(d.is_empty(), "{d:?}");
}

#[test]
fn delta_then_composes() {
    let p = net("10.0.0.1/32");
    let q = net("10.0.0.2/32");
    let up_p = Delta {
        advertise: vec![p],
        ..Delta::default()
    };
    let down_p = Delta {
        withdraw: vec![p],
        ..Delta::default()
    };
    assert!(up_p.clone().then(down_p.clone()).is_empty());
    assert!(down_p.clone().then(up_p.clone()).is_empty());
    let up_q = Delta {
        advertise: vec![q],
        ..Delta::default()
    };
    let both = up_q.then(up_p.clone());
    assert_eq!(both.advertise, vec![p, q]);
    assert_eq!(both.clone().then(down_p).advertise, vec![q]);
}
