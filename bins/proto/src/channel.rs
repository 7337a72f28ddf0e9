//! The authenticated session that follows a successful handshake.
//!
//! Every frame carries an HMAC-SHA256 tag keyed by the session key, computed over the
//! direction, the frame's sequence number in that direction, its kind and its payload.
//! Sequence numbers are not sent: each end counts, so an injected, replayed, reordered or
//! reflected frame fails the check and ends the connection.

use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite, BufStream};

use crate::frame::{read_body, write_body, Frame, FrameError, FrameKind, MAX_FRAME_LEN};

pub(crate) type HmacSha256 = Hmac<Sha256>;

/// Length of the authentication tag that ends every frame of a session.
pub(crate) const TAG_LEN: usize = 32;

/// Largest payload that fits in one session frame (kind byte and tag take the rest).
pub const MAX_PAYLOAD_LEN: usize = MAX_FRAME_LEN - 1 - TAG_LEN;

/// Makes an HMAC-SHA256 keyed by 32 bytes.
///
/// The key is zero-padded to the 64-byte block size, which is exactly what HMAC (RFC 2104)
/// does to short keys, so the result equals HMAC with the 32-byte key; building it from a
/// block-sized key is the constructor that cannot fail.
pub(crate) fn hmac_with_key(key: &[u8; 32]) -> HmacSha256 {
    let mut block = [0u8; 64];
    block[..32].copy_from_slice(key);
    <HmacSha256 as hmac::digest::KeyInit>::new(&block.into())
}

/// Which end of the connection this is; decides which direction byte each side uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Client,
    Server,
}

const CLIENT_TO_SERVER: u8 = 0x01;
const SERVER_TO_CLIENT: u8 = 0x02;

impl Role {
    fn outgoing(self) -> u8 {
        match self {
            Role::Client => CLIENT_TO_SERVER,
            Role::Server => SERVER_TO_CLIENT,
        }
    }

    fn incoming(self) -> u8 {
        match self {
            Role::Client => SERVER_TO_CLIENT,
            Role::Server => CLIENT_TO_SERVER,
        }
    }
}

/// Why a session frame could not be sent or received. Every one of these leaves the
/// connection unusable.
#[derive(Debug, Error)]
pub enum ChannelError {
    /// Framing or I/O failed.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// A frame's tag did not match: it was tampered with, injected, replayed or reordered.
    #[error("frame failed authentication (tampered, injected, replayed or reordered)")]
    BadTag,
    /// An authenticated frame had a kind byte this version does not know.
    #[error("unknown frame kind {0:#04x}")]
    UnknownKind(u8),
    /// A message could not be encoded as JSON.
    #[error("cannot encode message: {0}")]
    Encode(#[source] serde_json::Error),
    /// A payload was larger than [`MAX_PAYLOAD_LEN`].
    #[error("payload of {0} bytes is over the limit of {MAX_PAYLOAD_LEN}")]
    PayloadTooLarge(usize),
    /// The sequence number would wrap (after 2^64 frames; a sign of a bug).
    #[error("sequence number exhausted")]
    SequenceExhausted,
}

/// An authenticated, ordered stream of frames over `S`, made by
/// [`crate::handshake::accept`] or [`crate::handshake::connect`].
pub struct Channel<S> {
    stream: BufStream<S>,
    key: [u8; 32],
    role: Role,
    send_seq: u64,
    recv_seq: u64,
}

impl<S> std::fmt::Debug for Channel<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("role", &self.role)
            .field("send_seq", &self.send_seq)
            .field("recv_seq", &self.recv_seq)
            .finish_non_exhaustive()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Channel<S> {
    pub(crate) fn new(stream: BufStream<S>, key: [u8; 32], role: Role) -> Self {
        Self {
            stream,
            key,
            role,
            send_seq: 0,
            recv_seq: 0,
        }
    }

    fn tag(&self, direction: u8, seq: u64, kind: u8, payload: &[u8]) -> [u8; TAG_LEN] {
        let mut mac = hmac_with_key(&self.key);
        mac.update(&[direction]);
        mac.update(&seq.to_be_bytes());
        mac.update(&[kind]);
        mac.update(payload);
        mac.finalize().into_bytes().into()
    }

    /// Sends one frame of `kind` carrying `payload` (at most [`MAX_PAYLOAD_LEN`] bytes).
    pub async fn send(&mut self, kind: FrameKind, payload: &[u8]) -> Result<(), ChannelError> {
        if payload.len() > MAX_PAYLOAD_LEN {
            return Err(ChannelError::PayloadTooLarge(payload.len()));
        }
        let seq = self.send_seq;
        self.send_seq = seq.checked_add(1).ok_or(ChannelError::SequenceExhausted)?;
        let tag = self.tag(self.role.outgoing(), seq, kind as u8, payload);
        write_body(&mut self.stream, &[&[kind as u8], payload, &tag]).await?;
        Ok(())
    }

    /// Sends `message` as a JSON control frame.
    pub async fn send_control<T: Serialize>(&mut self, message: &T) -> Result<(), ChannelError> {
        let json = serde_json::to_vec(message).map_err(ChannelError::Encode)?;
        self.send(FrameKind::Control, &json).await
    }

    /// Receives the next frame and checks its tag and sequence number.
    pub async fn recv(&mut self) -> Result<Frame, ChannelError> {
        let mut body = read_body(&mut self.stream).await?;
        if body.len() < 1 + TAG_LEN {
            return Err(ChannelError::BadTag);
        }
        let tag = body.split_off(body.len() - TAG_LEN);
        let seq = self.recv_seq;
        let expected = self.tag(self.role.incoming(), seq, body[0], &body[1..]);
        if !bool::from(expected.ct_eq(tag.as_slice())) {
            return Err(ChannelError::BadTag);
        }
        self.recv_seq = seq.checked_add(1).ok_or(ChannelError::SequenceExhausted)?;
        let kind = FrameKind::from_byte(body[0]).ok_or(ChannelError::UnknownKind(body[0]))?;
        body.remove(0);
        Ok(Frame {
            kind,
            payload: body,
        })
    }

    /// The underlying stream, e.g. to read the peer's address.
    pub fn get_ref(&self) -> &S {
        self.stream.get_ref()
    }
}
