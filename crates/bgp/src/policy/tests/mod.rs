//! Tests of the policy module, written from Calico's documented BGPFilter
//! semantics (api/pkg/apis/projectcalico/v3/bgpfilter.go field docs) and the
//! BIRD code confd renders (confd/pkg/resource/template/template_funcs.go,
//! confd/docs/bgpfilter-bird-config-examples.md).

mod apply;
mod defaults;
mod matching;
mod ops;

use super::{Direction, PeerType, PolicyOutcome, RouteView, apply};
use crate::wire::{AsSegment, AsSegmentKind, PathAttributes};
use ipnet::IpNet;
use petrel_crd::BgpFilterSpec;

/// Parse a BGPFilter spec from its manifest form.
pub(super) fn spec(yaml: &str) -> BgpFilterSpec {
    serde_saphyr::from_str(yaml).unwrap_or_else(|e| panic!("bad test spec {yaml:?}: {e}"))
}

pub(super) fn net(s: &str) -> IpNet {
    s.parse()
        .unwrap_or_else(|e| panic!("bad test prefix {s:?}: {e}"))
}

pub(super) fn seq(asns: &[u32]) -> AsSegment {
    AsSegment {
        kind: AsSegmentKind::Sequence,
        asns: asns.to_vec(),
    }
}

pub(super) fn set(asns: &[u32]) -> AsSegment {
    AsSegment {
        kind: AsSegmentKind::Set,
        asns: asns.to_vec(),
    }
}

/// A standard community `hi:lo` as carried in COMMUNITIES.
pub(super) fn comm(hi: u16, lo: u16) -> u32 {
    (u32::from(hi) << 16) | u32::from(lo)
}

/// A route originated by this node, seen on an eBGP session, no interface.
pub(super) fn view<'a>(prefix: &str, attrs: &'a PathAttributes) -> RouteView<'a> {
    RouteView {
        prefix: net(prefix),
        attrs,
        learned_from_peer: false,
        interface: None,
        peer_type: PeerType::Ebgp,
        priority: None,
    }
}

/// Whether a single rule with the match fields `fields` (YAML flow mapping
/// entries) matches `route`: the rule accepts, the default rejects.
pub(super) fn matches(fields: &str, route: &RouteView) -> bool {
    let sep = if fields.is_empty() { "" } else { ", " };
    let yaml = format!(
        "importV4: [{{{fields}{sep}action: Accept}}]\nimportV6: [{{{fields}{sep}action: Accept}}]\n"
    );
    let s = spec(&yaml);
    run(&[("t", &s)], Direction::Import, route, false).accept
}

pub(super) fn run(
    filters: &[(&str, &BgpFilterSpec)],
    dir: Direction,
    route: &RouteView,
    default_accept: bool,
) -> PolicyOutcome {
    apply(filters, dir, route, LOCAL_AS, default_accept)
}

pub(super) const LOCAL_AS: u32 = 64512;
