//! Test of `watch_dir`: publish, update, keep the last good config on error, recover.

use super::super::*;
use super::NODES;
use std::time::Duration;
use tokio::sync::watch::Receiver;

const INTERVAL: Duration = Duration::from_millis(20);

async fn next_config(rx: &mut Receiver<Option<resolved::NodeConfig>>) -> resolved::NodeConfig {
    tokio::time::timeout(Duration::from_secs(10), rx.changed())
        .await
        .expect("no configuration change within 10s")
        .expect("watcher stopped");
    rx.borrow_and_update().clone().expect("a configuration")
}

fn tor(asn: &str) -> String {
    format!(
        "apiVersion: petrel.dev/v1\nkind: BGPPeer\nmetadata: {{name: tor}}\nspec:\n  peerIP: 10.0.0.254\n  asNumber: {asn}\n"
    )
}

fn tor_as(cfg: &resolved::NodeConfig) -> u32 {
    cfg.peers[&resolved::PeerOrigin::BgpPeer("tor".into())].peer_as
}

/// Replaces a file the way editors do: write a temporary file, rename it over.
fn replace(dir: &std::path::Path, name: &str, content: &str) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, content).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_dir_follows_changes_and_keeps_last_good_config() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("nodes.yaml"), NODES).unwrap();
    std::fs::write(dir.path().join("peers.yaml"), tor("65000")).unwrap();
    let (mut rx, handle) = watch_dir(dir.path().to_path_buf(), "node-a".into(), INTERVAL);

    // First configuration.
    let cfg = next_config(&mut rx).await;
    assert_eq!(cfg.node_name, "node-a");
    assert_eq!(tor_as(&cfg), 65000);

    // Change it (rename-and-replace).
    replace(dir.path(), "peers.yaml", &tor("65001"));
    let cfg_65001 = next_config(&mut rx).await;
    assert_eq!(tor_as(&cfg_65001), 65001);
    assert!(cfg_65001.problems.is_empty());

    // Break it: the last good configuration stays, and reports the error
    // (status, metrics, `petrel status`).
    replace(dir.path(), "peers.yaml", &tor("not-a-number"));
    let broken = next_config(&mut rx).await;
    assert_eq!(tor_as(&broken), 65001);
    let mut unchanged = broken.clone();
    unchanged.problems.clear();
    assert_eq!(unchanged, cfg_65001, "only the problems change");
    assert_eq!(broken.problems.len(), 1, "{:?}", broken.problems);
    assert_eq!(
        (
            broken.problems[0].kind.as_str(),
            broken.problems[0].name.as_str()
        ),
        ("BGPPeer", "tor")
    );
    assert!(
        broken.problems[0].reason.contains("spec.asNumber"),
        "{}",
        broken.problems[0].reason
    );
    tokio::time::sleep(INTERVAL * 10).await;
    assert!(
        !rx.has_changed().unwrap(),
        "a broken manifest publishes once"
    );

    // Fixed back to the same content: the problems go.
    replace(dir.path(), "peers.yaml", &tor("65001"));
    assert_eq!(next_config(&mut rx).await, cfg_65001);

    // A change that resolves to the same configuration publishes nothing.
    replace(
        dir.path(),
        "peers.yaml",
        &format!("# comment\n{}", tor("65001")),
    );
    tokio::time::sleep(INTERVAL * 10).await;
    assert!(
        !rx.has_changed().unwrap(),
        "an identical configuration must not publish"
    );

    // Fix it with a different value: published again.
    replace(dir.path(), "peers.yaml", &tor("65002"));
    assert_eq!(tor_as(&next_config(&mut rx).await), 65002);

    // A Kubernetes ConfigMap-style symlink swap is followed too.
    let v1 = dir.path().join("..v1");
    std::fs::create_dir(&v1).unwrap();
    std::fs::write(v1.join("peers.yaml"), tor("65003")).unwrap();
    // Swap atomically, as the kubelet does: a new link renamed over the old file.
    let tmp_link = dir.path().join(".peers.yaml.link");
    std::os::unix::fs::symlink("..v1/peers.yaml", &tmp_link).unwrap();
    std::fs::rename(&tmp_link, dir.path().join("peers.yaml")).unwrap();
    assert_eq!(tor_as(&next_config(&mut rx).await), 65003);

    // The task ends when the receiver is dropped.
    drop(rx);
    tokio::time::timeout(Duration::from_secs(5), handle)
        .await
        .expect("watcher must stop when the receiver is dropped")
        .expect("watcher task must not panic");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_dir_starts_with_none_when_invalid() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("peers.yaml"), tor("x")).unwrap();
    let (mut rx, _handle) = watch_dir(dir.path().to_path_buf(), "node-a".into(), INTERVAL);
    tokio::time::sleep(INTERVAL * 5).await;
    assert!(rx.borrow().is_none());
    std::fs::write(dir.path().join("nodes.yaml"), NODES).unwrap();
    replace(dir.path(), "peers.yaml", &tor("65010"));
    assert_eq!(tor_as(&next_config(&mut rx).await), 65010);
}
