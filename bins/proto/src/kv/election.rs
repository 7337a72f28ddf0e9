//! Leader election on the queue in [`super::queue`], as etcd's `concurrency.Election`: the
//! campaigner at the head leads, and its key's value is the leader's proclamation.

use super::{txn, Compare, KeepAlive, KeyValue, KvClient, KvClientError, PutRequest, TxnRequest};

use super::lock::{release, LockError};
use super::queue::{self, Head};

/// An election, named by its key prefix.
#[derive(Debug, Clone)]
pub struct Election {
    client: KvClient,
    name: String,
}

/// This client's leadership, won by [`Election::campaign`].
#[derive(Debug)]
pub struct Leadership {
    head: Head,
    client: KvClient,
    name: String,
}

impl Election {
    /// The election `name` on `client`'s cluster.
    pub fn new(client: &KvClient, name: &str) -> Self {
        Self {
            client: client.clone(),
            name: name.to_owned(),
        }
    }

    /// Waits until this client leads, proclaiming `value`, with a lease of `ttl` seconds.
    pub async fn campaign(
        &self,
        value: impl Into<Vec<u8>>,
        ttl: i64,
    ) -> Result<Leadership, LockError> {
        let head = queue::join(&self.client, &self.name, value.into(), ttl)
            .await
            .map_err(|error| LockError::from_queue(&self.name, error))?;
        Ok(Leadership {
            head,
            client: self.client.clone(),
            name: self.name.clone(),
        })
    }

    /// The current leader's key and proclamation, if anyone leads.
    pub async fn leader(&self) -> Result<Option<KeyValue>, KvClientError> {
        queue::head(&self.client, &self.name).await
    }
}

impl Leadership {
    /// The election's revision for this term of leadership (a fencing token).
    pub fn revision(&self) -> i64 {
        self.head.revision
    }

    /// The lease that keeps the leadership.
    pub fn keepalive(&self) -> &KeepAlive {
        &self.head.keepalive
    }

    /// Holds only while this client still leads.
    pub fn is_held_compare(&self) -> Compare {
        self.head.is_held_compare()
    }

    /// Changes the proclamation, if this client still leads; returns whether it did.
    pub async fn proclaim(&self, value: impl Into<Vec<u8>>) -> Result<bool, LockError> {
        let answer = self
            .client
            .txn(&TxnRequest {
                compare: vec![self.is_held_compare()],
                success: vec![txn::put(PutRequest {
                    key: self.head.key.clone(),
                    value: value.into(),
                    ignore_lease: true,
                    ..PutRequest::default()
                })],
                failure: Vec::new(),
            })
            .await
            .map_err(|source| LockError::Kv {
                name: self.name.clone(),
                source,
            })?;
        Ok(answer.succeeded)
    }

    /// Steps down now, so the next campaigner leads.
    pub async fn resign(self) -> Result<(), LockError> {
        release(&self.client, &self.head)
            .await
            .map_err(|source| LockError::Kv {
                name: self.name.clone(),
                source,
            })
    }
}
