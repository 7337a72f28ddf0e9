//! A prefix's keys kept current in memory: read once, then followed by a watch from the
//! revision after the read. A watch that breaks for good (its revision compacted while it
//! was away, or the stream refused) is replaced by a fresh read, a resync, so the view
//! never misses a change and never needs a reread per event.

use std::collections::BTreeMap;
use std::time::Duration;

use super::client::{prefix_end, KvClient};
use super::types::{AtRevision as _, EventType, KeyValue, RangeRequest, WatchCreateRequest};
use super::watch::Watch;

/// How long to wait before reading again after a failed read.
const RETRY: Duration = Duration::from_millis(500);

/// What changed in the view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ViewChange {
    /// Events of one revision were applied.
    Changed {
        /// The revision.
        revision: i64,
    },
    /// The watch broke and the view was read again at `revision`.
    Resynced {
        /// The revision read at.
        revision: i64,
        /// Why the watch broke.
        reason: String,
    },
}

/// The keys under a prefix, as of [`PrefixView::revision`].
#[derive(Debug)]
pub struct PrefixView {
    client: KvClient,
    prefix: Vec<u8>,
    entries: BTreeMap<Vec<u8>, KeyValue>,
    revision: i64,
    watch: Watch,
}

impl PrefixView {
    /// Reads the keys under `prefix`, retrying until the store answers, and starts
    /// following them.
    pub async fn open(client: KvClient, prefix: impl Into<Vec<u8>>) -> Self {
        let prefix = prefix.into();
        let (entries, revision) = read(&client, &prefix).await;
        let watch = follow(&client, &prefix, revision);
        Self {
            client,
            prefix,
            entries,
            revision,
            watch,
        }
    }

    /// The keys and their values.
    pub fn entries(&self) -> &BTreeMap<Vec<u8>, KeyValue> {
        &self.entries
    }

    /// The store revision the view is current to.
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// Waits for the next change and applies it.
    pub async fn changed(&mut self) -> ViewChange {
        let reason = match self.watch.next().await {
            Some(Ok(batch)) => {
                for event in batch.events {
                    let deleted = event.r#type() == EventType::Delete;
                    let Some(kv) = event.kv else { continue };
                    if deleted {
                        self.entries.remove(&kv.key);
                    } else {
                        self.entries.insert(kv.key.clone(), kv);
                    }
                }
                self.revision = self.revision.max(batch.revision);
                return ViewChange::Changed {
                    revision: self.revision,
                };
            }
            Some(Err(error)) => error.to_string(),
            None => "the watch ended".to_owned(),
        };
        tracing::warn!(
            prefix = %String::from_utf8_lossy(&self.prefix),
            %reason,
            "the watch broke; reading the keys again"
        );
        let (entries, revision) = read(&self.client, &self.prefix).await;
        self.entries = entries;
        self.revision = revision;
        self.watch = follow(&self.client, &self.prefix, revision);
        ViewChange::Resynced { revision, reason }
    }
}

/// Reads the keys under `prefix`, retrying until the store answers.
async fn read(client: &KvClient, prefix: &[u8]) -> (BTreeMap<Vec<u8>, KeyValue>, i64) {
    let request = RangeRequest {
        key: prefix.to_vec(),
        range_end: prefix_end(prefix),
        ..RangeRequest::default()
    };
    loop {
        match client.range(&request).await {
            Ok(answer) => {
                let revision = answer.revision();
                let entries = answer
                    .kvs
                    .into_iter()
                    .map(|kv| (kv.key.clone(), kv))
                    .collect();
                return (entries, revision);
            }
            Err(error) => {
                tracing::warn!(
                    prefix = %String::from_utf8_lossy(prefix),
                    %error,
                    "cannot read the keys; trying again"
                );
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}

fn follow(client: &KvClient, prefix: &[u8], revision: i64) -> Watch {
    client.watch(WatchCreateRequest {
        key: prefix.to_vec(),
        range_end: prefix_end(prefix),
        start_revision: revision + 1,
        ..WatchCreateRequest::default()
    })
}
