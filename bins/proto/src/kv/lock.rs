//! A fair lock on the queue in [`super::queue`].

use super::{txn, Compare, DeleteRangeRequest, KeepAlive, KvClient, KvClientError, TxnRequest};
use thiserror::Error;

use super::queue::{self, Head, QueueError};

/// Why a lock could not be taken or released.
#[derive(Debug, Error)]
pub enum LockError {
    /// The cluster could not be asked.
    #[error("lock {name:?}: {source}")]
    Kv {
        /// The lock.
        name: String,
        /// Why.
        source: KvClientError,
    },
    /// The lease ran out while waiting, so the place in the queue was lost.
    #[error("lock {0:?}: the lease expired while waiting for the lock")]
    LeaseLost(String),
}

impl LockError {
    pub(super) fn from_queue(name: &str, error: QueueError) -> Self {
        match error {
            QueueError::Kv(source) => Self::Kv {
                name: name.to_owned(),
                source,
            },
            QueueError::LeaseLost => Self::LeaseLost(name.to_owned()),
        }
    }
}

/// A held lock. [`Lock::unlock`] releases it; dropping it stops the keep-alive, so the lock
/// is released when the lease expires.
#[derive(Debug)]
pub struct Lock {
    name: String,
    head: Head,
    client: KvClient,
}

impl Lock {
    /// Waits until this client holds lock `name`, with a lease of `ttl` seconds kept alive
    /// meanwhile.
    pub async fn acquire(client: &KvClient, name: &str, ttl: i64) -> Result<Self, LockError> {
        let head = queue::join(client, name, Vec::new(), ttl)
            .await
            .map_err(|error| LockError::from_queue(name, error))?;
        Ok(Self {
            name: name.to_owned(),
            head,
            client: client.clone(),
        })
    }

    /// The lock's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The fencing token: the revision that created this holder's key. Every later holder
    /// of the same lock has a larger one.
    pub fn revision(&self) -> i64 {
        self.head.revision
    }

    /// The lease that keeps the lock.
    pub fn keepalive(&self) -> &KeepAlive {
        &self.head.keepalive
    }

    /// A transaction comparison that holds only while this client still holds the lock:
    /// put it in every transaction that writes what the lock protects.
    pub fn is_held_compare(&self) -> Compare {
        self.head.is_held_compare()
    }

    /// Releases the lock now.
    pub async fn unlock(self) -> Result<(), LockError> {
        release(&self.client, &self.head)
            .await
            .map_err(|source| LockError::Kv {
                name: self.name.clone(),
                source,
            })
    }
}

/// Deletes a head's key if it still holds, and revokes its lease.
pub(super) async fn release(client: &KvClient, head: &Head) -> Result<(), KvClientError> {
    client
        .txn(&TxnRequest {
            compare: vec![head.is_held_compare()],
            success: vec![txn::delete(DeleteRangeRequest {
                key: head.key.clone(),
                ..DeleteRangeRequest::default()
            })],
            failure: Vec::new(),
        })
        .await?;
    client
        .lease_revoke(head.keepalive.lease())
        .await
        .map(|_| ())
}
