//! NOTIFICATION codes the FSM emits (RFC 4271 §4.5, RFC 4486, RFC 6608,
//! RFC 9687, RFC 8538, RFC 9384), RFC 9003 shutdown communication encoding
//! and parsing, and human-readable names for display.

use crate::wire::{Family, Notification};

pub(crate) const OPEN_ERROR: u8 = 2;
pub(crate) const HOLD_TIMER_EXPIRED: u8 = 4;
pub(crate) const FSM_ERROR: u8 = 5;
pub(crate) const CEASE: u8 = 6;
pub(crate) const SEND_HOLD_TIMER_EXPIRED: u8 = 8;

pub(crate) const OPEN_BAD_PEER_AS: u8 = 2;
pub(crate) const OPEN_BAD_BGP_ID: u8 = 3;
pub(crate) const OPEN_UNACCEPTABLE_HOLD_TIME: u8 = 6;
pub(crate) const OPEN_UNSUPPORTED_CAPABILITY: u8 = 7;

/// RFC 6608 subcodes.
pub(crate) const FSM_UNEXPECTED_IN_OPENSENT: u8 = 1;
pub(crate) const FSM_UNEXPECTED_IN_OPENCONFIRM: u8 = 2;
pub(crate) const FSM_UNEXPECTED_IN_ESTABLISHED: u8 = 3;

pub(crate) const CEASE_ADMIN_SHUTDOWN: u8 = 2;
pub(crate) const CEASE_ADMIN_RESET: u8 = 4;
pub(crate) const CEASE_CONNECTION_REJECTED: u8 = 5;
pub(crate) const CEASE_COLLISION: u8 = 7;

pub(crate) fn notification(code: u8, subcode: u8, data: Vec<u8>) -> Notification {
    Notification {
        code,
        subcode,
        data,
    }
}

/// Cease with `subcode`; for Administrative Shutdown and Reset, `text` is
/// carried as an RFC 9003 shutdown communication (other subcodes carry no data).
pub fn cease(subcode: u8, text: Option<&str>) -> Notification {
    let data = match text {
        Some(t) if matches!(subcode, CEASE_ADMIN_SHUTDOWN | CEASE_ADMIN_RESET) => {
            encode_shutdown_communication(t)
        }
        _ => Vec::new(),
    };
    notification(CEASE, subcode, data)
}

/// RFC 9003 §2: one length octet then UTF-8, at most 255 octets, cut at a
/// character boundary. An empty text encodes as a single zero octet.
pub(crate) fn encode_shutdown_communication(text: &str) -> Vec<u8> {
    crate::wire::notification::shutdown_data(text)
}

/// The RFC 9003 shutdown communication of a Cease/Administrative Shutdown or
/// Reset, if present and well-formed (length within the data, valid UTF-8).
/// Octets after the communication are ignored (RFC 9003 §2). Malformed data
/// yields `None`; the text is returned raw, display it with `{:?}`.
pub fn shutdown_communication(n: &Notification) -> Option<String> {
    if n.code != CEASE || !matches!(n.subcode, CEASE_ADMIN_SHUTDOWN | CEASE_ADMIN_RESET) {
        return None;
    }
    // Parsed here rather than with `wire::notification::parse_shutdown`,
    // which replaces control characters: the text is kept raw and escaped
    // on display.
    let (&len, rest) = n.data.split_first()?;
    let text = rest.get(..usize::from(len))?;
    if text.is_empty() {
        return None;
    }
    std::str::from_utf8(text).ok().map(str::to_owned)
}

/// Data of OPEN Message Error/Unsupported Capability: our multiprotocol
/// capabilities (RFC 5492 §3, code 1, length 4, AFI, reserved, SAFI).
pub(crate) fn multiprotocol_caps_data(families: &[Family]) -> Vec<u8> {
    let mut data = Vec::with_capacity(families.len() * 6);
    for f in families {
        data.extend_from_slice(&[1, 4]);
        data.extend_from_slice(&f.afi().to_be_bytes());
        data.extend_from_slice(&[0, f.safi()]);
    }
    data
}

/// IANA names of a NOTIFICATION's error code and subcode.
pub fn notification_name(code: u8, subcode: u8) -> (&'static str, Option<&'static str>) {
    let code_name = match code {
        1 => "Message Header Error",
        2 => "OPEN Message Error",
        3 => "UPDATE Message Error",
        4 => "Hold Timer Expired",
        5 => "Finite State Machine Error",
        6 => "Cease",
        7 => "ROUTE-REFRESH Message Error",
        8 => "Send Hold Timer Expired",
        _ => "Unknown Error",
    };
    let sub = match (code, subcode) {
        (1, 1) => "Connection Not Synchronized",
        (1, 2) => "Bad Message Length",
        (1, 3) => "Bad Message Type",
        (2, 1) => "Unsupported Version Number",
        (2, 2) => "Bad Peer AS",
        (2, 3) => "Bad BGP Identifier",
        (2, 4) => "Unsupported Optional Parameter",
        (2, 6) => "Unacceptable Hold Time",
        (2, 7) => "Unsupported Capability",
        (2, 11) => "Role Mismatch",
        (3, 1) => "Malformed Attribute List",
        (3, 2) => "Unrecognized Well-known Attribute",
        (3, 3) => "Missing Well-known Attribute",
        (3, 4) => "Attribute Flags Error",
        (3, 5) => "Attribute Length Error",
        (3, 6) => "Invalid ORIGIN Attribute",
        (3, 8) => "Invalid NEXT_HOP Attribute",
        (3, 9) => "Optional Attribute Error",
        (3, 10) => "Invalid Network Field",
        (3, 11) => "Malformed AS_PATH",
        (5, 0) => "Unspecified Error",
        (5, 1) => "Receive Unexpected Message in OpenSent State",
        (5, 2) => "Receive Unexpected Message in OpenConfirm State",
        (5, 3) => "Receive Unexpected Message in Established State",
        (6, 1) => "Maximum Number of Prefixes Reached",
        (6, 2) => "Administrative Shutdown",
        (6, 3) => "Peer De-configured",
        (6, 4) => "Administrative Reset",
        (6, 5) => "Connection Rejected",
        (6, 6) => "Other Configuration Change",
        (6, 7) => "Connection Collision Resolution",
        (6, 8) => "Out of Resources",
        (6, 9) => "Hard Reset",
        (6, 10) => "BFD Down",
        (7, 1) => "Invalid Message Length",
        _ => return (code_name, None),
    };
    (code_name, Some(sub))
}

/// Human text for a NOTIFICATION: `OPEN Message Error/Bad Peer AS`, with the
/// shutdown communication appended (quoted and escaped) when present.
pub fn describe_notification(n: &Notification) -> String {
    let (code, sub) = notification_name(n.code, n.subcode);
    let mut s = match sub {
        Some(sub) => format!("{code}/{sub}"),
        None if n.subcode == 0 => code.to_owned(),
        None => format!("{code}/subcode {}", n.subcode),
    };
    if let Some(text) = shutdown_communication(n) {
        // Debug formatting escapes control characters and quotes.
        s.push_str(&format!(": {text:?}"));
    }
    // RFC 8538 §3: a Hard Reset carries the NOTIFICATION that caused it.
    if n.code == 6 && n.subcode == 9 && n.data.len() >= 2 {
        let inner = Notification {
            code: n.data[0],
            subcode: n.data[1],
            data: n.data[2..].to_vec(),
        };
        s.push_str(&format!(" ({})", describe_notification(&inner)));
    }
    s
}
