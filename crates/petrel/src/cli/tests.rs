use super::*;

fn peer(name: &str, address: &str, state: &str) -> pb::Peer {
    pb::Peer {
        name: name.into(),
        address: address.into(),
        peer_as: 65002,
        state: state.into(),
        uptime_seconds: 3723,
        prefixes_received: 2,
        prefixes_accepted: 2,
        prefixes_advertised: 1,
        ..Default::default()
    }
}

fn route(prefix: &str, peer: &str, best: bool) -> pb::Route {
    pb::Route {
        prefix: prefix.into(),
        next_hop: "10.0.0.2".into(),
        peer: peer.into(),
        as_path: vec![65002],
        best,
        ..Default::default()
    }
}

fn dataplane() -> pb::GetDataplaneResponse {
    pb::GetDataplaneResponse {
        desired: 2,
        installed: 2,
        converged: true,
        table: 254,
        protocol: 200,
        ..Default::default()
    }
}

#[test]
fn peers_filter_by_address_normalised_or_name() {
    let peers = vec![
        peer("bgppeer/bird-v4", "10.0.0.2", "Established"),
        peer("bgppeer/bird-v6", "fd00:10::2", "Active"),
    ];
    let by_v6 = filter_peers(peers.clone(), "fd00:10:0::2");
    assert_eq!(by_v6.len(), 1);
    assert_eq!(by_v6[0].name, "bgppeer/bird-v6");
    assert_eq!(
        filter_peers(peers.clone(), "bgppeer/bird-v4")[0].address,
        "10.0.0.2"
    );
    assert!(filter_peers(peers, "10.0.0.3").is_empty());
}

#[test]
fn routes_filter_exact_or_covering() {
    let routes = vec![
        route("198.51.100.0/24", "bgppeer/bird-v4", true),
        route("198.51.0.0/16", "bgppeer/bird-v4", true),
        route("198.51.100.128/25", "bgppeer/bird-v4", true),
        route("203.0.113.0/24", "bgppeer/bird-v4", true),
        route("2001:db8:100::/48", "bgppeer/bird-v6", true),
    ];
    let q = parse_prefix("198.51.100.0/24").unwrap();
    let got: Vec<String> = filter_routes(routes.clone(), &q)
        .into_iter()
        .map(|r| r.prefix)
        .collect();
    assert_eq!(got, ["198.51.100.0/24", "198.51.0.0/16"]);
    let host = parse_prefix("198.51.100.200").unwrap();
    assert_eq!(host.to_string(), "198.51.100.200/32");
    assert_eq!(filter_routes(routes.clone(), &host).len(), 3);
    let v6 = parse_prefix("2001:db8:100:1::/64").unwrap();
    assert_eq!(filter_routes(routes, &v6)[0].prefix, "2001:db8:100::/48");
}

#[test]
fn prefix_queries_are_parsed_or_rejected() {
    assert_eq!(
        parse_prefix("198.51.100.7/24").unwrap().to_string(),
        "198.51.100.0/24"
    );
    let e = parse_prefix("nope").unwrap_err();
    assert!(e.contains("neither a prefix"), "{e}");
}

#[test]
fn yaml_and_json_render_the_same_fields() {
    let peers = vec![peer("bgppeer/bird-v4", "10.0.0.2", "Established")];
    let yaml = render(&peers, Output::Yaml, |_| unreachable!()).unwrap();
    let from_yaml: serde_json::Value = serde_saphyr::from_str(&yaml).unwrap();
    let json = render(&peers, Output::Json, |_| unreachable!()).unwrap();
    let from_json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(from_yaml, from_json);
    assert_eq!(from_json[0]["address"], "10.0.0.2");
    assert_eq!(from_json[0]["state"], "Established");
    let table = render(&peers, Output::Table, |p| peers_table(p, false)).unwrap();
    assert!(table.contains("1h02m03s"), "{table}");
}

#[test]
fn status_counts_states_and_lists_peers() {
    let mut down = peer("node-mesh/node3", "10.0.0.3", "Active");
    down.last_error = "connection refused".into();
    let peers = vec![
        peer("bgppeer/bird-v4", "10.0.0.2", "Established"),
        down,
        peer("bgppeer/bird-v6", "fd00:10::2", "Established"),
    ];
    let s = status_text(Some("petrel"), &peers, &dataplane());
    assert!(
        s.starts_with("petrel agent is running on node petrel.\n"),
        "{s}"
    );
    assert!(
        s.contains("BGP sessions: 3 peers: 2 Established, 1 Active\n"),
        "{s}"
    );
    assert!(s.contains("2 received, 2 accepted, 1 sent"), "{s}");
    assert!(s.contains("connection refused"), "{s}");
    assert!(s.contains("fd00:10::2"), "{s}");
    assert!(
        s.contains(
            "Dataplane (table 254, protocol 200): 2 desired, 2 installed, 0 stale, converged: yes"
        ),
        "{s}"
    );
    assert!(!s.contains("see `petrel dataplane`"), "{s}");
}

#[test]
fn status_without_peers_and_with_dataplane_problems() {
    let mut d = dataplane();
    d.converged = false;
    d.unresolved.push(pb::Unresolved {
        prefix: "10.1.0.0/24".into(),
        next_hop: "192.0.2.1".into(),
    });
    d.conflicts = vec!["10.2.0.0/24".into(), "10.3.0.0/24".into()];
    let s = status_text(None, &[], &d);
    assert!(s.starts_with("petrel agent is running.\n"), "{s}");
    assert!(s.contains("BGP sessions: 0 peers\n"), "{s}");
    assert!(!s.contains("PEER ADDRESS"), "{s}");
    assert!(s.contains("converged: no"), "{s}");
    assert!(
        s.contains("1 route with a next hop that does not resolve"),
        "{s}"
    );
    assert!(s.contains("2 routes held by another protocol"), "{s}");
    assert!(!s.contains("rejected by the kernel"), "{s}");
}

fn peer_route(prefix: &str, accepted: bool, reason: &str) -> pb::PeerRoute {
    pb::PeerRoute {
        peer: "bgppeer/tor".into(),
        peer_address: "10.0.1.2".into(),
        prefix: prefix.into(),
        next_hop: "10.0.1.2".into(),
        as_path: vec![65000, 65010],
        origin: "igp".into(),
        has_med: true,
        med: 7,
        communities: vec!["65000:1".into()],
        large_communities: vec!["65000:1:2".into()],
        accepted,
        reject_reason: reason.into(),
        ..Default::default()
    }
}

#[test]
fn received_routes_show_the_import_verdict() {
    let routes = vec![
        peer_route("10.244.0.0/29", true, ""),
        peer_route("0.0.0.0/0", false, "default route from an external peer"),
    ];
    let text = peer_routes_text(&routes, true, false);
    assert!(text.contains("IMPORT"), "{text}");
    assert!(text.contains("accepted"), "{text}");
    assert!(
        text.contains("rejected: default route from an external peer"),
        "{text}"
    );
    assert!(
        text.contains("65000 65010") && text.contains("65000:1"),
        "{text}"
    );
    assert!(
        !text.contains("PATH ID") && !text.contains("65000:1:2"),
        "{text}"
    );
    let wide = peer_routes_text(&routes, true, true);
    assert!(
        wide.contains("PATH ID") && wide.contains("65000:1:2"),
        "{wide}"
    );
    // Advertised routes have no import column.
    let adv = peer_routes_text(&routes[..1], false, false);
    assert!(
        !adv.contains("IMPORT") && !adv.contains("accepted"),
        "{adv}"
    );
    // JSON keeps the fields under their proto names.
    let j = serde_json::to_value(&routes).unwrap();
    assert_eq!(j[1]["accepted"], false);
    assert_eq!(j[1]["reject_reason"], "default route from an external peer");
    assert_eq!(j[0]["peer_address"], "10.0.1.2");
}

#[test]
fn kernel_routes_render_next_hops_like_ip_route() {
    let k = pb::ListKernelRoutesResponse {
        table: 254,
        protocol: 200,
        routes: vec![
            pb::KernelRoute {
                prefix: "10.244.1.0/29".into(),
                r#type: "unicast".into(),
                next_hops: vec![
                    pb::KernelNextHop {
                        gateway: "10.0.1.2".into(),
                        interface: "eth1".into(),
                        weight: 1,
                    },
                    pb::KernelNextHop {
                        gateway: "10.0.4.2".into(),
                        interface: "eth2".into(),
                        weight: 1,
                    },
                ],
                protocol: 200,
                owned: true,
                metric: 0,
            },
            pb::KernelRoute {
                prefix: "10.244.0.0/29".into(),
                r#type: "blackhole".into(),
                // As the kernel reports IPv6 blackholes.
                next_hops: vec![pb::KernelNextHop {
                    interface: "lo".into(),
                    weight: 1,
                    ..Default::default()
                }],
                protocol: 200,
                owned: true,
                ..Default::default()
            },
        ],
    };
    let text = kernel_routes_text(&k, false);
    assert!(
        text.starts_with("table 254, protocol 200: 2 routes"),
        "{text}"
    );
    assert!(
        text.contains("via 10.0.1.2 dev eth1 weight 1, via 10.0.4.2 dev eth2 weight 1"),
        "{text}"
    );
    assert!(
        text.contains("blackhole") && !text.contains("dev lo"),
        "{text}"
    );
    assert!(!text.contains("METRIC"), "{text}");
    assert!(kernel_routes_text(&k, true).contains("METRIC"));
}

#[test]
fn services_list_advertised_and_rejected() {
    let s = pb::ListServicesResponse {
        enabled: true,
        advertised: vec!["10.96.0.0/12".into(), "192.0.2.10/32".into()],
        rejections: vec![pb::ServiceRejection {
            service: "default/web".into(),
            kind: "external-ip".into(),
            address: "198.51.100.9".into(),
            reason: "outside-cidrs".into(),
            message: "not inside any serviceExternalIPs CIDR".into(),
        }],
    };
    let text = services_text(&s);
    assert!(
        text.contains("2 service prefixes advertised: 10.96.0.0/12, 192.0.2.10/32"),
        "{text}"
    );
    assert!(
        text.contains("1 service addresses not advertised"),
        "{text}"
    );
    assert!(
        text.contains("default/web") && text.contains("not inside any serviceExternalIPs CIDR"),
        "{text}"
    );
    assert!(services_text(&pb::ListServicesResponse::default()).contains("does not run"));
}

#[test]
fn wide_peers_add_columns() {
    let mut p = peer("mesh/node2", "10.0.0.2", "Established");
    p.peer_router_id = "10.0.0.2".into();
    p.hold_time = 90;
    p.families = vec!["ipv4-unicast".into()];
    p.messages_received = 12;
    p.messages_sent = 9;
    p.last_notification = "received Cease/Administrative Reset".into();
    let narrow = peers_table(std::slice::from_ref(&p), false);
    assert!(
        !narrow.contains("ROUTER ID") && !narrow.contains("12/9"),
        "{narrow}"
    );
    let wide = peers_table(&[p], true);
    for needle in [
        "ROUTER ID",
        "90s",
        "ipv4-unicast",
        "12/9",
        "Administrative Reset",
    ] {
        assert!(wide.contains(needle), "no {needle} in {wide}");
    }
}

#[test]
fn status_extras_summarise_ipam_and_services() {
    let block = |cidr: &str, owner: &str| pb::IpamBlock {
        cidr: cidr.into(),
        owner_node: owner.into(),
        ..Default::default()
    };
    let ipam = pb::GetIpamStatusResponse {
        node: "node1".into(),
        ready: true,
        blocks: vec![
            block("10.244.0.0/29", "node1"),
            block("fd00:244::/122", "node1"),
            block("10.244.0.8/29", "node2"),
        ],
        allocations: vec![pb::Allocation::default()],
        ..Default::default()
    };
    let services = pb::ListServicesResponse {
        enabled: true,
        advertised: vec!["10.96.0.0/12".into()],
        rejections: vec![pb::ServiceRejection::default()],
    };
    let text = status::extras_text(Some(&ipam), Some(&services));
    assert!(
        text.contains(
            "IPAM: ready, 2 blocks of this node: 10.244.0.0/29, fd00:244::/122, 1 pod allocation"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "Services: 1 prefixes advertised, 1 addresses not advertised (see `petrel services`)"
        ),
        "{text}"
    );
    assert_eq!(status::extras_text(None, None), "");
}

#[test]
fn graceful_restart_shows_in_peers_and_routes() {
    let mut p = peer("mesh/node2", "10.0.0.2", "Idle");
    p.graceful_restart = "restarting".into();
    p.stale_routes = 3;
    p.graceful_restart_remaining_seconds = 97;
    let t = peers_table(&[p], false);
    assert!(
        t.contains("Idle (graceful restart: restarting, 3 stale routes, 97s left)"),
        "{t}"
    );
    let mut r = route("10.65.1.0/26", "mesh/node2", true);
    r.stale = true;
    let t = routes_table(&[r, route("10.65.2.0/26", "mesh/node3", true)], false);
    assert!(t.contains("*S") && t.matches("*S").count() == 1, "{t}");
}

/// Issue 12: `petrel status` shows invalid objects, each with its reason.
#[test]
fn status_shows_the_configuration_line() {
    let ok = pb::GetConfigStatusResponse {
        loaded: true,
        problems: vec![],
        draining: String::new(),
    };
    assert_eq!(status::config_text(&ok), "Configuration: ok\n");
    let problem = |kind: &str, name: &str, reason: &str| pb::ConfigProblem {
        kind: kind.into(),
        name: name.into(),
        reason: reason.into(),
    };
    let bad = pb::GetConfigStatusResponse {
        loaded: true,
        problems: vec![
            problem(
                "BGPPeer",
                "tor",
                "spec.password: Secret \"bgp-passwords\" has no key \"bird\"; keeping the last password",
            ),
            problem(
                "BGPPeer",
                "tor",
                "spec.filters: BGPFilter \"f\" not found; keeping the last filters",
            ),
            problem(
                "IPPool",
                "aaa-overlap",
                "spec.cidr: overlaps IPPool pods (left out)",
            ),
        ],
        draining: String::new(),
    };
    let text = status::config_text(&bad);
    assert!(
        text.starts_with("Configuration: 2 invalid objects"),
        "{text}"
    );
    assert!(
        text.contains(
            "\n  BGPPeer/tor: spec.password: Secret \"bgp-passwords\" has no key \"bird\""
        ),
        "{text}"
    );
    assert!(
        text.contains("\n  IPPool/aaa-overlap: spec.cidr: overlaps IPPool pods"),
        "{text}"
    );
    let none = pb::GetConfigStatusResponse::default();
    assert_eq!(
        status::config_text(&none),
        "Configuration: not loaded yet\n"
    );
}

/// Issue 18: `petrel status` shows that the node drains, and why.
#[test]
fn status_shows_the_drain() {
    let draining = pb::GetConfigStatusResponse {
        loaded: true,
        problems: vec![],
        draining: "node cordoned (spec.unschedulable)".into(),
    };
    assert_eq!(
        status::config_text(&draining),
        "Configuration: ok\nDraining: node cordoned (spec.unschedulable) \
         (routes advertised with GRACEFUL_SHUTDOWN)\n"
    );
}
