//! openraft's network: Raft messages to other members over [`Transport`], to the first of
//! each member's peer URLs. AppendEntries tell a commit index only up to what this member's
//! log holds on disk (see [`super`]).

use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::transport::{Transport, TransportError};
use super::wire::Encoding;
use super::{Member, NodeId, Persisted, TypeConfig, Vote};

/// Where a member serves Raft's messages, under its peer URL.
pub mod paths {
    /// AppendEntries.
    pub const APPEND: &str = "/raft/append";
    /// RequestVote.
    pub const VOTE: &str = "/raft/vote";
    /// InstallSnapshot, one chunk per call.
    pub const SNAPSHOT: &str = "/raft/snapshot";
}

/// An InstallSnapshot chunk as it travels: openraft's request, with the data in base64 when
/// it travels as JSON (which would otherwise carry it as an array of numbers, four times the
/// size).
#[derive(Debug, Serialize, Deserialize)]
pub struct SnapshotChunk {
    vote: Vote,
    meta: openraft::SnapshotMeta<NodeId, Member>,
    offset: u64,
    #[serde(with = "crate::base64_bytes")]
    data: Vec<u8>,
    done: bool,
}

impl From<InstallSnapshotRequest<TypeConfig>> for SnapshotChunk {
    fn from(rpc: InstallSnapshotRequest<TypeConfig>) -> Self {
        Self {
            vote: rpc.vote,
            meta: rpc.meta,
            offset: rpc.offset,
            data: rpc.data,
            done: rpc.done,
        }
    }
}

impl From<SnapshotChunk> for InstallSnapshotRequest<TypeConfig> {
    fn from(chunk: SnapshotChunk) -> Self {
        Self {
            vote: chunk.vote,
            meta: chunk.meta,
            offset: chunk.offset,
            data: chunk.data,
            done: chunk.done,
        }
    }
}

/// Makes a [`PeerClient`] per target member; every client shares one connection pool.
#[derive(Debug, Clone)]
pub struct PeerNetwork {
    transport: Transport,
    persisted: Persisted,
}

impl PeerNetwork {
    /// A network over `transport` for the member whose log reaches the disk as `persisted`
    /// tells.
    pub fn new(transport: Transport, persisted: Persisted) -> Self {
        Self {
            transport,
            persisted,
        }
    }
}

impl RaftNetworkFactory<TypeConfig> for PeerNetwork {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &Member) -> PeerClient {
        PeerClient {
            transport: self.transport.clone(),
            persisted: self.persisted.clone(),
            target,
            url: node.peer_urls.first().cloned().unwrap_or_default(),
        }
    }
}

/// Sends Raft messages to one member.
#[derive(Debug)]
pub struct PeerClient {
    transport: Transport,
    persisted: Persisted,
    target: NodeId,
    url: String,
}

type RemoteResult<T, E> = Result<T, RaftError<NodeId, E>>;

impl PeerClient {
    async fn send<Req, Resp, E>(
        &self,
        path: &str,
        request: &Req,
        timeout: Duration,
    ) -> Result<Resp, RPCError<NodeId, Member, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let answer: RemoteResult<Resp, E> = self
            .transport
            .call(&self.url, path, request, Encoding::Binary, timeout)
            .await
            .map_err(|error| match error {
                TransportError::Unreachable { .. }
                | TransportError::Broken { .. }
                | TransportError::Timeout { .. } => RPCError::Unreachable(Unreachable::new(&error)),
                _ => RPCError::Network(NetworkError::new(&error)),
            })?;
        answer.map_err(|error| RPCError::RemoteError(RemoteError::new(self.target, error)))
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    /// Entries go at once, with the commit index lowered to what is on disk here; a message
    /// that only tells the commit index waits until it is on disk here, which takes at most
    /// the rest of one sync.
    async fn append_entries(
        &mut self,
        mut rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, Member, RaftError<NodeId>>> {
        if let Some(committed) = rpc.leader_commit {
            if rpc.entries.is_empty() {
                tokio::time::timeout(option.hard_ttl(), self.persisted.reach(committed))
                    .await
                    .map_err(|elapsed| RPCError::Unreachable(Unreachable::new(&elapsed)))?
                    .map_err(|error| RPCError::Network(NetworkError::new(&error)))?;
            } else {
                rpc.leader_commit = rpc.leader_commit.min(self.persisted.last());
            }
        }
        self.send(paths::APPEND, &rpc, option.hard_ttl()).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, Member, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.send(
            paths::SNAPSHOT,
            &SnapshotChunk::from(rpc),
            option.hard_ttl(),
        )
        .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, Member, RaftError<NodeId>>> {
        self.send(paths::VOTE, &rpc, option.hard_ttl()).await
    }
}
