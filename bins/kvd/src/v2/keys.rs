//! `/v2/keys`: reads, writes and long-poll watches.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures::stream;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Body as HttpBody, Frame};
use hyper::header::CONTENT_TYPE;
use hyper::{Method, Request, Response, StatusCode};
use tokio::sync::broadcast::{self, error::RecvError};

use crate::v2::backend::Backend;
use crate::v2::command::{
    Command, CompareAndDelete, CompareAndSwap, Create, Delete, Op, Set, Ttl, Update,
};
use crate::v2::error::Error;
use crate::v2::form::{decode_path, Form};
use crate::v2::http::{
    error_response, event_response, invalid_form, json, key_headers, method_not_allowed, now_ms,
    read_body, write_status, Body,
};
use crate::v2::node::Event;
use crate::v2::request::KeyRequest;
use crate::v2::store::WatchStart;
use crate::v2::watch::watch_matches;

/// Reads answered and refused since this process started (`/v2/stats/store`).
pub(crate) static GETS_SUCCESS: AtomicU64 = AtomicU64::new(0);
pub(crate) static GETS_FAIL: AtomicU64 = AtomicU64::new(0);
/// Watches waiting now.
pub(crate) static WATCHERS: AtomicU64 = AtomicU64::new(0);

/// Serves `/v2/keys/<raw_key>`.
pub(crate) async fn serve<B, T>(
    backend: &Arc<B>,
    request: Request<T>,
    raw_key: &str,
) -> Response<Body>
where
    B: Backend,
    T: HttpBody<Data = Bytes> + Send + 'static,
    T::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let method = request.method().clone();
    if ![
        Method::HEAD,
        Method::GET,
        Method::PUT,
        Method::POST,
        Method::DELETE,
    ]
    .contains(&method)
    {
        return method_not_allowed("HEAD,GET,PUT,POST,DELETE");
    }
    let parsed = match parse(request, raw_key).await {
        Ok(parsed) => parsed,
        Err(error) => return error_response(backend.as_ref(), &error),
    };
    let response = match method {
        Method::GET | Method::HEAD if parsed.wait => watch(backend, parsed).await,
        Method::GET | Method::HEAD => get(backend, parsed).await,
        Method::PUT => write(backend, put_op(&parsed), parsed.no_value_on_success).await,
        Method::POST => {
            write(
                backend,
                create_op(&parsed, true),
                parsed.no_value_on_success,
            )
            .await
        }
        _ => write(backend, delete_op(&parsed), parsed.no_value_on_success).await,
    };
    let mut response = response.unwrap_or_else(|error| error_response(backend.as_ref(), &error));
    if method == Method::HEAD {
        let (parts, _) = response.into_parts();
        response = Response::from_parts(parts, crate::v2::http::full(Bytes::new()));
    }
    response
}

/// The request's parameters: the form body (for `PUT` and `POST`) first, then the query.
async fn parse<T>(request: Request<T>, raw_key: &str) -> Result<KeyRequest, Error>
where
    T: HttpBody<Data = Bytes> + Send + 'static,
    T::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let method = request.method().as_str().to_owned();
    let key = decode_path(raw_key).map_err(|error| invalid_form(error.to_string()))?;
    let query = request.uri().query().unwrap_or("").to_owned();
    let is_form = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|value| value.trim() == "application/x-www-form-urlencoded");
    let mut form = Form::default();
    if is_form && (method == "PUT" || method == "POST") {
        let body = read_body(request.into_body()).await.map_err(invalid_form)?;
        let body = std::str::from_utf8(&body).map_err(|error| invalid_form(error.to_string()))?;
        form.extend_from(body)
            .map_err(|error| invalid_form(error.to_string()))?;
    }
    form.extend_from(&query)
        .map_err(|error| invalid_form(error.to_string()))?;
    KeyRequest::parse(&method, &key, &form)
}

/// The write a `PUT` stands for, as etcd's applier chooses it.
fn put_op(request: &KeyRequest) -> Op {
    let ttl = Ttl {
        seconds: request.ttl,
        refresh: request.refresh,
    };
    let (key, value) = (request.key.clone(), request.value.clone());
    let conditional = request.prev_index > 0 || !request.prev_value.is_empty();
    match request.prev_exist {
        Some(false) => create_op(request, false),
        Some(_) | None if conditional => Op::CompareAndSwap(CompareAndSwap {
            key,
            value,
            prev_value: request.prev_value.clone(),
            prev_index: request.prev_index,
            ttl,
        }),
        Some(_) => Op::Update(Update { key, value, ttl }),
        None => Op::Set(Set {
            key,
            value,
            dir: request.dir,
            ttl,
        }),
    }
}

/// A create: `PUT` with `prevExist=false`, or `POST` for an in-order key.
fn create_op(request: &KeyRequest, in_order: bool) -> Op {
    Op::Create(Create {
        key: request.key.clone(),
        value: request.value.clone(),
        dir: request.dir,
        in_order,
        ttl: request.ttl,
    })
}

/// The write a `DELETE` stands for.
fn delete_op(request: &KeyRequest) -> Op {
    if request.prev_index > 0 || !request.prev_value.is_empty() {
        Op::CompareAndDelete(CompareAndDelete {
            key: request.key.clone(),
            prev_value: request.prev_value.clone(),
            prev_index: request.prev_index,
        })
    } else {
        Op::Delete(Delete {
            key: request.key.clone(),
            dir: request.dir,
            recursive: request.recursive,
        })
    }
}

/// Proposes a write stamped with this node's clock (the leader may restamp it).
async fn write<B: Backend>(backend: &Arc<B>, op: Op, bare: bool) -> Result<Response<Body>, Error> {
    let events = backend.propose(Command { now: now_ms(), op }).await?;
    let event = events
        .first()
        .ok_or_else(|| Error::raft("the write was applied without an event"))?;
    Ok(event_response(
        backend.as_ref(),
        event,
        write_status(event),
        bare,
    ))
}

async fn get<B: Backend>(backend: &Arc<B>, request: KeyRequest) -> Result<Response<Body>, Error> {
    let (key, recursive) = (request.key, request.recursive);
    let now = now_ms();
    let result = backend
        .read(request.quorum, move |store| store.get(&key, recursive, now))
        .await
        .and_then(|read| read);
    let counter = if result.is_ok() {
        &GETS_SUCCESS
    } else {
        &GETS_FAIL
    };
    counter.fetch_add(1, Ordering::Relaxed);
    Ok(event_response(
        backend.as_ref(),
        &result?,
        StatusCode::OK,
        false,
    ))
}

/// `wait=true`: answers at once from history, or sends the headers and waits for the
/// first matching change (every change with `stream=true`). Dropping the body, as hyper
/// does when the client goes away, ends the wait.
async fn watch<B: Backend>(backend: &Arc<B>, request: KeyRequest) -> Result<Response<Body>, Error> {
    // Subscribe before reading history, so that no change falls between the two.
    let events = backend.subscribe();
    let (key, recursive, wait_index) = (request.key.clone(), request.recursive, request.wait_index);
    let start = backend
        .read(false, move |store| {
            store.watch_start(&key, recursive, wait_index)
        })
        .await??;
    let (since, etcd_index) = match start {
        WatchStart::Found(event) if !request.stream => {
            return Ok(event_response(
                backend.as_ref(),
                &event,
                StatusCode::OK,
                false,
            ));
        }
        WatchStart::Found(event) => (event.index(), event.etcd_index),
        WatchStart::Pending { since, etcd_index } => (since, etcd_index),
    };
    let waiter = Waiter {
        backend: Arc::clone(backend),
        events,
        key: request.key,
        recursive,
        since,
        stream: request.stream,
        done: false,
        _count: WatcherCount::new(),
    };
    let body = stream::unfold(waiter, |mut waiter| async move {
        let chunk = waiter.next_chunk().await?;
        Some((Ok::<_, Infallible>(Frame::data(chunk)), waiter))
    });
    let mut response = json(StatusCode::OK, Vec::new());
    *response.body_mut() = StreamBody::new(body).boxed_unsync();
    key_headers(backend.as_ref(), &mut response, etcd_index);
    Ok(response)
}

/// One waiting watch.
struct Waiter<B> {
    backend: Arc<B>,
    events: broadcast::Receiver<Event>,
    key: String,
    recursive: bool,
    since: u64,
    stream: bool,
    done: bool,
    _count: WatcherCount,
}

impl<B: Backend> Waiter<B> {
    /// The next event to send as JSON, or `None` when the watch is over.
    async fn next_chunk(&mut self) -> Option<Bytes> {
        if self.done {
            return None;
        }
        let mut chunk = match self.next_event().await? {
            Ok(event) => {
                self.since = event.index() + 1;
                event.to_json()
            }
            Err(error) => {
                self.done = true;
                error.to_json()
            }
        };
        chunk.push(b'\n');
        self.done = self.done || !self.stream;
        Some(Bytes::from(chunk))
    }

    async fn next_event(&mut self) -> Option<Result<Event, Error>> {
        // A stream that starts inside history first replays what history holds.
        if let Some(found) = self.rescan_if_behind().await {
            return Some(found);
        }
        loop {
            match self.events.recv().await {
                Ok(event) if watch_matches(&event, &self.key, self.recursive, self.since) => {
                    return Some(Ok(event));
                }
                Ok(_) => {}
                Err(RecvError::Lagged(_)) => {
                    if let Some(found) = self.rescan().await {
                        return Some(found);
                    }
                }
                Err(RecvError::Closed) => return None,
            }
        }
    }

    /// History may hold the next event of a stream; look there first.
    async fn rescan_if_behind(&mut self) -> Option<Result<Event, Error>> {
        let index = self.backend.read(false, |store| store.index()).await.ok()?;
        if self.since <= index {
            self.rescan().await
        } else {
            None
        }
    }

    /// Looks for the next matching event in history (after missing broadcast events).
    async fn rescan(&mut self) -> Option<Result<Event, Error>> {
        let (key, recursive, since) = (self.key.clone(), self.recursive, self.since);
        let start = self
            .backend
            .read(false, move |store| {
                store.watch_start(&key, recursive, since)
            })
            .await
            .and_then(|start| start);
        match start {
            Ok(WatchStart::Found(event)) => Some(Ok(*event)),
            Ok(WatchStart::Pending { .. }) => None,
            Err(error) => Some(Err(error)),
        }
    }
}

/// Counts a waiting watch for `/v2/stats/store` while it lives.
struct WatcherCount;

impl WatcherCount {
    fn new() -> Self {
        WATCHERS.fetch_add(1, Ordering::Relaxed);
        Self
    }
}

impl Drop for WatcherCount {
    fn drop(&mut self) {
        WATCHERS.fetch_sub(1, Ordering::Relaxed);
    }
}
