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
use serde::Serialize;

use super::transport::{Transport, TransportError};
use super::{Member, NodeId, TypeConfig};

/// Where a member serves Raft's messages, under its peer URL.
pub mod paths {
    /// AppendEntries.
    pub const APPEND: &str = "/raft/append";
    /// RequestVote.
    pub const VOTE: &str = "/raft/vote";
    /// InstallSnapshot, one chunk per call.
    pub const SNAPSHOT: &str = "/raft/snapshot";
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
        self.send(paths::SNAPSHOT, &rpc, option.hard_ttl()).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, Member, RaftError<NodeId>>> {
        self.send(paths::VOTE, &rpc, option.hard_ttl()).await
    }
}
