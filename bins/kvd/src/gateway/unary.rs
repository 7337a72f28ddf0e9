//! The unary calls: the JSON body is decoded into etcd's request message, sized as gRPC
//! sizes it, and answered by the gRPC service itself, whose answer goes back as JSON. etcd's
//! gateway forwards to its gRPC server the same way, so both APIs answer alike.

use std::future::Future;

use hyper::Response;
use serde::de::DeserializeOwned;
use serde::Serialize;
use sinew_etcd_api::etcdserverpb::cluster_server::Cluster;
use sinew_etcd_api::etcdserverpb::kv_server::Kv;
use sinew_etcd_api::etcdserverpb::lease_server::Lease;
use sinew_etcd_api::etcdserverpb::maintenance_server::Maintenance;

use crate::gateway::backend::Backend;
use crate::gateway::body::{decode, ok_response, too_large, GatewayBody};
use crate::gateway::error::Status;
use crate::gateway::route::Unary;
use crate::gateway::Gateway;
use crate::grpc::Grpc;

impl<B: Backend> Gateway<B> {
    /// Answers the unary call `endpoint` with the request in `body`.
    pub(crate) async fn unary_call(
        &self,
        endpoint: Unary,
        body: &[u8],
    ) -> Result<Response<GatewayBody>, Status> {
        let grpc = Grpc::new(self.clone());
        let grpc = &grpc;
        match endpoint {
            Unary::Range => self.call(body, |request| grpc.range(request)).await,
            Unary::Put => self.call(body, |request| grpc.put(request)).await,
            Unary::DeleteRange => self.call(body, |request| grpc.delete_range(request)).await,
            Unary::Txn => self.call(body, |request| grpc.txn(request)).await,
            Unary::Compaction => self.call(body, |request| grpc.compact(request)).await,
            Unary::LeaseGrant => self.call(body, |request| grpc.lease_grant(request)).await,
            Unary::LeaseRevoke => self.call(body, |request| grpc.lease_revoke(request)).await,
            Unary::LeaseTimeToLive => {
                self.call(body, |request| grpc.lease_time_to_live(request))
                    .await
            }
            Unary::LeaseLeases => self.call(body, |request| grpc.lease_leases(request)).await,
            Unary::MemberList => self.call(body, |request| grpc.member_list(request)).await,
            Unary::MemberAdd => self.call(body, |request| grpc.member_add(request)).await,
            Unary::MemberRemove => self.call(body, |request| grpc.member_remove(request)).await,
            Unary::MemberPromote => {
                self.call(body, |request| grpc.member_promote(request))
                    .await
            }
            Unary::Status => self.call(body, |request| grpc.status(request)).await,
            Unary::Alarm => self.call(body, |request| grpc.alarm(request)).await,
            Unary::MoveLeader => self.call(body, |request| grpc.move_leader(request)).await,
        }
    }

    /// Decodes a request, refuses it if gRPC would refuse its size, and answers it with
    /// `method`.
    async fn call<Req, Res, F, Fut>(
        &self,
        body: &[u8],
        method: F,
    ) -> Result<Response<GatewayBody>, Status>
    where
        Req: prost::Message + DeserializeOwned + Default,
        Res: Serialize,
        F: FnOnce(tonic::Request<Req>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<Res>, tonic::Status>>,
    {
        let request: Req = decode(body)?;
        let (size, limit) = (request.encoded_len(), self.config.grpc_limit());
        if size > limit {
            return Err(too_large(size, limit));
        }
        let answer = method(tonic::Request::new(request)).await?;
        Ok(ok_response(answer.get_ref()))
    }
}
