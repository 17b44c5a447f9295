//! Routing policy: Calico `BGPFilter` rules and petrel's safe import defaults
//! (RFC 4271 §9.1 decision process input policy, §5.1.2 AS_PATH, §5.1.5
//! LOCAL_PREF; RFC 1997 and RFC 8092 communities).
//!
//! Everything here is a pure function of its inputs: no I/O, no clock, no
//! logging. The speaker builds a [`RouteView`] for one route and one session,
//! calls [`apply`] with the peer's filters (in the order of
//! `BGPPeer.spec.filters`) and acts on the [`PolicyOutcome`].
//!
//! # Semantics (those of Calico's confd, which renders each filter into a
//! BIRD function; see `confd/pkg/resource/template/template_funcs.go`)
//!
//! * A route is checked against the rule list of its family and direction
//!   (`importV4`/`exportV4` for IPv4 prefixes, `importV6`/`exportV6` for IPv6).
//! * Rules are tried in order, filter after filter. A rule matches when every
//!   match field it sets matches (BIRD `&&` of the conditions); a rule with no
//!   match fields matches every route. The first matching rule decides: its
//!   `action` ends the evaluation for the whole peer (BIRD `accept;` /
//!   `reject;` terminate the filter), after its `operations` ran in order.
//! * A filter none of whose rules matches falls through to the next filter of
//!   the peer (Calico's generated functions end without a verdict). When no
//!   rule of any filter matches, `default_accept` decides: Calico's import
//!   filter ends with `accept;` and its export filter with the normal export
//!   policy, which the caller passes in.
//! * `cidr` with `matchOperator`: `In` = the route's prefix equals or lies
//!   within `cidr`, with a length in the `prefixLength` range; `Equal` = the
//!   prefix is exactly `cidr` (and `cidr`'s own length is in the range when
//!   `prefixLength` is given); `NotIn`/`NotEqual` are their negations. The
//!   range defaults to `cidr`'s length ..= 32 (IPv4) or 128 (IPv6); a given
//!   `min` below `cidr`'s length is raised to it and a `max` above the family
//!   maximum is lowered to it (Calico `filterMatchPrefixLength`). An empty range
//!   (`min > max`, rejected by validation) matches no prefix, so `NotIn` /
//!   `NotEqual` then match every prefix. A `cidr` of the other family never
//!   contains the route (so `In`/`Equal` fail and `NotIn`/`NotEqual` hold).
//! * `source: RemotePeers`: the route was learned from a BGP peer, not
//!   originated by this node (BIRD `source ~ [RTS_BGP]`).
//! * `interface`: the route's interface, matched as a BIRD string pattern
//!   (`*` any run of characters, `?` one character). A route without an
//!   interface (a prefix the node originates itself, e.g. an IPAM block or a
//!   service prefix) never matches, as BIRD's `defined(ifname)` fails.
//! * `peerType`: `iBGP` when the session's peer AS equals the local AS, else
//!   `eBGP` (Calico's `is_same_as` argument).
//! * `communities.values`: the route carries every listed community (Calico
//!   accepts exactly one value); `aa:nn` is looked up in COMMUNITIES,
//!   `aa:nn:mm` in LARGE_COMMUNITIES.
//! * `asPathPrefix`: the AS path begins with these ASNs (BIRD `[= a b * =]`).
//!   An AS_SET counts as one position, matched when it contains the ASN;
//!   confederation segments are skipped (RFC 5065 §5.3).
//! * `priority`: the route's priority (kernel metric, lower is preferred)
//!   equals the value; see [`RouteView::priority`].
//! * `addCommunity` adds a community unless present (BIRD `.add` has set
//!   semantics); `prependASPath` makes the path start with `prefix` in the
//!   listed order; `setPriority` sets [`PolicyOutcome::priority`] and, except
//!   on export to an eBGP peer, LOCAL_PREF = 2147483647 − priority, which is
//!   how Calico carries a priority between nodes.
//!
//! # Export to eBGP peers and the local AS
//!
//! On export, `RouteView::attrs` are the attributes about to be sent. Toward
//! an eBGP peer those start with the local AS (RFC 4271 §5.1.2). BIRD runs
//! Calico's export filter before it adds the local AS, so to give the same
//! result a leading `local_as` is skipped by `asPathPrefix` and prefix
//! operations insert behind it: `prependASPath [64999]` sends
//! `local_as 64999 <original path>`, as Calico with BIRD does.

mod defaults;
mod matching;
mod ops;

pub use defaults::{
    ClusterView, ImportVerdict, RejectReason, default_import_from_external,
    default_import_from_node,
};
pub use ops::{PRIORITY_BASE, local_pref_for_priority, priority_from_local_pref};

use crate::wire::PathAttributes;
use ipnet::IpNet;
use petrel_crd::{BgpFilterRule, BgpFilterSpec, FilterAction};

/// Whether a route is being received from or sent to the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    Import,
    Export,
}

/// Type of the BGP session (Calico `peerType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeerType {
    /// The peer's AS differs from the local AS.
    Ebgp,
    /// The peer is in the local AS.
    Ibgp,
}

/// What a rule can see about a route.
#[derive(Debug, Clone, Copy)]
pub struct RouteView<'a> {
    pub prefix: IpNet,
    /// Import: the attributes as received. Export: the attributes about to be
    /// sent (toward eBGP peers already starting with the local AS).
    pub attrs: &'a PathAttributes,
    /// `false` when this node originates the route (pool block, service prefix).
    pub learned_from_peer: bool,
    /// Interface of the route's next hop, when it has one.
    pub interface: Option<&'a str>,
    /// Type of the session the route is imported from or exported to.
    pub peer_type: PeerType,
    /// The route's priority (kernel metric; lower is preferred), matched by a
    /// rule's `priority`. For routes learned over BGP, Calico derives it from
    /// LOCAL_PREF: use [`priority_from_local_pref`]. `None` never matches.
    pub priority: Option<u32>,
}

/// The result of [`apply`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyOutcome {
    pub accept: bool,
    /// The modified attributes, when the operations of the matching rule
    /// changed them; `None` means "use the route's attributes unchanged".
    pub attrs: Option<PathAttributes>,
    /// Priority set by a `setPriority` operation.
    pub priority: Option<u32>,
    /// Name of the filter and index (0-based, within the family's rule list)
    /// of the rule that decided, or `None` when the default decided.
    pub matched: Option<(String, usize)>,
    /// Human-readable explanation for the CLI, e.g.
    /// `rejected by filter tor-out rule exportV4[2]`.
    pub reason: String,
}

/// Name of the rule list `apply` uses, as written in the manifest.
pub fn rule_list_name(dir: Direction, prefix: &IpNet) -> &'static str {
    match (dir, prefix) {
        (Direction::Import, IpNet::V4(_)) => "importV4",
        (Direction::Export, IpNet::V4(_)) => "exportV4",
        (Direction::Import, IpNet::V6(_)) => "importV6",
        (Direction::Export, IpNet::V6(_)) => "exportV6",
    }
}

/// The rules of `spec` that apply to `prefix` in direction `dir`.
pub fn rules_for<'s>(
    spec: &'s BgpFilterSpec,
    dir: Direction,
    prefix: &IpNet,
) -> &'s [BgpFilterRule] {
    match (dir, prefix) {
        (Direction::Import, IpNet::V4(_)) => &spec.import_v4,
        (Direction::Export, IpNet::V4(_)) => &spec.export_v4,
        (Direction::Import, IpNet::V6(_)) => &spec.import_v6,
        (Direction::Export, IpNet::V6(_)) => &spec.export_v6,
    }
}

/// Apply a peer's filters (in order) to one route in one direction.
/// `default_accept` is what happens when no rule of any filter matches (the
/// caller passes petrel's default for that direction and kind of peer).
/// `local_as` is this node's AS on the session (see the module documentation
/// on export to eBGP peers).
pub fn apply(
    filters: &[(&str, &BgpFilterSpec)],
    dir: Direction,
    route: &RouteView,
    local_as: u32,
    default_accept: bool,
) -> PolicyOutcome {
    let list = rule_list_name(dir, &route.prefix);
    // The number of leading ASNs that the speaker added itself and that BIRD's
    // export filter would not have seen yet.
    let own_prepend = usize::from(
        dir == Direction::Export
            && route.peer_type == PeerType::Ebgp
            && matching::first_asn(route.attrs) == Some(local_as),
    );
    for (name, spec) in filters {
        for (index, rule) in rules_for(spec, dir, &route.prefix).iter().enumerate() {
            if !matching::rule_matches(rule, route, own_prepend) {
                continue;
            }
            let matched = Some(((*name).to_string(), index));
            return match rule.action {
                FilterAction::Reject => PolicyOutcome {
                    accept: false,
                    attrs: None,
                    priority: None,
                    matched,
                    reason: format!("rejected by filter {name} rule {list}[{index}]"),
                },
                FilterAction::Accept => {
                    let applied = ops::apply_operations(&rule.operations, route, dir, own_prepend);
                    PolicyOutcome {
                        accept: true,
                        attrs: applied.attrs,
                        priority: applied.priority,
                        matched,
                        reason: format!("accepted by filter {name} rule {list}[{index}]"),
                    }
                }
            };
        }
    }
    let verdict = if default_accept {
        "accepted"
    } else {
        "rejected"
    };
    let reason = if filters.is_empty() {
        format!("{verdict} by default (no filters)")
    } else {
        let names: Vec<&str> = filters.iter().map(|(n, _)| *n).collect();
        format!(
            "{verdict} by default (no {list} rule matched in filters {})",
            names.join(", ")
        )
    };
    PolicyOutcome {
        accept: default_accept,
        attrs: None,
        priority: None,
        matched: None,
        reason,
    }
}

#[cfg(test)]
mod tests;
