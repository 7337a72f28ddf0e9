//! The async client the SDK and tests use to talk to an agent.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest as _, Sha256};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::TcpStream;

use crate::channel::{Channel, ChannelError};
use crate::digest::Sha256Digest;
use crate::facts::Facts;
use crate::frame::{FrameError, FrameKind, DATA_CHUNK_LEN};
use crate::handshake::{self, HandshakeError};
use crate::remote_error::{ErrorKind, RemoteError};
use crate::request::{ExecRequest, PutRequest, Request};
use crate::response::{ExitStatus, FileInfo, FileStat, Response};
use crate::secret::Secret;
use crate::service::{ServiceSpec, ServiceStatus};

/// Why a client operation failed.
#[derive(Debug, Error)]
pub enum ClientError {
    /// The TCP connection could not be made.
    #[error("cannot connect to agent at {addr}: {source}")]
    Connect {
        /// Where the agent was expected.
        addr: SocketAddr,
        /// What the operating system said.
        source: io::Error,
    },
    /// Connecting and authenticating took longer than allowed.
    #[error("agent at {addr} did not complete the handshake within {after:?}")]
    Timeout {
        /// Where the agent was expected.
        addr: SocketAddr,
        /// The time allowed.
        after: Duration,
    },
    /// The agent refused this client during the handshake: the secret is wrong
    /// ([`ErrorKind::Unauthorized`]) or the versions differ ([`ErrorKind::VersionMismatch`]).
    #[error("agent refused the connection: {0}")]
    Refused(RemoteError),
    /// The agent announced a protocol version this client does not speak.
    #[error("agent speaks protocol version {agent}, this client speaks version {client}")]
    VersionMismatch {
        /// The version this client speaks.
        client: u32,
        /// The version the agent announced.
        agent: u32,
    },
    /// The peer failed to prove it knows the lab secret; nothing was sent to it.
    #[error("the peer failed to prove it knows the lab secret; refusing to talk to it")]
    Impostor,
    /// The agent closed the connection.
    #[error("agent closed the connection")]
    Closed,
    /// Reading or writing the connection failed.
    #[error("connection to agent failed: {0}")]
    Io(#[source] io::Error),
    /// The agent sent something this client did not expect (or that failed authentication).
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The agent carried out the request and reports that it failed. The connection stays
    /// usable.
    #[error("{}: {}", .0.kind, .0.message)]
    Remote(RemoteError),
    /// An earlier request on this connection failed mid-way or was cancelled (its future was
    /// dropped), so the stream is in an unknown state. Connect again.
    #[error("connection is unusable after an interrupted request; connect again")]
    Unusable,
    /// A local file could not be read or written.
    #[error("local file {}: {source}", path.display())]
    LocalFile {
        /// The local file.
        path: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },
}

impl ClientError {
    /// Whether the two ends do not share the lab secret: the agent refused this client's
    /// proof, or the peer could not prove its own. Retrying with the same secret cannot help.
    pub fn is_refused_by_auth(&self) -> bool {
        matches!(self, ClientError::Refused(error) if error.kind == ErrorKind::Unauthorized)
            || matches!(self, ClientError::Impostor)
    }

    /// Whether the connection is gone or unusable ([`ClientError::Closed`],
    /// [`ClientError::Io`], [`ClientError::Unusable`]): a new connection may succeed where
    /// this one failed. Note that the failed request may or may not have taken effect.
    pub fn is_connection_lost(&self) -> bool {
        matches!(
            self,
            ClientError::Closed | ClientError::Io(_) | ClientError::Unusable
        )
    }

    /// The class of the agent's error, for [`ClientError::Remote`] and [`ClientError::Refused`].
    pub fn remote_kind(&self) -> Option<ErrorKind> {
        match self {
            ClientError::Remote(error) | ClientError::Refused(error) => Some(error.kind),
            _ => None,
        }
    }
}

impl From<ChannelError> for ClientError {
    fn from(error: ChannelError) -> Self {
        match error {
            ChannelError::Frame(FrameError::Closed) => ClientError::Closed,
            ChannelError::Frame(FrameError::Io(error))
                if error.kind() == io::ErrorKind::UnexpectedEof =>
            {
                ClientError::Closed
            }
            ChannelError::Frame(FrameError::Io(error)) => ClientError::Io(error),
            other => ClientError::Protocol(other.to_string()),
        }
    }
}

impl From<HandshakeError> for ClientError {
    fn from(error: HandshakeError) -> Self {
        match error {
            HandshakeError::Frame(error) => ChannelError::Frame(error).into(),
            HandshakeError::Refused(error) => ClientError::Refused(error),
            HandshakeError::VersionMismatch { ours, theirs } => ClientError::VersionMismatch {
                client: ours,
                agent: theirs,
            },
            HandshakeError::ServerUnauthorized => ClientError::Impostor,
            other => ClientError::Protocol(other.to_string()),
        }
    }
}

/// Which output stream of a command a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutputStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// Everything a command printed, and how it ended. See [`AgentClient::exec_output`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    /// How it ended.
    pub status: ExitStatus,
    /// Its standard output.
    pub stdout: Vec<u8>,
    /// Its standard error.
    pub stderr: Vec<u8>,
}

/// The result of a put.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PutOutcome {
    /// `false` if the file already had this content and mode, so no data was sent.
    pub changed: bool,
    /// Digest of the file now on the agent's machine.
    pub sha256: Sha256Digest,
}

/// A file read from the agent's machine. See [`AgentClient::get`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteFile {
    /// Its contents.
    pub data: Vec<u8>,
    /// Its size, mode and digest (already checked against `data`).
    pub info: FileInfo,
}

/// The result of starting or stopping a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceChange {
    /// `false` if the service was already in the requested state.
    pub changed: bool,
    /// The service after the request.
    pub status: ServiceStatus,
}

/// What the client needs from a byte stream; any TCP stream, Unix socket or in-memory pipe.
trait Transport: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin> Transport for T {}

/// An authenticated connection to one agent.
///
/// Requests run one at a time (methods take `&mut self`); open several clients for
/// parallelism. Only the handshake is bounded by a timeout: wrap calls in
/// [`tokio::time::timeout`] to bound them, knowing that a cancelled call leaves the
/// client [`ClientError::Unusable`].
pub struct AgentClient {
    channel: Channel<Box<dyn Transport>>,
    agent_version: String,
    unusable: bool,
}

impl std::fmt::Debug for AgentClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentClient")
            .field("agent_version", &self.agent_version)
            .field("unusable", &self.unusable)
            .finish_non_exhaustive()
    }
}

impl AgentClient {
    /// Connects to the agent at `addr` and authenticates both ways with `secret`.
    ///
    /// `timeout` bounds connecting plus the handshake. Fails with [`ClientError::Refused`] if
    /// the agent does not accept the secret and with [`ClientError::Impostor`] if the peer
    /// does not know it.
    pub async fn connect(
        addr: SocketAddr,
        secret: &Secret,
        timeout: Duration,
    ) -> Result<Self, ClientError> {
        let attempt = async {
            let stream = TcpStream::connect(addr)
                .await
                .map_err(|source| ClientError::Connect { addr, source })?;
            stream
                .set_nodelay(true)
                .map_err(|source| ClientError::Connect { addr, source })?;
            Self::from_stream(stream, secret).await
        };
        tokio::time::timeout(timeout, attempt)
            .await
            .map_err(|_| ClientError::Timeout {
                addr,
                after: timeout,
            })?
    }

    /// Authenticates over an already connected stream (for tests, or transports other than
    /// TCP). No timeout is applied.
    pub async fn from_stream<S>(stream: S, secret: &Secret) -> Result<Self, ClientError>
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let stream: Box<dyn Transport> = Box::new(stream);
        let (channel, hello) = handshake::connect(stream, secret).await?;
        Ok(Self {
            channel,
            agent_version: hello.agent,
            unusable: false,
        })
    }

    /// The agent's software version, as announced in the handshake.
    pub fn agent_version(&self) -> &str {
        &self.agent_version
    }

    /// Runs a command, calling `on_output` with each chunk of its standard output and error
    /// as the agent forwards them, and returns how it ended.
    ///
    /// A command that cannot be started fails with [`ClientError::Remote`] of kind
    /// [`ErrorKind::ExecFailed`], naming the program. A command that exits non-zero is not an
    /// error: check [`ExitStatus::success`].
    pub async fn exec(
        &mut self,
        request: &ExecRequest,
        mut on_output: impl FnMut(OutputStream, &[u8]),
    ) -> Result<ExitStatus, ClientError> {
        self.begin()?;
        let result = async {
            self.channel
                .send_control(&Request::Exec(request.clone()))
                .await?;
            loop {
                let frame = self.channel.recv().await?;
                match frame.kind {
                    FrameKind::Stdout => on_output(OutputStream::Stdout, &frame.payload),
                    FrameKind::Stderr => on_output(OutputStream::Stderr, &frame.payload),
                    FrameKind::Control => {
                        return match decode(&frame.payload)? {
                            Response::Exited(status) => Ok(status),
                            other => Err(unexpected("exec", &other)),
                        }
                    }
                    FrameKind::Data => {
                        return Err(ClientError::Protocol("data frame during exec".into()))
                    }
                }
            }
        }
        .await;
        self.finish(result)
    }

    /// Runs a command and collects its output. See [`AgentClient::exec`].
    pub async fn exec_output(&mut self, request: &ExecRequest) -> Result<ExecOutput, ClientError> {
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        let status = self
            .exec(request, |stream, chunk| match stream {
                OutputStream::Stdout => stdout.extend_from_slice(chunk),
                OutputStream::Stderr => stderr.extend_from_slice(chunk),
            })
            .await?;
        Ok(ExecOutput {
            status,
            stdout,
            stderr,
        })
    }

    /// Stores `data` at `path` with permission bits `mode`, atomically (written to a temporary
    /// file beside it, synced, renamed). Missing parent directories are created.
    ///
    /// If the file already has this content and mode nothing is sent and the outcome says
    /// `changed: false`.
    pub async fn put(
        &mut self,
        path: &str,
        mode: u32,
        data: &[u8],
    ) -> Result<PutOutcome, ClientError> {
        self.begin()?;
        let result = async {
            let sha256 = Sha256Digest::of(data);
            if !self
                .start_put(path, mode, data.len() as u64, sha256)
                .await?
            {
                return Ok(PutOutcome {
                    changed: false,
                    sha256,
                });
            }
            for chunk in data.chunks(DATA_CHUNK_LEN) {
                self.channel.send(FrameKind::Data, chunk).await?;
            }
            self.finish_put(sha256).await
        }
        .await;
        self.finish(result)
    }

    /// Like [`AgentClient::put`], streaming from the local file `local` instead of memory.
    pub async fn put_file(
        &mut self,
        path: &str,
        mode: u32,
        local: &Path,
    ) -> Result<PutOutcome, ClientError> {
        self.begin()?;
        let result = async {
            let local_error = |source| ClientError::LocalFile {
                path: local.to_owned(),
                source,
            };
            let (size, sha256) = digest_file(local).await.map_err(local_error)?;
            if !self.start_put(path, mode, size, sha256).await? {
                return Ok(PutOutcome {
                    changed: false,
                    sha256,
                });
            }
            let file = tokio::fs::File::open(local).await.map_err(local_error)?;
            let mut file = file.take(size);
            let mut buffer = vec![0u8; DATA_CHUNK_LEN];
            let mut sent = 0u64;
            while sent < size {
                let n = file.read(&mut buffer).await.map_err(local_error)?;
                if n == 0 {
                    return Err(local_error(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "file shrank while it was being sent",
                    )));
                }
                self.channel.send(FrameKind::Data, &buffer[..n]).await?;
                sent += n as u64;
            }
            self.finish_put(sha256).await
        }
        .await;
        self.finish(result)
    }

    /// Sends the put request; returns whether the agent wants the data.
    async fn start_put(
        &mut self,
        path: &str,
        mode: u32,
        size: u64,
        sha256: Sha256Digest,
    ) -> Result<bool, ClientError> {
        let request = Request::Put(PutRequest {
            path: path.to_owned(),
            mode,
            size,
            sha256,
        });
        self.channel.send_control(&request).await?;
        match self.recv_response().await? {
            Response::Unchanged => Ok(false),
            Response::Ready => Ok(true),
            other => Err(unexpected("put", &other)),
        }
    }

    async fn finish_put(&mut self, sha256: Sha256Digest) -> Result<PutOutcome, ClientError> {
        match self.recv_response().await? {
            Response::Stored { sha256: stored } if stored == sha256 => Ok(PutOutcome {
                changed: true,
                sha256,
            }),
            Response::Stored { sha256: stored } => Err(ClientError::Protocol(format!(
                "agent stored digest {stored}, expected {sha256}"
            ))),
            other => Err(unexpected("put", &other)),
        }
    }

    /// Reads the regular file at `path`. The digest the agent reports is checked against the
    /// data received.
    pub async fn get(&mut self, path: &str) -> Result<RemoteFile, ClientError> {
        let mut data = Vec::new();
        let info = self
            .get_with(path, |chunk| {
                data.extend_from_slice(chunk);
                Ok(())
            })
            .await?;
        Ok(RemoteFile { data, info })
    }

    /// Reads the regular file at `path` into the local file `local` (created or truncated,
    /// synced, and removed again if the transfer fails). The digest the agent reports is
    /// checked against the data received.
    pub async fn get_to_file(&mut self, path: &str, local: &Path) -> Result<FileInfo, ClientError> {
        let local_error = |source| ClientError::LocalFile {
            path: local.to_owned(),
            source,
        };
        let file = std::fs::File::create(local).map_err(local_error)?;
        let mut writer = io::BufWriter::new(file);
        let result = async {
            let info = self
                .get_with(path, |chunk| {
                    io::Write::write_all(&mut writer, chunk).map_err(local_error)
                })
                .await?;
            let file = writer
                .into_inner()
                .map_err(|error| local_error(error.into_error()))?;
            file.sync_all().map_err(local_error)?;
            Ok(info)
        }
        .await;
        if result.is_err() {
            // Best effort: a partial copy must not be mistaken for the file.
            let _ = std::fs::remove_file(local);
        }
        result
    }

    /// Streams the file at `path` into `sink`. A sink error fails the call and leaves the
    /// connection unusable (the rest of the file is still on the way).
    async fn get_with(
        &mut self,
        path: &str,
        mut sink: impl FnMut(&[u8]) -> Result<(), ClientError>,
    ) -> Result<FileInfo, ClientError> {
        self.begin()?;
        let result = async {
            self.channel
                .send_control(&Request::Get { path: path.to_owned() })
                .await?;
            let mut hasher = Sha256::new();
            let mut size = 0u64;
            loop {
                let frame = self.channel.recv().await?;
                match frame.kind {
                    FrameKind::Data => {
                        hasher.update(&frame.payload);
                        size += frame.payload.len() as u64;
                        sink(&frame.payload)?;
                    }
                    FrameKind::Control => {
                        let info = match decode(&frame.payload)? {
                            Response::File(info) => info,
                            other => return Err(unexpected("get", &other)),
                        };
                        let received = Sha256Digest::from(<[u8; 32]>::from(hasher.finalize()));
                        if info.size != size || info.sha256 != received {
                            return Err(ClientError::Protocol(format!(
                                "{path}: agent announced {} bytes with digest {}, received {size} bytes with digest {received}",
                                info.size, info.sha256
                            )));
                        }
                        return Ok(info);
                    }
                    FrameKind::Stdout | FrameKind::Stderr => {
                        return Err(ClientError::Protocol("output frame during get".into()))
                    }
                }
            }
        }
        .await;
        self.finish(result)
    }

    /// Describes what is at `path` (following symbolic links), or `None` if nothing is.
    pub async fn stat(&mut self, path: &str) -> Result<Option<FileStat>, ClientError> {
        match self
            .call(&Request::Stat {
                path: path.to_owned(),
            })
            .await?
        {
            Response::Stat { stat } => Ok(stat),
            other => Err(unexpected("stat", &other)),
        }
    }

    /// Facts about the agent's machine: host name, architecture, kernel, uptime, CPUs, memory,
    /// network interfaces.
    pub async fn facts(&mut self) -> Result<Facts, ClientError> {
        match self.call(&Request::Facts).await? {
            Response::Facts(facts) => Ok(facts),
            other => Err(unexpected("facts", &other)),
        }
    }

    /// Starts a supervised service. If it already runs with the same spec nothing happens and
    /// the change says `changed: false`; if it runs with another spec it is stopped and
    /// started again. A program that cannot be started fails with
    /// [`ErrorKind::ExecFailed`].
    pub async fn service_start(
        &mut self,
        spec: &ServiceSpec,
    ) -> Result<ServiceChange, ClientError> {
        match self.call(&Request::ServiceStart(spec.clone())).await? {
            Response::Service { changed, status } => Ok(ServiceChange { changed, status }),
            other => Err(unexpected("service_start", &other)),
        }
    }

    /// Stops a service (SIGTERM to its process group, SIGKILL after a grace period of 5 s)
    /// and waits until it is gone. Stopping a stopped service says `changed: false`; an
    /// unknown name fails with [`ErrorKind::UnknownService`].
    pub async fn service_stop(&mut self, name: &str) -> Result<ServiceChange, ClientError> {
        match self
            .call(&Request::ServiceStop {
                name: name.to_owned(),
            })
            .await?
        {
            Response::Service { changed, status } => Ok(ServiceChange { changed, status }),
            other => Err(unexpected("service_stop", &other)),
        }
    }

    /// Reports one service; an unknown name fails with [`ErrorKind::UnknownService`].
    pub async fn service_status(&mut self, name: &str) -> Result<ServiceStatus, ClientError> {
        match self
            .call(&Request::ServiceStatus {
                name: name.to_owned(),
            })
            .await?
        {
            Response::ServiceStatus(status) => Ok(status),
            other => Err(unexpected("service_status", &other)),
        }
    }

    /// Reports every service the agent knows, sorted by name.
    pub async fn service_list(&mut self) -> Result<Vec<ServiceStatus>, ClientError> {
        match self.call(&Request::ServiceList).await? {
            Response::Services { services } => Ok(services),
            other => Err(unexpected("service_list", &other)),
        }
    }

    /// The last `tail` lines the service wrote to stdout and stderr, oldest first. The agent
    /// keeps the last 1000 lines in memory; the full log is in `/var/log/sinew/<name>.log` on
    /// the machine.
    pub async fn service_logs(
        &mut self,
        name: &str,
        tail: usize,
    ) -> Result<Vec<String>, ClientError> {
        let request = Request::ServiceLogs {
            name: name.to_owned(),
            tail,
        };
        match self.call(&request).await? {
            Response::Logs { lines } => Ok(lines),
            other => Err(unexpected("service_logs", &other)),
        }
    }

    /// Asks the agent to power the machine off and returns once it acknowledged. The agent
    /// then stops services (up to 5 s grace), terminates other processes, syncs and powers
    /// off; the connection closes on the way, so later calls fail with
    /// [`ClientError::Closed`]. An agent in host mode exits instead.
    pub async fn poweroff(&mut self) -> Result<(), ClientError> {
        match self.call(&Request::Poweroff).await? {
            Response::PoweringOff => Ok(()),
            other => Err(unexpected("poweroff", &other)),
        }
    }

    /// Sends a request answered by a single control message.
    async fn call(&mut self, request: &Request) -> Result<Response, ClientError> {
        self.begin()?;
        let result = async {
            self.channel.send_control(request).await?;
            self.recv_response().await
        }
        .await;
        self.finish(result)
    }

    /// Receives a control message; an error response becomes [`ClientError::Remote`].
    async fn recv_response(&mut self) -> Result<Response, ClientError> {
        let frame = self.channel.recv().await?;
        if frame.kind != FrameKind::Control {
            return Err(ClientError::Protocol(format!(
                "expected a control message, got a {:?} frame",
                frame.kind
            )));
        }
        decode(&frame.payload)
    }

    fn begin(&mut self) -> Result<(), ClientError> {
        if self.unusable {
            return Err(ClientError::Unusable);
        }
        // Cleared by `finish`; stays set if the request's future is dropped half-way.
        self.unusable = true;
        Ok(())
    }

    fn finish<T>(&mut self, result: Result<T, ClientError>) -> Result<T, ClientError> {
        // A remote error ends its request cleanly; anything else leaves the stream in an
        // unknown state.
        self.unusable =
            matches!(result, Err(ref error) if !matches!(error, ClientError::Remote(_)));
        result
    }
}

/// Decodes a control message; an error response becomes [`ClientError::Remote`].
fn decode(payload: &[u8]) -> Result<Response, ClientError> {
    match serde_json::from_slice(payload) {
        Ok(Response::Error(error)) => Err(ClientError::Remote(error)),
        Ok(response) => Ok(response),
        Err(error) => Err(ClientError::Protocol(format!(
            "malformed response: {error}"
        ))),
    }
}

fn unexpected(operation: &str, response: &Response) -> ClientError {
    ClientError::Protocol(format!("unexpected response to {operation}: {response:?}"))
}

/// Size and digest of a local file, computed off the async threads.
async fn digest_file(path: &Path) -> io::Result<(u64, Sha256Digest)> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || Sha256Digest::of_file(&path))
        .await
        .map_err(io::Error::other)?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Frame;
    use crate::termination::Termination;
    use tokio::io::DuplexStream;

    /// A scripted agent: accepts one client and hands the channel to `script`.
    async fn scripted<F, Fut>(
        secret: &Secret,
        script: F,
    ) -> (AgentClient, tokio::task::JoinHandle<()>)
    where
        F: FnOnce(Channel<DuplexStream>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let (a, b) = tokio::io::duplex(1 << 20);
        let server_secret = secret.clone();
        let server = tokio::spawn(async move {
            let channel = handshake::accept(a, &server_secret, "scripted")
                .await
                .unwrap();
            script(channel).await;
        });
        let client = AgentClient::from_stream(b, secret).await.unwrap();
        (client, server)
    }

    async fn recv_request(channel: &mut Channel<DuplexStream>) -> Request {
        let Frame { kind, payload } = channel.recv().await.unwrap();
        assert_eq!(kind, FrameKind::Control);
        serde_json::from_slice(&payload).unwrap()
    }

    #[tokio::test]
    async fn put_of_matching_file_sends_no_data() {
        let secret = Secret::generate().unwrap();
        let (mut client, server) = scripted(&secret, |mut channel| async move {
            let Request::Put(put) = recv_request(&mut channel).await else {
                panic!("expected put")
            };
            assert_eq!(put.sha256, Sha256Digest::of(b"same"));
            channel.send_control(&Response::Unchanged).await.unwrap();
            // The next frame must be the next request, not data.
            assert_eq!(recv_request(&mut channel).await, Request::Facts);
        })
        .await;
        let outcome = client.put("/etc/x", 0o644, b"same").await.unwrap();
        assert!(!outcome.changed);
        assert_eq!(outcome.sha256, Sha256Digest::of(b"same"));
        let _ = client.facts().await;
        server.await.unwrap();
    }

    #[tokio::test]
    async fn put_streams_chunks_after_ready() {
        let secret = Secret::generate().unwrap();
        let data: Vec<u8> = (0..=u8::MAX)
            .cycle()
            .take(DATA_CHUNK_LEN * 2 + 10)
            .collect();
        let expected = data.clone();
        let (mut client, server) = scripted(&secret, move |mut channel| async move {
            let Request::Put(put) = recv_request(&mut channel).await else {
                panic!("expected put")
            };
            channel.send_control(&Response::Ready).await.unwrap();
            let mut received = Vec::new();
            while (received.len() as u64) < put.size {
                let frame = channel.recv().await.unwrap();
                assert_eq!(frame.kind, FrameKind::Data);
                received.extend_from_slice(&frame.payload);
            }
            assert_eq!(received, expected);
            channel
                .send_control(&Response::Stored { sha256: put.sha256 })
                .await
                .unwrap();
        })
        .await;
        let outcome = client.put("/srv/blob", 0o600, &data).await.unwrap();
        assert!(outcome.changed);
        server.await.unwrap();
    }

    #[tokio::test]
    async fn exec_streams_output_then_status() {
        let secret = Secret::generate().unwrap();
        let (mut client, server) = scripted(&secret, |mut channel| async move {
            let Request::Exec(exec) = recv_request(&mut channel).await else {
                panic!("expected exec")
            };
            assert_eq!(exec.argv, ["echo", "hi"]);
            channel.send(FrameKind::Stdout, b"hi\n").await.unwrap();
            channel.send(FrameKind::Stderr, b"warn\n").await.unwrap();
            let status = ExitStatus {
                termination: Termination::Exited { code: 0 },
                duration: Duration::from_millis(3),
                timed_out: false,
            };
            channel
                .send_control(&Response::Exited(status))
                .await
                .unwrap();
        })
        .await;
        let output = client
            .exec_output(&ExecRequest::new(["echo", "hi"]))
            .await
            .unwrap();
        assert_eq!(output.stdout, b"hi\n");
        assert_eq!(output.stderr, b"warn\n");
        assert!(output.status.success());
        server.await.unwrap();
    }

    #[tokio::test]
    async fn remote_errors_keep_the_connection_usable() {
        let secret = Secret::generate().unwrap();
        let (mut client, server) = scripted(&secret, |mut channel| async move {
            recv_request(&mut channel).await;
            let error = RemoteError::new(ErrorKind::UnknownService, "unknown service: web");
            channel.send_control(&Response::Error(error)).await.unwrap();
            recv_request(&mut channel).await;
            channel
                .send_control(&Response::Services { services: vec![] })
                .await
                .unwrap();
        })
        .await;
        let error = client.service_status("web").await.unwrap_err();
        assert_eq!(error.remote_kind(), Some(ErrorKind::UnknownService));
        assert_eq!(error.to_string(), "unknown service: unknown service: web");
        assert!(client.service_list().await.unwrap().is_empty());
        server.await.unwrap();
    }

    #[tokio::test]
    async fn cancelled_request_makes_the_client_unusable() {
        let secret = Secret::generate().unwrap();
        let (mut client, _server) = scripted(&secret, |mut channel| async move {
            recv_request(&mut channel).await;
            std::future::pending::<()>().await;
        })
        .await;
        let cancelled = tokio::time::timeout(Duration::from_millis(20), client.facts()).await;
        assert!(cancelled.is_err());
        let error = client.facts().await.unwrap_err();
        assert!(matches!(error, ClientError::Unusable));
        assert!(error.is_connection_lost());
    }

    #[tokio::test]
    async fn get_checks_the_announced_digest() {
        let secret = Secret::generate().unwrap();
        let (mut client, server) = scripted(&secret, |mut channel| async move {
            recv_request(&mut channel).await;
            channel.send(FrameKind::Data, b"abc").await.unwrap();
            let info = FileInfo {
                size: 3,
                mode: 0o644,
                sha256: Sha256Digest::of(b"abd"),
            };
            channel.send_control(&Response::File(info)).await.unwrap();
        })
        .await;
        assert!(matches!(
            client.get("/f").await,
            Err(ClientError::Protocol(_))
        ));
        server.await.unwrap();
    }

    #[tokio::test]
    async fn wrong_secret_is_refused() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let server_secret = Secret::generate().unwrap();
        let server =
            tokio::spawn(async move { handshake::accept(a, &server_secret, "x").await.is_err() });
        let error = AgentClient::from_stream(b, &Secret::generate().unwrap())
            .await
            .unwrap_err();
        assert_eq!(error.remote_kind(), Some(ErrorKind::Unauthorized));
        assert!(error.is_refused_by_auth());
        assert!(server.await.unwrap());
    }

    #[tokio::test]
    async fn connect_reports_refused_port_and_timeout() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let secret = Secret::generate().unwrap();
        let error = AgentClient::connect(addr, &secret, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(error, ClientError::Connect { .. }), "{error}");

        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = silent.local_addr().unwrap();
        let error = AgentClient::connect(addr, &secret, Duration::from_millis(100))
            .await
            .unwrap_err();
        assert!(matches!(error, ClientError::Timeout { .. }), "{error}");
    }
}
