//! What a [`crate::Session`] is fed besides packets and timer expiries
//! ([`RxMeta`]), what it asks the driver to do ([`Action`]), what it reports
//! ([`StateChange`]) and why it refuses a packet ([`RxDrop`]).
//!
//! [`StateChange::is_failure`] classifies transitions as RFC 5882 §3.2 and
//! §4.2 ask: leaving Up because of AdminDown (ours or the peer's) is not a
//! path failure, every other Up → Down is.

use crate::packet::{ControlPacket, Diagnostic, State};
use crate::transport::Hop;
use std::net::SocketAddr;
use std::time::Instant;
use thiserror::Error;

/// What the driver extracted from the datagram besides its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RxMeta {
    /// Received IPv4 TTL or IPv6 Hop Limit (`IP_RECVTTL` / `IPV6_RECVHOPLIMIT`).
    pub ttl: u8,
    /// Source address and UDP port.
    pub source: SocketAddr,
}

/// An instruction for the driver. A call returns them in the order they
/// must be executed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Encode and send this packet to the session's configured peer address
    /// (never to the source of received packets, RFC 5881 §6) and the
    /// destination port of its [`Hop`], from the session's source port, with
    /// TTL / Hop Limit 255.
    Send(ControlPacket),
    /// (Re)arm the transmit timer to fire at this instant (it may be now or
    /// in the past: fire at once). On expiry call
    /// [`crate::Session::on_tx_timer`].
    ArmTxTimer(Instant),
    /// Cancel the transmit timer.
    DisarmTxTimer,
    /// (Re)arm the detection timer to fire at this instant. On expiry call
    /// [`crate::Session::on_detect_timer`].
    ArmDetectTimer(Instant),
    /// Cancel the detection timer.
    DisarmDetectTimer,
    /// The session state changed: tell the clients (BGP) and count it.
    StateChanged(StateChange),
}

/// A change of bfd.SessionState.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StateChange {
    /// Previous state.
    pub from: State,
    /// New state.
    pub to: State,
    /// bfd.LocalDiag after the change: why it happened.
    pub diagnostic: Diagnostic,
    /// The remote state last reported when the change happened.
    pub remote_state: State,
    /// The remote's C bit at that time: with it set, a failure means the
    /// remote's forwarding plane is gone (RFC 5882 §4.3.1).
    pub remote_control_plane_independent: bool,
    /// When it happened (the `now` of the call).
    pub at: Instant,
}

impl StateChange {
    /// Whether this transition signals a forwarding path failure that a
    /// client such as BGP must act on: Up → Down, unless the remote system
    /// signalled AdminDown (RFC 5882 §4.2). Up → AdminDown is administrative.
    pub fn is_failure(&self) -> bool {
        self.from == State::Up && self.to == State::Down && self.remote_state != State::AdminDown
    }
}

/// Why a session dropped a received packet (RFC 5880 §6.8.6 rules that need
/// the session, and GTSM). The packet changed nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Error)]
pub enum RxDrop {
    /// TTL / Hop Limit below what the session accepts (RFC 5881 §5, RFC 5883).
    #[error("received TTL {ttl} rejected by GTSM for a {hop} session")]
    Ttl {
        /// The received TTL.
        ttl: u8,
        /// The session's hop mode.
        hop: Hop,
    },
    /// The A bit is set and bfd.AuthType is zero: authentication is not
    /// implemented, so no session has it configured (§6.8.6).
    #[error("authentication section present but no authentication is configured")]
    AuthNotConfigured,
    /// Your Discriminator is nonzero and not this session's.
    #[error("Your Discriminator {received} does not match the local discriminator {local}")]
    DiscriminatorMismatch {
        /// Your Discriminator of the packet.
        received: u32,
        /// This session's discriminator.
        local: u32,
    },
}
