//! Shared test support for the gateway tests: a single-node in-memory backend over `Store`,
//! the real gateway server on a loopback port, an HTTP/1.1 client for unary and streaming
//! calls, and a real etcd 3.4 on loopback ports for side-by-side checks.

pub mod client;
pub mod etcd;
pub mod memory;

use std::net::SocketAddr;
use std::sync::Arc;

use serde_json::Value;
use sinew_kvd::gateway::{self, Config, Gateway};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

pub use memory::MemoryBackend;

/// A loopback address nothing listens on, for a server started a moment later.
pub fn free_addr() -> SocketAddr {
    let port = sinew_support::ports::free_loopback_port().expect("a free loopback port");
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A gateway server on a loopback port; stops when dropped.
pub struct Server {
    pub addr: SocketAddr,
    pub backend: Arc<MemoryBackend>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Server {
    /// Starts the gateway over a fresh in-memory backend with default settings.
    pub async fn start() -> Self {
        Self::start_with(MemoryBackend::new(), Config::default()).await
    }

    /// Starts the gateway over `backend` with `config`.
    pub async fn start_with(backend: MemoryBackend, config: Config) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let backend = Arc::new(backend);
        let (stop, stopped) = oneshot::channel::<()>();
        let gateway = Gateway::with_config(Arc::clone(&backend), config);
        let task = tokio::spawn(async move {
            gateway
                .serve(listener, async {
                    let _ = stopped.await;
                })
                .await;
        });
        Self {
            addr,
            backend,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Stops the server and waits until it has shut down.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("server task");
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The free `serve` function is what the lead wires; keep it exercised too.
pub async fn start_default_serve(backend: Arc<MemoryBackend>) -> (SocketAddr, oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(gateway::serve(listener, backend, async {
        let _ = stopped.await;
    }));
    (addr, stop)
}

/// Base64 of a string, as requests carry keys and values.
pub fn b64(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// Parses a JSON body, failing the test with the body on error.
pub fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|error| panic!("not JSON ({error}): {body}"))
}
