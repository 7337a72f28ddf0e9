//! The Maintenance service: status, alarms, defragmentation, hashes, snapshots and
//! leadership transfer.

use std::pin::Pin;

use sinew_etcd_api::etcdserverpb::maintenance_server::Maintenance;
use sinew_etcd_api::etcdserverpb::{
    alarm_request::AlarmAction, AlarmMember, AlarmRequest, AlarmResponse, DefragmentRequest,
    DefragmentResponse, DowngradeRequest, DowngradeResponse, HashKvRequest, HashKvResponse,
    HashRequest, HashResponse, MoveLeaderRequest, MoveLeaderResponse, SnapshotRequest,
    SnapshotResponse, StatusRequest, StatusResponse,
};
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::snapshot_chunks::EtcdChunks;
use super::Grpc;
use crate::alarm::{self, Alarm, AlarmKind};
use crate::gateway::{Backend, Status as Refusal};
use crate::v3::AtRevision as _;

type Answer<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl<B: Backend> Maintenance for Grpc<B> {
    async fn alarm(&self, request: Request<AlarmRequest>) -> Answer<AlarmResponse> {
        let alarms = alarm(&*self.gateway.backend, request.into_inner()).await?;
        // etcd 3.4 answers alarm requests without a header.
        Ok(Response::new(AlarmResponse {
            header: None,
            alarms,
        }))
    }

    async fn status(&self, _request: Request<StatusRequest>) -> Answer<StatusResponse> {
        let mut status = self.gateway.backend.status().await.map_err(Refusal::from)?;
        status.header = self.header(status.revision());
        Ok(Response::new(status))
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
        let messages = EtcdChunks::new(snapshot.data).map(move |(remaining_bytes, blob)| {
            Ok(SnapshotResponse {
                header,
                remaining_bytes,
                blob,
                ..SnapshotResponse::default()
            })
        });
        Ok(Response::new(Box::pin(tokio_stream::iter(messages))))
    }

    async fn move_leader(&self, request: Request<MoveLeaderRequest>) -> Answer<MoveLeaderResponse> {
        let revision = self
            .gateway
            .backend
            .move_leader(request.into_inner().target_id)
            .await
            .map_err(Refusal::from)?;
        Ok(Response::new(MoveLeaderResponse {
            header: self.header(revision),
        }))
    }

    /// etcd 3.4, whose API kvd serves, has no downgrades either.
    async fn downgrade(&self, _request: Request<DowngradeRequest>) -> Answer<DowngradeResponse> {
        Err(Status::unimplemented(
            "unknown method Downgrade for service etcdserverpb.Maintenance",
        ))
    }
}

/// Answers an alarm request through the log, as etcd: a listing filtered by type (`NONE`:
/// every alarm), an activation with the alarm (of type `NONE` too, as etcd keeps one), a
/// deactivation with what it cleared. The JSON gateway's `maintenance/alarm` answers through
/// it too.
pub(super) async fn alarm<B: Backend>(
    backend: &B,
    request: AlarmRequest,
) -> Result<Vec<AlarmMember>, Refusal> {
    let kind = AlarmKind::from(request.alarm());
    let named = Alarm {
        member: request.member_id,
        kind,
    };
    let change = match request.action() {
        AlarmAction::Get => alarm::AlarmRequest::Get,
        AlarmAction::Activate => alarm::AlarmRequest::Activate(named),
        AlarmAction::Deactivate => alarm::AlarmRequest::Deactivate(named),
    };
    let alarms = backend.alarm(change).await?;
    Ok(alarms
        .into_iter()
        .filter(|alarm| kind == AlarmKind::None || alarm.kind == kind)
        .map(AlarmMember::from)
        .collect())
}
