//! Routing information bases (RFC 4271 §3.2 and §9.1): Adj-RIB-In per peer,
//! the Loc-RIB with best path and multipath, attribute interning.
//!
//! Pure code: the speaker task owns one `Rib` and feeds it received routes,
//! originated routes and peer-down events; `take_changes` returns the prefixes
//! whose selection changed since the last call, so export and the dataplane do
//! work in proportion to what changed.

pub mod best;

use crate::bgp::wire::{Family, PathAttributes};
pub use best::NotBestReason;
use ipnet::IpNet;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

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
    /// Sorted: `paths[0]` is the best path when `paths` is not empty.
    pub paths: Vec<Path>,
    /// For each path after the first, why it lost to the best path.
    pub reasons: Vec<Option<NotBestReason>>,
    /// How many of the leading paths form the multipath set (>= 1 when any).
    pub multipath: usize,
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
    set: HashSet<Arc<PathAttributes>>,
}

impl AttrInterner {
    pub fn intern(&mut self, attrs: Arc<PathAttributes>) -> Arc<PathAttributes> {
        if let Some(existing) = self.set.get(&attrs) {
            return existing.clone();
        }
        self.set.insert(attrs.clone());
        attrs
    }
    /// Drop attribute sets no path refers to any more.
    pub fn collect(&mut self) {
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
    adj_in: HashMap<u32, HashMap<AdjKey, Arc<PathAttributes>>>,
    loc: BTreeMap<IpNet, Destination>,
    changed: BTreeSet<IpNet>,
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
            changed: BTreeSet::new(),
            max_paths: max_paths.max(1),
        }
    }

    pub fn set_max_paths(&mut self, n: usize) {
        self.max_paths = n.max(1);
        let prefixes: Vec<IpNet> = self.loc.keys().copied().collect();
        for p in prefixes {
            self.reselect(p);
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
        if adj
            .get(&(prefix, path_id))
            .is_some_and(|a| Arc::ptr_eq(a, &attrs))
        {
            return false;
        }
        adj.insert((prefix, path_id), attrs.clone());
        let dest = self.loc.entry(prefix).or_default();
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
        self.reselect(prefix);
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
            if let Some(dest) = self.loc.get_mut(&prefix) {
                dest.paths
                    .retain(|p| !(p.source.peer == peer && p.path_id == path_id));
            }
            self.reselect(prefix);
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
            if let Some(dest) = self.loc.get_mut(&prefix) {
                dest.paths.retain(|p| p.source.peer != peer);
            }
            self.reselect(prefix);
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

    fn reselect(&mut self, prefix: IpNet) {
        let Some(dest) = self.loc.get_mut(&prefix) else {
            return;
        };
        if dest.paths.is_empty() {
            self.loc.remove(&prefix);
            self.changed.insert(prefix);
            return;
        }
        let before: Vec<(u32, u32, *const PathAttributes)> = dest
            .multipath_paths()
            .iter()
            .map(|p| (p.source.peer, p.path_id, Arc::as_ptr(&p.attrs)))
            .collect();
        dest.paths.sort_by(|a, b| best::compare(a, b).0);
        let best = dest.paths[0].clone();
        dest.reasons = dest
            .paths
            .iter()
            .enumerate()
            .map(|(i, p)| {
                if i == 0 {
                    None
                } else {
                    Some(best::compare(&best, p).1)
                }
            })
            .collect();
        let mut n = 1;
        let mut hops: Vec<Option<IpAddr>> = vec![best.next_hop];
        for p in dest.paths.iter().skip(1) {
            if n >= self.max_paths || !best::multipath_equal(&best, p) || hops.contains(&p.next_hop)
            {
                break;
            }
            hops.push(p.next_hop);
            n += 1;
        }
        dest.multipath = n;
        let after: Vec<(u32, u32, *const PathAttributes)> = dest
            .multipath_paths()
            .iter()
            .map(|p| (p.source.peer, p.path_id, Arc::as_ptr(&p.attrs)))
            .collect();
        if before != after {
            self.changed.insert(prefix);
        }
    }

    /// Prefixes whose best path or multipath set changed since the last call.
    pub fn take_changes(&mut self) -> BTreeSet<IpNet> {
        std::mem::take(&mut self.changed)
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

#[cfg(test)]
mod tests;
