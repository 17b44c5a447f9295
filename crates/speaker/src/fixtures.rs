//! Test fixtures: the node and peer configurations the speaker's unit tests
//! start from (each test changes what it is about with `..fixtures::node()`).

use petrel_bgp::wire::Family;
use petrel_datastore::resolved::{BindMode, NextHopMode, NodeConfig, PeerConfig, PeerOrigin};
use std::time::Duration;

/// Node `n1`, AS 64512, router id 10.0.0.1, no addresses, no peers, nothing
/// originated, no listener (`NodeIp` without a node address).
pub(crate) fn node() -> NodeConfig {
    NodeConfig {
        node_name: "n1".into(),
        local_as: 64512,
        router_id: "10.0.0.1".parse().unwrap(),
        ipv4_address: None,
        ipv6_address: None,
        route_reflector_cluster_id: None,
        listen_port: 179,
        bind_mode: BindMode::NodeIp,
        originate: Default::default(),
        peers: Default::default(),
        filters: Default::default(),
        prefix_communities: vec![],
        pod_cidrs: vec![],
        cluster: Default::default(),
        max_paths: 16,
        problems: Vec::new(),
        pass_unknown_attributes: false,
        graceful_shutdown: None,
    }
}

/// BGPPeer `tor` at `address`, AS 65000 from AS 64512, IPv4 unicast, active,
/// default timers, no BFD.
pub(crate) fn peer(address: &str) -> PeerConfig {
    PeerConfig {
        origin: PeerOrigin::BgpPeer("tor".into()),
        address: address.parse().unwrap(),
        port: 179,
        peer_as: 65000,
        local_as: 64512,
        password: None,
        ttl_security: None,
        source_address: None,
        hold_time: Duration::from_secs(90),
        keepalive_time: None,
        max_restart_time: Duration::from_secs(120),
        passive: false,
        next_hop_mode: NextHopMode::Auto,
        num_allowed_local_as: 0,
        max_prefixes: None,
        filters: vec![],
        families: vec![Family::Ipv4Unicast],
        route_reflector_client: false,
        bfd: None,
    }
}
