//! The Kubernetes datastore: petrel's configuration read from the API server.
//!
//! [`watch`] runs one kube-runtime watcher per kind (BGPConfiguration,
//! BGPPeer, BGPFilter, IPPool in `petrel.dev/v1`; Nodes, Services,
//! `discovery.k8s.io/v1` EndpointSlices) plus one per Secret named by a peer
//! or by the BGPConfiguration (`metadata.name` field selector in petrel's
//! namespace, so RBAC `resourceNames` can restrict them), and publishes a
//! validated [`Snapshot`] whenever the objects
//! change:
//!
//! - **Debounced**: a burst of changes becomes one snapshot (quiet period,
//!   bounded by a maximum delay), and a snapshot is published only when the
//!   objects it is assembled from differ from the last one.
//! - **Complete**: nothing is published before every watch has completed its
//!   first list, and a relist (after a 410 Gone, or a restart of the watch)
//!   replaces a kind's objects only when the list is complete, so a relist
//!   never publishes an empty or partial snapshot.
//! - **Per-object last good**: an object that becomes invalid is replaced by
//!   its last valid version (or left out if it never was valid); the error is
//!   logged once, with the object.
//! - **Outages**: watch errors are retried with a jittered exponential
//!   backoff (0.5 s doubling up to [`KubeOptions::max_backoff`]) and logged
//!   once per watch; the last snapshot stays published. A Secret the agent
//!   may not read (403) is retried every 30 s to 5 min, logged once as
//!   forbidden, and a peer naming it is reported as forbidden, not missing. kube-runtime's watcher
//!   resumes from the last resourceVersion, and relists after 410 Gone.
//! - **Local cache**: every published snapshot's objects are written to a
//!   cache file; when the API server cannot be reached at start-up, the cached
//!   objects are published after a few seconds, so the node comes up with its
//!   last good configuration.
//!
//! [`spawn_status_writer`] and
//! [`ipam::KubeIpamStore`] are the write side.
//!
//! Related RFCs: none directly (the objects configure RFC 4271 BGP sessions).

pub mod cache;
mod driver;
pub mod ipam;
mod ipam_cache;
mod stall;
mod state;
pub(crate) use state::forbidden_wording;
pub mod status_writer;

pub use cache::CacheError;
pub use state::{Kind, ObjKey, WatchKey};
pub use status_writer::{
    StatusError, StatusWriterOptions, spawn_status_writer, spawn_status_writer_with,
};

use crate::Snapshot;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch as tokio_watch;
use tokio::task::JoinHandle;

/// petrel's own namespace: where the Secrets named by peers live.
pub const DEFAULT_NAMESPACE: &str = "petrel-system";

/// Options of [`watch`].
#[derive(Debug, Clone)]
pub struct KubeOptions {
    /// This node's name (for logs and the cache file).
    pub node_name: String,
    /// Namespace of the Secrets named by peers (petrel's own namespace).
    pub namespace: String,
    /// Where to cache the last published configuration; `None` disables the cache.
    pub cache_file: Option<PathBuf>,
    /// Quiet period after a change before a snapshot is assembled.
    pub debounce: Duration,
    /// Longest delay of a snapshot under a continuous stream of changes.
    pub max_delay: Duration,
    /// How long to wait for the API server at start-up before publishing the cache.
    pub cache_after: Duration,
    /// Longest delay between two attempts of a failing watch (the delays
    /// double from 0.5 s, with jitter): bounds how long after an API server
    /// outage the node resyncs.
    pub max_backoff: Duration,
}

impl KubeOptions {
    /// Defaults: namespace `petrel-system`, no cache, 100 ms debounce (at most
    /// 1 s), cache used after 3 s without the API server, watch retries at
    /// most 8 s apart.
    pub fn new(node_name: impl Into<String>) -> KubeOptions {
        KubeOptions {
            node_name: node_name.into(),
            namespace: DEFAULT_NAMESPACE.to_string(),
            cache_file: None,
            debounce: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            cache_after: Duration::from_secs(3),
            max_backoff: Duration::from_secs(8),
        }
    }
}

/// Watches the API server and publishes validated snapshots (see the module
/// documentation). The receiver holds `None` until the first snapshot (from
/// the API server or the cache). The task ends when every receiver has been
/// dropped; dropping or aborting it stops every watcher.
pub fn watch(
    client: kube::Client,
    opts: KubeOptions,
) -> (tokio_watch::Receiver<Option<Arc<Snapshot>>>, JoinHandle<()>) {
    let (tx, rx) = tokio_watch::channel(None);
    let handle = tokio::spawn(driver::run(client, opts, tx));
    (rx, handle)
}

#[cfg(test)]
mod bfd_tests;
#[cfg(test)]
mod tests;
