//! The KV service: range, put, delete, transaction and compaction.

use sinew_etcd_api::etcdserverpb::kv_server::Kv;
use sinew_etcd_api::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, RangeStreamResponse, TxnRequest, TxnResponse,
};
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::{convert, Grpc};
use crate::gateway::{Backend, Status as Refusal};
use crate::v3::{Command, CompactRequest, Response as KvResponse};

type Answer<T> = Result<Response<T>, Status>;

impl<B: Backend> Grpc<B> {
    async fn read(&self, request: &RangeRequest) -> Result<RangeResponse, Status> {
        let response = self
            .gateway
            .read(convert::range_request(request), request.serializable)
            .await?;
        let header = self.header(response.header.revision);
        Ok(convert::range_response(header, response))
    }
}

#[tonic::async_trait]
impl<B: Backend> Kv for Grpc<B> {
    async fn range(&self, request: Request<RangeRequest>) -> Answer<RangeResponse> {
        Ok(Response::new(self.read(request.get_ref()).await?))
    }

    type RangeStreamStream =
        std::pin::Pin<Box<dyn Stream<Item = Result<RangeStreamResponse, Status>> + Send + 'static>>;

    /// The whole answer in one message: kvd reads a range at once.
    async fn range_stream(
        &self,
        request: Request<RangeRequest>,
    ) -> Answer<Self::RangeStreamStream> {
        let answer = self
            .read(request.get_ref())
            .await
            .map(|range| RangeStreamResponse {
                range_response: Some(range),
            });
        Ok(Response::new(Box::pin(tokio_stream::once(answer))))
    }

    async fn put(&self, request: Request<PutRequest>) -> Answer<PutResponse> {
        let command = Command::Put(convert::put_request(request.into_inner()));
        match self.gateway.propose(command).await? {
            KvResponse::Put(put) => Ok(Response::new(convert::put_response(
                self.header(put.header.revision),
                put,
            ))),
            _ => Err(Refusal::unexpected("put").into()),
        }
    }

    async fn delete_range(
        &self,
        request: Request<DeleteRangeRequest>,
    ) -> Answer<DeleteRangeResponse> {
        let command = Command::DeleteRange(convert::delete_request(request.into_inner()));
        match self.gateway.propose(command).await? {
            KvResponse::DeleteRange(delete) => Ok(Response::new(convert::delete_response(
                self.header(delete.header.revision),
                delete,
            ))),
            _ => Err(Refusal::unexpected("delete").into()),
        }
    }

    async fn txn(&self, request: Request<TxnRequest>) -> Answer<TxnResponse> {
        let txn = convert::txn_request(request.into_inner()).map_err(Refusal::from)?;
        let txn = self.transact(txn).await?;
        Ok(Response::new(convert::txn_response(
            self.header(txn.header.revision),
            txn,
        )))
    }

    async fn compact(&self, request: Request<CompactionRequest>) -> Answer<CompactionResponse> {
        let command = Command::Compact(CompactRequest {
            revision: request.get_ref().revision,
        });
        match self.gateway.propose(command).await? {
            KvResponse::Compact(compact) => Ok(Response::new(CompactionResponse {
                header: self.header(compact.header.revision),
            })),
            _ => Err(Refusal::unexpected("compaction").into()),
        }
    }
}
