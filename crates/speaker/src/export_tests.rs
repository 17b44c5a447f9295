//! Export rules, written from RFC 4271 §5.1 and §9.2, RFC 4456 §6 and §8,
//! and Calico's nextHopMode semantics.

use super::*;
use petrel_bgp::rib::{PathSource, Rib};
use petrel_bgp::wire::{Origin, PathAttributes};
use petrel_datastore::resolved::{BindMode, NodeConfig};
use std::net::Ipv4Addr;

const LOCAL_AS: u32 = 64512;

fn node(cluster: Option<&str>) -> NodeConfig {
    NodeConfig {
        local_as: LOCAL_AS,
        ipv4_address: Some("10.0.0.1/24".parse().unwrap()),
        ipv6_address: Some("fd00::1/64".parse().unwrap()),
        route_reflector_cluster_id: cluster.map(|c| c.parse().unwrap()),
        bind_mode: BindMode::None,
        prefix_communities: vec![(
            "10.96.0.0/12".parse().unwrap(),
            vec![Community::Standard(0xfc00_0064)],
        )],
        ..crate::fixtures::node()
    }
}

const FAMILIES: &[Family] = &[Family::Ipv4Unicast, Family::Ipv6Unicast];

fn target<'a>(id: u32, ebgp: bool, rr_client: bool, mode: NextHopMode) -> ExportTarget<'a> {
    ExportTarget {
        id,
        ebgp,
        local_as: LOCAL_AS,
        rr_client,
        cluster_node: false,
        next_hop_mode: mode,
        filters: &[],
        families: FAMILIES,
        local_addr: "10.0.0.1".parse().unwrap(),
        other_family_hop: None,
        draining: false,
    }
}

fn source(peer: u32, ebgp: bool) -> Arc<PathSource> {
    Arc::new(PathSource {
        peer,
        name: Arc::from(format!("p{peer}")),
        address: format!("10.0.0.{}", peer + 1).parse().unwrap(),
        router_id: format!("10.0.0.{}", peer + 1).parse().unwrap(),
        ebgp,
        local: false,
        cluster_node: false,
    })
}

fn learned(rib: &mut Rib, peer: u32, ebgp: bool, prefix: &str, path: &[u32]) -> IpNet {
    let p: IpNet = prefix.parse().unwrap();
    let attrs = PathAttributes {
        origin: Some(Origin::Igp),
        as_path: if path.is_empty() {
            vec![]
        } else {
            vec![AsSegment {
                kind: AsSegmentKind::Sequence,
                asns: path.to_vec(),
            }]
        },
        med: Some(7),
        local_pref: if ebgp { None } else { Some(200) },
        ..Default::default()
    };
    let hop: IpAddr = format!("192.0.2.{peer}").parse().unwrap();
    rib.insert(&source(peer, ebgp), p, 0, Arc::new(attrs), Some(hop));
    p
}

fn local(rib: &mut Rib, prefix: &str) -> IpNet {
    let p: IpNet = prefix.parse().unwrap();
    let attrs = PathAttributes {
        origin: Some(Origin::Igp),
        ..Default::default()
    };
    rib.insert(
        &PathSource::local("10.0.0.1".parse().unwrap()),
        p,
        0,
        Arc::new(attrs),
        None,
    );
    p
}

fn export(
    node: &NodeConfig,
    t: &ExportTarget,
    rib: &Rib,
    p: IpNet,
    clients: &[u32],
) -> Result<PathAttributes, NotExported> {
    export_attrs(node, t, &p, rib.get(&p), |path| {
        clients.contains(&path.source.peer)
    })
}

#[test]
fn local_route_to_ebgp_prepends_and_sets_next_hop_self() {
    let mut rib = Rib::default();
    let p = local(&mut rib, "10.96.0.0/12");
    let a = export(
        &node(None),
        &target(9, true, false, NextHopMode::Auto),
        &rib,
        p,
        &[],
    )
    .unwrap();
    assert_eq!(
        a.as_path,
        vec![AsSegment {
            kind: AsSegmentKind::Sequence,
            asns: vec![LOCAL_AS]
        }]
    );
    assert_eq!(a.next_hop, Some(Ipv4Addr::new(10, 0, 0, 1)));
    assert_eq!(a.local_pref, None, "LOCAL_PREF is never sent to eBGP peers");
    assert_eq!(
        a.communities,
        vec![0xfc00_0064],
        "prefixAdvertisements community added"
    );
}

#[test]
fn local_route_to_ibgp_has_local_pref_and_empty_path() {
    let mut rib = Rib::default();
    let p = local(&mut rib, "10.244.1.0/26");
    let a = export(
        &node(None),
        &target(9, false, false, NextHopMode::Auto),
        &rib,
        p,
        &[],
    )
    .unwrap();
    assert!(a.as_path.is_empty());
    assert_eq!(a.local_pref, Some(100));
    assert_eq!(a.next_hop, Some(Ipv4Addr::new(10, 0, 0, 1)));
    assert!(
        a.communities.is_empty(),
        "outside the prefixAdvertisements cidr"
    );
}

#[test]
fn never_transit_between_external_peers() {
    let mut rib = Rib::default();
    let p = learned(&mut rib, 1, true, "198.51.100.0/24", &[65001]);
    let r = export(
        &node(None),
        &target(2, true, false, NextHopMode::Auto),
        &rib,
        p,
        &[],
    );
    assert!(matches!(r, Err(NotExported::Policy(_))), "{r:?}");
}

#[test]
fn external_route_to_ibgp_keeps_next_hop_and_med_in_auto_mode() {
    let mut rib = Rib::default();
    let p = learned(&mut rib, 1, true, "198.51.100.0/24", &[65001]);
    let a = export(
        &node(None),
        &target(2, false, false, NextHopMode::Auto),
        &rib,
        p,
        &[],
    )
    .unwrap();
    assert_eq!(a.next_hop, Some(Ipv4Addr::new(192, 0, 2, 1)));
    assert_eq!(a.as_path[0].asns, vec![65001]);
    assert_eq!(a.med, Some(7));
    let s = export(
        &node(None),
        &target(2, false, false, NextHopMode::SelfHop),
        &rib,
        p,
        &[],
    )
    .unwrap();
    assert_eq!(
        s.next_hop,
        Some(Ipv4Addr::new(10, 0, 0, 1)),
        "nextHopMode Self"
    );
}

#[test]
fn never_back_to_the_sender() {
    let mut rib = Rib::default();
    let p = learned(&mut rib, 1, false, "10.244.2.0/26", &[]);
    let r = export(
        &node(Some("1.1.1.1")),
        &target(1, false, true, NextHopMode::Auto),
        &rib,
        p,
        &[1],
    );
    assert_eq!(r, Err(NotExported::SplitHorizon));
}

#[test]
fn ibgp_route_to_ibgp_needs_reflection() {
    let mut rib = Rib::default();
    let p = learned(&mut rib, 1, false, "10.244.2.0/26", &[]);
    let r = export(
        &node(None),
        &target(2, false, false, NextHopMode::Auto),
        &rib,
        p,
        &[],
    );
    assert_eq!(
        r,
        Err(NotExported::IbgpWithoutReflection),
        "iBGP split horizon"
    );
    // A reflector does not reflect between two non-clients (RFC 4456 §6).
    let r = export(
        &node(Some("1.1.1.1")),
        &target(2, false, false, NextHopMode::Auto),
        &rib,
        p,
        &[],
    );
    assert_eq!(r, Err(NotExported::IbgpWithoutReflection));
}

#[test]
fn reflection_sets_originator_and_prepends_cluster_id() {
    let mut rib = Rib::default();
    let p = learned(&mut rib, 1, false, "10.244.2.0/26", &[]);
    // From a client to a non-client.
    let a = export(
        &node(Some("1.1.1.1")),
        &target(2, false, false, NextHopMode::Auto),
        &rib,
        p,
        &[1],
    )
    .unwrap();
    assert_eq!(
        a.originator_id,
        Some("10.0.0.2".parse().unwrap()),
        "router id of the client"
    );
    assert_eq!(a.cluster_list, vec!["1.1.1.1".parse::<Ipv4Addr>().unwrap()]);
    assert_eq!(
        a.next_hop,
        Some(Ipv4Addr::new(192, 0, 2, 1)),
        "reflected routes keep their next hop"
    );
    assert_eq!(a.local_pref, Some(200));
    // From a non-client to a client.
    let b = export(
        &node(Some("1.1.1.1")),
        &target(3, false, true, NextHopMode::Auto),
        &rib,
        p,
        &[],
    )
    .unwrap();
    assert_eq!(b.cluster_list.len(), 1);
}

#[test]
fn reflected_route_to_ebgp_strips_ibgp_attributes() {
    let mut rib = Rib::default();
    let p = learned(&mut rib, 1, false, "10.244.2.0/26", &[]);
    let a = export(
        &node(Some("1.1.1.1")),
        &target(5, true, false, NextHopMode::Auto),
        &rib,
        p,
        &[1],
    )
    .unwrap();
    assert_eq!(a.originator_id, None);
    assert!(a.cluster_list.is_empty());
    assert_eq!(a.local_pref, None);
    assert_eq!(a.med, None, "MED is not passed to another AS");
    assert_eq!(a.next_hop, Some(Ipv4Addr::new(10, 0, 0, 1)));
}

#[test]
fn next_hop_keep_applies_to_ebgp_too() {
    let mut rib = Rib::default();
    let p = learned(&mut rib, 1, false, "10.244.2.0/26", &[]);
    let a = export(
        &node(None),
        &target(5, true, false, NextHopMode::Keep),
        &rib,
        p,
        &[],
    )
    .unwrap();
    assert_eq!(a.next_hop, Some(Ipv4Addr::new(192, 0, 2, 1)));
}

#[test]
fn family_not_negotiated_is_not_exported() {
    let mut rib = Rib::default();
    let p = local(&mut rib, "fd00:96::/108");
    let mut t = target(5, true, false, NextHopMode::Auto);
    t.families = &[Family::Ipv4Unicast];
    assert_eq!(
        export(&node(None), &t, &rib, p, &[]),
        Err(NotExported::FamilyNotNegotiated)
    );
    // With the family negotiated over an IPv4 session, the node's IPv6
    // address is the next hop.
    let t = target(5, true, false, NextHopMode::Auto);
    let a = export(&node(None), &t, &rib, p, &[]).unwrap();
    assert_eq!(
        a.mp_next_hop.unwrap().global,
        "fd00::1".parse::<IpAddr>().unwrap()
    );
}

#[test]
fn unknown_attributes_are_not_re_advertised() {
    let mut rib = Rib::default();
    let p: IpNet = "198.51.100.0/24".parse().unwrap();
    let attrs = PathAttributes {
        origin: Some(Origin::Igp),
        as_path: vec![AsSegment {
            kind: AsSegmentKind::Sequence,
            asns: vec![65001],
        }],
        unknown: vec![petrel_bgp::wire::RawAttribute {
            flags: 0xe0,
            code: 99,
            value: vec![1, 2],
        }],
        ..Default::default()
    };
    rib.insert(
        &source(1, true),
        p,
        0,
        Arc::new(attrs),
        Some("192.0.2.1".parse().unwrap()),
    );
    let a = export(
        &node(None),
        &target(2, false, false, NextHopMode::Auto),
        &rib,
        p,
        &[],
    )
    .unwrap();
    assert!(a.unknown.is_empty());
    // passUnknownAttributes (a route reflector): passed on as received,
    // Partial bit included.
    let rr = NodeConfig {
        pass_unknown_attributes: true,
        ..node(None)
    };
    let a = export(
        &rr,
        &target(2, false, false, NextHopMode::Auto),
        &rib,
        p,
        &[],
    )
    .unwrap();
    assert_eq!(
        a.unknown,
        vec![petrel_bgp::wire::RawAttribute {
            flags: 0xe0,
            code: 99,
            value: vec![1, 2],
        }]
    );
}

#[test]
fn export_filter_can_allow_transit() {
    let mut rib = Rib::default();
    let p = learned(&mut rib, 1, true, "198.51.100.0/24", &[65001]);
    let mut n = node(None);
    let spec: petrel_crd::BgpFilterSpec = serde_json::from_value(serde_json::json!({
        "exportV4": [{"action": "Accept", "matchOperator": "In", "cidr": "198.51.100.0/24"}]
    }))
    .unwrap();
    n.filters.insert("transit".into(), spec);
    let filters = vec!["transit".to_string()];
    let mut t = target(2, true, false, NextHopMode::Auto);
    t.filters = &filters;
    let a = export(&n, &t, &rib, p, &[]).unwrap();
    assert_eq!(a.as_path[0].asns, vec![LOCAL_AS, 65001]);
}

#[test]
fn other_family_next_hop_comes_from_the_session_interface() {
    let mut rib = Rib::default();
    let p = local(&mut rib, "fd00:96::/108");
    let mut t = target(5, true, false, NextHopMode::Auto);
    t.other_family_hop = Some("fd00:11::1".parse().unwrap());
    let a = export(&node(None), &t, &rib, p, &[]).unwrap();
    assert_eq!(
        a.mp_next_hop.unwrap().global,
        "fd00:11::1".parse::<IpAddr>().unwrap()
    );
}

fn with_community(rib: &mut Rib, peer: u32, ebgp: bool, prefix: &str, community: u32) -> IpNet {
    let p: IpNet = prefix.parse().unwrap();
    let attrs = PathAttributes {
        origin: Some(Origin::Igp),
        communities: vec![community],
        ..Default::default()
    };
    let src = if peer == 0 {
        PathSource::local("10.0.0.1".parse().unwrap())
    } else {
        source(peer, ebgp)
    };
    let hop: Option<IpAddr> = (peer != 0).then(|| format!("192.0.2.{peer}").parse().unwrap());
    rib.insert(&src, p, 0, Arc::new(attrs), hop);
    p
}

#[test]
fn no_advertise_goes_to_no_peer() {
    let mut rib = Rib::default();
    // A local route (a block of a pool with disableBGPExport) and a learned one.
    let own = with_community(&mut rib, 0, false, "10.244.9.0/26", NO_ADVERTISE);
    let learned = with_community(&mut rib, 1, false, "10.244.2.0/26", NO_ADVERTISE);
    let rr = node(Some("1.1.1.1"));
    for (ebgp, client) in [(true, false), (false, true), (false, false)] {
        let t = target(2, ebgp, client, NextHopMode::Auto);
        assert_eq!(
            export(&rr, &t, &rib, own, &[]),
            Err(NotExported::NoAdvertise)
        );
        assert_eq!(
            export(&rr, &t, &rib, learned, &[1]),
            Err(NotExported::NoAdvertise)
        );
    }
}

#[test]
fn no_export_stays_inside_the_as() {
    for c in [NO_EXPORT, NO_EXPORT_SUBCONFED] {
        let mut rib = Rib::default();
        let own = with_community(&mut rib, 0, false, "10.244.9.0/26", c);
        let n = node(None);
        assert_eq!(
            export(
                &n,
                &target(2, true, false, NextHopMode::Auto),
                &rib,
                own,
                &[]
            ),
            Err(NotExported::NoExport)
        );
        let ibgp = export(
            &n,
            &target(2, false, false, NextHopMode::Auto),
            &rib,
            own,
            &[],
        )
        .expect("iBGP peers still get it");
        assert!(ibgp.communities.contains(&c), "the community travels on");
    }
}

#[test]
fn another_nodes_routes_stay_inside_the_cluster() {
    let mut rib = Rib::default();
    let p: IpNet = "10.244.2.0/26".parse().unwrap();
    let node2 = Arc::new(PathSource {
        cluster_node: true,
        ..(*source(1, false)).clone()
    });
    let attrs = PathAttributes {
        origin: Some(Origin::Igp),
        ..Default::default()
    };
    rib.insert(
        &node2,
        p,
        0,
        Arc::new(attrs),
        Some("10.0.2.1".parse().unwrap()),
    );
    let tor = target(2, true, false, NextHopMode::Auto);
    // A mesh node does not pass node2's route to the ToR (external)...
    let r = export(&node(None), &tor, &rib, p, &[]);
    assert!(matches!(r, Err(NotExported::Policy(_))), "{r:?}");
    // ...but sends its own.
    let own = local(&mut rib, "10.244.1.0/26");
    assert!(export(&node(None), &tor, &rib, own, &[]).is_ok());
    // A route reflector speaks for its clients: it passes them on.
    let rr = node(Some("1.1.1.1"));
    assert!(export(&rr, &tor, &rib, p, &[1]).is_ok());
    // And reflects them to another client node.
    let mut client = target(3, false, true, NextHopMode::Auto);
    client.cluster_node = true;
    assert!(export(&rr, &client, &rib, p, &[1]).is_ok());
}

#[test]
fn a_draining_node_marks_what_it_originates_only() {
    let mut rib = Rib::default();
    let own = local(&mut rib, "10.244.1.0/26");
    let other = learned(&mut rib, 3, false, "10.244.2.0/26", &[]);
    let n = node(Some("10.0.0.1"));
    let mut ibgp = target(1, false, true, NextHopMode::Auto);
    ibgp.draining = true;
    let mut ebgp = target(2, true, false, NextHopMode::Auto);
    ebgp.draining = true;
    let a = export(&n, &ibgp, &rib, own, &[]).unwrap();
    assert!(a.communities.contains(&crate::drain::GRACEFUL_SHUTDOWN));
    assert_eq!(a.local_pref, Some(0));
    let e = export(&n, &ebgp, &rib, own, &[]).unwrap();
    assert!(e.communities.contains(&crate::drain::GRACEFUL_SHUTDOWN));
    assert_eq!(e.local_pref, None, "no LOCAL_PREF toward eBGP");
    // A reflected route keeps its attributes.
    let r = export(&n, &ibgp, &rib, other, &[3]).unwrap();
    assert!(!r.communities.contains(&crate::drain::GRACEFUL_SHUTDOWN));
    assert_eq!(r.local_pref, Some(200));
    // Not draining: nothing added.
    ibgp.draining = false;
    let a = export(&n, &ibgp, &rib, own, &[]).unwrap();
    assert!(!a.communities.contains(&crate::drain::GRACEFUL_SHUTDOWN));
    assert_eq!(a.local_pref, Some(100));
}
