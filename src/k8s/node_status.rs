//! Per-node status (petrel.dev/v1 `PetrelNode`, cluster-scoped, named after
//! the node) and the task that writes it through the status subresource.
//!
//! `kubectl get petrelnodes` shows, per node, its established/total BGP
//! sessions, its IPAM blocks and the agent version; `-o yaml` shows each peer
//! (address, RFC 4271 session state, since when, prefixes received and
//! advertised, last error) and each block.
//!
//! The writer is rate-limited: it writes at most once per `min_interval`,
//! always the latest report (changes in between are coalesced), and only when
//! the status changed (plus a periodic refresh of `lastUpdateTime`), so a
//! flapping peer cannot flood the API server. Status writes are server-side
//! applies with the field manager [`FIELD_MANAGER`]; the object is created if
//! missing, owned by its Node so it is garbage-collected with it.
//!
//! Related RFCs: RFC 4271 (session states reported per peer).

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{CustomResource, Resource};
use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

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
    /// `pending` or `confirmed`.
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
fn rfc3339(t: SystemTime) -> Option<String> {
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

/// Options of the status writer.
#[derive(Debug, Clone)]
pub struct StatusWriterOptions {
    /// At most one write per this interval.
    pub min_interval: Duration,
    /// Rewrite an unchanged status this often (refreshes `lastUpdateTime`).
    pub refresh: Duration,
    /// Longest wait between retries after an error.
    pub max_backoff: Duration,
}

impl Default for StatusWriterOptions {
    /// One write per 5 s at most, a refresh every 5 min, retries up to 60 s apart.
    fn default() -> StatusWriterOptions {
        StatusWriterOptions {
            min_interval: Duration::from_secs(5),
            refresh: Duration::from_secs(300),
            max_backoff: Duration::from_secs(60),
        }
    }
}

/// Errors of one status write.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("cannot create PetrelNode {node}: {source}")]
    Create {
        node: String,
        #[source]
        source: kube::Error,
    },
    #[error("cannot write the status of PetrelNode {node}: {source}")]
    Write {
        node: String,
        #[source]
        source: kube::Error,
    },
}

/// Spawns the status writer with default options (see
/// [`spawn_status_writer_with`]).
pub fn spawn_status_writer(
    client: kube::Client,
    node_name: String,
    rx: watch::Receiver<NodeStatusReport>,
) -> JoinHandle<()> {
    spawn_status_writer_with(client, node_name, rx, StatusWriterOptions::default())
}

/// Spawns the task that keeps PetrelNode `node_name`'s status equal to the
/// latest report of `rx` (rate-limited, see the module documentation). The
/// task ends when the sender of `rx` is dropped.
pub fn spawn_status_writer_with(
    client: kube::Client,
    node_name: String,
    mut rx: watch::Receiver<NodeStatusReport>,
    opts: StatusWriterOptions,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let api: Api<PetrelNode> = Api::all(client.clone());
        let node = node_name.as_str();
        // The status a previous run wrote: keeps the conditions' transition
        // times across restarts (the first write happens regardless).
        let mut written: Option<PetrelNodeStatus> = api
            .get_opt(node)
            .await
            .ok()
            .flatten()
            .and_then(|n| n.status);
        let mut last_write: Option<Instant> = None;
        let mut failing = false;
        let mut backoff = opts.min_interval;
        rx.mark_changed();
        loop {
            // Wait for a change, or for the periodic refresh.
            let refresh_at = last_write.map(|t| t + opts.refresh);
            let changed = match refresh_at {
                Some(at) => tokio::select! {
                    r = rx.changed() => r.is_ok(),
                    _ = tokio::time::sleep_until(at) => true,
                },
                None => rx.changed().await.is_ok(),
            };
            if !changed {
                break; // the agent is gone
            }
            if let Some(t) = last_write {
                tokio::time::sleep_until(t + opts.min_interval).await;
            }
            let report = rx.borrow_and_update().clone();
            let mut status = build_status(&report, written.as_ref(), SystemTime::now());
            let due_refresh = refresh_at.is_some_and(|at| Instant::now() >= at);
            let unchanged = written.as_ref().is_some_and(|w| same_status(w, &status));
            if last_write.is_some() && !due_refresh && unchanged {
                continue;
            }
            status.last_update_time = rfc3339(SystemTime::now());
            last_write = Some(Instant::now());
            match write_status(&api, &client, node, &status).await {
                Ok(()) => {
                    if failing {
                        tracing::info!(node, "PetrelNode status written again");
                    }
                    failing = false;
                    backoff = opts.min_interval;
                    written = Some(status);
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!(node, "{e}; retrying with backoff");
                    }
                    failing = true;
                    // Retry with the latest report after the backoff.
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(opts.max_backoff);
                    rx.mark_changed();
                }
            }
        }
        tracing::debug!(node, "status writer stopped");
    })
}

/// Equal apart from `lastUpdateTime`.
fn same_status(a: &PetrelNodeStatus, b: &PetrelNodeStatus) -> bool {
    let mut b = b.clone();
    b.last_update_time.clone_from(&a.last_update_time);
    *a == b
}

/// Server-side applies the status, creating the object first if missing.
async fn write_status(
    api: &Api<PetrelNode>,
    client: &kube::Client,
    node: &str,
    status: &PetrelNodeStatus,
) -> Result<(), StatusError> {
    let patch = serde_json::json!({
        "apiVersion": PetrelNode::api_version(&()),
        "kind": PetrelNode::kind(&()),
        "metadata": { "name": node },
        "status": status,
    });
    let params = PatchParams::apply(FIELD_MANAGER).force();
    match api.patch_status(node, &params, &Patch::Apply(&patch)).await {
        Ok(_) => return Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(source) => {
            return Err(StatusError::Write {
                node: node.to_string(),
                source,
            });
        }
    }
    create(api, client, node).await?;
    api.patch_status(node, &params, &Patch::Apply(&patch))
        .await
        .map(|_| ())
        .map_err(|source| StatusError::Write {
            node: node.to_string(),
            source,
        })
}

/// Creates PetrelNode `node`, owned by Node `node` when that can be read.
async fn create(
    api: &Api<PetrelNode>,
    client: &kube::Client,
    node: &str,
) -> Result<(), StatusError> {
    let owner = Api::<Node>::all(client.clone())
        .get_opt(node)
        .await
        .ok()
        .flatten()
        .and_then(|n| {
            Some(OwnerReference {
                api_version: "v1".into(),
                kind: "Node".into(),
                name: node.to_string(),
                uid: n.metadata.uid?,
                ..Default::default()
            })
        });
    let object = PetrelNode {
        metadata: ObjectMeta {
            name: Some(node.to_string()),
            owner_references: owner.map(|o| vec![o]),
            ..Default::default()
        },
        spec: PetrelNodeSpec {},
        status: None,
    };
    match api.create(&PostParams::default(), &object).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(source) => Err(StatusError::Create {
            node: node.to_string(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
