//! BFD as a client of BGP sees it (RFC 5882 §4.3, RFC 9384).
//!
//! - The speaker keeps the driver's sessions equal to its peers with a BFD
//!   profile ([`Speaker::sync_bfd`], after every configuration change).
//! - A BFD session that has never been Up holds nothing back: the BGP
//!   session runs as without BFD (a peer without BFD still peers).
//! - A transition Up → Down that is a path failure (not AdminDown, RFC 5882
//!   §3.2) on an Established session ends it at once with NOTIFICATION
//!   Cease / BFD Down (RFC 9384), and the session starts again at once (it
//!   comes back when the path does). The forwarding path failed, so neither
//!   side may keep the other's routes through graceful restart: with the
//!   N-bit negotiated the NOTIFICATION goes out as Cease / Hard Reset
//!   carrying Cease / BFD Down (RFC 8538 §3, §5; without it a peer such as
//!   FRR would keep this node's routes stale and go on forwarding into the
//!   broken path), and the peer's routes are withdrawn at once from the RIB
//!   and the kernel, as after any NOTIFICATION petrel sends. One exception,
//!   RFC 5882 §4.3: while the peer is restarting (its stale routes are still
//!   kept) a BFD Down with the peer's C bit set keeps them until the restart
//!   ends, instead of counting as a second failure.

use super::{BfdEvent, BfdHandle, BfdPeer, BfdState, Diagnostic, bfd_peer};
use crate::{SessionCmd, Speaker};
use petrel_bgp::fsm::State;
use petrel_bgp::wire::notification as n;
use tracing::warn;

/// The BFD side of a peer entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PeerBfd {
    /// The last state the driver reported (`None` before the first report).
    pub state: Option<BfdState>,
    /// The diagnostic of that report.
    pub diagnostic: Option<Diagnostic>,
    /// Set when a BFD Down ended the session, until it is down: the peer's C
    /// bit at that time.
    pub stopped: Option<bool>,
}

impl Speaker {
    /// Make the BFD driver run one session per peer with a BFD profile. The
    /// driver thread starts with the first such peer.
    pub(crate) fn sync_bfd(&mut self) {
        let Some(node) = &self.node else { return };
        let desired: Vec<BfdPeer> = self
            .peers
            .values()
            .filter_map(|e| bfd_peer(node, &e.config))
            .collect();
        if self.bfd.is_none() {
            if desired.is_empty() || !self.bfd_autostart {
                return;
            }
            match BfdHandle::start(self.bfd_events.clone()) {
                Ok(h) => self.bfd = Some(h),
                Err(e) => {
                    warn!(error = %e, "cannot start the BFD thread; BFD is off");
                    self.bfd_autostart = false;
                    return;
                }
            }
        }
        if let Some(h) = &self.bfd {
            h.sync(desired);
        }
    }

    /// A BFD state change from the driver.
    pub(crate) fn bfd_event(&mut self, ev: BfdEvent) {
        let peer = ev.peer.to_canonical();
        let Some((origin, e)) = self
            .peers
            .iter_mut()
            .find(|(_, e)| e.config.bfd.is_some() && e.config.address.to_canonical() == peer)
        else {
            return;
        };
        e.bfd.state = Some(ev.change.to);
        e.bfd.diagnostic = Some(ev.change.diagnostic);
        if !ev.change.is_failure() || e.state != State::Established || e.bfd.stopped.is_some() {
            return;
        }
        let diagnostic = ev.change.diagnostic.as_str();
        warn!(peer = %origin, diagnostic, "BFD down: closing the BGP session (Cease/BFD Down)");
        let (local, remote) = crate::graceful::caps(e.negotiated.as_deref());
        let notification = crate::graceful::hard_reset_if_needed(
            petrel_bgp::fsm::cease(n::CEASE_BFD_DOWN, None),
            local,
            remote,
        );
        e.stop_reason = Some((format!("BFD down: {diagnostic}"), notification.clone()));
        e.bfd.stopped = Some(ev.change.remote_control_plane_independent);
        let _ = e.cmd.send(SessionCmd::Reset(notification));
    }
}
