//! Mutual challenge-response authentication, run once at the start of every connection.
//!
//! 1. The agent (server) sends `Hello { version, agent, nonce: Ns }`.
//! 2. The client checks the version and answers `ClientAuth { version, nonce: Nc, proof }` with
//!    `proof = HMAC(secret, "sinew-agent-v1 client" || Ns || Nc)`.
//! 3. The agent checks the proof in constant time. If it is wrong it answers `Refused` and
//!    closes; otherwise it answers `ServerAuth { proof }` with
//!    `proof = HMAC(secret, "sinew-agent-v1 server" || Nc || Ns)`, which the client checks in
//!    turn, so a client never talks to an agent that does not know the secret.
//!
//! Both ends then derive the session key `HMAC(secret, "sinew-agent-v1 session" || Ns || Nc)`
//! and continue on a [`Channel`]. Nonces are 32 fresh random bytes on each side, so neither
//! proof can be replayed on another connection. The secret itself never crosses the wire.

use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite, BufStream};

use crate::channel::{hmac_with_key, Channel, Role};
use crate::frame::{read_body, write_body, FrameError, FrameKind};
use crate::remote_error::{ErrorKind, RemoteError};
use crate::secret::Secret;

/// Version of the agent protocol. Client and agent must speak the same one.
pub const PROTOCOL_VERSION: u32 = 1;

const CLIENT_PROOF_LABEL: &[u8] = b"sinew-agent-v1 client";
const SERVER_PROOF_LABEL: &[u8] = b"sinew-agent-v1 server";
const SESSION_KEY_LABEL: &[u8] = b"sinew-agent-v1 session";

type Nonce = [u8; 32];
type Proof = [u8; 32];

/// The messages of the handshake, sent as unauthenticated control frames.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum HandshakeMessage {
    Hello {
        version: u32,
        agent: String,
        #[serde(with = "hex::serde")]
        nonce: Nonce,
    },
    ClientAuth {
        version: u32,
        #[serde(with = "hex::serde")]
        nonce: Nonce,
        #[serde(with = "hex::serde")]
        proof: Proof,
    },
    ServerAuth {
        #[serde(with = "hex::serde")]
        proof: Proof,
    },
    Refused {
        error: RemoteError,
    },
}

/// What the agent said about itself in its hello.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerHello {
    /// Protocol version the agent speaks (equal to [`PROTOCOL_VERSION`] once connected).
    pub version: u32,
    /// The agent's software version, e.g. `"0.1.0"`.
    pub agent: String,
}

/// Why a handshake failed.
#[derive(Debug, Error)]
pub enum HandshakeError {
    /// Framing or I/O failed.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The peer sent something other than the expected handshake message.
    #[error("unexpected handshake message: {0}")]
    Unexpected(String),
    /// The two ends speak different protocol versions.
    #[error("protocol version mismatch: this end speaks v{ours}, the peer speaks v{theirs}")]
    VersionMismatch {
        /// The version this end speaks.
        ours: u32,
        /// The version the peer announced.
        theirs: u32,
    },
    /// (Agent side) the client's proof was wrong: it does not know the secret. The client
    /// was told and the connection should be closed.
    #[error("client failed authentication")]
    ClientUnauthorized,
    /// (Client side) the agent refused this client; the agent's reason is enclosed.
    #[error("agent refused the connection: {0}")]
    Refused(RemoteError),
    /// (Client side) the agent's proof was wrong: it does not know the secret.
    #[error("agent failed to prove it knows the secret")]
    ServerUnauthorized,
    /// The operating system could not supply random bytes for a nonce.
    #[error("cannot get random bytes for a nonce: {0}")]
    Random(getrandom::Error),
}

fn fresh_nonce() -> Result<Nonce, HandshakeError> {
    let mut nonce = [0u8; 32];
    getrandom::fill(&mut nonce).map_err(HandshakeError::Random)?;
    Ok(nonce)
}

fn keyed_digest(secret: &Secret, label: &[u8], first: &Nonce, second: &Nonce) -> [u8; 32] {
    use hmac::Mac;
    let mut mac = hmac_with_key(secret.as_bytes());
    mac.update(label);
    mac.update(first);
    mac.update(second);
    mac.finalize().into_bytes().into()
}

fn proof_matches(expected: &Proof, received: &Proof) -> bool {
    expected.ct_eq(received).into()
}

async fn send_message<S: AsyncWrite + Unpin>(
    stream: &mut S,
    message: &HandshakeMessage,
) -> Result<(), HandshakeError> {
    let json = serde_json::to_vec(message)
        .map_err(|err| HandshakeError::Unexpected(format!("cannot encode: {err}")))?;
    write_body(stream, &[&[FrameKind::Control as u8], &json]).await?;
    Ok(())
}

async fn recv_message<S: AsyncRead + Unpin>(
    stream: &mut S,
) -> Result<HandshakeMessage, HandshakeError> {
    let body = read_body(stream).await?;
    if body.first() != Some(&(FrameKind::Control as u8)) {
        return Err(HandshakeError::Unexpected("not a control frame".to_owned()));
    }
    serde_json::from_slice(&body[1..]).map_err(|err| HandshakeError::Unexpected(err.to_string()))
}

async fn refuse<S: AsyncWrite + Unpin>(stream: &mut S, kind: ErrorKind, message: String) {
    let refusal = HandshakeMessage::Refused {
        error: RemoteError::new(kind, message),
    };
    // The peer is being turned away; whether it hears why does not change the outcome.
    let _ = send_message(stream, &refusal).await;
}

/// Runs the agent's side of the handshake on a freshly accepted stream.
///
/// `agent` is the agent's software version, shown to clients. On failure the client has
/// been told why where that is safe, and the stream should be dropped. Callers should bound
/// this with a timeout so that silent peers cannot hold resources.
pub async fn accept<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    secret: &Secret,
    agent: &str,
) -> Result<Channel<S>, HandshakeError> {
    let mut stream = BufStream::new(stream);
    let server_nonce = fresh_nonce()?;
    let hello = HandshakeMessage::Hello {
        version: PROTOCOL_VERSION,
        agent: agent.to_owned(),
        nonce: server_nonce,
    };
    send_message(&mut stream, &hello).await?;
    let (version, client_nonce, proof) = match recv_message(&mut stream).await {
        Ok(HandshakeMessage::ClientAuth {
            version,
            nonce,
            proof,
        }) => (version, nonce, proof),
        Ok(other) => {
            let message = format!("expected client_auth, got {}", message_name(&other));
            refuse(&mut stream, ErrorKind::BadRequest, message.clone()).await;
            return Err(HandshakeError::Unexpected(message));
        }
        Err(HandshakeError::Unexpected(reason)) => {
            refuse(
                &mut stream,
                ErrorKind::BadRequest,
                format!("malformed handshake: {reason}"),
            )
            .await;
            return Err(HandshakeError::Unexpected(reason));
        }
        Err(err) => return Err(err),
    };
    if version != PROTOCOL_VERSION {
        let message = format!(
            "agent speaks protocol version {PROTOCOL_VERSION}, client speaks version {version}"
        );
        refuse(&mut stream, ErrorKind::VersionMismatch, message).await;
        return Err(HandshakeError::VersionMismatch {
            ours: PROTOCOL_VERSION,
            theirs: version,
        });
    }
    let expected = keyed_digest(secret, CLIENT_PROOF_LABEL, &server_nonce, &client_nonce);
    if !proof_matches(&expected, &proof) {
        refuse(
            &mut stream,
            ErrorKind::Unauthorized,
            "authentication failed".to_owned(),
        )
        .await;
        return Err(HandshakeError::ClientUnauthorized);
    }
    let proof = keyed_digest(secret, SERVER_PROOF_LABEL, &client_nonce, &server_nonce);
    send_message(&mut stream, &HandshakeMessage::ServerAuth { proof }).await?;
    let key = keyed_digest(secret, SESSION_KEY_LABEL, &server_nonce, &client_nonce);
    Ok(Channel::new(stream, key, Role::Server))
}

/// Runs the client's side of the handshake on a freshly connected stream.
///
/// Succeeds only if the agent proved it knows `secret`. Returns the channel and what the
/// agent said about itself.
pub async fn connect<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    secret: &Secret,
) -> Result<(Channel<S>, ServerHello), HandshakeError> {
    let mut stream = BufStream::new(stream);
    let (hello, server_nonce) = match recv_message(&mut stream).await? {
        HandshakeMessage::Hello {
            version,
            agent,
            nonce,
        } => (ServerHello { version, agent }, nonce),
        HandshakeMessage::Refused { error } => return Err(HandshakeError::Refused(error)),
        other => {
            return Err(HandshakeError::Unexpected(format!(
                "expected hello, got {}",
                message_name(&other)
            )))
        }
    };
    if hello.version != PROTOCOL_VERSION {
        return Err(HandshakeError::VersionMismatch {
            ours: PROTOCOL_VERSION,
            theirs: hello.version,
        });
    }
    let client_nonce = fresh_nonce()?;
    let proof = keyed_digest(secret, CLIENT_PROOF_LABEL, &server_nonce, &client_nonce);
    let auth = HandshakeMessage::ClientAuth {
        version: PROTOCOL_VERSION,
        nonce: client_nonce,
        proof,
    };
    send_message(&mut stream, &auth).await?;
    match recv_message(&mut stream).await? {
        HandshakeMessage::ServerAuth { proof } => {
            let expected = keyed_digest(secret, SERVER_PROOF_LABEL, &client_nonce, &server_nonce);
            if !proof_matches(&expected, &proof) {
                return Err(HandshakeError::ServerUnauthorized);
            }
        }
        HandshakeMessage::Refused { error } => return Err(HandshakeError::Refused(error)),
        other => {
            return Err(HandshakeError::Unexpected(format!(
                "expected server_auth, got {}",
                message_name(&other)
            )))
        }
    }
    let key = keyed_digest(secret, SESSION_KEY_LABEL, &server_nonce, &client_nonce);
    Ok((Channel::new(stream, key, Role::Client), hello))
}

fn message_name(message: &HandshakeMessage) -> &'static str {
    match message {
        HandshakeMessage::Hello { .. } => "hello",
        HandshakeMessage::ClientAuth { .. } => "client_auth",
        HandshakeMessage::ServerAuth { .. } => "server_auth",
        HandshakeMessage::Refused { .. } => "refused",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::ChannelError;
    use crate::frame::FrameKind;
    use tokio::io::{AsyncReadExt, DuplexStream};

    fn secrets() -> (Secret, Secret) {
        (Secret::generate().unwrap(), Secret::generate().unwrap())
    }

    async fn pair(
        server_secret: &Secret,
        client_secret: &Secret,
    ) -> (
        Result<Channel<DuplexStream>, HandshakeError>,
        Result<(Channel<DuplexStream>, ServerHello), HandshakeError>,
    ) {
        let (a, b) = tokio::io::duplex(64 * 1024);
        tokio::join!(accept(a, server_secret, "test"), connect(b, client_secret))
    }

    #[tokio::test]
    async fn handshake_succeeds_and_frames_flow_both_ways() {
        let (secret, _) = secrets();
        let (server, client) = pair(&secret, &secret).await;
        let mut server = server.unwrap();
        let (mut client, hello) = client.unwrap();
        assert_eq!(hello.agent, "test");
        assert_eq!(hello.version, PROTOCOL_VERSION);
        client.send(FrameKind::Control, b"ping").await.unwrap();
        let frame = server.recv().await.unwrap();
        assert_eq!(
            (frame.kind, frame.payload.as_slice()),
            (FrameKind::Control, &b"ping"[..])
        );
        server.send(FrameKind::Stdout, b"pong").await.unwrap();
        let frame = client.recv().await.unwrap();
        assert_eq!(
            (frame.kind, frame.payload.as_slice()),
            (FrameKind::Stdout, &b"pong"[..])
        );
    }

    #[tokio::test]
    async fn wrong_secret_is_refused_on_both_sides() {
        let (server_secret, client_secret) = secrets();
        let (server, client) = pair(&server_secret, &client_secret).await;
        assert!(matches!(server, Err(HandshakeError::ClientUnauthorized)));
        match client {
            Err(HandshakeError::Refused(error)) => assert_eq!(error.kind, ErrorKind::Unauthorized),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    /// An impostor agent that does not know the secret but accepts any client.
    async fn impostor(stream: DuplexStream, fake: &Secret) {
        let mut stream = BufStream::new(stream);
        let server_nonce = [7u8; 32];
        let hello = HandshakeMessage::Hello {
            version: PROTOCOL_VERSION,
            agent: "impostor".into(),
            nonce: server_nonce,
        };
        send_message(&mut stream, &hello).await.unwrap();
        let HandshakeMessage::ClientAuth { nonce, .. } = recv_message(&mut stream).await.unwrap()
        else {
            panic!("expected client auth");
        };
        let proof = keyed_digest(fake, SERVER_PROOF_LABEL, &nonce, &server_nonce);
        send_message(&mut stream, &HandshakeMessage::ServerAuth { proof })
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn client_refuses_an_agent_without_the_secret() {
        let (secret, fake) = secrets();
        let (a, b) = tokio::io::duplex(64 * 1024);
        let (_, client) = tokio::join!(impostor(a, &fake), connect(b, &secret));
        assert!(matches!(client, Err(HandshakeError::ServerUnauthorized)));
    }

    #[tokio::test]
    async fn version_mismatch_is_explained() {
        let (secret, _) = secrets();
        let (a, b) = tokio::io::duplex(64 * 1024);
        let old_client = async {
            let mut stream = BufStream::new(b);
            let HandshakeMessage::Hello { .. } = recv_message(&mut stream).await.unwrap() else {
                panic!("expected hello");
            };
            let auth = HandshakeMessage::ClientAuth {
                version: PROTOCOL_VERSION + 1,
                nonce: [1; 32],
                proof: [2; 32],
            };
            send_message(&mut stream, &auth).await.unwrap();
            recv_message(&mut stream).await.unwrap()
        };
        let (server, reply) = tokio::join!(accept(a, &secret, "test"), old_client);
        assert!(matches!(
            server,
            Err(HandshakeError::VersionMismatch { .. })
        ));
        let HandshakeMessage::Refused { error } = reply else {
            panic!("expected a refusal");
        };
        assert_eq!(error.kind, ErrorKind::VersionMismatch);
        assert!(error.message.contains("version"), "{}", error.message);
    }

    #[tokio::test]
    async fn garbage_instead_of_client_auth_is_refused() {
        let (secret, _) = secrets();
        let (a, mut b) = tokio::io::duplex(64 * 1024);
        let garbage = async {
            let mut header = [0u8; 4];
            b.read_exact(&mut header).await.unwrap();
            let mut hello = vec![0u8; u32::from_be_bytes(header) as usize];
            b.read_exact(&mut hello).await.unwrap();
            write_body(&mut b, &[b"\x01{not json"]).await.unwrap();
        };
        let (server, ()) = tokio::join!(accept(a, &secret, "test"), garbage);
        assert!(matches!(server, Err(HandshakeError::Unexpected(_))));
    }

    /// A relay between client and agent that can drop, alter, repeat or reorder frames.
    struct ManInTheMiddle {
        client_side: DuplexStream,
        server_side: DuplexStream,
    }

    impl ManInTheMiddle {
        async fn take_from_client(&mut self) -> Vec<u8> {
            read_body(&mut self.client_side).await.unwrap()
        }

        async fn take_from_server(&mut self) -> Vec<u8> {
            read_body(&mut self.server_side).await.unwrap()
        }

        async fn give_to_server(&mut self, body: &[u8]) {
            write_body(&mut self.server_side, &[body]).await.unwrap();
        }

        async fn give_to_client(&mut self, body: &[u8]) {
            write_body(&mut self.client_side, &[body]).await.unwrap();
        }
    }

    async fn relayed_pair(
        secret: &Secret,
    ) -> (Channel<DuplexStream>, Channel<DuplexStream>, ManInTheMiddle) {
        let (client_end, client_side) = tokio::io::duplex(64 * 1024);
        let (server_end, server_side) = tokio::io::duplex(64 * 1024);
        let mut mitm = ManInTheMiddle {
            client_side,
            server_side,
        };
        let relay_handshake = async {
            let hello = mitm.take_from_server().await;
            mitm.give_to_client(&hello).await;
            let auth = mitm.take_from_client().await;
            mitm.give_to_server(&auth).await;
            let proof = mitm.take_from_server().await;
            mitm.give_to_client(&proof).await;
        };
        let (server, client, ()) = tokio::join!(
            accept(server_end, secret, "test"),
            connect(client_end, secret),
            relay_handshake
        );
        (server.unwrap(), client.unwrap().0, mitm)
    }

    #[tokio::test]
    async fn relayed_frames_pass_unchanged() {
        let (secret, _) = secrets();
        let (mut server, mut client, mut mitm) = relayed_pair(&secret).await;
        client.send(FrameKind::Data, b"payload").await.unwrap();
        let body = mitm.take_from_client().await;
        mitm.give_to_server(&body).await;
        assert_eq!(server.recv().await.unwrap().payload, b"payload");
    }

    #[tokio::test]
    async fn tampered_frame_is_rejected() {
        let (secret, _) = secrets();
        let (mut server, mut client, mut mitm) = relayed_pair(&secret).await;
        client.send(FrameKind::Control, b"hello").await.unwrap();
        let mut body = mitm.take_from_client().await;
        body[1] ^= 1;
        mitm.give_to_server(&body).await;
        assert!(matches!(server.recv().await, Err(ChannelError::BadTag)));
    }

    #[tokio::test]
    async fn changed_kind_is_rejected() {
        let (secret, _) = secrets();
        let (mut server, mut client, mut mitm) = relayed_pair(&secret).await;
        client.send(FrameKind::Stdout, b"hello").await.unwrap();
        let mut body = mitm.take_from_client().await;
        body[0] = FrameKind::Stderr as u8;
        mitm.give_to_server(&body).await;
        assert!(matches!(server.recv().await, Err(ChannelError::BadTag)));
    }

    #[tokio::test]
    async fn replayed_frame_is_rejected() {
        let (secret, _) = secrets();
        let (mut server, mut client, mut mitm) = relayed_pair(&secret).await;
        client.send(FrameKind::Control, b"hello").await.unwrap();
        let body = mitm.take_from_client().await;
        mitm.give_to_server(&body).await;
        mitm.give_to_server(&body).await;
        assert_eq!(server.recv().await.unwrap().payload, b"hello");
        assert!(matches!(server.recv().await, Err(ChannelError::BadTag)));
    }

    #[tokio::test]
    async fn reordered_frames_are_rejected() {
        let (secret, _) = secrets();
        let (mut server, mut client, mut mitm) = relayed_pair(&secret).await;
        client.send(FrameKind::Control, b"one").await.unwrap();
        client.send(FrameKind::Control, b"two").await.unwrap();
        let _first = mitm.take_from_client().await;
        let second = mitm.take_from_client().await;
        mitm.give_to_server(&second).await;
        assert!(matches!(server.recv().await, Err(ChannelError::BadTag)));
    }

    #[tokio::test]
    async fn reflected_and_injected_frames_are_rejected() {
        let (secret, _) = secrets();
        let (_server, mut client, mut mitm) = relayed_pair(&secret).await;
        client.send(FrameKind::Control, b"mirror").await.unwrap();
        let body = mitm.take_from_client().await;
        mitm.give_to_client(&body).await;
        assert!(matches!(client.recv().await, Err(ChannelError::BadTag)));

        let (mut server, _client, mut mitm) = relayed_pair(&secret).await;
        let mut forged = vec![FrameKind::Control as u8];
        forged.extend_from_slice(br#"{"op":"poweroff"}"#);
        forged.extend_from_slice(&[0u8; 32]);
        mitm.give_to_server(&forged).await;
        assert!(matches!(server.recv().await, Err(ChannelError::BadTag)));
    }

    #[tokio::test]
    async fn truncated_session_frame_is_rejected() {
        let (secret, _) = secrets();
        let (mut server, _client, mut mitm) = relayed_pair(&secret).await;
        mitm.give_to_server(b"\x01short").await;
        assert!(matches!(server.recv().await, Err(ChannelError::BadTag)));
    }
}
