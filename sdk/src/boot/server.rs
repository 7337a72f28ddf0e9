//! The boot server: matchbox's HTTP endpoints over a checked [`Config`], every request
//! logged with the machine's labels and kept as a [`BootEvent`] that a playbook can wait
//! for.
//!
//! - `GET /boot.ipxe` (and `/boot.ipxe.0`): the bootstrap script, chaining to `/ipxe`
//!   with the machine's labels.
//! - `GET /ipxe?LABELS`: the script of the profile of the group the labels select.
//! - `GET /grub?LABELS`: the same as a GRUB configuration, its URLs on the server the
//!   request's `Host` names.
//! - `GET /metadata?LABELS`: the group's metadata as an env file.
//! - `GET /generic?LABELS`: the profile's generic template, rendered.
//! - `GET|HEAD /assets/NAME` and `/assets/sha256/HEX`: files, with `Content-Length` and
//!   single `Range`s; never a file whose digest differs from the one a profile expects.
//!
//! No group for the labels is a 404 (as matchbox); a template that fails to render is a 500
//! whose reason is logged, as is every refusal.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::io::{Read, Seek, SeekFrom};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{
    ACCEPT_RANGES, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, ETAG, HOST, RANGE,
};
use hyper::http::uri::Authority;
use hyper::{Method, Request, Response, StatusCode};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, oneshot};
use tokio::task::JoinHandle;

use super::assets::{requested_range, Asset, AssetError, Digest};
use super::config::{Config, NetBoot, Part};
use super::labels::Labels;
use super::render;

type Body = BoxBody<Bytes, std::io::Error>;

/// How many events the server keeps for [`BootServer::events`] and late waiters.
const KEPT_EVENTS: usize = 10_000;

/// The answer when no group matches the machine's labels (a 404, as matchbox).
const NO_GROUP: &str = "no group matches this machine\n";

/// Bytes read from an asset per body chunk.
const CHUNK: usize = 256 << 10;

/// What a machine fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    /// `/boot.ipxe`.
    Bootstrap,
    /// `/ipxe`: the script of this profile, or none for the machine.
    Script {
        /// The profile's id, when a group matched.
        profile: Option<String>,
    },
    /// `/metadata`.
    Metadata,
    /// `/generic`.
    Generic,
    /// An asset: what it is to the machine's profile, when the machine is known.
    Asset {
        /// The asset's name.
        name: String,
        /// The kernel or an initrd of the profile of the machine that fetched it.
        part: Option<Part>,
    },
    /// Anything else.
    Other {
        /// The path.
        path: String,
    },
}

impl std::fmt::Display for Fetched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fetched::Bootstrap => f.write_str("the bootstrap script"),
            Fetched::Script { profile: Some(p) } => write!(f, "the boot script of profile {p}"),
            Fetched::Script { profile: None } => f.write_str("a boot script (no group matched)"),
            Fetched::Metadata => f.write_str("its metadata"),
            Fetched::Generic => f.write_str("its generic template"),
            Fetched::Asset {
                name,
                part: Some(part),
            } => write!(f, "asset {name} ({part})"),
            Fetched::Asset { name, part: None } => write!(f, "asset {name}"),
            Fetched::Other { path } => f.write_str(path),
        }
    }
}

/// One request, as the server answered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootEvent {
    /// The machine's labels (for an asset, those its script put in the URL).
    pub labels: Labels,
    /// Where the request came from.
    pub peer: SocketAddr,
    /// What it asked for.
    pub fetched: Fetched,
    /// The answer's status.
    pub status: u16,
}

impl BootEvent {
    /// Whether the machine with `mac` was served its kernel.
    pub fn is_kernel_of(&self, mac: &str) -> bool {
        self.status < 300
            && self.labels.get("mac") == Some(mac)
            && matches!(
                self.fetched,
                Fetched::Asset {
                    part: Some(Part::Kernel),
                    ..
                }
            )
    }
}

/// Why waiting for an event failed.
#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    /// Nothing matched in time.
    #[error("no such boot request within {0:?}")]
    Timeout(Duration),
    /// The server stopped.
    #[error("the boot server stopped")]
    Stopped,
}

/// What the request handlers share.
#[derive(Debug)]
struct State {
    config: RwLock<Arc<Config>>,
    events: broadcast::Sender<BootEvent>,
    kept: Mutex<VecDeque<BootEvent>>,
}

/// A running boot server; dropping it stops it.
#[derive(Debug)]
pub struct BootServer {
    addr: SocketAddr,
    state: Arc<State>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl BootServer {
    /// Serves `config` on `listener`.
    pub fn start(listener: TcpListener, config: Config) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            config: RwLock::new(Arc::new(config)),
            events: broadcast::channel(1024).0,
            kept: Mutex::default(),
        });
        let (stop, stopped) = oneshot::channel::<()>();
        let handler = Arc::clone(&state);
        let task = tokio::spawn(crate::http1::serve(
            listener,
            move |request, peer| {
                let state = Arc::clone(&handler);
                async move { state.handle(request, peer).await }
            },
            async move {
                let _ = stopped.await;
            },
        ));
        tracing::info!(%addr, "boot server listening");
        Ok(Self {
            addr,
            state,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its base URL, `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Serves `config` from now on (already checked, so it cannot be refused here).
    pub fn reload(&self, config: Config) {
        *self
            .state
            .config
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(config);
        tracing::info!("boot configuration reloaded");
    }

    /// The requests served so far (the last [`KEPT_EVENTS`]).
    pub fn events(&self) -> Vec<BootEvent> {
        self.state.lock_kept().iter().cloned().collect()
    }

    /// The first request, already served or still to come, for which `wanted` holds.
    pub async fn wait_for(
        &self,
        wanted: impl Fn(&BootEvent) -> bool,
        timeout: Duration,
    ) -> Result<BootEvent, WaitError> {
        // Subscribe before looking at what is kept, so that nothing falls in between.
        let mut events = self.state.events.subscribe();
        if let Some(event) = self.state.find_kept(&wanted) {
            return Ok(event);
        }
        let waiting = async {
            loop {
                match events.recv().await {
                    Ok(event) if wanted(&event) => return Ok(event),
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        if let Some(event) = self.state.find_kept(&wanted) {
                            return Ok(event);
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => return Err(WaitError::Stopped),
                }
            }
        };
        tokio::time::timeout(timeout, waiting)
            .await
            .map_err(|_| WaitError::Timeout(timeout))?
    }

    /// Stops serving and waits until the listener is closed.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for BootServer {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

impl State {
    async fn handle(&self, request: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        let config = Arc::clone(&self.config.read().unwrap_or_else(PoisonError::into_inner));
        let raw_query = request.uri().query().unwrap_or("").to_owned();
        let (labels, bad_mac) = Labels::from_query(&raw_query);
        if let Some(mac) = bad_mac {
            tracing::warn!(%peer, mac, "ignoring a MAC address that does not parse");
        }
        let path = request.uri().path().to_owned();
        let (fetched, response) = match (request.method(), path.as_str()) {
            (&Method::GET, "/boot.ipxe" | "/boot.ipxe.0") => {
                (Fetched::Bootstrap, text(StatusCode::OK, render::BOOTSTRAP))
            }
            (&Method::GET, "/ipxe") => script(&config, &labels, render::ipxe_script),
            (&Method::GET, "/grub") => match request
                .headers()
                .get(HOST)
                .and_then(|h| h.to_str().ok()?.parse::<Authority>().ok())
            {
                // GRUB 2.06 names no port in its URLs: it reaches the server on 80.
                Some(host) => script(&config, &labels, |boot, labels| {
                    render::grub_script(boot, labels, host.host())
                }),
                _ => (
                    Fetched::Script { profile: None },
                    text(
                        StatusCode::BAD_REQUEST,
                        "/grub needs a Host header naming this server\n",
                    ),
                ),
            },
            (&Method::GET, "/metadata") => {
                (Fetched::Metadata, metadata(&config, &labels, &raw_query))
            }
            (&Method::GET, "/generic") => (Fetched::Generic, generic(&config, &labels, &raw_query)),
            (&Method::GET | &Method::HEAD, _) if path.starts_with("/assets/") => {
                let name = path.trim_start_matches("/assets/").to_owned();
                let part = part_of(&config, &labels, &path);
                let head = request.method() == Method::HEAD;
                let range = request
                    .headers()
                    .get(RANGE)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let response = asset(&config, &name, head, range.as_deref()).await;
                (Fetched::Asset { name, part }, response)
            }
            _ => (
                Fetched::Other { path: path.clone() },
                text(StatusCode::NOT_FOUND, "not found\n"),
            ),
        };
        let status = response.status().as_u16();
        tracing::info!(%peer, %labels, method = %request.method(), path, status, "boot request");
        self.keep(BootEvent {
            labels,
            peer,
            fetched,
            status,
        });
        response
    }

    fn lock_kept(&self) -> std::sync::MutexGuard<'_, VecDeque<BootEvent>> {
        self.kept.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The first kept event for which `wanted` holds.
    fn find_kept(&self, wanted: impl Fn(&BootEvent) -> bool) -> Option<BootEvent> {
        self.lock_kept().iter().find(|e| wanted(e)).cloned()
    }

    fn keep(&self, event: BootEvent) {
        let mut kept = self.lock_kept();
        if kept.len() == KEPT_EVENTS {
            kept.pop_front();
        }
        kept.push_back(event.clone());
        drop(kept);
        // Nobody waiting is fine.
        let _ = self.events.send(event);
    }
}

/// The boot script for the machine (`/ipxe`, `/grub`), rendered by `render` from its
/// profile; a 404 when no group matches.
fn script(
    config: &Config,
    labels: &Labels,
    render: impl FnOnce(&NetBoot, &Labels) -> String,
) -> (Fetched, Response<Body>) {
    let Some((group, profile)) = config
        .select(labels)
        .and_then(|group| Some((group, config.profile(group)?)))
    else {
        tracing::info!(%labels, "no group matches the machine");
        return (
            Fetched::Script { profile: None },
            text(StatusCode::NOT_FOUND, NO_GROUP),
        );
    };
    tracing::debug!(%labels, group = group.id, profile = profile.id, "matched");
    (
        Fetched::Script {
            profile: Some(profile.id.clone()),
        },
        text(StatusCode::OK, &render(&profile.boot, labels)),
    )
}

fn metadata(config: &Config, labels: &Labels, raw_query: &str) -> Response<Body> {
    match config.select(labels) {
        Some(group) => text(
            StatusCode::OK,
            &render::env_file(&render::variables(group, labels, raw_query)),
        ),
        None => text(StatusCode::NOT_FOUND, NO_GROUP),
    }
}

fn generic(config: &Config, labels: &Labels, raw_query: &str) -> Response<Body> {
    let Some(group) = config.select(labels) else {
        return text(StatusCode::NOT_FOUND, NO_GROUP);
    };
    let Some(name) = config.profile(group).and_then(|p| p.generic_id.as_deref()) else {
        return text(
            StatusCode::NOT_FOUND,
            &format!("profile {:?} has no generic template\n", group.profile),
        );
    };
    let data = render::variables(group, labels, raw_query);
    match render::generic(config.templates(), name, &data) {
        Ok(rendered) => text(StatusCode::OK, &rendered),
        Err(reason) => {
            tracing::error!(%labels, group = group.id, template = name, reason, "a template failed to render");
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("template {name:?} failed to render: {reason}\n"),
            )
        }
    }
}

/// What the asset at `path` is to the profile of the machine with `labels`.
fn part_of(config: &Config, labels: &Labels, path: &str) -> Option<Part> {
    let profile = config.select(labels).and_then(|g| config.profile(g))?;
    profile.boot.part(path)
}

async fn asset(config: &Config, name: &str, head: bool, range: Option<&str>) -> Response<Body> {
    let assets = config.assets().clone();
    let expected = config.expected_digest(&format!("/assets/{name}"));
    let name = name.to_owned();
    let opened = tokio::task::spawn_blocking(move || match name.strip_prefix("sha256/") {
        Some(hex) => hex
            .parse::<Digest>()
            .map_err(AssetError::from)
            .and_then(|digest| assets.open_by_digest(&digest)),
        None => assets.open(&name, expected.as_ref()),
    })
    .await;
    let asset = match opened {
        Ok(Ok(asset)) => asset,
        Ok(Err(error)) => {
            let status = match &error {
                AssetError::Mismatch { .. } => {
                    tracing::error!(%error, "refusing to serve an asset that does not match its digest");
                    StatusCode::FORBIDDEN
                }
                AssetError::NoDirectory
                | AssetError::BadName(_)
                | AssetError::BadDigest(_)
                | AssetError::Unreadable { .. }
                | AssetError::UnknownDigest(_) => StatusCode::NOT_FOUND,
            };
            return text(status, &format!("{error}\n"));
        }
        Err(join) => return text(StatusCode::INTERNAL_SERVER_ERROR, &format!("{join}\n")),
    };
    let (first, last, status) = match requested_range(range, asset.len) {
        Ok(Some((first, last))) => (first, last, StatusCode::PARTIAL_CONTENT),
        Ok(None) => (0, asset.len.saturating_sub(1), StatusCode::OK),
        Err(_) => {
            let mut response = text(StatusCode::RANGE_NOT_SATISFIABLE, "");
            if let Ok(value) = format!("bytes */{}", asset.len).parse() {
                response.headers_mut().insert(CONTENT_RANGE, value);
            }
            return response;
        }
    };
    let len = if asset.len == 0 { 0 } else { last - first + 1 };
    let mut builder = Response::builder()
        .status(status)
        .header(CONTENT_TYPE, "application/octet-stream")
        .header(CONTENT_LENGTH, len)
        .header(ACCEPT_RANGES, "bytes")
        .header(ETAG, format!("\"{}\"", asset.digest));
    if status == StatusCode::PARTIAL_CONTENT {
        builder = builder.header(CONTENT_RANGE, format!("bytes {first}-{last}/{}", asset.len));
    }
    let body = if head || len == 0 {
        Full::new(Bytes::new())
            .map_err(|never| match never {})
            .boxed()
    } else {
        file_body(asset, first, len)
    };
    builder
        .body(body)
        .unwrap_or_else(|e| text(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e}\n")))
}

/// `len` bytes of `asset` from `first`, read on the blocking pool a chunk at a time.
fn file_body(asset: Asset, first: u64, len: u64) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(2);
    tokio::task::spawn_blocking(move || {
        let mut file = asset.file;
        if let Err(error) = file.seek(SeekFrom::Start(first)) {
            let _ = tx.blocking_send(Err(error));
            return;
        }
        let mut left = len;
        while left > 0 {
            let mut chunk = vec![0; CHUNK.min(usize::try_from(left).unwrap_or(CHUNK))];
            match file.read(&mut chunk) {
                Ok(0) => {
                    let _ = tx.blocking_send(Err(std::io::ErrorKind::UnexpectedEof.into()));
                    return;
                }
                Ok(read) => {
                    chunk.truncate(read);
                    left -= read as u64;
                    if tx.blocking_send(Ok(Bytes::from(chunk))).is_err() {
                        return;
                    }
                }
                Err(error) => {
                    let _ = tx.blocking_send(Err(error));
                    return;
                }
            }
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        let chunk = rx.recv().await?;
        Some((chunk.map(Frame::data), rx))
    });
    StreamBody::new(stream).boxed()
}

fn text(status: StatusCode, body: &str) -> Response<Body> {
    let mut response = Response::new(
        Full::new(Bytes::from(body.to_owned()))
            .map_err(|never: Infallible| match never {})
            .boxed(),
    );
    *response.status_mut() = status;
    if let Ok(value) = "text/plain; charset=utf-8".parse() {
        response.headers_mut().insert(CONTENT_TYPE, value);
    }
    response
}

impl crate::outcome::Outcome for BootServer {
    fn status(&self) -> crate::outcome::Status {
        crate::outcome::Status::Changed
    }

    fn detail(&self) -> Option<String> {
        Some(format!("listening on {}", self.url()))
    }
}
