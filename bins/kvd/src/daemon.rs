//! kvd as a daemon: a member and its client listeners, from start until SIGTERM or SIGINT.
//!
//! It lives in the library, not in the binary, so that the async code it drives is compiled
//! once, here: a binary that awaited the library's async functions itself would compile
//! their whole call tree again.

use anyhow::{Context, Result};
use sinew_support::stop::StopSignals;

use crate::node::{ClientApi, Node, NodeConfig};

/// Runs the member `config` describes until SIGTERM or SIGINT, then shuts it down
/// gracefully: client listeners first, then Raft.
pub fn run(config: NodeConfig) -> Result<()> {
    tokio::runtime::Runtime::new()
        .context("starting the async runtime")?
        .block_on(serve(config))
}

async fn serve(config: NodeConfig) -> Result<()> {
    let mut stop = StopSignals::install().context("watching SIGTERM and SIGINT")?;
    let node = Node::start(config.clone())
        .await
        .with_context(|| format!("starting member {:?}", config.name))?;
    let clients = ClientApi::start(&node).await.context("serving clients")?;
    tracing::info!(
        name = %config.name,
        member = format!("{:x}", node.id()),
        cluster = format!("{:x}", node.cluster_id()),
        clients = ?clients.addrs(),
        peers = ?config.listen_peer,
        data_dir = %config.data_dir.display(),
        "kvd ready"
    );
    let signal = stop.recv().await.name();
    tracing::info!(signal, "shutting down");
    clients.finish().await;
    node.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}
