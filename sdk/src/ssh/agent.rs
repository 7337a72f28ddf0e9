//! sinew's agent on a remote host, started over its SSH connection and reached through
//! it: one SSH connection per host, and the agent's speed for each call after that.
//!
//! The agent (`sinew-init agent`) listens on the host's loopback with a fresh secret; each
//! agent connection is an SSH `direct-tcpip` channel to it. It runs under a wrapper that
//! holds an SSH channel open and, once that channel's input ends (the playbook closed it,
//! exited, or lost the connection), stops the agent and removes its directory.

use std::time::Duration;

use russh::ChannelMsg;
use sha2::{Digest, Sha256};
use sinew_proto::{AgentClient, Secret};
use tokio::sync::Mutex;

use super::connection::Connection;
use super::SshError;

/// How long the agent may take to say where it listens.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// Starts the agent in `$1` (which holds `sinew-init` and `agent.key`), prints its
/// `listening` line, and stops it and removes `$1` when stdin ends.
const WRAPPER: &str = r#"dir=$1
"$dir/sinew-init" agent --listen 127.0.0.1:0 --secret-file "$dir/agent.key" </dev/null 2>"$dir/agent.log" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf -- "$dir"' EXIT
cat >/dev/null"#;

/// A running remote agent.
pub(crate) struct RemoteAgent {
    /// Where it listens, on the host's loopback.
    pub(crate) port: u16,
    /// Its directory on the host.
    pub(crate) dir: String,
    secret: Secret,
    /// The wrapper's channel: closing it stops the agent.
    wrapper: Mutex<Option<russh::Channel<russh::client::Msg>>>,
    /// The connection to it the host's calls share.
    pub(crate) client: Mutex<Option<AgentClient>>,
}

impl Connection {
    /// Makes a directory on the host, puts `binary` (sinew-init for its machine, whose hex
    /// digest is `sha256`) and a fresh secret there, and starts the agent.
    pub(crate) async fn start_agent(
        &self,
        binary: &[u8],
        sha256: &str,
    ) -> Result<RemoteAgent, SshError> {
        let out = self
            .run_ok(
                "making the agent's directory",
                &["mktemp", "-d", "-t", "sinew-agent.XXXXXX"],
                None,
            )
            .await?;
        let dir = String::from_utf8_lossy(&out).trim().to_string();
        let secret = Secret::generate()
            .map_err(|e| SshError::Refused(format!("no secret for the agent: {e}")))?;
        self.put(&format!("{dir}/sinew-init"), 0o755, binary, sha256, None)
            .await?;
        let key = format!("{}\n", secret.to_hex());
        let key_sha256 = hex::encode(Sha256::digest(key.as_bytes()));
        self.put(
            &format!("{dir}/agent.key"),
            0o600,
            key.as_bytes(),
            &key_sha256,
            None,
        )
        .await?;
        let mut channel = self
            .start(&["sh", "-c", WRAPPER, "sinew-agent", &dir], None)
            .await?
            .channel;
        let port = tokio::time::timeout(START_TIMEOUT, listening_port(&mut channel))
            .await
            .map_err(|_| SshError::Remote {
                what: "starting the agent".into(),
                message: format!(
                    "it did not say where it listens within {}s (its log: {dir}/agent.log)",
                    START_TIMEOUT.as_secs()
                ),
            })??;
        Ok(RemoteAgent {
            port,
            dir,
            secret,
            wrapper: Mutex::new(Some(channel)),
            client: Mutex::new(None),
        })
    }

    /// A new authenticated connection to `agent`, over a channel of this connection.
    pub(crate) async fn agent_client(&self, agent: &RemoteAgent) -> Result<AgentClient, SshError> {
        let channel = self
            .direct_tcpip("127.0.0.1", agent.port)
            .await
            .map_err(|e| SshError::Refused(format!("opening a channel to the agent: {e}")))?;
        AgentClient::from_stream(channel.into_stream(), &agent.secret)
            .await
            .map_err(|e| SshError::Remote {
                what: "connecting to the agent".into(),
                message: e.to_string(),
            })
    }
}

impl RemoteAgent {
    /// Stops the agent and removes its directory, waiting until the wrapper is done.
    pub(crate) async fn stop(&self) {
        *self.client.lock().await = None;
        if let Some(mut channel) = self.wrapper.lock().await.take() {
            let _ = channel.eof().await;
            while channel.wait().await.is_some() {}
        }
    }
}

/// Reads the wrapper's output until the agent's `listening 127.0.0.1:PORT` line.
async fn listening_port(channel: &mut russh::Channel<russh::client::Msg>) -> Result<u16, SshError> {
    let mut out = Vec::new();
    while let Some(message) = channel.wait().await {
        match message {
            ChannelMsg::Data { data } => out.extend_from_slice(&data),
            ChannelMsg::ExitStatus { exit_status } => {
                return Err(SshError::Remote {
                    what: "starting the agent".into(),
                    message: format!("its wrapper exited with code {exit_status}"),
                })
            }
            _ => {}
        }
        // Only whole lines: a port cut short would parse as another port.
        let whole = out
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |end| end + 1);
        let text = String::from_utf8_lossy(&out[..whole]);
        if let Some(line) = text.lines().find(|l| l.starts_with("listening ")) {
            if let Some(port) = line
                .rsplit(':')
                .next()
                .and_then(|p| p.trim().parse::<u16>().ok())
            {
                return Ok(port);
            }
        }
    }
    Err(SshError::Lost("starting the agent".into()))
}
