//! Operations of an accepting `BGPFilter` rule: add a community (RFC 1997,
//! RFC 8092), prepend to the AS path (RFC 4271 §5.1.2, RFC 5065 §3), set the
//! priority (carried in LOCAL_PREF, RFC 4271 §5.1.5, the way Calico does).

use super::{Direction, PeerType, RouteView};
use crate::wire::{AsSegment, AsSegmentKind, PathAttributes};
use petrel_crd::BgpFilterOperation;
use petrel_crd::Community;

/// Calico converts between a priority (kernel metric, lower is preferred) and
/// LOCAL_PREF (higher is preferred) as `local_pref = 2^31 − 1 − priority`
/// (`BirdIntMaxValue` in confd's `template_funcs.go`).
pub const PRIORITY_BASE: u32 = 2_147_483_647;

/// LOCAL_PREF that carries `priority` (Calico's `setPriority`). Priorities
/// above [`PRIORITY_BASE`] (rejected by validation) saturate to 0.
pub fn local_pref_for_priority(priority: u32) -> u32 {
    PRIORITY_BASE.saturating_sub(priority)
}

/// The priority a LOCAL_PREF stands for, as Calico's kernel export computes
/// `krt_metric = 2^31 − 1 − bgp_local_pref`; `None` for values above
/// [`PRIORITY_BASE`], which no priority maps to.
pub fn priority_from_local_pref(local_pref: u32) -> Option<u32> {
    PRIORITY_BASE.checked_sub(local_pref)
}

/// Most ASNs one AS_PATH segment can hold (one-octet segment length).
const MAX_SEGMENT_LEN: usize = 255;

pub(super) struct Applied {
    pub attrs: Option<PathAttributes>,
    pub priority: Option<u32>,
}

/// Run `ops` in order on the route's attributes. `skip_asns` leading ASNs
/// stay in front of any prepended ones (the local AS on export to eBGP).
pub(super) fn apply_operations(
    ops: &[BgpFilterOperation],
    route: &RouteView,
    dir: Direction,
    skip_asns: usize,
) -> Applied {
    let mut attrs = route.attrs.clone();
    let mut priority = None;
    // LOCAL_PREF must not be sent to an external peer (RFC 4271 §5.1.5).
    let carry_local_pref = !(dir == Direction::Export && route.peer_type == PeerType::Ebgp);
    for op in ops {
        if let Some(add) = &op.add_community {
            add_community(&mut attrs, add.value.0);
        }
        if let Some(prepend) = &op.prepend_as_path {
            prepend_as_path(&mut attrs, skip_asns, &prepend.prefix);
        }
        if let Some(sp) = &op.set_priority {
            priority = Some(sp.value);
            if carry_local_pref {
                attrs.local_pref = Some(local_pref_for_priority(sp.value));
            }
        }
    }
    let changed = attrs != *route.attrs;
    Applied {
        attrs: changed.then_some(attrs),
        priority,
    }
}

/// Add `c` unless the route already carries it (BIRD's `.add` on a community
/// list has set semantics).
pub(super) fn add_community(attrs: &mut PathAttributes, c: Community) {
    match c {
        Community::Standard(v) if !attrs.communities.contains(&v) => attrs.communities.push(v),
        Community::Large(v) if !attrs.large_communities.contains(&v) => {
            attrs.large_communities.push(v)
        }
        _ => {}
    }
}

/// Make the AS path start with `asns` (in order), behind any confederation
/// segments (which must stay first, RFC 5065 §3) and behind the first `skip`
/// ASNs of the leading AS_SEQUENCE.
pub(super) fn prepend_as_path(attrs: &mut PathAttributes, skip: usize, asns: &[u32]) {
    if asns.is_empty() {
        return;
    }
    let path = &mut attrs.as_path;
    let at = path
        .iter()
        .position(|s| {
            !matches!(
                s.kind,
                AsSegmentKind::ConfedSequence | AsSegmentKind::ConfedSet
            )
        })
        .unwrap_or(path.len());
    let skip = match path.get(at) {
        Some(seg) if seg.kind == AsSegmentKind::Sequence => skip.min(seg.asns.len()),
        _ => 0,
    };
    let mut asns_all: Vec<u32> = Vec::new();
    let mut tail: Vec<u32> = Vec::new();
    if let Some(seg) = path.get(at)
        && seg.kind == AsSegmentKind::Sequence
    {
        // Merge into the leading AS_SEQUENCE, then re-split into segments of
        // at most 255 ASNs.
        let seg = path.remove(at);
        asns_all.extend_from_slice(&seg.asns[..skip]);
        tail = seg.asns[skip..].to_vec();
    }
    asns_all.extend_from_slice(asns);
    asns_all.extend(tail);
    let segments: Vec<AsSegment> = asns_all
        .chunks(MAX_SEGMENT_LEN)
        .map(|c| AsSegment {
            kind: AsSegmentKind::Sequence,
            asns: c.to_vec(),
        })
        .collect();
    path.splice(at..at, segments);
}
