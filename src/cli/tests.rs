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

fn dataplane() -> pb::Dataplane {
    pb::Dataplane {
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
    let table = render(&peers, Output::Table, |p| peers_table(p)).unwrap();
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
