//! BFDProfile in the file datastore: loading, validation, references from
//! peers and the mesh, resolution into `PeerConfig::bfd`.

use super::super::resolved::PeerOrigin;
use super::super::*;
use super::{NODES, errors, load};
use std::time::Duration;

fn profile(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: petrel.dev/v1\nkind: BFDProfile\nmetadata:\n  name: {name}\nspec:\n{spec}\n---\n"
    )
}

const PEER: &str = "apiVersion: petrel.dev/v1\nkind: BGPPeer\nmetadata:\n  name: tor\nspec:\n  peerIP: 10.0.0.254\n  asNumber: 65100\n  bfdProfile: fast\n---\n";

#[test]
fn a_peer_gets_its_profile_settings() {
    let all = format!(
        "{NODES}---\n{}{PEER}",
        profile(
            "fast",
            "  receiveInterval: 100\n  transmitInterval: 200\n  detectMultiplier: 4\n  passiveMode: true\n  minimumTtl: 250"
        )
    );
    let s = load(&[("all.yaml", &all)]).unwrap();
    let cfg = resolve(&s, "node-a").unwrap();
    let bfd = cfg.peers[&PeerOrigin::BgpPeer("tor".into())]
        .bfd
        .clone()
        .expect("BFD on");
    assert_eq!(bfd.profile, "fast");
    assert_eq!(bfd.receive_interval, Duration::from_millis(100));
    assert_eq!(bfd.transmit_interval, Duration::from_millis(200));
    assert_eq!(bfd.detect_multiplier, 4);
    assert!(bfd.passive);
    assert_eq!(bfd.minimum_ttl, 250);
}

#[test]
fn the_mesh_gets_the_node_mesh_profile() {
    let all = format!(
        "{NODES}---\n{}apiVersion: petrel.dev/v1\nkind: BGPConfiguration\nmetadata: {{name: default}}\nspec:\n  nodeMeshBFDProfile: mesh\n",
        profile("mesh", "  transmitInterval: 500")
    );
    let s = load(&[("all.yaml", &all)]).unwrap();
    let cfg = resolve(&s, "node-a").unwrap();
    let mesh = &cfg.peers[&PeerOrigin::Mesh("node-b".into())];
    let bfd = mesh.bfd.as_ref().expect("BFD on the mesh");
    assert_eq!(bfd.transmit_interval, Duration::from_millis(500));
    assert_eq!(bfd.receive_interval, Duration::from_millis(300));
    assert_eq!(bfd.detect_multiplier, 3);
}

#[test]
fn echo_and_out_of_range_values_are_rejected_with_the_field() {
    let e = errors(&[(
        "p.yaml",
        &profile(
            "fast",
            "  echoMode: true\n  echoInterval: 50\n  detectMultiplier: 1",
        ),
    )]);
    let all = e.join("\n");
    assert!(
        all.contains("spec.echoMode") && all.contains("echoMode is not supported"),
        "{all}"
    );
    assert!(all.contains("spec.echoInterval"), "{all}");
    assert!(all.contains("spec.detectMultiplier"), "{all}");
    let typo = errors(&[("p.yaml", &profile("fast", "  recieveInterval: 100"))]);
    assert!(typo.join("\n").contains("recieveInterval"), "{typo:?}");
}

#[test]
fn a_missing_profile_is_an_error_of_the_peer_and_the_configuration() {
    let e = errors(&[("all.yaml", &format!("{NODES}---\n{PEER}"))]);
    assert!(
        e.iter()
            .any(|m| m.contains("spec.bfdProfile") && m.contains("BFDProfile \"fast\" not found")),
        "{e:?}"
    );
    let e = errors(&[(
        "c.yaml",
        "apiVersion: petrel.dev/v1\nkind: BGPConfiguration\nmetadata: {name: default}\nspec:\n  nodeMeshBFDProfile: nope\n",
    )]);
    assert!(
        e.iter().any(|m| m.contains("spec.nodeMeshBFDProfile")),
        "{e:?}"
    );
}
