//! Routing information bases (RFC 4271 §3.2 and §9.1): Adj-RIB-In per peer,
//! the Loc-RIB with best path and multipath, attribute interning.
//!
//! Pure code: the speaker task owns one `Rib` and feeds it received routes,
//! originated routes and peer-down events; `take_changes` returns the prefixes
//! whose selection changed since the last call, so export and the dataplane do
//! work in proportion to what changed.

pub mod best;

use crate::wire::{Family, PathAttributes};
pub use best::NotBestReason;
use ipnet::IpNet;
use smallvec::SmallVec;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

/// Hash maps keyed by prefixes a peer chooses use foldhash: fast, and
/// seeded per process so a peer cannot precompute colliding keys.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
type FastSet<K> = HashSet<K, foldhash::fast::RandomState>;

/// Where a path came from. Shared by all paths of one peer session.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PathSource {
    /// Speaker-assigned peer id; 0 is the local node.
    pub peer: u32,
    /// Display name of the peer ("bgppeer/tor1", "mesh/node2", "local").
    pub name: Arc<str>,
    pub address: IpAddr,
    pub router_id: Ipv4Addr,
    pub ebgp: bool,
    pub local: bool,
    /// The peer is another node of the cluster (mesh, or a BGPPeer that
    /// selects nodes); its routes are not passed on to external peers.
    pub cluster_node: bool,
}

impl PathSource {
    pub fn local(router_id: Ipv4Addr) -> Arc<PathSource> {
        Arc::new(PathSource {
            peer: 0,
            name: Arc::from("local"),
            address: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            router_id,
            ebgp: false,
            local: true,
            cluster_node: false,
        })
    }
}

/// One candidate path in the Loc-RIB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path {
    pub source: Arc<PathSource>,
    /// ADD-PATH identifier as received (0 without ADD-PATH).
    pub path_id: u32,
    pub attrs: Arc<PathAttributes>,
    /// The next hop used for forwarding; `None` for local routes.
    pub next_hop: Option<IpAddr>,
}

impl Path {
    /// A path is usable when it is local or has a next hop.
    pub fn usable(&self) -> bool {
        self.source.local || self.next_hop.is_some()
    }
}

/// A prefix in the Loc-RIB with all its candidate paths, best first.
#[derive(Debug, Clone, Default)]
pub struct Destination {
    /// Sorted: `paths[0]` is the best path when `paths` is not empty. Most
    /// prefixes have one path, stored inline.
    pub paths: SmallVec<[Path; 1]>,
    /// For each path, why it lost to the best path (`None` for the best);
    /// empty when there is a single path.
    pub reasons: Vec<Option<NotBestReason>>,
    /// How many of the leading paths form the multipath set (>= 1 when any).
    pub multipath: usize,
}

impl Destination {
    /// Why path `i` is not the best path, if it is not.
    pub fn reason(&self, i: usize) -> Option<NotBestReason> {
        self.reasons.get(i).copied().flatten()
    }
}

impl Destination {
    pub fn best(&self) -> Option<&Path> {
        self.paths.first()
    }
    /// The paths used for forwarding (best plus equal-cost paths).
    pub fn multipath_paths(&self) -> &[Path] {
        &self.paths[..self.multipath.min(self.paths.len())]
    }
}

/// Attribute interner: equal attribute sets are stored once.
#[derive(Debug, Default)]
pub struct AttrInterner {
    set: FastSet<Arc<PathAttributes>>,
    /// The last (input, interned) pair: the NLRI of one UPDATE share one
    /// attribute set, so most lookups hit here without hashing.
    last: Option<(Arc<PathAttributes>, Arc<PathAttributes>)>,
}

impl AttrInterner {
    pub fn intern(&mut self, attrs: Arc<PathAttributes>) -> Arc<PathAttributes> {
        if let Some((input, interned)) = &self.last
            && Arc::ptr_eq(input, &attrs)
        {
            return interned.clone();
        }
        let interned = match self.set.get(&attrs) {
            Some(existing) => existing.clone(),
            None => {
                self.set.insert(attrs.clone());
                attrs.clone()
            }
        };
        self.last = Some((attrs, interned.clone()));
        interned
    }
    /// Drop attribute sets no path refers to any more.
    pub fn collect(&mut self) {
        self.last = None;
        self.set.retain(|a| Arc::strong_count(a) > 1);
    }
    pub fn len(&self) -> usize {
        self.set.len()
    }
    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }
}

/// Key of a route in an Adj-RIB-In: prefix and ADD-PATH id.
pub type AdjKey = (IpNet, u32);

/// The RIBs of one speaker.
#[derive(Debug)]
pub struct Rib {
    interner: AttrInterner,
    adj_in: HashMap<u32, FastMap<AdjKey, Arc<PathAttributes>>>,
    loc: BTreeMap<IpNet, Destination>,
    /// Prefixes whose selection changed, in order of change (may repeat).
    changed: Vec<IpNet>,
    max_paths: usize,
}

impl Default for Rib {
    fn default() -> Self {
        Rib::new(16)
    }
}

impl Rib {
    /// A RIB that installs at most `max_paths` equal-cost paths per prefix.
    pub fn new(max_paths: usize) -> Self {
        Rib {
            interner: AttrInterner::default(),
            adj_in: HashMap::new(),
            loc: BTreeMap::new(),
            changed: Vec::new(),
            max_paths: max_paths.max(1),
        }
    }

    pub fn set_max_paths(&mut self, n: usize) {
        self.max_paths = n.max(1);
        let prefixes: Vec<IpNet> = self.loc.keys().copied().collect();
        for p in prefixes {
            self.change(p, |_| {});
        }
    }

    /// Add or replace a path for `prefix` from `source`. `attrs` is the
    /// post-policy attribute set. Returns true when the Adj-RIB-In changed.
    pub fn insert(
        &mut self,
        source: &Arc<PathSource>,
        prefix: IpNet,
        path_id: u32,
        attrs: Arc<PathAttributes>,
        next_hop: Option<IpAddr>,
    ) -> bool {
        let attrs = self.interner.intern(attrs);
        let adj = self.adj_in.entry(source.peer).or_default();
        let same_attrs = adj
            .get(&(prefix, path_id))
            .is_some_and(|a| Arc::ptr_eq(a, &attrs));
        if same_attrs
            && self.loc.get(&prefix).is_some_and(|d| {
                d.paths.iter().any(|p| {
                    p.source.peer == source.peer && p.path_id == path_id && p.next_hop == next_hop
                })
            })
        {
            return false;
        }
        adj.insert((prefix, path_id), attrs.clone());
        let dest = self.loc.entry(prefix).or_default();
        let before = snapshot(dest);
        let path = Path {
            source: source.clone(),
            path_id,
            attrs,
            next_hop,
        };
        match dest
            .paths
            .iter_mut()
            .find(|p| p.source.peer == source.peer && p.path_id == path_id)
        {
            Some(p) => *p = path,
            None => dest.paths.push(path),
        }
        if select(dest, self.max_paths, &before) {
            self.changed.push(prefix);
        }
        true
    }

    /// Remove the path for `prefix` from `peer`. Returns true if one existed.
    pub fn remove(&mut self, peer: u32, prefix: IpNet, path_id: u32) -> bool {
        let existed = self
            .adj_in
            .get_mut(&peer)
            .and_then(|adj| adj.remove(&(prefix, path_id)))
            .is_some();
        if existed {
            self.change(prefix, |d| {
                d.paths
                    .retain(|p| !(p.source.peer == peer && p.path_id == path_id))
            });
        }
        existed
    }

    /// Remove every path of `peer` (session down). Returns the number removed.
    pub fn remove_peer(&mut self, peer: u32) -> usize {
        let Some(adj) = self.adj_in.remove(&peer) else {
            return 0;
        };
        let n = adj.len();
        let prefixes: BTreeSet<IpNet> = adj.into_keys().map(|(p, _)| p).collect();
        for prefix in prefixes {
            self.change(prefix, |d| d.paths.retain(|p| p.source.peer != peer));
        }
        self.interner.collect();
        n
    }

    /// Remove every path of `peer` for one family (e.g. on a family-level
    /// route refresh or prefix-limit). Returns the number removed.
    pub fn remove_peer_family(&mut self, peer: u32, family: Family) -> usize {
        let Some(adj) = self.adj_in.get_mut(&peer) else {
            return 0;
        };
        let keys: Vec<AdjKey> = adj
            .keys()
            .filter(|(p, _)| Family::of(p) == family)
            .copied()
            .collect();
        for k in &keys {
            self.remove(peer, k.0, k.1);
        }
        keys.len()
    }

    /// Number of routes in the Adj-RIB-In of `peer`, per family.
    pub fn adj_in_count(&self, peer: u32, family: Family) -> usize {
        self.adj_in
            .get(&peer)
            .map(|adj| adj.keys().filter(|(p, _)| Family::of(p) == family).count())
            .unwrap_or(0)
    }

    /// Total routes in the Adj-RIB-In of `peer`.
    pub fn adj_in_total(&self, peer: u32) -> usize {
        self.adj_in.get(&peer).map(|a| a.len()).unwrap_or(0)
    }

    /// Apply `f` to the paths of `prefix`, then re-run selection and record
    /// the prefix as changed if its selected set differs from before `f`.
    fn change(&mut self, prefix: IpNet, f: impl FnOnce(&mut Destination)) {
        let Some(dest) = self.loc.get_mut(&prefix) else {
            return;
        };
        let before = snapshot(dest);
        f(dest);
        if dest.paths.is_empty() {
            self.loc.remove(&prefix);
            self.changed.push(prefix);
        } else if select(dest, self.max_paths, &before) {
            self.changed.push(prefix);
        }
    }

    /// Prefixes whose best path or multipath set changed since the last call.
    pub fn take_changes(&mut self) -> BTreeSet<IpNet> {
        std::mem::take(&mut self.changed).into_iter().collect()
    }

    pub fn get(&self, prefix: &IpNet) -> Option<&Destination> {
        self.loc.get(prefix)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&IpNet, &Destination)> {
        self.loc.iter()
    }

    pub fn len(&self) -> usize {
        self.loc.len()
    }

    pub fn is_empty(&self) -> bool {
        self.loc.is_empty()
    }

    /// Number of distinct attribute sets stored.
    pub fn attribute_sets(&self) -> usize {
        self.interner.len()
    }
}

/// What identifies a selected path for change detection: its source, path
/// id, (interned) attributes and next hop.
type SelectedKey = (u32, u32, *const PathAttributes, Option<IpAddr>);

fn key(p: &Path) -> SelectedKey {
    (p.source.peer, p.path_id, Arc::as_ptr(&p.attrs), p.next_hop)
}

/// The selected (multipath) set of `dest`, taken before a change.
fn snapshot(dest: &Destination) -> SmallVec<[SelectedKey; 4]> {
    dest.multipath_paths().iter().map(key).collect()
}

/// Sort the paths of `dest` best first, record why the others lost and the
/// multipath set. Returns true when the selected set differs from `before`
/// (the snapshot taken before the paths were changed).
fn select(dest: &mut Destination, max_paths: usize, before: &[SelectedKey]) -> bool {
    if dest.paths.len() == 1 {
        dest.reasons.clear();
        dest.multipath = 1;
    } else {
        dest.paths.sort_by(|a, b| best::compare(a, b).0);
        let Some((best, rest)) = dest.paths.split_first() else {
            return false;
        };
        dest.reasons.clear();
        dest.reasons.push(None);
        dest.reasons
            .extend(rest.iter().map(|p| Some(best::compare(best, p).1)));
        let mut n = 1;
        while n < dest.paths.len() && n < max_paths {
            let p = &dest.paths[n];
            let distinct_hop = dest.paths[..n].iter().all(|q| q.next_hop != p.next_hop);
            if !best::multipath_equal(best, p) || !distinct_hop {
                break;
            }
            n += 1;
        }
        dest.multipath = n;
    }
    !dest
        .multipath_paths()
        .iter()
        .map(key)
        .eq(before.iter().copied())
}

#[cfg(test)]
mod tests;
