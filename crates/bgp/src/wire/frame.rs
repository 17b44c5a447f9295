//! Message framing for a TCP byte stream (RFC 4271 §4.1, §6.1; RFC 8654).
//!
//! [`FrameCodec`] only splits the stream into whole messages and checks the
//! fixed header; [`super::decode`] interprets the bodies.

use super::context::{HEADER_LEN, MAX_MESSAGE_LEN};
use super::notification as n;
use super::types::Notification;
use bytes::{Buf, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

/// A framing failure.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// A bad header: send this Message Header Error and close.
    #[error("bad message header: {}", .0.describe())]
    Header(Notification),
}

/// tokio-util codec that yields whole BGP messages (header included) as
/// [`Bytes`] after validating the marker, length and type.
#[derive(Debug, Clone)]
pub struct FrameCodec {
    max_len: usize,
}

impl Default for FrameCodec {
    fn default() -> Self {
        FrameCodec::new(MAX_MESSAGE_LEN)
    }
}

impl FrameCodec {
    /// `max_len` is clamped to 19..=65535.
    pub fn new(max_len: usize) -> Self {
        FrameCodec {
            max_len: max_len.clamp(HEADER_LEN, usize::from(u16::MAX)),
        }
    }

    /// Raise the limit after RFC 8654 is negotiated (use
    /// [`super::WireContext::max_message_len`]).
    pub fn set_max_len(&mut self, max_len: usize) {
        *self = FrameCodec::new(max_len);
    }

    pub fn max_len(&self) -> usize {
        self.max_len
    }
}

/// Validates a message header (RFC 4271 §6.1). Returns the message length.
/// `buf` must hold at least [`HEADER_LEN`] bytes.
pub(crate) fn check_header(buf: &[u8], max_len: usize) -> Result<usize, Notification> {
    if buf[..16].iter().any(|&b| b != 0xff) {
        return Err(Notification::new(
            n::MESSAGE_HEADER_ERROR,
            n::HDR_CONNECTION_NOT_SYNCHRONIZED,
            Vec::new(),
        ));
    }
    let len = u16::from_be_bytes([buf[16], buf[17]]);
    if usize::from(len) < HEADER_LEN || usize::from(len) > max_len {
        return Err(Notification::new(
            n::MESSAGE_HEADER_ERROR,
            n::HDR_BAD_MESSAGE_LENGTH,
            len.to_be_bytes().to_vec(),
        ));
    }
    let ty = buf[18];
    if !(1..=5).contains(&ty) {
        return Err(Notification::new(
            n::MESSAGE_HEADER_ERROR,
            n::HDR_BAD_MESSAGE_TYPE,
            vec![ty],
        ));
    }
    Ok(usize::from(len))
}

impl Decoder for FrameCodec {
    type Item = Bytes;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        // Reject a broken marker as soon as its bytes arrive.
        let seen = src.len().min(16);
        if src[..seen].iter().any(|&b| b != 0xff) {
            return Err(FrameError::Header(Notification::new(
                n::MESSAGE_HEADER_ERROR,
                n::HDR_CONNECTION_NOT_SYNCHRONIZED,
                Vec::new(),
            )));
        }
        if src.len() < HEADER_LEN {
            src.reserve(HEADER_LEN - src.len());
            return Ok(None);
        }
        let len = check_header(&src[..HEADER_LEN], self.max_len).map_err(FrameError::Header)?;
        if src.len() < len {
            src.reserve(len - src.len());
            return Ok(None);
        }
        Ok(Some(src.split_to(len).freeze()))
    }
}

impl Encoder<Bytes> for FrameCodec {
    type Error = std::io::Error;

    fn encode(&mut self, item: Bytes, dst: &mut BytesMut) -> Result<(), std::io::Error> {
        dst.reserve(item.len());
        dst.extend_from_slice(item.chunk());
        Ok(())
    }
}
