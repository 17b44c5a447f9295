//! Per-session configuration of the FSM and its validation (RFC 4271 §4.2
//! hold time rules, RFC 6286 non-zero identifier, RFC 7607 AS 0, RFC 9687
//! send hold time > hold time).

use crate::wire::{Family, GracefulRestartCap};
use std::net::Ipv4Addr;
use std::time::Duration;

/// Configuration of one BGP session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    pub local_as: u32,
    pub peer_as: u32,
    pub router_id: Ipv4Addr,
    /// Proposed hold time in seconds; 0 disables keepalives and the hold
    /// timer, 1 and 2 are invalid ([`SessionConfig::validate`]).
    pub hold_time: u16,
    /// Keepalive interval in seconds; `None` or `Some(0)` = negotiated hold / 3.
    /// Capped at negotiated hold / 3.
    pub keepalive_time: Option<u16>,
    /// Delay between outbound connection attempts (jittered 0.75..1.0).
    pub connect_retry: Duration,
    /// Backoff after the first failure; doubles per consecutive failure.
    pub idle_hold: Duration,
    /// Upper bound of the backoff.
    pub max_idle_hold: Duration,
    /// Never connect; wait for the peer to connect.
    pub passive: bool,
    pub families: Vec<Family>,
    pub route_refresh: bool,
    pub enhanced_route_refresh: bool,
    pub extended_message: bool,
    /// Graceful-restart capability to advertise (no restart behaviour).
    pub graceful_restart: Option<GracefulRestartCap>,
    /// RFC 9687 send hold time; `None` = max(8 min, 2 × negotiated hold time).
    pub send_hold_time: Option<Duration>,
    /// Seed of the jitter PRNG.
    pub seed: u64,
}

/// An invalid [`SessionConfig`] field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("hold_time {0} s is invalid: use 0 (no keepalives) or at least 3 s (RFC 4271 §4.2)")]
    HoldTime(u16),
    #[error("{field} must not be 0 (RFC 7607)")]
    ZeroAs { field: &'static str },
    #[error("router_id must not be 0.0.0.0 (RFC 6286)")]
    ZeroRouterId,
    #[error("no address family configured")]
    NoFamilies,
    #[error("connect_retry must be greater than zero")]
    ZeroConnectRetry,
    #[error("idle_hold {idle_hold:?} exceeds max_idle_hold {max_idle_hold:?}")]
    IdleHoldAboveMax {
        idle_hold: Duration,
        max_idle_hold: Duration,
    },
    #[error("send_hold_time {send_hold:?} must be greater than hold_time {hold} s (RFC 9687 §3.4)")]
    SendHoldTooShort { send_hold: Duration, hold: u16 },
}

impl SessionConfig {
    /// Checks the configuration. [`crate::fsm::Fsm::new`] does not call
    /// this; with an invalid configuration it clamps a hold time of 1 or 2 to
    /// 3 s and otherwise behaves as configured (no families: every OPEN is
    /// rejected with Unsupported Capability).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if matches!(self.hold_time, 1 | 2) {
            return Err(ConfigError::HoldTime(self.hold_time));
        }
        if self.local_as == 0 {
            return Err(ConfigError::ZeroAs { field: "local_as" });
        }
        if self.peer_as == 0 {
            return Err(ConfigError::ZeroAs { field: "peer_as" });
        }
        if self.router_id.is_unspecified() {
            return Err(ConfigError::ZeroRouterId);
        }
        if self.families.is_empty() {
            return Err(ConfigError::NoFamilies);
        }
        if self.connect_retry.is_zero() {
            return Err(ConfigError::ZeroConnectRetry);
        }
        if self.idle_hold > self.max_idle_hold {
            return Err(ConfigError::IdleHoldAboveMax {
                idle_hold: self.idle_hold,
                max_idle_hold: self.max_idle_hold,
            });
        }
        if let Some(send_hold) = self.send_hold_time
            && self.hold_time != 0
            && send_hold <= Duration::from_secs(u64::from(self.hold_time))
        {
            return Err(ConfigError::SendHoldTooShort {
                send_hold,
                hold: self.hold_time,
            });
        }
        Ok(())
    }

    /// The hold time we propose: the configured one, with 1 and 2 raised to 3.
    pub(crate) fn effective_hold_time(&self) -> u16 {
        match self.hold_time {
            1 | 2 => 3,
            h => h,
        }
    }

    /// Whether the session is internal BGP.
    pub(crate) fn is_ibgp(&self) -> bool {
        self.local_as == self.peer_as
    }

    /// Whether moving from `self` to `new` needs the session to be reset
    /// (anything that goes into our OPEN, plus the passive flag).
    pub(crate) fn needs_reset(&self, new: &SessionConfig) -> bool {
        self.local_as != new.local_as
            || self.peer_as != new.peer_as
            || self.router_id != new.router_id
            || self.effective_hold_time() != new.effective_hold_time()
            || self.families != new.families
            || self.route_refresh != new.route_refresh
            || self.enhanced_route_refresh != new.enhanced_route_refresh
            || self.extended_message != new.extended_message
            || !same_graceful_restart(
                self.graceful_restart.as_ref(),
                new.graceful_restart.as_ref(),
            )
            || self.passive != new.passive
    }
}

/// Whether two Graceful Restart capabilities differ only in the Restart
/// State bit, which matters in the next OPEN only: clearing it once a
/// restart is over must not reset the session.
fn same_graceful_restart(
    a: Option<&crate::wire::GracefulRestartCap>,
    b: Option<&crate::wire::GracefulRestartCap>,
) -> bool {
    let norm = |c: Option<&crate::wire::GracefulRestartCap>| {
        c.map(|c| crate::wire::GracefulRestartCap {
            restart_state: false,
            ..c.clone()
        })
    };
    norm(a) == norm(b)
}
