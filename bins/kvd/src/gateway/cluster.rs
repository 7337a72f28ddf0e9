//! The Cluster calls (member list, add, remove, promote) and the Maintenance status, alarm
//! and transfer-leadership calls.
//! Cluster answers carry no revision in their header, as etcd's.

use hyper::Response;

use crate::gateway::backend::{Backend, Member, MemberAdded};
use crate::gateway::body::{decode, ok_response, GatewayBody};
use crate::gateway::error::{BackendError, Status};
use crate::gateway::wire::cluster::{
    WireAlarmRequest, WireAlarmResponse, WireMemberAddRequest, WireMemberAddResponse, WireMemberId,
    WireMembersResponse, WireMoveLeaderRequest, WireStatusResponse,
};
use crate::gateway::wire::kv::WireHeaderOnly;
use crate::gateway::wire::Header;
use crate::gateway::Gateway;

impl<B: Backend> Gateway<B> {
    fn cluster_header(&self) -> Header {
        self.header(0)
    }

    pub(crate) async fn member_list(&self) -> Result<Response<GatewayBody>, Status> {
        let members = self.backend.member_list().await?;
        Ok(ok_response(&WireMembersResponse::new(
            self.cluster_header(),
            &members,
        )))
    }

    /// Adds a member reachable on `peer_urls`, checked first as etcd checks them.
    pub(crate) async fn add_member(
        &self,
        mut peer_urls: Vec<String>,
        is_learner: bool,
    ) -> Result<MemberAdded, Status> {
        check_member_urls(&mut peer_urls)?;
        Ok(self.backend.member_add(peer_urls, is_learner).await?)
    }

    /// Changes a member's peer URLs, checked first as etcd checks them.
    pub(crate) async fn update_member(
        &self,
        id: u64,
        mut peer_urls: Vec<String>,
    ) -> Result<Vec<Member>, Status> {
        check_member_urls(&mut peer_urls)?;
        Ok(self.backend.member_update(id, peer_urls).await?)
    }

    pub(crate) async fn member_add(&self, body: &[u8]) -> Result<Response<GatewayBody>, Status> {
        let wire: WireMemberAddRequest = decode(body)?;
        let added = self
            .add_member(wire.peer_urls().to_vec(), wire.is_learner())
            .await?;
        Ok(ok_response(&WireMemberAddResponse::new(
            self.cluster_header(),
            &added.member,
            &added.members,
        )))
    }

    pub(crate) async fn member_remove(&self, body: &[u8]) -> Result<Response<GatewayBody>, Status> {
        let wire: WireMemberId = decode(body)?;
        let members = self.backend.member_remove(wire.id()).await?;
        Ok(ok_response(&WireMembersResponse::new(
            self.cluster_header(),
            &members,
        )))
    }

    pub(crate) async fn member_promote(
        &self,
        body: &[u8],
    ) -> Result<Response<GatewayBody>, Status> {
        let wire: WireMemberId = decode(body)?;
        let members = self.backend.member_promote(wire.id()).await?;
        Ok(ok_response(&WireMembersResponse::new(
            self.cluster_header(),
            &members,
        )))
    }

    pub(crate) async fn alarm(&self, body: &[u8]) -> Result<Response<GatewayBody>, Status> {
        let wire: WireAlarmRequest = decode(body)?;
        let alarms = crate::grpc::maintenance::alarm(&*self.backend, wire.into()).await?;
        Ok(ok_response(&WireAlarmResponse::new(&alarms)))
    }

    pub(crate) async fn move_leader(&self, body: &[u8]) -> Result<Response<GatewayBody>, Status> {
        let wire: WireMoveLeaderRequest = decode(body)?;
        let revision = self.backend.move_leader(wire.target_id()).await?;
        Ok(ok_response(&WireHeaderOnly::new(self.header(revision))))
    }

    pub(crate) async fn status(&self) -> Result<Response<GatewayBody>, Status> {
        let status = self.backend.status().await?;
        let header = self.header(status.revision);
        Ok(ok_response(&WireStatusResponse::new(header, &status)))
    }
}

/// Checks member URLs and sorts them, as etcd's `types.NewURLs` does.
fn check_member_urls(urls: &mut [String]) -> Result<(), BackendError> {
    if urls.iter().all(|url| is_member_url(url)) {
        urls.sort();
        Ok(())
    } else {
        Err(BackendError::MemberBadUrls)
    }
}

/// Whether `url` is a member URL etcd accepts (`types.NewURLs`): `http`, `https`, `unix` or
/// `unixs`, a `host:port` authority, no path.
fn is_member_url(url: &str) -> bool {
    let Some((scheme, rest)) = url.split_once("://") else {
        return false;
    };
    if !matches!(scheme, "http" | "https" | "unix" | "unixs") {
        return false;
    }
    let Some((host, port)) = rest.rsplit_once(':') else {
        return false;
    };
    let host_ok = !host.is_empty()
        && !host.contains(['/', '?', '#', ' '])
        && (!host.starts_with('[') || host.ends_with(']'));
    let port_ok = !port.is_empty() && port.bytes().all(|byte| byte.is_ascii_digit());
    host_ok && port_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_urls_need_a_scheme_a_host_and_a_port_and_no_path() {
        assert!(is_member_url("http://127.0.0.1:2380"));
        assert!(is_member_url("https://node-1.example:2380"));
        assert!(is_member_url("http://[::1]:2380"));
        assert!(!is_member_url("bad url"));
        assert!(!is_member_url("http://127.0.0.1"));
        assert!(!is_member_url("http://127.0.0.1:2380/path"));
        assert!(!is_member_url("ftp://127.0.0.1:2380"));
        assert!(!is_member_url("http://:2380"));
    }
}
