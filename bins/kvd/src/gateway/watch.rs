//! `/v3/watch`: the watch server's session ([`crate::grpc::watch`]) behind etcd's gateway
//! encoding, a stream of JSON requests in and `{"result":WatchResponse}` messages out.

use std::fmt;

use bytes::Bytes;
use futures::stream;
use hyper::body::Body;
use tokio::sync::mpsc;

use crate::gateway::backend::Backend;
use crate::gateway::body::{result_chunk, JsonStream, StreamItem};
use crate::gateway::wire::watch::{WireWatchRequest, WireWatchResponse};
use crate::gateway::Gateway;
use crate::grpc::watch::{self as server, Answer};
use crate::grpc::Grpc;

/// How many answers may wait between the session and the encoder.
const ANSWER_BUFFER: usize = 64;

/// Serves one watch stream: requests from `body`, answers on `out`.
pub(crate) async fn run<B, T>(gateway: Gateway<B>, body: T, out: mpsc::Sender<StreamItem>)
where
    B: Backend,
    T: Body<Data = Bytes> + Unpin,
    T::Error: fmt::Display,
{
    let json = JsonStream::new(body, gateway.config.grpc_limit());
    let requests = Box::pin(stream::unfold(json, |mut json| async move {
        let request = json.next::<WireWatchRequest>().await?;
        Some((request.map(WireWatchRequest::into_pb), json))
    }));
    let (answer, answers) = mpsc::channel(ANSWER_BUFFER);
    tokio::join!(
        server::run(Grpc::new(gateway), requests, answer),
        encode(answers, out)
    );
}

/// Writes each answer as etcd's gateway does, until the session or the client ends.
async fn encode(mut answers: mpsc::Receiver<Answer>, out: mpsc::Sender<StreamItem>) {
    while let Some(answer) = answers.recv().await {
        let chunk = answer.and_then(|response| result_chunk(&WireWatchResponse::from(&response)));
        if out.send(chunk).await.is_err() {
            return;
        }
    }
}
