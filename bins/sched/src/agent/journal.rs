//! The machine's journal server: `GET /journal/<instance>?lines=N&follow=true` answers an
//! instance's log on this machine (its last `lines` lines, then, when following, what it
//! writes from then on), for `schedctl journal`. It only reads the files under the agent's
//! log directory that an instance name (letters, digits, `-`, `_`, `.`, one `@`) can name.

use std::convert::Infallible;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Full, StreamBody};
use hyper::body::{Bytes, Frame};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::supervisor::log_path;
use crate::instance::InstanceId;

/// How often a followed log is checked for more.
const FOLLOW_EVERY: Duration = Duration::from_millis(200);
/// Lines answered when the request does not say.
const DEFAULT_LINES: usize = 50;

type Body = BoxBody<Bytes, Infallible>;

/// Serves the journal on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, log_dir: PathBuf) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "journal: cannot accept");
                tokio::time::sleep(FOLLOW_EVERY).await;
                continue;
            }
        };
        let log_dir = log_dir.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let log_dir = log_dir.clone();
                async move { Ok::<_, Infallible>(answer(&request, &log_dir, peer)) }
            });
            if let Err(error) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%peer, %error, "journal connection ended");
            }
        });
    }
}

fn answer<B>(request: &Request<B>, log_dir: &Path, peer: SocketAddr) -> Response<Body> {
    let Some(name) = request.uri().path().strip_prefix("/journal/") else {
        return refusal(
            StatusCode::NOT_FOUND,
            "the journal is at /journal/<instance>\n",
        );
    };
    let instance = match name.parse::<InstanceId>() {
        Ok(instance) => instance,
        Err(reason) => return refusal(StatusCode::BAD_REQUEST, &format!("{reason}\n")),
    };
    let query = request.uri().query().unwrap_or_default();
    let mut lines = DEFAULT_LINES;
    let mut follow = false;
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        match pair.split_once('=') {
            Some(("lines", value)) => match value.parse() {
                Ok(count) => lines = count,
                Err(_) => {
                    return refusal(
                        StatusCode::BAD_REQUEST,
                        &format!("lines={value}: expected a count\n"),
                    )
                }
            },
            Some(("follow", value)) => follow = value == "true" || value == "1",
            _ => {
                return refusal(
                    StatusCode::BAD_REQUEST,
                    &format!("{pair}: expected lines=N or follow=true\n"),
                )
            }
        }
    }
    let path = log_path(log_dir, &instance);
    let mut file = match std::fs::File::open(&path) {
        Ok(file) => file,
        Err(error) => {
            return refusal(
                StatusCode::NOT_FOUND,
                &format!("no log of {instance} on this machine: {error}\n"),
            )
        }
    };
    let (head, offset) = match tail(&mut file, lines) {
        Ok(tail) => tail,
        Err(error) => {
            return refusal(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("cannot read {}: {error}\n", path.display()),
            )
        }
    };
    tracing::debug!(%peer, %instance, lines, follow, "journal");
    if !follow {
        return text(StatusCode::OK, Full::new(Bytes::from(head)).boxed());
    }
    let (sender, receiver) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(16);
    tokio::spawn(async move {
        if sender
            .send(Ok(Frame::data(Bytes::from(head))))
            .await
            .is_err()
        {
            return;
        }
        let mut offset = offset;
        loop {
            tokio::time::sleep(FOLLOW_EVERY).await;
            let more = std::fs::File::open(&path).and_then(|mut file| {
                let length = file.metadata()?.len();
                if length < offset {
                    // Kept as .1 and begun anew when the instance started again.
                    offset = 0;
                }
                file.seek(SeekFrom::Start(offset))?;
                let mut more = Vec::new();
                file.read_to_end(&mut more)?;
                Ok(more)
            });
            let Ok(more) = more else { continue };
            if more.is_empty() {
                if sender.is_closed() {
                    return;
                }
                continue;
            }
            offset += u64::try_from(more.len()).unwrap_or(0);
            if sender
                .send(Ok(Frame::data(Bytes::from(more))))
                .await
                .is_err()
            {
                return;
            }
        }
    });
    let stream = tokio_stream::wrappers::ReceiverStream::new(receiver);
    text(StatusCode::OK, StreamBody::new(stream).boxed())
}

/// The last `lines` lines of `file`, and the offset its end was at.
fn tail(file: &mut std::fs::File, lines: usize) -> std::io::Result<(Vec<u8>, u64)> {
    let mut all = Vec::new();
    file.read_to_end(&mut all)?;
    let end = u64::try_from(all.len()).unwrap_or(u64::MAX);
    let body = all.strip_suffix(b"\n").unwrap_or(&all);
    let start = if lines == 0 {
        all.len()
    } else {
        body.iter()
            .enumerate()
            .rev()
            .filter(|(_, byte)| **byte == b'\n')
            .nth(lines - 1)
            .map_or(0, |(index, _)| index + 1)
    };
    Ok((all[start..].to_vec(), end))
}

fn text(status: StatusCode, body: Body) -> Response<Body> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn refusal(status: StatusCode, message: &str) -> Response<Body> {
    text(status, Full::new(Bytes::from(message.to_owned())).boxed())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tail_of(text: &str, lines: usize) -> String {
        let mut file = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut file, text.as_bytes()).unwrap();
        file.seek(SeekFrom::Start(0)).unwrap();
        let (head, end) = tail(&mut file, lines).unwrap();
        assert_eq!(end, text.len() as u64);
        String::from_utf8(head).unwrap()
    }

    #[test]
    fn the_tail_is_the_last_lines() {
        assert_eq!(tail_of("a\nb\nc\n", 2), "b\nc\n");
        assert_eq!(tail_of("a\nb\nc\n", 5), "a\nb\nc\n");
        assert_eq!(tail_of("a\nb\nc", 1), "c");
        assert_eq!(tail_of("a\nb\n", 0), "");
        assert_eq!(tail_of("", 3), "");
    }

    #[test]
    fn requests_outside_the_layout_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
        for (uri, status) in [
            ("/other", StatusCode::NOT_FOUND),
            ("/journal/..%2Fetc", StatusCode::BAD_REQUEST),
            ("/journal/web@0?lines=x", StatusCode::BAD_REQUEST),
            ("/journal/web@0?tail=3", StatusCode::BAD_REQUEST),
            ("/journal/web@0", StatusCode::NOT_FOUND),
        ] {
            let request = Request::get(uri).body(()).unwrap();
            assert_eq!(answer(&request, dir.path(), peer).status(), status, "{uri}");
        }
    }
}
