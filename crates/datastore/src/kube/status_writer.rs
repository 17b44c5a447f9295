//! The task that writes this node's `PetrelNode` status (petrel.dev/v1,
//! see `petrel_crd::PetrelNode`) through the status subresource.
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
use kube::Resource;
use kube::api::{Api, Patch, PatchParams, PostParams};
use petrel_crd::{
    FIELD_MANAGER, NodeStatusReport, PetrelNode, PetrelNodeSpec, PetrelNodeStatus, build_status,
    rfc3339, same_status,
};
use std::time::{Duration, SystemTime};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

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
