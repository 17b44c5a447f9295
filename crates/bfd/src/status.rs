//! Read-only views of sessions and packet counters for the `petrel bfd`
//! command, metrics and the status resource. Plain data: no protocol logic
//! (the values mirror the RFC 5880 §6.8.1 state variables).

use crate::packet::{DecodeError, Diagnostic, State};
use crate::transport::Hop;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Counters of one session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct SessionCounters {
    /// Control packets accepted (passed every §6.8.6 and GTSM check).
    pub packets_received: u64,
    /// Control packets handed to the driver to send.
    pub packets_sent: u64,
    /// Dropped: received TTL / Hop Limit failed GTSM (RFC 5881 §5, RFC 5883).
    pub dropped_ttl: u64,
    /// Dropped: the A bit is set but the session has no authentication
    /// (RFC 5880 §6.8.6).
    pub dropped_auth: u64,
    /// Dropped: Your Discriminator names another session.
    pub dropped_discriminator: u64,
    /// State changes (each [`crate::Action::StateChanged`]).
    pub state_changes: u64,
    /// Transitions into Up.
    pub up_transitions: u64,
    /// Transitions from Up to Down that signal a path failure (RFC 5882
    /// §4.2: not administrative).
    pub failures: u64,
}

/// Datagrams [`crate::packet::decode`] rejected, by §6.8.6 rule. These
/// cannot be attributed to a session: a malformed packet's discriminators
/// are not trustworthy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct MalformedCounters {
    /// Shorter than the mandatory section.
    pub truncated: u64,
    /// Version other than 1.
    pub bad_version: u64,
    /// Length below 24 (26 with A) or above the payload.
    pub bad_length: u64,
    /// Detect Mult zero.
    pub zero_detect_mult: u64,
    /// Multipoint bit set.
    pub multipoint: u64,
    /// My Discriminator zero.
    pub zero_my_discriminator: u64,
    /// Your Discriminator zero outside Down/AdminDown.
    pub zero_your_discriminator: u64,
    /// Poll and Final both set.
    pub poll_and_final: u64,
    /// Authentication section header invalid.
    pub bad_auth_section: u64,
}

impl MalformedCounters {
    /// Count one rejected datagram.
    pub fn record(&mut self, error: &DecodeError) {
        let counter = match error {
            DecodeError::Truncated { .. } => &mut self.truncated,
            DecodeError::BadVersion(_) => &mut self.bad_version,
            DecodeError::LengthBelowMinimum { .. } | DecodeError::LengthExceedsPayload { .. } => {
                &mut self.bad_length
            }
            DecodeError::ZeroDetectMult => &mut self.zero_detect_mult,
            DecodeError::Multipoint => &mut self.multipoint,
            DecodeError::ZeroMyDiscriminator => &mut self.zero_my_discriminator,
            DecodeError::ZeroYourDiscriminator { .. } => &mut self.zero_your_discriminator,
            DecodeError::PollAndFinal => &mut self.poll_and_final,
            DecodeError::ReservedAuthType | DecodeError::BadAuthLength { .. } => {
                &mut self.bad_auth_section
            }
        };
        *counter += 1;
    }

    /// All malformed datagrams.
    pub fn total(&self) -> u64 {
        self.truncated
            + self.bad_version
            + self.bad_length
            + self.zero_detect_mult
            + self.multipoint
            + self.zero_my_discriminator
            + self.zero_your_discriminator
            + self.poll_and_final
            + self.bad_auth_section
    }
}

/// Counters of a [`crate::SessionTable`]: datagrams dropped before they
/// reached a session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct TableCounters {
    /// Rejected by the decoder.
    pub malformed: MalformedCounters,
    /// Your Discriminator matches no session (§6.8.6: MUST be discarded).
    pub unknown_discriminator: u64,
    /// Your Discriminator zero and no session for the source path.
    pub no_session_for_path: u64,
    /// Matched a session of the other kind (single hop vs multihop port).
    pub wrong_port: u64,
}

/// The state of one session, for display and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionStatus {
    /// bfd.SessionState.
    pub state: State,
    /// bfd.RemoteSessionState.
    pub remote_state: State,
    /// bfd.LocalDiscr.
    pub local_discriminator: u32,
    /// bfd.RemoteDiscr (0 when unknown).
    pub remote_discriminator: u32,
    /// bfd.LocalDiag: the reason for the last state change.
    pub local_diagnostic: Diagnostic,
    /// Diag of the last packet received.
    pub remote_diagnostic: Diagnostic,
    /// When the state last changed (or the session was created).
    pub last_state_change: Instant,
    /// The diagnostic of the last transition to Down or AdminDown: why the
    /// session last went down, still shown once it is Up again.
    pub last_down_diagnostic: Option<Diagnostic>,
    /// Whether the session has been Up at least once since it was created
    /// (a BFD session that never came Up does not hold BGP back).
    pub has_been_up: bool,
    /// Single hop or multihop.
    pub hop: Hop,
    /// Passive role.
    pub passive: bool,
    /// Configured Desired Min TX (used while Up).
    pub desired_min_tx: Duration,
    /// Configured Required Min RX.
    pub required_min_rx: Duration,
    /// Configured Detect Mult.
    pub detect_mult: u8,
    /// Desired Min TX currently advertised (1 s floor while not Up).
    pub advertised_min_tx: Duration,
    /// The remote's Desired Min TX (None until a packet arrived).
    pub remote_desired_min_tx: Option<Duration>,
    /// bfd.RemoteMinRxInterval (1 µs until a packet arrived, §6.8.1).
    pub remote_required_min_rx: Duration,
    /// The remote's Detect Mult (None until a packet arrived).
    pub remote_detect_mult: Option<u8>,
    /// Negotiated interval between our periodic packets before jitter
    /// (None when none are sent: passive and silent, remote asked for none,
    /// or remote Demand mode).
    pub tx_interval: Option<Duration>,
    /// Negotiated interval between the remote's packets (None until known).
    pub rx_interval: Option<Duration>,
    /// Detection Time (None until the remote's parameters are known).
    pub detection_time: Option<Duration>,
    /// A Poll Sequence of ours is waiting for its Final.
    pub poll_in_progress: bool,
    /// The remote's C bit (RFC 5882 §4.3).
    pub remote_control_plane_independent: bool,
    /// The remote's D bit.
    pub remote_demand: bool,
    /// Source address and port of the last accepted packet.
    pub last_source: Option<SocketAddr>,
    /// When the last packet was accepted.
    pub last_received: Option<Instant>,
    /// Counters.
    pub counters: SessionCounters,
}
