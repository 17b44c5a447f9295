//! Decode and encode errors, and RFC 7606 non-fatal attribute outcomes.

use super::notification as n;
use super::types::Notification;

/// What RFC 7606 made the decoder do with a malformed attribute. The action is
/// already applied to the decoded message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AttrAction {
    /// RFC 7606 §2 "treat-as-withdraw": every NLRI the UPDATE announced was
    /// moved to `withdrawn` and the attributes were dropped.
    TreatAsWithdraw,
    /// RFC 7606 §2 "attribute discard": the attribute was removed.
    Discard,
}

impl AttrAction {
    pub fn as_str(self) -> &'static str {
        match self {
            AttrAction::TreatAsWithdraw => "treat-as-withdraw",
            AttrAction::Discard => "attribute-discard",
        }
    }
}

/// One non-fatal error found in an UPDATE, for logs and counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttributeError {
    /// Path attribute type code (0 when the error is about the attribute list
    /// as a whole, e.g. a missing mandatory attribute or a length overrun).
    pub code: u8,
    pub action: AttrAction,
    pub reason: String,
}

impl std::fmt::Display for AttributeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "attribute {}: {} ({})",
            self.code,
            self.reason,
            self.action.as_str()
        )
    }
}

/// A fatal decode error: the session must be reset with
/// [`DecodeError::notification`] (except [`DecodeError::UnsupportedRouteRefresh`],
/// see [`DecodeError::is_fatal`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// RFC 4271 §6.1 Message Header Error.
    #[error("message header error ({}): {reason}", n::describe(n::MESSAGE_HEADER_ERROR, *.subcode))]
    Header {
        subcode: u8,
        data: Vec<u8>,
        reason: String,
    },
    /// RFC 4271 §6.2 / RFC 5492 / RFC 6793 OPEN Message Error.
    #[error("OPEN message error ({}): {reason}", n::describe(n::OPEN_MESSAGE_ERROR, *.subcode))]
    Open {
        subcode: u8,
        data: Vec<u8>,
        reason: String,
    },
    /// RFC 4271 §6.3 / RFC 7606 "session reset" UPDATE Message Error.
    #[error("UPDATE message error ({}): {reason}", n::describe(n::UPDATE_MESSAGE_ERROR, *.subcode))]
    Update {
        subcode: u8,
        data: Vec<u8>,
        reason: String,
    },
    /// RFC 7313 §5 ROUTE-REFRESH Message Error.
    #[error("ROUTE-REFRESH message error ({}): {reason}", n::describe(n::ROUTE_REFRESH_MESSAGE_ERROR, *.subcode))]
    RouteRefresh {
        subcode: u8,
        data: Vec<u8>,
        reason: String,
    },
    /// A well-formed ROUTE-REFRESH for an AFI/SAFI petrel does not speak.
    /// RFC 2918 §4: ignore the message; this is not fatal.
    #[error("ROUTE-REFRESH for unsupported AFI {afi} SAFI {safi} (ignored)")]
    UnsupportedRouteRefresh { afi: u16, safi: u8 },
}

impl DecodeError {
    /// The NOTIFICATION to send before closing the session.
    pub fn notification(&self) -> Notification {
        let (code, subcode, data) = match self {
            DecodeError::Header { subcode, data, .. } => (n::MESSAGE_HEADER_ERROR, *subcode, data),
            DecodeError::Open { subcode, data, .. } => (n::OPEN_MESSAGE_ERROR, *subcode, data),
            DecodeError::Update { subcode, data, .. } => (n::UPDATE_MESSAGE_ERROR, *subcode, data),
            DecodeError::RouteRefresh { subcode, data, .. } => {
                (n::ROUTE_REFRESH_MESSAGE_ERROR, *subcode, data)
            }
            DecodeError::UnsupportedRouteRefresh { .. } => {
                return Notification::new(
                    n::ROUTE_REFRESH_MESSAGE_ERROR,
                    n::UNSPECIFIC,
                    Vec::new(),
                );
            }
        };
        Notification::new(code, subcode, data.clone())
    }

    /// `false` only for errors RFCs say to ignore (the message is dropped and
    /// the session stays up).
    pub fn is_fatal(&self) -> bool {
        !matches!(self, DecodeError::UnsupportedRouteRefresh { .. })
    }

    pub(crate) fn header(subcode: u8, data: Vec<u8>, reason: impl Into<String>) -> Self {
        DecodeError::Header {
            subcode,
            data,
            reason: reason.into(),
        }
    }
    pub(crate) fn open(subcode: u8, data: Vec<u8>, reason: impl Into<String>) -> Self {
        DecodeError::Open {
            subcode,
            data,
            reason: reason.into(),
        }
    }
    pub(crate) fn update(subcode: u8, data: Vec<u8>, reason: impl Into<String>) -> Self {
        DecodeError::Update {
            subcode,
            data,
            reason: reason.into(),
        }
    }
    pub(crate) fn bad_length(len: u16, reason: impl Into<String>) -> Self {
        DecodeError::header(
            n::HDR_BAD_MESSAGE_LENGTH,
            len.to_be_bytes().to_vec(),
            reason,
        )
    }
}

/// Why a message could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("message of {len} bytes exceeds the negotiated maximum of {max}")]
    TooLong { len: usize, max: usize },
    #[error("cannot encode {what}: {reason}")]
    Invalid { what: &'static str, reason: String },
}

impl EncodeError {
    pub(crate) fn invalid(what: &'static str, reason: impl std::fmt::Display) -> Self {
        EncodeError::Invalid {
            what,
            reason: reason.to_string(),
        }
    }
}
