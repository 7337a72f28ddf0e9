//! The agent's TCP server: authenticates each connection, then serves its requests in turn.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sinew_proto::{
    handshake, Channel, ChannelError, ErrorKind, FrameError, FrameKind, HandshakeError,
    RemoteError, Request, Response, Secret,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::exec::Launcher;
use crate::flow::Flow;
use crate::services::Services;
use crate::shutdown::Reason;
use crate::{facts, files};

/// How long an unauthenticated peer may take to complete the handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Everything requests act on.
#[derive(Debug)]
pub struct Agent {
    /// The lab secret clients must prove they know.
    pub secret: Secret,
    /// Starts commands.
    pub launcher: Launcher,
    /// The supervised services.
    pub services: Services,
    /// Where a `Poweroff` request goes.
    pub shutdown: mpsc::Sender<Reason>,
}

/// Serves `agent` on `listener` until the first shutdown reason arrives on `reasons` (the
/// agent itself holds a sender, so this waits for a real reason), and returns it.
pub async fn serve_until_shutdown(
    listener: TcpListener,
    agent: Agent,
    mut reasons: mpsc::Receiver<Reason>,
) -> Option<Reason> {
    tokio::spawn(serve(listener, Arc::new(agent)));
    let reason = reasons.recv().await;
    if let Some(reason) = &reason {
        tracing::info!(%reason, "shutting down");
    }
    reason
}

/// Accepts connections forever, serving each on its own task.
pub async fn serve(listener: TcpListener, agent: Arc<Agent>) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                tokio::spawn(connection(Arc::clone(&agent), stream, peer));
            }
            Err(error) => {
                // Typically EMFILE or ECONNABORTED: transient; keep serving.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn connection(agent: Arc<Agent>, stream: TcpStream, peer: SocketAddr) {
    // Small frames (prompts, exit statuses) must not wait for Nagle.
    let _ = stream.set_nodelay(true);
    let accepted = tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        handshake::accept(stream, &agent.secret, env!("CARGO_PKG_VERSION")),
    )
    .await;
    let mut channel = match accepted {
        Ok(Ok(channel)) => channel,
        Ok(Err(HandshakeError::Frame(FrameError::Closed))) => return,
        Ok(Err(error)) => {
            tracing::warn!(%peer, %error, "connection refused");
            return;
        }
        Err(_) => {
            tracing::warn!(%peer, "handshake timed out");
            return;
        }
    };
    tracing::debug!(%peer, "client authenticated");
    loop {
        let frame = match channel.recv().await {
            Ok(frame) => frame,
            Err(ChannelError::Frame(FrameError::Closed)) => return,
            Err(ChannelError::Frame(FrameError::Io(error))) => {
                tracing::debug!(%peer, %error, "connection lost");
                return;
            }
            Err(error) => {
                // The stream is out of step; say why (best effort) and close.
                tracing::warn!(%peer, %error, "closing connection");
                let error = RemoteError::new(ErrorKind::BadRequest, error.to_string());
                let _ = channel.send_control(&Response::Error(error)).await;
                return;
            }
        };
        let request = match frame.kind {
            FrameKind::Control => serde_json::from_slice::<Request>(&frame.payload)
                .map_err(|error| format!("malformed request: {error}")),
            other => Err(format!("expected a request, got a {other:?} frame")),
        };
        let flow = match request {
            Ok(request) => handle(&agent, request, &mut channel).await,
            Err(message) => {
                let error = RemoteError::new(ErrorKind::BadRequest, message);
                channel
                    .send_control(&Response::Error(error))
                    .await
                    .map(|()| Flow::Continue)
            }
        };
        match flow {
            Ok(Flow::Continue) => {}
            Ok(Flow::Close) => return,
            Err(error) => {
                tracing::warn!(%peer, %error, "connection failed");
                return;
            }
        }
    }
}

async fn handle(
    agent: &Agent,
    request: Request,
    channel: &mut Channel<TcpStream>,
) -> Result<Flow, ChannelError> {
    let response = match request {
        Request::Exec(exec) => {
            tracing::debug!(argv = ?exec.argv, "exec");
            agent.launcher.serve(exec, channel).await?;
            return Ok(Flow::Continue);
        }
        Request::Put(put) => return files::serve_put(put, channel).await,
        Request::Get { path } => {
            files::serve_get(&path, channel).await?;
            return Ok(Flow::Continue);
        }
        Request::Stat { path } => files::stat(&path)
            .await
            .map(|stat| Response::Stat { stat })
            .map_err(RemoteError::from),
        Request::Facts => facts::gather()
            .map(Response::Facts)
            .map_err(RemoteError::from),
        Request::ServiceStart(spec) => agent
            .services
            .start(spec)
            .await
            .map(|(changed, status)| Response::Service { changed, status })
            .map_err(RemoteError::from),
        Request::ServiceStop { name } => agent
            .services
            .stop(&name)
            .await
            .map(|(changed, status)| Response::Service { changed, status })
            .map_err(RemoteError::from),
        Request::ServiceStatus { name } => agent
            .services
            .status(&name)
            .map(Response::ServiceStatus)
            .map_err(RemoteError::from),
        Request::ServiceList => Ok(Response::Services {
            services: agent.services.list(),
        }),
        Request::ServiceLogs { name, tail } => agent
            .services
            .logs(&name, tail)
            .map(|lines| Response::Logs { lines })
            .map_err(RemoteError::from),
        Request::Poweroff => {
            channel.send_control(&Response::PoweringOff).await?;
            // A full channel means a shutdown is already under way.
            let _ = agent.shutdown.try_send(Reason::Requested);
            return Ok(Flow::Close);
        }
    };
    let response = response.unwrap_or_else(Response::Error);
    channel.send_control(&response).await?;
    Ok(Flow::Continue)
}
