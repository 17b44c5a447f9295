//! The node's status for the PetrelNode object (Kubernetes datastore): built
//! every few seconds from the speaker's peers and IPAM's blocks, and handed
//! to the status writer, which rate-limits the writes.

use petrel_crd::{BlockReport, ConditionReport, NodeStatusReport, PeerReport};
use petrel_datastore::resolved::NodeConfig;
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
    config: watch::Receiver<Option<NodeConfig>>,
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
            conditions: vec![
                config_condition(config.borrow().as_ref()),
                draining_condition(speaker.draining().as_deref()),
            ],
        };
        petrel_datastore::publish_changed(&tx, report);
    }
}

/// What `GetConfigStatus` serves: the problems of the current configuration.
pub fn config_status_fn(config: watch::Receiver<Option<NodeConfig>>) -> petrel_api::ConfigStatusFn {
    Arc::new(move || {
        config.borrow().as_ref().map(|c| {
            c.problems
                .iter()
                .map(|p| petrel_api::ConfigProblem {
                    kind: p.kind.clone(),
                    name: p.name.clone(),
                    reason: p.reason.clone(),
                })
                .collect()
        })
    })
}

/// The `Draining` condition: `True` while the node drains (RFC 8326
/// graceful shutdown), with the reason.
pub fn draining_condition(reason: Option<&str>) -> ConditionReport {
    match reason {
        Some(why) => ConditionReport {
            type_: "Draining".into(),
            status: true,
            reason: "GracefulShutdown".into(),
            message: format!(
                "{why}: this node's routes are advertised with GRACEFUL_SHUTDOWN (65535:0), LOCAL_PREF 0 on iBGP"
            ),
        },
        None => ConditionReport {
            type_: "Draining".into(),
            status: false,
            reason: "NotDraining".into(),
            message: "this node's routes are advertised as usual".into(),
        },
    }
}

/// The `ConfigValid` condition: `False` while some object is invalid (on its
/// own or because of an object it depends on), naming each with its reason.
pub fn config_condition(config: Option<&NodeConfig>) -> ConditionReport {
    let Some(config) = config else {
        return ConditionReport {
            type_: "ConfigValid".into(),
            status: false,
            reason: "NotLoaded".into(),
            message: "no configuration for this node resolved yet".into(),
        };
    };
    if config.problems.is_empty() {
        return ConditionReport {
            type_: "ConfigValid".into(),
            status: true,
            reason: "AllObjectsValid".into(),
            message: "every object of the configuration is valid".into(),
        };
    }
    let objects: std::collections::BTreeSet<(&str, &str)> = config
        .problems
        .iter()
        .map(|p| (p.kind.as_str(), p.name.as_str()))
        .collect();
    let list: Vec<String> = config.problems.iter().map(ToString::to_string).collect();
    ConditionReport {
        type_: "ConfigValid".into(),
        status: false,
        reason: "InvalidObjects".into(),
        message: format!(
            "{} invalid object{} (petrel keeps their last valid version or leaves them out): {}",
            objects.len(),
            if objects.len() == 1 { "" } else { "s" },
            list.join("; ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use petrel_datastore::resolved::ConfigProblem;

    #[test]
    fn config_valid_names_each_invalid_object() {
        assert!(!config_condition(None).status);
        let snapshot = petrel_datastore::parse_manifest(
            "n.yaml",
            "apiVersion: v1\nkind: Node\nmetadata:\n  name: n1\n  annotations: {petrel.dev/ipv4-address: 192.0.2.1/24}\n",
        )
        .unwrap();
        let mut cfg = petrel_datastore::resolve(&snapshot, "n1").unwrap();
        let ok = config_condition(Some(&cfg));
        assert!(ok.status, "{ok:?}");
        assert_eq!(ok.type_, "ConfigValid");
        cfg.problems = vec![
            ConfigProblem {
                kind: "BGPPeer".into(),
                name: "tor".into(),
                reason: "spec.password: Secret \"bgp-passwords\" has no key \"bird\"".into(),
            },
            ConfigProblem {
                kind: "IPPool".into(),
                name: "aaa-overlap".into(),
                reason: "spec.cidr: overlaps IPPool pods".into(),
            },
        ];
        let bad = config_condition(Some(&cfg));
        assert!(!bad.status);
        assert_eq!(bad.reason, "InvalidObjects");
        assert!(
            bad.message.starts_with("2 invalid objects"),
            "{}",
            bad.message
        );
        assert!(
            bad.message.contains("BGPPeer/tor: spec.password"),
            "{}",
            bad.message
        );
        assert!(
            bad.message.contains("IPPool/aaa-overlap: spec.cidr"),
            "{}",
            bad.message
        );
    }

    #[test]
    fn draining_condition_names_the_reason() {
        let off = draining_condition(None);
        assert!(!off.status);
        assert_eq!(off.type_, "Draining");
        let on = draining_condition(Some("node cordoned (spec.unschedulable)"));
        assert!(on.status);
        assert!(on.message.starts_with("node cordoned"), "{}", on.message);
    }

    #[test]
    fn block_states_are_the_documented_lower_case_names() {
        assert_eq!(block_state_name(BlockClaimState::Pending), "pending");
        assert_eq!(block_state_name(BlockClaimState::Confirmed), "confirmed");
        assert_eq!(block_state_name(BlockClaimState::Releasing), "releasing");
    }
}
