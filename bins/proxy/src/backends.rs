//! A service's backends: the ones serving, which new connections go to, and the ones
//! draining, whose open connections may finish within the grace period.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use serde::Serialize;
use sinew_proto::discovery::{Registration, Routing};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::config::Balance;

/// Numbers backends, so that connections made for one are never lent to another at the
/// same address.
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// One instance of a service.
#[derive(Debug)]
pub struct Backend {
    /// Tells this backend from any other of the process's, past or present.
    pub id: u64,
    /// What the instance registered.
    pub registration: Registration,
    /// Where it answers.
    pub address: SocketAddr,
    active: AtomicU64,
    requests: AtomicU64,
    failures: AtomicU64,
    /// When its open connections must end: set when it leaves the pool, cleared when it
    /// comes back.
    drain_deadline: watch::Sender<Option<Instant>>,
}

impl Backend {
    fn new(registration: Registration, address: SocketAddr) -> Self {
        Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            registration,
            address,
            active: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            drain_deadline: watch::Sender::new(None),
        }
    }

    /// Counts a connection (or request) that goes to this backend until the guard drops.
    pub fn begin(self: &Arc<Self>) -> InUse {
        self.active.fetch_add(1, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
        InUse(Arc::clone(self))
    }

    /// Counts a connection that failed.
    pub fn failed(&self) {
        self.failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Connections (or requests) open now.
    pub fn active(&self) -> u64 {
        self.active.load(Ordering::Relaxed)
    }

    /// Resolves once the backend has left the pool and the grace period is over; never
    /// while it serves.
    pub async fn drained(&self) {
        let mut deadline = self.drain_deadline.subscribe();
        loop {
            let current = *deadline.borrow_and_update();
            match current {
                Some(at) => tokio::select! {
                    () = tokio::time::sleep_until(at) => return,
                    _ = deadline.changed() => {}
                },
                None => {
                    if deadline.changed().await.is_err() {
                        std::future::pending::<()>().await;
                    }
                }
            }
        }
    }

    /// Whether the backend has left the pool and the grace period is over.
    pub fn grace_over(&self) -> bool {
        self.drain_deadline
            .borrow()
            .is_some_and(|deadline| deadline <= Instant::now())
    }

    fn same_instance(&self, registration: &Registration, address: SocketAddr) -> bool {
        self.address == address
            && self.registration.instance == registration.instance
            && self.registration.machine == registration.machine
            && self.registration.version == registration.version
    }

    fn status(&self, state: BackendState) -> BackendStatus {
        BackendStatus {
            address: self.address,
            instance: self.registration.instance.clone(),
            machine: self.registration.machine.clone(),
            version: self.registration.version.clone(),
            state,
            active: self.active(),
            requests: self.requests.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
        }
    }
}

/// A connection or request in flight to a backend; counted until dropped.
#[derive(Debug)]
pub struct InUse(Arc<Backend>);

impl InUse {
    /// The backend.
    pub fn backend(&self) -> &Arc<Backend> {
        &self.0
    }
}

impl Drop for InUse {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Whether a backend takes new connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendState {
    /// It does.
    Serving,
    /// It left the pool; its open connections may finish within the grace period.
    Draining,
}

/// A backend as the status endpoint shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackendStatus {
    /// Where it answers.
    pub address: SocketAddr,
    /// Its instance.
    pub instance: String,
    /// Its machine.
    pub machine: String,
    /// Its version.
    pub version: String,
    /// Whether it takes new connections.
    pub state: BackendState,
    /// Connections (requests, for HTTP) open now.
    pub active: u64,
    /// Connections (requests) sent to it.
    pub requests: u64,
    /// Connections to it that failed.
    pub failures: u64,
}

/// A service's pool as the status endpoint shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PoolStatus {
    /// The versions that get traffic; `None` when every version does.
    pub routing: Option<Vec<String>>,
    /// The store revision the pool is current to.
    pub revision: i64,
    /// Connections (requests) that found no backend.
    pub unavailable: u64,
    /// Serving backends, then draining ones.
    pub backends: Vec<BackendStatus>,
}

#[derive(Debug, Default)]
struct Members {
    serving: Vec<Arc<Backend>>,
    draining: Vec<Arc<Backend>>,
    routing: Option<Routing>,
    revision: i64,
}

/// A service's backends.
#[derive(Debug)]
pub struct Pool {
    service: String,
    balance: Balance,
    grace: Duration,
    members: RwLock<Members>,
    next: AtomicUsize,
    unavailable: AtomicU64,
}

impl Pool {
    /// An empty pool for `service`.
    pub fn new(service: &str, balance: Balance, grace: Duration) -> Self {
        Self {
            service: service.to_owned(),
            balance,
            grace,
            members: RwLock::default(),
            next: AtomicUsize::new(0),
            unavailable: AtomicU64::new(0),
        }
    }

    /// The service.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// The next backend for a new connection, skipping those at `tried`; `None` when no
    /// serving backend is left.
    pub fn pick(&self, tried: &[SocketAddr]) -> Option<Arc<Backend>> {
        let members = self.members.read().unwrap_or_else(PoisonError::into_inner);
        let serving = &members.serving;
        let count = serving.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut candidates = (0..count)
            .map(|offset| &serving[(start + offset) % count])
            .filter(|backend| !tried.contains(&backend.address));
        match self.balance {
            Balance::RoundRobin => candidates.next(),
            Balance::LeastConn => candidates.min_by_key(|backend| backend.active()),
        }
        .cloned()
    }

    /// Counts a connection (request) that found no backend.
    pub fn unavailable(&self) {
        self.unavailable.fetch_add(1, Ordering::Relaxed);
    }

    /// Makes `admitted` the serving backends, as of `revision` under `routing`: new ones
    /// join, ones no longer admitted drain, and draining ones admitted again serve again
    /// with their open connections.
    pub fn update(
        &self,
        admitted: Vec<(Registration, SocketAddr)>,
        routing: Option<Routing>,
        revision: i64,
    ) {
        let mut guard = self.members.write().unwrap_or_else(PoisonError::into_inner);
        let members = &mut *guard;
        let mut previous: Vec<Arc<Backend>> = std::mem::take(&mut members.serving)
            .into_iter()
            .chain(std::mem::take(&mut members.draining))
            .collect();
        let mut serving = Vec::with_capacity(admitted.len());
        for (registration, address) in admitted {
            let backend = match previous
                .iter()
                .position(|backend| backend.same_instance(&registration, address))
            {
                Some(index) => previous.swap_remove(index),
                None => {
                    tracing::info!(
                        service = %self.service,
                        %address,
                        instance = %registration.instance,
                        version = %registration.version,
                        "backend joins"
                    );
                    Arc::new(Backend::new(registration, address))
                }
            };
            backend
                .drain_deadline
                .send_if_modified(|deadline| deadline.take().is_some());
            serving.push(backend);
        }
        let deadline = Instant::now() + self.grace;
        for backend in &previous {
            let started = backend.drain_deadline.send_if_modified(|current| {
                if current.is_none() {
                    *current = Some(deadline);
                    true
                } else {
                    false
                }
            });
            if started {
                tracing::info!(
                    service = %self.service,
                    address = %backend.address,
                    instance = %backend.registration.instance,
                    open = backend.active(),
                    "backend leaves; draining"
                );
            }
        }
        previous.retain(|backend| backend.active() > 0);
        members.serving = serving;
        members.draining = previous;
        members.routing = routing;
        members.revision = revision;
    }

    /// The pool's state and counters.
    pub fn status(&self) -> PoolStatus {
        let mut members = self.members.write().unwrap_or_else(PoisonError::into_inner);
        members.draining.retain(|backend| backend.active() > 0);
        PoolStatus {
            routing: members.routing.as_ref().map(|r| r.versions.clone()),
            revision: members.revision,
            unavailable: self.unavailable.load(Ordering::Relaxed),
            backends: members
                .serving
                .iter()
                .map(|backend| backend.status(BackendState::Serving))
                .chain(
                    members
                        .draining
                        .iter()
                        .map(|backend| backend.status(BackendState::Draining)),
                )
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn registration(instance: &str, version: &str) -> Registration {
        Registration {
            service: "web".into(),
            version: version.into(),
            address: "127.0.0.1".into(),
            port: 80,
            instance: instance.into(),
            machine: "h1".into(),
            metadata: BTreeMap::new(),
        }
    }

    fn admitted(ports: &[u16]) -> Vec<(Registration, SocketAddr)> {
        ports
            .iter()
            .map(|port| {
                (
                    registration(&format!("web@{port}"), "1"),
                    SocketAddr::from(([127, 0, 0, 1], *port)),
                )
            })
            .collect()
    }

    fn port(backend: Option<Arc<Backend>>) -> u16 {
        backend.expect("a backend").address.port()
    }

    #[test]
    fn round_robin_takes_each_in_turn_and_skips_the_tried() {
        let pool = Pool::new("web", Balance::RoundRobin, Duration::from_secs(1));
        assert!(pool.pick(&[]).is_none());
        pool.update(admitted(&[1, 2, 3]), None, 5);
        let picked: Vec<u16> = (0..6).map(|_| port(pool.pick(&[]))).collect();
        let mut first_round = picked[..3].to_vec();
        first_round.sort_unstable();
        assert_eq!(first_round, [1, 2, 3], "{picked:?}");
        assert_eq!(picked[..3], picked[3..], "the same order each round");
        let tried = [
            SocketAddr::from(([127, 0, 0, 1], 1)),
            SocketAddr::from(([127, 0, 0, 1], 2)),
        ];
        for _ in 0..3 {
            assert_eq!(port(pool.pick(&tried)), 3);
        }
        let all = [tried[0], tried[1], SocketAddr::from(([127, 0, 0, 1], 3))];
        assert!(pool.pick(&all).is_none());
    }

    #[test]
    fn least_conn_takes_the_least_busy() {
        let pool = Pool::new("web", Balance::LeastConn, Duration::from_secs(1));
        pool.update(admitted(&[1, 2]), None, 5);
        let first = pool.pick(&[]).unwrap().begin();
        let other = port(pool.pick(&[]));
        assert_ne!(other, first.backend().address.port());
        assert_eq!(port(pool.pick(&[])), other);
        drop(first);
    }

    #[tokio::test(start_paused = true)]
    async fn a_leaving_backend_drains_within_the_grace_and_serves_again_when_readmitted() {
        let pool = Pool::new("web", Balance::RoundRobin, Duration::from_secs(10));
        pool.update(admitted(&[1, 2]), None, 5);
        let open = pool.pick(&[]).unwrap().begin();
        let leaving = Arc::clone(open.backend());
        pool.update(admitted(&[leaving.address.port() % 2 + 1]), None, 6);
        for _ in 0..4 {
            assert_ne!(pool.pick(&[]).unwrap().address, leaving.address);
        }
        let status = pool.status();
        assert_eq!(status.backends.len(), 2);
        assert_eq!(status.backends[1].state, BackendState::Draining);
        assert_eq!(status.backends[1].active, 1);

        // Readmitted before the grace ends: it serves again, its connection untouched.
        pool.update(admitted(&[1, 2]), None, 7);
        let drained = tokio::time::timeout(Duration::from_secs(60), leaving.drained()).await;
        assert!(drained.is_err(), "a serving backend never drains");
        assert!(!leaving.grace_over());

        pool.update(admitted(&[leaving.address.port() % 2 + 1]), None, 8);
        let started = Instant::now();
        leaving.drained().await;
        assert_eq!(started.elapsed(), Duration::from_secs(10));
        assert!(leaving.grace_over());
        drop(open);
        assert_eq!(pool.status().backends.len(), 1, "drained and closed: gone");
    }
}
