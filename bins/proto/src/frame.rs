//! Length-prefixed frames, the unit in which both ends read and write the TCP stream.
//!
//! On the wire a frame is a big-endian `u32` length followed by that many bytes of body.
//! The body starts with one [`FrameKind`] byte; the rest is the payload, followed after the
//! handshake by a 32-byte authentication tag (see [`crate::channel`]).

use std::io;

use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest body a frame may announce: 16 MiB. A larger announced length is refused before
/// anything is allocated.
pub const MAX_FRAME_LEN: usize = 16 * 1024 * 1024;

/// Size of the chunks in which file contents are sent: well under [`MAX_FRAME_LEN`] so a
/// transfer interleaves nicely with other traffic, large enough that framing costs nothing.
pub const DATA_CHUNK_LEN: usize = 256 * 1024;

/// What a frame's payload holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameKind {
    /// A JSON control message: a handshake message, a [`crate::Request`] or a [`crate::Response`].
    Control = 1,
    /// Raw file contents (put and get).
    Data = 2,
    /// Raw bytes a command wrote to its standard output.
    Stdout = 3,
    /// Raw bytes a command wrote to its standard error.
    Stderr = 4,
}

impl FrameKind {
    pub(crate) fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            1 => Some(Self::Control),
            2 => Some(Self::Data),
            3 => Some(Self::Stdout),
            4 => Some(Self::Stderr),
            _ => None,
        }
    }
}

/// One received frame, after its authentication tag was checked and removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// What the payload holds.
    pub kind: FrameKind,
    /// The payload bytes.
    pub payload: Vec<u8>,
}

/// Why a frame could not be read or written.
#[derive(Debug, Error)]
pub enum FrameError {
    /// The peer closed the connection cleanly between two frames.
    #[error("connection closed by peer")]
    Closed,
    /// The peer announced a body larger than [`MAX_FRAME_LEN`].
    #[error("peer announced a frame of {0} bytes, over the limit of {MAX_FRAME_LEN}")]
    TooLarge(usize),
    /// A body was too large to send.
    #[error("cannot send a frame of {0} bytes, over the limit of {MAX_FRAME_LEN}")]
    TooLargeToSend(usize),
    /// A body had no kind byte.
    #[error("peer sent an empty frame")]
    Empty,
    /// Reading or writing the stream failed (a connection closed mid-frame shows up here).
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Reads one frame body. Returns [`FrameError::Closed`] if the stream ends before the first
/// byte of the length.
pub(crate) async fn read_body<R: AsyncRead + Unpin>(reader: &mut R) -> Result<Vec<u8>, FrameError> {
    let mut header = [0u8; 4];
    if reader.read(&mut header[..1]).await? == 0 {
        return Err(FrameError::Closed);
    }
    reader.read_exact(&mut header[1..]).await?;
    let len = u32::from_be_bytes(header) as usize;
    if len > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge(len));
    }
    if len == 0 {
        return Err(FrameError::Empty);
    }
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body).await?;
    Ok(body)
}

/// Writes one frame whose body is the concatenation of `parts`, then flushes.
pub(crate) async fn write_body<W: AsyncWrite + Unpin>(
    writer: &mut W,
    parts: &[&[u8]],
) -> Result<(), FrameError> {
    let len: usize = parts.iter().map(|part| part.len()).sum();
    if len > MAX_FRAME_LEN {
        return Err(FrameError::TooLargeToSend(len));
    }
    let len = u32::try_from(len).map_err(|_| FrameError::TooLargeToSend(len))?;
    writer.write_all(&len.to_be_bytes()).await?;
    for part in parts {
        writer.write_all(part).await?;
    }
    writer.flush().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn round_trip() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        write_body(&mut a, &[b"\x01", b"hello"]).await.unwrap();
        assert_eq!(read_body(&mut b).await.unwrap(), b"\x01hello");
        drop(a);
        assert!(matches!(read_body(&mut b).await, Err(FrameError::Closed)));
    }

    #[tokio::test]
    async fn oversize_length_is_refused_without_reading_the_body() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        let announced = u32::try_from(MAX_FRAME_LEN + 1).unwrap();
        a.write_all(&announced.to_be_bytes()).await.unwrap();
        assert!(
            matches!(read_body(&mut b).await, Err(FrameError::TooLarge(n)) if n == MAX_FRAME_LEN + 1)
        );
        a.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
        assert!(matches!(
            read_body(&mut b).await,
            Err(FrameError::TooLarge(_))
        ));
    }

    #[tokio::test]
    async fn oversize_body_is_not_sent() {
        let (mut a, _b) = tokio::io::duplex(1024);
        let big = vec![0u8; MAX_FRAME_LEN];
        assert!(matches!(
            write_body(&mut a, &[b"\x02", &big]).await,
            Err(FrameError::TooLargeToSend(_))
        ));
    }

    #[tokio::test]
    async fn truncated_frame_is_an_io_error() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        a.write_all(&10u32.to_be_bytes()).await.unwrap();
        a.write_all(b"abc").await.unwrap();
        drop(a);
        assert!(matches!(read_body(&mut b).await, Err(FrameError::Io(_))));
    }
}
