//! The Lease service: grant, revoke, the keep-alive stream, time to live and list.

use std::pin::Pin;

use sinew_etcd_api::etcdserverpb::lease_server::Lease;
use sinew_etcd_api::etcdserverpb::{
    LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest, LeaseKeepAliveResponse,
    LeaseLeasesRequest, LeaseLeasesResponse, LeaseRevokeRequest, LeaseRevokeResponse, LeaseStatus,
    LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use super::{broken_request, Grpc};
use crate::gateway::{Backend, Status as Refusal};
use crate::v3::{AtRevision as _, Command, Response as KvResponse};

type Answer<T> = Result<Response<T>, Status>;

/// How many keep-alive answers may wait for a slow client.
const KEEP_ALIVE_BUFFER: usize = 16;

impl<B: Backend> Grpc<B> {
    /// Answers keep-alive requests until the client ends its stream or the server closes;
    /// a failed renewal ends the stream with its error, as in etcd.
    pub(crate) async fn keep_alive<S>(
        self,
        mut requests: S,
        out: mpsc::Sender<Result<LeaseKeepAliveResponse, Refusal>>,
    ) where
        S: Stream<Item = Result<LeaseKeepAliveRequest, Refusal>> + Unpin,
    {
        let mut closing = self.gateway.closing();
        loop {
            let request = tokio::select! {
                request = requests.next() => request,
                () = out.closed() => return,
                _ = closing.wait_for(|closed| *closed) => return,
            };
            let answer = match request {
                None => return,
                Some(Err(status)) => Err(status),
                Some(Ok(request)) => self.renew(request.id).await,
            };
            let failed = answer.is_err();
            if out.send(answer).await.is_err() || failed {
                return;
            }
        }
    }

    async fn renew(&self, id: i64) -> Result<LeaseKeepAliveResponse, Refusal> {
        let renewed = self.gateway.backend.lease_keep_alive(id).await?;
        Ok(LeaseKeepAliveResponse {
            header: self.header(renewed.revision),
            id,
            ttl: renewed.ttl,
        })
    }
}

#[tonic::async_trait]
impl<B: Backend> Lease for Grpc<B> {
    async fn lease_grant(&self, request: Request<LeaseGrantRequest>) -> Answer<LeaseGrantResponse> {
        let command = Command::LeaseGrant(request.into_inner());
        match self.gateway.propose(command).await? {
            KvResponse::LeaseGrant(mut grant) => {
                grant.header = self.header(grant.revision());
                Ok(Response::new(grant))
            }
            _ => Err(Refusal::unexpected("lease grant").into()),
        }
    }

    async fn lease_revoke(
        &self,
        request: Request<LeaseRevokeRequest>,
    ) -> Answer<LeaseRevokeResponse> {
        let command = Command::LeaseRevoke(request.into_inner());
        match self.gateway.propose(command).await? {
            KvResponse::LeaseRevoke(revoke) => Ok(Response::new(LeaseRevokeResponse {
                header: self.header(revoke.revision()),
            })),
            _ => Err(Refusal::unexpected("lease revocation").into()),
        }
    }

    type LeaseKeepAliveStream =
        Pin<Box<dyn Stream<Item = Result<LeaseKeepAliveResponse, Status>> + Send + 'static>>;

    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> Answer<Self::LeaseKeepAliveStream> {
        let requests = request
            .into_inner()
            .map(|request| request.map_err(broken_request));
        let (out, answers) = mpsc::channel(KEEP_ALIVE_BUFFER);
        tokio::spawn(self.clone().keep_alive(requests, out));
        let answers = ReceiverStream::new(answers).map(|answer| answer.map_err(Into::into));
        Ok(Response::new(Box::pin(answers)))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<LeaseTimeToLiveRequest>,
    ) -> Answer<LeaseTimeToLiveResponse> {
        let request = request.get_ref();
        let answer = self
            .gateway
            .backend
            .lease_time_to_live(request.id, request.keys)
            .await
            .map_err(Refusal::from)?;
        Ok(Response::new(LeaseTimeToLiveResponse {
            header: self.header(answer.revision),
            id: request.id,
            ttl: answer.ttl,
            granted_ttl: answer.granted_ttl,
            keys: answer.keys,
        }))
    }

    async fn lease_leases(
        &self,
        _request: Request<LeaseLeasesRequest>,
    ) -> Answer<LeaseLeasesResponse> {
        let list = self.gateway.backend.leases().await.map_err(Refusal::from)?;
        Ok(Response::new(LeaseLeasesResponse {
            header: self.header(list.revision),
            leases: list.ids.into_iter().map(|id| LeaseStatus { id }).collect(),
        }))
    }
}
