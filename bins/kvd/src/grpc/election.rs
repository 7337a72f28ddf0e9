//! The Election service (`v3electionpb.Election`, etcdctl's `elect`): etcd's election,
//! whose candidates are keys under the election's name, each held by its candidate's lease;
//! the oldest is the leader and its value is what it proclaimed.

use std::pin::Pin;

use sinew_etcd_api::etcdserverpb::WatchCreateRequest;
use sinew_etcd_api::mvccpb::event::EventType;
use sinew_etcd_api::mvccpb::KeyValue;
use sinew_etcd_api::v3electionpb::election_server::Election;
use sinew_etcd_api::v3electionpb::{
    CampaignRequest, CampaignResponse, LeaderKey, LeaderRequest, LeaderResponse, ProclaimRequest,
    ProclaimResponse, ResignRequest, ResignResponse,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::concurrency::{created_at, first_created, get, read_by, session_key, OnGiveUp};
use super::Grpc;
use crate::gateway::{Backend, Code, Status as Refusal};
use sinew_etcd_api::txn;

use crate::v3::{prefix_end, AtRevision as _, DeleteRangeRequest, PutRequest, TxnRequest};

type Answer<T> = Result<Response<T>, Status>;

/// How many leader changes may wait for a slow observer.
const OBSERVE_BUFFER: usize = 16;

/// etcd's election errors are plain Go errors, which gRPC sends with code Unknown.
fn election_error(message: &str) -> Status {
    Refusal::new(Code::Unknown, message).into()
}

fn not_leader() -> Status {
    election_error("election: not leader")
}

fn missing_leader_key() -> Status {
    election_error(r#""leader" field must be provided"#)
}

/// The keys of an election's candidates start with its name and a slash.
fn prefix(name: &[u8]) -> Vec<u8> {
    [name, b"/"].concat()
}

impl<B: Backend> Grpc<B> {
    /// Replaces the leader's value if `leader` still leads; answers with the revision.
    async fn proclaim_as(&self, leader: &LeaderKey, value: Vec<u8>) -> Result<i64, Status> {
        let proclaimed = self
            .transact(TxnRequest {
                compare: vec![created_at(&leader.key, leader.rev)],
                success: vec![txn::put(PutRequest {
                    key: leader.key.clone(),
                    value,
                    lease: leader.lease,
                    ..PutRequest::default()
                })],
                failure: Vec::new(),
            })
            .await?;
        if !proclaimed.succeeded {
            return Err(not_leader());
        }
        Ok(proclaimed.revision())
    }

    /// Deletes the leader's key if it still leads; answers with the revision.
    async fn resign_as(&self, leader: &LeaderKey) -> Result<i64, Status> {
        let resigned = self
            .transact(TxnRequest {
                compare: vec![created_at(&leader.key, leader.rev)],
                success: vec![txn::delete(DeleteRangeRequest {
                    key: leader.key.clone(),
                    ..DeleteRangeRequest::default()
                })],
                failure: Vec::new(),
            })
            .await?;
        Ok(resigned.revision())
    }

    /// Follows an election's leaders for an observer: each new leader's key-value, then
    /// each change of its value, until the observer goes (etcd's `observe`).
    async fn observe_leaders(
        self,
        name: Vec<u8>,
        out: mpsc::Sender<Result<LeaderResponse, Status>>,
    ) {
        if let Err(status) = self.follow_leaders(&prefix(&name), &out).await {
            // A gone observer needs no error.
            let _ = out.send(Err(status)).await;
        }
    }

    async fn follow_leaders(
        &self,
        prefix: &[u8],
        out: &mpsc::Sender<Result<LeaderResponse, Status>>,
    ) -> Result<(), Status> {
        loop {
            let found = self.get(first_created(prefix)).await?;
            let seen_at = found.revision();
            let (mut revision, leader) = match found.kvs.into_iter().next() {
                Some(kv) => (seen_at, kv),
                None => match self.first_put(prefix, seen_at).await? {
                    Some(elected) => elected,
                    None => return Ok(()),
                },
            };
            let key = leader.key.clone();
            let answer = LeaderResponse {
                header: self.header(revision),
                kv: Some(leader),
            };
            if out.send(Ok(answer)).await.is_err() {
                return Ok(());
            }
            let mut changes = self.watch(WatchCreateRequest {
                key,
                start_revision: revision + 1,
                ..WatchCreateRequest::default()
            });
            'leader: loop {
                let answer = tokio::select! {
                    answer = changes.recv() => answer,
                    () = out.closed() => return Ok(()),
                };
                let Some(answer) = answer else {
                    return Ok(());
                };
                let answer = answer?;
                for event in answer.events {
                    if event.r#type() == EventType::Delete {
                        break 'leader;
                    }
                    revision = answer.header.as_ref().map_or(revision, |h| h.revision);
                    let change = LeaderResponse {
                        header: self.header(revision),
                        kv: event.kv,
                    };
                    if out.send(Ok(change)).await.is_err() {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Waits for the first candidate of an empty election, from `revision` on; `None` if
    /// the watch ended first.
    async fn first_put(
        &self,
        prefix: &[u8],
        revision: i64,
    ) -> Result<Option<(i64, KeyValue)>, Status> {
        let mut puts = self.watch(WatchCreateRequest {
            key: prefix.to_vec(),
            range_end: prefix_end(prefix),
            start_revision: revision,
            ..WatchCreateRequest::default()
        });
        while let Some(answer) = puts.recv().await {
            let answer = answer?;
            let put = answer
                .events
                .into_iter()
                .find(|event| event.r#type() == EventType::Put)
                .and_then(|event| event.kv);
            if let Some(kv) = put {
                return Ok(Some((kv.mod_revision, kv)));
            }
        }
        Ok(None)
    }
}

#[tonic::async_trait]
impl<B: Backend> Election for Grpc<B> {
    /// Enters the election and answers once the caller leads. A caller that gives up while
    /// waiting resigns, as etcd's does.
    async fn campaign(&self, request: Request<CampaignRequest>) -> Answer<CampaignResponse> {
        let request = request.into_inner();
        let lease = self.session_lease(request.lease).await?;
        let prefix = prefix(&request.name);
        let key = session_key(&prefix, lease);
        let entered = self
            .transact(TxnRequest {
                compare: vec![created_at(&key, 0)],
                success: vec![txn::put(PutRequest {
                    key: key.clone(),
                    value: request.value.clone(),
                    lease,
                    ..PutRequest::default()
                })],
                failure: vec![txn::range(get(&key))],
            })
            .await?;
        let mut leader = LeaderKey {
            name: request.name,
            key,
            rev: entered.revision(),
            lease,
        };
        if !entered.succeeded {
            // The session is already a candidate: it keeps its place, with the new value.
            let current = read_by(&entered, 0).first().cloned().unwrap_or_default();
            leader.rev = current.create_revision;
            if current.value != request.value {
                if let Err(status) = self.proclaim_as(&leader, request.value).await {
                    // Resigning is best effort; the proclamation's error is the answer.
                    let _ = self.resign_as(&leader).await;
                    return Err(status);
                }
            }
        }
        let give_up = OnGiveUp::new({
            let (grpc, leader) = (self.clone(), leader.clone());
            async move {
                if let Err(error) = grpc.resign_as(&leader).await {
                    tracing::warn!(%error, "cannot withdraw an abandoned candidate");
                }
            }
        });
        self.wait_deletes(&prefix, leader.rev - 1).await?;
        give_up.disarm();
        Ok(Response::new(CampaignResponse {
            header: self.header(entered.revision()),
            leader: Some(leader),
        }))
    }

    async fn proclaim(&self, request: Request<ProclaimRequest>) -> Answer<ProclaimResponse> {
        let request = request.into_inner();
        let leader = request.leader.ok_or_else(missing_leader_key)?;
        let revision = self.proclaim_as(&leader, request.value).await?;
        Ok(Response::new(ProclaimResponse {
            header: self.header(revision),
        }))
    }

    async fn leader(&self, request: Request<LeaderRequest>) -> Answer<LeaderResponse> {
        let found = self
            .get(first_created(&prefix(&request.get_ref().name)))
            .await?;
        let revision = found.revision();
        let kv = found
            .kvs
            .into_iter()
            .next()
            .ok_or_else(|| election_error("election: no leader"))?;
        Ok(Response::new(LeaderResponse {
            header: self.header(revision),
            kv: Some(kv),
        }))
    }

    type ObserveStream =
        Pin<Box<dyn Stream<Item = Result<LeaderResponse, Status>> + Send + 'static>>;

    async fn observe(&self, request: Request<LeaderRequest>) -> Answer<Self::ObserveStream> {
        let (out, answers) = mpsc::channel(OBSERVE_BUFFER);
        tokio::spawn(self.clone().observe_leaders(request.into_inner().name, out));
        Ok(Response::new(Box::pin(ReceiverStream::new(answers))))
    }

    async fn resign(&self, request: Request<ResignRequest>) -> Answer<ResignResponse> {
        let leader = request.into_inner().leader.ok_or_else(missing_leader_key)?;
        let revision = self.resign_as(&leader).await?;
        Ok(Response::new(ResignResponse {
            header: self.header(revision),
        }))
    }
}
