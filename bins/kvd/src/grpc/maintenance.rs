//! The Maintenance service: status, alarms, defragmentation, hashes, snapshots and
//! leadership transfer.

use std::pin::Pin;

use sinew_etcd_api::etcdserverpb::maintenance_server::Maintenance;
use sinew_etcd_api::etcdserverpb::{
    alarm_request::AlarmAction, AlarmRequest, AlarmResponse, DefragmentRequest, DefragmentResponse,
    DowngradeRequest, DowngradeResponse, HashKvRequest, HashKvResponse, HashRequest, HashResponse,
    MoveLeaderRequest, MoveLeaderResponse, SnapshotRequest, SnapshotResponse, StatusRequest,
    StatusResponse,
};
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::Grpc;
use crate::gateway::snapshot::etcd_chunks;
use crate::gateway::{Backend, Status as Refusal};

type Answer<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl<B: Backend> Maintenance for Grpc<B> {
    /// kvd raises no alarms (it has no space quota), so the list is always empty.
    async fn alarm(&self, request: Request<AlarmRequest>) -> Answer<AlarmResponse> {
        match request.get_ref().action() {
            AlarmAction::Get => Ok(Response::new(AlarmResponse {
                header: self.header(0),
                alarms: Vec::new(),
            })),
            AlarmAction::Activate | AlarmAction::Deactivate => Err(Status::unimplemented(
                "kvd: alarms cannot be raised or cleared by hand; kvd raises none",
            )),
        }
    }

    async fn status(&self, _request: Request<StatusRequest>) -> Answer<StatusResponse> {
        let status = self.gateway.backend.status().await.map_err(Refusal::from)?;
        Ok(Response::new(StatusResponse {
            header: self.header(status.revision),
            version: status.version,
            db_size: status.db_size,
            leader: status.leader,
            raft_index: status.raft_index,
            raft_term: status.raft_term,
            raft_applied_index: status.raft_applied_index,
            errors: status.errors,
            db_size_in_use: status.db_size_in_use,
            is_learner: status.is_learner,
            ..StatusResponse::default()
        }))
    }

    /// The store lives in memory and its log is compacted by snapshots: there is nothing
    /// to defragment, so the call succeeds at once, as etcd's does on a compact database.
    async fn defragment(&self, _request: Request<DefragmentRequest>) -> Answer<DefragmentResponse> {
        Ok(Response::new(DefragmentResponse {
            header: self.header(0),
        }))
    }

    /// etcd hashes its whole database file; kvd's whole state is its key-value history,
    /// so this is HashKV at the current revision.
    async fn hash(&self, _request: Request<HashRequest>) -> Answer<HashResponse> {
        let hashed = self
            .gateway
            .backend
            .hash_kv(0)
            .await
            .map_err(Refusal::from)?;
        Ok(Response::new(HashResponse {
            header: self.header(hashed.revision),
            hash: hashed.hash,
        }))
    }

    async fn hash_kv(&self, request: Request<HashKvRequest>) -> Answer<HashKvResponse> {
        let hashed = self
            .gateway
            .backend
            .hash_kv(request.get_ref().revision)
            .await
            .map_err(Refusal::from)?;
        Ok(Response::new(HashKvResponse {
            header: self.header(hashed.revision),
            hash: hashed.hash,
            compact_revision: hashed.compact_revision,
            ..HashKvResponse::default()
        }))
    }

    type SnapshotStream =
        Pin<Box<dyn Stream<Item = Result<SnapshotResponse, Status>> + Send + 'static>>;

    async fn snapshot(&self, _request: Request<SnapshotRequest>) -> Answer<Self::SnapshotStream> {
        let snapshot = self
            .gateway
            .backend
            .snapshot()
            .await
            .map_err(Refusal::from)?;
        let header = self.header(snapshot.revision);
        let messages =
            etcd_chunks(snapshot.data)
                .into_iter()
                .map(move |(remaining_bytes, blob)| {
                    Ok(SnapshotResponse {
                        header,
                        remaining_bytes,
                        blob,
                        ..SnapshotResponse::default()
                    })
                });
        Ok(Response::new(Box::pin(tokio_stream::iter(messages))))
    }

    async fn move_leader(
        &self,
        _request: Request<MoveLeaderRequest>,
    ) -> Answer<MoveLeaderResponse> {
        Err(Status::unimplemented("kvd: MoveLeader is not served yet"))
    }

    /// etcd 3.4, whose API kvd serves, has no downgrades either.
    async fn downgrade(&self, _request: Request<DowngradeRequest>) -> Answer<DowngradeResponse> {
        Err(Status::unimplemented(
            "unknown method Downgrade for service etcdserverpb.Maintenance",
        ))
    }
}
