//! The peer listener: Raft's messages from other members, and the requests followers
//! forward to the leader. HTTP/1.1, each answer in the encoding its request came in (see
//! [`crate::raft::wire`]); answers carry `Result`s so refusals travel back intact.

use std::future::Future;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};
use openraft::error::{Fatal, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, VoteRequest,
};
use openraft::{AnyError, StorageIOError};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use super::error::{NodeError, Redirect};
use super::identity::Identity;
use super::members::MemberChange;
use super::peer_paths;
use super::{http_server, Node, StartError};
use crate::raft::network::{paths as raft_paths, SnapshotChunk};
use crate::raft::wire::Encoding;
use crate::raft::{NodeId, Reply, Request as Proposal, TypeConfig};

/// The largest body a member accepts from a peer (a snapshot chunk or a batch of entries).
const MAX_PEER_BODY: usize = 256 << 20;

/// Binds the peer listeners and serves them until the node stops; the set ends once every
/// listener is closed and its connections have finished.
pub async fn start(node: &Node) -> Result<JoinSet<()>, StartError> {
    let mut servers = JoinSet::new();
    for addr in &node.inner.config.listen_peer {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Listen {
                addr: *addr,
                source,
            })?;
        let serving = node.clone();
        let stopping = node.clone();
        servers.spawn(http_server::serve(
            listener,
            move |request| handle(serving.clone(), request),
            async move { stopping.stopped().await },
        ));
    }
    Ok(servers)
}

async fn handle(node: Node, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = request.uri().path().to_owned();
    let encoding = Encoding::of_content_type(
        request
            .headers()
            .get(CONTENT_TYPE)
            .map(HeaderValue::as_bytes),
    );
    let body = match Limited::new(request.into_body(), MAX_PEER_BODY)
        .collect()
        .await
    {
        Ok(body) => body.to_bytes(),
        Err(error) => {
            return text(
                StatusCode::BAD_REQUEST,
                &format!("cannot read the body: {error}"),
            )
        }
    };
    let raft = &node.inner.raft;
    let body = Body {
        bytes: &body,
        encoding,
    };
    match path.as_str() {
        raft_paths::APPEND => {
            answer(body, |rpc: AppendEntriesRequest<TypeConfig>| {
                append_entries(&node, rpc)
            })
            .await
        }
        raft_paths::VOTE => answer(body, |rpc: VoteRequest<u64>| raft.vote(rpc)).await,
        raft_paths::SNAPSHOT => {
            answer(body, |chunk: SnapshotChunk| {
                raft.install_snapshot(InstallSnapshotRequest::from(chunk))
            })
            .await
        }
        peer_paths::PROPOSE => answer(body, |request: Proposal| propose(&node, request)).await,
        peer_paths::READ_INDEX => answer(body, |(): ()| read_index(&node)).await,
        peer_paths::LEASE_KEEPALIVE => {
            answer(body, |id: i64| node.clone().keepalive_here(id)).await
        }
        peer_paths::LEASE_REMAINING => {
            answer(body, |id: i64| node.clone().remaining_here(id)).await
        }
        peer_paths::MEMBER => {
            answer(body, |change: MemberChange| {
                node.clone().change_members_here(change)
            })
            .await
        }
        peer_paths::CAMPAIGN => answer(body, |(): ()| node.campaign()).await,
        peer_paths::IDENTITY => {
            answer(body, |(): ()| async {
                Identity {
                    member_id: node.id(),
                    cluster_id: node.cluster_id(),
                }
            })
            .await
        }
        other => text(StatusCode::NOT_FOUND, &format!("no peer endpoint {other}")),
    }
}

/// openraft's answer to AppendEntries, sent once the entries it reports holding are on disk
/// here (the leader counts them towards a quorum; see [`crate::raft`]).
async fn append_entries(
    node: &Node,
    rpc: AppendEntriesRequest<TypeConfig>,
) -> Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>> {
    let sent = rpc
        .entries
        .last()
        .map(|entry| entry.log_id)
        .or(rpc.prev_log_id);
    let response = node.inner.raft.append_entries(rpc).await?;
    let holding = match &response {
        AppendEntriesResponse::Success => sent,
        AppendEntriesResponse::PartialSuccess(matching) => *matching,
        AppendEntriesResponse::Conflict | AppendEntriesResponse::HigherVote(_) => None,
    };
    if let Some(holding) = holding {
        node.inner.persisted.reach(holding).await.map_err(|error| {
            let failed = StorageIOError::write_logs(AnyError::new(&error));
            RaftError::Fatal(Fatal::StorageError(failed.into()))
        })?;
    }
    Ok(response)
}

/// A forwarded proposal; a member that lost the lead says so, and the follower looks again.
async fn propose(node: &Node, request: Proposal) -> Result<Reply, NodeError> {
    let deadline = tokio::time::Instant::now() + super::REQUEST_TIMEOUT;
    node.propose_here(&request, deadline)
        .await
        .map_err(redirect_error)
}

async fn read_index(node: &Node) -> Result<u64, NodeError> {
    let deadline = tokio::time::Instant::now() + super::REQUEST_TIMEOUT;
    node.read_index_here(deadline).await.map_err(redirect_error)
}

fn redirect_error(redirect: Redirect) -> NodeError {
    match redirect {
        Redirect::To(_) | Redirect::Unknown => NodeError::NoLeader,
        Redirect::Failed(error) => error,
    }
}

/// A request's body, and the encoding it came in.
#[derive(Clone, Copy)]
struct Body<'a> {
    bytes: &'a [u8],
    encoding: Encoding,
}

async fn answer<Req, Resp, F, Fut>(body: Body<'_>, serve: F) -> Response<Full<Bytes>>
where
    Req: DeserializeOwned,
    Resp: Serialize,
    F: FnOnce(Req) -> Fut,
    Fut: Future<Output = Resp>,
{
    let request = match body.encoding.decode(body.bytes) {
        Ok(request) => request,
        Err(error) => {
            return text(
                StatusCode::BAD_REQUEST,
                &format!("cannot decode the request: {error}"),
            )
        }
    };
    match body.encoding.encode(&serve(request).await) {
        Ok(encoded) => Response::builder()
            .header(CONTENT_TYPE, body.encoding.content_type())
            .body(Full::new(Bytes::from(encoded)))
            .unwrap_or_else(|_| text(StatusCode::INTERNAL_SERVER_ERROR, "cannot build the answer")),
        Err(error) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("cannot encode the answer: {error}"),
        ),
    }
}

fn text(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(message.to_owned())));
    *response.status_mut() = status;
    response
}
