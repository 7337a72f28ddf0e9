//! Serving HTTP/1.1 and HTTP/2 connections on a listener until a shutdown signal, then letting the
//! connections in flight finish.

use std::convert::Infallible;
use std::future::Future;

use hyper::body::{Body, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

/// Accepts connections on `listener` and answers each request with `handle` until
/// `shutdown` resolves; then closes the listener and waits for open connections to finish
/// their current requests.
pub async fn serve<H, Fut, B>(listener: TcpListener, handle: H, shutdown: impl Future<Output = ()>)
where
    H: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<B>> + Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let graceful = GracefulShutdown::new();
    let builder = auto::Builder::new(TokioExecutor::new());
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                tracing::warn!(%error, "cannot accept a connection");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        // Small requests and answers: waiting for more to batch only adds latency.
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "cannot disable Nagle's algorithm");
        }
        let handle = handle.clone();
        let service = service_fn(move |request| {
            let answer = handle(request);
            async move { Ok::<_, Infallible>(answer.await) }
        });
        // HTTP/1.1 for JSON and the v2 API, HTTP/2 (prior knowledge) for gRPC, told apart
        // by the connection's first bytes.
        let connection = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "connection ended with an error");
            }
        });
    }
    // The port is free from here on (a member restarted in the same process binds it
    // again at once); the connections in flight finish on their own.
    drop(listener);
    graceful.shutdown().await;
}
