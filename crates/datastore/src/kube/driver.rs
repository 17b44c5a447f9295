//! The tokio driver of the Kubernetes datastore: runs the watchers, feeds
//! their events to [`State`], debounces, publishes and writes the cache.

use super::KubeOptions;
use super::cache;
use super::stall::GuardedWatch;
use super::state::{Built, Kind, SOURCE, State, WatchEvent, WatchKey};
use crate::{Snapshot, assemble_values};
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::watcher;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// One message from a watcher task.
type Message = (WatchKey, Result<WatchEvent, watcher::Error>);

/// Coalesces a burst of changes: due `quiet` after the last change, but no
/// later than `max_delay` after the first change of the burst.
#[derive(Debug, Clone)]
pub(crate) struct Debounce {
    quiet: Duration,
    max_delay: Duration,
    first: Option<Instant>,
    deadline: Option<Instant>,
}

impl Debounce {
    pub(crate) fn new(quiet: Duration, max_delay: Duration) -> Debounce {
        Debounce {
            quiet,
            max_delay: max_delay.max(quiet),
            first: None,
            deadline: None,
        }
    }

    /// Records a change at `now`.
    pub(crate) fn poke(&mut self, now: Instant) {
        let first = *self.first.get_or_insert(now);
        self.deadline = Some((now + self.quiet).min(first + self.max_delay));
    }

    /// When the pending burst is due, if there is one.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Ends the burst (called when it has been handled).
    pub(crate) fn clear(&mut self) {
        self.first = None;
        self.deadline = None;
    }
}

/// Retry delays of a failing watch: exponential from `min` (doubling) up to
/// `max`, each scaled by a random factor in [0.5, 1) so that the nodes of a
/// cluster do not all reconnect at once; reset by the first success.
#[derive(Debug, Clone)]
pub(crate) struct WatchBackoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl WatchBackoff {
    pub(crate) fn new(min: Duration, max: Duration) -> WatchBackoff {
        WatchBackoff {
            min,
            max: max.max(min),
            next: min,
        }
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;
    fn next(&mut self) -> Option<Duration> {
        let base = self.next;
        self.next = (self.next * 2).min(self.max);
        Some(base.mul_f64(0.5 + rand::random::<f64>() / 2.0))
    }
}

impl kube::runtime::utils::Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.next = self.min;
    }
}

/// A spawned task that is aborted when dropped.
pub(crate) struct TaskGuard(pub(crate) JoinHandle<()>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn api_resource(kind: Kind) -> ApiResource {
    let (api_version, kind_name, plural) = kind.resource();
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    ApiResource {
        group: group.to_string(),
        version: version.to_string(),
        api_version: api_version.to_string(),
        kind: kind_name.to_string(),
        plural: plural.to_string(),
    }
}

/// Runs a kube-runtime watcher (with [`WatchBackoff`] on errors) for `key`,
/// forwarding its events until the receiver is gone.
fn spawn_watcher(
    client: kube::Client,
    namespace: &str,
    key: WatchKey,
    tx: mpsc::Sender<Message>,
    max_backoff: Duration,
) -> TaskGuard {
    let ar = api_resource(key.kind());
    let (api, config) = match &key {
        WatchKey::Kind(_) => (
            Api::<DynamicObject>::all_with(client, &ar),
            watcher::Config::default(),
        ),
        WatchKey::Secret(name) => (
            Api::<DynamicObject>::namespaced_with(client, namespace, &ar),
            watcher::Config::default().fields(&format!("metadata.name={name}")),
        ),
    };
    TaskGuard(tokio::spawn(async move {
        // Backoff by hand rather than with `WatchStreamExt::backoff`, which
        // resets on any event: the watcher emits `Init` at the start of each
        // relist attempt, before the list has succeeded, so during an outage
        // it retried every ~0.5 s forever. Here only real progress resets it.
        let mut backoff = WatchBackoff::new(Duration::from_millis(500), max_backoff);
        // A 403 will not go away by itself (someone has to edit the RBAC):
        // ask again rarely.
        let (min, max) = FORBIDDEN_BACKOFF;
        let mut forbidden = WatchBackoff::new(min, max);
        let mut stream = GuardedWatch::new(api, config, format!("{key:?}"));
        while let Some(item) = stream.next().await {
            let failed = item.is_err();
            if matches!(&item, Ok(e) if !matches!(e, watcher::Event::Init)) {
                kube::runtime::utils::Backoff::reset(&mut backoff);
                kube::runtime::utils::Backoff::reset(&mut forbidden);
            }
            let refused = matches!(&item, Err(e) if is_forbidden(e));
            let to_value = |o: DynamicObject| serde_json::to_value(o).unwrap_or(Value::Null);
            let msg = item.map(|e| match e {
                watcher::Event::Apply(o) => WatchEvent::Apply(to_value(o)),
                watcher::Event::Delete(o) => WatchEvent::Delete(to_value(o)),
                watcher::Event::Init => WatchEvent::Init,
                watcher::Event::InitApply(o) => WatchEvent::InitApply(to_value(o)),
                watcher::Event::InitDone => WatchEvent::InitDone,
            });
            if tx.send((key.clone(), msg)).await.is_err() {
                break;
            }
            if failed {
                let delay = if refused {
                    forbidden.next().unwrap_or(max)
                } else {
                    backoff.next().unwrap_or(max_backoff)
                };
                tokio::time::sleep(delay).await;
            }
        }
    }))
}

/// Retry delays of a watch the API server refuses (403): 30 s doubling up
/// to 5 minutes (with jitter), instead of the few seconds of other errors.
pub(crate) const FORBIDDEN_BACKOFF: (Duration, Duration) =
    (Duration::from_secs(30), Duration::from_secs(300));

/// The HTTP status of a watch failure the API server answered.
fn api_code(e: &watcher::Error) -> Option<u16> {
    match e {
        watcher::Error::InitialListFailed(kube::Error::Api(s))
        | watcher::Error::WatchStartFailed(kube::Error::Api(s))
        | watcher::Error::WatchFailed(kube::Error::Api(s)) => Some(s.code),
        watcher::Error::WatchError(s) => Some(s.code),
        _ => None,
    }
}

fn is_forbidden(e: &watcher::Error) -> bool {
    api_code(e) == Some(403)
}

/// The resource type does not exist (its CRD is not installed).
fn is_not_found(e: &watcher::Error) -> bool {
    api_code(e) == Some(404)
}

struct Driver {
    client: kube::Client,
    opts: KubeOptions,
    tx: watch::Sender<Option<Arc<Snapshot>>>,
    events: mpsc::Sender<Message>,
    state: State,
    watchers: BTreeMap<WatchKey, TaskGuard>,
    /// Watches currently failing (logged once until they recover).
    failing: BTreeSet<WatchKey>,
    /// Objects of the last published snapshot.
    published: Option<Vec<Value>>,
    /// The last publish came from the cache file.
    from_cache: bool,
}

pub(super) async fn run(
    client: kube::Client,
    opts: KubeOptions,
    tx: watch::Sender<Option<Arc<Snapshot>>>,
) {
    let (events, mut rx) = mpsc::channel::<Message>(1024);
    let mut d = Driver {
        client,
        opts,
        tx,
        events,
        state: State::new(),
        watchers: BTreeMap::new(),
        failing: BTreeSet::new(),
        published: None,
        from_cache: false,
    };
    for kind in Kind::CLUSTER_WIDE {
        d.start_watch(WatchKey::Kind(kind));
    }
    let node = d.opts.node_name.clone();
    let mut debounce = Debounce::new(d.opts.debounce, d.opts.max_delay);
    let cache_deadline = Instant::now() + d.opts.cache_after;
    let mut cache_checked = false;
    let far = || Instant::now() + Duration::from_secs(3600);
    loop {
        tokio::select! {
            _ = d.tx.closed() => break,
            msg = rx.recv() => {
                let Some((key, result)) = msg else { break };
                if d.on_message(key, result) {
                    debounce.poke(Instant::now());
                }
            }
            _ = tokio::time::sleep_until(debounce.deadline().unwrap_or_else(far)),
                if debounce.deadline().is_some() =>
            {
                debounce.clear();
                if d.state.ready() {
                    d.publish().await;
                }
            }
            _ = tokio::time::sleep_until(cache_deadline), if !cache_checked => {
                cache_checked = true;
                if d.published.is_none() {
                    d.load_cache().await;
                }
            }
        }
    }
    tracing::debug!(node = node.as_str(), "kubernetes datastore stopped");
}

impl Driver {
    fn start_watch(&mut self, key: WatchKey) {
        let guard = spawn_watcher(
            self.client.clone(),
            &self.opts.namespace,
            key.clone(),
            self.events.clone(),
            self.opts.max_backoff,
        );
        self.watchers.insert(key, guard);
    }

    /// Handles one watcher message; returns whether a snapshot may be due.
    fn on_message(&mut self, key: WatchKey, result: Result<WatchEvent, watcher::Error>) -> bool {
        let node = self.opts.node_name.as_str();
        if !self.watchers.contains_key(&key) {
            return false; // a Secret watch stopped meanwhile
        }
        let changed = match result {
            Ok(event) => {
                // `Init` starts a relist attempt; it resumed only once the
                // list (or a watch event) arrives.
                if !matches!(event, WatchEvent::Init) && self.failing.remove(&key) {
                    tracing::info!(node, watch = %key, "watch resumed");
                    self.state.set_forbidden(&key, false);
                }
                self.state.handle(&key, event)
            }
            Err(e) => {
                let secret_refused = matches!(key, WatchKey::Secret(_)) && is_forbidden(&e);
                let kept = if self.published.is_some() {
                    "keeping the last configuration"
                } else {
                    "no configuration yet"
                };
                if !self.failing.insert(key.clone()) {
                    tracing::debug!(node, watch = %key, "still cannot watch: {e}");
                } else if secret_refused {
                    tracing::warn!(
                        node,
                        watch = %key,
                        "forbidden: the agent may not read this Secret (403); peers naming it \
                         are left out until Role petrel-secrets (manifests/rbac.yaml) lists it; \
                         retrying every 30 s to 5 min"
                    );
                } else {
                    tracing::warn!(node, watch = %key, "cannot watch: {e}; retrying with backoff ({kept})");
                }
                if secret_refused || is_not_found(&e) {
                    // Not allowed to read it, or its CRD is not installed
                    // (an older manifests/crds.yaml): count it as empty
                    // rather than holding back every other change. The
                    // watch keeps retrying and picks the objects up later.
                    let was = self.state.is_forbidden(&key);
                    self.state.set_forbidden(&key, secret_refused);
                    self.state.mark_unreadable(&key) || was != secret_refused
                } else {
                    false
                }
            }
        };
        if changed {
            self.sync_secret_watches();
        }
        changed
    }

    /// Starts and stops Secret watches to match the referenced names.
    fn sync_secret_watches(&mut self) {
        let names = self.state.referenced_secrets();
        let (added, removed) = self.state.set_secret_watches(&names);
        for name in removed {
            let key = WatchKey::Secret(name);
            self.watchers.remove(&key);
            self.failing.remove(&key);
        }
        for name in added {
            self.start_watch(WatchKey::Secret(name));
        }
    }

    async fn publish(&mut self) {
        let node = self.opts.node_name.clone();
        let Built { snapshot, objects } = self.state.build(&node);
        if self.published.as_ref() == Some(&objects) {
            if self.from_cache {
                self.from_cache = false;
                tracing::info!(
                    node = node.as_str(),
                    "the API server's configuration matches the cached one"
                );
            }
            return;
        }
        let source = if self.from_cache {
            "replacing the cached configuration"
        } else {
            "configuration updated"
        };
        tracing::info!(node = node.as_str(), objects = objects.len(), "{source}");
        self.from_cache = false;
        self.tx.send_replace(Some(Arc::new(snapshot)));
        if let Some(path) = self.opts.cache_file.clone() {
            let objs = objects.clone();
            let n = node.clone();
            let result = tokio::task::spawn_blocking(move || cache::write(&path, &n, &objs)).await;
            if let Ok(Err(e)) = result {
                tracing::warn!(
                    node = node.as_str(),
                    "cannot write the configuration cache: {e}"
                );
            }
        }
        self.published = Some(objects);
    }

    async fn load_cache(&mut self) {
        let node = self.opts.node_name.clone();
        let pending: Vec<String> = self
            .state
            .pending()
            .iter()
            .map(ToString::to_string)
            .collect();
        let Some(path) = self.opts.cache_file.clone() else {
            tracing::warn!(
                node = node.as_str(),
                ?pending,
                "the API server has not answered yet (no configuration cache configured); waiting"
            );
            return;
        };
        let p = path.clone();
        let objects = match tokio::task::spawn_blocking(move || cache::read(&p)).await {
            Ok(Ok(Some(o))) => o,
            Ok(Ok(None)) => {
                tracing::warn!(node = node.as_str(), cache = %path.display(), ?pending,
                    "the API server has not answered yet and there is no cached configuration; waiting");
                return;
            }
            Ok(Err(e)) => {
                tracing::error!(
                    node = node.as_str(),
                    "cannot use the configuration cache: {e}"
                );
                return;
            }
            Err(_) => return,
        };
        let (snapshot, errors) = assemble_values(
            &format!("{SOURCE} cache {}", path.display()),
            objects.clone(),
        );
        for e in &errors {
            tracing::error!(node = node.as_str(), "cached object left out: {e}");
        }
        tracing::warn!(node = node.as_str(), cache = %path.display(), objects = objects.len(), ?pending,
            "the API server has not answered yet; starting with the cached configuration");
        self.tx.send_replace(Some(Arc::new(snapshot)));
        self.published = Some(objects);
        self.from_cache = true;
    }
}
