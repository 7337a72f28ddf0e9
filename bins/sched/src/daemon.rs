//! schedd as a process: the agent, the engine or both, and the journal's listener, against
//! the KV store until SIGTERM or SIGINT.
//!
//! It lives in the library, not in the binary, so that the async code it drives is compiled
//! once, here: a binary that awaited the agent and the engine itself would compile their
//! whole call trees again.

use std::net::SocketAddr;

use anyhow::{Context, Result};
use sinew_proto::kv::KvClient;
use sinew_support::stop::StopSignals;
use tokio::sync::watch;

use crate::agent::{self, AgentConfig};
use crate::engine::{self, EngineConfig};

/// What one schedd runs.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// The agent's configuration, when this schedd runs instances.
    pub agent: Option<AgentConfig>,
    /// The engine's configuration, when this schedd stands for election to place them.
    pub engine: Option<EngineConfig>,
    /// Where the agent serves its instances' logs, if anywhere (unused without an agent).
    pub journal_listen: Option<SocketAddr>,
}

/// Runs `config` against the store through `client` until SIGTERM or SIGINT; then the agent
/// stops its instances and the engine steps down.
pub fn run(client: KvClient, config: DaemonConfig) -> Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(serve(client, config))
}

async fn serve(client: KvClient, config: DaemonConfig) -> Result<()> {
    let mut stop_signals = StopSignals::install().context("handling SIGTERM and SIGINT")?;
    if let (Some(listen), Some(agent)) = (config.journal_listen, &config.agent) {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("--journal-listen {listen}"))?;
        tokio::spawn(agent::journal::serve(
            listener,
            agent::log_dir(&agent.state_dir),
        ));
    }
    let (stop, stopping) = watch::channel(false);
    let shutdown = || {
        let mut stopping = stopping.clone();
        async move {
            let _ = stopping.wait_for(|stop| *stop).await;
        }
    };
    let engine = async {
        if let Some(engine) = config.engine {
            engine::run(client.clone(), engine, shutdown()).await;
        }
    };
    let agent = async {
        if let Some(agent) = config.agent {
            agent::run(client.clone(), agent, shutdown()).await;
        }
    };
    let signals = async {
        let signal = stop_signals.recv().await;
        tracing::info!(signal = signal.name(), "stopping instances, stepping down");
        stop.send_replace(true);
    };
    let work = async { tokio::join!(engine, agent) };
    tokio::pin!(work);
    tokio::select! {
        _ = &mut work => {}
        () = signals => {
            work.await;
        }
    }
    Ok(())
}
