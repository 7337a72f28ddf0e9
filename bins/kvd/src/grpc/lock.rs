//! The Lock service (`v3lockpb.Lock`, etcdctl's `lock`): etcd's mutex, whose waiters are
//! keys under the lock's name, each held by its owner's lease; the oldest holds the lock.

use sinew_etcd_api::v3lockpb::lock_server::Lock;
use sinew_etcd_api::v3lockpb::{LockRequest, LockResponse, UnlockRequest, UnlockResponse};
use tonic::{Request, Response, Status};

use super::concurrency::{created_at, first_created, get, read_by, session_key, OnGiveUp};
use super::Grpc;
use crate::gateway::Backend;
use sinew_etcd_api::txn;

use crate::v3::{AtRevision as _, PutRequest, TxnRequest};

type Answer<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl<B: Backend> Lock for Grpc<B> {
    /// Queues the caller's key and answers once every older key is gone. A caller that
    /// gives up while waiting has its key deleted, as etcd does.
    async fn lock(&self, request: Request<LockRequest>) -> Answer<LockResponse> {
        let request = request.into_inner();
        let lease = self.session_lease(request.lease).await?;
        let prefix = [request.name.as_slice(), b"/"].concat();
        let key = session_key(&prefix, lease);
        let queued = self
            .transact(TxnRequest {
                compare: vec![created_at(&key, 0)],
                success: vec![
                    txn::put(PutRequest {
                        key: key.clone(),
                        lease,
                        ..PutRequest::default()
                    }),
                    txn::range(first_created(&prefix)),
                ],
                failure: vec![txn::range(get(&key)), txn::range(first_created(&prefix))],
            })
            .await?;
        // A session that already queued (or holds) this lock keeps its place.
        let mine = if queued.succeeded {
            queued.revision()
        } else {
            read_by(&queued, 0)
                .first()
                .map_or(0, |kv| kv.create_revision)
        };
        let owner = read_by(&queued, 1).first().map(|kv| kv.create_revision);
        if owner.is_none_or(|owner| owner == mine) {
            return Ok(Response::new(LockResponse {
                header: self.header(queued.revision()),
                key,
            }));
        }
        let give_up = OnGiveUp::new({
            let (grpc, key) = (self.clone(), key.clone());
            async move {
                if let Err(error) = grpc.delete(&key).await {
                    tracing::warn!(%error, "cannot remove an abandoned lock waiter");
                }
            }
        });
        let revision = self.wait_deletes(&prefix, mine - 1).await?;
        give_up.disarm();
        Ok(Response::new(LockResponse {
            header: self.header(revision),
            key,
        }))
    }

    async fn unlock(&self, request: Request<UnlockRequest>) -> Answer<UnlockResponse> {
        let revision = self.delete(&request.get_ref().key).await?;
        Ok(Response::new(UnlockResponse {
            header: self.header(revision),
        }))
    }
}
