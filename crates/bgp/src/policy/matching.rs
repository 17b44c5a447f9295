//! Match fields of a `BGPFilter` rule (Calico `filterStatement`): prefix and
//! length (RFC 4632 prefixes), source, interface, peer type, communities
//! (RFC 1997, RFC 8092), AS path prefix (RFC 4271 §5.1.2, RFC 5065 §5.3) and
//! priority.

use super::{PeerType, RouteView};
use crate::wire::{AsSegmentKind, PathAttributes};
use ipnet::IpNet;
use petrel_crd::Community;
use petrel_crd::{
    BgpFilterRule, CommunityValue, FilterPeerType, FilterSource, MatchOperator, PrefixLengthRange,
};

/// Whether every match field `rule` sets matches `route`. `skip_asns` leading
/// ASNs of the path are ignored (the local AS on export to eBGP peers).
pub(super) fn rule_matches(rule: &BgpFilterRule, route: &RouteView, skip_asns: usize) -> bool {
    if let Some(cidr) = rule.cidr {
        // Validation requires matchOperator with cidr; without one, Calico's
        // renderer refuses the filter. Treat it as `In`, the plain reading of
        // "a route matching cidr".
        let op = rule.match_operator.unwrap_or(MatchOperator::In);
        if !cidr_matches(route.prefix, cidr, rule.prefix_length, op) {
            return false;
        }
    }
    if rule.source == Some(FilterSource::RemotePeers) && !route.learned_from_peer {
        return false;
    }
    if let Some(pattern) = &rule.interface
        && !route
            .interface
            .is_some_and(|ifname| glob_match(pattern, ifname))
    {
        return false;
    }
    if let Some(pt) = rule.peer_type {
        let want = match pt {
            FilterPeerType::Ebgp => PeerType::Ebgp,
            FilterPeerType::Ibgp => PeerType::Ibgp,
        };
        if route.peer_type != want {
            return false;
        }
    }
    if let Some(c) = &rule.communities
        && !c.values.iter().all(|v| has_community(route.attrs, v))
    {
        return false;
    }
    if !rule.as_path_prefix.is_empty()
        && !as_path_starts_with(route.attrs, skip_asns, &rule.as_path_prefix)
    {
        return false;
    }
    if let Some(p) = rule.priority
        && route.priority != Some(p)
    {
        return false;
    }
    true
}

/// Effective prefix-length range of a `cidr` match (Calico
/// `filterMatchPrefixLength`): min is at least the CIDR's length, max at most
/// the family's maximum.
pub(super) fn length_range(cidr: IpNet, range: Option<PrefixLengthRange>) -> (u8, u8) {
    let lo = cidr.prefix_len();
    let hi = cidr.max_prefix_len();
    match range {
        None => (lo, hi),
        Some(r) => (
            r.min.map_or(lo, |m| m.max(lo)),
            r.max.map_or(hi, |m| m.min(hi)),
        ),
    }
}

/// Compare `prefix` with `cidr` under `op`.
pub(super) fn cidr_matches(
    prefix: IpNet,
    cidr: IpNet,
    range: Option<PrefixLengthRange>,
    op: MatchOperator,
) -> bool {
    let (prefix, cidr) = (prefix.trunc(), cidr.trunc());
    let (lo, hi) = length_range(cidr, range);
    let in_range = |len: u8| lo <= len && len <= hi;
    let equal = prefix == cidr && in_range(cidr.prefix_len());
    let within = cidr.contains(&prefix) && in_range(prefix.prefix_len());
    match op {
        MatchOperator::Equal => equal,
        MatchOperator::NotEqual => !equal,
        MatchOperator::In => within,
        MatchOperator::NotIn => !within,
    }
}

/// BIRD string pattern match: `*` matches any run of characters (also
/// empty), `?` exactly one; everything else matches itself.
pub(super) fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0usize, 0usize);
    // Position of the last `*` in the pattern and the text index it was tried at.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || (p[pi] != '*' && p[pi] == t[ti])) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            // Let the last `*` swallow one more character and retry.
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Whether the route carries `value`.
pub(super) fn has_community(attrs: &PathAttributes, value: &CommunityValue) -> bool {
    match value.0 {
        Community::Standard(c) => attrs.communities.contains(&c),
        Community::Large(l) => attrs.large_communities.contains(&l),
    }
}

/// The first ASN of the AS path, when the path starts with an AS_SEQUENCE.
pub(super) fn first_asn(attrs: &PathAttributes) -> Option<u32> {
    let seg = attrs.as_path.iter().find(|s| {
        !matches!(
            s.kind,
            AsSegmentKind::ConfedSequence | AsSegmentKind::ConfedSet
        )
    })?;
    match seg.kind {
        AsSegmentKind::Sequence => seg.asns.first().copied(),
        _ => None,
    }
}

/// One position of the AS path as BIRD's path masks see it.
enum PathElem<'a> {
    As(u32),
    Set(&'a [u32]),
}

/// Whether the AS path (without confederation segments and without its first
/// `skip` positions) begins with `want`.
pub(super) fn as_path_starts_with(attrs: &PathAttributes, skip: usize, want: &[u32]) -> bool {
    let mut elems =
        attrs
            .as_path
            .iter()
            .flat_map(|seg| -> Box<dyn Iterator<Item = PathElem<'_>>> {
                match seg.kind {
                    AsSegmentKind::Sequence => Box::new(seg.asns.iter().map(|a| PathElem::As(*a))),
                    AsSegmentKind::Set => Box::new(std::iter::once(PathElem::Set(&seg.asns))),
                    AsSegmentKind::ConfedSequence | AsSegmentKind::ConfedSet => {
                        Box::new(std::iter::empty())
                    }
                }
            });
    for _ in 0..skip {
        if elems.next().is_none() {
            return false;
        }
    }
    want.iter().all(|asn| match elems.next() {
        Some(PathElem::As(a)) => a == *asn,
        Some(PathElem::Set(set)) => set.contains(asn),
        None => false,
    })
}
