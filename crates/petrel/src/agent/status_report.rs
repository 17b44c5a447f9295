//! The node's status for the PetrelNode object (Kubernetes datastore): built
//! every few seconds from the speaker's peers and IPAM's blocks, and handed
//! to the status writer, which rate-limits the writes.

use petrel_crd::{BlockReport, NodeStatusReport, PeerReport};
use petrel_ipam::backend::{BlockClaimState, IpamBackend};
use petrel_speaker::SpeakerHandle;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::watch;

/// How often the report is rebuilt (the writer coalesces and rate-limits).
const INTERVAL: Duration = Duration::from_secs(2);

/// A block's state as the PetrelNode CRD documents it (lower case, like
/// IPAMBlock's `state`).
fn block_state_name(state: BlockClaimState) -> &'static str {
    match state {
        BlockClaimState::Pending => "pending",
        BlockClaimState::Confirmed => "confirmed",
        BlockClaimState::Releasing => "releasing",
    }
}

/// Keeps `tx` equal to the node's current status until the channel closes.
pub async fn run(
    speaker: SpeakerHandle,
    ipam: Arc<dyn IpamBackend>,
    tx: watch::Sender<NodeStatusReport>,
) {
    // When each peer entered its current state, as first seen here.
    let mut since: HashMap<String, (petrel_bgp::fsm::State, SystemTime)> = HashMap::new();
    let mut ticker = tokio::time::interval(INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = tx.closed() => return,
        }
        let now = SystemTime::now();
        let peers = speaker.peers().await;
        let mut reports = Vec::with_capacity(peers.len());
        for p in &peers {
            let entry = since.entry(p.name.clone()).or_insert_with(|| {
                let start = now.checked_sub(p.uptime.unwrap_or_default()).unwrap_or(now);
                (p.state, start)
            });
            if entry.0 != p.state {
                *entry = (p.state, now);
            }
            reports.push(PeerReport {
                name: p.name.clone(),
                address: p.address.to_string(),
                state: p.state.to_string(),
                since: Some(entry.1),
                prefixes_received: p.prefixes_received,
                prefixes_advertised: p.prefixes_advertised,
                last_error: (!p.last_error.is_empty()).then(|| p.last_error.clone()),
            });
        }
        since.retain(|name, _| peers.iter().any(|p| &p.name == name));
        let blocks = match ipam.status().await {
            Ok(s) => s
                .blocks
                .iter()
                .filter(|b| b.owner_node == s.node)
                .map(|b| BlockReport {
                    cidr: b.cidr.to_string(),
                    state: block_state_name(b.state).to_string(),
                })
                .collect(),
            Err(_) => tx.borrow().blocks.clone(),
        };
        let report = NodeStatusReport {
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
            peers: reports,
            blocks,
            conditions: vec![],
        };
        petrel_datastore::publish_changed(&tx, report);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_states_are_the_documented_lower_case_names() {
        assert_eq!(block_state_name(BlockClaimState::Pending), "pending");
        assert_eq!(block_state_name(BlockClaimState::Confirmed), "confirmed");
        assert_eq!(block_state_name(BlockClaimState::Releasing), "releasing");
    }
}
