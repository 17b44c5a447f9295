//! Graceful shutdown (RFC 8326): while this node drains, the routes it
//! originates go out with the GRACEFUL_SHUTDOWN community, and with
//! LOCAL_PREF 0 on iBGP sessions, so that routers and the other nodes move
//! their traffic to another path before the node goes; received routes that
//! carry the community get LOCAL_PREF 0 on import (RFC 8326 §4).
//!
//! A node drains while its Node is cordoned or annotated
//! `petrel.dev/graceful-shutdown: "true"` (the configuration's
//! [`NodeConfig::graceful_shutdown`]), or once the agent was told to stop with
//! `--drain-seconds` ([`super::SpeakerHandle::drain`]). When the drain ends,
//! the routes go out again as before.

use super::Speaker;
use petrel_bgp::wire::PathAttributes;
use petrel_datastore::resolved::{NodeConfig, PeerOrigin};
use tracing::info;

/// RFC 8326 well-known community GRACEFUL_SHUTDOWN (65535:0).
pub const GRACEFUL_SHUTDOWN: u32 = 0xFFFF_0000;

/// The reason given while the agent itself drains before stopping.
pub const DRAIN_ON_STOP: &str = "agent stopping (--drain-seconds)";

/// Why a node drains: its configuration's reason, else the agent's own.
pub fn drain_reason(node: Option<&NodeConfig>, stopping: bool) -> Option<String> {
    node.and_then(|n| n.graceful_shutdown.clone())
        .or_else(|| stopping.then(|| DRAIN_ON_STOP.to_string()))
}

/// Marks a route this node originates as draining (RFC 8326 §3): the
/// GRACEFUL_SHUTDOWN community, and LOCAL_PREF 0 toward an iBGP peer.
pub fn mark_draining(a: &mut PathAttributes, to_ebgp: bool) {
    if !a.communities.contains(&GRACEFUL_SHUTDOWN) {
        a.communities.push(GRACEFUL_SHUTDOWN);
    }
    if !to_ebgp {
        a.local_pref = Some(0);
    }
}

/// RFC 8326 §4: a received route with GRACEFUL_SHUTDOWN is least preferred.
/// `None` when the route does not carry the community.
pub fn import_draining(a: &PathAttributes) -> Option<PathAttributes> {
    (a.communities.contains(&GRACEFUL_SHUTDOWN) && a.local_pref != Some(0)).then(|| {
        let mut out = a.clone();
        out.local_pref = Some(0);
        out
    })
}

impl Speaker {
    /// Whether the node drains now, and why.
    pub(super) fn drain_now(&self) -> Option<String> {
        drain_reason(self.node.as_ref(), self.stopping)
    }

    /// Re-advertise everything when the drain starts or ends (after a new
    /// configuration or [`super::SpeakerMsg::Drain`]), and publish it.
    pub(super) fn update_drain(&mut self) {
        let now = self.drain_now();
        if *self.drain.borrow() == now {
            return;
        }
        let was = self.drain.borrow().is_some();
        match &now {
            Some(reason) if !was => {
                info!(%reason, "graceful shutdown: advertising this node's routes with GRACEFUL_SHUTDOWN (RFC 8326)")
            }
            Some(reason) => info!(%reason, "graceful shutdown: still draining"),
            None => info!("graceful shutdown over: advertising this node's routes as before"),
        }
        self.drain.send_replace(now.clone());
        if was != now.is_some() {
            let origins: Vec<PeerOrigin> = self.peers.keys().cloned().collect();
            for o in &origins {
                self.export_full(o);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draining_marks_ibgp_with_local_pref_zero_and_ebgp_with_the_community_only() {
        let mut a = PathAttributes {
            communities: vec![0xfc00_0064],
            local_pref: Some(100),
            ..Default::default()
        };
        let mut e = PathAttributes::default();
        mark_draining(&mut a, false);
        mark_draining(&mut e, true);
        assert_eq!(a.communities, vec![0xfc00_0064, GRACEFUL_SHUTDOWN]);
        assert_eq!(a.local_pref, Some(0));
        assert_eq!(e.communities, vec![GRACEFUL_SHUTDOWN]);
        assert_eq!(e.local_pref, None);
        // Twice is once.
        mark_draining(&mut a, false);
        assert_eq!(a.communities, vec![0xfc00_0064, GRACEFUL_SHUTDOWN]);
    }

    #[test]
    fn received_graceful_shutdown_gets_local_pref_zero() {
        let plain = PathAttributes {
            local_pref: Some(200),
            ..Default::default()
        };
        assert_eq!(import_draining(&plain), None);
        let gshut = PathAttributes {
            communities: vec![GRACEFUL_SHUTDOWN],
            local_pref: Some(200),
            ..Default::default()
        };
        assert_eq!(import_draining(&gshut).unwrap().local_pref, Some(0));
    }

    #[test]
    fn the_configuration_reason_comes_first() {
        assert_eq!(drain_reason(None, false), None);
        assert_eq!(drain_reason(None, true).as_deref(), Some(DRAIN_ON_STOP));
    }
}
