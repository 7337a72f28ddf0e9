//! A small HTTP/1.1 client on hyper for the tests: unary calls, and streaming calls whose
//! request body is fed piece by piece and whose answer is read one JSON line at a time.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use futures::channel::mpsc;
use futures::SinkExt as _;
use http_body_util::{BodyExt as _, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpStream;

/// A whole answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: hyper::HeaderMap,
    pub content_type: String,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> Value {
        super::json(&self.body)
    }
}

/// Sends `method path` with `body` and reads the whole answer.
pub async fn call(addr: SocketAddr, method: Method, path: &str, body: impl Into<Bytes>) -> Answer {
    try_call(addr, method, path, body)
        .await
        .unwrap_or_else(|error| panic!("{error}"))
}

/// [`call`], with a failed connection or exchange as an error naming the step.
pub async fn try_call(
    addr: SocketAddr,
    method: Method,
    path: &str,
    body: impl Into<Bytes>,
) -> Result<Answer, String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|error| format!("connect: {error}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|error| format!("handshake: {error}"))?;
    tokio::spawn(connection);
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string())
        .body(Full::new(body.into()))
        .expect("request");
    let response = sender
        .send_request(request)
        .await
        .map_err(|error| format!("response: {error:?}"))?;
    let status = response.status();
    let headers = response.headers().clone();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|value| value.to_str().expect("content type").to_owned())
        .unwrap_or_default();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|error| format!("body: {error}"))?
        .to_bytes();
    Ok(Answer {
        status,
        headers,
        content_type,
        body: String::from_utf8(body.to_vec()).expect("UTF-8 body"),
    })
}

/// POSTs a JSON body.
pub async fn post(addr: SocketAddr, path: &str, body: &str) -> Answer {
    call(addr, Method::POST, path, body.to_owned()).await
}

type BodySender = mpsc::Sender<Result<Frame<Bytes>, Infallible>>;

/// An open streaming call.
pub struct Stream {
    requests: Option<BodySender>,
    pending: Option<tokio::task::JoinHandle<hyper::Response<Incoming>>>,
    status: Option<StatusCode>,
    body: Option<Incoming>,
    buffer: Vec<u8>,
}

impl Stream {
    /// Opens `path`; the answer's head arrives with the first message.
    pub async fn open(addr: SocketAddr, path: &str) -> Self {
        let stream = TcpStream::connect(addr).await.expect("connect");
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("handshake");
        tokio::spawn(connection);
        let (requests, frames) = mpsc::channel(16);
        // etcd's gateway reads a streamed body as it comes only from clients that asked
        // for 100-continue (as curl does for uploads); without it, it waits for the end.
        let request = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header("host", addr.to_string())
            .header("expect", "100-continue")
            .body(StreamBody::new(frames))
            .expect("request");
        let pending =
            tokio::spawn(async move { sender.send_request(request).await.expect("response") });
        Self {
            requests: Some(requests),
            pending: Some(pending),
            status: None,
            body: None,
            buffer: Vec::new(),
        }
    }

    /// Sends one request message.
    pub async fn send(&mut self, message: &str) {
        self.requests
            .as_mut()
            .expect("request body still open")
            .send(Ok(Frame::data(Bytes::from(format!("{message}\n")))))
            .await
            .expect("send request message");
    }

    /// Ends the request body.
    pub fn finish(&mut self) {
        self.requests = None;
    }

    async fn head(&mut self) -> StatusCode {
        if let Some(pending) = self.pending.take() {
            let response = tokio::time::timeout(Duration::from_secs(10), pending)
                .await
                .expect("answer head in time")
                .expect("answer task");
            self.status = Some(response.status());
            self.body = Some(response.into_body());
        }
        self.status.expect("status")
    }

    /// The answer's HTTP status.
    pub async fn status(&mut self) -> StatusCode {
        self.head().await
    }

    /// The next line of the answer, or `None` when it has ended.
    pub async fn next_line(&mut self) -> Option<String> {
        self.head().await;
        loop {
            if let Some(end) = self.buffer.iter().position(|&byte| byte == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=end).collect();
                return Some(
                    String::from_utf8(line)
                        .expect("UTF-8")
                        .trim_end()
                        .to_owned(),
                );
            }
            let body = self.body.as_mut().expect("body");
            match body.frame().await {
                Some(frame) => {
                    if let Ok(data) = frame.expect("frame").into_data() {
                        self.buffer.extend_from_slice(&data);
                    }
                }
                None if self.buffer.is_empty() => return None,
                None => {
                    let rest = String::from_utf8(std::mem::take(&mut self.buffer)).expect("UTF-8");
                    return Some(rest);
                }
            }
        }
    }

    /// The next message as JSON, failing the test if none comes within 10 seconds.
    pub async fn next(&mut self) -> Value {
        let line = tokio::time::timeout(Duration::from_secs(10), self.next_line())
            .await
            .expect("a message in time")
            .expect("a message before the end");
        super::json(&line)
    }

    /// Asserts that no message arrives within `wait`.
    pub async fn expect_silence(&mut self, wait: Duration) {
        if let Ok(line) = tokio::time::timeout(wait, self.next_line()).await {
            panic!("expected no message, got {line:?}");
        }
    }
}
