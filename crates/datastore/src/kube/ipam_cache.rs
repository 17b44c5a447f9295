//! The watch-fed cache behind [`KubeIpamStore`](super::ipam::KubeIpamStore)'s
//! lists: every `IPAMBlock` or every `BlockAffinity` as a watch on the API
//! server last delivered it, merged with this agent's own writes.
//!
//! Without it, every agent would LIST both kinds twice a second (the IPAM
//! task's resync): with a thousand nodes, thousands of LISTs of every block
//! each second. With it, an agent lists once at start (and after a 410
//! Gone) and then follows the watch.
//!
//! Sans-IO: fed watch events and write results, no tokio inside.
//!
//! **Read your own writes.** A watch lags behind the writes this agent makes
//! itself. Without care, a list right after a claim would miss the new block
//! (its route withdrawn, then advertised again) or show an address as free
//! again. So each write's result is kept as an overlay until the watch has
//! delivered that version or a newer one. "Newer" compares resourceVersions
//! as integers, which the API server's etcd storage guarantees and
//! Kubernetes has documented since KEP-5504; should an API server ever
//! answer a resourceVersion that is not an integer, the cache turns itself
//! off and the store lists from the API server again.
//!
//! Related RFCs: none (Kubernetes API semantics).

use petrel_ipam::store::Stored;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How long an own write is kept when the watch never confirms it (the
/// object changed again meanwhile and the watch skipped straight past it, or
/// the watch is down): long enough for any live watch, short enough that a
/// broken overlay cannot mask the API server for long.
pub const OVERLAY_TTL: Duration = Duration::from_secs(120);

/// One object's last known state: its resourceVersion, and `None` once it
/// has been deleted.
#[derive(Debug, Clone)]
struct Entry<S> {
    rv: u64,
    obj: Option<Stored<S>>,
}

/// One change delivered by the watch (kube-runtime's watcher events).
#[derive(Debug, Clone)]
pub enum CacheEvent<S> {
    /// A (re)list starts.
    Init,
    /// One object of the (re)list.
    InitApply(Stored<S>),
    /// The (re)list is complete.
    InitDone,
    /// An object was created or changed.
    Apply(Stored<S>),
    /// An object was deleted (its last state).
    Delete(Stored<S>),
}

/// The cache of one kind (see the module documentation).
#[derive(Debug, Clone)]
pub struct ObjectCache<S> {
    /// What the watch delivered, deletions included (until the next relist).
    seen: HashMap<String, Entry<S>>,
    /// The relist in progress.
    relist: Option<HashMap<String, Entry<S>>>,
    /// This agent's writes that the watch has not delivered yet, with the
    /// time they were made. A deletion's `rv` is the version it removed.
    ours: HashMap<String, (Entry<S>, Instant)>,
    synced: bool,
    /// Set when the API server answered a resourceVersion that is not an
    /// integer: the cache then answers nothing.
    disabled: bool,
    /// Counts the changes of the merged view (to save it only on change).
    generation: u64,
}

impl<S> Default for ObjectCache<S> {
    fn default() -> Self {
        ObjectCache {
            seen: HashMap::new(),
            relist: None,
            ours: HashMap::new(),
            synced: false,
            disabled: false,
            generation: 0,
        }
    }
}

impl<S: Clone> ObjectCache<S> {
    pub fn new() -> Self {
        Self::default()
    }

    fn rv(&mut self, obj: &Stored<S>) -> Option<u64> {
        match obj.version.parse::<u64>() {
            Ok(v) => Some(v),
            Err(_) => {
                self.disabled = true;
                None
            }
        }
    }

    /// Whether the cache answers lists: the first list has completed and
    /// every resourceVersion so far was an integer.
    pub fn is_synced(&self) -> bool {
        self.synced && !self.disabled
    }

    /// Whether a non-integer resourceVersion turned the cache off.
    pub fn is_disabled(&self) -> bool {
        self.disabled
    }

    /// A number that changes whenever the merged view may have changed.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Applies one watch event.
    pub fn on_event(&mut self, event: CacheEvent<S>) {
        match event {
            CacheEvent::Init => self.relist = Some(HashMap::new()),
            CacheEvent::InitApply(obj) => {
                if let Some(rv) = self.rv(&obj) {
                    let relist = self.relist.get_or_insert_with(HashMap::new);
                    relist.insert(obj.name.clone(), Entry { rv, obj: Some(obj) });
                }
            }
            CacheEvent::InitDone => {
                // A relist is a consistent snapshot: it replaces everything
                // the watch said before, tombstones included.
                self.seen = self.relist.take().unwrap_or_default();
                self.synced = true;
                self.confirm_all();
                self.generation += 1;
            }
            CacheEvent::Apply(obj) => {
                if let Some(rv) = self.rv(&obj) {
                    let name = obj.name.clone();
                    self.see(name, Entry { rv, obj: Some(obj) });
                }
            }
            CacheEvent::Delete(obj) => {
                if let Some(rv) = self.rv(&obj) {
                    let name = obj.name.clone();
                    self.see(name, Entry { rv, obj: None });
                }
            }
        }
    }

    fn see(&mut self, name: String, entry: Entry<S>) {
        // Events of one watch come in order, but never let an older one
        // replace what a newer one said.
        if self.seen.get(&name).is_some_and(|e| e.rv > entry.rv) {
            return;
        }
        if self.ours.get(&name).is_some_and(|(o, _)| o.rv <= entry.rv) {
            self.ours.remove(&name);
        }
        self.seen.insert(name, entry);
        self.generation += 1;
    }

    /// Drops the own writes that the watch has caught up with.
    fn confirm_all(&mut self) {
        let seen = &self.seen;
        self.ours
            .retain(|name, (o, _)| seen.get(name).is_none_or(|e| e.rv < o.rv));
    }

    /// Records the result of this agent's create or update, or of a fresh
    /// read (a GET), so that the next list shows it.
    pub fn wrote(&mut self, obj: &Stored<S>, now: Instant) {
        if let Some(rv) = self.rv(obj) {
            self.ours_insert(
                obj.name.clone(),
                Entry {
                    rv,
                    obj: Some(obj.clone()),
                },
                now,
            );
        }
    }

    /// Records this agent's delete of `name` at `expected_version` (the
    /// version it removed), or a GET that found nothing (`expected_version`
    /// is then the newest version known: every version up to it is gone).
    pub fn deleted(&mut self, name: &str, expected_version: &str, now: Instant) {
        match expected_version.parse::<u64>() {
            Ok(rv) => self.ours_insert(name.to_string(), Entry { rv, obj: None }, now),
            Err(_) => self.disabled = true,
        }
    }

    /// The newest version this cache knows of `name`, if any.
    pub fn known_version(&self, name: &str) -> Option<u64> {
        let seen = self.seen.get(name).map(|e| e.rv);
        let ours = self.ours.get(name).map(|(e, _)| e.rv);
        seen.max(ours)
    }

    fn ours_insert(&mut self, name: String, entry: Entry<S>, now: Instant) {
        // Only what is newer than both the watch and an earlier write (a
        // slow GET must not undo a later write's result). A deletion at the
        // version the watch shows wins: it removed exactly that version.
        let newer_than_seen = match self.seen.get(&name) {
            None => true,
            Some(e) if entry.obj.is_none() => e.rv <= entry.rv,
            Some(e) => e.rv < entry.rv,
        };
        let newer_than_ours = self.ours.get(&name).is_none_or(|(o, _)| {
            o.rv < entry.rv || (o.rv == entry.rv && (entry.obj.is_none() || o.obj.is_some()))
        });
        if newer_than_seen && newer_than_ours {
            self.ours.insert(name, (entry, now));
            self.generation += 1;
        }
    }

    /// Every live object: the watch's view with this agent's newer writes
    /// laid over it, sorted by name; `None` until the first list completed
    /// (or when the cache is disabled). Forgets own writes older than
    /// [`OVERLAY_TTL`].
    pub fn list(&mut self, now: Instant) -> Option<Vec<Stored<S>>> {
        if !self.is_synced() {
            return None;
        }
        let before = self.ours.len();
        self.ours
            .retain(|_, (_, at)| now.saturating_duration_since(*at) < OVERLAY_TTL);
        if self.ours.len() != before {
            self.generation += 1;
        }
        let mut out: Vec<Stored<S>> = self
            .seen
            .iter()
            .filter(|(name, _)| !self.ours.contains_key(*name))
            .filter_map(|(_, e)| e.obj.clone())
            .chain(self.ours.values().filter_map(|(e, _)| e.obj.clone()))
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(name: &str, rv: u64, spec: &str) -> Stored<String> {
        Stored {
            name: name.into(),
            version: rv.to_string(),
            spec: spec.into(),
        }
    }

    fn synced(objs: &[Stored<String>]) -> ObjectCache<String> {
        let mut c = ObjectCache::new();
        c.on_event(CacheEvent::Init);
        for o in objs {
            c.on_event(CacheEvent::InitApply(o.clone()));
        }
        c.on_event(CacheEvent::InitDone);
        c
    }

    fn names(c: &mut ObjectCache<String>, now: Instant) -> Vec<(String, String, String)> {
        c.list(now)
            .unwrap()
            .into_iter()
            .map(|o| (o.name, o.version, o.spec))
            .collect()
    }

    fn row(n: &str, rv: u64, s: &str) -> (String, String, String) {
        (n.into(), rv.to_string(), s.into())
    }

    #[test]
    fn answers_nothing_until_the_first_list_is_complete() {
        let mut c = ObjectCache::new();
        let now = Instant::now();
        assert!(c.list(now).is_none());
        c.on_event(CacheEvent::Init);
        c.on_event(CacheEvent::InitApply(obj("a", 5, "x")));
        assert!(c.list(now).is_none(), "a partial list is never answered");
        c.on_event(CacheEvent::InitDone);
        assert_eq!(names(&mut c, now), vec![row("a", 5, "x")]);
    }

    #[test]
    fn follows_the_watch() {
        let now = Instant::now();
        let mut c = synced(&[obj("a", 5, "x"), obj("b", 6, "y")]);
        c.on_event(CacheEvent::Apply(obj("a", 7, "x2")));
        c.on_event(CacheEvent::Delete(obj("b", 8, "y")));
        c.on_event(CacheEvent::Apply(obj("c", 9, "z")));
        assert_eq!(
            names(&mut c, now),
            vec![row("a", 7, "x2"), row("c", 9, "z")]
        );
        // An older event never replaces a newer one.
        c.on_event(CacheEvent::Apply(obj("a", 6, "old")));
        assert_eq!(names(&mut c, now)[0], row("a", 7, "x2"));
    }

    #[test]
    fn own_writes_show_before_the_watch_delivers_them() {
        let now = Instant::now();
        let mut c = synced(&[obj("a", 5, "x")]);
        // A create and an update the watch has not delivered yet.
        c.wrote(&obj("b", 10, "mine"), now);
        c.wrote(&obj("a", 11, "x-mine"), now);
        assert_eq!(
            names(&mut c, now),
            vec![row("a", 11, "x-mine"), row("b", 10, "mine")]
        );
        // The watch delivers an older change of "a" (made before ours):
        // ours still shows.
        c.on_event(CacheEvent::Apply(obj("a", 8, "x-other")));
        assert_eq!(names(&mut c, now)[0], row("a", 11, "x-mine"));
        // Then ours: the overlay is dropped, the watch's copy is the same.
        c.on_event(CacheEvent::Apply(obj("a", 11, "x-mine")));
        c.on_event(CacheEvent::Apply(obj("b", 10, "mine")));
        assert!(c.ours.is_empty());
        assert_eq!(
            names(&mut c, now),
            vec![row("a", 11, "x-mine"), row("b", 10, "mine")]
        );
    }

    #[test]
    fn own_deletes_hide_the_object_until_the_watch_agrees() {
        let now = Instant::now();
        let mut c = synced(&[obj("a", 5, "x"), obj("b", 6, "y")]);
        c.deleted("a", "5", now);
        assert_eq!(names(&mut c, now), vec![row("b", 6, "y")]);
        // The watch's delete event (a newer version) confirms it.
        c.on_event(CacheEvent::Delete(obj("a", 12, "x")));
        assert!(c.ours.is_empty());
        assert_eq!(names(&mut c, now), vec![row("b", 6, "y")]);
        // A re-create (newer still) shows again.
        c.on_event(CacheEvent::Apply(obj("a", 13, "again")));
        assert_eq!(names(&mut c, now)[0], row("a", 13, "again"));
    }

    #[test]
    fn a_stale_read_does_not_undo_a_newer_write() {
        let now = Instant::now();
        let mut c = synced(&[obj("a", 5, "x")]);
        c.wrote(&obj("a", 9, "new"), now);
        // A GET that was answered before the write lands after it.
        c.wrote(&obj("a", 7, "older"), now);
        // The same for a state the watch already passed.
        c.wrote(&obj("z", 1, "ancient"), now);
        c.on_event(CacheEvent::Delete(obj("z", 3, "ancient")));
        c.wrote(&obj("z", 2, "ancient2"), now);
        assert_eq!(names(&mut c, now), vec![row("a", 9, "new")]);
        assert_eq!(c.known_version("a"), Some(9));
        // A read of the version an own delete removed does not bring it back.
        c.deleted("a", "9", now);
        c.wrote(&obj("a", 9, "new"), now);
        assert!(names(&mut c, now).is_empty());
        assert_eq!(c.known_version("z"), Some(3));
    }

    #[test]
    fn a_relist_replaces_the_watch_view_but_keeps_newer_own_writes() {
        let now = Instant::now();
        let mut c = synced(&[obj("a", 5, "x"), obj("b", 6, "y")]);
        c.wrote(&obj("c", 20, "mine"), now);
        c.on_event(CacheEvent::Init);
        // While the relist runs, the old view is still answered.
        assert_eq!(names(&mut c, now).len(), 3);
        c.on_event(CacheEvent::InitApply(obj("a", 15, "x3")));
        c.on_event(CacheEvent::InitDone);
        // "b" was deleted during the outage; "c" was written after the
        // relist's snapshot.
        assert_eq!(
            names(&mut c, now),
            vec![row("a", 15, "x3"), row("c", 20, "mine")]
        );
    }

    #[test]
    fn own_writes_expire_when_the_watch_never_confirms_them() {
        let now = Instant::now();
        let mut c = synced(&[]);
        c.wrote(&obj("a", 9, "mine"), now);
        assert_eq!(names(&mut c, now).len(), 1);
        let g = c.generation();
        assert!(names(&mut c, now + OVERLAY_TTL).is_empty());
        assert!(c.generation() > g);
    }

    #[test]
    fn a_non_integer_resource_version_turns_the_cache_off() {
        let now = Instant::now();
        let mut c = synced(&[obj("a", 5, "x")]);
        c.on_event(CacheEvent::Apply(Stored {
            name: "b".into(),
            version: "v-abc".into(),
            spec: "y".into(),
        }));
        assert!(c.is_disabled());
        assert!(c.list(now).is_none());
    }

    #[test]
    fn generation_changes_with_the_view() {
        let now = Instant::now();
        let mut c = synced(&[obj("a", 5, "x")]);
        let g0 = c.generation();
        c.on_event(CacheEvent::Apply(obj("a", 4, "older")));
        assert_eq!(c.generation(), g0, "an ignored event changes nothing");
        c.wrote(&obj("a", 6, "y"), now);
        let g1 = c.generation();
        assert!(g1 > g0);
        c.on_event(CacheEvent::Apply(obj("b", 7, "z")));
        assert!(c.generation() > g1);
    }
}
