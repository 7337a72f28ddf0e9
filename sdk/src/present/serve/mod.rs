//! The presenter's HTTP server (hyper): the deck page (read again on each load, so edits to
//! the deck show on reload and a deck broken mid-talk shows its error without stopping the
//! server), the deck's files, and the actions: `POST /api/run` answers with the run's
//! events as a server-sent event stream for as long as it runs, `POST /api/stop` stops it,
//! `POST /api/build` builds an edit while the presenter types.

mod guard;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, SET_COOKIE};
use hyper::{Method, Request, Response, StatusCode};
use serde::Deserialize;
use tokio::net::TcpListener;

pub use guard::{Guard, Refusal, TOKEN_COOKIE, TOKEN_HEADER};

use super::deck::Deck;
use super::files::{url_decode, Files};
use super::html::escape;
use super::page::{self, PageOptions};
use super::run::{Job, Runner};

type Body = BoxBody<Bytes, Infallible>;

/// The largest request body accepted (an edited block).
const MAX_BODY: usize = 1 << 20;

/// What the server serves and how.
#[derive(Debug)]
pub struct Presenter {
    /// The deck file.
    pub deck: PathBuf,
    /// Every runnable block editable (`--edit`).
    pub edit_all: bool,
    /// Who may connect.
    pub guard: Guard,
    /// Runs the deck's blocks.
    pub runner: Arc<Runner>,
}

/// A request to run a block.
#[derive(Debug, Deserialize)]
struct RunRequest {
    block: String,
    /// The presenter's edit of the block; absent runs the deck's text.
    code: Option<String>,
}

/// A request to stop a block.
#[derive(Debug, Deserialize)]
struct StopRequest {
    block: String,
}

/// Serves `presenter` on `listener` until `shutdown` resolves, then stops every run.
pub async fn serve(
    listener: TcpListener,
    presenter: Arc<Presenter>,
    shutdown: impl Future<Output = ()>,
) {
    let handler = Arc::clone(&presenter);
    crate::http1::serve(
        listener,
        move |request, peer| {
            let presenter = Arc::clone(&handler);
            async move { presenter.handle(request, peer).await }
        },
        shutdown,
    )
    .await;
    presenter.runner.stop_all().await;
}

impl Presenter {
    async fn handle(&self, request: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        let path = request.uri().path().to_owned();
        let query_token = request.uri().query().and_then(|q| {
            q.split('&')
                .find_map(|pair| pair.strip_prefix("token="))
                .map(str::to_owned)
        });
        let admitted = if request.method() == Method::POST {
            self.guard.admit_action(request.headers())
        } else {
            self.guard.admit(request.headers(), query_token.as_deref())
        };
        if let Err(refusal) = admitted {
            tracing::warn!(%peer, %path, %refusal, "refused");
            return text(StatusCode::FORBIDDEN, refusal.to_string());
        }
        let response = match (request.method(), path.as_str()) {
            (&Method::GET, "/" | "/index.html") => self.page(),
            (&Method::POST, "/api/run") => self.run(request).await,
            (&Method::POST, "/api/stop") => self.stop(request).await,
            (&Method::POST, "/api/build") => self.prebuild(request).await,
            (&Method::GET | &Method::HEAD, _) => self.file(&path).await,
            _ => text(StatusCode::NOT_FOUND, format!("no {path} here")),
        };
        match (query_token, &self.guard.token) {
            // The page's pictures carry no header: the cookie carries the token for them.
            (Some(token), Some(_)) => with_cookie(response, &token),
            _ => response,
        }
    }

    /// The deck as it is now; a slide that cannot be read shows its problem in its place.
    fn load(&self) -> Result<(Deck, Files), String> {
        self.load_with_problems()
            .map(|(deck, files, _)| (deck, files))
    }

    /// As [`load`](Self::load), with each slide's problem as text.
    fn load_with_problems(&self) -> Result<(Deck, Files, Vec<String>), String> {
        let (deck, problems) = super::read_tolerant(&self.deck).map_err(|e| e.to_string())?;
        let files = Files::of(&deck, &self.deck);
        Ok((
            deck,
            files,
            problems.iter().map(ToString::to_string).collect(),
        ))
    }

    fn page(&self) -> Response<Body> {
        let (deck, files) = match self.load_with_problems() {
            Ok((deck, files, problems)) => {
                for problem in problems {
                    tracing::error!("{problem}");
                }
                (deck, files)
            }
            Err(message) => {
                tracing::error!("{message}");
                return html(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!(
                        "<!DOCTYPE html><meta charset=\"utf-8\"><title>deck error</title>\
                         <pre class=\"problem\">{}</pre><p>Fix the deck and reload.</p>",
                        escape(&message)
                    ),
                );
            }
        };
        let options = PageOptions {
            live: true,
            edit_all: self.edit_all,
            token: self.guard.token.as_deref(),
            captured: None,
        };
        match page::render(&deck, &files, &options) {
            Ok(page) => html(StatusCode::OK, page),
            Err(err) => text(StatusCode::INTERNAL_SERVER_ERROR, err.to_string()),
        }
    }

    async fn file(&self, path: &str) -> Response<Body> {
        let Some(name) = url_decode(path.trim_start_matches('/')) else {
            return text(StatusCode::BAD_REQUEST, format!("bad path {path}"));
        };
        let found = self.load().ok().and_then(|(_, files)| files.resolve(&name));
        let Some(file) = found else {
            return text(
                StatusCode::NOT_FOUND,
                format!("the deck has no file {name}"),
            );
        };
        match tokio::fs::read(&file).await {
            Ok(bytes) => Response::builder()
                .header(CONTENT_TYPE, content_type(&name))
                .body(Full::new(Bytes::from(bytes)).boxed())
                .unwrap_or_else(|_| text(StatusCode::INTERNAL_SERVER_ERROR, String::new())),
            Err(err) => text(
                StatusCode::NOT_FOUND,
                format!("cannot read {}: {err}", file.display()),
            ),
        }
    }

    async fn run(&self, request: Request<Incoming>) -> Response<Body> {
        let (job, edited) = match self.requested_job(request).await {
            Ok(asked) => asked,
            Err(response) => return response,
        };
        tracing::info!(block = %job.block, edited, "run block");
        let events = self.runner.start(job).await;
        let stream = futures::stream::unfold(events, |mut events| async move {
            let event = events.recv().await?;
            Some((Ok(Frame::data(Bytes::from(event.to_sse()))), events))
        });
        Response::builder()
            .header(CONTENT_TYPE, "text/event-stream")
            .header(CACHE_CONTROL, "no-store")
            .body(StreamBody::new(stream).boxed())
            .unwrap_or_else(|_| text(StatusCode::INTERNAL_SERVER_ERROR, String::new()))
    }

    /// Builds an edit as it is typed, so that Run finds it built.
    async fn prebuild(&self, request: Request<Incoming>) -> Response<Body> {
        match self.requested_job(request).await {
            Ok((job, _)) => {
                let accepted = text(StatusCode::ACCEPTED, format!("building {}", job.block));
                self.runner.prebuild(job);
                accepted
            }
            Err(response) => response,
        }
    }

    /// The job a run or build request asks for in the deck as it is now, and whether the
    /// request brings an edit; or the response that says why there is none.
    async fn requested_job(
        &self,
        request: Request<Incoming>,
    ) -> Result<(Job, bool), Response<Body>> {
        let ask: RunRequest = json_body(request).await?;
        self.load()
            .and_then(|(deck, _)| self.job(&deck, &ask))
            .map(|job| (job, ask.code.is_some()))
            .map_err(|message| text(StatusCode::BAD_REQUEST, message))
    }

    async fn stop(&self, request: Request<Incoming>) -> Response<Body> {
        match json_body::<StopRequest>(request).await {
            Ok(ask) => {
                tracing::info!(block = %ask.block, "stop");
                self.runner.stop(&ask.block).await;
                text(StatusCode::OK, format!("stopped {}", ask.block))
            }
            Err(response) => response,
        }
    }

    /// The job `ask` names in `deck`, or why there is none.
    fn job(&self, deck: &Deck, ask: &RunRequest) -> Result<Job, String> {
        let (slide, index) = ask
            .block
            .split_once('.')
            .and_then(|(s, i)| Some((s.parse::<usize>().ok()?, i.parse::<usize>().ok()?)))
            .ok_or_else(|| format!("bad block {:?}: expected SLIDE.INDEX", ask.block))?;
        let block = deck
            .slides
            .iter()
            .find(|s| s.number == slide)
            .and_then(|s| s.code_blocks().nth(index))
            .ok_or_else(|| format!("the deck has no code block {}", ask.block))?;
        let mut job = Job::of(ask.block.clone(), block, &deck.lab)
            .ok_or_else(|| format!("block {} does not run", ask.block))?;
        if let Some(edit) = &ask.code {
            if *edit != block.text() && !(block.editable || self.edit_all) {
                return Err(format!(
                    "block {} is not editable: mark it `editable` in the deck or start the \
                     server with --edit",
                    ask.block
                ));
            }
            job.code.clone_from(edit);
        }
        Ok(job)
    }
}

/// The request's JSON body, or the response that says why it is not one.
async fn json_body<T: serde::de::DeserializeOwned>(
    request: Request<Incoming>,
) -> Result<T, Response<Body>> {
    let bytes = Limited::new(request.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| {
            text(
                StatusCode::BAD_REQUEST,
                format!("cannot read the request: {e}"),
            )
        })?
        .to_bytes();
    serde_json::from_slice(&bytes).map_err(|e| {
        text(
            StatusCode::BAD_REQUEST,
            format!("bad request body: {e}: expected JSON like {{\"block\": \"3.0\"}}"),
        )
    })
}

fn text(status: StatusCode, body: String) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(body)).boxed());
    *response.status_mut() = status;
    if let Ok(value) = "text/plain; charset=utf-8".parse() {
        response.headers_mut().insert(CONTENT_TYPE, value);
    }
    response
}

fn html(status: StatusCode, body: String) -> Response<Body> {
    let mut response = text(status, body);
    if let Ok(value) = "text/html; charset=utf-8".parse() {
        response.headers_mut().insert(CONTENT_TYPE, value);
    }
    if let Ok(value) = "no-store".parse() {
        response.headers_mut().insert(CACHE_CONTROL, value);
    }
    response
}

fn with_cookie(mut response: Response<Body>, token: &str) -> Response<Body> {
    let cookie = format!("{TOKEN_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/");
    if let Ok(value) = cookie.parse() {
        response.headers_mut().insert(SET_COOKIE, value);
    }
    response
}

/// The content type of a deck file, by extension.
fn content_type(name: &str) -> &'static str {
    let extension = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    match extension.as_deref() {
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("svg") => "image/svg+xml",
        Some("webp") => "image/webp",
        Some("mp4") => "video/mp4",
        Some("webm") => "video/webm",
        Some("html") => "text/html; charset=utf-8",
        Some("css") => "text/css",
        Some("txt" | "md" | "go" | "rs" | "slide") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}
