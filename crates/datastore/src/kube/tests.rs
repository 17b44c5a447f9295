//! Unit tests of the pure parts of the Kubernetes datastore: relist
//! handling, last good versions, Secret watches, debounce and the cache.

use super::cache;
use super::driver::{Debounce, WatchBackoff};
use super::state::{Kind, State, WatchEvent, WatchKey, normalize, redacted};
use serde_json::{Value, json};
use std::time::Duration;
use tokio::time::Instant;

fn peer(name: &str, ip: &str, asn: Value) -> Value {
    json!({
        "apiVersion": "petrel.dev/v1", "kind": "BGPPeer",
        "metadata": {"name": name, "resourceVersion": "17", "managedFields": [{"manager": "kubectl"}]},
        "spec": {"peerIP": ip, "asNumber": asn}
    })
}

fn peer_with_secret(name: &str, secret: &str) -> Value {
    json!({
        "apiVersion": "petrel.dev/v1", "kind": "BGPPeer",
        "metadata": {"name": name},
        "spec": {"peerIP": "192.0.2.9", "asNumber": 64999,
                 "password": {"secretKeyRef": {"name": secret, "key": "pw"}}}
    })
}

fn secret(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Secret",
           "metadata": {"name": name, "namespace": "petrel-system"},
           "data": {"pw": "c2VjcmV0"}})
}

/// A state where every cluster-wide watch has listed nothing.
fn synced() -> State {
    let mut s = State::new();
    for k in Kind::CLUSTER_WIDE {
        s.handle(&WatchKey::Kind(k), WatchEvent::Init);
        s.handle(&WatchKey::Kind(k), WatchEvent::InitDone);
    }
    assert!(s.ready());
    s
}

const PEERS: WatchKey = WatchKey::Kind(Kind::BgpPeer);

fn peer_ips(s: &mut State) -> Vec<(String, String)> {
    s.build("n1")
        .snapshot
        .peers
        .iter()
        .map(|p| {
            (
                p.metadata.name.clone().unwrap_or_default(),
                p.spec
                    .peer_ip
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
            )
        })
        .collect()
}

#[test]
fn not_ready_until_every_watch_has_listed() {
    let mut s = State::new();
    assert!(!s.ready());
    for (i, k) in Kind::CLUSTER_WIDE.into_iter().enumerate() {
        assert!(!s.ready(), "ready after {i} watches");
        s.handle(&WatchKey::Kind(k), WatchEvent::Init);
        assert!(
            s.handle(&WatchKey::Kind(k), WatchEvent::InitDone),
            "first list is a change"
        );
    }
    assert!(s.ready());
    assert!(s.pending().is_empty());
}

#[test]
fn relist_replaces_objects_only_when_complete() {
    let mut s = synced();
    s.handle(
        &PEERS,
        WatchEvent::Apply(peer("a", "192.0.2.1", json!(64999))),
    );
    s.handle(
        &PEERS,
        WatchEvent::Apply(peer("b", "192.0.2.2", json!(64999))),
    );
    // A relist (410 Gone): while it runs, the old objects stay visible.
    assert!(!s.handle(&PEERS, WatchEvent::Init));
    assert!(!s.handle(
        &PEERS,
        WatchEvent::InitApply(peer("b", "192.0.2.2", json!(64999)))
    ));
    assert_eq!(
        peer_ips(&mut s).len(),
        2,
        "partial relist must not be visible"
    );
    assert!(s.ready());
    // Done: "a" was deleted while the watch was down.
    assert!(s.handle(&PEERS, WatchEvent::InitDone));
    assert_eq!(peer_ips(&mut s), vec![("b".into(), "192.0.2.2".into())]);
    // A relist with the same objects is no change.
    s.handle(&PEERS, WatchEvent::Init);
    s.handle(
        &PEERS,
        WatchEvent::InitApply(peer("b", "192.0.2.2", json!(64999))),
    );
    assert!(!s.handle(&PEERS, WatchEvent::InitDone));
}

#[test]
fn resource_version_only_changes_are_not_changes() {
    let mut s = synced();
    assert!(s.handle(&PEERS, WatchEvent::Apply(peer("a", "192.0.2.1", json!(1)))));
    let mut again = peer("a", "192.0.2.1", json!(1));
    again["metadata"]["resourceVersion"] = json!("18");
    assert!(!s.handle(&PEERS, WatchEvent::Apply(again)));
    let nodes = WatchKey::Kind(Kind::Node);
    let node = |beat: &str| {
        json!({"metadata": {"name": "n1", "resourceVersion": beat},
               "status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.1"}],
                          "conditions": [{"type": "Ready", "lastHeartbeatTime": beat}]}})
    };
    assert!(s.handle(&nodes, WatchEvent::Apply(node("1"))));
    assert!(
        !s.handle(&nodes, WatchEvent::Apply(node("2"))),
        "heartbeat is no change"
    );
    let n = normalize(Kind::Node, node("3"));
    assert_eq!(n["kind"], "Node");
    assert_eq!(n["apiVersion"], "v1");
    assert!(n["status"].get("conditions").is_none());
    assert!(n["metadata"].get("resourceVersion").is_none());
}

/// Issue 18: `kubectl cordon` (spec.unschedulable) is a change of the
/// watched Node, and reaches the snapshot that resolution reads.
#[test]
fn a_cordon_is_a_node_change() {
    let mut s = synced();
    let nodes = WatchKey::Kind(Kind::Node);
    let node = |cordoned: bool| {
        json!({"metadata": {"name": "n1"}, "spec": {"unschedulable": cordoned},
               "status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.1"}]}})
    };
    assert!(s.handle(&nodes, WatchEvent::Apply(node(false))));
    assert!(s.handle(&nodes, WatchEvent::Apply(node(true))));
    let built = s.build("n1");
    let spec = built.snapshot.nodes[0].spec.as_ref().expect("spec");
    assert_eq!(spec.unschedulable, Some(true));
}

#[test]
fn invalid_update_keeps_the_last_valid_version() {
    let mut s = synced();
    s.handle(
        &PEERS,
        WatchEvent::Apply(peer("a", "192.0.2.1", json!(64999))),
    );
    assert_eq!(peer_ips(&mut s), vec![("a".into(), "192.0.2.1".into())]);
    // An invalid update (asNumber not a number) keeps the old version.
    s.handle(
        &PEERS,
        WatchEvent::Apply(peer("a", "192.0.2.7", json!("many"))),
    );
    let built = s.build("n1");
    assert_eq!(built.snapshot.peers.len(), 1);
    assert_eq!(
        built.snapshot.peers[0]
            .spec
            .peer_ip
            .as_ref()
            .map(ToString::to_string),
        Some("192.0.2.1".into())
    );
    assert_eq!(built.objects.len(), 1);
    assert_eq!(built.objects[0]["spec"]["peerIP"], "192.0.2.1");
    // A never-valid object is left out; the valid ones stay.
    s.handle(
        &PEERS,
        WatchEvent::Apply(peer("c", "192.0.2.3", json!("x"))),
    );
    let names: Vec<_> = peer_ips(&mut s).into_iter().map(|p| p.0).collect();
    assert_eq!(names, vec!["a".to_string()]);
    // Fixed: the new version is used.
    s.handle(
        &PEERS,
        WatchEvent::Apply(peer("a", "192.0.2.8", json!(64999))),
    );
    assert_eq!(peer_ips(&mut s)[0].1, "192.0.2.8");
    // Deleted: gone, also its last good version.
    s.handle(
        &PEERS,
        WatchEvent::Delete(peer("a", "192.0.2.8", json!(64999))),
    );
    assert!(peer_ips(&mut s).is_empty());
    s.handle(
        &PEERS,
        WatchEvent::Apply(peer("a", "192.0.2.1", json!("bad"))),
    );
    assert!(
        peer_ips(&mut s).is_empty(),
        "a deleted object's last good version is forgotten"
    );
}

#[test]
fn secrets_are_watched_by_name_and_gate_readiness() {
    let mut s = synced();
    s.handle(&PEERS, WatchEvent::Apply(peer_with_secret("p", "bgp-pw")));
    let names = s.referenced_secrets();
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        vec!["bgp-pw".to_string()]
    );
    let (added, removed) = s.set_secret_watches(&s.referenced_secrets());
    assert_eq!((added, removed), (vec!["bgp-pw".to_string()], vec![]));
    assert!(
        !s.ready(),
        "a new Secret watch must list before the next snapshot"
    );
    let key = WatchKey::Secret("bgp-pw".into());
    s.handle(&key, WatchEvent::Init);
    s.handle(&key, WatchEvent::InitApply(secret("bgp-pw")));
    assert!(s.handle(&key, WatchEvent::InitDone));
    assert!(s.ready());
    let built = s.build("n1");
    assert_eq!(built.snapshot.peers.len(), 1);
    assert_eq!(built.snapshot.secrets.len(), 1);
    // The peer stops naming it: the watch goes, and the Secret with it.
    s.handle(&PEERS, WatchEvent::Delete(peer_with_secret("p", "bgp-pw")));
    let (added, removed) = s.set_secret_watches(&s.referenced_secrets());
    assert_eq!((added, removed), (vec![], vec!["bgp-pw".to_string()]));
    assert!(s.build("n1").snapshot.secrets.is_empty());
}

#[test]
fn unreadable_secret_does_not_block_the_rest() {
    let mut s = synced();
    s.handle(
        &PEERS,
        WatchEvent::Apply(peer("ok", "192.0.2.1", json!(64999))),
    );
    s.handle(
        &PEERS,
        WatchEvent::Apply(peer_with_secret("p", "forbidden")),
    );
    s.set_secret_watches(&s.referenced_secrets());
    assert!(!s.ready());
    assert!(s.mark_unreadable(&WatchKey::Secret("forbidden".into())));
    assert!(s.ready());
    let names: Vec<_> = peer_ips(&mut s).into_iter().map(|p| p.0).collect();
    // The peer without its Secret stays in the snapshot: resolution leaves it
    // out (never resolved) or keeps its last password (see below).
    assert_eq!(names, vec!["ok".to_string(), "p".to_string()]);
}

fn node_n1() -> Value {
    json!({"apiVersion": "v1", "kind": "Node",
           "metadata": {"name": "n1", "annotations": {"petrel.dev/ipv4-address": "192.0.2.1/24"}}})
}

fn filter(name: &str) -> Value {
    json!({"apiVersion": "petrel.dev/v1", "kind": "BGPFilter", "metadata": {"name": name},
           "spec": {"exportV4": [{"action": "Reject", "cidr": "10.0.0.0/8", "matchOperator": "In"}]}})
}

fn pool(name: &str, cidr: &str, created: &str) -> Value {
    json!({"apiVersion": "petrel.dev/v1", "kind": "IPPool",
           "metadata": {"name": name, "creationTimestamp": created},
           "spec": {"cidr": cidr}})
}

/// Issue 12: a peer whose Secret key or BGPFilter goes away keeps its last
/// resolved password and filters (the session stays up) and the problem is
/// reported; a peer that never resolved is left out, reported too.
#[test]
fn missing_secret_key_or_filter_keeps_the_last_resolved_peer() {
    use crate::resolved::PeerOrigin;
    let mut s = synced();
    s.handle(&WatchKey::Kind(Kind::Node), WatchEvent::Apply(node_n1()));
    s.handle(
        &WatchKey::Kind(Kind::BgpFilter),
        WatchEvent::Apply(filter("f")),
    );
    let mut p = peer_with_secret("p", "bgp-pw");
    p["spec"]["filters"] = json!(["f"]);
    s.handle(&PEERS, WatchEvent::Apply(p.clone()));
    s.set_secret_watches(&s.referenced_secrets());
    let key = WatchKey::Secret("bgp-pw".into());
    s.handle(&key, WatchEvent::Init);
    s.handle(&key, WatchEvent::InitApply(secret("bgp-pw")));
    s.handle(&key, WatchEvent::InitDone);
    let first = crate::resolve_with(&s.build("n1").snapshot, "n1", None).unwrap();
    let origin = PeerOrigin::BgpPeer("p".into());
    assert_eq!(first.peers[&origin].password.as_deref(), Some("secret"));
    assert_eq!(first.peers[&origin].filters, vec!["f".to_string()]);
    assert!(first.problems.is_empty(), "{:?}", first.problems);

    // The key is removed from the Secret, and the filter is deleted.
    let mut no_key = secret("bgp-pw");
    no_key["data"] = json!({"other": "eA=="});
    s.handle(&key, WatchEvent::Apply(no_key));
    s.handle(
        &WatchKey::Kind(Kind::BgpFilter),
        WatchEvent::Delete(filter("f")),
    );
    let snapshot = s.build("n1").snapshot;
    let next = crate::resolve_with(&snapshot, "n1", Some(&first)).unwrap();
    assert_eq!(
        next.peers[&origin], first.peers[&origin],
        "the session is kept as it was"
    );
    assert_eq!(
        next.filters, first.filters,
        "the deleted filter keeps its last spec"
    );
    let reasons: Vec<String> = next.problems.iter().map(ToString::to_string).collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(
        reasons.iter().all(|r| r.starts_with("BGPPeer/p: ")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("has no key \"pw\"")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("BGPFilter \"f\" not found")),
        "{reasons:?}"
    );
    // Resolving again from that configuration keeps it still.
    let again = crate::resolve_with(&snapshot, "n1", Some(&next)).unwrap();
    assert_eq!(again, next);

    // Without a last resolved form the peer is left out, and reported.
    let fresh = crate::resolve_with(&snapshot, "n1", None).unwrap();
    assert!(fresh.peers.is_empty());
    assert!(
        !fresh.problems.is_empty() && fresh.problems.iter().all(|p| p.name == "p"),
        "{:?}",
        fresh.problems
    );

    // Fixed: the new password is used and the problems go.
    let mut new_key = secret("bgp-pw");
    new_key["data"] = json!({"pw": "bmV3"});
    s.handle(&key, WatchEvent::Apply(new_key));
    s.handle(
        &WatchKey::Kind(Kind::BgpFilter),
        WatchEvent::Apply(filter("f")),
    );
    let fixed = crate::resolve_with(&s.build("n1").snapshot, "n1", Some(&next)).unwrap();
    assert_eq!(fixed.peers[&origin].password.as_deref(), Some("new"));
    assert!(fixed.problems.is_empty(), "{:?}", fixed.problems);
}

/// Issue 12: among overlapping pools the one created first wins, whatever
/// the names; the other is reported.
#[test]
fn overlapping_pool_created_later_loses() {
    let mut s = synced();
    s.handle(&WatchKey::Kind(Kind::Node), WatchEvent::Apply(node_n1()));
    let pools = WatchKey::Kind(Kind::IpPool);
    s.handle(
        &pools,
        WatchEvent::Apply(pool("pods", "10.123.0.0/16", "2026-01-01T00:00:00Z")),
    );
    let built = s.build("n1");
    assert_eq!(built.snapshot.ip_pools.len(), 1);
    s.handle(
        &pools,
        WatchEvent::Apply(pool("aaa-overlap", "10.123.0.0/17", "2026-06-01T00:00:00Z")),
    );
    let built = s.build("n1");
    let names: Vec<_> = built
        .snapshot
        .ip_pools
        .iter()
        .map(|p| p.metadata.name.clone().unwrap_or_default())
        .collect();
    assert_eq!(names, vec!["pods".to_string()]);
    assert_eq!(
        built.snapshot.problems.len(),
        1,
        "{:?}",
        built.snapshot.problems
    );
    let p = &built.snapshot.problems[0];
    assert_eq!(
        (p.kind.as_str(), p.name.as_str()),
        ("IPPool", "aaa-overlap")
    );
    assert!(p.reason.contains("overlaps IPPool pods"), "{}", p.reason);
    let cfg = crate::resolve(&built.snapshot, "n1").unwrap();
    assert_eq!(cfg.problems, built.snapshot.problems);
}

#[test]
fn secrets_are_redacted_in_logs() {
    let text = redacted(&secret("s"));
    assert!(!text.contains("c2VjcmV0"), "{text}");
    assert!(text.contains("<redacted>"));
    let p = redacted(&peer("a", "192.0.2.1", json!(1)));
    assert!(p.contains("192.0.2.1"));
}

#[test]
fn debounce_coalesces_bursts_up_to_the_maximum_delay() {
    let t0 = Instant::now();
    let ms = Duration::from_millis;
    let mut d = Debounce::new(ms(100), ms(1000));
    assert_eq!(d.deadline(), None);
    d.poke(t0);
    assert_eq!(d.deadline(), Some(t0 + ms(100)));
    d.poke(t0 + ms(50));
    assert_eq!(d.deadline(), Some(t0 + ms(150)), "quiet period restarts");
    d.poke(t0 + ms(950));
    assert_eq!(
        d.deadline(),
        Some(t0 + ms(1000)),
        "bounded by the maximum delay"
    );
    d.clear();
    assert_eq!(d.deadline(), None);
    d.poke(t0 + ms(2000));
    assert_eq!(
        d.deadline(),
        Some(t0 + ms(2100)),
        "a new burst starts afresh"
    );
}

#[test]
fn cache_round_trip_is_atomic_and_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub").join("config-cache.json");
    assert!(cache::read(&path).unwrap().is_none());
    let objects = vec![
        normalize(Kind::BgpPeer, peer("a", "192.0.2.1", json!(1))),
        secret("s"),
    ];
    cache::write(&path, "n1", &objects).unwrap();
    assert_eq!(cache::read(&path).unwrap(), Some(objects.clone()));
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // Overwrite: no temporary file left behind.
    cache::write(&path, "n1", &objects[..1]).unwrap();
    assert_eq!(cache::read(&path).unwrap().map(|o| o.len()), Some(1));
    let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    // The cached objects assemble into the same snapshot.
    let (snap, errors) = crate::assemble_values("cache", objects);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(snap.peers.len(), 1);
    // Garbage and other versions are errors, not panics.
    std::fs::write(&path, "{\"version\": 9, \"node\": \"n\", \"objects\": []}").unwrap();
    assert!(matches!(
        cache::read(&path),
        Err(cache::CacheError::Version { found: 9, .. })
    ));
    std::fs::write(&path, "not json").unwrap();
    assert!(matches!(
        cache::read(&path),
        Err(cache::CacheError::Format { .. })
    ));
}

fn service(ns: &str, name: &str, port: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": name, "namespace": ns},
           "spec": {"clusterIP": "10.96.0.10", "ports": [{"port": port}]}})
}

#[test]
fn namespaced_objects_keep_their_last_valid_version_per_namespace() {
    let mut s = synced();
    let svcs = WatchKey::Kind(Kind::Service);
    s.handle(&svcs, WatchEvent::Apply(service("ns1", "web", json!(80))));
    s.handle(
        &svcs,
        WatchEvent::Apply(service("ns2", "web", json!("eighty"))),
    );
    let names = |s: &mut State| {
        s.build("n1")
            .snapshot
            .services
            .iter()
            .map(|x| {
                let m = &x.metadata;
                let port = x
                    .spec
                    .as_ref()
                    .and_then(|s| s.ports.as_ref())
                    .map(|p| p[0].port);
                (m.namespace.clone().unwrap_or_default(), port)
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&mut s), vec![("ns1".to_string(), Some(80))]);
    // ns1/web turns invalid: its last valid version stays; ns2 is unaffected.
    s.handle(&svcs, WatchEvent::Apply(service("ns1", "web", json!("x"))));
    assert_eq!(names(&mut s), vec![("ns1".to_string(), Some(80))]);
    s.handle(&svcs, WatchEvent::Apply(service("ns2", "web", json!(443))));
    assert_eq!(
        names(&mut s),
        vec![
            ("ns1".to_string(), Some(80)),
            ("ns2".to_string(), Some(443))
        ]
    );
}

#[test]
fn watch_backoff_doubles_up_to_the_cap_with_jitter_and_resets() {
    use kube::runtime::utils::Backoff;
    let ms = Duration::from_millis;
    let mut b = WatchBackoff::new(ms(500), ms(8000));
    let bases = [500, 1000, 2000, 4000, 8000, 8000, 8000];
    for base in bases {
        let d = b.next().unwrap();
        assert!(
            d >= ms(base / 2) && d < ms(base),
            "{d:?} for base {base} ms"
        );
    }
    b.reset();
    let d = b.next().unwrap();
    assert!(d < ms(500), "reset starts over: {d:?}");
}

/// Issue 12: the node-to-node mesh keeps its last password when the key
/// goes away from its Secret; without a last password the mesh is left out.
#[test]
fn mesh_keeps_its_last_password() {
    use crate::resolved::PeerOrigin;
    let mut s = synced();
    s.handle(&WatchKey::Kind(Kind::Node), WatchEvent::Apply(node_n1()));
    s.handle(
        &WatchKey::Kind(Kind::Node),
        WatchEvent::Apply(json!({"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": "n2", "annotations": {"petrel.dev/ipv4-address": "192.0.2.2/24"}}})),
    );
    s.handle(
        &WatchKey::Kind(Kind::BgpConfiguration),
        WatchEvent::Apply(
            json!({"apiVersion": "petrel.dev/v1", "kind": "BGPConfiguration",
            "metadata": {"name": "default"},
            "spec": {"nodeMeshPassword": {"secretKeyRef": {"name": "mesh", "key": "pw"}}}}),
        ),
    );
    s.set_secret_watches(&s.referenced_secrets());
    let key = WatchKey::Secret("mesh".into());
    s.handle(&key, WatchEvent::Init);
    s.handle(&key, WatchEvent::InitApply(secret("mesh")));
    s.handle(&key, WatchEvent::InitDone);
    let first = crate::resolve_with(&s.build("n1").snapshot, "n1", None).unwrap();
    let mesh = PeerOrigin::Mesh("n2".into());
    assert_eq!(first.peers[&mesh].password.as_deref(), Some("secret"));

    let mut no_key = secret("mesh");
    no_key["data"] = json!({});
    s.handle(&key, WatchEvent::Apply(no_key));
    let snapshot = s.build("n1").snapshot;
    assert!(
        snapshot.bgp_configuration.is_some(),
        "the BGPConfiguration stays"
    );
    let next = crate::resolve_with(&snapshot, "n1", Some(&first)).unwrap();
    assert_eq!(next.peers, first.peers, "the mesh keeps its last password");
    assert_eq!(next.problems.len(), 1, "{:?}", next.problems);
    assert_eq!(
        (
            next.problems[0].kind.as_str(),
            next.problems[0].name.as_str()
        ),
        ("BGPConfiguration", "default")
    );
    let fresh = crate::resolve_with(&snapshot, "n1", None).unwrap();
    assert!(fresh.peers.is_empty(), "no mesh without its password");
    assert_eq!(fresh.problems.len(), 1, "{:?}", fresh.problems);
}

#[test]
fn forbidden_watches_retry_rarely() {
    let (min, max) = super::driver::FORBIDDEN_BACKOFF;
    let mut b = WatchBackoff::new(min, max);
    let first = b.next().unwrap();
    assert!(first >= Duration::from_secs(15), "{first:?}");
    let last = b.by_ref().take(10).last().unwrap();
    assert!(
        last >= Duration::from_secs(150) && last <= Duration::from_secs(300),
        "{last:?}"
    );
}

#[test]
fn a_forbidden_secret_is_reported_as_forbidden_not_missing() {
    let mut s = synced();
    s.handle(&PEERS, WatchEvent::Apply(peer_with_secret("p", "locked")));
    s.set_secret_watches(&s.referenced_secrets());
    let key = WatchKey::Secret("locked".into());
    s.set_forbidden(&key, true);
    assert!(s.mark_unreadable(&key));
    assert!(s.is_forbidden(&key));
    let forbidden: std::collections::BTreeSet<String> = ["locked".to_string()].into();
    let text = super::state::forbidden_wording(
        "spec.password.secretKeyRef: Secret \"locked\" not found; Secret \"other\" not found",
        &forbidden,
    );
    assert!(text.contains("Secret \"locked\" is forbidden"), "{text}");
    assert!(text.contains("Secret \"other\" not found"), "{text}");
    // The peer stops naming it: nothing is remembered.
    s.handle(&PEERS, WatchEvent::Delete(peer_with_secret("p", "locked")));
    s.set_secret_watches(&s.referenced_secrets());
    assert!(!s.is_forbidden(&key));
}

/// An edit that makes a peer name a BGPFilter that does not exist keeps the
/// peer's last valid version (its old address); deleting the filter a peer
/// already names keeps the peer as it is (resolution keeps its filters).
#[test]
fn an_edit_with_a_missing_filter_keeps_the_last_valid_version() {
    let mut s = synced();
    s.handle(
        &WatchKey::Kind(Kind::BgpFilter),
        WatchEvent::Apply(filter("f")),
    );
    let mut p = peer("p", "192.0.2.10", json!(64999));
    p["spec"]["filters"] = json!(["f"]);
    s.handle(&PEERS, WatchEvent::Apply(p.clone()));
    assert_eq!(peer_ips(&mut s), vec![("p".into(), "192.0.2.10".into())]);
    // The filter goes away: the unchanged peer stays.
    s.handle(
        &WatchKey::Kind(Kind::BgpFilter),
        WatchEvent::Delete(filter("f")),
    );
    assert_eq!(peer_ips(&mut s), vec![("p".into(), "192.0.2.10".into())]);
    // An edit to a new address naming a missing filter: the last valid
    // version (the old address) is kept, and reported.
    let mut edited = peer("p", "192.0.2.11", json!(64999));
    edited["spec"]["filters"] = json!(["no-such-filter"]);
    s.handle(&PEERS, WatchEvent::Apply(edited));
    let built = s.build("n1");
    let ips: Vec<String> = built
        .snapshot
        .peers
        .iter()
        .map(|p| p.spec.peer_ip.map(|ip| ip.to_string()).unwrap_or_default())
        .collect();
    assert_eq!(ips, vec!["192.0.2.10".to_string()]);
    assert!(
        built
            .snapshot
            .problems
            .iter()
            .any(|p| p.name == "p" && p.reason.contains("no-such-filter")),
        "{:?}",
        built.snapshot.problems
    );
}
