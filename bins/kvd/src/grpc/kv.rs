//! The KV service: range, put, delete, transaction and compaction.

use sinew_etcd_api::etcdserverpb::kv_server::Kv;
use sinew_etcd_api::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, RangeStreamResponse, TxnRequest, TxnResponse,
};
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::Grpc;
use crate::gateway::{Backend, Status as Refusal};
use crate::v3::{AtRevision as _, Command, Response as KvResponse};

type Answer<T> = Result<Response<T>, Status>;

impl<B: Backend> Grpc<B> {
    async fn read(&self, request: RangeRequest) -> Result<RangeResponse, Status> {
        let serializable = request.serializable;
        let mut response = self.gateway.read(request, serializable).await?;
        response.header = self.header(response.revision());
        Ok(response)
    }
}

#[tonic::async_trait]
impl<B: Backend> Kv for Grpc<B> {
    async fn range(&self, request: Request<RangeRequest>) -> Answer<RangeResponse> {
        Ok(Response::new(self.read(request.into_inner()).await?))
    }

    type RangeStreamStream =
        std::pin::Pin<Box<dyn Stream<Item = Result<RangeStreamResponse, Status>> + Send + 'static>>;

    /// The whole answer in one message: kvd reads a range at once.
    async fn range_stream(
        &self,
        request: Request<RangeRequest>,
    ) -> Answer<Self::RangeStreamStream> {
        let answer = self
            .read(request.into_inner())
            .await
            .map(|range| RangeStreamResponse {
                range_response: Some(range),
            });
        Ok(Response::new(Box::pin(tokio_stream::once(answer))))
    }

    async fn put(&self, request: Request<PutRequest>) -> Answer<PutResponse> {
        match self
            .gateway
            .propose(Command::Put(request.into_inner()))
            .await?
        {
            KvResponse::Put(mut put) => {
                put.header = self.header(put.revision());
                Ok(Response::new(put))
            }
            _ => Err(Refusal::unexpected("put").into()),
        }
    }

    async fn delete_range(
        &self,
        request: Request<DeleteRangeRequest>,
    ) -> Answer<DeleteRangeResponse> {
        let command = Command::DeleteRange(request.into_inner());
        match self.gateway.propose(command).await? {
            KvResponse::DeleteRange(mut delete) => {
                delete.header = self.header(delete.revision());
                Ok(Response::new(delete))
            }
            _ => Err(Refusal::unexpected("delete").into()),
        }
    }

    async fn txn(&self, request: Request<TxnRequest>) -> Answer<TxnResponse> {
        let mut txn = self.transact(request.into_inner()).await?;
        txn.header = self.header(txn.revision());
        Ok(Response::new(txn))
    }

    async fn compact(&self, request: Request<CompactionRequest>) -> Answer<CompactionResponse> {
        match self
            .gateway
            .propose(Command::Compact(request.into_inner()))
            .await?
        {
            KvResponse::Compact(compact) => Ok(Response::new(CompactionResponse {
                header: self.header(compact.revision()),
            })),
            _ => Err(Refusal::unexpected("compaction").into()),
        }
    }
}
