//! IP/UDP transport rules the driver needs: RFC 5881 (single hop) §4
//! (ports), §5 (TTL/Hop Limit 255 sent and required: GTSM, RFC 5082) and
//! RFC 5883 (multihop) §5 (port 4784; a configurable minimum received TTL
//! instead of 255, since routers on the path decrement it).
//!
//! The driver binds the listening sockets to [`CONTROL_PORT`] and
//! [`MULTIHOP_CONTROL_PORT`], sends every packet with TTL / Hop Limit
//! [`TX_TTL`] from one source port per session taken from
//! [`SOURCE_PORTS`] (see [`source_port_candidate`]), and hands the received
//! TTL to the session, which applies [`Hop::accepts_ttl`].

use std::fmt;
use std::ops::RangeInclusive;

/// UDP destination port of single-hop Control packets (RFC 5881 §4).
pub const CONTROL_PORT: u16 = 3784;
/// UDP destination port of Echo packets (RFC 5881 §4); Echo is not implemented.
pub const ECHO_PORT: u16 = 3785;
/// UDP destination port of multihop Control packets (RFC 5883 §5).
pub const MULTIHOP_CONTROL_PORT: u16 = 4784;
/// The range the UDP source port MUST be taken from (RFC 5881 §4).
pub const SOURCE_PORTS: RangeInclusive<u16> = 49152..=65535;
/// TTL / Hop Limit of every transmitted packet (RFC 5881 §5; RFC 5883 keeps it).
pub const TX_TTL: u8 = 255;
/// Default minimum received TTL for multihop sessions: one router on the
/// path (FRR's `minimum-ttl` and MetalLB's `minimumTtl` default).
pub const DEFAULT_MULTIHOP_MIN_TTL: u8 = 254;

/// Whether `port` may be used as the source port of Control packets.
pub fn is_valid_source_port(port: u16) -> bool {
    SOURCE_PORTS.contains(&port)
}

/// A source port for the session with local discriminator `discriminator`,
/// for the `attempt`-th try (0, 1, ...) at binding one. Successive attempts
/// walk the whole range, so a driver that retries on `EADDRINUSE` finds a
/// free port if there is one; distinct discriminators start at distinct
/// ports (modulo the 16384 ports), which keeps ports unique per session as
/// RFC 5881 §4 recommends.
pub fn source_port_candidate(discriminator: u32, attempt: u16) -> u16 {
    let size = u32::from(SOURCE_PORTS.end() - SOURCE_PORTS.start()) + 1;
    let offset = (discriminator % size + u32::from(attempt)) % size;
    // offset < size = 16384, so the sum stays within u16.
    SOURCE_PORTS.start() + offset as u16
}

/// How a session reaches its peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Hop {
    /// RFC 5881: directly connected, bound to an interface; received TTL
    /// must be exactly 255.
    SingleHop,
    /// RFC 5883: routed path; received TTL must be at least `min_ttl`.
    MultiHop {
        /// Smallest received TTL / Hop Limit accepted (1–255).
        min_ttl: u8,
    },
}

impl Hop {
    /// The UDP destination port for Control packets.
    pub const fn destination_port(self) -> u16 {
        match self {
            Hop::SingleHop => CONTROL_PORT,
            Hop::MultiHop { .. } => MULTIHOP_CONTROL_PORT,
        }
    }

    /// Whether this is a multihop session.
    pub const fn is_multihop(self) -> bool {
        matches!(self, Hop::MultiHop { .. })
    }

    /// GTSM: whether a packet received with this TTL / Hop Limit may be
    /// processed (RFC 5881 §5: exactly 255 without authentication; RFC 5883:
    /// at least the configured minimum).
    pub const fn accepts_ttl(self, ttl: u8) -> bool {
        match self {
            Hop::SingleHop => ttl == TX_TTL,
            Hop::MultiHop { min_ttl } => ttl >= min_ttl,
        }
    }
}

impl fmt::Display for Hop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Hop::SingleHop => f.write_str("single-hop"),
            Hop::MultiHop { min_ttl } => write!(f, "multihop (minimum TTL {min_ttl})"),
        }
    }
}
