//! The Cluster service: member list, add, remove, update and promote. Its answers carry no
//! revision in their header, as etcd's.

use sinew_etcd_api::etcdserverpb::cluster_server::Cluster;
use sinew_etcd_api::etcdserverpb::{
    MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse,
    MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse,
    MemberUpdateRequest, MemberUpdateResponse,
};
use tonic::{Request, Response, Status};

use super::Grpc;
use crate::gateway::{Backend, Status as Refusal};

type Answer<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl<B: Backend> Cluster for Grpc<B> {
    async fn member_add(&self, request: Request<MemberAddRequest>) -> Answer<MemberAddResponse> {
        let request = request.into_inner();
        let added = self
            .gateway
            .add_member(request.peer_ur_ls, request.is_learner)
            .await?;
        Ok(Response::new(MemberAddResponse {
            header: self.header(0),
            member: Some(added.member),
            members: added.members,
        }))
    }

    async fn member_remove(
        &self,
        request: Request<MemberRemoveRequest>,
    ) -> Answer<MemberRemoveResponse> {
        let remaining = self
            .gateway
            .backend
            .member_remove(request.get_ref().id)
            .await
            .map_err(Refusal::from)?;
        Ok(Response::new(MemberRemoveResponse {
            header: self.header(0),
            members: remaining,
        }))
    }

    async fn member_update(
        &self,
        request: Request<MemberUpdateRequest>,
    ) -> Answer<MemberUpdateResponse> {
        let request = request.into_inner();
        let updated = self
            .gateway
            .update_member(request.id, request.peer_ur_ls)
            .await?;
        Ok(Response::new(MemberUpdateResponse {
            header: self.header(0),
            members: updated,
        }))
    }

    async fn member_list(
        &self,
        _request: Request<MemberListRequest>,
    ) -> Answer<MemberListResponse> {
        let list = self
            .gateway
            .backend
            .member_list()
            .await
            .map_err(Refusal::from)?;
        Ok(Response::new(MemberListResponse {
            header: self.header(0),
            members: list,
        }))
    }

    async fn member_promote(
        &self,
        request: Request<MemberPromoteRequest>,
    ) -> Answer<MemberPromoteResponse> {
        let list = self
            .gateway
            .backend
            .member_promote(request.get_ref().id)
            .await
            .map_err(Refusal::from)?;
        Ok(Response::new(MemberPromoteResponse {
            header: self.header(0),
            members: list,
        }))
    }
}
