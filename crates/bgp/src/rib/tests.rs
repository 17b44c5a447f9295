//! Best-path and RIB tests, written from RFC 4271 §9.1.2 and RFC 4456 §9.

use super::*;
use crate::wire::{AsSegment, AsSegmentKind, Origin};

fn src(peer: u32, addr: &str, rid: &str, ebgp: bool) -> Arc<PathSource> {
    Arc::new(PathSource {
        peer,
        name: Arc::from(format!("p{peer}")),
        address: addr.parse().unwrap(),
        router_id: rid.parse().unwrap(),
        ebgp,
        local: false,
        cluster_node: false,
    })
}

fn attrs(path: &[u32], f: impl FnOnce(&mut PathAttributes)) -> Arc<PathAttributes> {
    let mut a = PathAttributes {
        origin: Some(Origin::Igp),
        as_path: vec![AsSegment {
            kind: AsSegmentKind::Sequence,
            asns: path.to_vec(),
        }],
        ..Default::default()
    };
    f(&mut a);
    Arc::new(a)
}

fn pfx(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn nh(s: &str) -> Option<IpAddr> {
    Some(s.parse().unwrap())
}

/// Each row: the attributes/sources of two paths and which wins, with the
/// deciding step.
#[test]
fn decision_process_steps_in_rfc_order() {
    let e1 = src(1, "10.0.0.1", "1.1.1.1", true);
    let e2 = src(2, "10.0.0.2", "2.2.2.2", true);
    let i3 = src(3, "10.0.0.3", "0.0.0.3", false);
    struct Row {
        name: &'static str,
        a: (Arc<PathSource>, Arc<PathAttributes>),
        b: (Arc<PathSource>, Arc<PathAttributes>),
        reason: NotBestReason,
    }
    let rows = vec![
        Row {
            name: "higher local-pref wins over shorter path",
            a: (e1.clone(), attrs(&[1, 2, 3], |a| a.local_pref = Some(200))),
            b: (e2.clone(), attrs(&[1], |_| {})),
            reason: NotBestReason::LocalPref,
        },
        Row {
            name: "shorter AS path",
            a: (e2.clone(), attrs(&[1], |_| {})),
            b: (e1.clone(), attrs(&[1, 2], |_| {})),
            reason: NotBestReason::AsPathLength,
        },
        Row {
            name: "AS_SET counts as one",
            a: (
                e2.clone(),
                attrs(&[1], |a| {
                    a.as_path.push(AsSegment {
                        kind: AsSegmentKind::Set,
                        asns: vec![7, 8, 9],
                    })
                }),
            ),
            b: (e1.clone(), attrs(&[1, 2, 3], |_| {})),
            reason: NotBestReason::AsPathLength,
        },
        Row {
            name: "lower origin",
            a: (e2.clone(), attrs(&[1], |_| {})),
            b: (
                e1.clone(),
                attrs(&[1], |a| a.origin = Some(Origin::Incomplete)),
            ),
            reason: NotBestReason::Origin,
        },
        Row {
            name: "lower MED from the same neighbour AS",
            a: (e2.clone(), attrs(&[1], |a| a.med = Some(5))),
            b: (e1.clone(), attrs(&[1], |a| a.med = Some(10))),
            reason: NotBestReason::Med,
        },
        Row {
            name: "missing MED is lowest",
            a: (e2.clone(), attrs(&[1], |_| {})),
            b: (e1.clone(), attrs(&[1], |a| a.med = Some(1))),
            reason: NotBestReason::Med,
        },
        Row {
            name: "MED ignored across neighbour ASes, router id decides",
            a: (e1.clone(), attrs(&[1], |a| a.med = Some(100))),
            b: (e2.clone(), attrs(&[2], |a| a.med = Some(1))),
            reason: NotBestReason::RouterId,
        },
        Row {
            name: "eBGP over iBGP",
            a: (e2.clone(), attrs(&[1], |_| {})),
            b: (i3.clone(), attrs(&[1], |_| {})),
            reason: NotBestReason::EbgpOverIbgp,
        },
        Row {
            name: "ORIGINATOR_ID replaces router id for reflected routes",
            a: (
                src(4, "10.0.0.4", "9.9.9.9", false),
                attrs(&[1], |a| a.originator_id = Some("0.0.0.1".parse().unwrap())),
            ),
            b: (i3.clone(), attrs(&[1], |_| {})),
            reason: NotBestReason::RouterId,
        },
        Row {
            name: "shorter cluster list",
            a: (src(4, "10.0.0.4", "0.0.0.3", false), attrs(&[1], |_| {})),
            b: (
                src(5, "10.0.0.5", "0.0.0.3", false),
                attrs(&[1], |a| a.cluster_list = vec!["1.1.1.1".parse().unwrap()]),
            ),
            reason: NotBestReason::ClusterListLength,
        },
        Row {
            name: "lowest peer address",
            a: (src(4, "10.0.0.4", "0.0.0.3", false), attrs(&[1], |_| {})),
            b: (src(5, "10.0.0.5", "0.0.0.3", false), attrs(&[1], |_| {})),
            reason: NotBestReason::PeerAddress,
        },
    ];
    for r in rows {
        let a = Path {
            source: r.a.0,
            path_id: 0,
            attrs: r.a.1,
            next_hop: nh("192.0.2.1"),
        };
        let b = Path {
            source: r.b.0,
            path_id: 0,
            attrs: r.b.1,
            next_hop: nh("192.0.2.2"),
        };
        assert_eq!(
            best::compare(&a, &b),
            (std::cmp::Ordering::Less, r.reason),
            "{}",
            r.name
        );
        assert_eq!(
            best::compare(&b, &a).0,
            std::cmp::Ordering::Greater,
            "{} (reversed)",
            r.name
        );
    }
}

#[test]
fn insert_selects_best_and_records_reasons() {
    let mut rib = Rib::new(1);
    let p = pfx("198.51.100.0/24");
    rib.insert(
        &src(1, "10.0.0.1", "1.1.1.1", true),
        p,
        0,
        attrs(&[65001, 65100], |_| {}),
        nh("10.0.0.1"),
    );
    rib.insert(
        &src(2, "10.0.0.2", "2.2.2.2", true),
        p,
        0,
        attrs(&[65002], |_| {}),
        nh("10.0.0.2"),
    );
    let d = rib.get(&p).unwrap();
    assert_eq!(d.best().unwrap().source.peer, 2);
    assert_eq!(d.reason(0), None);
    assert_eq!(d.reason(1), Some(NotBestReason::AsPathLength));
    assert_eq!(rib.take_changes().into_iter().collect::<Vec<_>>(), vec![p]);
    assert!(rib.take_changes().is_empty());
}

#[test]
fn multipath_across_neighbour_ases_up_to_max_paths() {
    let mut rib = Rib::new(2);
    let p = pfx("203.0.113.0/24");
    for i in 1..=3u32 {
        let s = src(i, &format!("10.0.0.{i}"), &format!("{i}.{i}.{i}.{i}"), true);
        rib.insert(
            &s,
            p,
            0,
            attrs(&[65000 + i], |_| {}),
            nh(&format!("10.0.0.{i}")),
        );
    }
    let d = rib.get(&p).unwrap();
    assert_eq!(d.multipath, 2, "capped at max_paths");
    rib.set_max_paths(8);
    assert_eq!(rib.get(&p).unwrap().multipath, 3);
}

#[test]
fn multipath_requires_equal_med_and_path_length() {
    let mut rib = Rib::new(8);
    let p = pfx("203.0.113.0/24");
    rib.insert(
        &src(1, "10.0.0.1", "1.1.1.1", true),
        p,
        0,
        attrs(&[1], |_| {}),
        nh("10.0.0.1"),
    );
    rib.insert(
        &src(2, "10.0.0.2", "2.2.2.2", true),
        p,
        0,
        attrs(&[2], |a| a.med = Some(5)),
        nh("10.0.0.2"),
    );
    rib.insert(
        &src(3, "10.0.0.3", "3.3.3.3", true),
        p,
        0,
        attrs(&[3, 4], |_| {}),
        nh("10.0.0.3"),
    );
    assert_eq!(rib.get(&p).unwrap().multipath, 1);
}

#[test]
fn withdraw_and_peer_down_remove_paths_and_report_changes() {
    let mut rib = Rib::default();
    let a = pfx("10.1.0.0/16");
    let b = pfx("2001:db8::/32");
    let s1 = src(1, "10.0.0.1", "1.1.1.1", true);
    rib.insert(&s1, a, 0, attrs(&[1], |_| {}), nh("10.0.0.1"));
    rib.insert(&s1, b, 0, attrs(&[1], |_| {}), nh("2001:db8::1"));
    rib.take_changes();
    assert_eq!(rib.adj_in_count(1, Family::Ipv6Unicast), 1);
    assert!(rib.remove(1, a, 0));
    assert!(!rib.remove(1, a, 0), "second withdraw is a no-op");
    assert!(rib.get(&a).is_none());
    assert_eq!(rib.remove_peer(1), 1);
    assert!(rib.is_empty());
    assert_eq!(rib.take_changes().len(), 2);
    assert_eq!(
        rib.attribute_sets(),
        0,
        "interner releases unused attribute sets"
    );
}

#[test]
fn identical_reannouncement_is_not_a_change() {
    let mut rib = Rib::default();
    let p = pfx("10.1.0.0/16");
    let s1 = src(1, "10.0.0.1", "1.1.1.1", true);
    assert!(rib.insert(&s1, p, 0, attrs(&[1], |_| {}), nh("10.0.0.1")));
    rib.take_changes();
    assert!(!rib.insert(&s1, p, 0, attrs(&[1], |_| {}), nh("10.0.0.1")));
    assert!(rib.take_changes().is_empty());
}

#[test]
fn shared_attributes_are_stored_once() {
    let mut rib = Rib::default();
    let s1 = src(1, "10.0.0.1", "1.1.1.1", true);
    for i in 0..1000u32 {
        let p = IpNet::new(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + (i << 8))), 24).unwrap();
        rib.insert(&s1, p, 0, attrs(&[1, 2], |_| {}), nh("10.0.0.1"));
    }
    assert_eq!(rib.len(), 1000);
    assert_eq!(rib.attribute_sets(), 1);
}

#[test]
fn local_route_beats_learned_route() {
    let mut rib = Rib::default();
    let p = pfx("10.96.0.0/12");
    rib.insert(
        &src(1, "10.0.0.1", "1.1.1.1", true),
        p,
        0,
        attrs(&[1], |_| {}),
        nh("10.0.0.1"),
    );
    rib.insert(
        &PathSource::local("9.9.9.9".parse().unwrap()),
        p,
        0,
        attrs(&[], |a| a.as_path.clear()),
        None,
    );
    assert!(rib.get(&p).unwrap().best().unwrap().source.local);
}

#[test]
fn withdrawing_one_of_two_equal_paths_is_a_change() {
    let mut rib = Rib::new(8);
    let p = pfx("198.51.100.0/24");
    let s1 = src(1, "10.0.0.1", "1.1.1.1", true);
    let s2 = src(2, "10.0.0.2", "2.2.2.2", true);
    rib.insert(&s1, p, 0, attrs(&[65010], |_| {}), nh("10.0.0.1"));
    rib.insert(&s2, p, 0, attrs(&[65020], |_| {}), nh("10.0.0.2"));
    assert_eq!(rib.get(&p).unwrap().multipath, 2);
    rib.take_changes();
    // The ToR that remains sorts first either way: the set still changed.
    assert!(rib.remove(2, p, 0));
    assert_eq!(rib.take_changes().into_iter().collect::<Vec<_>>(), vec![p]);
    assert_eq!(rib.get(&p).unwrap().multipath, 1);
    rib.insert(&s2, p, 0, attrs(&[65020], |_| {}), nh("10.0.0.2"));
    rib.take_changes();
    assert_eq!(rib.remove_peer(1), 1);
    assert_eq!(
        rib.take_changes().len(),
        1,
        "peer down of one multipath member"
    );
}

#[test]
fn replacing_the_selected_path_is_a_change() {
    let mut rib = Rib::default();
    let p = pfx("198.51.100.0/24");
    let s1 = src(1, "10.0.0.1", "1.1.1.1", true);
    rib.insert(&s1, p, 0, attrs(&[65010], |_| {}), nh("10.0.0.1"));
    rib.take_changes();
    rib.insert(&s1, p, 0, attrs(&[65010], |_| {}), nh("10.0.0.9"));
    assert_eq!(rib.take_changes().len(), 1, "new next hop");
    rib.insert(&s1, p, 0, attrs(&[65010, 65011], |_| {}), nh("10.0.0.9"));
    assert_eq!(rib.take_changes().len(), 1, "new attributes");
}

#[test]
fn a_losing_path_coming_and_going_is_not_a_change() {
    let mut rib = Rib::new(1);
    let p = pfx("198.51.100.0/24");
    rib.insert(
        &src(1, "10.0.0.1", "1.1.1.1", true),
        p,
        0,
        attrs(&[1], |_| {}),
        nh("10.0.0.1"),
    );
    rib.take_changes();
    rib.insert(
        &src(2, "10.0.0.2", "2.2.2.2", true),
        p,
        0,
        attrs(&[2, 3], |_| {}),
        nh("10.0.0.2"),
    );
    assert!(rib.take_changes().is_empty());
    rib.remove(2, p, 0);
    assert!(rib.take_changes().is_empty());
}
