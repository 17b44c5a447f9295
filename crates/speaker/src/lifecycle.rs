//! Start-up of the speaker: when routing has converged (readiness, the
//! sweep of adopted routes) and when this node's End-of-RIB may go out.
//!
//! # Convergence
//!
//! A peer has converged once its session is Established and:
//! - it sent End-of-RIB (RFC 4724 §2) for every negotiated family; or
//! - it did not announce graceful restart, and [`QUIET_PERIOD`] passed since
//!   the session came up or its last UPDATE, whichever is later: outside
//!   graceful restart End-of-RIB is only recommended, and some speakers
//!   (GoBGP without graceful restart) never send it.
//!
//! Routing has converged once every configured peer has (at once with no
//! peer), or when `stale_timeout` has passed since start-up, with a warning
//! naming the peers that have not.
//!
//! # Selection deferral
//!
//! A restarting agent (one that found its predecessor's routes in the
//! kernel) defers its route selection (RFC 4724 §4.1): nothing goes to the
//! kernel or to the peers, End-of-RIB included, until every peer has
//! converged as above or [`SpeakerOptions::selection_deferral`] has passed
//! (bounded by `stale_timeout`). Meanwhile the kernel routes it kept forward,
//! and the peers (helpers) keep its routes. So it never installs nor
//! advertises a partial table. A peer whose OPEN carries the Restart State
//! bit restarts too and is not waited for (RFC 4724 §4.2: it waits for this
//! node's End-of-RIB). The End-of-RIB holds below apply on top.
//!
//! # End-of-RIB holds
//!
//! A helper peer drops this node's routes that are not sent again before
//! its End-of-RIB (RFC 4724 §4.2). What the node originates comes from other
//! tasks (IPAM's pod blocks, the service addresses) which may be slower than
//! the first session, so End-of-RIB waits for each hold to be released
//! ([`super::SpeakerHandle::release_end_of_rib`]), or for its maximum.

use super::{FibMsg, SessionCmd, Speaker};
use petrel_bgp::wire::Message;
use petrel_datastore::resolved::PeerOrigin;
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// How long a peer without graceful restart must stay quiet (no UPDATE)
/// after its session came up to count as converged.
pub const QUIET_PERIOD: Duration = Duration::from_secs(3);

/// The End-of-RIB hold released once IPAM's first view of this node's
/// blocks is in the configuration.
pub const END_OF_RIB_HOLD_IPAM: &str = "ipam";
/// The End-of-RIB hold released once the first services snapshot has been
/// originated.
pub const END_OF_RIB_HOLD_SERVICES: &str = "services";

/// The longest a restarting agent defers its route selection (RFC 4724 §4.1
/// selection deferral timer; FRR's `select-defer-time` is 360 s): within the
/// stale-path time of the usual helpers.
pub const SELECTION_DEFERRAL: Duration = Duration::from_secs(60);

/// Start-up options of [`Speaker::spawn`].
#[derive(Debug, Clone)]
pub struct SpeakerOptions {
    /// This agent restarts with its forwarding state (the dataplane adopted
    /// routes of a previous agent): OPENs carry the Restart State bit until
    /// routing has converged or for this long at most.
    pub restarting: Option<Duration>,
    /// The longest wait for convergence (`--stale-timeout`).
    pub stale_timeout: Duration,
    /// End-of-RIB holds: name and the longest it holds.
    pub end_of_rib_holds: Vec<(String, Duration)>,
    /// The longest a restarting agent defers its route selection (see the
    /// module docs); at most `stale_timeout`.
    pub selection_deferral: Duration,
}

impl Default for SpeakerOptions {
    fn default() -> Self {
        SpeakerOptions {
            restarting: None,
            stale_timeout: Duration::from_secs(120),
            end_of_rib_holds: Vec::new(),
            selection_deferral: SELECTION_DEFERRAL,
        }
    }
}

impl super::PeerEntry {
    /// Whether this peer has converged at `now` (see the module docs).
    pub fn converged(&self, now: Instant) -> bool {
        let Some(n) = self.negotiated.as_ref() else {
            return false;
        };
        if n.families.iter().all(|f| self.eor_received.contains(f)) {
            return true;
        }
        if n.peer_graceful_restart.is_some() {
            return false;
        }
        let since = match (self.established_at, self.last_update) {
            (Some(a), Some(b)) => a.max(b),
            (a, b) => a.or(b).unwrap_or(now),
        };
        now.saturating_duration_since(since) >= QUIET_PERIOD
    }

    /// Whether the peer's last OPEN had the Restart State bit set: it
    /// restarts too and waits for our End-of-RIB before sending its own.
    pub fn peer_restarting(&self) -> bool {
        self.negotiated
            .as_ref()
            .and_then(|n| n.peer_graceful_restart.as_ref())
            .is_some_and(|c| c.restart_state)
    }
}

impl Speaker {
    /// Peers that have not converged at `now`.
    pub(super) fn not_converged(&self, now: Instant) -> Vec<&PeerOrigin> {
        self.peers
            .iter()
            .filter(|(_, p)| !p.converged(now))
            .map(|(o, _)| o)
            .collect()
    }

    /// Signal convergence once every configured peer has converged, or at
    /// the deadline. As with the selection deferral of RFC 4724 §4.1, routes
    /// of a peer that comes back later than another are not swept in between.
    pub(super) fn check_converged(&mut self, now: Instant) {
        self.check_deferral(now);
        if self.converged || self.node.is_none() {
            return;
        }
        let waiting = self.not_converged(now);
        let why = if waiting.is_empty() {
            info!(
                peers = self.peers.len(),
                "every configured peer has converged: routing converged"
            );
            "every peer converged"
        } else if now >= self.converge_deadline {
            let names: Vec<String> = waiting.iter().map(|o| o.to_string()).collect();
            warn!(peers = ?names,
                "stale timeout: these peers have not converged (no End-of-RIB, not quiet, or down); ready without them");
            "stale timeout"
        } else {
            return;
        };
        self.converged = true;
        // What was selected meanwhile reaches the kernel before the sweep.
        self.end_deferral(why);
        self.end_own_restart(why);
        if let Some(fib) = &self.fib {
            let _ = fib.send(FibMsg::Converged);
        }
    }

    /// End the selection deferral once every peer has converged (or
    /// restarts itself), or at its deadline.
    pub(super) fn check_deferral(&mut self, now: Instant) {
        if !self.deferring || self.node.is_none() {
            return;
        }
        let waiting: Vec<String> = self
            .peers
            .iter()
            .filter(|(_, p)| !p.converged(now) && !p.peer_restarting())
            .map(|(o, _)| o.to_string())
            .collect();
        if waiting.is_empty() {
            self.end_deferral("every peer sent End-of-RIB");
        } else if now >= self.defer_deadline {
            warn!(peers = ?waiting, "selection deferral time is up: selecting without these peers' End-of-RIB");
            self.end_deferral("selection deferral time is up");
        }
    }

    /// Run the deferred selection: the kernel and every peer get the whole
    /// table, then End-of-RIB (holds permitting).
    pub(super) fn end_deferral(&mut self, why: &str) {
        if !std::mem::replace(&mut self.deferring, false) {
            return;
        }
        info!(
            reason = why,
            routes = self.rib.len(),
            "restart: deferred route selection done (RFC 4724 §4.1); installing and advertising"
        );
        self.flush();
        let origins: Vec<PeerOrigin> = self.peers.keys().cloned().collect();
        for o in &origins {
            self.export_full(o);
            self.send_end_of_rib(o);
        }
    }

    /// Time-driven start-up work: convergence by quiet period or deadline,
    /// End-of-RIB holds that ran out.
    pub(super) fn lifecycle_tick(&mut self, now: Instant) {
        let expired: Vec<String> = self
            .eor_holds
            .iter()
            .filter(|(_, until)| now >= **until)
            .map(|(h, _)| h.clone())
            .collect();
        for hold in expired {
            warn!(
                hold,
                "End-of-RIB hold not released in time: sending End-of-RIB anyway"
            );
            self.release_end_of_rib(&hold);
        }
        self.check_converged(now);
    }

    /// Release an End-of-RIB hold; once none is left, established sessions
    /// that have not had it get End-of-RIB.
    pub(super) fn release_end_of_rib(&mut self, hold: &str) {
        if self.eor_holds.remove(hold).is_some() {
            info!(
                hold,
                left = self.eor_holds.len(),
                "End-of-RIB hold released"
            );
        }
        if !self.eor_holds.is_empty() {
            return;
        }
        let origins: Vec<PeerOrigin> = self.peers.keys().cloned().collect();
        for o in &origins {
            self.send_end_of_rib(o);
        }
    }

    /// Send End-of-RIB for every negotiated family to an established peer,
    /// unless a hold is left or it was sent in this session.
    pub(super) fn send_end_of_rib(&mut self, origin: &PeerOrigin) {
        if self.deferring {
            return;
        }
        if !self.eor_holds.is_empty() {
            let holds: Vec<&String> = self.eor_holds.keys().collect();
            info!(peer = %origin, ?holds, "End-of-RIB held until this node's routes are originated");
            return;
        }
        let Some(e) = self.peers.get_mut(origin) else {
            return;
        };
        if e.eor_sent {
            return;
        }
        let Some(neg) = &e.negotiated else {
            return;
        };
        for f in &neg.families {
            let _ = e.cmd.send(SessionCmd::Send(Message::EndOfRib(*f)));
        }
        e.eor_sent = true;
    }
}
