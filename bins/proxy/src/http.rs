//! HTTP/1.1 proxying: each request goes to a backend of its own, over connections to that
//! backend kept open between requests ([`Upstream`]). A request whose body is small enough
//! to keep is sent to the next backend when one refuses the connection (or, for a method
//! that may be repeated, fails before answering), so a backend that dies costs the client
//! nothing.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::{BodyExt, Either, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::http::request::Parts;
use hyper::http::uri::PathAndQuery;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode, Uri, Version};
use hyper_util::rt::TokioIo;
use tokio::sync::watch;

use crate::accept::Connections;
use crate::backends::{InUse, Pool};
use crate::upstream::{Lent, SendError, Upstream, UpstreamBody};

/// An answer on its way to the client: the backend's, or the proxy's own.
type AnswerBody = Either<Counted, Full<Bytes>>;

/// Request bodies up to this size are kept, so that the request can go to another backend.
const KEPT_BODY: u64 = 1 << 20;

/// Headers that describe one connection, not the message, and so are not passed on.
static HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Sends a service's requests to its backends.
#[derive(Debug)]
pub struct Forwarder {
    pool: Arc<Pool>,
    upstream: Arc<Upstream>,
}

impl Forwarder {
    /// A forwarder for `pool`'s service, over the worker's connections `upstream`.
    pub fn new(pool: Arc<Pool>, upstream: Arc<Upstream>) -> Self {
        Self { pool, upstream }
    }

    /// Answers one request from `peer`.
    async fn handle(&self, request: Request<Incoming>, peer: &Peer) -> Response<AnswerBody> {
        let service = self.pool.service();
        let (parts, body) = request.into_parts();
        let (kept, mut streamed) = if body.is_end_stream() {
            (Some(Bytes::new()), None)
        } else if body
            .size_hint()
            .upper()
            .is_some_and(|upper| upper <= KEPT_BODY)
        {
            match body.collect().await {
                Ok(collected) => (Some(collected.to_bytes()), None),
                Err(error) => {
                    return answer(
                        StatusCode::BAD_REQUEST,
                        &format!("reading the request body: {error}"),
                    );
                }
            }
        } else {
            (None, Some(body))
        };
        let mut tried = Vec::new();
        let mut last_error = String::new();
        while let Some(backend) = self.pool.pick(&tried) {
            let body = match (&kept, streamed.take()) {
                (Some(bytes), _) => Either::Left(Full::new(bytes.clone())),
                (None, Some(body)) => Either::Right(body),
                (None, None) => break,
            };
            let request = match upstream_request(&parts, backend.address, peer, body) {
                Ok(request) => request,
                Err(reason) => return answer(StatusCode::BAD_REQUEST, &reason),
            };
            let in_use = backend.begin();
            match self.upstream.send(&backend, request).await {
                Ok((response, lent)) => return respond(response, in_use, lent),
                // Its connection was closed when the grace period ended.
                Err(_) if backend.grace_over() => {
                    return answer(
                        StatusCode::GATEWAY_TIMEOUT,
                        &format!("{service}: the backend left and did not answer within the grace period"),
                    );
                }
                Err(error) => {
                    backend.failed();
                    let retry = kept.is_some()
                        && (matches!(error, SendError::Connect(_)) || repeatable(&parts.method));
                    last_error = sinew_support::error_chain(&error);
                    tracing::warn!(
                        service,
                        backend = %backend.address,
                        instance = %backend.registration.instance,
                        error = %last_error,
                        retry,
                        "the backend failed the request"
                    );
                    if !retry {
                        return answer(
                            StatusCode::BAD_GATEWAY,
                            &format!("{service}: the backend failed the request: {last_error}"),
                        );
                    }
                    tried.push(backend.address);
                }
            }
        }
        if tried.is_empty() {
            self.pool.unavailable();
            tracing::warn!(service, peer = %peer.address, "no healthy backend; answering 503");
            return answer(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("no healthy instance of {service}"),
            );
        }
        answer(
            StatusCode::BAD_GATEWAY,
            &format!(
                "no instance of {service} answered ({} tried; last: {last_error})",
                tried.len()
            ),
        )
    }
}

/// Serves HTTP/1.1 on the `connections` handed to this worker until the listener stops
/// accepting; once `stopping` turns true, each open connection finishes the request it is
/// on and closes.
pub async fn serve(
    mut connections: Connections,
    forwarder: Arc<Forwarder>,
    stopping: watch::Receiver<bool>,
) {
    while let Some((stream, peer, session)) = connections.next().await {
        let _ = stream.set_nodelay(true);
        let forwarder = Arc::clone(&forwarder);
        let mut stopping = stopping.clone();
        session.spawn(async move {
            let client = Arc::new(Peer::new(peer));
            let service = service_fn(move |request| {
                let (forwarder, client) = (Arc::clone(&forwarder), Arc::clone(&client));
                async move { Ok::<_, Infallible>(forwarder.handle(request, &client).await) }
            });
            let connection = http1::Builder::new()
                .writev(false)
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            let served = tokio::select! {
                served = connection.as_mut() => served,
                () = async { let _ = stopping.wait_for(|stop| *stop).await; } => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(error) = served {
                tracing::debug!(%peer, %error, "client connection ended");
            }
        });
    }
}

/// A client connection's far end.
#[derive(Debug)]
struct Peer {
    address: SocketAddr,
    /// Its address as `x-forwarded-for` gives it, made once per connection.
    forwarded: HeaderValue,
}

impl Peer {
    fn new(address: SocketAddr) -> Self {
        let forwarded = HeaderValue::from_str(&address.ip().to_string())
            .expect("an IP address is a valid header value");
        Self { address, forwarded }
    }
}

/// The request to send to the backend at `address`: the client's, less the headers of its
/// connection, with the client added to `x-forwarded-for`.
fn upstream_request(
    parts: &Parts,
    address: SocketAddr,
    peer: &Peer,
    body: UpstreamBody,
) -> Result<Request<UpstreamBody>, String> {
    let path = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    let mut request = Request::new(body);
    *request.method_mut() = parts.method.clone();
    *request.uri_mut() = Uri::from(path);
    *request.version_mut() = Version::HTTP_11;
    // The client's headers are kept for a retry on another backend, so this is a copy.
    let headers = request.headers_mut();
    *headers = parts.headers.clone();
    strip_hop_by_hop(headers);
    if !headers.contains_key(header::HOST) {
        // HTTP/1.0 clients may leave it out; HTTP/1.1 requires it.
        let host = HeaderValue::from_str(&address.to_string())
            .map_err(|error| format!("backend address {address} as a Host header: {error}"))?;
        headers.insert(header::HOST, host);
    }
    let forwarded = match parts
        .headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
    {
        Some(earlier) => HeaderValue::from_str(&format!("{earlier}, {}", peer.address.ip())).ok(),
        None => Some(peer.forwarded.clone()),
    };
    if let Some(value) = forwarded {
        headers.insert("x-forwarded-for", value);
    }
    Ok(request)
}

/// The backend's answer, passed on; the backend counts it as open, and its connection as
/// lent, until its body is sent.
fn respond(response: Response<Incoming>, in_use: InUse, lent: Lent) -> Response<AnswerBody> {
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    Response::from_parts(
        parts,
        Either::Left(Counted {
            body,
            _in_use: in_use,
            _lent: lent,
        }),
    )
}

/// Removes the hop-by-hop headers from `headers`, including those `connection` names.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages have none: a look at each name costs less than a lookup of each.
    if !headers.keys().any(|name| HOP_BY_HOP.contains(name)) {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    for name in named {
        headers.remove(name);
    }
}

/// Whether a request with `method` may be sent again after a failure: its effect does not
/// add up (RFC 9110's idempotent methods).
fn repeatable(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

/// An answer of the proxy's own.
fn answer(status: StatusCode, text: &str) -> Response<AnswerBody> {
    let mut response = Response::new(Either::Right(Full::new(Bytes::from(format!("{text}\n")))));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// A backend's response body, which keeps the backend's request counted as open and its
/// connection lent (fields drop in order: the body is done with before the connection goes
/// back).
struct Counted {
    body: Incoming,
    _in_use: InUse,
    _lent: Lent,
}

impl Body for Counted {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_headers_are_not_passed_on() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "connection",
            HeaderValue::from_static("keep-alive, x-trace"),
        );
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert("x-trace", HeaderValue::from_static("1"));
        headers.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        headers.insert("content-type", HeaderValue::from_static("text/plain"));
        let mut kept = headers;
        strip_hop_by_hop(&mut kept);
        assert_eq!(kept.len(), 1);
        assert_eq!(kept["content-type"], "text/plain");
    }
}
