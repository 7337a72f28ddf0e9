//! kvd: an etcd-compatible key-value store on Raft. Takes etcd's flags (also with one dash,
//! also as `ETCD_*` variables), serves etcd's client API on the client URLs and Raft on the
//! peer URLs, and shuts down gracefully on SIGTERM or SIGINT.

mod flags;

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;
use sinew_kvd::node::{ClientApi, Node};
use sinew_support::logging::Logging;
use tokio::signal::unix::{signal, SignalKind};

fn main() -> ExitCode {
    let flags = flags::Flags::parse_from(flags::normalise_args(std::env::args()));
    // openraft is chatty at info; its warnings are what an operator needs.
    Logging::new("KVD_LOG", &format!("{},openraft=warn", flags.log_level)).init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("kvd: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(flags)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(flags: flags::Flags) -> Result<()> {
    let config = flags.node_config()?;
    let mut terminate = signal(SignalKind::terminate()).context("watching SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("watching SIGINT")?;
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
    let signal = tokio::select! {
        _ = terminate.recv() => "SIGTERM",
        _ = interrupt.recv() => "SIGINT",
    };
    tracing::info!(signal, "shutting down");
    clients.finish().await;
    node.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}
