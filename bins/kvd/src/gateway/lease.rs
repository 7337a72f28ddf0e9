//! The unary Lease calls: grant, revoke, time to live and list.

use hyper::Response;

use crate::gateway::backend::Backend;
use crate::gateway::body::{decode, ok_response, GatewayBody};
use crate::gateway::error::Status;
use crate::gateway::wire::kv::WireHeaderOnly;
use crate::gateway::wire::lease::{
    WireLeaseGrantRequest, WireLeaseGrantResponse, WireLeaseId, WireLeaseLeasesResponse,
    WireLeaseTimeToLiveRequest, WireLeaseTimeToLiveResponse,
};
use crate::gateway::Gateway;
use crate::v3::{Command, LeaseRevokeRequest, Response as KvResponse};

impl<B: Backend> Gateway<B> {
    pub(crate) async fn lease_grant(&self, body: &[u8]) -> Result<Response<GatewayBody>, Status> {
        let wire: WireLeaseGrantRequest = decode(body)?;
        match self.propose(Command::LeaseGrant(wire.to_request())).await? {
            KvResponse::LeaseGrant(grant) => {
                let header = self.header(grant.header.revision);
                Ok(ok_response(&WireLeaseGrantResponse::new(header, &grant)))
            }
            _ => Err(Status::unexpected("lease grant")),
        }
    }

    pub(crate) async fn lease_revoke(&self, body: &[u8]) -> Result<Response<GatewayBody>, Status> {
        let wire: WireLeaseId = decode(body)?;
        let command = Command::LeaseRevoke(LeaseRevokeRequest { id: wire.id() });
        match self.propose(command).await? {
            KvResponse::LeaseRevoke(revoke) => {
                let header = self.header(revoke.header.revision);
                Ok(ok_response(&WireHeaderOnly::new(header)))
            }
            _ => Err(Status::unexpected("lease revocation")),
        }
    }

    pub(crate) async fn lease_time_to_live(
        &self,
        body: &[u8],
    ) -> Result<Response<GatewayBody>, Status> {
        let wire: WireLeaseTimeToLiveRequest = decode(body)?;
        let answer = self
            .backend
            .lease_time_to_live(wire.id(), wire.keys())
            .await?;
        let header = self.header(answer.revision);
        Ok(ok_response(&WireLeaseTimeToLiveResponse::new(
            header,
            wire.id(),
            &answer,
        )))
    }

    pub(crate) async fn leases(&self) -> Result<Response<GatewayBody>, Status> {
        let list = self.backend.leases().await?;
        let header = self.header(list.revision);
        Ok(ok_response(&WireLeaseLeasesResponse::new(header, &list)))
    }
}
