//! The streaming calls: `/v3/watch` and `/v3/lease/keepalive` run the gRPC service's
//! session on the requests decoded from the body, one JSON value after another, and
//! `/v3/maintenance/snapshot` forwards the service's stream; every answer is written as
//! `{"result":...}` on its own line, as etcd's gateway writes them.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use futures::{stream, Stream, StreamExt as _};
use hyper::body::Body;
use serde::de::DeserializeOwned;
use serde::Serialize;
use sinew_etcd_api::etcdserverpb::maintenance_server::Maintenance;
use sinew_etcd_api::etcdserverpb::{LeaseKeepAliveRequest, SnapshotRequest, WatchRequest};
use tokio::sync::mpsc;

use crate::gateway::backend::Backend;
use crate::gateway::body::{result_chunk, JsonStream, StreamItem};
use crate::gateway::error::Status;
use crate::gateway::Gateway;
use crate::grpc::{watch, Grpc};

/// How many answers may wait between a session and the encoder.
const ANSWER_BUFFER: usize = 64;

/// The requests of a streaming call, decoded from its body.
pub(crate) type Requests<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// Serves one watch stream.
pub(crate) async fn watch<B, T>(gateway: Gateway<B>, body: T, out: mpsc::Sender<StreamItem>)
where
    B: Backend,
    T: Body<Data = Bytes> + Send + Unpin + 'static,
    T::Error: fmt::Display,
{
    session(
        gateway,
        body,
        out,
        |grpc, requests: Requests<WatchRequest>, answers| watch::run(grpc, requests, answers),
    )
    .await;
}

/// Serves one lease keep-alive stream.
pub(crate) async fn keep_alive<B, T>(gateway: Gateway<B>, body: T, out: mpsc::Sender<StreamItem>)
where
    B: Backend,
    T: Body<Data = Bytes> + Send + Unpin + 'static,
    T::Error: fmt::Display,
{
    session(
        gateway,
        body,
        out,
        |grpc, requests: Requests<LeaseKeepAliveRequest>, answers| {
            grpc.keep_alive(requests, answers)
        },
    )
    .await;
}

/// Runs a two-way session: requests from `body`, its answers encoded onto `out`.
async fn session<B, T, Req, Res, F, Fut>(
    gateway: Gateway<B>,
    body: T,
    out: mpsc::Sender<StreamItem>,
    run: F,
) where
    B: Backend,
    T: Body<Data = Bytes> + Send + Unpin + 'static,
    T::Error: fmt::Display,
    Req: DeserializeOwned + Default + Send + 'static,
    Res: Serialize,
    F: FnOnce(Grpc<B>, Requests<Req>, mpsc::Sender<Result<Res, Status>>) -> Fut,
    Fut: Future<Output = ()>,
{
    let json = JsonStream::new(body, gateway.config.grpc_limit());
    let requests: Requests<Req> = Box::pin(stream::unfold(json, |mut json| async move {
        let request = json.next::<Req>().await?;
        Some((request, json))
    }));
    let (answer, answers) = mpsc::channel(ANSWER_BUFFER);
    tokio::join!(
        run(Grpc::new(gateway), requests, answer),
        encode(answers, out)
    );
}

/// Writes each answer until the session or the client ends.
async fn encode<Res: Serialize>(
    mut answers: mpsc::Receiver<Result<Res, Status>>,
    out: mpsc::Sender<StreamItem>,
) {
    while let Some(answer) = answers.recv().await {
        let chunk = answer.and_then(|response| result_chunk(&response));
        if out.send(chunk).await.is_err() {
            return;
        }
    }
}

/// Streams a snapshot of the member's state; the request body carries nothing.
pub(crate) async fn snapshot<B: Backend, T>(
    gateway: Gateway<B>,
    _body: T,
    out: mpsc::Sender<StreamItem>,
) {
    let grpc = Grpc::new(gateway);
    let mut messages = match grpc
        .snapshot(tonic::Request::new(SnapshotRequest::default()))
        .await
    {
        Ok(messages) => messages.into_inner(),
        Err(status) => {
            // A gone receiver means the client left; nobody to tell.
            let _ = out.send(Err(Status::from(status))).await;
            return;
        }
    };
    while let Some(message) = messages.next().await {
        let chunk = message
            .map_err(Status::from)
            .and_then(|message| result_chunk(&message));
        if out.send(chunk).await.is_err() {
            return;
        }
    }
}
