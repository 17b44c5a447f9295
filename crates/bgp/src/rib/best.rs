//! Best-path selection (RFC 4271 §9.1.2, RFC 4456 §9 for reflected routes).
//!
//! The comparison is a pure function over two candidate paths. It returns the
//! winner and the step that decided, so every route that is not selected can
//! say why.

use super::{Path, PathSource};
use crate::wire::{AsSegmentKind, Origin, PathAttributes};
use std::cmp::Ordering;
use std::net::Ipv4Addr;

/// The decision step that made a path lose to the best path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum NotBestReason {
    /// The next hop is unusable (missing or not resolvable).
    NextHopUnusable,
    LocalPref,
    AsPathLength,
    Origin,
    Med,
    /// An eBGP-learned path beats an iBGP-learned one.
    EbgpOverIbgp,
    RouterId,
    ClusterListLength,
    PeerAddress,
    /// Same peer, different ADD-PATH path id (lowest id wins).
    PathId,
}

impl std::fmt::Display for NotBestReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            NotBestReason::NextHopUnusable => "next hop unusable",
            NotBestReason::LocalPref => "lower local-pref",
            NotBestReason::AsPathLength => "longer AS path",
            NotBestReason::Origin => "higher origin",
            NotBestReason::Med => "higher MED",
            NotBestReason::EbgpOverIbgp => "iBGP path, eBGP preferred",
            NotBestReason::RouterId => "higher router id",
            NotBestReason::ClusterListLength => "longer cluster list",
            NotBestReason::PeerAddress => "higher peer address",
            NotBestReason::PathId => "higher path id",
        };
        f.write_str(s)
    }
}

/// LOCAL_PREF with the RFC 4271 default for paths that lack it (eBGP-learned
/// and locally originated routes).
pub fn local_pref(a: &PathAttributes) -> u32 {
    a.local_pref.unwrap_or(100)
}

/// AS path length per RFC 4271 §9.1.2.2 a): an AS_SET counts as one,
/// confederation segments do not count (RFC 5065 §5.3).
pub fn as_path_len(a: &PathAttributes) -> usize {
    a.as_path
        .iter()
        .map(|s| match s.kind {
            AsSegmentKind::Sequence => s.asns.len(),
            AsSegmentKind::Set => 1,
            AsSegmentKind::ConfedSequence | AsSegmentKind::ConfedSet => 0,
        })
        .sum()
}

/// The neighbouring AS a path was learned from: the first AS of the path, or
/// our own AS (0) for paths with an empty AS path (iBGP / local).
pub fn neighbor_as(a: &PathAttributes) -> u32 {
    a.as_path
        .iter()
        .find(|s| matches!(s.kind, AsSegmentKind::Sequence | AsSegmentKind::Set))
        .and_then(|s| s.asns.first().copied())
        .unwrap_or(0)
}

fn origin_rank(a: &PathAttributes) -> u8 {
    match a.origin.unwrap_or(Origin::Incomplete) {
        Origin::Igp => 0,
        Origin::Egp => 1,
        Origin::Incomplete => 2,
    }
}

/// The router id used for tie-breaking: ORIGINATOR_ID for reflected routes
/// (RFC 4456 §9), else the BGP identifier of the peer.
fn effective_router_id(p: &Path) -> Ipv4Addr {
    p.attrs.originator_id.unwrap_or(p.source.router_id)
}

/// Compare two candidate paths for the same prefix. `Ordering::Less` means `a`
/// is better. The reason is the step that decided, from the loser's view.
pub fn compare(a: &Path, b: &Path) -> (Ordering, NotBestReason) {
    macro_rules! step {
        ($ord:expr, $reason:expr) => {
            let o = $ord;
            if o != Ordering::Equal {
                return (o, $reason);
            }
        };
    }
    step!(b.usable().cmp(&a.usable()), NotBestReason::NextHopUnusable);
    step!(
        local_pref(&b.attrs).cmp(&local_pref(&a.attrs)),
        NotBestReason::LocalPref
    );
    step!(
        as_path_len(&a.attrs).cmp(&as_path_len(&b.attrs)),
        NotBestReason::AsPathLength
    );
    step!(
        origin_rank(&a.attrs).cmp(&origin_rank(&b.attrs)),
        NotBestReason::Origin
    );
    // MED only between paths from the same neighbouring AS (§9.1.2.2 c); a
    // missing MED is the lowest value.
    if neighbor_as(&a.attrs) == neighbor_as(&b.attrs) {
        step!(
            a.attrs.med.unwrap_or(0).cmp(&b.attrs.med.unwrap_or(0)),
            NotBestReason::Med
        );
    }
    step!(
        rank_source(&a.source).cmp(&rank_source(&b.source)),
        NotBestReason::EbgpOverIbgp
    );
    step!(
        effective_router_id(a).cmp(&effective_router_id(b)),
        NotBestReason::RouterId
    );
    step!(
        a.attrs.cluster_list.len().cmp(&b.attrs.cluster_list.len()),
        NotBestReason::ClusterListLength
    );
    step!(
        a.source.address.cmp(&b.source.address),
        NotBestReason::PeerAddress
    );
    (a.path_id.cmp(&b.path_id), NotBestReason::PathId)
}

/// Locally originated paths first, then eBGP, then iBGP.
fn rank_source(s: &PathSource) -> u8 {
    if s.local {
        0
    } else if s.ebgp {
        1
    } else {
        2
    }
}

/// Two paths are equal for multipath when they tie on every step before the
/// eBGP/iBGP and router-id tie-breaks, regardless of neighbouring AS (as RFC
/// 7938 datacenters with one AS per ToR need), and come from different next
/// hops.
pub fn multipath_equal(a: &Path, b: &Path) -> bool {
    a.usable()
        && b.usable()
        && local_pref(&a.attrs) == local_pref(&b.attrs)
        && as_path_len(&a.attrs) == as_path_len(&b.attrs)
        && origin_rank(&a.attrs) == origin_rank(&b.attrs)
        && a.attrs.med.unwrap_or(0) == b.attrs.med.unwrap_or(0)
        && a.source.ebgp == b.source.ebgp
        && a.source.local == b.source.local
        && a.next_hop != b.next_hop
}
