//! The queue under locks and elections: each contender writes `<prefix><lease>` under its
//! own lease; the one whose key has the lowest creation revision is at the head, and each of
//! the others waits for the key just ahead of it to be deleted (so a release wakes one
//! waiter, not all).

use super::{
    prefix_end, txn, AtRevision as _, Compare, CompareResult, EventType, KeepAlive, KvClient,
    KvClientError, PutRequest, RangeRequest, SortOrder, SortTarget, TargetUnion, Watch,
    WatchCreateRequest,
};

/// Why a place in the queue was not kept.
#[derive(Debug)]
pub(super) enum QueueError {
    /// The cluster could not be asked.
    Kv(KvClientError),
    /// The lease ran out while waiting.
    LeaseLost,
}

impl From<KvClientError> for QueueError {
    fn from(error: KvClientError) -> Self {
        Self::Kv(error)
    }
}

/// A contender at the head of its queue.
#[derive(Debug)]
pub(super) struct Head {
    pub(super) key: Vec<u8>,
    pub(super) revision: i64,
    pub(super) keepalive: KeepAlive,
}

impl Head {
    /// Holds while this contender's key still exists with its creation revision.
    pub(super) fn is_held_compare(&self) -> Compare {
        txn::compare(
            self.key.clone(),
            CompareResult::Equal,
            TargetUnion::CreateRevision(self.revision),
        )
    }
}

/// The queue's key prefix for `name`.
pub(super) fn prefix(name: &str) -> Vec<u8> {
    format!("{}/", name.trim_end_matches('/')).into_bytes()
}

/// Joins the queue of `name` with `value`, under a lease of `ttl` seconds, and waits until
/// at its head.
pub(super) async fn join(
    client: &KvClient,
    name: &str,
    value: Vec<u8>,
    ttl: i64,
) -> Result<Head, QueueError> {
    let lease = client.lease_grant(ttl).await?;
    let keepalive = client.keep_alive(lease.id, lease.ttl);
    let prefix = prefix(name);
    let key = [prefix.clone(), format!("{:x}", lease.id).into_bytes()].concat();
    let created = client
        .put_request(&PutRequest {
            key: key.clone(),
            value,
            lease: lease.id,
            ..PutRequest::default()
        })
        .await?;
    let revision = created.revision();
    while let Some((ahead, seen_at)) = last_ahead_of(client, &prefix, revision).await? {
        let mut gone = client.watch(WatchCreateRequest {
            key: ahead,
            start_revision: seen_at + 1,
            ..WatchCreateRequest::default()
        });
        tokio::select! {
            () = keepalive.lost() => return Err(QueueError::LeaseLost),
            deleted = wait_for_delete(&mut gone) => deleted?,
        }
    }
    Ok(Head {
        key,
        revision,
        keepalive,
    })
}

/// The key with the largest creation revision below `revision` under `prefix`, if any, and
/// the revision it was seen at.
async fn last_ahead_of(
    client: &KvClient,
    prefix: &[u8],
    revision: i64,
) -> Result<Option<(Vec<u8>, i64)>, KvClientError> {
    let ahead = client
        .range(&RangeRequest {
            key: prefix.to_vec(),
            range_end: prefix_end(prefix),
            limit: 1,
            sort_order: SortOrder::Descend.into(),
            sort_target: SortTarget::Create.into(),
            keys_only: true,
            max_create_revision: revision - 1,
            ..RangeRequest::default()
        })
        .await?;
    Ok(ahead
        .kvs
        .first()
        .map(|kv| (kv.key.clone(), ahead.revision())))
}

async fn wait_for_delete(watch: &mut Watch) -> Result<(), KvClientError> {
    while let Some(batch) = watch.next().await {
        if batch?
            .events
            .iter()
            .any(|event| event.r#type() == EventType::Delete)
        {
            return Ok(());
        }
    }
    Ok(())
}

/// The head of the queue of `name`: the key with the lowest creation revision.
pub(super) async fn head(
    client: &KvClient,
    name: &str,
) -> Result<Option<super::KeyValue>, KvClientError> {
    let prefix = prefix(name);
    let first = client
        .range(&RangeRequest {
            range_end: prefix_end(&prefix),
            key: prefix,
            limit: 1,
            sort_order: SortOrder::Ascend.into(),
            sort_target: SortTarget::Create.into(),
            ..RangeRequest::default()
        })
        .await?;
    Ok(first.kvs.into_iter().next())
}
