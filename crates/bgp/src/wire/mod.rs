//! BGP wire format: framing, decode and encode.
//!
//! RFCs: 4271 (BGP-4 messages and errors), 4760 (multiprotocol), 5492
//! (capabilities), 6793 (4-octet AS), 7606 (revised UPDATE error handling),
//! 7911 (ADD-PATH), 8654 (extended messages), 4724 (graceful restart and
//! End-of-RIB), 8538 (N-bit), 2918/7313 (route refresh), 8950 (extended next
//! hop), 9003 (shutdown communication), 9072 (extended optional parameters).
//!
//! Adapter around `netgauze-bgp-pkt`; nothing from that crate is visible
//! outside this module. netgauze serializes OPEN and UPDATE messages and
//! parses fixed-format attribute values; petrel's own code does the framing,
//! the UPDATE attribute walk with RFC 7606 policy, NLRI, MP_REACH/MP_UNREACH,
//! capability parsing and the length guards netgauze lacks.

mod context;
mod decode;
mod encode;
mod error;
mod frame;
pub mod notification;
pub mod types;

pub use context::{HEADER_LEN, MAX_EXTENDED_MESSAGE_LEN, MAX_MESSAGE_LEN, WireContext};
pub use decode::{Received, decode};
pub use encode::{encode, encode_announce, encode_withdraw};
pub use error::{AttrAction, AttributeError, DecodeError, EncodeError};
pub use frame::{FrameCodec, FrameError};
pub use types::*;

#[cfg(test)]
mod tests;
