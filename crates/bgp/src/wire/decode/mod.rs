//! Message decoding: header checks (RFC 4271 §6.1), KEEPALIVE, NOTIFICATION
//! (RFC 4271 §4.5), ROUTE-REFRESH (RFC 2918, RFC 7313), OPEN (see `open`)
//! and UPDATE (see `update`, RFC 7606).

mod attrs;
mod nlri;
mod open;
mod update;

use super::context::{HEADER_LEN, MAX_MESSAGE_LEN, WireContext};
use super::error::{AttributeError, DecodeError};
use super::frame::check_header;
use super::notification as n;
use super::types::{Family, Message, Notification, RouteRefresh};

/// A decoded message plus the non-fatal RFC 7606 outcomes already applied to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub message: Message,
    /// What the decoder withdrew or discarded, for logs and counters. Empty
    /// for a clean message.
    pub errors: Vec<AttributeError>,
}

/// Decodes one whole message (header included), as yielded by
/// [`super::FrameCodec`]. Fatal errors carry the NOTIFICATION to send.
pub fn decode(frame: &[u8], ctx: &WireContext) -> Result<Received, DecodeError> {
    if frame.len() < HEADER_LEN {
        let len = u16::try_from(frame.len()).unwrap_or(u16::MAX);
        return Err(DecodeError::bad_length(
            len,
            "message shorter than the 19-byte header",
        ));
    }
    let len = match check_header(frame, ctx.max_message_len()) {
        Ok(len) => len,
        Err(notif) => {
            return Err(DecodeError::Header {
                subcode: notif.subcode,
                data: notif.data,
                reason: "invalid message header".into(),
            });
        }
    };
    let declared = u16::try_from(len).unwrap_or(u16::MAX);
    if frame.len() != len {
        return Err(DecodeError::bad_length(
            declared,
            format!(
                "length field says {len} bytes but the frame has {}",
                frame.len()
            ),
        ));
    }
    // RFC 8654 §3: OPEN and KEEPALIVE never exceed 4096 bytes.
    if (frame[18] == 1 || frame[18] == 4) && len > MAX_MESSAGE_LEN {
        return Err(DecodeError::bad_length(
            declared,
            "OPEN/KEEPALIVE longer than 4096 bytes",
        ));
    }
    let body = &frame[HEADER_LEN..];
    let clean = |message| {
        Ok(Received {
            message,
            errors: Vec::new(),
        })
    };
    match frame[18] {
        1 => clean(Message::Open(open::decode_open(body, declared)?)),
        2 => update::decode_update(body, declared, ctx),
        3 => clean(Message::Notification(decode_notification(body, declared)?)),
        4 => {
            if !body.is_empty() {
                return Err(DecodeError::bad_length(
                    declared,
                    "KEEPALIVE longer than 19 bytes",
                ));
            }
            clean(Message::Keepalive)
        }
        _ => clean(Message::RouteRefresh(decode_route_refresh(frame)?)),
    }
}

fn decode_notification(body: &[u8], declared: u16) -> Result<Notification, DecodeError> {
    // RFC 4271 §6.1: a NOTIFICATION shorter than 21 bytes has a bad length.
    match body {
        [code, subcode, data @ ..] => Ok(Notification::new(*code, *subcode, data.to_vec())),
        _ => Err(DecodeError::bad_length(
            declared,
            "NOTIFICATION shorter than 21 bytes",
        )),
    }
}

fn decode_route_refresh(frame: &[u8]) -> Result<RouteRefresh, DecodeError> {
    let body = &frame[HEADER_LEN..];
    let [a0, a1, subtype, safi] = body else {
        // RFC 7313 §5: Invalid Message Length, data = the whole message.
        return Err(DecodeError::RouteRefresh {
            subcode: n::RR_INVALID_MESSAGE_LENGTH,
            data: frame.to_vec(),
            reason: format!("ROUTE-REFRESH length {} is not 23", frame.len()),
        });
    };
    let afi = u16::from_be_bytes([*a0, *a1]);
    match Family::from_afi_safi(afi, *safi) {
        // RFC 7313 §4: other subtypes MUST be ignored.
        Some(family) if *subtype <= 2 => Ok(RouteRefresh {
            family,
            subtype: *subtype,
        }),
        _ => Err(DecodeError::UnsupportedRouteRefresh { afi, safi: *safi }),
    }
}
