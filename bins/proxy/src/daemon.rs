//! The daemon: a pool and a follower per service, a server per listener, the status
//! endpoint, and a graceful stop on SIGTERM or SIGINT.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use sinew_proto::kv::KvClient;
use sinew_support::stop::StopSignals;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch, Notify};

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
    let sessions = Sessions::default();
    let mut listeners = Vec::new();
    for listen in &settings.listen {
        let listener = std::net::TcpListener::bind(listen.address)
            .and_then(|listener| {
                listener.set_nonblocking(true)?;
                Ok(listener)
            })
            .with_context(|| format!("--listen {}: cannot listen", listen.address))?;
        listeners.push((listener, listen.mode, Arc::clone(&pools[&listen.service])));
    }
    for index in 0..settings.workers.get() {
        let worker = Worker {
            listeners: listeners
                .iter()
                .map(|(listener, mode, pool)| Ok((listener.try_clone()?, *mode, Arc::clone(pool))))
                .collect::<std::io::Result<_>>()
                .context("sharing the listeners with the workers")?,
            connect_timeout: settings.connect_timeout,
            stopping: stopping.clone(),
            sessions: sessions.clone(),
        };
        std::thread::Builder::new()
            .name(format!("worker-{index}"))
            .spawn(move || worker.run())
            .context("starting a worker thread")?;
    }
    // The workers hold their own descriptors: once they stop accepting, the sockets close
    // and new connections are refused rather than left waiting through the drain.
    drop(listeners);
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
        open = sessions.open(),
        grace = ?settings.drain_grace,
        "stopping: no new connections; open ones may finish within the grace period"
    );
    stopping_tx.send_replace(true);
    if tokio::time::timeout(settings.drain_grace, sessions.finished())
        .await
        .is_err()
    {
        tracing::warn!(
            open = sessions.open(),
            "the grace period is over; closing the rest"
        );
    }
    tracing::info!("stopped");
    Ok(())
}

/// A thread with a runtime of its own that accepts and serves connections on every
/// listener: a connection, and the backend connections its requests use, stay on the one
/// thread, so serving a request takes no wakeup across threads (as HAProxy's threads do).
struct Worker {
    listeners: Vec<(std::net::TcpListener, Mode, Arc<Pool>)>,
    connect_timeout: Duration,
    stopping: watch::Receiver<bool>,
    sessions: Sessions,
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
            for (listener, mode, pool) in self.listeners {
                let listener = match TcpListener::from_std(listener) {
                    Ok(listener) => listener,
                    Err(error) => {
                        tracing::error!(%error, "a worker cannot listen; the others serve");
                        continue;
                    }
                };
                let (stopping, sessions) = (self.stopping.clone(), self.sessions.clone());
                match mode {
                    Mode::Tcp => served.spawn(tcp::serve(
                        listener,
                        pool,
                        self.connect_timeout,
                        stopping,
                        sessions,
                    )),
                    Mode::Http => served.spawn(http::serve(
                        listener,
                        Arc::new(Forwarder::new(pool, Arc::clone(&upstream))),
                        stopping,
                        sessions,
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

/// The next connection on `listener`; `None` once `stopping` turns true. A failed accept
/// (out of descriptors, say) is logged and the next one awaited.
pub async fn accept(
    listener: &TcpListener,
    stopping: &mut watch::Receiver<bool>,
) -> Option<(TcpStream, SocketAddr)> {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => return Some(accepted),
                Err(error) => tracing::warn!(%error, "accepting a connection failed"),
            },
            _ = stopping.wait_for(|stop| *stop) => return None,
        }
    }
}

async fn futures_all(receivers: Vec<oneshot::Receiver<()>>) {
    for receiver in receivers {
        let _ = receiver.await;
    }
}

/// The proxy's client connections, counted so that a stopping proxy can let them finish.
#[derive(Debug, Clone, Default)]
pub struct Sessions(Arc<Open>);

#[derive(Debug, Default)]
struct Open {
    count: AtomicUsize,
    none: Notify,
}

/// Counts a session until dropped, even if the session panics.
struct Counted(Arc<Open>);

impl Drop for Counted {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.none.notify_waiters();
        }
    }
}

impl Sessions {
    /// Runs `session` as a task of its own, counted while it runs.
    pub fn spawn(&self, session: impl Future<Output = ()> + Send + 'static) {
        self.0.count.fetch_add(1, Ordering::AcqRel);
        let counted = Counted(Arc::clone(&self.0));
        tokio::spawn(async move {
            let _counted = counted;
            session.await;
        });
    }

    /// Sessions running now.
    pub fn open(&self) -> usize {
        self.0.count.load(Ordering::Acquire)
    }

    /// Resolves when no session runs.
    pub async fn finished(&self) {
        loop {
            let none = self.0.none.notified();
            tokio::pin!(none);
            none.as_mut().enable();
            if self.open() == 0 {
                return;
            }
            none.await;
        }
    }
}
