//! The v2 HTTP API on hyper 1: routing, and the response shapes and headers etcd uses.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Body as HttpBody;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};

use crate::v2::backend::Backend;
use crate::v2::error::{Code, Error};
use crate::v2::node::Event;
use crate::v2::{cluster, keys};

/// The body of every v2 response: whole, or streamed for watches.
pub type Body = UnsyncBoxBody<Bytes, Infallible>;

/// The largest request body read, as Go's `ParseForm` (10 MiB); larger forms are refused
/// with etcd's "http: POST too large". This is also what bounds a v2 value.
pub const MAX_FORM_BYTES: usize = 10 << 20;

const JSON: &str = "application/json";
const TEXT: &str = "text/plain; charset=utf-8";
const HTML: &str = "text/html; charset=utf-8";

/// Serves a request if it belongs to the v2 API (see [`serves`]), and returns `None` for
/// any other path. The request is consumed either way: route on [`serves`] first when
/// other handlers share the server. Never panics on input: every malformed request gets
/// etcd's error answer.
pub async fn handle<B, T>(backend: &Arc<B>, request: Request<T>) -> Option<Response<Body>>
where
    B: Backend,
    T: HttpBody<Data = Bytes> + Send + 'static,
    T::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let path = request.uri().path().to_owned();
    if !serves(&path) {
        return None;
    }
    let clean = clean_request_path(&path);
    if clean != path {
        return Some(redirect(&request, &clean));
    }
    let response = match path.as_str() {
        "/version" => cluster::version(&request),
        "/health" => cluster::health(backend, &request).await,
        "/v2/machines" => cluster::machines(backend, &request).await,
        "/v2/stats/self" | "/v2/stats/leader" | "/v2/stats/store" => {
            cluster::stats(backend, &request, &path).await
        }
        "/v2/members" => cluster::members(backend, request, "").await,
        "/v2/keys" => keys::serve(backend, request, "/").await,
        _ => {
            if let Some(key) = path.strip_prefix("/v2/keys/") {
                let key = key.to_owned();
                keys::serve(backend, request, &key).await
            } else if let Some(id) = path.strip_prefix("/v2/members/") {
                let id = id.to_owned();
                cluster::members(backend, request, &id).await
            } else {
                text(StatusCode::NOT_FOUND, "404 page not found\n")
            }
        }
    };
    Some(response)
}

/// Whether [`handle`] answers requests for `path` (`/v2/...`, `/version`, `/health`), so
/// that a router can decide before handing the request over.
pub fn serves(path: &str) -> bool {
    path.starts_with("/v2/") || path == "/version" || path == "/health"
}

/// Go's `cleanPath`, which its HTTP router applies before routing: `path.Clean`, keeping
/// a trailing slash.
fn clean_request_path(path: &str) -> String {
    let mut clean = crate::v2::path::clean(path);
    if path.ends_with('/') && clean != "/" {
        clean.push('/');
    }
    clean
}

/// Go's router answer to an unclean path: a permanent redirect to the clean one, with an
/// HTML note for `GET`.
fn redirect<T>(request: &Request<T>, clean: &str) -> Response<Body> {
    let location = match request.uri().query() {
        Some(query) => format!("{clean}?{query}"),
        None => clean.to_owned(),
    };
    let method = request.method();
    let mut response = if method == Method::GET {
        let escaped = location
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&#34;")
            .replace('\'', "&#39;");
        let body = format!("<a href=\"{escaped}\">Moved Permanently</a>.\n\n");
        with_body(StatusCode::MOVED_PERMANENTLY, HTML, body)
    } else if method == Method::HEAD {
        with_body(StatusCode::MOVED_PERMANENTLY, HTML, Bytes::new())
    } else {
        let mut response = Response::new(full(Bytes::new()));
        *response.status_mut() = StatusCode::MOVED_PERMANENTLY;
        response
    };
    set(&mut response, "location", &location);
    response
}

/// Unix time in milliseconds by this node's clock.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
        })
}

/// Reads a request body up to [`MAX_FORM_BYTES`].
pub(crate) async fn read_body<T>(body: T) -> Result<Bytes, String>
where
    T: HttpBody<Data = Bytes> + Send,
    T::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    match Limited::new(body, MAX_FORM_BYTES).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => {
            Err("http: POST too large".to_owned())
        }
        Err(error) => Err(error.to_string()),
    }
}

/// A whole body.
pub(crate) fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed_unsync()
}

/// A response with a body and a content type.
pub(crate) fn with_body(
    status: StatusCode,
    content_type: &str,
    bytes: impl Into<Bytes>,
) -> Response<Body> {
    let mut response = Response::new(full(bytes));
    *response.status_mut() = status;
    set(&mut response, CONTENT_TYPE.as_str(), content_type);
    response
}

/// A plain-text response, as Go's `http.Error` writes it.
pub(crate) fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut response = with_body(status, TEXT, body);
    set(&mut response, "x-content-type-options", "nosniff");
    response
}

/// A JSON response.
pub(crate) fn json(status: StatusCode, body: Vec<u8>) -> Response<Body> {
    with_body(status, JSON, body)
}

/// etcd's 405 answer, naming the allowed methods when `allow` is not empty.
pub(crate) fn method_not_allowed(allow: &str) -> Response<Body> {
    let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed\n");
    if !allow.is_empty() {
        set(&mut response, ALLOW.as_str(), allow);
    }
    response
}

/// Sets a header whose value is known to be valid text.
pub(crate) fn set(response: &mut Response<Body>, name: &'static str, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        response.headers_mut().insert(name, value);
    }
}

/// Adds `X-Etcd-Cluster-ID`.
pub(crate) fn cluster_header<B: Backend>(backend: &B, response: &mut Response<Body>) {
    set(
        response,
        "x-etcd-cluster-id",
        &format!("{:x}", backend.cluster_id()),
    );
}

/// etcd's answer to a key event: JSON plus index, Raft and cluster headers.
pub(crate) fn event_response<B: Backend>(
    backend: &B,
    event: &Event,
    status: StatusCode,
    bare: bool,
) -> Response<Body> {
    let mut body = if bare {
        bare_event(event)
    } else {
        event.to_json()
    };
    body.push(b'\n');
    let mut response = json(status, body);
    key_headers(backend, &mut response, event.etcd_index);
    response
}

/// The status of a write's answer: 201 when it created the node, else 200.
pub(crate) fn write_status(event: &Event) -> StatusCode {
    let created = match event.action {
        crate::v2::Action::Create => true,
        crate::v2::Action::Set => event.prev_node.is_none(),
        _ => false,
    };
    if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    }
}

/// `noValueOnSuccess`: the action alone.
fn bare_event(event: &Event) -> Vec<u8> {
    #[derive(serde::Serialize)]
    struct Bare {
        action: crate::v2::Action,
    }
    serde_json::to_vec(&Bare {
        action: event.action,
    })
    .unwrap_or_default()
}

/// Headers of a successful key response.
pub(crate) fn key_headers<B: Backend>(backend: &B, response: &mut Response<Body>, etcd_index: u64) {
    let raft = backend.raft_status();
    set(response, "x-etcd-index", &etcd_index.to_string());
    set(response, "x-raft-index", &raft.index.to_string());
    set(response, "x-raft-term", &raft.term.to_string());
    cluster_header(backend, response);
}

/// etcd's answer to an error: its JSON, status and `X-Etcd-Index`.
pub(crate) fn error_response<B: Backend>(backend: &B, error: &Error) -> Response<Body> {
    let mut body = error.to_json();
    body.push(b'\n');
    let status = StatusCode::from_u16(error.code.status()).unwrap_or(StatusCode::BAD_REQUEST);
    let mut response = json(status, body);
    set(&mut response, "x-etcd-index", &error.index.to_string());
    cluster_header(backend, &mut response);
    response
}

/// A malformed form, as etcd reports it.
pub(crate) fn invalid_form(cause: impl Into<String>) -> Error {
    Error::request(Code::InvalidForm, cause)
}
