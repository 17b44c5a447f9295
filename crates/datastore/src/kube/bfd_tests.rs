//! BFDProfile references through the Kubernetes datastore: a profile that
//! goes away keeps the peer's last BFD settings (the rule of a missing
//! BGPFilter), an edited profile flows into the peer's settings.

use super::state::{Kind, State, WatchEvent, WatchKey};
use crate::resolved::PeerOrigin;
use serde_json::{Value, json};
use std::time::Duration;

fn synced() -> State {
    let mut s = State::new();
    for k in Kind::CLUSTER_WIDE {
        s.handle(&WatchKey::Kind(k), WatchEvent::Init);
        s.handle(&WatchKey::Kind(k), WatchEvent::InitDone);
    }
    s
}

fn profile(name: &str, tx: u32) -> Value {
    json!({"apiVersion": "petrel.dev/v1", "kind": "BFDProfile", "metadata": {"name": name},
           "spec": {"transmitInterval": tx, "detectMultiplier": 5}})
}

const PROFILES: WatchKey = WatchKey::Kind(Kind::BfdProfile);

#[test]
fn a_missing_bfd_profile_keeps_the_last_bfd_settings() {
    let mut s = synced();
    s.handle(
        &WatchKey::Kind(Kind::Node),
        WatchEvent::Apply(json!({"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": "n1", "annotations": {"petrel.dev/ipv4-address": "192.0.2.1/24"}}})),
    );
    s.handle(&PROFILES, WatchEvent::Apply(profile("fast", 100)));
    s.handle(
        &WatchKey::Kind(Kind::BgpPeer),
        WatchEvent::Apply(json!({"apiVersion": "petrel.dev/v1", "kind": "BGPPeer",
            "metadata": {"name": "p"},
            "spec": {"peerIP": "192.0.2.9", "asNumber": 64999, "bfdProfile": "fast"}})),
    );
    let origin = PeerOrigin::BgpPeer("p".into());
    let first = crate::resolve_with(&s.build("n1").snapshot, "n1", None).unwrap();
    let bfd = first.peers[&origin].bfd.clone().expect("BFD on");
    assert_eq!(bfd.profile, "fast");
    assert_eq!(bfd.transmit_interval, Duration::from_millis(100));
    assert_eq!(bfd.receive_interval, Duration::from_millis(300));
    assert_eq!(bfd.detect_multiplier, 5);
    assert!(first.problems.is_empty(), "{:?}", first.problems);

    // Edited: the new parameters (the speaker renegotiates, no reset).
    s.handle(&PROFILES, WatchEvent::Apply(profile("fast", 200)));
    let edited = crate::resolve_with(&s.build("n1").snapshot, "n1", Some(&first)).unwrap();
    assert_eq!(
        edited.peers[&origin]
            .bfd
            .as_ref()
            .unwrap()
            .transmit_interval,
        Duration::from_millis(200)
    );

    // Deleted: the peer keeps its last settings, and the problem is reported.
    s.handle(&PROFILES, WatchEvent::Delete(profile("fast", 200)));
    let snapshot = s.build("n1").snapshot;
    let kept = crate::resolve_with(&snapshot, "n1", Some(&edited)).unwrap();
    assert_eq!(kept.peers[&origin], edited.peers[&origin]);
    let reasons: Vec<String> = kept.problems.iter().map(ToString::to_string).collect();
    assert_eq!(
        reasons,
        vec![
            "BGPPeer/p: spec.bfdProfile: BFDProfile \"fast\" not found; keeping the last BFD settings"
                .to_string()
        ]
    );
    // Never resolved: left out until the profile exists.
    let fresh = crate::resolve_with(&snapshot, "n1", None).unwrap();
    assert!(fresh.peers.is_empty());
    assert_eq!(fresh.problems.len(), 1, "{:?}", fresh.problems);
}

#[test]
fn an_invalid_profile_keeps_its_last_valid_version() {
    let mut s = synced();
    s.handle(&PROFILES, WatchEvent::Apply(profile("fast", 100)));
    assert_eq!(s.build("n1").snapshot.bfd_profiles.len(), 1);
    let mut echo = profile("fast", 150);
    echo["spec"]["echoMode"] = json!(true);
    s.handle(&PROFILES, WatchEvent::Apply(echo));
    let snapshot = s.build("n1").snapshot;
    assert_eq!(snapshot.bfd_profiles.len(), 1);
    assert_eq!(snapshot.bfd_profiles[0].spec.transmit_interval, Some(100));
}
