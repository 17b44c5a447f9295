//! BFD Control packet codec: RFC 5880 §4.1 (mandatory section), §4.2–§4.4
//! (authentication section header) and the reception checks of RFC 5880
//! §6.8.6 that need no session state.
//!
//! [`decode`] applies, in the RFC's order, every §6.8.6 discard rule that can
//! be decided from the bytes alone: the version is 1; the Length field is at
//! least 24 (26 with the A bit) and no larger than the UDP payload; Detect
//! Mult is nonzero; the Multipoint bit is clear; My Discriminator is nonzero;
//! Your Discriminator is zero only in the Down and AdminDown states. It also
//! rejects a packet with both Poll and Final set (RFC 5880 §6.5 forbids it;
//! BIRD and holo drop such packets too) and an authentication section whose
//! Auth Len does not fit in Length. Bytes after Length are ignored (§6.8.6
//! only discards a Length *larger* than the payload). The checks that need a
//! session (Your Discriminator selects a session, the A bit against the
//! session's authentication, GTSM) are in [`crate::session`] and
//! [`crate::table`].
//!
//! Authentication (§6.7) is not implemented. The authentication section is
//! parsed only far enough to validate its length and keep its bytes, so that
//! a session can drop and count the packet cleanly: a session never has
//! authentication configured, so §6.8.6 ("A bit set and bfd.AuthType is
//! zero") discards every packet with the A bit.
//!
//! Decoding never panics and never allocates for packets without an
//! authentication section. [`ControlPacket::encode`] refuses exactly what
//! [`decode`] rejects, so an encoded packet always decodes to itself.

use std::fmt;
use std::time::Duration;
use thiserror::Error;

/// The protocol version this crate speaks (RFC 5880 §4.1).
pub const VERSION: u8 = 1;
/// Length of the mandatory section, the whole packet without authentication.
pub const MANDATORY_LEN: usize = 24;
/// Minimum Length when the A bit is set: mandatory section, Auth Type, Auth Len.
pub const MIN_LEN_WITH_AUTH: usize = 26;
/// Largest possible packet: Length is an 8-bit field.
pub const MAX_LEN: usize = 255;

const FLAG_POLL: u8 = 0x20;
const FLAG_FINAL: u8 = 0x10;
const FLAG_CPI: u8 = 0x08;
const FLAG_AUTH: u8 = 0x04;
const FLAG_DEMAND: u8 = 0x02;
const FLAG_MULTIPOINT: u8 = 0x01;

/// Session state as carried in the State (Sta) field (RFC 5880 §4.1, §6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum State {
    /// Held administratively down (wire value 0).
    AdminDown,
    /// Down or just created (wire value 1).
    Down,
    /// The remote system is communicating; waiting for it to agree (2).
    Init,
    /// Established (3).
    Up,
}

impl State {
    /// The state encoded in the two low bits of `v`.
    pub const fn from_wire(v: u8) -> State {
        match v & 0x03 {
            0 => State::AdminDown,
            1 => State::Down,
            2 => State::Init,
            _ => State::Up,
        }
    }

    /// The two-bit wire value.
    pub const fn to_wire(self) -> u8 {
        match self {
            State::AdminDown => 0,
            State::Down => 1,
            State::Init => 2,
            State::Up => 3,
        }
    }

    /// Name as used by FRR and BIRD (`AdminDown`, `Down`, `Init`, `Up`).
    pub const fn as_str(self) -> &'static str {
        match self {
            State::AdminDown => "AdminDown",
            State::Down => "Down",
            State::Init => "Init",
            State::Up => "Up",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Diagnostic code (RFC 5880 §4.1): the local reason for the last state
/// change. A 5-bit value; 9–31 are unassigned and carried as received.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Diagnostic(u8);

impl Diagnostic {
    /// 0: No Diagnostic.
    pub const NONE: Diagnostic = Diagnostic(0);
    /// 1: Control Detection Time Expired.
    pub const CONTROL_DETECTION_TIME_EXPIRED: Diagnostic = Diagnostic(1);
    /// 2: Echo Function Failed.
    pub const ECHO_FUNCTION_FAILED: Diagnostic = Diagnostic(2);
    /// 3: Neighbor Signaled Session Down.
    pub const NEIGHBOR_SIGNALED_SESSION_DOWN: Diagnostic = Diagnostic(3);
    /// 4: Forwarding Plane Reset.
    pub const FORWARDING_PLANE_RESET: Diagnostic = Diagnostic(4);
    /// 5: Path Down.
    pub const PATH_DOWN: Diagnostic = Diagnostic(5);
    /// 6: Concatenated Path Down.
    pub const CONCATENATED_PATH_DOWN: Diagnostic = Diagnostic(6);
    /// 7: Administratively Down.
    pub const ADMINISTRATIVELY_DOWN: Diagnostic = Diagnostic(7);
    /// 8: Reverse Concatenated Path Down.
    pub const REVERSE_CONCATENATED_PATH_DOWN: Diagnostic = Diagnostic(8);

    /// The diagnostic with wire value `v`, or `None` if `v` does not fit in
    /// the 5-bit field.
    pub const fn new(v: u8) -> Option<Diagnostic> {
        if v <= 0x1f { Some(Diagnostic(v)) } else { None }
    }

    /// The 5-bit wire value.
    pub const fn to_wire(self) -> u8 {
        self.0
    }

    /// Human-readable name (RFC 5880 §4.1 wording), `unassigned` for 9–31.
    pub const fn as_str(self) -> &'static str {
        match self.0 {
            0 => "no diagnostic",
            1 => "control detection time expired",
            2 => "echo function failed",
            3 => "neighbor signaled session down",
            4 => "forwarding plane reset",
            5 => "path down",
            6 => "concatenated path down",
            7 => "administratively down",
            8 => "reverse concatenated path down",
            _ => "unassigned",
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 > 8 {
            write!(f, "unassigned ({})", self.0)
        } else {
            f.write_str(self.as_str())
        }
    }
}

/// Authentication type (RFC 5880 §4.1). 0 is reserved and never decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AuthType(u8);

impl AuthType {
    /// 1: Simple Password (§4.2).
    pub const SIMPLE_PASSWORD: AuthType = AuthType(1);
    /// 2: Keyed MD5 (§4.3).
    pub const KEYED_MD5: AuthType = AuthType(2);
    /// 3: Meticulous Keyed MD5 (§4.3).
    pub const METICULOUS_KEYED_MD5: AuthType = AuthType(3);
    /// 4: Keyed SHA1 (§4.4).
    pub const KEYED_SHA1: AuthType = AuthType(4);
    /// 5: Meticulous Keyed SHA1 (§4.4).
    pub const METICULOUS_KEYED_SHA1: AuthType = AuthType(5);

    /// The type with wire value `v`; `None` for the reserved value 0.
    pub const fn new(v: u8) -> Option<AuthType> {
        if v == 0 { None } else { Some(AuthType(v)) }
    }

    /// The wire value.
    pub const fn to_wire(self) -> u8 {
        self.0
    }
}

impl fmt::Display for AuthType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            1 => f.write_str("simple password"),
            2 => f.write_str("keyed MD5"),
            3 => f.write_str("meticulous keyed MD5"),
            4 => f.write_str("keyed SHA1"),
            5 => f.write_str("meticulous keyed SHA1"),
            v => write!(f, "unassigned ({v})"),
        }
    }
}

/// The authentication section, kept as received: its header is validated,
/// its contents are not interpreted (authentication is not implemented).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AuthSection {
    /// Auth Type.
    pub auth_type: AuthType,
    /// The bytes after Auth Type and Auth Len (Auth Len − 2 of them); for
    /// every defined type the first one is the Auth Key ID.
    pub data: Vec<u8>,
}

impl AuthSection {
    /// Auth Len: the section's length including Auth Type and Auth Len.
    pub fn auth_len(&self) -> usize {
        self.data.len() + 2
    }

    /// Auth Key ID, present in every defined format (§4.2–§4.4).
    pub fn key_id(&self) -> Option<u8> {
        self.data.first().copied()
    }
}

/// A BFD Control packet (RFC 5880 §4.1). The Version is always 1, the
/// Multipoint bit always clear, the A bit is set exactly when `auth` is
/// present and Length is computed on encoding.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ControlPacket {
    /// Diag.
    pub diagnostic: Diagnostic,
    /// Sta.
    pub state: State,
    /// P: the sender requests a packet with F in reply.
    pub poll: bool,
    /// F: the sender answers a packet that had P.
    pub final_: bool,
    /// C: the sender's BFD does not share fate with its control plane.
    pub control_plane_independent: bool,
    /// D: Demand mode is active in the sender.
    pub demand: bool,
    /// Detect Mult (never 0).
    pub detect_mult: u8,
    /// My Discriminator (never 0).
    pub my_discriminator: u32,
    /// Your Discriminator (0 only in Down and AdminDown).
    pub your_discriminator: u32,
    /// Desired Min TX Interval, microseconds.
    pub desired_min_tx_us: u32,
    /// Required Min RX Interval, microseconds (0: send no periodic packets).
    pub required_min_rx_us: u32,
    /// Required Min Echo RX Interval, microseconds (0: no Echo).
    pub required_min_echo_rx_us: u32,
    /// Authentication section; present exactly when the A bit is set.
    pub auth: Option<AuthSection>,
}

impl ControlPacket {
    /// Desired Min TX Interval as a duration.
    pub fn desired_min_tx(&self) -> Duration {
        Duration::from_micros(u64::from(self.desired_min_tx_us))
    }

    /// Required Min RX Interval as a duration.
    pub fn required_min_rx(&self) -> Duration {
        Duration::from_micros(u64::from(self.required_min_rx_us))
    }

    /// The Length this packet encodes to.
    pub fn encoded_len(&self) -> usize {
        MANDATORY_LEN + self.auth.as_ref().map_or(0, AuthSection::auth_len)
    }

    /// Encode into a new buffer; see [`ControlPacket::encode_into`].
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode_into(&mut out)?;
        Ok(out)
    }

    /// Append the wire form to `out`. Fails, leaving `out` unchanged, for
    /// any packet [`decode`] would reject, so that what is sent always
    /// passes the receiver's §6.8.6 checks.
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        if self.detect_mult == 0 {
            return Err(EncodeError::ZeroDetectMult);
        }
        if self.my_discriminator == 0 {
            return Err(EncodeError::ZeroMyDiscriminator);
        }
        if self.your_discriminator == 0 && !matches!(self.state, State::Down | State::AdminDown) {
            return Err(EncodeError::ZeroYourDiscriminator { state: self.state });
        }
        if self.poll && self.final_ {
            return Err(EncodeError::PollAndFinal);
        }
        let len = self.encoded_len();
        if len > MAX_LEN {
            return Err(EncodeError::TooLong { len });
        }
        let mut flags = self.state.to_wire() << 6;
        for (set, bit) in [
            (self.poll, FLAG_POLL),
            (self.final_, FLAG_FINAL),
            (self.control_plane_independent, FLAG_CPI),
            (self.auth.is_some(), FLAG_AUTH),
            (self.demand, FLAG_DEMAND),
        ] {
            if set {
                flags |= bit;
            }
        }
        out.reserve(len);
        out.push((VERSION << 5) | self.diagnostic.to_wire());
        out.push(flags);
        out.push(self.detect_mult);
        // `len` ≤ MAX_LEN was checked above.
        out.push(len as u8);
        for v in [
            self.my_discriminator,
            self.your_discriminator,
            self.desired_min_tx_us,
            self.required_min_rx_us,
            self.required_min_echo_rx_us,
        ] {
            out.extend_from_slice(&v.to_be_bytes());
        }
        if let Some(auth) = &self.auth {
            out.push(auth.auth_type.to_wire());
            out.push(auth.auth_len() as u8);
            out.extend_from_slice(&auth.data);
        }
        Ok(())
    }
}

/// Why a received datagram is not a valid BFD Control packet (RFC 5880
/// §6.8.6 discard rules that need no session state).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Error)]
pub enum DecodeError {
    /// The UDP payload cannot hold the 24-byte mandatory section.
    #[error("truncated: {payload} bytes, the mandatory section needs 24")]
    Truncated {
        /// Payload length.
        payload: usize,
    },
    /// The version is not 1.
    #[error("unsupported version {0} (expected 1)")]
    BadVersion(u8),
    /// Length is below 24, or below 26 with the A bit set.
    #[error("Length {length} below the minimum {minimum}")]
    LengthBelowMinimum {
        /// The Length field.
        length: u8,
        /// 24, or 26 with the A bit.
        minimum: u8,
    },
    /// Length is larger than the UDP payload.
    #[error("Length {length} exceeds the {payload}-byte payload")]
    LengthExceedsPayload {
        /// The Length field.
        length: u8,
        /// Payload length.
        payload: usize,
    },
    /// Detect Mult is zero.
    #[error("Detect Mult is zero")]
    ZeroDetectMult,
    /// The Multipoint bit is set.
    #[error("Multipoint bit set")]
    Multipoint,
    /// My Discriminator is zero.
    #[error("My Discriminator is zero")]
    ZeroMyDiscriminator,
    /// Your Discriminator is zero in a state other than Down or AdminDown.
    #[error("Your Discriminator is zero in state {state}")]
    ZeroYourDiscriminator {
        /// The State field.
        state: State,
    },
    /// Both Poll and Final are set (RFC 5880 §6.5).
    #[error("both Poll and Final set")]
    PollAndFinal,
    /// The A bit is set and Auth Type is the reserved value 0.
    #[error("reserved authentication type 0")]
    ReservedAuthType,
    /// Auth Len is below 2 or runs past Length.
    #[error("Auth Len {auth_len} does not fit the {room} bytes after the mandatory section")]
    BadAuthLength {
        /// The Auth Len field.
        auth_len: u8,
        /// Length − 24.
        room: usize,
    },
}

/// Why [`ControlPacket::encode_into`] refused a packet (it would be
/// discarded by the receiver).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Error)]
pub enum EncodeError {
    /// Detect Mult is zero.
    #[error("Detect Mult is zero")]
    ZeroDetectMult,
    /// My Discriminator is zero.
    #[error("My Discriminator is zero")]
    ZeroMyDiscriminator,
    /// Your Discriminator is zero in a state other than Down or AdminDown.
    #[error("Your Discriminator is zero in state {state}")]
    ZeroYourDiscriminator {
        /// The State field.
        state: State,
    },
    /// Both Poll and Final are set.
    #[error("both Poll and Final set")]
    PollAndFinal,
    /// The authentication section makes the packet longer than 255 bytes.
    #[error("packet of {len} bytes does not fit the 8-bit Length field")]
    TooLong {
        /// The length the packet would have.
        len: usize,
    },
}

fn be32(b: &[u8], at: usize) -> u32 {
    let mut v = [0u8; 4];
    if let Some(s) = b.get(at..at + 4) {
        v.copy_from_slice(s);
    }
    u32::from_be_bytes(v)
}

/// Decode the UDP payload of a BFD Control datagram, applying the RFC 5880
/// §6.8.6 checks that need no session state, in the RFC's order.
pub fn decode(payload: &[u8]) -> Result<ControlPacket, DecodeError> {
    let [b0, b1, detect_mult, length, ..] = *payload else {
        return Err(DecodeError::Truncated {
            payload: payload.len(),
        });
    };
    if payload.len() < MANDATORY_LEN {
        return Err(DecodeError::Truncated {
            payload: payload.len(),
        });
    }
    let version = b0 >> 5;
    if version != VERSION {
        return Err(DecodeError::BadVersion(version));
    }
    let has_auth = b1 & FLAG_AUTH != 0;
    let minimum = if has_auth {
        MIN_LEN_WITH_AUTH
    } else {
        MANDATORY_LEN
    };
    if usize::from(length) < minimum {
        return Err(DecodeError::LengthBelowMinimum {
            length,
            minimum: minimum as u8,
        });
    }
    if usize::from(length) > payload.len() {
        return Err(DecodeError::LengthExceedsPayload {
            length,
            payload: payload.len(),
        });
    }
    if detect_mult == 0 {
        return Err(DecodeError::ZeroDetectMult);
    }
    if b1 & FLAG_MULTIPOINT != 0 {
        return Err(DecodeError::Multipoint);
    }
    let my_discriminator = be32(payload, 4);
    if my_discriminator == 0 {
        return Err(DecodeError::ZeroMyDiscriminator);
    }
    let state = State::from_wire(b1 >> 6);
    let your_discriminator = be32(payload, 8);
    if your_discriminator == 0 && !matches!(state, State::Down | State::AdminDown) {
        return Err(DecodeError::ZeroYourDiscriminator { state });
    }
    let poll = b1 & FLAG_POLL != 0;
    let final_ = b1 & FLAG_FINAL != 0;
    if poll && final_ {
        return Err(DecodeError::PollAndFinal);
    }
    let auth = if has_auth {
        Some(decode_auth(&payload[..usize::from(length)])?)
    } else {
        None
    };
    Ok(ControlPacket {
        diagnostic: Diagnostic(b0 & 0x1f),
        state,
        poll,
        final_,
        control_plane_independent: b1 & FLAG_CPI != 0,
        demand: b1 & FLAG_DEMAND != 0,
        detect_mult,
        my_discriminator,
        your_discriminator,
        desired_min_tx_us: be32(payload, 12),
        required_min_rx_us: be32(payload, 16),
        required_min_echo_rx_us: be32(payload, 20),
        auth,
    })
}

/// The authentication section of a packet of exactly Length bytes (≥ 26).
fn decode_auth(packet: &[u8]) -> Result<AuthSection, DecodeError> {
    let section = packet.get(MANDATORY_LEN..).unwrap_or_default();
    let [auth_type, auth_len, ..] = *section else {
        return Err(DecodeError::BadAuthLength {
            auth_len: 0,
            room: section.len(),
        });
    };
    let Some(auth_type) = AuthType::new(auth_type) else {
        return Err(DecodeError::ReservedAuthType);
    };
    let data = section
        .get(2..usize::from(auth_len))
        .ok_or(DecodeError::BadAuthLength {
            auth_len,
            room: section.len(),
        })?;
    Ok(AuthSection {
        auth_type,
        data: data.to_vec(),
    })
}
