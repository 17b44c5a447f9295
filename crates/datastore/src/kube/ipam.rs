//! The IPAM store on the Kubernetes API server: `IPAMBlock` and
//! `BlockAffinity` custom resources (petrel.dev/v1, cluster-scoped), written
//! only with compare-and-swap on `metadata.resourceVersion`.
//!
//! - create: `POST`; an existing name is `409 AlreadyExists` →
//!   [`StoreError::AlreadyExists`].
//! - update: `PUT` with `metadata.resourceVersion` set to the expected
//!   version; a different stored version is `409 Conflict` →
//!   [`StoreError::Conflict`], a missing object `404` → [`StoreError::NotFound`].
//! - delete: `DELETE` with `preconditions.resourceVersion`; same mapping.
//!
//! Never a forced apply, a merge patch or an unconditional delete: every
//! write is conditional, so two nodes racing for a block cannot both win
//! (the API server serializes writes of one object through etcd's
//! compare-and-swap on its revision). The admission policy in
//! `manifests/admission.yaml` additionally limits each node to its own objects.
//!
//! Related RFCs: RFC 4632 (the blocks' CIDRs).

use super::driver::{TaskGuard, WatchBackoff};
use super::ipam_cache::{CacheEvent, ObjectCache};
use super::stall::GuardedWatch;
use async_trait::async_trait;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use kube::api::{Api, DeleteParams, ListParams, PostParams, Preconditions};
use petrel_crd::{
    BlockAffinity, BlockAffinitySpec, IPAMBlock, IpamBlockSpec, is_valid_object_name,
};
use petrel_ipam::store::{IpamStore, ObjectKind, StoreError, Stored};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt::Debug;

/// An IPAM custom resource: its spec and how to build one.
trait IpamObject:
    Resource<DynamicType = ()> + Clone + Debug + Serialize + DeserializeOwned + Send + Sync + 'static
{
    type Spec: Clone + Send + Sync;
    const KIND: ObjectKind;
    fn spec(&self) -> &Self::Spec;
    fn build(metadata: ObjectMeta, spec: Self::Spec) -> Self;
}

impl IpamObject for IPAMBlock {
    type Spec = IpamBlockSpec;
    const KIND: ObjectKind = ObjectKind::Block;
    fn spec(&self) -> &IpamBlockSpec {
        &self.spec
    }
    fn build(metadata: ObjectMeta, spec: IpamBlockSpec) -> Self {
        IPAMBlock { metadata, spec }
    }
}

impl IpamObject for BlockAffinity {
    type Spec = BlockAffinitySpec;
    const KIND: ObjectKind = ObjectKind::Affinity;
    fn spec(&self) -> &BlockAffinitySpec {
        &self.spec
    }
    fn build(metadata: ObjectMeta, spec: BlockAffinitySpec) -> Self {
        BlockAffinity { metadata, spec }
    }
}

/// [`IpamStore`] on the Kubernetes API server.
#[derive(Clone)]
pub struct KubeIpamStore {
    blocks: Api<IPAMBlock>,
    affinities: Api<BlockAffinity>,
    block_cache: Option<std::sync::Arc<ListCache>>,
    affinity_cache: Option<std::sync::Arc<ListCache>>,
    block_watch: Option<std::sync::Arc<Watched<IpamBlockSpec>>>,
    affinity_watch: Option<std::sync::Arc<Watched<BlockAffinitySpec>>>,
}

/// A kind's [`ObjectCache`], fed by a watch task that stops with the last
/// clone of the store.
struct Watched<S> {
    cache: std::sync::Mutex<ObjectCache<S>>,
    /// The generation last written to the on-disk list cache.
    saved: std::sync::Mutex<Option<u64>>,
    /// Set right after the `Arc` exists (the task stops at the first event
    /// it cannot upgrade its weak reference for, so it must not start
    /// before).
    _task: std::sync::OnceLock<TaskGuard>,
}

impl<S: Clone> Watched<S> {
    fn with<R>(&self, f: impl FnOnce(&mut ObjectCache<S>) -> R) -> R {
        // A poisoned lock only means a panic elsewhere mid-update; the cache
        // is still a valid (possibly older) view.
        let mut guard = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }
}

/// The last successful list of one kind, on disk, answered when the API
/// server cannot be reached: an agent that starts during an outage still
/// knows every node's blocks (its import policy accepts a block only from
/// its owner). The trait allows a stale list; writes still need the API
/// server, and their compare-and-swap catches anything stale.
struct ListCache {
    path: std::path::PathBuf,
    /// Hash of the last content written, to write only on change.
    written: std::sync::Mutex<Option<u64>>,
}

impl ListCache {
    fn save<K: Serialize>(&self, node: &str, items: &[K]) {
        let values: Vec<serde_json::Value> = items
            .iter()
            .filter_map(|i| serde_json::to_value(i).ok())
            .collect();
        let hash = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            serde_json::to_string(&values)
                .unwrap_or_default()
                .hash(&mut h);
            h.finish()
        };
        let Ok(mut written) = self.written.lock() else {
            return;
        };
        if *written == Some(hash) {
            return;
        }
        match super::cache::write(&self.path, node, &values) {
            Ok(()) => *written = Some(hash),
            Err(e) => tracing::warn!(node, "cannot cache the IPAM objects: {e}"),
        }
    }

    fn load<K: DeserializeOwned>(&self) -> Option<Vec<K>> {
        let values = super::cache::read(&self.path).ok().flatten()?;
        values
            .into_iter()
            .map(serde_json::from_value)
            .collect::<Result<Vec<K>, _>>()
            .ok()
    }
}

impl Debug for KubeIpamStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KubeIpamStore")
    }
}

impl KubeIpamStore {
    pub fn new(client: kube::Client) -> KubeIpamStore {
        KubeIpamStore {
            blocks: Api::all(client.clone()),
            affinities: Api::all(client),
            block_cache: None,
            affinity_cache: None,
            block_watch: None,
            affinity_watch: None,
        }
    }

    /// Answers lists from a watch of each kind (see
    /// `ipam_cache`) instead of a LIST per call: one
    /// LIST at start and after a 410 Gone, then only the changes. Until the
    /// watch has completed its first list, and while it is disabled, lists go
    /// to the API server as before. Needs a tokio runtime; the watch tasks
    /// stop when the last clone of the store is dropped.
    pub fn with_watch(self) -> KubeIpamStore {
        self.with_watch_stall(super::stall::LIST_STALL)
    }

    /// [`with_watch`](Self::with_watch), restarting a (re)list that gets no
    /// answer for `stall` (tests use a short one).
    pub(crate) fn with_watch_stall(mut self, stall: std::time::Duration) -> KubeIpamStore {
        self.block_watch = Some(spawn_watch(self.blocks.clone(), stall));
        self.affinity_watch = Some(spawn_watch(self.affinities.clone(), stall));
        self
    }

    /// Keeps the last list of each kind in `<prefix>.ipamblocks.json` and
    /// `<prefix>.blockaffinities.json`, and answers lists from them while
    /// the API server cannot be reached.
    pub fn with_cache(mut self, prefix: &std::path::Path) -> KubeIpamStore {
        let file = |suffix: &str| {
            let mut name = prefix.as_os_str().to_owned();
            name.push(suffix);
            ListCache {
                path: name.into(),
                written: std::sync::Mutex::new(None),
            }
        };
        self.block_cache = Some(std::sync::Arc::new(file(".ipamblocks.json")));
        self.affinity_cache = Some(std::sync::Arc::new(file(".blockaffinities.json")));
        self
    }
}

fn backend(kind: ObjectKind, name: &str, op: &str, e: kube::Error) -> StoreError {
    StoreError::Backend {
        context: format!("{op} {kind} {name}"),
        source: Box::new(e),
    }
}

/// Maps an API error of a conditional write.
fn write_error(
    kind: ObjectKind,
    name: &str,
    op: &str,
    expected: Option<&str>,
    e: kube::Error,
) -> StoreError {
    let name_s = name.to_string();
    match &e {
        kube::Error::Api(s) if s.code == 404 => StoreError::NotFound { kind, name: name_s },
        kube::Error::Api(s)
            if s.code == 409 && s.reason == "AlreadyExists" && expected.is_none() =>
        {
            StoreError::AlreadyExists { kind, name: name_s }
        }
        kube::Error::Api(s) if s.code == 409 => match expected {
            Some(v) => StoreError::Conflict {
                kind,
                name: name_s,
                expected: v.to_string(),
            },
            None => StoreError::AlreadyExists { kind, name: name_s },
        },
        kube::Error::Api(s) if s.code == 422 || s.code == 400 => StoreError::Invalid {
            kind,
            name: name_s,
            reason: s.message.clone(),
        },
        _ => backend(kind, name, op, e),
    }
}

fn stored<K: IpamObject>(obj: K) -> Result<Stored<K::Spec>, StoreError> {
    let name = obj.meta().name.clone().unwrap_or_default();
    let Some(version) = obj
        .meta()
        .resource_version
        .clone()
        .filter(|v| !v.is_empty())
    else {
        return Err(StoreError::Invalid {
            kind: K::KIND,
            name,
            reason: "no metadata.resourceVersion in the API server's answer".into(),
        });
    };
    Ok(Stored {
        name,
        version,
        spec: obj.spec().clone(),
    })
}

fn check_name(kind: ObjectKind, name: &str) -> Result<(), StoreError> {
    if is_valid_object_name(name) {
        Ok(())
    } else {
        Err(StoreError::Invalid {
            kind,
            name: name.to_string(),
            reason: "not a valid Kubernetes object name".into(),
        })
    }
}

/// An undecodable stored object is `Invalid`, other failures `Backend`.
fn read_error(kind: ObjectKind, name: &str, op: &str, e: kube::Error) -> StoreError {
    match e {
        kube::Error::SerdeError(se) => StoreError::Invalid {
            kind,
            name: name.to_string(),
            reason: format!("cannot decode: {se}"),
        },
        e => backend(kind, name, op, e),
    }
}

/// Runs a watch of `K` into a new [`ObjectCache`], retrying with
/// [`WatchBackoff`] (reset only by real progress) while the API server is
/// away; the cache keeps its last view meanwhile.
fn spawn_watch<K: IpamObject>(
    api: Api<K>,
    stall: std::time::Duration,
) -> std::sync::Arc<Watched<K::Spec>> {
    let watched = std::sync::Arc::new(Watched {
        cache: std::sync::Mutex::new(ObjectCache::new()),
        saved: std::sync::Mutex::new(None),
        _task: std::sync::OnceLock::new(),
    });
    // The task holds only a weak reference, so dropping the store stops it.
    // It is spawned once the `Arc` exists: spawned from inside
    // `Arc::new_cyclic`, it could run on another worker before the `Arc`
    // was complete, fail to upgrade, and end: the watch then never ran.
    let task = TaskGuard(tokio::spawn(run_watch(
        api,
        std::sync::Arc::downgrade(&watched),
        stall,
    )));
    let _ = watched._task.set(task);
    watched
}

async fn run_watch<K: IpamObject>(
    api: Api<K>,
    weak: std::sync::Weak<Watched<K::Spec>>,
    stall: std::time::Duration,
) {
    use kube::runtime::watcher;
    let max = std::time::Duration::from_secs(8);
    let mut backoff = WatchBackoff::new(std::time::Duration::from_millis(500), max);
    let mut failing = false;
    let what = format!("IPAM {}", K::KIND.kind());
    let mut stream = GuardedWatch::with_stall(api, watcher::Config::default(), what, stall);
    while let Some(item) = stream.next().await {
        let event = match item {
            Ok(e) => e,
            Err(e) => {
                if !failing {
                    tracing::warn!(
                        kind = K::KIND.kind(),
                        "IPAM watch failed: {e}; retrying with backoff (lists keep the last view)"
                    );
                    failing = true;
                }
                tokio::time::sleep(backoff.next().unwrap_or(max)).await;
                continue;
            }
        };
        if !matches!(event, watcher::Event::Init) {
            kube::runtime::utils::Backoff::reset(&mut backoff);
            if failing {
                tracing::info!(kind = K::KIND.kind(), "IPAM watch resumed");
                failing = false;
            }
        }
        let cache_event = match event {
            watcher::Event::Init => Some(CacheEvent::Init),
            watcher::Event::InitDone => Some(CacheEvent::InitDone),
            watcher::Event::InitApply(o) => stored(o).ok().map(CacheEvent::InitApply),
            watcher::Event::Apply(o) => stored(o).ok().map(CacheEvent::Apply),
            watcher::Event::Delete(o) => stored(o).ok().map(CacheEvent::Delete),
        };
        let Some(watched) = weak.upgrade() else { break };
        if let Some(ev) = cache_event {
            let disabled = watched.with(|c| {
                let was = c.is_disabled();
                c.on_event(ev);
                !was && c.is_disabled()
            });
            if disabled {
                tracing::warn!(
                    kind = K::KIND.kind(),
                    "the API server answered a resourceVersion that is not an integer; \
                     listing from the API server instead of the watch"
                );
            }
        }
    }
}

/// A list from the watch cache when it is synced (saved to the on-disk list
/// cache when it changed), else from the API server.
async fn list_cached<K: IpamObject>(
    api: &Api<K>,
    watched: Option<&Watched<K::Spec>>,
    cache: Option<&ListCache>,
) -> Result<Vec<Stored<K::Spec>>, StoreError> {
    if let Some(w) = watched {
        let now = std::time::Instant::now();
        if let Some((items, generation)) = w.with(|c| c.list(now).map(|l| (l, c.generation()))) {
            if let Some(c) = cache {
                let mut saved = w.saved.lock().unwrap_or_else(|p| p.into_inner());
                if *saved != Some(generation) {
                    let objs: Vec<K> = items
                        .iter()
                        .map(|i| {
                            K::build(
                                ObjectMeta {
                                    name: Some(i.name.clone()),
                                    resource_version: Some(i.version.clone()),
                                    ..Default::default()
                                },
                                i.spec.clone(),
                            )
                        })
                        .collect();
                    c.save(K::KIND.kind(), &objs);
                    *saved = Some(generation);
                }
            }
            return Ok(items);
        }
    }
    list(api, cache).await
}

/// What a successful call tells the watch cache.
enum Outcome<'a, S> {
    /// A create's or update's result, or a GET's answer.
    Object(&'a Stored<S>),
    /// A GET found nothing: every version known so far is gone.
    Absent,
    /// A delete removed this version.
    Deleted(&'a str),
}

fn record<S: Clone>(watched: Option<&Watched<S>>, name: &str, outcome: Outcome<'_, S>) {
    let Some(w) = watched else { return };
    let now = std::time::Instant::now();
    w.with(|c| match outcome {
        Outcome::Object(o) => c.wrote(o, now),
        Outcome::Deleted(v) => c.deleted(name, v, now),
        Outcome::Absent => {
            if let Some(v) = c.known_version(name) {
                c.deleted(name, &v.to_string(), now);
            }
        }
    });
}

/// The store operations of one kind, with the watch cache kept current.
struct Kind<'a, K: IpamObject> {
    api: &'a Api<K>,
    watched: Option<&'a Watched<K::Spec>>,
    cache: Option<&'a ListCache>,
}

impl<K: IpamObject> Kind<'_, K> {
    async fn list(&self) -> Result<Vec<Stored<K::Spec>>, StoreError> {
        list_cached(self.api, self.watched, self.cache).await
    }
    async fn get(&self, name: &str) -> Result<Option<Stored<K::Spec>>, StoreError> {
        let r = get(self.api, name).await;
        match &r {
            Ok(Some(o)) => record(self.watched, name, Outcome::Object(o)),
            Ok(None) => record(self.watched, name, Outcome::Absent),
            Err(_) => {}
        }
        r
    }
    async fn create(&self, name: &str, spec: &K::Spec) -> Result<Stored<K::Spec>, StoreError> {
        let r = create(self.api, name, spec).await;
        if let Ok(o) = &r {
            record(self.watched, name, Outcome::Object(o));
        }
        r
    }
    async fn update(
        &self,
        name: &str,
        spec: &K::Spec,
        expected: &str,
    ) -> Result<Stored<K::Spec>, StoreError> {
        let r = update(self.api, name, spec, expected).await;
        if let Ok(o) = &r {
            record(self.watched, name, Outcome::Object(o));
        }
        r
    }
    async fn delete(&self, name: &str, expected: &str) -> Result<(), StoreError> {
        let r = delete(self.api, name, expected).await;
        if r.is_ok() {
            record(self.watched, name, Outcome::<K::Spec>::Deleted(expected));
        }
        r
    }
}

impl KubeIpamStore {
    fn block_ops(&self) -> Kind<'_, IPAMBlock> {
        Kind {
            api: &self.blocks,
            watched: self.block_watch.as_deref(),
            cache: self.block_cache.as_deref(),
        }
    }
    fn affinity_ops(&self) -> Kind<'_, BlockAffinity> {
        Kind {
            api: &self.affinities,
            watched: self.affinity_watch.as_deref(),
            cache: self.affinity_cache.as_deref(),
        }
    }
}

async fn list<K: IpamObject>(
    api: &Api<K>,
    cache: Option<&ListCache>,
) -> Result<Vec<Stored<K::Spec>>, StoreError> {
    match api.list(&ListParams::default()).await {
        Ok(list) => {
            if let Some(c) = cache {
                c.save(K::KIND.kind(), &list.items);
            }
            list.items.into_iter().map(stored).collect()
        }
        Err(e) => {
            let err = read_error(K::KIND, "(all)", "list", e);
            if matches!(err, StoreError::Backend { .. })
                && let Some(items) = cache.and_then(ListCache::load::<K>)
            {
                return items.into_iter().map(stored).collect();
            }
            Err(err)
        }
    }
}

async fn get<K: IpamObject>(
    api: &Api<K>,
    name: &str,
) -> Result<Option<Stored<K::Spec>>, StoreError> {
    check_name(K::KIND, name)?;
    match api.get_opt(name).await {
        Ok(Some(o)) => stored(o).map(Some),
        Ok(None) => Ok(None),
        Err(e) => Err(read_error(K::KIND, name, "get", e)),
    }
}

async fn create<K: IpamObject>(
    api: &Api<K>,
    name: &str,
    spec: &K::Spec,
) -> Result<Stored<K::Spec>, StoreError> {
    check_name(K::KIND, name)?;
    let obj = K::build(
        ObjectMeta {
            name: Some(name.to_string()),
            ..Default::default()
        },
        spec.clone(),
    );
    match api.create(&PostParams::default(), &obj).await {
        Ok(o) => stored(o),
        Err(e) => Err(write_error(K::KIND, name, "create", None, e)),
    }
}

async fn update<K: IpamObject>(
    api: &Api<K>,
    name: &str,
    spec: &K::Spec,
    expected: &str,
) -> Result<Stored<K::Spec>, StoreError> {
    check_name(K::KIND, name)?;
    let obj = K::build(
        ObjectMeta {
            name: Some(name.to_string()),
            // The compare-and-swap: the API server rejects the PUT with
            // 409 Conflict unless this is the stored resourceVersion.
            resource_version: Some(expected.to_string()),
            ..Default::default()
        },
        spec.clone(),
    );
    match api.replace(name, &PostParams::default(), &obj).await {
        Ok(o) => stored(o),
        Err(e) => Err(write_error(K::KIND, name, "update", Some(expected), e)),
    }
}

async fn delete<K: IpamObject>(api: &Api<K>, name: &str, expected: &str) -> Result<(), StoreError> {
    check_name(K::KIND, name)?;
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            resource_version: Some(expected.to_string()),
            uid: None,
        }),
        ..Default::default()
    };
    match api.delete(name, &params).await {
        Ok(_) => Ok(()),
        Err(e) => Err(write_error(K::KIND, name, "delete", Some(expected), e)),
    }
}

#[async_trait]
impl IpamStore for KubeIpamStore {
    async fn list_blocks(&self) -> Result<Vec<Stored<IpamBlockSpec>>, StoreError> {
        self.block_ops().list().await
    }
    async fn get_block(&self, name: &str) -> Result<Option<Stored<IpamBlockSpec>>, StoreError> {
        self.block_ops().get(name).await
    }
    async fn create_block(
        &self,
        name: &str,
        spec: &IpamBlockSpec,
    ) -> Result<Stored<IpamBlockSpec>, StoreError> {
        self.block_ops().create(name, spec).await
    }
    async fn update_block(
        &self,
        name: &str,
        spec: &IpamBlockSpec,
        expected_version: &str,
    ) -> Result<Stored<IpamBlockSpec>, StoreError> {
        self.block_ops().update(name, spec, expected_version).await
    }
    async fn delete_block(&self, name: &str, expected_version: &str) -> Result<(), StoreError> {
        self.block_ops().delete(name, expected_version).await
    }
    async fn list_affinities(&self) -> Result<Vec<Stored<BlockAffinitySpec>>, StoreError> {
        self.affinity_ops().list().await
    }
    async fn get_affinity(
        &self,
        name: &str,
    ) -> Result<Option<Stored<BlockAffinitySpec>>, StoreError> {
        self.affinity_ops().get(name).await
    }
    async fn create_affinity(
        &self,
        name: &str,
        spec: &BlockAffinitySpec,
    ) -> Result<Stored<BlockAffinitySpec>, StoreError> {
        self.affinity_ops().create(name, spec).await
    }
    async fn update_affinity(
        &self,
        name: &str,
        spec: &BlockAffinitySpec,
        expected_version: &str,
    ) -> Result<Stored<BlockAffinitySpec>, StoreError> {
        self.affinity_ops()
            .update(name, spec, expected_version)
            .await
    }
    async fn delete_affinity(&self, name: &str, expected_version: &str) -> Result<(), StoreError> {
        self.affinity_ops().delete(name, expected_version).await
    }
}

#[cfg(test)]
#[path = "ipam_tests.rs"]
mod tests;
