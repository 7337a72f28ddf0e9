//! The cluster endpoints of the v2 API: `/version`, `/health`, `/v2/members`,
//! `/v2/machines` and `/v2/stats/*`.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use hyper::body::Body as HttpBody;
use hyper::header::CONTENT_TYPE;
use hyper::{Method, Request, Response, StatusCode};
use serde::{Deserialize, Serialize};

use crate::v2::backend::{Backend, Member, MemberError};
use crate::v2::http::{
    cluster_header, json, method_not_allowed, read_body, set, text, with_body, Body,
};
use crate::v2::keys::{GETS_FAIL, GETS_SUCCESS, WATCHERS};
use crate::v2::stats::Stats;

/// The header `/version` reports kvd's own version in, beside etcd's body.
pub const KVD_VERSION_HEADER: &str = "x-kvd-version";

/// `/version`: etcd's `{"etcdserver":"3.4.0","etcdcluster":"3.4.0"}`, and kvd's own version
/// in the [`KVD_VERSION_HEADER`] header.
pub(crate) fn version<T>(request: &Request<T>) -> Response<Body> {
    if request.method() != Method::GET {
        return method_not_allowed("GET");
    }
    #[derive(Serialize)]
    struct Version {
        etcdserver: &'static str,
        etcdcluster: &'static str,
    }
    let body = Version {
        etcdserver: crate::ETCD_VERSION,
        etcdcluster: crate::ETCD_VERSION,
    };
    let mut response = json(
        StatusCode::OK,
        serde_json::to_vec(&body).unwrap_or_default(),
    );
    set(&mut response, KVD_VERSION_HEADER, crate::KVD_VERSION);
    response
}

/// `/health`: healthy when no alarm is raised and a linearizable read succeeds, which needs
/// a leader and a quorum (etcd 3.4's checks).
pub(crate) async fn health<B: Backend, T>(
    backend: &Arc<B>,
    request: &Request<T>,
) -> Response<Body> {
    if request.method() != Method::GET {
        return method_not_allowed("GET");
    }
    let alarms = backend.alarms();
    let checked = match alarms.first() {
        Some(alarm) => Err(format!(
            "alarm {:?} raised by member {:x}",
            alarm.kind, alarm.member
        )),
        None => backend
            .read(true, |_| ())
            .await
            .map_err(|error| error.to_string()),
    };
    match checked {
        Ok(()) => with_body(
            StatusCode::OK,
            "text/plain; charset=utf-8",
            r#"{"health":"true"}"#,
        ),
        Err(error) => {
            tracing::warn!(%error, "v2 health check failed");
            with_body(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain; charset=utf-8",
                r#"{"health":"false"}"#,
            )
        }
    }
}

/// `/v2/machines`: the members' client URLs, sorted (as etcd sorts them), comma separated.
pub(crate) async fn machines<B: Backend, T>(
    backend: &Arc<B>,
    request: &Request<T>,
) -> Response<Body> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return method_not_allowed("GET,HEAD");
    }
    match backend.members().await {
        Ok(members) => {
            let mut urls: Vec<String> = members.into_iter().flat_map(|m| m.client_urls).collect();
            urls.sort();
            with_body(StatusCode::OK, "text/plain; charset=utf-8", urls.join(", "))
        }
        Err(error) => member_error(backend.as_ref(), &error, ""),
    }
}

/// `/v2/stats/self`, `/v2/stats/leader` and `/v2/stats/store`.
pub(crate) async fn stats<B: Backend, T>(
    backend: &Arc<B>,
    request: &Request<T>,
    path: &str,
) -> Response<Body> {
    if request.method() != Method::GET {
        return method_not_allowed("GET");
    }
    let body = match path {
        "/v2/stats/self" => serde_json::to_vec(&backend.self_stats()),
        "/v2/stats/leader" => match backend.leader_stats() {
            Some(stats) => serde_json::to_vec(&stats),
            None => return message(StatusCode::FORBIDDEN, "not current leader"),
        },
        _ => match backend.read(false, |store| store.stats()).await {
            Ok(stats) => serde_json::to_vec(&StoreStats {
                gets_success: GETS_SUCCESS.load(Ordering::Relaxed),
                gets_fail: GETS_FAIL.load(Ordering::Relaxed),
                stats,
                watchers: WATCHERS.load(Ordering::Relaxed),
            }),
            Err(error) => return message(StatusCode::INTERNAL_SERVER_ERROR, &error.to_string()),
        },
    };
    json(StatusCode::OK, body.unwrap_or_default())
}

/// `/v2/stats/store` in etcd's field order.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StoreStats {
    gets_success: u64,
    gets_fail: u64,
    #[serde(flatten)]
    stats: Stats,
    watchers: u64,
}

/// `/v2/members` (`id` empty) and `/v2/members/<id>`.
pub(crate) async fn members<B, T>(backend: &Arc<B>, request: Request<T>, id: &str) -> Response<Body>
where
    B: Backend,
    T: HttpBody<Data = Bytes> + Send + 'static,
    T::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let backend_ref = backend.as_ref();
    let mut response = match (request.method().clone(), id) {
        (Method::GET, "") => list_members(backend_ref).await,
        (Method::GET, "leader") => leader_member(backend_ref).await,
        (Method::GET, _) => text(StatusCode::NOT_FOUND, "404 page not found\n"),
        (Method::POST, _) => add_member(backend_ref, request).await,
        (Method::DELETE, "") | (Method::PUT, "") => method_not_allowed(""),
        (Method::DELETE, id) => match parse_id(id) {
            Some(parsed) => match backend.remove_member(parsed).await {
                Ok(()) => no_content(),
                Err(error) => member_error(backend_ref, &error, id),
            },
            None => member_error(backend_ref, &MemberError::NotFound, id),
        },
        (Method::PUT, id) => update_member(backend_ref, request, id).await,
        _ => method_not_allowed("GET,POST,DELETE,PUT"),
    };
    cluster_header(backend_ref, &mut response);
    response
}

async fn list_members<B: Backend>(backend: &B) -> Response<Body> {
    #[derive(Serialize)]
    struct Members {
        members: Vec<Member>,
    }
    match backend.members().await {
        Ok(members) => {
            let mut body = serde_json::to_vec(&Members { members }).unwrap_or_default();
            body.push(b'\n');
            json(StatusCode::OK, body)
        }
        Err(error) => member_error(backend, &error, ""),
    }
}

async fn leader_member<B: Backend>(backend: &B) -> Response<Body> {
    let leader = backend.self_stats().leader_info.leader;
    match backend.members().await {
        Ok(members) => match members.into_iter().find(|member| member.id == leader) {
            Some(member) => {
                let mut body = serde_json::to_vec(&member).unwrap_or_default();
                body.push(b'\n');
                json(StatusCode::OK, body)
            }
            None => message(StatusCode::SERVICE_UNAVAILABLE, "During Leader Election"),
        },
        Err(error) => member_error(backend, &error, ""),
    }
}

async fn add_member<B, T>(backend: &B, request: Request<T>) -> Response<Body>
where
    B: Backend,
    T: HttpBody<Data = Bytes> + Send + 'static,
    T::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let peer_urls = match peer_urls(request).await {
        Ok(urls) => urls,
        Err(response) => return response,
    };
    match backend.add_member(peer_urls).await {
        Ok(member) => {
            let mut body = serde_json::to_vec(&member).unwrap_or_default();
            body.push(b'\n');
            json(StatusCode::CREATED, body)
        }
        Err(error) => member_error(backend, &error, ""),
    }
}

async fn update_member<B, T>(backend: &B, request: Request<T>, id: &str) -> Response<Body>
where
    B: Backend,
    T: HttpBody<Data = Bytes> + Send + 'static,
    T::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let Some(parsed) = parse_id(id) else {
        return member_error(backend, &MemberError::NotFound, id);
    };
    let peer_urls = match peer_urls(request).await {
        Ok(urls) => urls,
        Err(response) => return response,
    };
    match backend.update_member(parsed, peer_urls).await {
        Ok(()) => no_content(),
        Err(error) => member_error(backend, &error, id),
    }
}

/// The `peerURLs` of a member request, checked as etcd checks them.
async fn peer_urls<T>(request: Request<T>) -> Result<Vec<String>, Response<Body>>
where
    T: HttpBody<Data = Bytes> + Send + 'static,
    T::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    #[derive(Deserialize)]
    struct MemberRequest {
        #[serde(rename = "peerURLs")]
        peer_urls: Vec<String>,
    }
    let content_type = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
        .to_owned();
    if content_type != "application/json" {
        let reason = format!("Bad Content-Type {content_type}, accept application/json");
        return Err(message(StatusCode::UNSUPPORTED_MEDIA_TYPE, &reason));
    }
    let body = read_body(request.into_body())
        .await
        .map_err(|reason| message(StatusCode::BAD_REQUEST, &reason))?;
    let parsed: MemberRequest = serde_json::from_slice(&body)
        .map_err(|error| message(StatusCode::BAD_REQUEST, &error.to_string()))?;
    for url in &parsed.peer_urls {
        check_peer_url(url).map_err(|reason| message(StatusCode::BAD_REQUEST, &reason))?;
    }
    Ok(parsed.peer_urls)
}

/// etcd's `types.NewURLs` checks: a known scheme, `host:port`, no path.
fn check_peer_url(text: &str) -> Result<(), String> {
    let scheme_error = || format!("URL scheme must be http, https, unix, or unixs: {text}");
    let url = url::Url::parse(text).map_err(|_| scheme_error())?;
    if !["http", "https", "unix", "unixs"].contains(&url.scheme()) {
        return Err(scheme_error());
    }
    if url.host_str().is_none() || url.port().is_none() {
        return Err(format!(
            r#"URL address does not have the form "host:port": {text}"#
        ));
    }
    if !(url.path().is_empty() || url.path() == "/") {
        return Err(format!("URL must not contain a path: {text}"));
    }
    Ok(())
}

fn parse_id(id: &str) -> Option<u64> {
    u64::from_str_radix(id, 16).ok()
}

fn member_error<B: Backend>(backend: &B, error: &MemberError, id: &str) -> Response<Body> {
    let mut response = match error {
        MemberError::NotFound => message(StatusCode::NOT_FOUND, &format!("No such member: {id}")),
        MemberError::Removed => message(
            StatusCode::GONE,
            &format!("Member permanently removed: {id}"),
        ),
        MemberError::PeerUrlExists => message(StatusCode::CONFLICT, &error.to_string()),
        MemberError::Unavailable(reason) => {
            tracing::warn!(%reason, "v2 membership request failed");
            message(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
        }
    };
    cluster_header(backend, &mut response);
    response
}

/// etcd's `{"message":..}` error body.
fn message(status: StatusCode, text: &str) -> Response<Body> {
    #[derive(Serialize)]
    struct Message<'a> {
        message: &'a str,
    }
    json(
        status,
        serde_json::to_vec(&Message { message: text }).unwrap_or_default(),
    )
}

fn no_content() -> Response<Body> {
    let mut response = Response::new(crate::v2::http::full(Bytes::new()));
    *response.status_mut() = StatusCode::NO_CONTENT;
    response
}
