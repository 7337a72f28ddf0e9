//! HTTP bodies: reading a request body within a size limit, decoding JSON as etcd's gateway
//! does, and the response body type, whole or streamed.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::BodyExt as _;
use hyper::body::{Body, Frame, SizeHint};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::gateway::error::{Code, Status};

/// One message of a streamed answer, or the error that ends the stream.
pub type StreamItem = Result<Bytes, Status>;

/// The body of every gateway response: a whole body, or a stream of JSON messages that ends
/// when its sender is dropped or sends an error. `From<Bytes>` makes a whole body, so another
/// router can answer with the same type.
#[derive(Debug)]
pub struct GatewayBody(Kind);

#[derive(Debug)]
enum Kind {
    /// A whole body, taken on the first poll.
    Full(Option<Bytes>),
    /// A streamed body: the first message, already received, then the rest.
    Stream {
        /// The first message, sent before anything from `rest`.
        first: Option<Bytes>,
        /// The following messages; `None` once an error ended the stream.
        rest: Option<mpsc::Receiver<StreamItem>>,
    },
}

impl GatewayBody {
    /// An empty body.
    pub fn empty() -> Self {
        Self(Kind::Full(None))
    }
}

impl From<Bytes> for GatewayBody {
    fn from(bytes: Bytes) -> Self {
        Self(Kind::Full(Some(bytes)))
    }
}

impl Body for GatewayBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let frame = |bytes| Poll::Ready(Some(Ok(Frame::data(bytes))));
        match &mut self.get_mut().0 {
            Kind::Full(bytes) => match bytes.take() {
                Some(bytes) => frame(bytes),
                None => Poll::Ready(None),
            },
            Kind::Stream { first, rest } => {
                if let Some(bytes) = first.take() {
                    return frame(bytes);
                }
                let Some(receiver) = rest else {
                    return Poll::Ready(None);
                };
                match receiver.poll_recv(cx) {
                    Poll::Ready(Some(Ok(bytes))) => frame(bytes),
                    Poll::Ready(Some(Err(status))) => {
                        *rest = None;
                        frame(Bytes::from(status.stream_chunk()))
                    }
                    Poll::Ready(None) => Poll::Ready(None),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.0, Kind::Full(None))
    }

    /// Exact for a whole body, so it goes out with a `Content-Length`, as etcd's answers do.
    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            Kind::Full(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |bytes| bytes.len() as u64))
            }
            Kind::Stream { .. } => SizeHint::default(),
        }
    }
}

/// A response with a JSON body.
fn json_response(status: StatusCode, body: Vec<u8>) -> Response<GatewayBody> {
    let mut response = Response::new(GatewayBody::from(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// A 200 answer with `message` as proto3 JSON.
pub fn ok_response<T: Serialize>(message: &T) -> Response<GatewayBody> {
    match serde_json::to_vec(message) {
        Ok(body) => json_response(StatusCode::OK, body),
        Err(error) => error_response(&Status::new(Code::Internal, error.to_string())),
    }
}

/// The answer to a failed call: the HTTP status for its code and etcd's JSON error body.
pub fn error_response(status: &Status) -> Response<GatewayBody> {
    json_response(status.code.http_status(), status.body())
}

/// A plain-text answer, as Go's HTTP server gives for unknown paths and wrong methods.
pub fn text_response(status: StatusCode) -> Response<GatewayBody> {
    let text = format!("{}\n", status.canonical_reason().unwrap_or_default());
    let mut response = Response::new(GatewayBody::from(Bytes::from(text)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Waits for a stream's first message: an error before it becomes an ordinary error answer
/// (as etcd's gateway, which writes nothing before the first message); otherwise the answer
/// streams the messages, one JSON object per line.
pub async fn stream_response(mut receiver: mpsc::Receiver<StreamItem>) -> Response<GatewayBody> {
    let first = match receiver.recv().await {
        Some(Ok(first)) => Some(first),
        Some(Err(status)) => return error_response(&status),
        None => None,
    };
    let mut response = Response::new(GatewayBody(Kind::Stream {
        first,
        rest: Some(receiver),
    }));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// One message of a streamed answer: `{"result":...}` and a newline, as etcd's gateway
/// writes them.
pub fn result_chunk<T: Serialize>(message: &T) -> StreamItem {
    #[derive(Serialize)]
    struct Chunk<'a, T> {
        result: &'a T,
    }
    let mut bytes = serde_json::to_vec(&Chunk { result: message })
        .map_err(|error| Status::new(Code::Internal, error.to_string()))?;
    bytes.push(b'\n');
    Ok(Bytes::from(bytes))
}

/// The message etcd's gateway gives for a request larger than gRPC accepts.
pub fn too_large(size: usize, limit: usize) -> Status {
    Status::new(
        Code::ResourceExhausted,
        format!("grpc: received message larger than max ({size} vs. {limit})"),
    )
}

/// How much of a refused body is still read (and dropped) so the client, still sending,
/// receives the answer instead of a reset connection.
const DRAIN_LIMIT: usize = 16 << 20;

/// Reads a whole request body, refusing one longer than `limit` bytes.
pub async fn read_body<B>(mut body: B, limit: usize, grpc_limit: usize) -> Result<Bytes, Status>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let mut collected = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|error| Status::invalid(format!("reading the body: {error}")))?;
        if let Ok(data) = frame.into_data() {
            collected.extend_from_slice(&data);
            if collected.len() > limit {
                let size = drain(body, collected.len()).await;
                return Err(too_large(size, grpc_limit));
            }
        }
    }
    Ok(Bytes::from(collected))
}

/// Reads and drops the rest of a body, up to [`DRAIN_LIMIT`] bytes in all; returns how many
/// bytes the body had, as far as read.
async fn drain<B>(mut body: B, mut size: usize) -> usize
where
    B: Body<Data = Bytes> + Unpin,
{
    while size <= DRAIN_LIMIT {
        match body.frame().await {
            Some(Ok(frame)) => size += frame.data_ref().map_or(0, Bytes::len),
            Some(Err(_)) | None => break,
        }
    }
    size
}

/// Decodes a unary request as etcd's gateway does: an empty body or `null` is the empty
/// request, unknown fields are ignored, anything after the first JSON value is ignored.
pub fn decode<T: DeserializeOwned + Default>(body: &[u8]) -> Result<T, Status> {
    let mut values = serde_json::Deserializer::from_slice(body).into_iter::<Value>();
    match values.next() {
        None => Ok(T::default()),
        Some(Ok(value)) => from_value(value).map_err(Status::invalid),
        Some(Err(error)) => Err(Status::invalid(json_message(&error))),
    }
}

/// A request from one JSON value, which must be an object or `null` (serde alone would also
/// take an array for a struct).
fn from_value<T: DeserializeOwned + Default>(value: Value) -> Result<T, String> {
    let kind = match &value {
        Value::Null => return Ok(T::default()),
        Value::Object(_) => {
            return serde_json::from_value(value).map_err(|error| error.to_string())
        }
        Value::Array(_) => "array",
        Value::String(_) => "string",
        Value::Number(_) => "number",
        Value::Bool(_) => "bool",
    };
    Err(format!(
        "json: cannot unmarshal {kind} into Go value of type map[string]json.RawMessage"
    ))
}

/// serde_json's message without its position, or Go's wording for a truncated body.
pub fn json_message(error: &serde_json::Error) -> String {
    if error.is_eof() {
        return "unexpected EOF".to_owned();
    }
    let message = error.to_string();
    let position = format!(" at line {} column {}", error.line(), error.column());
    message
        .strip_suffix(&position)
        .map_or(message.clone(), str::to_owned)
}

/// Reads a request body as a sequence of JSON values, as etcd's gateway reads the requests
/// of a streaming call. Decoding errors have code `Unknown`, as there.
#[derive(Debug)]
pub struct JsonStream<B> {
    body: B,
    buffer: Vec<u8>,
    ended: bool,
    limit: usize,
}

impl<B> JsonStream<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    /// A stream over `body`, refusing a single message longer than `limit` bytes.
    pub fn new(body: B, limit: usize) -> Self {
        Self {
            body,
            buffer: Vec::new(),
            ended: false,
            limit,
        }
    }

    /// The next request, or `None` once the body has ended.
    pub async fn next<T: DeserializeOwned + Default>(&mut self) -> Option<Result<T, Status>> {
        loop {
            let start = self
                .buffer
                .iter()
                .position(|byte| !byte.is_ascii_whitespace())
                .unwrap_or(self.buffer.len());
            self.buffer.drain(..start);
            if !self.buffer.is_empty() {
                let mut values =
                    serde_json::Deserializer::from_slice(&self.buffer).into_iter::<Value>();
                match values.next() {
                    Some(Ok(value)) => {
                        let used = values.byte_offset();
                        self.buffer.drain(..used);
                        return Some(
                            from_value(value)
                                .map_err(|message| Status::new(Code::Unknown, message)),
                        );
                    }
                    Some(Err(error)) if !error.is_eof() || self.ended => {
                        self.ended = true;
                        self.buffer.clear();
                        return Some(Err(Status::new(Code::Unknown, json_message(&error))));
                    }
                    Some(Err(_)) | None => {}
                }
            } else if self.ended {
                return None;
            }
            if let Err(status) = self.fill().await {
                self.ended = true;
                self.buffer.clear();
                return Some(Err(status));
            }
        }
    }

    /// Reads the next piece of the body into the buffer, or marks the body ended.
    async fn fill(&mut self) -> Result<(), Status> {
        match self.body.frame().await {
            None => self.ended = true,
            Some(Err(error)) => {
                return Err(Status::new(
                    Code::Unknown,
                    format!("reading the body: {error}"),
                ))
            }
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    self.buffer.extend_from_slice(&data);
                    if self.buffer.len() > self.limit {
                        return Err(too_large(self.buffer.len(), self.limit));
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{Full, StreamBody};

    #[derive(Debug, Default, serde::Deserialize, PartialEq)]
    struct Probe {
        #[serde(default)]
        n: i64,
    }

    #[test]
    fn unary_decoding_follows_etcds_gateway() {
        assert_eq!(decode::<Probe>(b"").unwrap(), Probe::default());
        assert_eq!(decode::<Probe>(b" null ").unwrap(), Probe::default());
        assert_eq!(
            decode::<Probe>(br#"{"n":3} trailing"#).unwrap(),
            Probe { n: 3 }
        );
        assert_eq!(
            decode::<Probe>(br#"{"n":3"#).unwrap_err().message,
            "unexpected EOF"
        );
        let error = decode::<Probe>(b"[1]").unwrap_err();
        assert_eq!(error.code, Code::InvalidArgument);
        assert!(!error.message.contains("line 1"), "{}", error.message);
    }

    #[tokio::test]
    async fn json_stream_reads_values_split_across_frames() {
        let pieces: Vec<Result<Frame<Bytes>, Infallible>> =
            [r#"{"n":1} {"#, r#""n""#, r#":2}"#, " "]
                .into_iter()
                .map(|piece| Ok(Frame::data(Bytes::from(piece))))
                .collect();
        let body = StreamBody::new(futures::stream::iter(pieces));
        let mut stream = JsonStream::new(body, 1024);
        assert_eq!(
            stream.next::<Probe>().await.unwrap().unwrap(),
            Probe { n: 1 }
        );
        assert_eq!(
            stream.next::<Probe>().await.unwrap().unwrap(),
            Probe { n: 2 }
        );
        assert!(stream.next::<Probe>().await.is_none());

        let mut broken = JsonStream::new(Full::new(Bytes::from_static(b"{\"n\":1} junk")), 1024);
        assert!(broken.next::<Probe>().await.unwrap().is_ok());
        let error = broken.next::<Probe>().await.unwrap().unwrap_err();
        assert_eq!(error.code, Code::Unknown);
        assert!(broken.next::<Probe>().await.is_none());
    }
}
