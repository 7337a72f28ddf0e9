//! The Raft state machine: the v3 MVCC [`Store`] and the [`v2::Store`] that committed entries
//! are applied to, the [`Alarms`] raised, the log id and membership applied last, and the
//! node's snapshots,
//! implementing openraft's storage-v2 [`RaftStateMachine`].
//!
//! The store lives in memory. Durability comes from the Raft log, which holds every
//! acknowledged entry on disk (an entry is applied only once the log holds it there), and from
//! the snapshot file: on restart the state machine starts
//! from the last snapshot ([`StateMachine::open`]) and openraft re-applies the committed
//! entries after it. Snapshots are taken as openraft's policy asks; the log before them is
//! then purged.
//!
//! [`StateMachine`] is a cheap handle: the node keeps a clone to serve reads and watches
//! while openraft owns the one it applies through.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{AnyError, EntryPayload, RaftSnapshotBuilder, StorageError, StorageIOError};
use tokio::sync::broadcast;

use super::snapshot_data;
use super::snapshot_file::{SnapshotFile, SnapshotFileError};
use super::{
    Entry, LogId, NodeId, Persisted, Reply, Request, SnapshotMeta, StoredMembership, TypeConfig,
};
use crate::alarm::{Alarm, Alarms};
use crate::v2;
use crate::v3::{Event, Store, WatchBatch};

/// How many applied batches a slow watcher may fall behind before it must catch up from the
/// store's history instead.
const BATCH_BACKLOG: usize = 4096;

/// What the state machine holds besides snapshots.
#[derive(Debug, Clone, Default)]
struct Applied {
    store: Store,
    v2: v2::Store,
    alarms: Alarms,
    last_applied: Option<LogId>,
    membership: StoredMembership,
}

impl Applied {
    /// Applies one request, collecting the events it caused.
    fn apply(
        &mut self,
        request: Request,
        changes: &mut Vec<Event>,
        v2_changes: &mut Vec<v2::Event>,
    ) -> Reply {
        match request {
            Request::V3(command) => {
                let result = match self.alarms.refusal(&command) {
                    Some(refusal) => Err(refusal),
                    None => self.store.apply_with_events(&command),
                };
                if let Ok(done) = &result {
                    changes.extend(done.events.iter().cloned());
                }
                Reply::V3(result)
            }
            Request::V2(command) => {
                let result = self.v2.apply(&command);
                if let Ok(events) = &result {
                    v2_changes.extend(events.iter().cloned());
                }
                Reply::V2(result)
            }
            Request::Alarm(request) => Reply::Alarm(self.alarms.apply(request)),
            Request::Batch(requests) => Reply::Batch(
                requests
                    .into_iter()
                    .map(|request| self.apply(request, changes, v2_changes))
                    .collect(),
            ),
        }
    }

    /// Both stores and the alarms as a snapshot's data, taking this copy apart.
    fn into_snapshot(self) -> Result<Vec<u8>, std::io::Error> {
        snapshot_data::encode(self.store, &self.v2, &self.alarms)
    }
}

/// The state machine of one node; clones share it.
#[derive(Debug, Clone)]
pub struct StateMachine {
    applied: Arc<RwLock<Applied>>,
    current_snapshot: Arc<Mutex<Option<SnapshotFile>>>,
    batches: broadcast::Sender<WatchBatch>,
    v2_events: broadcast::Sender<v2::Event>,
    data_dir: PathBuf,
    log: Persisted,
}

impl StateMachine {
    /// Starts from the snapshot kept in `data_dir`, or empty if there is none, and applies
    /// entries once `log` holds them on disk.
    pub fn open(data_dir: &Path, log: Persisted) -> Result<Self, SnapshotFileError> {
        let snapshot = SnapshotFile::load(data_dir)?;
        let applied = match &snapshot {
            Some(file) => {
                let state = snapshot_data::restore(&file.data).map_err(|source| {
                    SnapshotFileError::Restore {
                        path: data_dir.join(SnapshotFile::FILE_NAME),
                        source,
                    }
                })?;
                Applied {
                    store: state.store,
                    v2: state.v2,
                    alarms: state.alarms,
                    last_applied: file.meta.last_log_id,
                    membership: file.meta.last_membership.clone(),
                }
            }
            None => Applied::default(),
        };
        Ok(Self {
            applied: Arc::new(RwLock::new(applied)),
            current_snapshot: Arc::new(Mutex::new(snapshot)),
            batches: broadcast::channel(BATCH_BACKLOG).0,
            v2_events: broadcast::channel(BATCH_BACKLOG).0,
            data_dir: data_dir.to_path_buf(),
            log,
        })
    }

    /// Runs `read` on the store as it is now.
    pub fn read<T>(&self, read: impl FnOnce(&Store) -> T) -> T {
        read(
            &self
                .applied
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .store,
        )
    }

    /// Runs `read` on the v2 store as it is now.
    pub fn read_v2<T>(&self, read: impl FnOnce(&v2::Store) -> T) -> T {
        read(
            &self
                .applied
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .v2,
        )
    }

    /// The alarms raised, as this member last applied them.
    pub fn alarms(&self) -> Vec<Alarm> {
        self.applied
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .alarms
            .list()
    }

    /// Every v2 event applied from now on.
    pub fn subscribe_v2(&self) -> broadcast::Receiver<v2::Event> {
        self.v2_events.subscribe()
    }

    /// A copy of both stores as they are now, in the snapshot format, with the v3 revision.
    pub async fn state(&self) -> Result<(i64, Vec<u8>), std::io::Error> {
        let copy = self.copy().await?;
        let revision = copy.store.revision();
        off_runtime(move || Ok((revision, copy.into_snapshot()?))).await
    }

    /// A copy of what is applied now. The lock is held only while copying, so applies wait
    /// for a copy of the stores, not for their encoding; both happen off the runtime, whose
    /// threads must keep heartbeats and answers flowing meanwhile.
    async fn copy(&self) -> Result<Applied, std::io::Error> {
        let applied = Arc::clone(&self.applied);
        off_runtime(move || {
            Ok(applied
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone())
        })
        .await
    }

    /// The id of the last entry applied.
    pub fn last_applied(&self) -> Option<LogId> {
        self.applied
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .last_applied
    }

    /// The membership applied last.
    pub fn membership(&self) -> StoredMembership {
        self.applied
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .membership
            .clone()
    }

    /// Every batch applied from now on. Subscribe before reading history with
    /// [`Store::events_since`] so that nothing falls between the two.
    pub fn subscribe(&self) -> broadcast::Receiver<WatchBatch> {
        self.batches.subscribe()
    }

    fn publish(&self, events: Vec<Event>) {
        let revision_of = |event: &Event| event.kv.as_ref().map_or(0, |kv| kv.mod_revision);
        let mut events = events.into_iter().peekable();
        while let Some(first) = events.next() {
            let revision = revision_of(&first);
            let mut batch = vec![first];
            while let Some(event) = events.next_if(|event| revision_of(event) == revision) {
                batch.push(event);
            }
            // Nobody listening is fine: watchers read history when they start.
            let _ = self.batches.send(WatchBatch {
                revision,
                events: batch,
            });
        }
    }

    async fn save_snapshot(&self, file: SnapshotFile) -> Result<(), StorageError<NodeId>> {
        let data_dir = self.data_dir.clone();
        let saved = tokio::task::spawn_blocking(move || file.save(&data_dir).map(|()| file))
            .await
            .map_err(|panicked| StorageIOError::write_snapshot(None, AnyError::new(&panicked)))?;
        let file =
            saved.map_err(|error| StorageIOError::write_snapshot(None, AnyError::new(&error)))?;
        *self
            .current_snapshot
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(file);
        Ok(())
    }
}

/// Runs `work` on a blocking thread.
async fn off_runtime<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, std::io::Error> + Send + 'static,
) -> Result<T, std::io::Error> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|panicked| Err(std::io::Error::other(panicked)))
}

fn snapshot_id(last_log_id: Option<LogId>) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos());
    match last_log_id {
        Some(id) => format!("{}-{}-{nanos}", id.leader_id.term, id.index),
        None => format!("0-0-{nanos}"),
    }
}

fn to_snapshot(file: SnapshotFile) -> Snapshot<TypeConfig> {
    Snapshot {
        meta: file.meta,
        snapshot: Box::new(Cursor::new(file.data)),
    }
}

/// Takes a snapshot of the state machine as it is when [`RaftSnapshotBuilder::build_snapshot`]
/// runs.
#[derive(Debug)]
pub struct SnapshotBuilder {
    machine: StateMachine,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let failed =
            |error: std::io::Error| StorageIOError::write_snapshot(None, AnyError::new(&error));
        let applied = self.machine.copy().await.map_err(failed)?;
        let meta = SnapshotMeta {
            last_log_id: applied.last_applied,
            last_membership: applied.membership.clone(),
            snapshot_id: snapshot_id(applied.last_applied),
        };
        // One copy of the bytes to keep, one for openraft, made off the runtime too.
        let (kept, data) =
            off_runtime(move || applied.into_snapshot().map(|data| (data.clone(), data)))
                .await
                .map_err(failed)?;
        let file = SnapshotFile {
            meta: meta.clone(),
            data: kept,
        };
        self.machine.save_snapshot(file).await?;
        Ok(to_snapshot(SnapshotFile { meta, data }))
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId>, StoredMembership), StorageError<NodeId>> {
        let applied = self.applied.read().unwrap_or_else(PoisonError::into_inner);
        Ok((applied.last_applied, applied.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Reply>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry> + openraft::OptionalSend,
        I::IntoIter: openraft::OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        if let Some(last) = entries.last() {
            self.log
                .reach(last.log_id)
                .await
                .map_err(|error| StorageIOError::apply(last.log_id, AnyError::new(&error)))?;
        }
        let mut replies = Vec::new();
        let mut changes = Vec::new();
        let mut v2_changes = Vec::new();
        {
            let mut applied = self.applied.write().unwrap_or_else(PoisonError::into_inner);
            for entry in entries {
                applied.last_applied = Some(entry.log_id);
                let reply = match entry.payload {
                    EntryPayload::Blank => Reply::None,
                    EntryPayload::Normal(request) => {
                        applied.apply(request, &mut changes, &mut v2_changes)
                    }
                    EntryPayload::Membership(membership) => {
                        applied.membership = StoredMembership::new(Some(entry.log_id), membership);
                        Reply::None
                    }
                };
                replies.push(reply);
            }
        }
        self.publish(changes);
        for event in v2_changes {
            // Nobody waiting is fine.
            let _ = self.v2_events.send(event);
        }
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            machine: self.clone(),
        }
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        // Decoding a whole state is as long as encoding it: off the runtime too.
        let data = snapshot.into_inner();
        let (state, data) = off_runtime(move || {
            snapshot_data::restore(&data)
                .map(|state| (state, data))
                .map_err(std::io::Error::other)
        })
        .await
        .map_err(|error| {
            StorageIOError::read_snapshot(Some(meta.signature()), AnyError::new(&error))
        })?;
        self.save_snapshot(SnapshotFile {
            meta: meta.clone(),
            data,
        })
        .await?;
        let missed = {
            let mut applied = self.applied.write().unwrap_or_else(PoisonError::into_inner);
            let seen = applied.store.revision();
            // Watchers on this node must still see every change the snapshot skipped over.
            let missed = state
                .store
                .events_since(seen + 1, b"\0", b"\0")
                .unwrap_or_default();
            applied.store = state.store;
            applied.v2 = state.v2;
            applied.alarms = state.alarms;
            applied.last_applied = meta.last_log_id;
            applied.membership = meta.last_membership.clone();
            missed
        };
        self.publish(missed);
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        let current = Arc::clone(&self.current_snapshot);
        off_runtime(move || {
            Ok(current
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone())
        })
        .await
        .map(|file| file.map(to_snapshot))
        .map_err(|error| StorageIOError::read_snapshot(None, AnyError::new(&error)).into())
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use openraft::testing::log_id;

    use super::*;
    use crate::raft::LogStore;
    use crate::v3::{Command, PutRequest};

    /// A snapshot on disk whose store holds `versions` versions of 256-byte values.
    fn large_snapshot(data_dir: &Path, versions: usize) {
        let mut store = Store::new();
        for index in 0..versions {
            let put = PutRequest {
                key: format!("key/{}", index % 100).into_bytes(),
                value: vec![b'v'; 256],
                ..PutRequest::default()
            };
            store.apply(&Command::Put(put)).unwrap();
        }
        let data = snapshot_data::encode(store, &v2::Store::default(), &Alarms::default());
        let file = SnapshotFile {
            meta: SnapshotMeta {
                last_log_id: Some(log_id(1, 1, 1)),
                last_membership: StoredMembership::default(),
                snapshot_id: "1-1".to_owned(),
            },
            data: data.unwrap(),
        };
        file.save(data_dir).unwrap();
    }

    /// Heartbeats and answers run on the runtime's threads; a snapshot of a large history
    /// takes long to encode and write, and must not hold them meanwhile.
    #[tokio::test(flavor = "current_thread")]
    async fn building_a_snapshot_leaves_the_runtime_free() {
        let dir = tempfile::tempdir().unwrap();
        large_snapshot(dir.path(), 200_000);
        let log = LogStore::open(dir.path()).unwrap();
        let mut machine = StateMachine::open(dir.path(), log.persisted()).unwrap();
        let mut builder = machine.get_snapshot_builder().await;

        let started = Instant::now();
        let build = tokio::spawn(async move { builder.build_snapshot().await });
        let mut longest_stall = Duration::ZERO;
        while !build.is_finished() {
            let slept = Instant::now();
            tokio::time::sleep(Duration::from_millis(1)).await;
            longest_stall = longest_stall.max(slept.elapsed());
        }
        let took = started.elapsed();
        let snapshot = build.await.unwrap().unwrap();

        assert_eq!(snapshot.meta.last_log_id, Some(log_id(1, 1, 1)));
        // Holding the runtime would stall it for about all of `took`; half leaves room for
        // the OS to preempt this thread on a busy machine.
        assert!(
            longest_stall * 2 < took,
            "the runtime stalled for {longest_stall:?} of the {took:?} the snapshot took"
        );
        let restored = snapshot_data::restore(&snapshot.snapshot.into_inner()).unwrap();
        assert_eq!(restored.store.revision(), 200_001);
    }

    #[tokio::test]
    async fn a_built_snapshot_installs_on_another_member() {
        let (from, to) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        large_snapshot(from.path(), 1_000);
        let log = LogStore::open(from.path()).unwrap();
        let mut source = StateMachine::open(from.path(), log.persisted()).unwrap();
        let built = source.get_snapshot_builder().await.build_snapshot().await;
        let built = built.unwrap();
        let log = LogStore::open(to.path()).unwrap();
        let mut target = StateMachine::open(to.path(), log.persisted()).unwrap();

        target
            .install_snapshot(&built.meta, built.snapshot)
            .await
            .unwrap();

        assert_eq!(target.last_applied(), Some(log_id(1, 1, 1)));
        assert_eq!(
            target.read(|store| store.clone()),
            source.read(|store| store.clone())
        );
        let garbage = Box::new(Cursor::new(b"not a snapshot".to_vec()));
        assert!(target.install_snapshot(&built.meta, garbage).await.is_err());
    }
}
