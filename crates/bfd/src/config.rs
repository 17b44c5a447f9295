//! Session parameters (RFC 5880 §6.8.1 bfd.DesiredMinTxInterval,
//! bfd.RequiredMinRxInterval, bfd.DetectMult; §6.1 Active/Passive role) and
//! their validation.
//!
//! Intervals are whole microseconds on the wire (32 bits, so at most about
//! 71 minutes). The crate accepts any nonzero interval that fits; the
//! configuration layer narrows that to what operators may set. A Required
//! Min RX of zero (§6.8.18 "send me nothing") is refused: it would only be
//! useful to hold a session down, which AdminDown already does.

use crate::transport::Hop;
use std::time::Duration;
use thiserror::Error;

/// The configured parameters of one session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionConfig {
    /// bfd.DesiredMinTxInterval while Up (1 s floor while not Up, §6.8.3).
    pub desired_min_tx: Duration,
    /// bfd.RequiredMinRxInterval.
    pub required_min_rx: Duration,
    /// bfd.DetectMult (1–255).
    pub detect_mult: u8,
    /// Passive role (§6.1): send nothing until the peer's first packet.
    pub passive: bool,
    /// Single hop (RFC 5881) or multihop (RFC 5883).
    pub hop: Hop,
}

impl Default for SessionConfig {
    /// 300 ms × 3, active, single hop (MetalLB's BFDProfile defaults).
    fn default() -> Self {
        SessionConfig {
            desired_min_tx: Duration::from_millis(300),
            required_min_rx: Duration::from_millis(300),
            detect_mult: 3,
            passive: false,
            hop: Hop::SingleHop,
        }
    }
}

/// Which interval a [`ConfigError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Interval {
    /// Desired Min TX.
    DesiredMinTx,
    /// Required Min RX.
    RequiredMinRx,
}

impl std::fmt::Display for Interval {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Interval::DesiredMinTx => "desired minimum TX interval",
            Interval::RequiredMinRx => "required minimum RX interval",
        })
    }
}

/// An invalid [`SessionConfig`] or reconfiguration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Error)]
pub enum ConfigError {
    /// An interval below one microsecond.
    #[error("{0} must be at least 1 µs")]
    ZeroInterval(Interval),
    /// An interval that does not fit the 32-bit microsecond field.
    #[error("{which} of {value:?} exceeds the protocol maximum of 4294.967295 s")]
    IntervalTooLong {
        /// The interval.
        which: Interval,
        /// Its configured value.
        value: Duration,
    },
    /// Detect Mult of zero (§6.8.1: MUST be nonzero).
    #[error("detect multiplier must be at least 1")]
    ZeroDetectMult,
    /// Multihop minimum TTL of zero.
    #[error("multihop minimum TTL must be at least 1")]
    ZeroMinTtl,
    /// A local discriminator of zero (RFC 5880 §6.8.1: MUST be nonzero).
    #[error("local discriminator must be nonzero")]
    ZeroDiscriminator,
    /// A reconfiguration between single hop and multihop: these are different
    /// sessions (ports, demultiplexing), so the driver must replace it.
    #[error("cannot change a session between single hop and multihop; create a new session")]
    HopChange,
}

/// Configured intervals in wire units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WireTimers {
    pub(crate) desired_min_tx_us: u32,
    pub(crate) required_min_rx_us: u32,
}

fn to_micros(which: Interval, value: Duration) -> Result<u32, ConfigError> {
    match u32::try_from(value.as_micros()) {
        Ok(0) => Err(ConfigError::ZeroInterval(which)),
        Ok(us) => Ok(us),
        Err(_) => Err(ConfigError::IntervalTooLong { which, value }),
    }
}

impl SessionConfig {
    /// Check the parameters against the protocol's limits.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.wire_timers().map(|_| ())
    }

    pub(crate) fn wire_timers(&self) -> Result<WireTimers, ConfigError> {
        let desired_min_tx_us = to_micros(Interval::DesiredMinTx, self.desired_min_tx)?;
        let required_min_rx_us = to_micros(Interval::RequiredMinRx, self.required_min_rx)?;
        if self.detect_mult == 0 {
            return Err(ConfigError::ZeroDetectMult);
        }
        if let Hop::MultiHop { min_ttl: 0 } = self.hop {
            return Err(ConfigError::ZeroMinTtl);
        }
        Ok(WireTimers {
            desired_min_tx_us,
            required_min_rx_us,
        })
    }
}
