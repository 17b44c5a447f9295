//! Per-node status (petrel.dev/v1 `PetrelNode`, cluster-scoped, named after
//! the node), and how an agent's report becomes its status.
//!
//! `kubectl get petrelnodes` shows, per node, its established/total BGP
//! sessions, its IPAM blocks and the agent version; `-o yaml` shows each peer
//! (address, RFC 4271 session state, since when, prefixes received and
//! advertised, last error) and each block.
//!
//! The writer (`petrel_datastore::kube::status_writer`) turns the agent's
//! [`NodeStatusReport`] into a [`PetrelNodeStatus`] with [`build_status`].
//!
//! Related RFCs: RFC 4271 (session states reported per peer).

use k8s_openapi::jiff::Timestamp;
use kube::CustomResource;
use serde::{Deserialize, Serialize};
use std::time::SystemTime;

/// Field manager of the agent's status writes.
pub const FIELD_MANAGER: &str = "petrel-agent";

/// Spec of a `PetrelNode`: empty; the object exists for its status.
#[derive(
    CustomResource,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
    Debug,
    Clone,
    PartialEq,
    Eq,
    Default,
)]
#[kube(
    group = "petrel.dev",
    version = "v1",
    kind = "PetrelNode",
    plural = "petrelnodes",
    shortname = "pnode",
    status = "PetrelNodeStatus",
    derive = "PartialEq",
    doc = "Status of the petrel agent of one node (named after the node; written by the agent).",
    printcolumn = r#"{"name":"Established","type":"string","jsonPath":".status.peerSummary","description":"BGP sessions established / configured"}"#,
    printcolumn = r#"{"name":"Blocks","type":"integer","jsonPath":".status.blockCount"}"#,
    printcolumn = r#"{"name":"Version","type":"string","jsonPath":".status.agentVersion"}"#,
    printcolumn = r#"{"name":"Updated","type":"date","jsonPath":".status.lastUpdateTime"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct PetrelNodeSpec {}

/// Status of a `PetrelNode`.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Debug, Clone, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = super::bgp_peer::kubernetes_int_formats)]
pub struct PetrelNodeStatus {
    /// Version of the agent that wrote this status.
    #[serde(default)]
    pub agent_version: String,
    /// `<established>/<configured>` BGP sessions, for `kubectl get`.
    #[serde(default)]
    pub peer_summary: String,
    #[serde(default)]
    pub peers_established: u32,
    #[serde(default)]
    pub peers_total: u32,
    /// Number of IPAM blocks this node holds.
    #[serde(default)]
    pub block_count: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<PeerStatus>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blocks: Vec<BlockStatus>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<StatusCondition>,
    /// When the agent last wrote this status (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_update_time: Option<String>,
}

/// One BGP peer of the node.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Debug, Clone, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = super::bgp_peer::kubernetes_int_formats)]
pub struct PeerStatus {
    /// The peer's name (BGPPeer name, or `node-mesh-<node>` for the mesh).
    pub name: String,
    /// The peer's address.
    pub address: String,
    /// Session state (RFC 4271 §8.2.2): Idle, Connect, Active, OpenSent, OpenConfirm, Established.
    pub state: String,
    /// When the session entered this state (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    #[serde(default)]
    pub prefixes_received: u64,
    #[serde(default)]
    pub prefixes_advertised: u64,
    /// The last error of the session (NOTIFICATION sent or received, connect error).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// One IPAM block of the node.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Debug, Clone, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = super::bgp_peer::kubernetes_int_formats)]
pub struct BlockStatus {
    pub cidr: String,
    /// `pending`, `confirmed` or `releasing`.
    pub state: String,
}

/// A condition in the Kubernetes convention.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Debug, Clone, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = super::bgp_peer::kubernetes_int_formats)]
pub struct StatusCondition {
    /// `Ready`, `PeersEstablished`, ...
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub message: String,
    /// When `status` last changed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
}

/// What the agent reports; the writer turns it into a [`PetrelNodeStatus`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeStatusReport {
    pub agent_version: String,
    pub peers: Vec<PeerReport>,
    pub blocks: Vec<BlockReport>,
    /// Extra conditions (`PeersEstablished` is computed by the writer).
    pub conditions: Vec<ConditionReport>,
}

/// One peer in a [`NodeStatusReport`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerReport {
    pub name: String,
    pub address: String,
    /// RFC 4271 state name, e.g. `Established`.
    pub state: String,
    pub since: Option<SystemTime>,
    pub prefixes_received: u64,
    pub prefixes_advertised: u64,
    pub last_error: Option<String>,
}

/// One block in a [`NodeStatusReport`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockReport {
    pub cidr: String,
    pub state: String,
}

/// One condition in a [`NodeStatusReport`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConditionReport {
    pub type_: String,
    pub status: bool,
    pub reason: String,
    pub message: String,
}

/// RFC 3339 text of a time, to the second.
pub fn rfc3339(t: SystemTime) -> Option<String> {
    let ts = Timestamp::try_from(t).ok()?;
    Timestamp::from_second(ts.as_second())
        .ok()
        .map(|t| t.to_string())
}

/// Builds the status for `report` at `now`. Conditions keep their
/// `lastTransitionTime` from `previous` while their status is unchanged.
/// `lastUpdateTime` is left to the caller.
pub fn build_status(
    report: &NodeStatusReport,
    previous: Option<&PetrelNodeStatus>,
    now: SystemTime,
) -> PetrelNodeStatus {
    let established = report
        .peers
        .iter()
        .filter(|p| p.state.eq_ignore_ascii_case("established"))
        .count() as u32;
    let total = report.peers.len() as u32;
    let mut peers: Vec<PeerStatus> = report
        .peers
        .iter()
        .map(|p| PeerStatus {
            name: p.name.clone(),
            address: p.address.clone(),
            state: p.state.clone(),
            since: p.since.and_then(rfc3339),
            prefixes_received: p.prefixes_received,
            prefixes_advertised: p.prefixes_advertised,
            last_error: p.last_error.clone(),
        })
        .collect();
    peers.sort_by(|a, b| a.name.cmp(&b.name).then(a.address.cmp(&b.address)));
    let mut blocks: Vec<BlockStatus> = report
        .blocks
        .iter()
        .map(|b| BlockStatus {
            cidr: b.cidr.clone(),
            state: b.state.clone(),
        })
        .collect();
    blocks.sort_by(|a, b| a.cidr.cmp(&b.cidr));
    let mut conds = vec![ConditionReport {
        type_: "PeersEstablished".into(),
        status: established == total,
        reason: if established == total {
            "AllEstablished".into()
        } else {
            "NotAllEstablished".into()
        },
        message: format!("{established} of {total} BGP sessions established"),
    }];
    conds.extend(
        report
            .conditions
            .iter()
            .filter(|c| c.type_ != "PeersEstablished")
            .cloned(),
    );
    let now_text = rfc3339(now);
    let conditions = conds
        .into_iter()
        .map(|c| {
            let status = if c.status { "True" } else { "False" }.to_string();
            let last_transition_time = previous
                .and_then(|p| p.conditions.iter().find(|x| x.type_ == c.type_))
                .filter(|x| x.status == status)
                .and_then(|x| x.last_transition_time.clone())
                .or_else(|| now_text.clone());
            StatusCondition {
                type_: c.type_,
                status,
                reason: c.reason,
                message: c.message,
                last_transition_time,
            }
        })
        .collect();
    PetrelNodeStatus {
        agent_version: report.agent_version.clone(),
        peer_summary: format!("{established}/{total}"),
        peers_established: established,
        peers_total: total,
        block_count: blocks.len() as u32,
        peers,
        blocks,
        conditions,
        last_update_time: None,
    }
}

/// Equal apart from `lastUpdateTime`.
pub fn same_status(a: &PetrelNodeStatus, b: &PetrelNodeStatus) -> bool {
    let mut b = b.clone();
    b.last_update_time.clone_from(&a.last_update_time);
    *a == b
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn peer(name: &str, state: &str) -> PeerReport {
        PeerReport {
            name: name.into(),
            address: "192.0.2.1".into(),
            state: state.into(),
            since: Some(SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_500)),
            prefixes_received: 3,
            prefixes_advertised: 2,
            last_error: None,
        }
    }

    fn report(states: &[&str]) -> NodeStatusReport {
        NodeStatusReport {
            agent_version: "0.1.0".into(),
            peers: states
                .iter()
                .enumerate()
                .map(|(i, s)| peer(&format!("p{i}"), s))
                .collect(),
            blocks: vec![BlockReport {
                cidr: "10.244.1.0/26".into(),
                state: "confirmed".into(),
            }],
            conditions: vec![],
        }
    }

    #[test]
    fn summary_counts_and_times() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let s = build_status(&report(&["Established", "Active", "Established"]), None, t);
        assert_eq!(s.peer_summary, "2/3");
        assert_eq!(
            (s.peers_established, s.peers_total, s.block_count),
            (2, 3, 1)
        );
        assert_eq!(s.peers[0].since.as_deref(), Some("2023-11-14T22:13:20Z"));
        let c = &s.conditions[0];
        assert_eq!(
            (c.type_.as_str(), c.status.as_str()),
            ("PeersEstablished", "False")
        );
        assert_eq!(
            c.last_transition_time.as_deref(),
            Some("2027-01-15T08:00:00Z")
        );
    }

    #[test]
    fn transition_time_moves_only_when_the_condition_changes() {
        let t1 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let t2 = t1 + Duration::from_secs(60);
        let s1 = build_status(&report(&["Active"]), None, t1);
        let s2 = build_status(&report(&["Connect"]), Some(&s1), t2);
        assert_eq!(
            s2.conditions[0].last_transition_time,
            s1.conditions[0].last_transition_time
        );
        let s3 = build_status(&report(&["Established"]), Some(&s2), t2);
        assert_eq!(s3.conditions[0].status, "True");
        assert_ne!(
            s3.conditions[0].last_transition_time,
            s1.conditions[0].last_transition_time
        );
        assert!(same_status(
            &s2,
            &build_status(&report(&["Connect"]), Some(&s2), t2)
        ));
        assert!(!same_status(&s2, &s3));
    }

    #[test]
    fn crd_is_cluster_scoped_with_status_and_columns() {
        use kube::CustomResourceExt;
        let crd = PetrelNode::crd();
        assert_eq!(crd.spec.scope, "Cluster");
        let v = &crd.spec.versions[0];
        assert!(
            v.subresources
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .is_some()
        );
        let cols: Vec<_> = v
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| c.json_path.as_str())
            .collect();
        assert!(cols.contains(&".status.peerSummary"), "{cols:?}");
        assert!(cols.contains(&".status.agentVersion"));
    }
}
