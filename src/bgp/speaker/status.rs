//! Status views of the speaker for the management API.

use super::Speaker;
use crate::api::pb;
use crate::bgp::rib::Path;
use crate::bgp::wire::{Family, Origin};
use std::sync::atomic::Ordering;

/// "65000:100" for a standard community (RFC 1997).
pub fn fmt_community(c: u32) -> String {
    format!("{}:{}", c >> 16, c & 0xffff)
}

fn route_view(prefix: &ipnet::IpNet, p: &Path, best: bool, reason: Option<String>) -> pb::Route {
    let a = &p.attrs;
    pb::Route {
        prefix: prefix.to_string(),
        next_hop: p.next_hop.map(|h| h.to_string()).unwrap_or_default(),
        peer: p.source.name.to_string(),
        as_path: a
            .as_path
            .iter()
            .flat_map(|s| s.asns.iter().copied())
            .collect(),
        origin: match a.origin {
            Some(Origin::Igp) => "igp",
            Some(Origin::Egp) => "egp",
            Some(Origin::Incomplete) | None => "incomplete",
        }
        .to_string(),
        local_pref: a.local_pref.unwrap_or(100),
        has_med: a.med.is_some(),
        med: a.med.unwrap_or(0),
        communities: a.communities.iter().map(|c| fmt_community(*c)).collect(),
        large_communities: a
            .large_communities
            .iter()
            .map(|[g, l1, l2]| format!("{g}:{l1}:{l2}"))
            .collect(),
        best,
        reason: reason.unwrap_or_default(),
    }
}

impl Speaker {
    pub(super) fn peer_views(&self) -> Vec<pb::Peer> {
        self.peers
            .values()
            .map(|e| {
                let neg = e.negotiated.as_ref();
                pb::Peer {
                    name: e.config.origin.to_string(),
                    address: e.config.address.to_string(),
                    port: u32::from(e.config.port),
                    local_as: e.config.local_as,
                    peer_as: e.config.peer_as,
                    state: e.state.to_string(),
                    peer_router_id: neg
                        .map(|n| n.remote_open.router_id.to_string())
                        .unwrap_or_default(),
                    hold_time: neg.map(|n| u32::from(n.hold_time)).unwrap_or(0),
                    uptime_seconds: e.established_at.map(|t| t.elapsed().as_secs()).unwrap_or(0),
                    prefixes_received: e.adj_in_pre.len() as u64,
                    prefixes_accepted: self.rib.adj_in_total(e.id) as u64,
                    prefixes_advertised: e.adj_out.len() as u64,
                    last_error: e.last_error.clone(),
                    families: neg
                        .map(|n| n.families.clone())
                        .unwrap_or_else(|| e.config.families.clone())
                        .iter()
                        .map(|f| f.name().to_string())
                        .collect(),
                    passive: e.config.passive,
                    messages_received: e.stats.messages_received.load(Ordering::Relaxed),
                    messages_sent: e.stats.messages_sent.load(Ordering::Relaxed),
                    connection_attempts: e.stats.connection_attempts.load(Ordering::Relaxed),
                    established_transitions: e.established_transitions,
                    last_notification: e.last_notification.clone(),
                }
            })
            .collect()
    }

    pub(super) fn route_views(&self, family: Option<Family>) -> Vec<pb::Route> {
        let mut out = Vec::new();
        for (prefix, dest) in self.rib.iter() {
            if family.is_some_and(|f| f != Family::of(prefix)) {
                continue;
            }
            for (i, p) in dest.paths.iter().enumerate() {
                let reason = dest.reason(i).map(|r| r.to_string());
                let best = i < dest.multipath.max(1);
                let reason = if best && i > 0 {
                    Some("multipath".to_string())
                } else {
                    reason
                };
                out.push(route_view(
                    prefix,
                    p,
                    best,
                    if best && i == 0 { None } else { reason },
                ));
            }
        }
        out
    }
}
