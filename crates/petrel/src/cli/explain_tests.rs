use super::*;

fn ipam() -> pb::GetIpamStatusResponse {
    let block = |cidr: &str, owner: &str, gw: &str| pb::IpamBlock {
        cidr: cidr.into(),
        pool: "default".into(),
        owner_node: owner.into(),
        state: pb::BlockState::Confirmed as i32,
        used: 1,
        free: 61,
        export: true,
        gateway: gw.into(),
    };
    pb::GetIpamStatusResponse {
        node: "node1".into(),
        ready: true,
        pools: vec![pb::IpPoolStatus {
            name: "default".into(),
            cidr: "10.65.0.0/16".into(),
            block_size: 26,
            family: pb::IpFamily::Ipv4 as i32,
            ..Default::default()
        }],
        blocks: vec![
            block("10.65.0.0/26", "node1", "10.65.0.1"),
            block("10.65.1.0/26", "node2", "10.65.1.1"),
        ],
        allocations: vec![pb::Allocation {
            container_id: "c1".into(),
            ifname: "eth0".into(),
            pod_namespace: "default".into(),
            pod_name: "web".into(),
            addresses: vec![pb::AllocatedAddress {
                address: "10.65.0.5/26".into(),
                block: "10.65.0.0/26".into(),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn path(prefix: &str, peer: &str, hop: &str, best: bool, reason: &str) -> pb::Route {
    pb::Route {
        prefix: prefix.into(),
        next_hop: hop.into(),
        peer: peer.into(),
        as_path: vec![],
        best,
        reason: reason.into(),
        ..Default::default()
    }
}

fn inputs() -> Inputs {
    Inputs {
        ipam: Some(ipam()),
        routes: vec![
            path("10.65.0.0/16", "bgppeer/tor", "10.0.0.254", true, ""),
            path("10.65.1.0/26", "mesh/node2", "10.0.0.2", true, ""),
            path(
                "10.65.1.0/26",
                "mesh/node3",
                "10.0.0.3",
                false,
                "higher router id",
            ),
            path("10.65.0.0/26", "local", "", true, ""),
        ],
        peers: vec![pb::Peer {
            name: "mesh/node2".into(),
            address: "10.0.0.2".into(),
            peer_as: 65001,
            state: "Established".into(),
            uptime_seconds: 61,
            ..Default::default()
        }],
        kernel: Some(pb::KernelRoute {
            prefix: "10.65.1.0/26".into(),
            r#type: "unicast".into(),
            next_hops: vec![pb::KernelNextHop {
                gateway: "10.0.0.2".into(),
                interface: "eth0".into(),
                weight: 1,
            }],
            protocol: 200,
            owned: true,
            metric: 0,
        }),
        kernel_known: true,
        services: Some(pb::ListServicesResponse {
            enabled: true,
            advertised: vec!["10.96.0.0/12".into()],
            rejections: vec![pb::ServiceRejection {
                service: "default/lb".into(),
                kind: "load-balancer-ip".into(),
                address: "192.0.2.10".into(),
                reason: "no-ready-local-endpoint".into(),
                message: "traffic policy Local and no ready IPv4 endpoint on this node".into(),
            }],
        }),
    }
}

#[test]
fn remote_pod_names_owner_route_peer_and_kernel() {
    let e = explain("10.65.1.7".parse().unwrap(), &inputs());
    assert_eq!(e.node, "node1");
    assert_eq!(e.ipam.pool.as_ref().unwrap().name, "default");
    let b = e.ipam.block.as_ref().unwrap();
    assert_eq!(
        (b.cidr.as_str(), b.owner_node.as_str()),
        ("10.65.1.0/26", "node2")
    );
    assert!(!e.ipam.block_local && e.ipam.allocation.is_none());
    let r = e.route.as_ref().unwrap();
    assert_eq!(r.prefix, "10.65.1.0/26", "longest match, not the /16");
    assert_eq!(r.paths.len(), 2);
    assert_eq!(r.best.as_ref().unwrap().peer, "mesh/node2");
    assert_eq!(e.peer.as_ref().unwrap().state, "Established");
    assert_eq!(e.kernel.as_ref().unwrap().prefix, "10.65.1.0/26");
    assert!(e.warnings.is_empty(), "{:?}", e.warnings);
    let text = explain_text(&e);
    for needle in [
        "10.65.1.0/26 owned by node2",
        "via 10.0.0.2 from mesh/node2",
        "mesh/node2 10.0.0.2 AS 65001: Established for 0h01m01s",
        "10.65.1.0/26 via 10.0.0.2 dev eth0 (petrel)",
        "higher router id",
        "not on this node",
    ] {
        assert!(text.contains(needle), "no {needle:?} in\n{text}");
    }
    let j = serde_json::to_value(&e).unwrap();
    assert_eq!(j["ipam"]["block"]["state"], "BLOCK_STATE_CONFIRMED");
    assert_eq!(j["route"]["best"]["next_hop"], "10.0.0.2");
    assert_eq!(j["peer"]["address"], "10.0.0.2");
}

#[test]
fn local_pod_names_the_attachment() {
    let e = explain("10.65.0.5".parse().unwrap(), &inputs());
    assert!(e.ipam.block_local);
    let a = e.ipam.allocation.as_ref().unwrap();
    assert_eq!(
        (a.container_id.as_str(), a.pod_name.as_str()),
        ("c1", "web")
    );
    assert!(e.peer.is_none(), "local route has no session");
    let text = explain_text(&e);
    assert!(
        text.contains("pod default/web, container c1 interface eth0"),
        "{text}"
    );
    assert!(text.contains("originated by this node"), "{text}");
    // The gateway is named as such; a free address of ours is a warning.
    let gw = explain("10.65.0.1".parse().unwrap(), &inputs());
    assert!(
        gw.ipam.gateway && gw.warnings.is_empty(),
        "{:?}",
        gw.warnings
    );
    let free = explain("10.65.0.9".parse().unwrap(), &inputs());
    assert!(
        free.warnings
            .iter()
            .any(|w| w.contains("allocated to no pod")),
        "{:?}",
        free.warnings
    );
}

#[test]
fn problems_become_warnings() {
    let mut i = inputs();
    i.peers[0].state = "Active".into();
    i.kernel = Some(pb::KernelRoute {
        prefix: "0.0.0.0/0".into(),
        r#type: "unicast".into(),
        protocol: 4,
        ..Default::default()
    });
    let e = explain("10.65.1.7".parse().unwrap(), &i);
    assert!(
        e.warnings
            .iter()
            .any(|w| w.contains("is Active, not Established")),
        "{:?}",
        e.warnings
    );
    assert!(
        e.warnings
            .iter()
            .any(|w| w.contains("10.65.1.0/26 is not in the kernel: the kernel uses 0.0.0.0/0")),
        "{:?}",
        e.warnings
    );
    let none = explain("172.16.0.1".parse().unwrap(), &i);
    assert!(none.route.is_none() && none.ipam.pool.is_none());
    assert!(
        none.warnings
            .iter()
            .any(|w| w.contains("no route in the Loc-RIB"))
    );
}

#[test]
fn service_addresses_advertised_or_rejected() {
    let e = explain("10.96.0.10".parse().unwrap(), &inputs());
    assert_eq!(e.service.advertised, vec!["10.96.0.0/12"]);
    assert!(explain_text(&e).contains("advertised here as 10.96.0.0/12"));
    let e = explain("192.0.2.10".parse().unwrap(), &inputs());
    assert_eq!(e.service.rejections.len(), 1);
    assert!(
        e.warnings
            .iter()
            .any(|w| w.contains("not advertised by this node: traffic policy Local")),
        "{:?}",
        e.warnings
    );
}

#[test]
fn a_stale_route_is_a_warning_with_the_time_left() {
    let mut i = inputs();
    i.routes[1].stale = true;
    i.peers[0].state = "Idle".into();
    i.peers[0].graceful_restart = "restarting".into();
    i.peers[0].graceful_restart_remaining_seconds = 97;
    let e = explain("10.65.1.7".parse().unwrap(), &i);
    assert!(
        e.warnings
            .iter()
            .any(|w| w.contains("10.65.1.0/26 is stale")
                && w.contains("mesh/node2 is restarting")
                && w.contains("withdrawn in 97s")),
        "{:?}",
        e.warnings
    );
    let fresh = explain("10.65.1.7".parse().unwrap(), &inputs());
    assert!(!fresh.warnings.iter().any(|w| w.contains("stale")));
}
