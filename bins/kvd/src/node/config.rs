//! What a node needs to start: etcd's member and cluster settings, and the ids derived from
//! them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::raft::NodeId;

/// Why a setting was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    /// `--initial-cluster` is not a list of `name=peer-url`.
    #[error("--initial-cluster {value:?}: expected name=http://host:port[,name=...], {reason}")]
    InitialCluster {
        /// The setting.
        value: String,
        /// What was wrong.
        reason: String,
    },
    /// A URL is not `http://host:port` with a literal address.
    #[error("{flag} {value:?}: expected http://IP:PORT ({reason})")]
    Url {
        /// The flag that held it.
        flag: &'static str,
        /// The URL.
        value: String,
        /// What was wrong.
        reason: String,
    },
    /// `--initial-cluster` does not hold this member's name with its advertised peer URLs.
    #[error(
        "--initial-cluster has no member {name:?} with the peer URLs {urls:?} given by --initial-advertise-peer-urls"
    )]
    NotInCluster {
        /// This member's name.
        name: String,
        /// Its advertised peer URLs.
        urls: Vec<String>,
    },
    /// `--initial-cluster-state` is neither `new` nor `existing`.
    #[error("--initial-cluster-state {0:?}: expected new or existing")]
    ClusterState(String),
}

/// Whether this member founds a cluster or joins one that runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterState {
    /// Found the cluster listed in `--initial-cluster` (on an empty data directory).
    New,
    /// Join a running cluster, which must already list this member (`member add`).
    Existing,
}

impl std::str::FromStr for ClusterState {
    type Err = ConfigError;

    fn from_str(value: &str) -> Result<Self, ConfigError> {
        match value {
            "new" => Ok(Self::New),
            "existing" => Ok(Self::Existing),
            other => Err(ConfigError::ClusterState(other.to_owned())),
        }
    }
}

/// One entry of `--initial-cluster`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitialMember {
    /// Its name.
    pub name: String,
    /// Its peer URLs (a name may be listed several times, one URL each, as in etcd).
    pub peer_urls: Vec<String>,
}

/// Parses `--initial-cluster` (`a=http://10.0.0.1:2380,b=http://10.0.0.2:2380`).
pub fn parse_initial_cluster(value: &str) -> Result<Vec<InitialMember>, ConfigError> {
    let mut members: Vec<InitialMember> = Vec::new();
    for item in value
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
    {
        let (name, url) = item
            .split_once('=')
            .ok_or_else(|| ConfigError::InitialCluster {
                value: value.to_owned(),
                reason: format!("{item:?} has no '='"),
            })?;
        parse_url("--initial-cluster", url)?;
        match members.iter_mut().find(|member| member.name == name) {
            Some(member) => member.peer_urls.push(url.to_owned()),
            None => members.push(InitialMember {
                name: name.to_owned(),
                peer_urls: vec![url.to_owned()],
            }),
        }
    }
    if members.is_empty() {
        return Err(ConfigError::InitialCluster {
            value: value.to_owned(),
            reason: "it is empty".to_owned(),
        });
    }
    Ok(members)
}

/// The socket address of an `http://IP:PORT` URL.
pub fn parse_url(flag: &'static str, value: &str) -> Result<SocketAddr, ConfigError> {
    let refuse = |reason: &str| ConfigError::Url {
        flag,
        value: value.to_owned(),
        reason: reason.to_owned(),
    };
    let rest = value
        .strip_prefix("http://")
        .ok_or_else(|| refuse("only http:// is served"))?;
    let authority = rest.trim_end_matches('/');
    if authority.contains('/') {
        return Err(refuse("a URL here has no path"));
    }
    let authority = authority.replace("localhost", "127.0.0.1");
    authority
        .parse()
        .map_err(|_| refuse("the host must be an IP address and the port a number"))
}

/// A member's id: the same on every member for the same peer URLs and cluster token, as
/// etcd derives it, and never 0.
pub fn member_id(peer_urls: &[String], token: &str) -> NodeId {
    let mut urls = peer_urls.to_vec();
    urls.sort();
    let digest = Sha256::new()
        .chain_update(urls.join(","))
        .chain_update(token)
        .finalize();
    let mut id = [0; 8];
    id.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(id).max(1)
}

/// The cluster's id, derived from its founding members' ids and the token.
pub fn cluster_id(member_ids: &[NodeId], token: &str) -> u64 {
    let mut ids = member_ids.to_vec();
    ids.sort_unstable();
    let mut hasher = Sha256::new();
    for id in ids {
        hasher.update(id.to_be_bytes());
    }
    hasher.update(token);
    let digest = hasher.finalize();
    let mut id = [0; 8];
    id.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(id)
}

/// Everything a node needs to start.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// This member's name.
    pub name: String,
    /// Where its Raft log, snapshot and identity live.
    pub data_dir: PathBuf,
    /// Where it serves clients.
    pub listen_client: Vec<SocketAddr>,
    /// Where it tells clients to reach it.
    pub advertise_client_urls: Vec<String>,
    /// Where it serves other members.
    pub listen_peer: Vec<SocketAddr>,
    /// Where it tells other members to reach it.
    pub advertise_peer_urls: Vec<String>,
    /// The founding members.
    pub initial_cluster: Vec<InitialMember>,
    /// Found or join.
    pub initial_cluster_state: ClusterState,
    /// Keeps clusters that share hosts apart: it goes into every id.
    pub initial_cluster_token: String,
    /// How often the leader heartbeats.
    pub heartbeat: Duration,
    /// How long followers wait for a heartbeat before they stand for election.
    pub election_timeout: Duration,
    /// How many applied entries trigger a snapshot (and let the log before it go).
    pub snapshot_count: u64,
    /// The largest request a client may send, in bytes.
    pub max_request_bytes: usize,
    /// The space quota: a put, transaction or lease grant that would take the store's
    /// [`crate::v3::Store::size`] to this many bytes raises an out-of-space alarm and is
    /// refused. `None`: no quota.
    pub quota_backend_bytes: Option<u64>,
}

impl NodeConfig {
    /// This member's id.
    pub fn member_id(&self) -> NodeId {
        member_id(&self.advertise_peer_urls, &self.initial_cluster_token)
    }

    /// Checks that the settings agree with each other.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut own = self.advertise_peer_urls.clone();
        own.sort();
        let listed = self.initial_cluster.iter().any(|member| {
            let mut urls = member.peer_urls.clone();
            urls.sort();
            member.name == self.name && urls == own
        });
        if !listed {
            return Err(ConfigError::NotInCluster {
                name: self.name.clone(),
                urls: self.advertise_peer_urls.clone(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_initial_cluster_groups_urls_by_name() {
        let members = parse_initial_cluster(
            "a=http://127.0.0.1:2380,b=http://127.0.0.1:2381,a=http://127.0.0.2:2380",
        )
        .unwrap();
        assert_eq!(members.len(), 2);
        assert_eq!(
            members[0].peer_urls,
            ["http://127.0.0.1:2380", "http://127.0.0.2:2380"]
        );
        assert_eq!(members[1].name, "b");
    }

    #[test]
    fn bad_initial_clusters_say_what_is_wrong() {
        for (value, says) in [
            ("", "empty"),
            ("a", "has no '='"),
            ("a=https://127.0.0.1:1", "only http://"),
            ("a=http://example.com:1", "IP address"),
        ] {
            let error = parse_initial_cluster(value).unwrap_err().to_string();
            assert!(error.contains(says), "{value:?}: {error}");
        }
    }

    #[test]
    fn ids_depend_on_urls_and_token_not_on_url_order() {
        let urls = [
            "http://127.0.0.1:1".to_owned(),
            "http://127.0.0.1:2".to_owned(),
        ];
        let reversed = [urls[1].clone(), urls[0].clone()];
        assert_eq!(member_id(&urls, "t"), member_id(&reversed, "t"));
        assert_ne!(member_id(&urls, "t"), member_id(&urls, "u"));
        assert_ne!(member_id(&urls[..1], "t"), member_id(&urls, "t"));
        assert_eq!(cluster_id(&[1, 2], "t"), cluster_id(&[2, 1], "t"));
        assert_ne!(cluster_id(&[1, 2], "t"), cluster_id(&[1, 3], "t"));
    }
}
