//! HTTP/1.1 connections to backends, kept open between requests. Each worker has its own
//! set, so a request, the connection it goes out on and that connection's task stay on one
//! thread, and a request costs no more than its own messages: the connection it borrows
//! goes back to the set when its response has been read, without a task or a lookup of its
//! own (what a general-purpose client pool spends per request).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::time::Instant;

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
    idle: Mutex<HashMap<SocketAddr, Vec<Idle>>>,
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

    /// Sends `request` to the backend at `address` over an idle connection, or a new one
    /// when none is idle (or the idle ones turn out closed before the request went out).
    /// The connection comes back when the returned [`Lent`] is dropped.
    pub async fn send(
        self: &Arc<Self>,
        address: SocketAddr,
        mut request: Request<UpstreamBody>,
    ) -> Result<(Response<Incoming>, Lent), SendError> {
        loop {
            let (mut sender, reused) = match self.idle_connection(address).await {
                Some(sender) => (sender, true),
                None => (self.connect(address).await?, false),
            };
            match sender.try_send_request(request).await {
                Ok(response) => {
                    let lent = Lent {
                        sender: Some(sender),
                        address,
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

    async fn idle_connection(&self, address: SocketAddr) -> Option<SendRequest<UpstreamBody>> {
        loop {
            let mut sender = self
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get_mut(&address)?
                .pop()?
                .sender;
            // A connection given back finishes its last response on its own task first.
            if sender.ready().await.is_ok() {
                return Some(sender);
            }
        }
    }

    async fn connect(&self, address: SocketAddr) -> Result<SendRequest<UpstreamBody>, SendError> {
        let stream = tcp::connect(address, self.connect_timeout)
            .await
            .map_err(SendError::Connect)?;
        let (sender, connection) = http1::Builder::new()
            // Small messages are copied into one buffer and written with one call, which
            // costs less than gathering them (measured with the proxy benchmark).
            .writev(false)
            .handshake(TokioIo::new(stream))
            .await?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(backend = %address, %error, "backend connection ended");
            }
        });
        Ok(sender)
    }

    fn give_back(&self, address: SocketAddr, sender: SendRequest<UpstreamBody>) {
        if sender.is_closed() {
            return;
        }
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(address)
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
    address: SocketAddr,
    upstream: Weak<Upstream>,
}

impl Drop for Lent {
    fn drop(&mut self) {
        if let (Some(sender), Some(upstream)) = (self.sender.take(), self.upstream.upgrade()) {
            upstream.give_back(self.address, sender);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http_body_util::BodyExt;
    use hyper::service::service_fn;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

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

    async fn exchange(upstream: &Arc<Upstream>, address: SocketAddr, method: &str) -> String {
        let request = Request::builder()
            .method(method)
            .uri("/")
            .header("host", address.to_string())
            .body(Either::Left(Full::new(Bytes::from_static(b"body"))))
            .unwrap();
        let (response, lent) = upstream.send(address, request).await.unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        drop(lent);
        String::from_utf8(body.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn a_connection_goes_back_after_its_response_and_serves_the_next_request() {
        let (address, accepted) = backend(false).await;
        let upstream = Upstream::new(Duration::from_secs(1));
        for method in ["GET", "POST", "PUT"] {
            assert_eq!(exchange(&upstream, address, method).await, method);
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
        let upstream = Upstream::new(Duration::from_secs(1));
        assert_eq!(exchange(&upstream, address, "POST").await, "POST");
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(exchange(&upstream, address, "POST").await, "POST");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_backend_that_refuses_is_a_connect_error() {
        let address = {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            listener.local_addr().unwrap()
        };
        let upstream = Upstream::new(Duration::from_secs(1));
        let request = Request::new(Either::Left(Full::new(Bytes::new())));
        let error = upstream.send(address, request).await.unwrap_err();
        assert!(
            matches!(&error, SendError::Connect(reason) if reason.contains(&address.to_string())),
            "{error:?}"
        );
    }
}
