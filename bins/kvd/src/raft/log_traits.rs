//! openraft's storage-v2 log traits on [`LogStore`]: every call maps to one [`LogStore`]
//! operation. A leader's append reports completion once its entries are staged, before they
//! are on disk, so that openraft (0.9 waits for the report before it replicates) sends them
//! to the followers while the disk write is under way; see [`super`] for what waits for the
//! disk instead. Any other append is synced before it reports: a follower's answer waits for
//! the disk anyway.
//!
//! Writes wait for the disk, so they run on tokio's blocking pool rather than stalling the
//! runtime's workers (the Raft core, heartbeats, the API): these methods must be called inside
//! a tokio runtime, as openraft's tokio runtime does. Each call still returns only once its
//! write is done, so the log sees writes in the order openraft made them.

use std::fmt::Debug;
use std::io;
use std::ops::RangeBounds;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{AnyError, LogState, OptionalSend, RaftLogReader, StorageError, StorageIOError};

use super::durable_log::{LogStore, LogStoreError};
use super::{Entry, LogId, NodeId, TypeConfig, Vote};

/// How many bytes of stored entries one AppendEntries carries at most (one entry always goes,
/// however large): a follower receives, decodes and writes this well within a heartbeat.
pub const APPEND_ENTRIES_BYTES: usize = 512 << 10;

/// One of `StorageIOError`'s constructors, which name what was being read or written.
type MakeIoError = fn(AnyError) -> StorageIOError<NodeId>;

/// openraft's storage error for a failed log store call.
fn storage_error(make: MakeIoError, error: &LogStoreError) -> StorageError<NodeId> {
    make(AnyError::new(error)).into()
}

/// Runs `write` on tokio's blocking pool and waits for it; a write that panicked is reported
/// as a storage error too.
async fn off_runtime<T, W>(
    store: &LogStore,
    make: MakeIoError,
    write: W,
) -> Result<T, StorageError<NodeId>>
where
    T: Send + 'static,
    W: FnOnce(&LogStore) -> Result<T, LogStoreError> + Send + 'static,
{
    let store = store.clone();
    match tokio::task::spawn_blocking(move || write(&store)).await {
        Ok(result) => result.map_err(|error| storage_error(make, &error)),
        Err(panicked) => Err(make(AnyError::new(&panicked)).into()),
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError<NodeId>> {
        self.entries(range)
            .map_err(|error| storage_error(StorageIOError::read_logs, &error))
    }

    /// What the leader sends a follower in one AppendEntries: bounded in bytes, because
    /// openraft 0.9 gives the whole call one heartbeat interval, and a call that never fits
    /// would be resent forever while the follower falls behind.
    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<Entry>, StorageError<NodeId>> {
        self.entries_within(start..end, APPEND_ENTRIES_BYTES)
            .map_err(|error| storage_error(StorageIOError::read_logs, &error))
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        self.log_state()
            .map_err(|error| storage_error(StorageIOError::read_logs, &error))
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError<NodeId>> {
        let vote = *vote;
        off_runtime(self, StorageIOError::write_vote, move |store| {
            store.write_vote(&vote)
        })
        .await
    }

    /// openraft reads the vote once, at start: see [`LogStore::vote_at_start`].
    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError<NodeId>> {
        self.vote_at_start()
            .map_err(|error| storage_error(StorageIOError::read_vote, &error))
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId>,
    ) -> Result<(), StorageError<NodeId>> {
        self.write_committed(committed);
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError<NodeId>> {
        self.committed()
            .map_err(|error| storage_error(StorageIOError::read, &error))
    }

    /// On a leader, stages the entries, fires `callback` and syncs them in the background;
    /// elsewhere, writes them durably and fires `callback`. openraft counts a member whose
    /// callback fired as holding the entries, so staging is safe only because nothing acts on
    /// that count before the entries are on disk (see [`super`]); whether this member leads
    /// decides only the speed.
    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let leading = self.leading();
        let staged = off_runtime(self, StorageIOError::write_logs, move |store| {
            if leading {
                store.stage_entries(entries)
            } else {
                store.write_entries(entries)
            }
        })
        .await;
        match staged {
            Ok(_) => {
                if leading {
                    self.sync_soon();
                }
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(error) => {
                callback.log_io_completed(Err(io::Error::other(error.to_string())));
                Err(error)
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError<NodeId>> {
        off_runtime(self, StorageIOError::write_logs, move |store| {
            store.truncate_from(log_id.index)
        })
        .await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError<NodeId>> {
        off_runtime(self, StorageIOError::write_logs, move |store| {
            store.purge_upto(log_id)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use openraft::storage::RaftLogStorageExt;
    use openraft::testing::log_id;
    use openraft::{EntryPayload, RaftLogReader};

    use super::*;

    fn entries(term: u64, indexes: std::ops::RangeInclusive<u64>) -> Vec<Entry> {
        indexes
            .map(|index| Entry {
                log_id: log_id(term, 1, index),
                payload: EntryPayload::Blank,
            })
            .collect()
    }

    #[tokio::test]
    async fn trait_calls_reach_the_disk_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut store = LogStore::open(dir.path()).unwrap();
            store.save_vote(&Vote::new(2, 1)).await.unwrap();
            // Returns only after the callback fired.
            store.blocking_append(entries(1, 1..=4)).await.unwrap();
            store.blocking_append(entries(2, 5..=7)).await.unwrap();
            store.truncate(log_id(2, 1, 7)).await.unwrap();
            store.purge(log_id(1, 1, 2)).await.unwrap();
            store.save_committed(Some(log_id(2, 1, 5))).await.unwrap();
        }

        let mut store = LogStore::open(dir.path()).unwrap();

        assert_eq!(store.read_vote().await.unwrap(), Some(Vote::new(2, 1)));
        assert_eq!(store.read_committed().await.unwrap(), Some(log_id(2, 1, 5)));
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id, Some(log_id(1, 1, 2)));
        assert_eq!(state.last_log_id, Some(log_id(2, 1, 6)));
        let mut reader = store.get_log_reader().await;
        let mut expected = entries(1, 3..=4);
        expected.extend(entries(2, 5..=6));
        assert_eq!(reader.try_get_log_entries(0..100).await.unwrap(), expected);
        assert_eq!(
            reader.try_get_log_entries(4..6).await.unwrap(),
            expected[1..3]
        );
    }

    #[tokio::test]
    async fn a_refused_append_fails_the_call_and_the_callback() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = LogStore::open(dir.path()).unwrap();
        store.blocking_append(entries(1, 1..=2)).await.unwrap();

        let refused = store.blocking_append(entries(1, 4..=4)).await;

        assert!(refused.is_err());
        assert_eq!(
            store.get_log_state().await.unwrap().last_log_id,
            Some(log_id(1, 1, 2))
        );
    }
}
