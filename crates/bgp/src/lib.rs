//! BGP-4 (RFC 4271) as pure code, with no sockets, clocks or tasks: the wire
//! codec ([`wire`]), the session state machine ([`fsm`]), the RIB with
//! best-path selection ([`rib`]) and import/export policy ([`policy`]).
//! The tokio drivers that move bytes and arm timers are in `petrel-speaker`.

pub mod fsm;
pub mod policy;
pub mod rib;
pub mod wire;
