//! What etcd's lock and election servers do through their own client (its `concurrency`
//! package): transactions and reads through the same checks as a client's, and waiting for
//! keys to go, through the watch server.

use futures::{stream, StreamExt};
use sinew_etcd_api::etcdserverpb::watch_request::RequestUnion;
use sinew_etcd_api::etcdserverpb::{WatchCreateRequest, WatchRequest};
use sinew_etcd_api::mvccpb::event::EventType;
use tokio::sync::mpsc;

use super::{watch, Grpc};
use crate::gateway::{Backend, Code, Status};
use sinew_etcd_api::txn;

use crate::v3::{
    prefix_end, response_op, AtRevision as _, Command, Compare, CompareResult, DeleteRangeRequest,
    KeyValue, KvError, LeaseGrantRequest, RangeRequest, RangeResponse, Response, SortOrder,
    SortTarget, TargetUnion, TxnRequest, TxnResponse,
};

/// How many watch answers a server-side watcher may hold unread.
const WATCH_BUFFER: usize = 16;

/// The TTL of the lease etcd's servers grant for a lock or campaign that names none (the
/// `concurrency` package's default session TTL), in seconds.
const SESSION_TTL: i64 = 60;

/// The key a session with `lease` holds under `prefix` (etcd: the prefix, then the lease id
/// in lower-case hex).
pub(super) fn session_key(prefix: &[u8], lease: i64) -> Vec<u8> {
    [prefix, format!("{lease:x}").as_bytes()].concat()
}

/// The oldest key under `prefix` (etcd's `WithFirstCreate`).
pub(super) fn first_created(prefix: &[u8]) -> RangeRequest {
    RangeRequest {
        key: prefix.to_vec(),
        range_end: prefix_end(prefix),
        sort_target: SortTarget::Create.into(),
        sort_order: SortOrder::Ascend.into(),
        limit: 1,
        ..RangeRequest::default()
    }
}

/// A read of one key.
pub(super) fn get(key: &[u8]) -> RangeRequest {
    RangeRequest {
        key: key.to_vec(),
        ..RangeRequest::default()
    }
}

/// A condition that `key` was created at `revision` (0: does not exist).
pub(super) fn created_at(key: &[u8], revision: i64) -> Compare {
    txn::compare(
        key,
        CompareResult::Equal,
        TargetUnion::CreateRevision(revision),
    )
}

/// The pairs a transaction's `index`th operation read.
pub(super) fn read_by(response: &TxnResponse, index: usize) -> &[KeyValue] {
    match response
        .responses
        .get(index)
        .and_then(|op| op.response.as_ref())
    {
        Some(response_op::Response::ResponseRange(range)) => &range.kvs,
        _ => &[],
    }
}

/// etcd's answer when a watch a server waits on ends before the key goes.
fn lost_watcher() -> Status {
    Status::new(Code::Unknown, "lost watcher waiting for delete")
}

impl<B: Backend> Grpc<B> {
    /// Runs a transaction through etcd's checks (the KV service's Txn, and the lock and
    /// election servers').
    pub(super) async fn transact(&self, request: TxnRequest) -> Result<TxnResponse, Status> {
        match self.gateway.propose(Command::Txn(request)).await? {
            Response::Txn(txn) => Ok(txn),
            _ => Err(Status::unexpected("transaction")),
        }
    }

    /// The lease a lock or campaign holds its key with: the caller's, or, when it names
    /// none, a new one that nobody keeps alive, as etcd's servers grant.
    pub(super) async fn session_lease(&self, lease: i64) -> Result<i64, Status> {
        if lease != 0 {
            return Ok(lease);
        }
        let grant = Command::LeaseGrant(LeaseGrantRequest {
            id: 0,
            ttl: SESSION_TTL,
        });
        match self.gateway.propose(grant).await? {
            Response::LeaseGrant(granted) => Ok(granted.id),
            _ => Err(Status::unexpected("lease grant")),
        }
    }

    /// Reads linearizably, as a client's default read.
    pub(super) async fn get(&self, request: RangeRequest) -> Result<RangeResponse, Status> {
        self.gateway.read(request, false).await
    }

    /// Deletes `key`; answers with the store revision after it.
    pub(super) async fn delete(&self, key: &[u8]) -> Result<i64, Status> {
        let command = Command::DeleteRange(DeleteRangeRequest {
            key: key.to_vec(),
            ..DeleteRangeRequest::default()
        });
        match self.gateway.propose(command).await? {
            Response::DeleteRange(delete) => Ok(delete.revision()),
            _ => Err(Status::unexpected("delete")),
        }
    }

    /// A watch through the watch server, answering until dropped.
    pub(super) fn watch(&self, create: WatchCreateRequest) -> mpsc::Receiver<watch::Answer> {
        let (out, answers) = mpsc::channel(WATCH_BUFFER);
        let request = WatchRequest {
            request_union: Some(RequestUnion::CreateRequest(create)),
        };
        let requests = stream::once(async { Ok(request) }).chain(stream::pending());
        tokio::spawn(watch::run(self.clone(), Box::pin(requests), out));
        answers
    }

    /// Waits until every key under `prefix` created at or before `max_create_revision` is
    /// gone (etcd's `waitDeletes`); answers with the revision of the read that found none.
    pub(super) async fn wait_deletes(
        &self,
        prefix: &[u8],
        max_create_revision: i64,
    ) -> Result<i64, Status> {
        loop {
            let last = RangeRequest {
                sort_order: SortOrder::Descend.into(),
                max_create_revision,
                ..first_created(prefix)
            };
            let found = self.get(last).await?;
            let Some(kv) = found.kvs.first() else {
                return Ok(found.revision());
            };
            self.wait_delete(&kv.key, found.revision()).await?;
        }
    }

    /// Waits until `key`, seen at `revision`, is deleted.
    async fn wait_delete(&self, key: &[u8], revision: i64) -> Result<(), Status> {
        let mut answers = self.watch(WatchCreateRequest {
            key: key.to_vec(),
            start_revision: revision,
            ..WatchCreateRequest::default()
        });
        while let Some(answer) = answers.recv().await {
            let answer = answer?;
            if answer.compact_revision != 0 {
                return Err(KvError::Compacted.into());
            }
            if answer.canceled {
                return Err(lost_watcher());
            }
            if answer
                .events
                .iter()
                .any(|event| event.r#type() == EventType::Delete)
            {
                return Ok(());
            }
        }
        Err(lost_watcher())
    }
}

/// Runs `cleanup` in the background unless disarmed: what etcd does when a client gives up
/// while the server waits for it (a lock's key deleted, a campaign resigned).
pub(super) struct OnGiveUp<F: std::future::Future<Output = ()> + Send + 'static> {
    cleanup: Option<F>,
}

impl<F: std::future::Future<Output = ()> + Send + 'static> OnGiveUp<F> {
    pub(super) fn new(cleanup: F) -> Self {
        Self {
            cleanup: Some(cleanup),
        }
    }

    /// The wait ended; nothing to clean up.
    pub(super) fn disarm(mut self) {
        self.cleanup = None;
    }
}

impl<F: std::future::Future<Output = ()> + Send + 'static> Drop for OnGiveUp<F> {
    fn drop(&mut self) {
        if let Some(cleanup) = self.cleanup.take() {
            tokio::spawn(cleanup);
        }
    }
}
