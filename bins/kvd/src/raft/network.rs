//! openraft's network: Raft messages to other members over [`Transport`], to the first of
//! each member's peer URLs.

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
use super::{Member, NodeId, TypeConfig, Vote};

/// Where a member serves Raft's messages, under its peer URL.
pub mod paths {
    /// AppendEntries.
    pub const APPEND: &str = "/raft/append";
    /// RequestVote.
    pub const VOTE: &str = "/raft/vote";
    /// InstallSnapshot, one chunk per call.
    pub const SNAPSHOT: &str = "/raft/snapshot";
}

/// An InstallSnapshot chunk as it travels: openraft's request with the data in base64, which
/// JSON would otherwise carry as an array of numbers, four times the size.
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
#[derive(Debug, Clone, Default)]
pub struct PeerNetwork {
    transport: Transport,
}

impl PeerNetwork {
    /// A network over `transport`.
    pub fn new(transport: Transport) -> Self {
        Self { transport }
    }
}

impl RaftNetworkFactory<TypeConfig> for PeerNetwork {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &Member) -> PeerClient {
        PeerClient {
            transport: self.transport.clone(),
            target,
            url: node.peer_urls.first().cloned().unwrap_or_default(),
        }
    }
}

/// Sends Raft messages to one member.
#[derive(Debug)]
pub struct PeerClient {
    transport: Transport,
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
            .call(&self.url, path, request, timeout)
            .await
            .map_err(|error| match error {
                TransportError::Unreachable { .. } | TransportError::Timeout { .. } => {
                    RPCError::Unreachable(Unreachable::new(&error))
                }
                _ => RPCError::Network(NetworkError::new(&error)),
            })?;
        answer.map_err(|error| RPCError::RemoteError(RemoteError::new(self.target, error)))
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, Member, RaftError<NodeId>>> {
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
