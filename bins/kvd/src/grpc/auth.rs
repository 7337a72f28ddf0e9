//! The Auth service, as etcd answers it while authentication is disabled (kvd has no users
//! or roles): clients that log in are told authentication is not enabled and carry on
//! without a token, as etcd's own clients do.

use sinew_etcd_api::etcdserverpb::auth_server::Auth;
use sinew_etcd_api::etcdserverpb::{
    AuthDisableRequest, AuthDisableResponse, AuthEnableRequest, AuthEnableResponse,
    AuthRoleAddRequest, AuthRoleAddResponse, AuthRoleDeleteRequest, AuthRoleDeleteResponse,
    AuthRoleGetRequest, AuthRoleGetResponse, AuthRoleGrantPermissionRequest,
    AuthRoleGrantPermissionResponse, AuthRoleListRequest, AuthRoleListResponse,
    AuthRoleRevokePermissionRequest, AuthRoleRevokePermissionResponse, AuthStatusRequest,
    AuthStatusResponse, AuthUserAddRequest, AuthUserAddResponse, AuthUserChangePasswordRequest,
    AuthUserChangePasswordResponse, AuthUserDeleteRequest, AuthUserDeleteResponse,
    AuthUserGetRequest, AuthUserGetResponse, AuthUserGrantRoleRequest, AuthUserGrantRoleResponse,
    AuthUserListRequest, AuthUserListResponse, AuthUserRevokeRoleRequest,
    AuthUserRevokeRoleResponse, AuthenticateRequest, AuthenticateResponse,
};
use tonic::{Request, Response, Status};

use super::Grpc;
use crate::gateway::Backend;

type Answer<T> = Result<Response<T>, Status>;

/// etcd's answer to a login while authentication is disabled.
fn not_enabled() -> Status {
    Status::failed_precondition("etcdserver: authentication is not enabled")
}

/// kvd keeps no users or roles.
fn no_users() -> Status {
    Status::unimplemented("kvd: users and roles are not supported; authentication stays disabled")
}

#[tonic::async_trait]
impl<B: Backend> Auth for Grpc<B> {
    async fn auth_enable(
        &self,
        _request: Request<AuthEnableRequest>,
    ) -> Answer<AuthEnableResponse> {
        // etcd needs a root user before it enables authentication; kvd has none.
        Err(Status::failed_precondition(
            "etcdserver: root user does not exist",
        ))
    }

    async fn auth_disable(
        &self,
        _request: Request<AuthDisableRequest>,
    ) -> Answer<AuthDisableResponse> {
        Ok(Response::new(AuthDisableResponse {
            header: self.header(0),
        }))
    }

    async fn auth_status(
        &self,
        _request: Request<AuthStatusRequest>,
    ) -> Answer<AuthStatusResponse> {
        Ok(Response::new(AuthStatusResponse {
            header: self.header(0),
            enabled: false,
            auth_revision: 0,
        }))
    }

    async fn authenticate(
        &self,
        _request: Request<AuthenticateRequest>,
    ) -> Answer<AuthenticateResponse> {
        Err(not_enabled())
    }

    async fn user_add(&self, _request: Request<AuthUserAddRequest>) -> Answer<AuthUserAddResponse> {
        Err(no_users())
    }

    async fn user_get(&self, _request: Request<AuthUserGetRequest>) -> Answer<AuthUserGetResponse> {
        Err(no_users())
    }

    async fn user_list(
        &self,
        _request: Request<AuthUserListRequest>,
    ) -> Answer<AuthUserListResponse> {
        Err(no_users())
    }

    async fn user_delete(
        &self,
        _request: Request<AuthUserDeleteRequest>,
    ) -> Answer<AuthUserDeleteResponse> {
        Err(no_users())
    }

    async fn user_change_password(
        &self,
        _request: Request<AuthUserChangePasswordRequest>,
    ) -> Answer<AuthUserChangePasswordResponse> {
        Err(no_users())
    }

    async fn user_grant_role(
        &self,
        _request: Request<AuthUserGrantRoleRequest>,
    ) -> Answer<AuthUserGrantRoleResponse> {
        Err(no_users())
    }

    async fn user_revoke_role(
        &self,
        _request: Request<AuthUserRevokeRoleRequest>,
    ) -> Answer<AuthUserRevokeRoleResponse> {
        Err(no_users())
    }

    async fn role_add(&self, _request: Request<AuthRoleAddRequest>) -> Answer<AuthRoleAddResponse> {
        Err(no_users())
    }

    async fn role_get(&self, _request: Request<AuthRoleGetRequest>) -> Answer<AuthRoleGetResponse> {
        Err(no_users())
    }

    async fn role_list(
        &self,
        _request: Request<AuthRoleListRequest>,
    ) -> Answer<AuthRoleListResponse> {
        Err(no_users())
    }

    async fn role_delete(
        &self,
        _request: Request<AuthRoleDeleteRequest>,
    ) -> Answer<AuthRoleDeleteResponse> {
        Err(no_users())
    }

    async fn role_grant_permission(
        &self,
        _request: Request<AuthRoleGrantPermissionRequest>,
    ) -> Answer<AuthRoleGrantPermissionResponse> {
        Err(no_users())
    }

    async fn role_revoke_permission(
        &self,
        _request: Request<AuthRoleRevokePermissionRequest>,
    ) -> Answer<AuthRoleRevokePermissionResponse> {
        Err(no_users())
    }
}
