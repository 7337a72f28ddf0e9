//! The KV calls: range, put, delete, transaction and compaction.

use hyper::Response;

use crate::gateway::backend::Backend;
use crate::gateway::body::{decode, ok_response, too_large, GatewayBody};
use crate::gateway::error::Status;
use crate::gateway::size::{proposal_len, range_request_len, request_len};
use crate::gateway::wire::kv::{
    WireCompactionRequest, WireDeleteRangeRequest, WireDeleteRangeResponse, WireHeaderOnly,
    WirePutRequest, WirePutResponse, WireRangeRequest, WireRangeResponse, WireTxnRequest,
    WireTxnResponse,
};
use crate::gateway::Gateway;
use crate::v3::{
    Command, CompactRequest, KvError, RangeRequest, RangeResponse, Response as KvResponse,
};

impl<B: Backend> Gateway<B> {
    /// Refuses what etcd's gRPC server would refuse for size.
    fn check_grpc_size(&self, size: usize) -> Result<(), Status> {
        let limit = self.config.grpc_limit();
        if size > limit {
            return Err(too_large(size, limit));
        }
        Ok(())
    }

    /// Checks a command as etcd does before proposing it (size for gRPC, then the request's
    /// own checks, then `--max-request-bytes`), then proposes it.
    pub(crate) async fn propose(&self, command: Command) -> Result<KvResponse, Status> {
        self.check_grpc_size(request_len(&command))?;
        command.validate()?;
        if proposal_len(&command) > self.config.max_request_bytes {
            return Err(Status::invalid("etcdserver: request is too large"));
        }
        Ok(self.backend.propose(command).await?.response)
    }

    /// Checks a read as etcd does (size for gRPC, then the request's own checks), then
    /// reads: linearizably unless `serializable`.
    pub(crate) async fn read(
        &self,
        request: RangeRequest,
        serializable: bool,
    ) -> Result<RangeResponse, Status> {
        self.check_grpc_size(range_request_len(&request))?;
        request.validate()?;
        Ok(self.backend.range(request, serializable).await?)
    }

    pub(crate) async fn range(&self, body: &[u8]) -> Result<Response<GatewayBody>, Status> {
        let wire: WireRangeRequest = decode(body)?;
        let response = self.read(wire.to_request(), wire.serializable()).await?;
        let header = self.header(response.header.revision);
        Ok(ok_response(&WireRangeResponse::new(header, &response)))
    }

    pub(crate) async fn put(&self, body: &[u8]) -> Result<Response<GatewayBody>, Status> {
        let wire: WirePutRequest = decode(body)?;
        match self.propose(Command::Put(wire.to_request())).await? {
            KvResponse::Put(put) => {
                let header = self.header(put.header.revision);
                Ok(ok_response(&WirePutResponse::new(header, &put)))
            }
            _ => Err(Status::unexpected("put")),
        }
    }

    pub(crate) async fn delete_range(&self, body: &[u8]) -> Result<Response<GatewayBody>, Status> {
        let wire: WireDeleteRangeRequest = decode(body)?;
        match self
            .propose(Command::DeleteRange(wire.to_request()))
            .await?
        {
            KvResponse::DeleteRange(delete) => {
                let header = self.header(delete.header.revision);
                Ok(ok_response(&WireDeleteRangeResponse::new(header, &delete)))
            }
            _ => Err(Status::unexpected("delete")),
        }
    }

    pub(crate) async fn txn(&self, body: &[u8]) -> Result<Response<GatewayBody>, Status> {
        let wire: WireTxnRequest = decode(body)?;
        // etcd answers an operation that names no request so.
        let request = wire.to_request().ok_or(KvError::KeyNotFound)?;
        match self.propose(Command::Txn(request)).await? {
            KvResponse::Txn(txn) => {
                let header = self.header(txn.header.revision);
                Ok(ok_response(&WireTxnResponse::new(header, &txn)))
            }
            _ => Err(Status::unexpected("transaction")),
        }
    }

    pub(crate) async fn compact(&self, body: &[u8]) -> Result<Response<GatewayBody>, Status> {
        let wire: WireCompactionRequest = decode(body)?;
        let command = Command::Compact(CompactRequest {
            revision: wire.revision(),
        });
        match self.propose(command).await? {
            KvResponse::Compact(compact) => {
                let header = self.header(compact.header.revision);
                Ok(ok_response(&WireHeaderOnly::new(header)))
            }
            _ => Err(Status::unexpected("compaction")),
        }
    }
}
