//! The BGP speaker: wire format, session FSM, RIB, session drivers.

pub mod fsm;
pub mod nexthop;
pub mod policy;
pub mod rib;
pub mod session;
pub mod speaker;
pub mod wire;
