//! The checks etcd makes before a KV request reaches the backend, shared by every API.

use crate::gateway::backend::Backend;
use crate::gateway::error::Status;
use crate::gateway::size::proposal_len;
use crate::gateway::Gateway;
use crate::v3::{validate_range, Command, RangeRequest, RangeResponse, Response as KvResponse};

impl<B: Backend> Gateway<B> {
    /// Checks a command as etcd does before proposing it (the request's own checks, then
    /// `--max-request-bytes`), then proposes it. gRPC has refused an oversized request
    /// before.
    pub(crate) async fn propose(&self, command: Command) -> Result<KvResponse, Status> {
        command.validate()?;
        if proposal_len(&command) > self.config.max_request_bytes {
            return Err(Status::invalid("etcdserver: request is too large"));
        }
        Ok(self.backend.propose(command).await?.response)
    }

    /// Checks a read as etcd does, then reads: linearizably unless `serializable`.
    pub(crate) async fn read(
        &self,
        request: RangeRequest,
        serializable: bool,
    ) -> Result<RangeResponse, Status> {
        validate_range(&request)?;
        Ok(self.backend.range(request, serializable).await?)
    }
}
