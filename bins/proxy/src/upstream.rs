//! HTTP/1.1 connections to backends, kept open between requests. Each worker has its own
//! set, so a request, the connection it goes out on and that connection's task stay on one
//! thread, and a request costs no more than its own messages: the connection it borrows
//! goes back to the set when its response has been read, without a task or a lookup of its
//! own (what a general-purpose client pool spends per request).
//!
//! A connection is closed when its backend's grace period ends, and with it the request on
//! it, if any: the drain is watched once per connection, not once per request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::time::Instant;

use crate::backends::Backend;
use crate::tcp;

/// A request body on its way to a backend: kept, so that it can be sent again, or streamed.
pub type UpstreamBody = Either<Full<Bytes>, Incoming>;

/// An idle connection is closed after this long unused, as a backend would close it.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// How often idle connections are looked over.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// Why a request got no response from a backend.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// No connection to the backend could be made; the request was not sent.
    #[error("{0}")]
    Connect(String),
    /// The request was sent, or may have been, and failed.
    #[error(transparent)]
    Failed(#[from] hyper::Error),
}

/// One worker's connections to backends.
#[derive(Debug)]
pub struct Upstream {
    connect_timeout: Duration,
    /// By [`Backend::id`].
    idle: Mutex<HashMap<u64, Vec<Idle>>>,
}

#[derive(Debug)]
struct Idle {
    sender: SendRequest<UpstreamBody>,
    since: Instant,
}

impl Upstream {
    /// An empty set, whose idle connections are closed after [`IDLE_TIMEOUT`] by a task on
    /// the current runtime.
    pub fn new(connect_timeout: Duration) -> Arc<Self> {
        let upstream = Arc::new(Self {
            connect_timeout,
            idle: Mutex::default(),
        });
        tokio::spawn(sweep(Arc::downgrade(&upstream)));
        upstream
    }

    /// Sends `request` to `backend` over an idle connection, or a new one when none is idle
    /// (or the idle ones turn out closed before the request went out). The connection comes
    /// back when the returned [`Lent`] is dropped.
    pub async fn send(
        self: &Arc<Self>,
        backend: &Arc<Backend>,
        mut request: Request<UpstreamBody>,
    ) -> Result<(Response<Incoming>, Lent), SendError> {
        loop {
            let (mut sender, reused) = match self.idle_connection(backend.id).await {
                Some(sender) => (sender, true),
                None => (self.connect(backend).await?, false),
            };
            match sender.try_send_request(request).await {
                Ok(response) => {
                    let lent = Lent {
                        sender: Some(sender),
                        backend: backend.id,
                        upstream: Arc::downgrade(self),
                    };
                    return Ok((response, lent));
                }
                Err(mut error) => match error.take_message() {
                    // Not sent: an idle connection the backend had closed meanwhile.
                    Some(unsent) if reused => request = unsent,
                    _ => return Err(SendError::Failed(error.into_error())),
                },
            }
        }
    }

    async fn idle_connection(&self, backend: u64) -> Option<SendRequest<UpstreamBody>> {
        loop {
            let mut sender = self
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get_mut(&backend)?
                .pop()?
                .sender;
            // A connection given back finishes its last response on its own task first.
            if sender.ready().await.is_ok() {
                return Some(sender);
            }
        }
    }

    /// A new connection to `backend`, whose task ends it when the backend's grace period
    /// does.
    async fn connect(
        &self,
        backend: &Arc<Backend>,
    ) -> Result<SendRequest<UpstreamBody>, SendError> {
        let stream = tcp::connect(backend.address, self.connect_timeout)
            .await
            .map_err(SendError::Connect)?;
        let (sender, connection) = http1::Builder::new()
            // Small messages are copied into one buffer and written with one call, which
            // costs less than gathering them (measured with the proxy benchmark).
            .writev(false)
            .handshake(TokioIo::new(stream))
            .await?;
        let backend = Arc::clone(backend);
        tokio::spawn(async move {
            tokio::select! {
                ended = connection => {
                    if let Err(error) = ended {
                        tracing::debug!(backend = %backend.address, %error, "backend connection ended");
                    }
                }
                () = backend.drained() => tracing::debug!(
                    backend = %backend.address,
                    "the backend's grace period is over; closing its connection"
                ),
            }
        });
        Ok(sender)
    }

    fn give_back(&self, backend: u64, sender: SendRequest<UpstreamBody>) {
        if sender.is_closed() {
            return;
        }
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(backend)
            .or_default()
            .push(Idle {
                sender,
                since: Instant::now(),
            });
    }

    /// Closes the connections idle for longer than [`IDLE_TIMEOUT`], and forgets closed ones.
    fn close_idle(&self) {
        let now = Instant::now();
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|_, idle| {
                idle.retain(|idle| {
                    !idle.sender.is_closed() && now.duration_since(idle.since) < IDLE_TIMEOUT
                });
                !idle.is_empty()
            });
    }
}

async fn sweep(upstream: Weak<Upstream>) {
    let mut every = tokio::time::interval(SWEEP_EVERY);
    every.tick().await;
    loop {
        every.tick().await;
        match upstream.upgrade() {
            Some(upstream) => upstream.close_idle(),
            None => return,
        }
    }
}

/// A connection lent to one request: given back when dropped, once the response that
/// holds it has been passed on.
#[derive(Debug)]
pub struct Lent {
    sender: Option<SendRequest<UpstreamBody>>,
    /// [`Backend::id`].
    backend: u64,
    upstream: Weak<Upstream>,
}

impl Drop for Lent {
    fn drop(&mut self) {
        if let (Some(sender), Some(upstream)) = (self.sender.take(), self.upstream.upgrade()) {
            upstream.give_back(self.backend, sender);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::convert::Infallible;
    use std::net::SocketAddr;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http_body_util::BodyExt;
    use hyper::service::service_fn;
    use sinew_proto::discovery::Registration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;
    use crate::backends::Pool;
    use crate::config::Balance;

    /// A pool whose one backend answers at `address`, and that backend.
    fn pool_of(address: SocketAddr, grace: Duration) -> (Pool, Arc<Backend>) {
        let pool = Pool::new("web", Balance::RoundRobin, grace);
        let registration = Registration {
            service: "web".into(),
            version: "1".into(),
            address: address.ip().to_string(),
            port: address.port(),
            instance: "web@0".into(),
            machine: "h1".into(),
            metadata: BTreeMap::new(),
        };
        pool.update(vec![(registration, address)], None, 1);
        let backend = pool.pick(&[]).expect("the backend just admitted");
        (pool, backend)
    }

    /// A backend on loopback that counts the connections it accepted and answers each
    /// request with the method; `close_after_answer` makes it close each connection after
    /// one answer without saying so, as a backend whose idle timeout ran out does.
    async fn backend(close_after_answer: bool) -> (SocketAddr, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&accepted);
        tokio::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                counted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    if close_after_answer {
                        let mut request = [0; 1024];
                        let read = stream.read(&mut request).await.unwrap();
                        let method = String::from_utf8_lossy(&request[..read])
                            .split(' ')
                            .next()
                            .unwrap_or_default()
                            .to_owned();
                        let answer = format!(
                            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{method}",
                            method.len()
                        );
                        stream.write_all(answer.as_bytes()).await.unwrap();
                        return;
                    }
                    let answer = service_fn(|request: Request<Incoming>| async move {
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(
                            request.method().to_string(),
                        ))))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), answer)
                        .await;
                });
            }
        });
        (address, accepted)
    }

    fn request(method: &str) -> Request<UpstreamBody> {
        Request::builder()
            .method(method)
            .uri("/")
            .header("host", "backend")
            .body(Either::Left(Full::new(Bytes::from_static(b"body"))))
            .unwrap()
    }

    async fn exchange(upstream: &Arc<Upstream>, backend: &Arc<Backend>, method: &str) -> String {
        let (response, lent) = upstream.send(backend, request(method)).await.unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        drop(lent);
        String::from_utf8(body.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn a_connection_goes_back_after_its_response_and_serves_the_next_request() {
        let (address, accepted) = backend(false).await;
        let (_pool, backend) = pool_of(address, Duration::from_secs(1));
        let upstream = Upstream::new(Duration::from_secs(1));
        for method in ["GET", "POST", "PUT"] {
            assert_eq!(exchange(&upstream, &backend, method).await, method);
        }
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            1,
            "one connection for all three"
        );
    }

    #[tokio::test]
    async fn an_idle_connection_the_backend_closed_is_not_used_and_the_request_goes_out() {
        let (address, accepted) = backend(true).await;
        let (_pool, backend) = pool_of(address, Duration::from_secs(1));
        let upstream = Upstream::new(Duration::from_secs(1));
        assert_eq!(exchange(&upstream, &backend, "POST").await, "POST");
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(exchange(&upstream, &backend, "POST").await, "POST");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_backend_that_refuses_is_a_connect_error() {
        let address = {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            listener.local_addr().unwrap()
        };
        let (_pool, backend) = pool_of(address, Duration::from_secs(1));
        let upstream = Upstream::new(Duration::from_secs(1));
        let error = upstream.send(&backend, request("GET")).await.unwrap_err();
        assert!(
            matches!(&error, SendError::Connect(reason) if reason.contains(&address.to_string())),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn a_request_on_a_backend_whose_grace_ends_fails_and_its_connection_closes() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        // Reads the request, never answers, and expects the proxy to close the connection.
        let silent = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut buffer = [0; 1024];
            assert!(stream.read(&mut buffer).await.unwrap() > 0, "a request");
            let read = stream.read(&mut buffer).await.unwrap();
            assert_eq!(read, 0, "nothing more than the request, then the end");
        });
        let grace = Duration::from_millis(300);
        let (pool, backend) = pool_of(address, grace);
        let upstream = Upstream::new(Duration::from_secs(1));
        let sent = tokio::spawn({
            let (upstream, backend) = (Arc::clone(&upstream), Arc::clone(&backend));
            async move { upstream.send(&backend, request("GET")).await.map(|_| ()) }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        let left = Instant::now();
        pool.update(Vec::new(), None, 2);
        let failed = tokio::time::timeout(Duration::from_secs(5), sent)
            .await
            .expect("the request ends with the grace")
            .unwrap();
        assert!(matches!(failed, Err(SendError::Failed(_))), "{failed:?}");
        assert!(left.elapsed() >= grace, "{:?}", left.elapsed());
        assert!(backend.grace_over());
        tokio::time::timeout(Duration::from_secs(5), silent)
            .await
            .expect("the backend sees its connection closed")
            .unwrap();
    }
}
