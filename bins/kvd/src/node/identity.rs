//! Which member a data directory belongs to and which cluster, kept in `member.json` so a
//! restarted member keeps its ids and a data directory is never reused by another member.

use std::fs;
use std::io;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::config::{cluster_id, member_id, ClusterState, NodeConfig};
use super::peer_paths;
use super::StartError;
use crate::raft::wire::Encoding;
use crate::raft::{NodeId, Transport};

const FILE_NAME: &str = "member.json";

/// How long a joining member keeps asking the running members for the cluster's id.
const JOIN_PATIENCE: Duration = Duration::from_secs(60);

/// A member's lasting identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// This member's id.
    pub member_id: NodeId,
    /// The cluster's id.
    pub cluster_id: u64,
}

/// Loads the identity kept in the data directory, or makes it: from `--initial-cluster` for
/// a new cluster, from a running member when joining one.
pub async fn establish(
    config: &NodeConfig,
    id: NodeId,
    transport: &Transport,
) -> Result<Identity, StartError> {
    let path = config.data_dir.join(FILE_NAME);
    if let Some(identity) = load(&path)? {
        if identity.member_id != id {
            return Err(StartError::Identity(format!(
                "{} belongs to member {:x}, not to {:x} (these --initial-advertise-peer-urls and --initial-cluster-token)",
                config.data_dir.display(),
                identity.member_id,
                id
            )));
        }
        return Ok(identity);
    }
    let cluster_id = match config.initial_cluster_state {
        ClusterState::New => {
            let ids: Vec<NodeId> = config
                .initial_cluster
                .iter()
                .map(|member| member_id(&member.peer_urls, &config.initial_cluster_token))
                .collect();
            cluster_id(&ids, &config.initial_cluster_token)
        }
        ClusterState::Existing => ask_running_members(config, id, transport).await?,
    };
    let identity = Identity {
        member_id: id,
        cluster_id,
    };
    save(&path, &identity)?;
    Ok(identity)
}

async fn ask_running_members(
    config: &NodeConfig,
    id: NodeId,
    transport: &Transport,
) -> Result<u64, StartError> {
    let others: Vec<&String> = config
        .initial_cluster
        .iter()
        .filter(|member| member_id(&member.peer_urls, &config.initial_cluster_token) != id)
        .flat_map(|member| &member.peer_urls)
        .collect();
    let give_up = tokio::time::Instant::now() + JOIN_PATIENCE;
    loop {
        for url in &others {
            let answer: Result<Identity, _> = transport
                .call(
                    url.as_str(),
                    peer_paths::IDENTITY,
                    &(),
                    Encoding::Json,
                    Duration::from_secs(1),
                )
                .await;
            match answer {
                Ok(theirs) => return Ok(theirs.cluster_id),
                Err(error) => tracing::debug!(%error, "asking for the cluster id"),
            }
        }
        if tokio::time::Instant::now() >= give_up {
            return Err(StartError::Identity(format!(
                "--initial-cluster-state existing: no running member answered at {others:?} within {JOIN_PATIENCE:?}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn load(path: &Path) -> Result<Option<Identity>, StartError> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|error| {
            StartError::Identity(format!("{} is damaged: {error}", path.display()))
        }),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(StartError::Identity(format!(
            "cannot read {}: {error}",
            path.display()
        ))),
    }
}

fn save(path: &Path, identity: &Identity) -> Result<(), StartError> {
    let bytes = serde_json::to_vec(identity)
        .map_err(|error| StartError::Identity(format!("cannot encode the identity: {error}")))?;
    let temporary = path.with_extension("json.tmp");
    fs::write(&temporary, bytes)
        .and_then(|()| fs::File::open(&temporary)?.sync_all())
        .and_then(|()| fs::rename(&temporary, path))
        .map_err(|error| StartError::Identity(format!("cannot write {}: {error}", path.display())))
}
