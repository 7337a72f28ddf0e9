//! The checks etcd makes before a membership change reaches the backend, shared by every
//! API.

use crate::gateway::backend::{Backend, Member, MemberAdded};
use crate::gateway::error::{BackendError, Status};
use crate::gateway::Gateway;

impl<B: Backend> Gateway<B> {
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
