//! Tests of `resolve`: Calico's peering semantics for one node.

use super::super::resolved::{
    BindMode, Community, NextHopMode, NodeConfig, PeerConfig, PeerOrigin,
};
use super::super::*;
use super::load;
use petrel_bgp::wire::Family;
use std::net::IpAddr;
use std::time::Duration;

fn node(name: &str, labels: &str, annotations: &str, internal_ips: &[&str]) -> String {
    let addrs: String = internal_ips
        .iter()
        .map(|a| format!("    - {{type: InternalIP, address: \"{a}\"}}\n"))
        .collect();
    format!(
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: {name}\n  labels: {{{labels}}}\n  annotations: {{{annotations}}}\nstatus:\n  addresses:\n{addrs}---\n"
    )
}

fn peer(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: petrel.dev/v1\nkind: BGPPeer\nmetadata:\n  name: {name}\nspec:\n{spec}\n---\n"
    )
}

fn config(spec: &str) -> String {
    format!(
        "apiVersion: petrel.dev/v1\nkind: BGPConfiguration\nmetadata: {{name: default}}\nspec:\n{spec}\n---\n"
    )
}

/// Three IPv4 nodes a (.1), b (.2), c (.10), labelled by rack.
fn three_nodes() -> String {
    node("a", "rack: r1", "", &["10.0.0.1"])
        + &node("b", "rack: r1", "", &["10.0.0.2"])
        + &node("c", "rack: r2", "", &["10.0.0.10"])
}

fn resolve_for(objects: &str, node_name: &str) -> NodeConfig {
    let s = load(&[("all.yaml", objects)]).unwrap_or_else(|e| panic!("manifests must load: {e}"));
    resolve(&s, node_name).unwrap_or_else(|e| panic!("{node_name} must resolve: {e}"))
}

fn origins(cfg: &NodeConfig) -> Vec<String> {
    let mut v: Vec<String> = cfg.peers.keys().map(ToString::to_string).collect();
    v.sort();
    v
}

fn get(cfg: &NodeConfig, origin: PeerOrigin) -> &PeerConfig {
    cfg.peers
        .get(&origin)
        .unwrap_or_else(|| panic!("no peer {origin}; have {:?}", origins(cfg)))
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn full_mesh_with_defaults() {
    let cfg = resolve_for(&three_nodes(), "a");
    assert_eq!(origins(&cfg), ["mesh/b", "mesh/c"]);
    assert_eq!(cfg.local_as, 64512);
    assert_eq!(cfg.router_id.to_string(), "10.0.0.1");
    assert_eq!(cfg.listen_port, 179);
    assert_eq!(cfg.bind_mode, BindMode::None);
    let b = get(&cfg, PeerOrigin::Mesh("b".into()));
    assert_eq!(b.address, ip("10.0.0.2"));
    assert_eq!((b.port, b.peer_as, b.local_as), (179, 64512, 64512));
    assert_eq!(b.source_address, Some(ip("10.0.0.1")));
    assert_eq!(b.hold_time, Duration::from_secs(90));
    assert_eq!(b.keepalive_time, None);
    assert_eq!(b.max_restart_time, Duration::from_secs(120));
    assert_eq!(b.next_hop_mode, NextHopMode::Auto);
    assert_eq!(
        (b.num_allowed_local_as, b.ttl_security, b.max_prefixes),
        (0, None, None)
    );
    assert_eq!(b.families, [Family::Ipv4Unicast]);
    assert!(b.password.is_none() && b.filters.is_empty() && !b.route_reflector_client);
}

#[test]
fn mesh_lower_address_is_passive_by_calicos_text_order() {
    let objs = three_nodes();
    let a = resolve_for(&objs, "a");
    let b = resolve_for(&objs, "b");
    // a (10.0.0.1) waits for b (10.0.0.2); b connects to a.
    assert!(get(&a, PeerOrigin::Mesh("b".into())).passive);
    assert!(!get(&b, PeerOrigin::Mesh("a".into())).passive);
    // Text order: "10.0.0.10" < "10.0.0.2", so c waits for b and b connects to c.
    let c = resolve_for(&objs, "c");
    assert!(!get(&b, PeerOrigin::Mesh("c".into())).passive);
    // Exactly one side of every pair connects.
    for (x, y, cx, cy) in [("a", "c", &a, &c), ("a", "b", &a, &b)] {
        let px = get(cx, PeerOrigin::Mesh(y.into())).passive;
        let py = get(cy, PeerOrigin::Mesh(x.into())).passive;
        assert_ne!(px, py, "{x}-{y}");
    }
}

#[test]
fn mesh_settings_and_disabling() {
    let secret =
        "apiVersion: v1\nkind: Secret\nmetadata: {name: mesh}\nstringData: {pw: m3sh}\n---\n";
    let objs = three_nodes()
        + secret
        + &config(
            "  listenPort: 1179\n  nodeMeshPassword: {secretKeyRef: {name: mesh, key: pw}}\n  nodeMeshMaxRestartTime: 300s\n  bindMode: NodeIP",
        );
    let cfg = resolve_for(&objs, "a");
    let b = get(&cfg, PeerOrigin::Mesh("b".into()));
    assert_eq!(b.password.as_deref(), Some("m3sh"));
    assert_eq!(b.max_restart_time, Duration::from_secs(300));
    assert_eq!(b.port, 1179);
    assert_eq!(cfg.listen_port, 1179);
    assert_eq!(cfg.bind_mode, BindMode::NodeIp);

    let off = three_nodes() + &config("  nodeToNodeMeshEnabled: false");
    assert!(resolve_for(&off, "a").peers.is_empty());
}

#[test]
fn mesh_uses_each_nodes_as_number() {
    let objs = node("a", "", "petrel.dev/as-number: '65001'", &["10.0.0.1"])
        + &node("b", "", "petrel.dev/as-number: '65002'", &["10.0.0.2"])
        + &config("  asNumber: 65000");
    let cfg = resolve_for(&objs, "a");
    assert_eq!(cfg.local_as, 65001);
    let b = get(&cfg, PeerOrigin::Mesh("b".into()));
    assert_eq!((b.local_as, b.peer_as), (65001, 65002));
}

#[test]
fn dual_stack_mesh_runs_one_session_per_family() {
    let objs = node(
        "a",
        "",
        "petrel.dev/ipv6-address: 'fd00::1/64'",
        &["10.0.0.1"],
    ) + &node("b", "", "", &["10.0.0.2", "fd00::2"])
        + &node("c", "", "", &["10.0.0.3"]);
    let cfg = resolve_for(&objs, "a");
    assert_eq!(origins(&cfg), ["mesh/b", "mesh/c", "mesh6/b"]);
    let b6 = get(&cfg, PeerOrigin::Mesh6("b".into()));
    assert_eq!(b6.address, ip("fd00::2"));
    assert_eq!(b6.source_address, Some(ip("fd00::1")));
    assert_eq!(b6.families, [Family::Ipv6Unicast]);
    assert_eq!(
        cfg.ipv6_address.map(|n| n.to_string()).as_deref(),
        Some("fd00::1/64")
    );
}

#[test]
fn global_peer_with_port_password_and_options() {
    let secret =
        "apiVersion: v1\nkind: Secret\nmetadata: {name: tor}\ndata: {key: aHVudGVyMg==}\n---\n";
    let filter = "apiVersion: petrel.dev/v1\nkind: BGPFilter\nmetadata: {name: f1}\nspec:\n  exportV4: [{action: Reject}]\n---\n";
    let objs = three_nodes()
        + secret
        + filter
        + &peer(
            "tor",
            "  peerIP: 10.0.0.254:1179\n  asNumber: 65000\n  localASNumber: 64999\n  password: {secretKeyRef: {name: tor, key: key}}\n  ttlSecurity: 1\n  keepaliveTime: 10s\n  holdTime: 30s\n  maxRestartTime: 1m\n  numAllowedLocalASNumbers: 2\n  keepOriginalNextHop: true\n  filters: [f1]\n  passive: true\n  maxPrefixes: 500\n  sourceAddress: None",
        );
    for n in ["a", "b", "c"] {
        let cfg = resolve_for(&objs, n);
        let t = get(&cfg, PeerOrigin::BgpPeer("tor".into()));
        assert_eq!((t.address, t.port), (ip("10.0.0.254"), 1179));
        assert_eq!((t.peer_as, t.local_as), (65000, 64999));
        assert_eq!(t.password.as_deref(), Some("hunter2"));
        assert_eq!(t.ttl_security, Some(1));
        assert_eq!(t.keepalive_time, Some(Duration::from_secs(10)));
        assert_eq!(t.hold_time, Duration::from_secs(30));
        assert_eq!(t.max_restart_time, Duration::from_secs(60));
        assert_eq!(t.num_allowed_local_as, 2);
        // keepOriginalNextHop applies to eBGP peers.
        assert_eq!(t.next_hop_mode, NextHopMode::Keep);
        assert_eq!(t.filters, ["f1"]);
        assert!(t.passive);
        assert_eq!(t.max_prefixes, Some(500));
        assert_eq!(t.source_address, None);
        assert_eq!(cfg.filters.keys().collect::<Vec<_>>(), ["f1"]);
    }
}

#[test]
fn keep_original_next_hop_is_ignored_for_ibgp() {
    let objs = three_nodes()
        + &peer(
            "rr",
            "  peerIP: 10.0.0.250\n  asNumber: 64512\n  keepOriginalNextHop: true",
        );
    let cfg = resolve_for(&objs, "a");
    assert_eq!(
        get(&cfg, PeerOrigin::BgpPeer("rr".into())).next_hop_mode,
        NextHopMode::Auto
    );
    let objs = three_nodes()
        + &peer(
            "rr",
            "  peerIP: 10.0.0.250\n  asNumber: 64512\n  nextHopMode: Self",
        );
    assert_eq!(
        get(&resolve_for(&objs, "a"), PeerOrigin::BgpPeer("rr".into())).next_hop_mode,
        NextHopMode::SelfHop
    );
}

#[test]
fn node_and_node_selector_scope_peers() {
    let objs = three_nodes()
        + &peer(
            "rack1-tor",
            "  nodeSelector: rack == 'r1'\n  peerIP: 10.0.0.253\n  asNumber: 65001",
        )
        + &peer(
            "c-only",
            "  node: c\n  peerIP: 10.0.0.252\n  asNumber: 65002",
        );
    assert!(
        resolve_for(&objs, "a")
            .peers
            .contains_key(&PeerOrigin::BgpPeer("rack1-tor".into()))
    );
    assert!(
        resolve_for(&objs, "b")
            .peers
            .contains_key(&PeerOrigin::BgpPeer("rack1-tor".into()))
    );
    let c = resolve_for(&objs, "c");
    assert!(
        !c.peers
            .contains_key(&PeerOrigin::BgpPeer("rack1-tor".into()))
    );
    assert!(c.peers.contains_key(&PeerOrigin::BgpPeer("c-only".into())));
    assert!(
        !resolve_for(&objs, "a")
            .peers
            .contains_key(&PeerOrigin::BgpPeer("c-only".into()))
    );
}

#[test]
fn route_reflectors_with_peer_selector_and_reverse_peering() {
    // c is a route reflector; every node peers with the reflectors; the mesh
    // skips reflectors. The reflector gets the reverse peerings automatically.
    let objs = node("a", "", "", &["10.0.0.1"])
        + &node("b", "", "", &["10.0.0.2"])
        + &node(
            "c",
            "rr: 'true'",
            "petrel.dev/route-reflector-cluster-id: 224.0.0.1",
            &["10.0.0.10"],
        )
        + &peer("to-rr", "  nodeSelector: all()\n  peerSelector: has(rr)");
    let a = resolve_for(&objs, "a");
    assert_eq!(origins(&a), ["bgppeer/to-rr/c/ipv4-unicast", "mesh/b"]);
    let to_c = get(
        &a,
        PeerOrigin::BgpPeerNode("to-rr".into(), "c".into(), Family::Ipv4Unicast),
    );
    assert_eq!(
        (to_c.address, to_c.peer_as, to_c.port),
        (ip("10.0.0.10"), 64512, 179)
    );
    assert!(!to_c.passive && !to_c.route_reflector_client);
    let c = resolve_for(&objs, "c");
    assert_eq!(
        c.route_reflector_cluster_id
            .map(|i| i.to_string())
            .as_deref(),
        Some("224.0.0.1")
    );
    assert_eq!(
        origins(&c),
        [
            "bgppeer/to-rr/a/ipv4-unicast",
            "bgppeer/to-rr/b/ipv4-unicast"
        ]
    );
    for p in c.peers.values() {
        assert!(p.route_reflector_client, "{}", p.origin);
        assert_eq!(p.source_address, Some(ip("10.0.0.10")));
    }
    // Options of the BGPPeer apply to the reverse peerings, except `passive`
    // (both ends passive would never connect) and `localASNumber`.
    let opts = objs.replace(
        "peerSelector: has(rr)",
        "peerSelector: has(rr)\n  passive: true\n  holdTime: 30s\n  localASNumber: 65111\n  maxPrefixes: 7",
    );
    let fwd = get(
        &resolve_for(&opts, "a"),
        PeerOrigin::BgpPeerNode("to-rr".into(), "c".into(), Family::Ipv4Unicast),
    )
    .clone();
    assert!(fwd.passive);
    assert_eq!(
        (fwd.local_as, fwd.hold_time, fwd.max_prefixes),
        (65111, Duration::from_secs(30), Some(7))
    );
    let rev = get(
        &resolve_for(&opts, "c"),
        PeerOrigin::BgpPeerNode("to-rr".into(), "a".into(), Family::Ipv4Unicast),
    )
    .clone();
    assert!(!rev.passive);
    assert_eq!(
        (rev.local_as, rev.hold_time, rev.max_prefixes),
        (64512, Duration::from_secs(30), Some(7))
    );
    // With reversePeering: Manual the reflector gets nothing.
    let manual = objs.replace(
        "peerSelector: has(rr)",
        "peerSelector: has(rr)\n  reversePeering: Manual",
    );
    assert!(resolve_for(&manual, "c").peers.is_empty());
}

#[test]
fn reflectors_in_the_same_cluster_are_not_clients() {
    let objs = node(
        "r1",
        "rr: x",
        "petrel.dev/route-reflector-cluster-id: 1.1.1.1",
        &["10.0.0.1"],
    ) + &node(
        "r2",
        "rr: x",
        "petrel.dev/route-reflector-cluster-id: 1.1.1.1",
        &["10.0.0.2"],
    ) + &node("w", "", "", &["10.0.0.3"])
        + &peer(
            "rr-mesh",
            "  nodeSelector: has(rr)\n  peerSelector: has(rr)",
        )
        + &peer(
            "clients",
            "  nodeSelector: '!has(rr)'\n  peerSelector: has(rr)",
        );
    let r1 = resolve_for(&objs, "r1");
    assert_eq!(
        origins(&r1),
        [
            "bgppeer/clients/w/ipv4-unicast",
            "bgppeer/rr-mesh/r2/ipv4-unicast"
        ]
    );
    assert!(
        !get(
            &r1,
            PeerOrigin::BgpPeerNode("rr-mesh".into(), "r2".into(), Family::Ipv4Unicast)
        )
        .route_reflector_client
    );
    assert!(
        get(
            &r1,
            PeerOrigin::BgpPeerNode("clients".into(), "w".into(), Family::Ipv4Unicast)
        )
        .route_reflector_client
    );
}

#[test]
fn peer_ip_of_a_cluster_node_uses_calico_rules() {
    // A global BGPPeer pointing at node b: b's listen port, passive by text
    // order, and b gets the reverse peering with every node.
    let objs = three_nodes()
        + &config("  listenPort: 1179\n  nodeToNodeMeshEnabled: false")
        + &peer("to-b", "  peerIP: 10.0.0.2\n  asNumber: 64512");
    let a = resolve_for(&objs, "a");
    let to_b = get(&a, PeerOrigin::BgpPeer("to-b".into()));
    assert_eq!(to_b.port, 1179);
    assert!(to_b.passive, "a (10.0.0.1) waits for b");
    let b = resolve_for(&objs, "b");
    assert_eq!(
        origins(&b),
        ["bgppeer/to-b/a/ipv4-unicast", "bgppeer/to-b/c/ipv4-unicast"]
    );
    assert!(
        !get(
            &b,
            PeerOrigin::BgpPeerNode("to-b".into(), "a".into(), Family::Ipv4Unicast)
        )
        .passive
    );
    // An external address keeps port 179.
    let ext = three_nodes()
        + &config("  listenPort: 1179")
        + &peer("ext", "  peerIP: 192.0.2.1\n  asNumber: 65000");
    assert_eq!(
        get(&resolve_for(&ext, "a"), PeerOrigin::BgpPeer("ext".into())).port,
        179
    );
}

#[test]
fn explicit_peer_wins_over_mesh_and_global_over_node_specific() {
    let objs = three_nodes()
        + &peer("g", "  peerIP: 10.0.0.2\n  asNumber: 64512\n  holdTime: 9s")
        + &peer(
            "n",
            "  node: a\n  peerIP: 10.0.0.2\n  asNumber: 64512\n  holdTime: 30s",
        );
    let a = resolve_for(&objs, "a");
    assert_eq!(origins(&a), ["bgppeer/g", "mesh/c"]);
    assert_eq!(
        get(&a, PeerOrigin::BgpPeer("g".into())).hold_time,
        Duration::from_secs(9)
    );
}

#[test]
fn ipv6_peers() {
    let objs = node("a", "", "", &["10.0.0.1", "fd00::1"])
        + &node("b", "", "", &["10.0.0.2"])
        + &peer(
            "tor6",
            "  peerIP: '[fd00::fe]:1179'\n  asNumber: 65000\n  sourceAddress: 'fd00::99'",
        );
    let a = resolve_for(&objs, "a");
    let t = get(&a, PeerOrigin::BgpPeer("tor6".into()));
    assert_eq!((t.address, t.port), (ip("fd00::fe"), 1179));
    assert_eq!(t.families, [Family::Ipv6Unicast]);
    assert_eq!(t.source_address, Some(ip("fd00::99")));
    // b has no IPv6 address: Calico runs no IPv6 sessions there.
    let b = resolve_for(&objs, "b");
    assert_eq!(origins(&b), ["mesh/a"]);
}

#[test]
fn originated_prefixes_and_communities() {
    let objs = three_nodes()
        + &config(
            "  serviceClusterIPs: [{cidr: 10.96.0.0/12}]\n  serviceExternalIPs: [{cidr: 192.0.2.7/24}]\n  serviceLoadBalancerIPs: [{cidr: 'fd00:1b::/112'}]\n  communities: [{name: svc, value: '64512:100'}, {name: big, value: '1:2:3'}]\n  prefixAdvertisements:\n    - {cidr: 10.0.0.0/8, communities: [svc]}\n    - {cidr: 10.96.0.0/16, communities: [big, '64512:7', svc]}",
        );
    let cfg = resolve_for(&objs, "a");
    let svc = Community::Standard((64512 << 16) | 100);
    // Service CIDRs are originated by petrel_services; they feed the import policy.
    assert!(cfg.originate.is_empty(), "{:?}", cfg.originate);
    let keys: Vec<String> = cfg
        .cluster
        .service_cidrs
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(keys, ["10.96.0.0/12", "192.0.2.0/24", "fd00:1b::/112"]);
    assert_eq!(cfg.communities_for(&"10.96.0.0/12".parse().unwrap()), [svc]);
    assert_eq!(cfg.prefix_communities.len(), 2);
    // A pod block inside both rules gets the union, in rule order.
    let block = "10.96.1.0/26".parse().unwrap();
    assert_eq!(
        cfg.communities_for(&block),
        [
            svc,
            Community::Large([1, 2, 3]),
            Community::Standard((64512 << 16) | 7)
        ]
    );
}

#[test]
fn resolution_errors() {
    let s = load(&[("n.yaml", &three_nodes())]).unwrap();
    let e = resolve(&s, "zzz").unwrap_err();
    assert_eq!(
        e.to_string(),
        "cannot resolve the configuration of node \"zzz\": no Node object with this name in the datastore"
    );
    let s = load(&[("n.yaml", &node("v6", "", "", &["fd00::1"]))]).unwrap();
    let e = resolve(&s, "v6").unwrap_err().to_string();
    assert!(
        e.contains("no router ID") && e.contains("petrel.dev/router-id"),
        "{e}"
    );
    let s = load(&[(
        "n.yaml",
        &node("v6", "", "petrel.dev/router-id: 10.9.9.9", &["fd00::1"]),
    )])
    .unwrap();
    assert_eq!(resolve(&s, "v6").unwrap().router_id.to_string(), "10.9.9.9");
    let s = load(&[("n.yaml", &node("none", "", "", &[]))]).unwrap();
    assert!(
        resolve(&s, "none")
            .unwrap_err()
            .to_string()
            .contains("has no address")
    );
}

fn k8s_node(name: &str, addr: std::net::Ipv4Addr) -> k8s_openapi::api::core::v1::Node {
    use k8s_openapi::api::core::v1::{Node, NodeAddress, NodeStatus};
    Node {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some(name.to_string()),
            ..Default::default()
        },
        status: Some(NodeStatus {
            addresses: Some(vec![NodeAddress {
                type_: "InternalIP".into(),
                address: addr.to_string(),
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

proptest::proptest! {
    /// In any cluster, every node meshes with every other node, and of the two
    /// sessions of a pair exactly one side is passive.
    #[test]
    fn mesh_pairs_have_exactly_one_active_side(
        addrs in proptest::collection::btree_set(proptest::prelude::any::<u32>(), 2..8)
    ) {
        let addrs: Vec<std::net::Ipv4Addr> = addrs.into_iter().map(std::net::Ipv4Addr::from).collect();
        let snapshot = Snapshot {
            nodes: addrs.iter().enumerate().map(|(i, a)| k8s_node(&format!("n{i}"), *a)).collect(),
            ..Default::default()
        };
        let configs: Vec<NodeConfig> = (0..addrs.len())
            .map(|i| resolve(&snapshot, &format!("n{i}")).expect("resolves"))
            .collect();
        for (i, ci) in configs.iter().enumerate() {
            proptest::prop_assert_eq!(ci.peers.len(), addrs.len() - 1);
            for (j, cj) in configs.iter().enumerate() {
                if i == j {
                    continue;
                }
                let pij = &ci.peers[&PeerOrigin::Mesh(format!("n{j}"))];
                let pji = &cj.peers[&PeerOrigin::Mesh(format!("n{i}"))];
                proptest::prop_assert_eq!(pij.address, IpAddr::V4(addrs[j]));
                proptest::prop_assert_ne!(pij.passive, pji.passive);
            }
        }
    }
}

#[test]
fn families_default_to_the_peer_address_family_and_can_be_widened() {
    let objects = three_nodes()
        + &config("  nodeToNodeMeshEnabled: false")
        + &peer("tor", "  peerIP: 10.0.0.254\n  asNumber: 65001")
        + &peer(
            "tor-both",
            "  peerIP: 10.0.0.253\n  asNumber: 65001\n  families: [IPv6, IPv4, IPv6]",
        );
    let cfg = resolve_for(&objects, "a");
    let tor = get(&cfg, PeerOrigin::BgpPeer("tor".into()));
    assert_eq!(tor.families, vec![Family::Ipv4Unicast]);
    let both = get(&cfg, PeerOrigin::BgpPeer("tor-both".into()));
    assert_eq!(
        both.families,
        vec![Family::Ipv4Unicast, Family::Ipv6Unicast],
        "sorted, deduplicated"
    );
}

#[test]
fn pod_cidrs_are_originated_and_known_cluster_wide() {
    let mut objects = String::new();
    for (name, ip, cidr) in [
        ("a", "10.0.0.1", "10.244.1.0/24"),
        ("b", "10.0.0.2", "10.244.2.0/24"),
    ] {
        objects += &format!(
            "apiVersion: v1\nkind: Node\nmetadata:\n  name: {name}\nspec:\n  podCIDRs: [\"{cidr}\"]\nstatus:\n  addresses:\n    - {{type: InternalIP, address: \"{ip}\"}}\n---\n"
        );
    }
    let cfg = resolve_for(&objects, "a");
    let own: ipnet::IpNet = "10.244.1.0/24".parse().unwrap();
    assert_eq!(cfg.pod_cidrs, vec![own]);
    assert!(cfg.originate.contains_key(&own));
    assert!(
        !cfg.originate
            .contains_key(&"10.244.2.0/24".parse().unwrap())
    );
    assert_eq!(
        cfg.cluster.blocks,
        vec![
            (own, "a".to_string()),
            ("10.244.2.0/24".parse().unwrap(), "b".to_string())
        ]
    );
}

#[test]
fn max_paths_defaults_to_sixteen_and_follows_the_configuration() {
    assert_eq!(resolve_for(&three_nodes(), "a").max_paths, 16);
    let cfg = resolve_for(&(three_nodes() + &config("  maxPaths: 2")), "a");
    assert_eq!(cfg.max_paths, 2);
}

#[test]
fn unknown_attributes_are_stripped_unless_configured() {
    assert!(!resolve_for(&three_nodes(), "a").pass_unknown_attributes);
    let cfg = resolve_for(
        &(three_nodes() + &config("  passUnknownAttributes: true")),
        "a",
    );
    assert!(cfg.pass_unknown_attributes);
}

/// Node `a` of `three_nodes` with this `spec` and these annotations.
fn node_a(spec: &str, annotations: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: a\n  annotations: {{{annotations}}}\nspec: {{{spec}}}\nstatus:\n  addresses:\n    - {{type: InternalIP, address: \"10.0.0.1\"}}\n---\n"
    ) + &node("b", "rack: r1", "", &["10.0.0.2"])
}

#[test]
fn a_cordoned_or_annotated_node_drains() {
    assert_eq!(resolve_for(&three_nodes(), "a").graceful_shutdown, None);
    let cordoned = resolve_for(&node_a("unschedulable: true", ""), "a");
    assert!(
        cordoned
            .graceful_shutdown
            .as_deref()
            .is_some_and(|r| r.contains("cordoned")),
        "{:?}",
        cordoned.graceful_shutdown
    );
    let annotated = resolve_for(&node_a("", "petrel.dev/graceful-shutdown: \"true\""), "a");
    assert!(annotated.graceful_shutdown.is_some());
    // "false" keeps a cordoned node's routes as they are.
    let opted_out = resolve_for(
        &node_a(
            "unschedulable: true",
            "petrel.dev/graceful-shutdown: \"false\"",
        ),
        "a",
    );
    assert_eq!(opted_out.graceful_shutdown, None);
    // Another node's drain is not this node's.
    assert_eq!(
        resolve_for(&node_a("unschedulable: true", ""), "b").graceful_shutdown,
        None
    );
}

#[test]
fn an_invalid_graceful_shutdown_value_is_reported_and_ignored() {
    let cfg = resolve_for(&node_a("", "petrel.dev/graceful-shutdown: \"yes\""), "a");
    assert_eq!(cfg.graceful_shutdown, None);
    assert!(
        cfg.problems
            .iter()
            .any(|p| p.kind == "Node" && p.reason.contains("graceful-shutdown")),
        "{:?}",
        cfg.problems
    );
    // The node still peers.
    assert_eq!(origins(&cfg), ["mesh/b"]);
}
