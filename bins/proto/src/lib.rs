//! Wire types and the authenticated protocol between the sinew SDK and `sinew-init`, the
//! agent that runs as PID 1 in every guest.
//!
//! # The protocol in brief
//!
//! * **Framing** ([`frame`]): over TCP, each frame is a big-endian `u32` length (at most
//!   [`MAX_FRAME_LEN`], 16 MiB) and a body: one [`FrameKind`] byte, then the payload. Control
//!   frames hold JSON; data, stdout and stderr frames hold raw bytes, so files and command
//!   output are never re-encoded.
//! * **Handshake** ([`handshake`]): mutual HMAC-SHA256 challenge-response with the per-lab
//!   [`Secret`], which never crosses the wire. The agent refuses clients that do not know it
//!   and clients refuse agents that do not.
//! * **Session** ([`channel`]): every later frame ends with an HMAC-SHA256 tag over direction,
//!   sequence number, kind and payload, under a per-connection key. An injected, altered,
//!   replayed or reordered frame ends the connection.
//! * **Requests** ([`Request`]), one at a time per connection, each answered by the frames its
//!   documentation describes and one final [`Response`].
//!
//! The SDK uses [`AgentClient`]; the agent uses [`handshake::accept`] and a [`Channel`].

#![warn(missing_docs)]

pub mod channel;
pub mod client;
pub mod digest;
pub mod discovery;
pub mod facts;
pub mod frame;
pub mod handshake;
#[cfg(feature = "kv-client")]
pub mod kv;
pub mod mac;
pub mod names;
pub mod overlay;
pub mod remote_error;
pub mod request;
pub mod response;
#[cfg(feature = "sched")]
pub mod sched;
pub mod secret;
pub mod service;
pub mod termination;

pub use channel::{Channel, ChannelError, MAX_PAYLOAD_LEN};
pub use client::{
    AgentClient, ClientError, ExecOutput, OutputStream, PutOutcome, RemoteFile, ServiceChange,
};
pub use digest::{DigestParseError, Sha256Digest};
pub use facts::{Facts, ImageLabel, InterfaceAddress, NetInterface};
pub use frame::{Frame, FrameError, FrameKind, DATA_CHUNK_LEN, MAX_FRAME_LEN};
pub use handshake::{HandshakeError, ServerHello, PROTOCOL_VERSION};
pub use remote_error::{ErrorKind, RemoteError};
pub use request::{ExecRequest, PutRequest, Request};
pub use response::{ExitStatus, FileInfo, FileStat, Response};
pub use secret::{Secret, SecretError, SECRET_LEN};
pub use service::{RestartPolicy, ServiceSpec, ServiceState, ServiceStatus};
pub use termination::Termination;

/// Default TCP port of the agent in a guest.
pub const DEFAULT_AGENT_PORT: u16 = 7070;
