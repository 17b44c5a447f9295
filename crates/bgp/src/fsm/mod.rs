//! Sans-IO BGP session finite state machine.
//!
//! Implements RFC 4271 §8 (FSM), §6.8 (connection collision detection) and
//! §10 (timer jitter), RFC 6286 (BGP identifier rules, collision tie-break by
//! AS), RFC 6608 (FSM error subcodes), RFC 9687 (send hold timer), RFC 9003
//! (shutdown communication), RFC 4486 (Cease subcodes) and the capability
//! negotiation of RFC 5492, RFC 4760, RFC 6793, RFC 2918, RFC 7313, RFC 8654
//! and RFC 4724 (graceful restart is advertised and parsed only).
//!
//! The machine is pure: no sockets, no clocks, no tokio, no global RNG. A
//! driver feeds it [`Event`]s through [`Fsm::handle`] and executes the returned
//! [`Action`]s in order. The jitter PRNG is seeded from
//! [`SessionConfig::seed`], so a test replaying the same events gets the same
//! actions.
//!
//! # Contract with the driver
//!
//! Connections. There are at most two TCP connections at a time:
//! [`ConnId::Outbound`] (opened by us) and [`ConnId::Inbound`] (accepted from
//! the configured peer address).
//! - [`Action::Connect`]: start an outbound connection attempt. Report the
//!   result with [`Event::TcpConnected`]`(Outbound)` or
//!   [`Event::TcpConnectFailed`]. The FSM never emits `Connect` while an
//!   attempt is pending without first emitting `Close(Outbound)`.
//! - [`Action::Close`]`(id)`: if the connection is open, write what is already
//!   queued (typically a NOTIFICATION just sent) with a short bounded deadline
//!   (the peer may not be reading: send-hold expiry), then close it. If an
//!   outbound attempt is pending, abort it and report nothing. `Close` of a
//!   connection that is already gone is a no-op.
//! - When an accepted socket arrives, report `TcpConnected(Inbound)` only if
//!   the driver holds no `Inbound` connection ([`Fsm::has_conn`]); otherwise
//!   close the new socket itself. Such a report is ignored by the FSM.
//! - A late `TcpConnected(Outbound)` for an attempt the FSM gave up on is
//!   answered with `Close(Outbound)`.
//! - Report [`Event::TcpClosed`] when the peer closes or a read/write fails,
//!   but not for connections the FSM closed itself.
//! - Events for a connection slot the FSM holds no connection in are
//!   ignored. A slot can be reused right after `Close` (a new inbound socket,
//!   a new attempt), so once the driver has executed `Close(id)` it must drop
//!   whatever is still queued from the old socket or attempt (for example by
//!   tagging reader events with a per-socket generation).
//!
//! Messages. Decode one frame at a time and feed it as [`Event::Received`] (or
//! [`Event::DecodeError`] with the NOTIFICATION the codec chose); execute the
//! returned actions before decoding the next frame, because
//! [`Action::Established`] changes the codec context (4-octet AS, extended
//! message length) for the frames that follow. [`Action::Send`] queues a
//! message on one connection; `Send(id, Open)` is always encoded without a
//! negotiated context.
//!
//! Timers. There is one timer per [`Timer`] variant for the whole session.
//! [`Action::StartTimer`] (re)arms it as a one-shot with a duration that
//! already includes jitter; [`Action::StopTimer`] cancels it. Report expiry
//! with [`Event::TimerExpired`]; expiries of timers the FSM does not consider
//! armed are ignored, so a race between a stop and an expiry is harmless.
//!
//! Send hold (RFC 9687). While Established with a non-zero hold time the FSM
//! arms [`Timer::SendHold`]. The driver sends [`Event::SendProgress`] every
//! time a write to the Established connection's socket completes or makes
//! progress (it may coalesce these, e.g. at most one per second). Because the
//! FSM sends a KEEPALIVE at least every hold/3 seconds, a healthy idle session
//! always makes progress; when the peer stops reading (zero TCP window) no
//! progress is reported and expiry sends NOTIFICATION code 8 and closes.
//!
//! Notifications to the speaker. [`Action::StateChange`] is emitted once per
//! `handle` call whose state changed, after the protocol actions and before
//! [`Action::Established`] / [`Action::Down`] / [`Action::Deliver`]. `Down`
//! is emitted exactly when the state goes from OpenSent, OpenConfirm or
//! Established to Idle, right after that `StateChange` (its `from` says
//! whether routes learned from the peer must be flushed).
//!
//! # Implementation choices
//!
//! - DelayOpen is not implemented; OPEN is sent as soon as TCP is up.
//! - ConnectRetry (jittered 0.75..1.0) paces plain TCP connect failures
//!   (Connect → Active → Connect). Every other failure (NOTIFICATION sent or
//!   received, hold/send-hold expiry, connection lost after TCP was up) sends
//!   the session to Idle with [`Timer::IdleHold`]: `idle_hold` doubled per
//!   consecutive failure, capped at `max_idle_hold`, jittered. On expiry the
//!   session restarts on its own (Connect, or Active when passive).
//! - Backoff reset: entering Established arms [`Timer::StableReset`] for
//!   `max(max_idle_hold, 60 s)`; if the session is still Established when it
//!   fires, the failure count returns to zero. [`Event::Start`] after a Stop
//!   also starts from zero.
//! - Inbound connections are accepted in Connect, Active and during the
//!   IdleHold backoff (the backoff only delays our own initiative, so a peer
//!   that restarted is not rejected while we wait); they are rejected with
//!   Cease/Connection Rejected only when the session is stopped, and with
//!   Cease/Connection Collision Resolution when already Established (RFC 4271
//!   §6.8 default: the existing Established connection is kept).
//! - Collision: as soon as one connection receives a valid OPEN the peer's
//!   BGP identifier is known, so the other connection (OpenSent or
//!   OpenConfirm) is resolved immediately: the connection initiated by the
//!   speaker with the higher identifier (equal identifiers: higher AS, RFC
//!   6286 §2.3) is kept, the other gets Cease/7. A pending outbound attempt is
//!   abandoned once an inbound connection gets a valid OPEN (as BIRD does).
//!   Failures of one connection while the other survives do not fail the
//!   session.
//! - Families: a peer OPEN without any multiprotocol capability supports IPv4
//!   unicast only (GoBGP, FRR). If no family is common the OPEN is rejected
//!   with OPEN Message Error/Unsupported Capability (BIRD, FRR), data = our
//!   multiprotocol capabilities (RFC 5492 §3). IPv6 over an IPv4 transport
//!   (and the reverse) is negotiated like any other family.
//! - OPEN checks, in order: hold time 1 or 2 (2/6, data = received hold time),
//!   peer AS (2/2, data = the received 2-octet My AS field, or the 4-octet AS
//!   when the peer sent the 4-octet AS capability, like BIRD and FRR), BGP
//!   identifier zero or equal to ours on iBGP (2/3, data = received
//!   identifier), common family (2/7). The BGP version is checked by the
//!   codec, which reports [`Event::DecodeError`] with 2/1, data = 4u16.
//! - Keepalive interval: `keepalive_time` (0 or `None` = hold/3) capped at
//!   hold/3, jittered. With a negotiated hold time of 0 no KEEPALIVEs are
//!   sent and neither hold timer runs in Established; OpenConfirm still times
//!   out after 4 minutes so a peer that never confirms cannot wedge us.
//! - ROUTE-REFRESH for a family that was not negotiated is ignored (RFC 2918
//!   §4), so it is not delivered.

mod config;
mod machine;
mod notify;
mod open;
mod rng;
#[cfg(test)]
mod tests;

pub use config::{ConfigError, SessionConfig};
pub use machine::Fsm;
pub use notify::{cease, describe_notification, notification_name, shutdown_communication};

use crate::wire::{Family, GracefulRestartCap, Message, Notification, Open};
use std::fmt;
use std::time::Duration;

/// Which of the (at most two) TCP connections of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnId {
    /// The connection we opened ([`Action::Connect`]).
    Outbound,
    /// A connection the peer opened to us.
    Inbound,
}

impl ConnId {
    /// The other connection slot.
    pub fn other(self) -> ConnId {
        match self {
            ConnId::Outbound => ConnId::Inbound,
            ConnId::Inbound => ConnId::Outbound,
        }
    }
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ConnId::Outbound => "outbound",
            ConnId::Inbound => "inbound",
        })
    }
}

/// Session state (RFC 4271 §8.2.2). With two connections the session reports
/// the most advanced one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum State {
    Idle,
    Connect,
    Active,
    OpenSent,
    OpenConfirm,
    Established,
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            State::Idle => "Idle",
            State::Connect => "Connect",
            State::Active => "Active",
            State::OpenSent => "OpenSent",
            State::OpenConfirm => "OpenConfirm",
            State::Established => "Established",
        })
    }
}

/// Session timers. Each is a one-shot armed by [`Action::StartTimer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Timer {
    /// Paces outbound TCP connection attempts (RFC 4271 ConnectRetryTimer).
    ConnectRetry,
    /// Hold timer: 4 minutes while waiting for OPEN, then the negotiated hold time.
    Hold,
    /// Time to send the next KEEPALIVE (OpenConfirm and Established).
    Keepalive,
    /// RFC 9687 send hold timer (Established only), restarted by [`Event::SendProgress`].
    SendHold,
    /// Backoff in Idle after a failure; expiry restarts the session.
    IdleHold,
    /// Armed on entering Established; expiry while still Established resets
    /// the failure count used for the IdleHold backoff.
    StableReset,
}

impl Timer {
    pub(crate) const ALL: [Timer; 6] = [
        Timer::ConnectRetry,
        Timer::Hold,
        Timer::Keepalive,
        Timer::SendHold,
        Timer::IdleHold,
        Timer::StableReset,
    ];

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Timer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Timer::ConnectRetry => "connect-retry",
            Timer::Hold => "hold",
            Timer::Keepalive => "keepalive",
            Timer::SendHold => "send-hold",
            Timer::IdleHold => "idle-hold",
            Timer::StableReset => "stable-reset",
        })
    }
}

/// Input to the FSM.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// ManualStart / AutomaticStart (passive when `config.passive`). Ignored
    /// unless the session is stopped (initially, or after [`Event::Stop`]).
    Start,
    /// Stop the session: every open connection gets this NOTIFICATION, sent
    /// as is: normally a Cease (2 Administrative Shutdown or 4 Reset with an
    /// RFC 9003 communication, 3 Peer De-configured, 6 Other Configuration
    /// Change, 1 Maximum Number of Prefixes with AFI/SAFI/limit, ...).
    /// [`cease`] builds the common ones. The session stays Idle until the
    /// next [`Event::Start`].
    Stop(Notification),
    /// A timer armed by [`Action::StartTimer`] fired.
    TimerExpired(Timer),
    /// An outbound attempt succeeded, or an inbound connection was accepted.
    TcpConnected(ConnId),
    /// The pending outbound attempt failed (refused, unreachable, timeout).
    TcpConnectFailed,
    /// The peer closed the connection, or reading/writing it failed.
    TcpClosed(ConnId),
    /// A decoded message arrived on a connection.
    Received(ConnId, Message),
    /// The codec rejected a frame; the FSM sends this NOTIFICATION and closes.
    DecodeError(ConnId, Notification),
    /// The driver wrote queued bytes of the Established connection to its
    /// socket (restarts the send hold timer).
    SendProgress,
}

/// Output of the FSM, to be executed in order.
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)] // Established is emitted once per session
pub enum Action {
    /// Open the outbound TCP connection.
    Connect,
    /// Queue a message on a connection.
    Send(ConnId, Message),
    /// Flush queued output (bounded) then close; abort a pending attempt.
    Close(ConnId),
    /// (Re)arm a one-shot timer; jitter is already applied.
    StartTimer(Timer, Duration),
    /// Cancel a timer.
    StopTimer(Timer),
    /// The session state changed.
    StateChange { from: State, to: State },
    /// The session reached Established: switch the codec context, tell the speaker.
    Established(Negotiated),
    /// UPDATE / ROUTE-REFRESH / End-of-RIB received in Established, for the RIB.
    Deliver(Message),
    /// The session went to Idle from OpenSent or later; the reason is for display.
    Down(DownReason),
}

/// What both OPENs agreed on; handed to the driver and the speaker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    pub local_open: Open,
    pub remote_open: Open,
    /// min(local, remote) in seconds; 0 = no keepalives, no hold timer.
    pub hold_time: u16,
    /// Keepalive interval in seconds before jitter; 0 when `hold_time` is 0.
    pub keepalive: u16,
    /// Families both sides support, in the order of our configuration.
    pub families: Vec<Family>,
    pub four_octet_as: bool,
    pub route_refresh: bool,
    pub enhanced_route_refresh: bool,
    pub extended_message: bool,
    /// The graceful-restart capability the peer advertised, if any.
    pub peer_graceful_restart: Option<GracefulRestartCap>,
    /// The connection that reached Established.
    pub conn: ConnId,
}

impl Negotiated {
    /// The peer's real AS number (from the 4-octet AS capability if present).
    pub fn peer_as(&self) -> u32 {
        open::remote_as(&self.remote_open)
    }
}

/// Why a session went down (or a session attempt failed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DownReason {
    /// We sent this NOTIFICATION (error detected locally).
    NotificationSent(Notification),
    /// The peer sent this NOTIFICATION.
    NotificationReceived(Notification),
    /// No message from the peer within the hold time (we sent code 4).
    HoldTimerExpired,
    /// The peer did not read from the socket for the send hold time (we sent code 8).
    SendHoldTimerExpired,
    /// The TCP connection was closed or failed without a NOTIFICATION.
    ConnectionClosed,
    /// Stopped locally by [`Event::Stop`].
    Stopped,
}

impl fmt::Display for DownReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DownReason::NotificationSent(n) => {
                write!(f, "sent NOTIFICATION {}", describe_notification(n))
            }
            DownReason::NotificationReceived(n) => {
                write!(f, "received NOTIFICATION {}", describe_notification(n))
            }
            DownReason::HoldTimerExpired => f.write_str("hold timer expired"),
            DownReason::SendHoldTimerExpired => {
                f.write_str("send hold timer expired (peer is not reading)")
            }
            DownReason::ConnectionClosed => f.write_str("connection closed"),
            DownReason::Stopped => f.write_str("administratively stopped"),
        }
    }
}
