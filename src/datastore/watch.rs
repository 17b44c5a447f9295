//! Polling the manifest directory and publishing this node's configuration.
//!
//! Polling by content (not inotify) is robust to everything that replaces
//! files: editors' write-to-temp-and-rename, and the symlink swap Kubernetes
//! does when it updates a ConfigMap volume (`..data` → new timestamped
//! directory). A change is applied once the content has been the same for two
//! consecutive polls, so a file caught half-written is never applied.

use super::error::DatastoreError;
use super::load::{SourceFile, parse_files, read_dir_files};
use super::resolve;
use super::resolved::NodeConfig;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What one poll found.
struct Poll {
    fingerprint: u64,
    result: Result<Vec<SourceFile>, DatastoreError>,
    read_errors: Vec<super::error::ManifestError>,
}

fn poll(dir: &Path) -> Poll {
    let mut h = DefaultHasher::new();
    match read_dir_files(dir) {
        Ok((files, read_errors)) => {
            files.hash(&mut h);
            read_errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .hash(&mut h);
            Poll {
                fingerprint: h.finish(),
                result: Ok(files),
                read_errors,
            }
        }
        Err(e) => {
            e.to_string().hash(&mut h);
            Poll {
                fingerprint: h.finish(),
                result: Err(e),
                read_errors: Vec::new(),
            }
        }
    }
}

fn load_and_resolve(p: Poll, node_name: &str) -> Result<NodeConfig, DatastoreError> {
    let files = p.result?;
    let snapshot = parse_files(&files, p.read_errors)?;
    resolve(&snapshot, node_name)
}

/// Watches `dir` (polling every `interval`, comparing content hashes) and sends
/// a new [`NodeConfig`] whenever the resolved configuration changes. On error
/// it logs the error once per distinct error (`tracing::error!` with the file
/// and field in the message) and keeps the last good configuration. The
/// receiver holds `None` until the first good configuration. The task ends
/// when every receiver has been dropped.
pub fn watch_dir(
    dir: PathBuf,
    node_name: String,
    interval: Duration,
) -> (watch::Receiver<Option<NodeConfig>>, JoinHandle<()>) {
    let (tx, rx) = watch::channel(None);
    let handle = tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval.max(Duration::from_millis(10)));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut applied: Option<u64> = None;
        let mut previous: Option<u64> = None;
        let mut last_error: Option<String> = None;
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = tx.closed() => break,
            }
            let d = dir.clone();
            let Ok(p) = tokio::task::spawn_blocking(move || poll(&d)).await else {
                break; // runtime shutting down
            };
            let fp = p.fingerprint;
            // Apply the first poll at once; later changes once stable.
            let stable = previous == Some(fp) || (applied.is_none() && previous.is_none());
            previous = Some(fp);
            if !stable || applied == Some(fp) {
                continue;
            }
            applied = Some(fp);
            let name = node_name.clone();
            let Ok(result) = tokio::task::spawn_blocking(move || load_and_resolve(p, &name)).await
            else {
                break;
            };
            match result {
                Ok(config) => {
                    if last_error.take().is_some() {
                        tracing::info!(node = node_name.as_str(), dir = %dir.display(), "configuration is valid again");
                    }
                    let changed = tx.send_if_modified(|cur| {
                        if cur.as_ref() == Some(&config) {
                            false
                        } else {
                            *cur = Some(config);
                            true
                        }
                    });
                    if changed {
                        tracing::info!(node = node_name.as_str(), dir = %dir.display(), "configuration updated");
                    }
                }
                Err(e) => {
                    let text = e.to_string();
                    if last_error.as_deref() != Some(text.as_str()) {
                        let kept = if tx.borrow().is_some() {
                            "keeping the last good configuration"
                        } else {
                            "no configuration yet"
                        };
                        tracing::error!(node = node_name.as_str(), dir = %dir.display(), "{text} ({kept})");
                        last_error = Some(text);
                    }
                }
            }
        }
    });
    (rx, handle)
}
