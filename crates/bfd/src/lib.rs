//! Bidirectional Forwarding Detection for petrel, as a pure protocol crate.
//!
//! - RFC 5880 (BFD): Control packet codec (§4.1–§4.4, [`packet`]), the
//!   Asynchronous-mode session state machine with timer negotiation, Poll
//!   Sequences, Detection Time, jitter and administrative control (§6,
//!   [`Session`]), discriminators and demultiplexing (§6.3, [`SessionTable`]).
//! - RFC 5881 (BFD for IPv4 and IPv6, single hop): ports, source port range
//!   and GTSM (TTL 255 sent and required), in [`transport`] and the session's
//!   receive checks; demultiplexing by peer and interface (§3).
//! - RFC 5883 (multihop): port 4784, a configurable minimum received TTL,
//!   demultiplexing by address pair (§4.1).
//! - RFC 5882 §3.2, §4.2: which state changes are path failures
//!   ([`StateChange::is_failure`]); the remote C bit is reported for §4.3.
//!
//! Not implemented: authentication (§6.7; packets with the A bit are
//! dropped and counted, see [`packet`]), Demand mode on our side (a remote's
//! Demand mode is honoured), the Echo function (Required Min Echo RX is 0).
//!
//! The crate does no I/O and reads no clock: a driver owns the sockets and
//! timers, passes the current [`std::time::Instant`] into every call and
//! executes the returned [`Action`]s. Randomness (jitter, discriminators)
//! comes from an injectable [`RandomSource`].

pub mod action;
pub mod config;
pub mod packet;
pub mod session;
pub mod status;
pub mod table;
pub mod timers;
pub mod transport;

pub use action::{Action, RxDrop, RxMeta, StateChange};
pub use config::{ConfigError, Interval, SessionConfig};
pub use packet::{
    AuthSection, AuthType, ControlPacket, DecodeError, Diagnostic, EncodeError, State, decode,
};
pub use session::Session;
pub use status::{MalformedCounters, SessionCounters, SessionStatus, TableCounters};
pub use table::{PathKey, Received, RxError, SessionTable, TableError};
pub use timers::{RandomSource, SplitMix64};
pub use transport::Hop;
