//! Helpers for tests with a petrel node: editing its live manifests and
//! waiting on its peers.

use super::{PROPAGATE, UP};
use anyhow::Context;
use petrel_testbed::{Lab, PetrelPeer, wait_for};
use std::path::Path;
use std::time::Duration;

/// Writes `text` to `<node_dir>/<file>` atomically (temp file + rename), so
/// the agent never reads a half-written manifest.
pub fn write_manifest(lab: &Lab, node: &str, file: &str, text: &str) -> anyhow::Result<()> {
    let dir = lab.node_dir(node);
    let tmp = dir.join(format!(".{file}.tmp"));
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, dir.join(file))
        .with_context(|| format!("renaming {} into place", tmp.display()))?;
    Ok(())
}

/// Reads `<node_dir>/<file>`.
pub fn read_manifest(lab: &Lab, node: &str, file: &str) -> anyhow::Result<String> {
    let path = lab.node_dir(node).join(file);
    std::fs::read_to_string(&path).map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))
}

/// Deletes `<node_dir>/<file>`.
pub fn remove_manifest(lab: &Lab, node: &str, file: &str) -> anyhow::Result<()> {
    let path = lab.node_dir(node).join(file);
    std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))
}

/// A `BGPPeer` manifest.
pub fn bgp_peer(name: &str, peer_ip: &str, as_number: u32, extra_spec: &str) -> String {
    format!(
        "apiVersion: petrel.dev/v1\nkind: BGPPeer\nmetadata:\n  name: {name}\nspec:\n  \
         peerIP: {peer_ip}\n  asNumber: {as_number}\n{extra_spec}"
    )
}

/// Waits until petrel's peer at `address` is Established and returns it.
pub fn wait_petrel_established(lab: &Lab, node: &str, address: &str) -> anyhow::Result<PetrelPeer> {
    wait_petrel_established_within(lab, node, address, UP)
}

/// [`wait_petrel_established`] with another timeout than [`UP`].
pub fn wait_petrel_established_within(
    lab: &Lab,
    node: &str,
    address: &str,
    timeout: Duration,
) -> anyhow::Result<PetrelPeer> {
    wait_for(
        timeout,
        &format!("{node}'s peer {address} to be Established"),
        || {
            let p = lab.petrel_peer(node, address)?;
            anyhow::ensure!(p.state == "Established", "{}", peer_line(&p));
            Ok(p)
        },
    )
}

/// One-line summary of a peer for messages.
pub fn peer_line(p: &PetrelPeer) -> String {
    format!(
        "{} {} {} passive={} attempts={} transitions={} uptime={:?} rx={} acc={} adv={} err={:?}",
        p.name,
        p.address,
        p.state,
        p.passive,
        p.connection_attempts,
        p.established_transitions,
        p.uptime_seconds,
        p.prefixes_received,
        p.prefixes_accepted,
        p.prefixes_advertised,
        p.last_error
    )
}

/// Waits until petrel's peer at `address` has a `last_error` containing any
/// of `needles` (case-insensitive) and is not Established.
pub fn wait_petrel_error(
    lab: &Lab,
    node: &str,
    address: &str,
    needles: &[&str],
) -> anyhow::Result<PetrelPeer> {
    wait_for(
        PROPAGATE,
        &format!(
            "petrel's peer {address} to be down with last_error containing one of {needles:?}"
        ),
        || {
            let p = lab.petrel_peer(node, address)?;
            // A NOTIFICATION is followed by reconnect attempts whose
            // failures replace last_error; last_notification keeps it.
            let err = format!(
                "{} | {}",
                p.last_error.clone().unwrap_or_default(),
                p.last_notification.clone().unwrap_or_default()
            )
            .to_ascii_lowercase();
            anyhow::ensure!(p.state != "Established", "still Established");
            anyhow::ensure!(
                needles
                    .iter()
                    .any(|n| err.contains(&n.to_ascii_lowercase())),
                "state {}, last_error {:?}, last_notification {:?}",
                p.state,
                p.last_error,
                p.last_notification
            );
            Ok(p)
        },
    )
}

/// Waits until petrel no longer lists a peer at `address`.
pub fn wait_petrel_peer_gone(lab: &Lab, node: &str, address: &str) -> anyhow::Result<()> {
    wait_for(
        PROPAGATE,
        &format!("petrel to drop its peer {address}"),
        || {
            let peers = lab.petrel_peers(node)?;
            let left: Vec<String> = peers
                .iter()
                .filter(|p| petrel_testbed::status::same_addr(&p.address, address))
                .map(|p| format!("{} {}", p.name, p.state))
                .collect();
            anyhow::ensure!(left.is_empty(), "still listed: {left:?}");
            Ok(())
        },
    )
}

/// Whether a file exists in the node's manifest directory.
pub fn manifest_exists(lab: &Lab, node: &str, file: &str) -> bool {
    Path::new(&lab.node_dir(node)).join(file).exists()
}

/// `petrel events -o json` against a node, killed on drop; its stdout
/// lines arrive on `lines`.
pub struct EventsChild {
    child: std::process::Child,
    pub lines: std::sync::mpsc::Receiver<String>,
}

impl EventsChild {
    pub fn spawn(lab: &Lab, node: &str) -> anyhow::Result<EventsChild> {
        let mut child = std::process::Command::new(petrel_testbed::daemon::petrel_bin()?)
            .arg("--api-socket")
            .arg(lab.api_socket(node)?)
            .args(["events", "-o", "json"])
            .stdout(std::process::Stdio::piped())
            .spawn()?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(EventsChild { child, lines })
    }
}

impl Drop for EventsChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
