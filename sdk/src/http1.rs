//! Serving HTTP/1.1 on a listener: one task per connection, each request answered by a
//! handler that also gets the peer's address, until a shutdown signal. The presenter and
//! the boot server serve this way.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;

use hyper::body::{Body, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// Answers requests on `listener` with `handle` until `shutdown` resolves; connections
/// still open then end with their tasks.
pub async fn serve<H, Fut, B>(listener: TcpListener, handle: H, shutdown: impl Future<Output = ()>)
where
    H: Fn(Request<Incoming>, SocketAddr) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Response<B>> + Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    tracing::warn!(%err, "accepting a connection failed");
                    // Out of descriptors, most likely: let some close before trying again.
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Answers are streamed in small writes (a run's events, one line each): with
        // Nagle's algorithm on, each waits for the client's delayed ACK of the one before,
        // 40 ms on Linux.
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!(%peer, %err, "cannot disable Nagle's algorithm");
        }
        let handle = handle.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let answer = handle(request, peer);
                async move { Ok::<_, Infallible>(answer.await) }
            });
            // Title-case header names ("Content-Length"): GRUB's HTTP client matches
            // them case-sensitively and, missing the length, reads until the
            // connection closes.
            if let Err(err) = hyper::server::conn::http1::Builder::new()
                .title_case_headers(true)
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%peer, %err, "connection ended");
            }
        });
    }
}
