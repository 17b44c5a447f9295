//! NOTIFICATION codes and data builders: RFC 4271 §4.5/§6, RFC 4486 (Cease
//! subcodes), RFC 9003 (shutdown communication), RFC 5492 (Unsupported
//! Capability), RFC 6608 (FSM subcodes), RFC 7313 (ROUTE-REFRESH errors),
//! RFC 8538 (Hard Reset), RFC 9234 (Role Mismatch), RFC 9384 (BFD Down).

use super::types::{Family, Notification};

// Error codes (RFC 4271 §4.5, RFC 7313 §5).
pub const MESSAGE_HEADER_ERROR: u8 = 1;
pub const OPEN_MESSAGE_ERROR: u8 = 2;
pub const UPDATE_MESSAGE_ERROR: u8 = 3;
pub const HOLD_TIMER_EXPIRED: u8 = 4;
pub const FSM_ERROR: u8 = 5;
pub const CEASE: u8 = 6;
pub const ROUTE_REFRESH_MESSAGE_ERROR: u8 = 7;

/// Subcode 0 of any code: "Unspecific" (RFC 4493 / IANA).
pub const UNSPECIFIC: u8 = 0;

// Message Header Error subcodes (RFC 4271 §6.1).
pub const HDR_CONNECTION_NOT_SYNCHRONIZED: u8 = 1;
pub const HDR_BAD_MESSAGE_LENGTH: u8 = 2;
pub const HDR_BAD_MESSAGE_TYPE: u8 = 3;

// OPEN Message Error subcodes (RFC 4271 §6.2, RFC 5492, RFC 9234).
pub const OPEN_UNSUPPORTED_VERSION: u8 = 1;
pub const OPEN_BAD_PEER_AS: u8 = 2;
pub const OPEN_BAD_BGP_IDENTIFIER: u8 = 3;
pub const OPEN_UNSUPPORTED_OPTIONAL_PARAMETER: u8 = 4;
pub const OPEN_UNACCEPTABLE_HOLD_TIME: u8 = 6;
pub const OPEN_UNSUPPORTED_CAPABILITY: u8 = 7;
pub const OPEN_ROLE_MISMATCH: u8 = 11;

// UPDATE Message Error subcodes (RFC 4271 §6.3).
pub const UPD_MALFORMED_ATTRIBUTE_LIST: u8 = 1;
pub const UPD_UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE: u8 = 2;
pub const UPD_MISSING_WELL_KNOWN_ATTRIBUTE: u8 = 3;
pub const UPD_ATTRIBUTE_FLAGS_ERROR: u8 = 4;
pub const UPD_ATTRIBUTE_LENGTH_ERROR: u8 = 5;
pub const UPD_INVALID_ORIGIN_ATTRIBUTE: u8 = 6;
pub const UPD_INVALID_NEXT_HOP_ATTRIBUTE: u8 = 8;
pub const UPD_OPTIONAL_ATTRIBUTE_ERROR: u8 = 9;
pub const UPD_INVALID_NETWORK_FIELD: u8 = 10;
pub const UPD_MALFORMED_AS_PATH: u8 = 11;

// FSM Error subcodes (RFC 6608).
pub const FSM_UNEXPECTED_IN_OPENSENT: u8 = 1;
pub const FSM_UNEXPECTED_IN_OPENCONFIRM: u8 = 2;
pub const FSM_UNEXPECTED_IN_ESTABLISHED: u8 = 3;

// Cease subcodes (RFC 4486, RFC 8538, RFC 9384).
pub const CEASE_MAX_PREFIXES: u8 = 1;
pub const CEASE_ADMIN_SHUTDOWN: u8 = 2;
pub const CEASE_PEER_DECONFIGURED: u8 = 3;
pub const CEASE_ADMIN_RESET: u8 = 4;
pub const CEASE_CONNECTION_REJECTED: u8 = 5;
pub const CEASE_OTHER_CONFIG_CHANGE: u8 = 6;
pub const CEASE_CONNECTION_COLLISION: u8 = 7;
pub const CEASE_OUT_OF_RESOURCES: u8 = 8;
pub const CEASE_HARD_RESET: u8 = 9;
pub const CEASE_BFD_DOWN: u8 = 10;

// ROUTE-REFRESH Message Error subcodes (RFC 7313 §5).
pub const RR_INVALID_MESSAGE_LENGTH: u8 = 1;

/// Longest RFC 9003 shutdown communication, in octets.
pub const SHUTDOWN_MAX_LEN: usize = 255;

fn code_name(code: u8) -> Option<&'static str> {
    Some(match code {
        MESSAGE_HEADER_ERROR => "Message Header Error",
        OPEN_MESSAGE_ERROR => "OPEN Message Error",
        UPDATE_MESSAGE_ERROR => "UPDATE Message Error",
        HOLD_TIMER_EXPIRED => "Hold Timer Expired",
        FSM_ERROR => "Finite State Machine Error",
        CEASE => "Cease",
        ROUTE_REFRESH_MESSAGE_ERROR => "ROUTE-REFRESH Message Error",
        _ => return None,
    })
}

fn subcode_name(code: u8, subcode: u8) -> Option<&'static str> {
    if subcode == UNSPECIFIC {
        return Some("Unspecific");
    }
    Some(match (code, subcode) {
        (MESSAGE_HEADER_ERROR, 1) => "Connection Not Synchronized",
        (MESSAGE_HEADER_ERROR, 2) => "Bad Message Length",
        (MESSAGE_HEADER_ERROR, 3) => "Bad Message Type",
        (OPEN_MESSAGE_ERROR, 1) => "Unsupported Version Number",
        (OPEN_MESSAGE_ERROR, 2) => "Bad Peer AS",
        (OPEN_MESSAGE_ERROR, 3) => "Bad BGP Identifier",
        (OPEN_MESSAGE_ERROR, 4) => "Unsupported Optional Parameter",
        (OPEN_MESSAGE_ERROR, 6) => "Unacceptable Hold Time",
        (OPEN_MESSAGE_ERROR, 7) => "Unsupported Capability",
        (OPEN_MESSAGE_ERROR, 11) => "Role Mismatch",
        (UPDATE_MESSAGE_ERROR, 1) => "Malformed Attribute List",
        (UPDATE_MESSAGE_ERROR, 2) => "Unrecognized Well-known Attribute",
        (UPDATE_MESSAGE_ERROR, 3) => "Missing Well-known Attribute",
        (UPDATE_MESSAGE_ERROR, 4) => "Attribute Flags Error",
        (UPDATE_MESSAGE_ERROR, 5) => "Attribute Length Error",
        (UPDATE_MESSAGE_ERROR, 6) => "Invalid ORIGIN Attribute",
        (UPDATE_MESSAGE_ERROR, 8) => "Invalid NEXT_HOP Attribute",
        (UPDATE_MESSAGE_ERROR, 9) => "Optional Attribute Error",
        (UPDATE_MESSAGE_ERROR, 10) => "Invalid Network Field",
        (UPDATE_MESSAGE_ERROR, 11) => "Malformed AS_PATH",
        (FSM_ERROR, 1) => "Receive Unexpected Message in OpenSent State",
        (FSM_ERROR, 2) => "Receive Unexpected Message in OpenConfirm State",
        (FSM_ERROR, 3) => "Receive Unexpected Message in Established State",
        (CEASE, 1) => "Maximum Number of Prefixes Reached",
        (CEASE, 2) => "Administrative Shutdown",
        (CEASE, 3) => "Peer De-configured",
        (CEASE, 4) => "Administrative Reset",
        (CEASE, 5) => "Connection Rejected",
        (CEASE, 6) => "Other Configuration Change",
        (CEASE, 7) => "Connection Collision Resolution",
        (CEASE, 8) => "Out of Resources",
        (CEASE, 9) => "Hard Reset",
        (CEASE, 10) => "BFD Down",
        (ROUTE_REFRESH_MESSAGE_ERROR, 1) => "Invalid Message Length",
        _ => return None,
    })
}

/// Human-readable "Code/Subcode", e.g. "Cease/Administrative Shutdown".
/// Unknown values are shown numerically ("Cease/subcode 42", "code 9/subcode 1").
pub fn describe(code: u8, subcode: u8) -> String {
    let c = code_name(code).map_or_else(|| format!("code {code}"), str::to_string);
    let s =
        subcode_name(code, subcode).map_or_else(|| format!("subcode {subcode}"), str::to_string);
    format!("{c}/{s}")
}

/// RFC 9003 shutdown communication: a length octet followed by UTF-8 text.
/// Text longer than 255 octets is truncated on a character boundary.
pub fn shutdown_data(msg: &str) -> Vec<u8> {
    let mut end = msg.len().min(SHUTDOWN_MAX_LEN);
    while !msg.is_char_boundary(end) {
        end -= 1;
    }
    let text = &msg.as_bytes()[..end];
    let mut data = Vec::with_capacity(text.len() + 1);
    // `end` is at most 255, so the cast is exact.
    data.push(end as u8);
    data.extend_from_slice(text);
    data
}

/// Parses RFC 9003 shutdown communication data. Returns `None` when the data
/// is empty, the length octet overruns the data, or the text is not UTF-8
/// (RFC 9003 §3: such errors are only logged). Control characters are
/// replaced with U+FFFD so the result is safe to log.
pub fn parse_shutdown(data: &[u8]) -> Option<String> {
    let (&len, rest) = data.split_first()?;
    let text = rest.get(..usize::from(len))?;
    let s = std::str::from_utf8(text).ok()?;
    Some(
        s.chars()
            .map(|c| if c.is_control() { '\u{FFFD}' } else { c })
            .collect(),
    )
}

/// Cease/Maximum Number of Prefixes Reached data (RFC 4486 §4):
/// AFI (2 octets), SAFI (1 octet), prefix upper bound (4 octets).
pub fn max_prefixes_data(family: Family, limit: u32) -> Vec<u8> {
    let mut data = Vec::with_capacity(7);
    data.extend_from_slice(&family.afi().to_be_bytes());
    data.push(family.safi());
    data.extend_from_slice(&limit.to_be_bytes());
    data
}

/// Parses Cease/Maximum Number of Prefixes data: (AFI, SAFI, limit).
pub fn parse_max_prefixes(data: &[u8]) -> Option<(u16, u8, u32)> {
    if data.len() != 7 {
        return None;
    }
    let afi = u16::from_be_bytes([data[0], data[1]]);
    let limit = u32::from_be_bytes([data[3], data[4], data[5], data[6]]);
    Some((afi, data[2], limit))
}

impl Notification {
    pub fn new(code: u8, subcode: u8, data: Vec<u8>) -> Self {
        Notification {
            code,
            subcode,
            data,
        }
    }

    /// Cease with a shutdown communication (subcode 2 Administrative Shutdown
    /// or 4 Administrative Reset, RFC 9003). An empty message sends no data.
    pub fn cease_with_message(subcode: u8, msg: &str) -> Self {
        let data = if msg.is_empty() {
            Vec::new()
        } else {
            shutdown_data(msg)
        };
        Notification::new(CEASE, subcode, data)
    }

    /// Cease/Maximum Number of Prefixes Reached with RFC 4486 data.
    pub fn max_prefixes(family: Family, limit: u32) -> Self {
        Notification::new(CEASE, CEASE_MAX_PREFIXES, max_prefixes_data(family, limit))
    }

    /// "Code/Subcode" text, see [`describe`].
    pub fn describe(&self) -> String {
        describe(self.code, self.subcode)
    }

    /// The RFC 9003 shutdown communication, if this is a Cease/Administrative
    /// Shutdown or Reset carrying a valid one.
    pub fn shutdown_message(&self) -> Option<String> {
        if self.code == CEASE
            && (self.subcode == CEASE_ADMIN_SHUTDOWN || self.subcode == CEASE_ADMIN_RESET)
        {
            parse_shutdown(&self.data)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_names() {
        assert_eq!(describe(6, 2), "Cease/Administrative Shutdown");
        assert_eq!(describe(3, 11), "UPDATE Message Error/Malformed AS_PATH");
        assert_eq!(describe(1, 0), "Message Header Error/Unspecific");
        assert_eq!(describe(6, 42), "Cease/subcode 42");
        assert_eq!(describe(9, 1), "code 9/subcode 1");
    }

    #[test]
    fn shutdown_roundtrip_and_truncation() {
        assert_eq!(shutdown_data("bye"), vec![3, b'b', b'y', b'e']);
        assert_eq!(
            parse_shutdown(&[3, b'b', b'y', b'e']).as_deref(),
            Some("bye")
        );
        // 300 octets of a 2-octet char: truncated to 254 (127 chars) on a boundary.
        let long: String = std::iter::repeat_n('é', 150).collect();
        let d = shutdown_data(&long);
        assert_eq!(d[0], 254);
        assert_eq!(d.len(), 255);
        assert_eq!(parse_shutdown(&d).map(|s| s.chars().count()), Some(127));
        let ascii = "x".repeat(400);
        assert_eq!(shutdown_data(&ascii).len(), 256);
    }

    #[test]
    fn shutdown_rejects_bad_data() {
        assert_eq!(parse_shutdown(&[]), None);
        assert_eq!(parse_shutdown(&[5, b'a']), None);
        assert_eq!(parse_shutdown(&[2, 0xff, 0xfe]), None);
        assert_eq!(
            parse_shutdown(&[2, b'a', 0x07]).as_deref(),
            Some("a\u{FFFD}")
        );
    }

    #[test]
    fn max_prefixes_builder() {
        let n = Notification::max_prefixes(Family::Ipv6Unicast, 1000);
        assert_eq!((n.code, n.subcode), (6, 1));
        assert_eq!(n.data, vec![0, 2, 1, 0, 0, 0x03, 0xe8]);
        assert_eq!(parse_max_prefixes(&n.data), Some((2, 1, 1000)));
        assert_eq!(parse_max_prefixes(&n.data[..6]), None);
    }

    #[test]
    fn cease_with_message() {
        let n = Notification::cease_with_message(CEASE_ADMIN_SHUTDOWN, "maintenance");
        assert_eq!(n.shutdown_message().as_deref(), Some("maintenance"));
        assert!(
            Notification::cease_with_message(CEASE_ADMIN_RESET, "")
                .data
                .is_empty()
        );
        assert_eq!(
            Notification::new(6, 3, vec![3, b'a', b'b', b'c']).shutdown_message(),
            None
        );
    }
}
