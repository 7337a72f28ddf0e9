//! The streaming lease keep-alive call: one answer per `{"ID":...}` request, until the
//! request body ends.

use std::fmt;

use bytes::Bytes;
use hyper::body::Body;
use tokio::sync::mpsc;

use crate::gateway::backend::Backend;
use crate::gateway::body::{result_chunk, JsonStream, StreamItem};
use crate::gateway::error::Status;
use crate::gateway::wire::lease::{WireLeaseId, WireLeaseKeepAliveResponse};
use crate::gateway::Gateway;

/// Answers keep-alive requests read from `body` on `out`.
pub(crate) async fn run<B, T>(gateway: Gateway<B>, body: T, out: mpsc::Sender<StreamItem>)
where
    B: Backend,
    T: Body<Data = Bytes> + Unpin,
    T::Error: fmt::Display,
{
    let mut requests = JsonStream::new(body, gateway.config.grpc_limit());
    let mut closing = gateway.closing();
    loop {
        let request = tokio::select! {
            request = requests.next::<WireLeaseId>() => request,
            () = out.closed() => return,
            _ = closing.wait_for(|closed| *closed) => return,
        };
        let answer = match request {
            None => return,
            Some(Err(status)) => Err(status),
            Some(Ok(request)) => renew(&gateway, request.id()).await,
        };
        let failed = answer.is_err();
        if out.send(answer).await.is_err() || failed {
            return;
        }
    }
}

async fn renew<B: Backend>(gateway: &Gateway<B>, id: i64) -> StreamItem {
    let renewed = gateway
        .backend
        .lease_keep_alive(id)
        .await
        .map_err(Status::from)?;
    let header = gateway.header(renewed.revision);
    result_chunk(&WireLeaseKeepAliveResponse::new(header, id, renewed.ttl))
}
