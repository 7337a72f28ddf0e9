//! The gateway itself: dispatching a request to its endpoint, and an HTTP/1.1 server for it.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Incoming};
use hyper::header::{
    HeaderValue, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN,
};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::gateway::backend::Backend;
use crate::gateway::body::{
    error_response, read_body, stream_response, text_response, GatewayBody,
};
use crate::gateway::error::{Code, Status};
use crate::gateway::route::{route, Endpoint, Route, Unary};
use crate::gateway::size::{DEFAULT_MAX_REQUEST_BYTES, GRPC_OVERHEAD_BYTES};
use crate::gateway::streams;

/// How long shutdown waits for open connections to finish their answers.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How many streamed messages may wait for a slow client before the stream stops reading.
const STREAM_BUFFER: usize = 64;

/// The gateway's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// The largest request proposed to Raft, in bytes (etcd's `--max-request-bytes`).
    pub max_request_bytes: usize,
    /// How often watchers that asked for progress notifications get one while nothing
    /// happens (etcd: 10 minutes).
    pub progress_notify_interval: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            progress_notify_interval: Duration::from_secs(600),
        }
    }
}

impl Config {
    /// The largest request gRPC would accept (etcd adds 512 KiB to `--max-request-bytes`).
    pub fn grpc_limit(&self) -> usize {
        self.max_request_bytes.saturating_add(GRPC_OVERHEAD_BYTES)
    }

    /// The longest JSON body decoded, so that a request somewhat over the gRPC limit is
    /// still measured as etcd measures it (base64 makes bytes a third longer in JSON).
    pub fn body_limit(&self) -> usize {
        self.grpc_limit().saturating_mul(2)
    }
}

/// What the gateway did with a request.
#[derive(Debug)]
pub enum Handled<T> {
    /// The gateway's answer.
    Response(Response<GatewayBody>),
    /// The request is not for the gateway (not under `/v3/` or `/v3beta/`); here it is back.
    NotMine(Request<T>),
}

/// etcd's v3 JSON gateway over a [`Backend`]. Cheap to clone; clones share the backend and
/// [`Gateway::close`].
pub struct Gateway<B> {
    pub(crate) backend: Arc<B>,
    pub(crate) config: Config,
    closing: Arc<watch::Sender<bool>>,
}

impl<B> Clone for Gateway<B> {
    fn clone(&self) -> Self {
        Self {
            backend: Arc::clone(&self.backend),
            config: self.config,
            closing: Arc::clone(&self.closing),
        }
    }
}

impl<B> fmt::Debug for Gateway<B> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Gateway")
            .field("config", &self.config)
            .field("closing", &*self.closing.borrow())
            .finish_non_exhaustive()
    }
}

impl<B: Backend> Gateway<B> {
    /// A gateway over `backend` with etcd's default settings.
    pub fn new(backend: Arc<B>) -> Self {
        Self::with_config(backend, Config::default())
    }

    /// A gateway over `backend` with `config`.
    pub fn with_config(backend: Arc<B>, config: Config) -> Self {
        Self {
            backend,
            config,
            closing: Arc::new(watch::channel(false).0),
        }
    }

    /// Ends every open watch and keep-alive stream of this gateway and its clones, so
    /// connections can close.
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    /// A receiver that sees [`Gateway::close`].
    pub(crate) fn closing(&self) -> watch::Receiver<bool> {
        self.closing.subscribe()
    }

    /// Answers a request under `/v3/` or `/v3beta/` (with etcd's CORS headers); hands any
    /// other back.
    pub async fn handle<T>(&self, request: Request<T>) -> Handled<T>
    where
        T: Body<Data = Bytes> + Send + Unpin + 'static,
        T::Error: fmt::Display,
    {
        let route = route(request.uri().path());
        if route == Route::NotMine {
            return Handled::NotMine(request);
        }
        let mut response = self.answer(route, request).await;
        allow_cross_origin(&mut response);
        Handled::Response(response)
    }

    /// The answer to a request on one of the gateway's paths.
    async fn answer<T>(&self, route: Route, request: Request<T>) -> Response<GatewayBody>
    where
        T: Body<Data = Bytes> + Send + Unpin + 'static,
        T::Error: fmt::Display,
    {
        // etcd's CORS layer answers every preflight request, whatever the path.
        if request.method() == Method::OPTIONS {
            return Response::new(GatewayBody::empty());
        }
        let Route::Endpoint(endpoint) = route else {
            return text_response(StatusCode::NOT_FOUND);
        };
        if request.method() != Method::POST {
            return text_response(StatusCode::METHOD_NOT_ALLOWED);
        }
        let body = request.into_body();
        match endpoint {
            Endpoint::Watch => self.stream(body, streams::watch).await,
            Endpoint::LeaseKeepAlive => self.stream(body, streams::keep_alive).await,
            Endpoint::Snapshot => self.stream(body, streams::snapshot).await,
            Endpoint::Unary(unary) => self
                .unary(unary, body)
                .await
                .unwrap_or_else(|status| refusal(unary, &status)),
        }
    }

    /// Runs a streaming call in its own task and answers with its messages.
    async fn stream<T, F, Fut>(&self, body: T, run: F) -> Response<GatewayBody>
    where
        F: FnOnce(Self, T, mpsc::Sender<Result<Bytes, Status>>) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let (sender, receiver) = mpsc::channel(STREAM_BUFFER);
        tokio::spawn(run(self.clone(), body, sender));
        stream_response(receiver).await
    }

    /// Reads a unary call's body and answers it.
    async fn unary<T>(&self, endpoint: Unary, body: T) -> Result<Response<GatewayBody>, Status>
    where
        T: Body<Data = Bytes> + Unpin,
        T::Error: fmt::Display,
    {
        let body = read_body(body, self.config.body_limit(), self.config.grpc_limit()).await?;
        self.unary_call(endpoint, &body).await
    }

    /// Serves the gateway on `listener` over HTTP/1.1 until `shutdown` completes, then closes
    /// open streams and waits a few seconds for connections to finish. Paths that are not the
    /// gateway's get Go's `404 page not found`, as from etcd.
    pub async fn serve(&self, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        let graceful = GracefulShutdown::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let gateway = self.clone();
                        let service = service_fn(move |request: Request<Incoming>| {
                            let gateway = gateway.clone();
                            async move { Ok::<_, Infallible>(gateway.respond(request).await) }
                        });
                        // The timer bounds how long a client may take to send its headers.
                        let connection = http1::Builder::new()
                            .timer(TokioTimer::new())
                            .serve_connection(TokioIo::new(stream), service);
                        let connection = graceful.watch(connection);
                        tokio::spawn(async move {
                            if let Err(error) = connection.await {
                                tracing::debug!(%peer, %error, "gateway connection ended with an error");
                            }
                        });
                    }
                    Err(error) => {
                        // Running out of descriptors is passing; keep serving.
                        tracing::warn!(%error, "gateway could not accept a connection");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                () = &mut shutdown => break,
            }
        }
        drop(listener);
        self.close();
        if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("gateway connections still open after the shutdown grace period");
        }
    }

    /// The answer to any request reaching [`Gateway::serve`].
    async fn respond(&self, request: Request<Incoming>) -> Response<GatewayBody> {
        match self.handle(request).await {
            Handled::Response(response) => response,
            Handled::NotMine(_) => not_found_page(),
        }
    }
}

/// The answer to a failed unary call, logged: at warning level if it is our fault.
fn refusal(call: Unary, status: &Status) -> Response<GatewayBody> {
    if status.code == Code::Internal {
        tracing::warn!(%status, ?call, "gateway call failed");
    } else {
        tracing::debug!(%status, ?call, "gateway call refused");
    }
    error_response(status)
}

/// The headers etcd's default CORS setting (`--cors='*'`) puts on every answer.
fn allow_cross_origin(response: &mut Response<GatewayBody>) {
    let headers = response.headers_mut();
    headers.insert(
        ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("accept, content-type, authorization"),
    );
    headers.insert(
        ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("POST, GET, OPTIONS, PUT, DELETE"),
    );
    headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
}

/// Go's `http.NotFound` answer.
fn not_found_page() -> Response<GatewayBody> {
    let mut response = text_response(StatusCode::NOT_FOUND);
    *response.body_mut() = GatewayBody::from(Bytes::from_static(b"404 page not found\n"));
    response
}

/// Answers `request` with the gateway over `backend` (default [`Config`]), or hands it back
/// if it is not the gateway's. Streams it opens end when their client goes away; use a
/// [`Gateway`] to end them at shutdown.
pub async fn handle<B: Backend>(backend: &Arc<B>, request: Request<Incoming>) -> Handled<Incoming> {
    Gateway::new(Arc::clone(backend)).handle(request).await
}

/// Serves the gateway over `backend` (default [`Config`]) on `listener` until `shutdown`
/// completes; see [`Gateway::serve`].
pub async fn serve<B: Backend>(
    listener: TcpListener,
    backend: Arc<B>,
    shutdown: impl Future<Output = ()>,
) {
    Gateway::new(backend).serve(listener, shutdown).await;
}
