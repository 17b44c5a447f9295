//! Polling the manifest directory and publishing its objects, and resolving
//! a stream of datastore snapshots into this node's configuration.
//!
//! Polling by content (not inotify) is robust to everything that replaces
//! files: editors' write-to-temp-and-rename, and the symlink swap Kubernetes
//! does when it updates a ConfigMap volume (`..data` → new timestamped
//! directory). A change is applied once the content has been the same for two
//! consecutive polls, so a file caught half-written is never applied.

use super::Snapshot;
use super::error::DatastoreError;
use super::load::{SourceFile, parse_files, read_dir_files};
use super::resolve_with;
use super::resolved::{ConfigProblem, NodeConfig};
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
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

/// Publishes `value` on `tx` only when it differs from the current one, so
/// receivers wake up for real changes only; returns whether it was sent.
pub fn publish_changed<T: PartialEq>(tx: &watch::Sender<T>, value: T) -> bool {
    tx.send_if_modified(|cur| {
        if *cur == value {
            false
        } else {
            *cur = value;
            true
        }
    })
}

/// The errors of a manifest directory as problems of the objects they name
/// (of the file when they name none).
fn file_problems(e: &DatastoreError) -> Vec<ConfigProblem> {
    let DatastoreError::Invalid(errors) = e else {
        return vec![ConfigProblem {
            kind: "Datastore".into(),
            name: String::new(),
            reason: e.to_string(),
        }];
    };
    let mut out: Vec<ConfigProblem> = errors
        .iter()
        .map(|m| ConfigProblem {
            kind: m.object.as_ref().map_or("File".into(), |o| o.kind.clone()),
            name: m
                .object
                .as_ref()
                .and_then(|o| o.name.clone())
                .unwrap_or_else(|| m.file.clone()),
            reason: format!("{m} (the directory is rejected: its last valid version is in use)"),
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The line to log for an error, or `None` when it is the error logged last
/// (each distinct error is logged once, not at every poll).
fn new_error(last: &mut Option<String>, text: String, have_config: bool) -> Option<String> {
    if last.as_deref() == Some(text.as_str()) {
        return None;
    }
    let kept = if have_config {
        "keeping the last good configuration"
    } else {
        "no configuration yet"
    };
    let line = format!("{text} ({kept})");
    *last = Some(text);
    Some(line)
}

/// Watches `dir` (polling every `interval`, comparing content hashes) and
/// publishes every valid [`Snapshot`] of its manifests. A change is published
/// once the content has been stable for two polls. On error it logs the error
/// once per distinct error (`tracing::error!`, naming file and field) and keeps
/// the last good snapshot. The receiver holds `None` until the first valid
/// snapshot. The task ends when every receiver has been dropped.
pub fn watch_snapshots(
    dir: PathBuf,
    interval: Duration,
) -> (watch::Receiver<Option<Arc<Snapshot>>>, JoinHandle<()>) {
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
            let Ok(result) = tokio::task::spawn_blocking(move || {
                let files = p.result?;
                parse_files(&files, p.read_errors)
            })
            .await
            else {
                break;
            };
            match result {
                Ok(snapshot) => {
                    if last_error.take().is_some() {
                        tracing::info!(dir = %dir.display(), "manifests are valid again");
                    }
                    tx.send_replace(Some(Arc::new(snapshot)));
                }
                Err(e) => {
                    let have = tx.borrow().is_some();
                    if let Some(line) = new_error(&mut last_error, e.to_string(), have) {
                        tracing::error!(dir = %dir.display(), "{line}");
                    }
                    // The last good snapshot stays, carrying the errors so
                    // that status, metrics and `petrel status` show them.
                    let problems = file_problems(&e);
                    tx.send_if_modified(|cur| match cur {
                        Some(s) if s.problems != problems => {
                            let mut next = Snapshot::clone(s);
                            next.problems = problems;
                            *cur = Some(Arc::new(next));
                            true
                        }
                        _ => false,
                    });
                }
            }
        }
    });
    (rx, handle)
}

/// Resolves every snapshot from `snapshots` (either datastore) into the
/// configuration of `node_name`, publishing it when it changes. A snapshot
/// this node's configuration cannot be derived from is logged once and the
/// last good configuration is kept. The receiver holds `None` until the first
/// good configuration. The task ends when `snapshots` closes or every
/// receiver has been dropped.
pub fn resolve_snapshots(
    mut snapshots: watch::Receiver<Option<Arc<Snapshot>>>,
    node_name: String,
) -> (watch::Receiver<Option<NodeConfig>>, JoinHandle<()>) {
    let (tx, rx) = watch::channel(None);
    let handle = tokio::spawn(async move {
        let mut last_error: Option<String> = None;
        // The last configuration resolved: peers whose Secret or BGPFilter
        // goes missing keep their last password and filters.
        let mut previous: Option<Arc<NodeConfig>> = None;
        loop {
            let snapshot = snapshots.borrow_and_update().clone();
            if let Some(snapshot) = snapshot {
                let name = node_name.clone();
                let prev = previous.clone();
                let snap = snapshot.clone();
                let Ok(result) = tokio::task::spawn_blocking(move || {
                    resolve_with(&snap, &name, prev.as_deref())
                })
                .await
                else {
                    break;
                };
                match result {
                    Ok(config) => {
                        // Problems found by resolution (the snapshot's own
                        // were logged when it was assembled): once each.
                        let before = previous.as_ref().map_or(&[][..], |p| &p.problems[..]);
                        for p in &config.problems {
                            if !snapshot.problems.contains(p) && !before.contains(p) {
                                tracing::error!(
                                    node = node_name.as_str(),
                                    object = %format!("{}/{}", p.kind, p.name),
                                    "invalid reference: {}",
                                    p.reason
                                );
                            }
                        }
                        for p in before {
                            if !config
                                .problems
                                .iter()
                                .any(|q| q.kind == p.kind && q.name == p.name)
                            {
                                tracing::info!(
                                    node = node_name.as_str(),
                                    object = %format!("{}/{}", p.kind, p.name),
                                    "object is valid again"
                                );
                            }
                        }
                        previous = Some(Arc::new(config.clone()));
                        if last_error.take().is_some() {
                            tracing::info!(
                                node = node_name.as_str(),
                                "configuration is valid again"
                            );
                        }
                        if publish_changed(&tx, Some(config)) {
                            tracing::info!(node = node_name.as_str(), "configuration updated");
                        }
                    }
                    Err(e) => {
                        let have = tx.borrow().is_some();
                        if let Some(line) = new_error(&mut last_error, e.to_string(), have) {
                            tracing::error!(node = node_name.as_str(), "{line}");
                        }
                        // The last configuration stays, reporting why.
                        if let Some(prev) = &previous {
                            let mut kept = NodeConfig::clone(prev);
                            kept.problems.push(ConfigProblem {
                                kind: "Node".into(),
                                name: node_name.clone(),
                                reason: format!("{e} (keeping the last good configuration)"),
                            });
                            publish_changed(&tx, Some(kept));
                        }
                    }
                }
            }
            tokio::select! {
                changed = snapshots.changed() => if changed.is_err() { break },
                _ = tx.closed() => break,
            }
        }
    });
    (rx, handle)
}

/// [`watch_snapshots`] and [`resolve_snapshots`] together: this node's
/// configuration from a manifest directory. Aborting the returned handle
/// stops both tasks.
pub fn watch_dir(
    dir: PathBuf,
    node_name: String,
    interval: Duration,
) -> (watch::Receiver<Option<NodeConfig>>, JoinHandle<()>) {
    let (snapshots, poller) = watch_snapshots(dir, interval);
    let (config, resolver) = resolve_snapshots(snapshots, node_name);
    let handle = tokio::spawn(async move {
        struct AbortOnDrop(JoinHandle<()>);
        impl Drop for AbortOnDrop {
            fn drop(&mut self) {
                self.0.abort();
            }
        }
        let _poller = AbortOnDrop(poller);
        let _ = resolver.await;
    });
    (config, handle)
}
