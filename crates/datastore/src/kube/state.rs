//! The sans-IO core of the Kubernetes datastore: the objects seen by every
//! watch, per-object last good versions, and snapshot assembly.
//!
//! Fed watch events (already converted to JSON values); returns snapshots.
//! No tokio, no clocks, no client: the driver (`super::driver`) does the I/O.

use crate::resolved::ConfigProblem;
use crate::{ManifestError, Snapshot, assemble_values};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// `source` label of errors about objects from the API server.
pub(crate) const SOURCE: &str = "kubernetes";

/// The kinds the datastore watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    BgpConfiguration,
    BgpPeer,
    BgpFilter,
    BfdProfile,
    IpPool,
    Node,
    Service,
    EndpointSlice,
    Secret,
}

impl Kind {
    /// Every kind watched cluster-wide (Secrets are watched per name).
    pub const CLUSTER_WIDE: [Kind; 8] = [
        Kind::BgpConfiguration,
        Kind::BgpPeer,
        Kind::BgpFilter,
        Kind::BfdProfile,
        Kind::IpPool,
        Kind::Node,
        Kind::Service,
        Kind::EndpointSlice,
    ];

    /// `(apiVersion, kind, plural)` of the resource.
    pub fn resource(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Kind::BgpConfiguration => ("petrel.dev/v1", "BGPConfiguration", "bgpconfigurations"),
            Kind::BgpPeer => ("petrel.dev/v1", "BGPPeer", "bgppeers"),
            Kind::BgpFilter => ("petrel.dev/v1", "BGPFilter", "bgpfilters"),
            Kind::BfdProfile => ("petrel.dev/v1", "BFDProfile", "bfdprofiles"),
            Kind::IpPool => ("petrel.dev/v1", "IPPool", "ippools"),
            Kind::Node => ("v1", "Node", "nodes"),
            Kind::Service => ("v1", "Service", "services"),
            Kind::EndpointSlice => ("discovery.k8s.io/v1", "EndpointSlice", "endpointslices"),
            Kind::Secret => ("v1", "Secret", "secrets"),
        }
    }

    /// The `kind` string.
    pub fn name(self) -> &'static str {
        self.resource().1
    }
}

/// What one watch (one kube-runtime watcher) covers.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WatchKey {
    /// All objects of a kind, cluster-wide.
    Kind(Kind),
    /// The Secret of this name in petrel's namespace.
    Secret(String),
}

impl WatchKey {
    pub fn kind(&self) -> Kind {
        match self {
            WatchKey::Kind(k) => *k,
            WatchKey::Secret(_) => Kind::Secret,
        }
    }
}

impl fmt::Display for WatchKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WatchKey::Kind(k) => write!(f, "{}s", k.name()),
            WatchKey::Secret(n) => write!(f, "Secret {n:?}"),
        }
    }
}

/// Identity of one object.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjKey {
    pub kind: Kind,
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjKey {
    /// The key of a (normalized) object of `kind`; `None` without a name.
    pub fn of(kind: Kind, value: &Value) -> Option<ObjKey> {
        let meta = value.get("metadata")?;
        let name = meta.get("name")?.as_str()?.to_string();
        let namespace = meta
            .get("namespace")
            .and_then(Value::as_str)
            .map(str::to_string);
        Some(ObjKey {
            kind,
            namespace,
            name,
        })
    }

    /// Whether a [`ManifestError`] (which names kind and name only) is about
    /// this object. The loader names Services and EndpointSlices
    /// `namespace/name`.
    fn matches(&self, e: &ManifestError) -> bool {
        let qualified;
        let name = match (self.kind, &self.namespace) {
            (Kind::Service | Kind::EndpointSlice, ns) => {
                qualified = format!("{}/{}", ns.as_deref().unwrap_or("default"), self.name);
                qualified.as_str()
            }
            _ => self.name.as_str(),
        };
        e.object
            .as_ref()
            .is_some_and(|o| o.kind == self.kind.name() && o.name.as_deref() == Some(name))
    }
}

impl fmt::Display for ObjKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {ns}/{}", self.kind.name(), self.name),
            None => write!(f, "{} {}", self.kind.name(), self.name),
        }
    }
}

/// One event of a watch, as kube-runtime's watcher reports it.
#[derive(Debug, Clone, PartialEq)]
pub enum WatchEvent {
    Apply(Value),
    Delete(Value),
    /// A (re)list starts: following `InitApply` events replace the objects at `InitDone`.
    Init,
    InitApply(Value),
    InitDone,
}

/// Strips what changes without changing the configuration (resourceVersion,
/// managedFields, Node heartbeats) and sets `apiVersion`/`kind` (list items
/// of built-in kinds come without them).
pub fn normalize(kind: Kind, mut value: Value) -> Value {
    let (api_version, kind_name, _) = kind.resource();
    if let Some(obj) = value.as_object_mut() {
        obj.insert("apiVersion".into(), Value::String(api_version.into()));
        obj.insert("kind".into(), Value::String(kind_name.into()));
        if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
            for k in ["managedFields", "resourceVersion", "generation", "selfLink"] {
                meta.remove(k);
            }
            if kind != Kind::IpPool {
                // An IPPool keeps it: among overlapping pools, the one
                // created first wins.
                meta.remove("creationTimestamp");
            }
        }
        if kind == Kind::Node {
            // Only the addresses of a Node's status matter; conditions and
            // heartbeats change every few seconds.
            let addresses = obj.get("status").and_then(|s| s.get("addresses")).cloned();
            obj.remove("status");
            if let Some(a) = addresses {
                obj.insert("status".into(), serde_json::json!({ "addresses": a }));
            }
        }
        if matches!(
            kind,
            Kind::BgpConfiguration | Kind::BgpPeer | Kind::BgpFilter | Kind::BfdProfile
        ) {
            // Configuration kinds are read for their spec.
            obj.remove("status");
        }
    }
    value
}

/// The objects of one watch.
#[derive(Debug, Default)]
struct WatchState {
    objects: BTreeMap<ObjKey, Value>,
    /// Filled between `Init` and `InitDone` (a relist), then swapped in whole,
    /// so a relist never exposes a partial set.
    buffer: Option<BTreeMap<ObjKey, Value>>,
    /// Has had at least one complete list.
    synced: bool,
}

/// What [`State::build`] assembled.
#[derive(Debug)]
pub struct Built {
    pub snapshot: Snapshot,
    /// The objects the snapshot was assembled from (sorted by kind, namespace,
    /// name): what is compared with the last publish and written to the cache.
    pub objects: Vec<Value>,
}

/// The datastore's state: objects per watch and last good versions.
#[derive(Debug, Default)]
pub struct State {
    watches: BTreeMap<WatchKey, WatchState>,
    /// Last valid version of each object still present.
    good: BTreeMap<ObjKey, Value>,
    /// Error text already logged per object (logged again only when it changes).
    logged: BTreeMap<ObjKey, String>,
    /// Secrets the API server refuses to show the agent (403).
    forbidden: BTreeSet<String>,
}

impl State {
    /// A state expecting the cluster-wide watches (Secret watches are added
    /// by [`State::set_secret_watches`]).
    pub fn new() -> State {
        let mut s = State::default();
        for k in Kind::CLUSTER_WIDE {
            s.watches.insert(WatchKey::Kind(k), WatchState::default());
        }
        s
    }

    /// Applies one event of watch `key`. Returns whether the visible objects
    /// changed (events of unknown watches are ignored).
    pub fn handle(&mut self, key: &WatchKey, event: WatchEvent) -> bool {
        let kind = key.kind();
        let Some(w) = self.watches.get_mut(key) else {
            return false;
        };
        let keyed = |v: Value| {
            let v = normalize(kind, v);
            ObjKey::of(kind, &v).map(|k| (k, v))
        };
        match event {
            WatchEvent::Apply(v) => {
                let Some((k, v)) = keyed(v) else { return false };
                w.objects.insert(k, v.clone()) != Some(v)
            }
            WatchEvent::Delete(v) => {
                let Some((k, _)) = keyed(v) else { return false };
                w.objects.remove(&k).is_some()
            }
            WatchEvent::Init => {
                w.buffer = Some(BTreeMap::new());
                false
            }
            WatchEvent::InitApply(v) => {
                if let Some((k, v)) = keyed(v) {
                    w.buffer.get_or_insert_default().insert(k, v);
                }
                false
            }
            WatchEvent::InitDone => {
                let new = w.buffer.take().unwrap_or_default();
                let changed = new != w.objects || !w.synced;
                w.objects = new;
                w.synced = true;
                changed
            }
        }
    }

    /// Marks a watch as listed with no objects: for a Secret the agent may
    /// not read (403), so one unreadable Secret does not hold back the whole
    /// configuration; the peers that need it report it missing.
    pub fn mark_unreadable(&mut self, key: &WatchKey) -> bool {
        match self.watches.get_mut(key) {
            Some(w) if !w.synced || !w.objects.is_empty() => {
                w.objects.clear();
                w.buffer = None;
                w.synced = true;
                true
            }
            _ => false,
        }
    }

    /// Records whether the Secret watch `key` is refused (403), so a peer
    /// naming it is reported as forbidden rather than "not found".
    pub fn set_forbidden(&mut self, key: &WatchKey, forbidden: bool) {
        if let WatchKey::Secret(name) = key {
            if forbidden {
                self.forbidden.insert(name.clone());
            } else {
                self.forbidden.remove(name);
            }
        }
    }

    /// Whether the Secret watch `key` is refused (403).
    pub fn is_forbidden(&self, key: &WatchKey) -> bool {
        matches!(key, WatchKey::Secret(n) if self.forbidden.contains(n))
    }

    /// Whether every watch has completed its first list.
    pub fn ready(&self) -> bool {
        self.watches.values().all(|w| w.synced)
    }

    /// The watches not yet listed (for logs).
    pub fn pending(&self) -> Vec<&WatchKey> {
        self.watches
            .iter()
            .filter(|(_, w)| !w.synced)
            .map(|(k, _)| k)
            .collect()
    }

    /// Names of the Secrets referenced by the peers and the BGPConfiguration
    /// (current and last good versions).
    pub fn referenced_secrets(&self) -> BTreeSet<String> {
        let mut names = BTreeSet::new();
        let current = self
            .watches
            .iter()
            .filter(|(k, _)| {
                matches!(
                    k,
                    WatchKey::Kind(Kind::BgpPeer) | WatchKey::Kind(Kind::BgpConfiguration)
                )
            })
            .flat_map(|(_, w)| w.objects.values());
        let good = self
            .good
            .iter()
            .filter(|(k, _)| matches!(k.kind, Kind::BgpPeer | Kind::BgpConfiguration))
            .filter(|(k, _)| {
                // Only objects still present (a deleted one's last good version goes).
                self.watches
                    .get(&WatchKey::Kind(k.kind))
                    .is_some_and(|w| w.objects.contains_key(*k))
            })
            .map(|(_, v)| v);
        for v in current.chain(good) {
            let spec = v.get("spec");
            for field in ["password", "nodeMeshPassword"] {
                if let Some(name) = spec
                    .and_then(|s| s.get(field))
                    .and_then(|p| p.get("secretKeyRef"))
                    .and_then(|r| r.get("name"))
                    .and_then(Value::as_str)
                    && !name.is_empty()
                {
                    names.insert(name.to_string());
                }
            }
        }
        names
    }

    /// Makes the Secret watches exactly `names`. Returns `(added, removed)`.
    pub fn set_secret_watches(&mut self, names: &BTreeSet<String>) -> (Vec<String>, Vec<String>) {
        let existing: BTreeSet<String> = self
            .watches
            .keys()
            .filter_map(|k| match k {
                WatchKey::Secret(n) => Some(n.clone()),
                WatchKey::Kind(_) => None,
            })
            .collect();
        let added: Vec<String> = names.difference(&existing).cloned().collect();
        let removed: Vec<String> = existing.difference(names).cloned().collect();
        for n in &added {
            self.watches
                .insert(WatchKey::Secret(n.clone()), WatchState::default());
        }
        for n in &removed {
            self.watches.remove(&WatchKey::Secret(n.clone()));
            self.forbidden.remove(n);
        }
        (added, removed)
    }

    /// Every current object, sorted by key.
    fn current(&self) -> BTreeMap<ObjKey, Value> {
        self.watches
            .values()
            .flat_map(|w| w.objects.iter().map(|(k, v)| (k.clone(), v.clone())))
            .collect()
    }

    /// Assembles the snapshot from the current objects. An object that is
    /// invalid is replaced by its last valid version (or left out if it never
    /// was valid); each error is logged once per object and error text.
    pub fn build(&mut self, node: &str) -> Built {
        let current = self.current();
        let (_, mut errors) = assemble_values(SOURCE, current.values().cloned().collect());
        // A missing Secret key or BGPFilter is not an error of an object that
        // did not change (its referent went away: resolution keeps its last
        // resolved form). An object *edited* into a version whose references
        // do not resolve is invalid like any bad edit: it keeps its last valid
        // version (a new peer address must not come up without its filters).
        let (_, with_refs) =
            crate::load::assemble_values_with(SOURCE, current.values().cloned().collect(), true);
        for e in with_refs {
            if errors.contains(&e) {
                continue;
            }
            let edited = current
                .iter()
                .find(|(k, _)| k.matches(&e))
                .is_some_and(|(k, v)| self.good.get(k).is_some_and(|g| g != v));
            if edited {
                errors.push(e);
            }
        }
        let bad: BTreeSet<&ObjKey> = current
            .keys()
            .filter(|k| errors.iter().any(|e| k.matches(e)))
            .collect();
        // Log each object's errors once (per distinct text), with the object.
        for key in current.keys() {
            let errs: Vec<String> = errors
                .iter()
                .filter(|e| key.matches(e))
                .map(ToString::to_string)
                .collect();
            if errs.is_empty() {
                if self.logged.remove(key).is_some() {
                    tracing::info!(node, object = %key, "object is valid again");
                }
                continue;
            }
            let text = forbidden_wording(&errs.join("; "), &self.forbidden);
            if self.logged.get(key) != Some(&text) {
                let kept = if self.good.contains_key(key) {
                    "keeping its last valid version"
                } else {
                    "leaving it out (no valid version seen)"
                };
                tracing::error!(
                    node,
                    object = %key,
                    content = %redacted(&current[key]),
                    "invalid object, {kept}: {text}"
                );
                self.logged.insert(key.clone(), text);
            }
        }
        self.logged.retain(|k, _| current.contains_key(k));
        let mut inputs: BTreeMap<ObjKey, Value> = BTreeMap::new();
        for (k, v) in &current {
            if bad.contains(k) {
                if let Some(g) = self.good.get(k) {
                    inputs.insert(k.clone(), g.clone());
                }
            } else {
                inputs.insert(k.clone(), v.clone());
            }
        }
        let (mut snapshot, mut errors2) =
            assemble_values(SOURCE, inputs.values().cloned().collect());
        let mut dropped = BTreeSet::new();
        if !bad.is_empty() && !errors2.is_empty() {
            // A last good version may be invalid now (it overlaps a pool):
            // leave those out and assemble once more, so that the published
            // objects are exactly the valid ones.
            dropped.extend(
                inputs
                    .keys()
                    .filter(|k| errors2.iter().any(|e| k.matches(e)))
                    .cloned(),
            );
            inputs.retain(|k, _| !dropped.contains(k));
            (snapshot, errors2) = assemble_values(SOURCE, inputs.values().cloned().collect());
        }
        inputs.retain(|k, _| !errors2.iter().any(|e| k.matches(e)));
        // Every invalid object is reported (status, metrics, `petrel status`).
        snapshot.forbidden_secrets = self.forbidden.clone();
        snapshot.problems = bad
            .iter()
            .map(|k| {
                let reasons: Vec<String> = errors
                    .iter()
                    .filter(|e| k.matches(e))
                    .map(|e| match &e.field {
                        Some(f) => format!("{f}: {}", e.reason),
                        None => e.reason.clone(),
                    })
                    .collect();
                let kept = if inputs.contains_key(*k) && !dropped.contains(*k) {
                    "keeping its last valid version"
                } else {
                    "left out"
                };
                ConfigProblem {
                    kind: k.kind.name().to_string(),
                    name: match &k.namespace {
                        Some(ns) => format!("{ns}/{}", k.name),
                        None => k.name.clone(),
                    },
                    reason: format!("{} ({kept})", reasons.join("; ")),
                }
            })
            .collect();
        for (k, v) in &inputs {
            self.good.insert(k.clone(), v.clone());
        }
        self.good.retain(|k, _| current.contains_key(k));
        Built {
            snapshot,
            objects: inputs.into_values().collect(),
        }
    }
}

/// `text` with each "Secret "x" not found" of a Secret the agent may not
/// read (403) said as it is: forbidden, and where to allow it.
pub(crate) fn forbidden_wording(text: &str, forbidden: &BTreeSet<String>) -> String {
    let mut text = text.to_string();
    for name in forbidden {
        text = text.replace(
            &format!("Secret {name:?} not found"),
            &format!(
                "Secret {name:?} is forbidden to the agent (403): add it to the \
                 resourceNames of Role petrel-secrets (manifests/rbac.yaml)"
            ),
        );
    }
    text
}

/// An object for a log line: a Secret's data is replaced by its keys.
pub(crate) fn redacted(value: &Value) -> String {
    let mut v = value.clone();
    if v.get("kind").and_then(Value::as_str) == Some("Secret")
        && let Some(obj) = v.as_object_mut()
    {
        for field in ["data", "stringData"] {
            if let Some(Value::Object(m)) = obj.get_mut(field) {
                for val in m.values_mut() {
                    *val = Value::String("<redacted>".into());
                }
            }
        }
    }
    v.to_string()
}
