//! The driver-independent logic: which session a peer gets, and how a new
//! set of sessions is reached from the current one.

use super::*;
use petrel_datastore::resolved::{BfdSettings, BindMode};
use std::time::Duration;

fn settings() -> BfdSettings {
    BfdSettings {
        profile: "fast".into(),
        receive_interval: Duration::from_millis(300),
        transmit_interval: Duration::from_millis(200),
        detect_multiplier: 3,
        passive: false,
        minimum_ttl: 250,
    }
}

fn peer(address: &str, bfd: Option<BfdSettings>) -> PeerConfig {
    PeerConfig {
        families: vec![],
        bfd,
        ..crate::fixtures::peer(address)
    }
}

fn node() -> NodeConfig {
    NodeConfig {
        router_id: "10.0.0.2".parse().unwrap(),
        ipv4_address: Some("10.0.0.2/24".parse().unwrap()),
        ipv6_address: Some("fd00::2/64".parse().unwrap()),
        bind_mode: BindMode::None,
        ..crate::fixtures::node()
    }
}

#[test]
fn no_profile_no_session() {
    assert_eq!(bfd_peer(&node(), &peer("10.0.0.1", None)), None);
}

#[test]
fn a_peer_on_the_node_subnet_is_single_hop_from_the_node_address() {
    let p = bfd_peer(&node(), &peer("10.0.0.1", Some(settings()))).unwrap();
    assert_eq!(
        p.key,
        BfdKey {
            peer: "10.0.0.1".parse().unwrap(),
            local: Some("10.0.0.2".parse().unwrap()),
            multihop: false,
        }
    );
    assert_eq!(p.config.hop, Hop::SingleHop);
    assert_eq!(p.config.desired_min_tx, Duration::from_millis(200));
    assert_eq!(p.config.required_min_rx, Duration::from_millis(300));
    assert_eq!(p.config.detect_mult, 3);
    assert!(!p.config.passive);
    let v6 = bfd_peer(&node(), &peer("fd00::1", Some(settings()))).unwrap();
    assert_eq!(v6.key.local, Some("fd00::2".parse().unwrap()));
    assert!(!v6.key.multihop);
}

#[test]
fn a_routed_peer_is_multihop_with_the_profile_minimum_ttl() {
    let mut pc = peer("192.0.2.9", Some(settings()));
    pc.source_address = Some("10.0.0.2".parse().unwrap());
    let p = bfd_peer(&node(), &pc).unwrap();
    assert!(p.key.multihop);
    assert_eq!(p.config.hop, Hop::MultiHop { min_ttl: 250 });
    assert_eq!(p.key.local, Some("10.0.0.2".parse().unwrap()));
    // A v4-mapped configuration address is the IPv4 peer.
    let mapped = bfd_peer(&node(), &peer("::ffff:10.0.0.1", Some(settings()))).unwrap();
    assert_eq!(mapped.key.peer, "10.0.0.1".parse::<IpAddr>().unwrap());
    assert!(!mapped.key.multihop);
}

fn want(addr: &str, tx_ms: u64) -> BfdPeer {
    BfdPeer {
        key: BfdKey {
            peer: addr.parse().unwrap(),
            local: None,
            multihop: false,
        },
        config: SessionConfig {
            desired_min_tx: Duration::from_millis(tx_ms),
            ..SessionConfig::default()
        },
    }
}

#[test]
fn plan_adds_removes_and_reconfigures_in_place() {
    let current: BTreeMap<BfdKey, SessionConfig> = [want("10.0.0.1", 300), want("10.0.0.3", 300)]
        .into_iter()
        .map(|p| (p.key, p.config))
        .collect();
    let desired = vec![want("10.0.0.1", 100), want("10.0.0.4", 300)];
    assert_eq!(
        plan(&current, &desired),
        vec![
            Change::Remove(want("10.0.0.3", 300).key),
            Change::Reconfigure(want("10.0.0.1", 100)),
            Change::Add(want("10.0.0.4", 300)),
        ]
    );
    // Nothing to do when nothing changed.
    let same: Vec<BfdPeer> = vec![want("10.0.0.1", 300), want("10.0.0.3", 300)];
    assert_eq!(plan(&current, &same), vec![]);
    // Everything goes when no peer wants BFD any more.
    assert_eq!(plan(&current, &[]).len(), 2);
}

#[test]
fn plan_replaces_a_session_whose_hop_mode_changed() {
    let single = want("10.0.0.1", 300);
    let mut multi = single.clone();
    multi.key.multihop = true;
    multi.config.hop = Hop::MultiHop { min_ttl: 254 };
    let current: BTreeMap<BfdKey, SessionConfig> =
        [(single.key, single.config)].into_iter().collect();
    assert_eq!(
        plan(&current, std::slice::from_ref(&multi)),
        vec![Change::Remove(single.key), Change::Add(multi)]
    );
}

#[test]
fn plan_keeps_the_first_of_repeated_keys() {
    let current = BTreeMap::new();
    let out = plan(&current, &[want("10.0.0.1", 100), want("10.0.0.1", 500)]);
    assert_eq!(out, vec![Change::Add(want("10.0.0.1", 100))]);
}
