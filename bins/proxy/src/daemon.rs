//! The daemon: a pool and a follower per service, a server per listener, the status
//! endpoint, and a graceful stop on SIGTERM or SIGINT.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use sinew_proto::kv::KvClient;
use sinew_support::stop::StopSignals;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};

use crate::accept::{Connections, Dispatch, Sessions};
use crate::backends::Pool;
use crate::config::{Mode, Settings};
use crate::http::{self, Forwarder};
use crate::status::{self, Reporter};
use crate::upstream::Upstream;
use crate::{registry, tcp};

/// How long the proxy waits for its first read of the store before it listens anyway (and
/// answers 503 until it has read it).
const FIRST_READ: Duration = Duration::from_secs(5);

/// Runs the proxy until SIGTERM or SIGINT; then it stops accepting, lets open connections
/// finish within the drain grace, and returns. The store, the status endpoint and the
/// signals are followed on this thread; the connections are served by the workers.
pub fn run(settings: Settings) -> Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(serve(settings))
}

async fn serve(settings: Settings) -> Result<()> {
    let mut stop = StopSignals::install().context("handling SIGTERM and SIGINT")?;
    let client = KvClient::new(&settings.endpoints).context("--endpoints")?;
    let mut pools = BTreeMap::new();
    let mut first_reads = Vec::new();
    for listen in &settings.listen {
        if pools.contains_key(&listen.service) {
            continue;
        }
        let pool = Arc::new(Pool::new(
            &listen.service,
            settings.balance,
            settings.drain_grace,
        ));
        let (read, first_read) = oneshot::channel();
        tokio::spawn(registry::follow(client.clone(), Arc::clone(&pool), read));
        first_reads.push(first_read);
        pools.insert(listen.service.clone(), pool);
    }
    if tokio::time::timeout(FIRST_READ, futures_all(first_reads))
        .await
        .is_err()
    {
        tracing::warn!(
            endpoints = ?settings.endpoints,
            "the store has not answered yet; listening anyway, answering 503 until it does"
        );
    }
    let (stopping_tx, stopping) = watch::channel(false);
    let sessions: Vec<Sessions> = (0..settings.workers.get())
        .map(|_| Sessions::default())
        .collect();
    let mut workers: Vec<Worker> = sessions
        .iter()
        .map(|_| Worker {
            listeners: Vec::new(),
            connect_timeout: settings.connect_timeout,
            stopping: stopping.clone(),
        })
        .collect();
    for listen in &settings.listen {
        let listener = std::net::TcpListener::bind(listen.address)
            .and_then(|listener| {
                listener.set_nonblocking(true)?;
                Ok(listener)
            })
            .with_context(|| format!("--listen {}: cannot listen", listen.address))?;
        let (dispatch, connections) = Dispatch::new(&sessions);
        for (worker, connections) in workers.iter_mut().zip(connections) {
            let pool = Arc::clone(&pools[&listen.service]);
            worker.listeners.push((connections, listen.mode, pool));
        }
        tokio::spawn(dispatch.run(listener, stopping.clone()));
    }
    for (index, worker) in workers.into_iter().enumerate() {
        std::thread::Builder::new()
            .name(format!("worker-{index}"))
            .spawn(move || worker.run())
            .context("starting a worker thread")?;
    }
    if let Some(address) = settings.status_listen {
        let listener = TcpListener::bind(address)
            .await
            .with_context(|| format!("--status-listen {address}: cannot listen"))?;
        tokio::spawn(status::serve(
            listener,
            Arc::new(Reporter {
                pools,
                listen: settings.listen.clone(),
            }),
        ));
    }
    tracing::info!(
        listen = ?settings.listen.iter().map(ToString::to_string).collect::<Vec<_>>(),
        status = ?settings.status_listen,
        "sinew-proxy ready"
    );
    let signal = stop.recv().await;
    tracing::info!(
        signal = signal.name(),
        open = open(&sessions),
        grace = ?settings.drain_grace,
        "stopping: no new connections; open ones may finish within the grace period"
    );
    stopping_tx.send_replace(true);
    let finished = async {
        for worker in &sessions {
            worker.finished().await;
        }
    };
    if tokio::time::timeout(settings.drain_grace, finished)
        .await
        .is_err()
    {
        tracing::warn!(
            open = open(&sessions),
            "the grace period is over; closing the rest"
        );
    }
    tracing::info!("stopped");
    Ok(())
}

/// A thread with a runtime of its own that serves the connections handed to it on every
/// listener: a connection, and the backend connections its requests use, stay on the one
/// thread, so serving a request takes no wakeup across threads (as HAProxy's threads do).
struct Worker {
    listeners: Vec<(Connections, Mode, Arc<Pool>)>,
    connect_timeout: Duration,
    stopping: watch::Receiver<bool>,
}

impl Worker {
    fn run(self) {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(error) => {
                tracing::error!(%error, "a worker cannot start its runtime; the others serve");
                return;
            }
        };
        runtime.block_on(async {
            let upstream = Upstream::new(self.connect_timeout);
            let mut served = tokio::task::JoinSet::new();
            for (connections, mode, pool) in self.listeners {
                match mode {
                    Mode::Tcp => served.spawn(tcp::serve(connections, pool, self.connect_timeout)),
                    Mode::Http => served.spawn(http::serve(
                        connections,
                        Arc::new(Forwarder::new(pool, Arc::clone(&upstream))),
                        self.stopping.clone(),
                    )),
                };
            }
            while served.join_next().await.is_some() {}
            // The sessions this worker runs finish on its runtime; the daemon ends the
            // process when all have, or when the grace period is over.
            std::future::pending::<()>().await;
        });
    }
}

/// Client connections open on all workers.
fn open(sessions: &[Sessions]) -> usize {
    sessions.iter().map(Sessions::open).sum()
}

async fn futures_all(receivers: Vec<oneshot::Receiver<()>>) {
    for receiver in receivers {
        let _ = receiver.await;
    }
}
