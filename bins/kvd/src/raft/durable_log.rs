//! The durable Raft log: entries, the vote, the committed log id and the last purged log id
//! in one redb file in the node's data directory, with a journal beside it.
//!
//! Every change is one redb write transaction, so a crash leaves either all of it or none of
//! it. The vote, truncation and purging are committed with [`Durability::Immediate`]: when
//! the call returns, the change is on disk. Entries are written in two steps, so that a
//! leader sends them to its followers while its own disk write is under way (the store knows
//! it leads from the vote it saves, once [`LogStore::set_member`] named the member):
//! [`LogStore::stage_entries`] keeps them in memory (readers see them at once), and
//! [`LogStore::sync`] (or [`LogStore::sync_soon`], in the background) makes everything staged
//! durable by appending it to the journal (`journal.rs`) with one fdatasync, which costs a
//! fraction of a durable redb commit. Every durable commit carries the staged entries to the
//! database and starts the journal's next generation; opening the log stages again what the
//! journal holds beyond the database's last durable commit. [`Persisted`] tells how far the
//! log is on disk and waits for it to get further; a crash loses staged entries, never
//! persisted ones.
//!
//! There are two journal files. When the one being appended to is full, syncs go on in the
//! other (the next generation) at once, while a checkpoint on a thread of its own commits the
//! staged entries to the database durably; only then may the full one be reused. A durable
//! commit takes tens of milliseconds and holds the database's write lock, so committing in
//! the sync that found the journal full stalled every write for that long.
//!
//! The committed log id is only a hint for restart (openraft re-applies up to it): it is kept
//! in memory and written by the next durable transaction, or when the store closes, so
//! recording it costs no transaction of its own (the leader records one per commit). After a
//! crash it may be older than the last one recorded, never newer, and never past the entries
//! on disk: a durable transaction persists every entry staged before it.
//!
//! Entries are stored under their index (in [`wire`]'s entry encoding), so the log must stay
//! contiguous: [`LogStore::write_entries`] refuses an entry that does not directly follow the
//! last one (or the last purged one).
//!
//! redb locks the file: one [`LogStore`] (and its clones) per data directory at a time; a
//! second [`LogStore::open`] fails with [`LogStoreError::Open`].
//!
//! ```
//! use openraft::{CommittedLeaderId, EntryPayload, LogId};
//! use sinew_kvd::raft::{Entry, LogStore};
//!
//! let dir = tempfile::tempdir()?;
//! let log = LogStore::open(dir.path())?;
//! let id = LogId::new(CommittedLeaderId::new(1, 1), 1);
//! // On disk when it returns.
//! log.write_entries([Entry { log_id: id, payload: EntryPayload::Blank }])?;
//! drop(log);
//!
//! let log = LogStore::open(dir.path())?;
//! assert_eq!(log.log_state()?.last_log_id, Some(id));
//! assert_eq!(log.entries(1..)?.len(), 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread::JoinHandle;

use bytes::Bytes;

use openraft::{LogState, RaftLogId};
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, Table, TableDefinition, WriteTransaction,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use thiserror::Error;
use tokio::sync::watch;

use super::journal::Journal;
use super::wire::{self, Encoding, WireError};
use super::{Entry, LogId, NodeId, TypeConfig, Vote};

/// Entries, by index, in [`wire`]'s entry encoding.
const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
/// The vote, the committed log id and the last purged log id, as JSON, under [`VOTE`],
/// [`COMMITTED`] and [`LAST_PURGED`].
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

const VOTE: &str = "vote";
const COMMITTED: &str = "committed";
const LAST_PURGED: &str = "last_purged";
/// The oldest journal generation that may hold entries the database does not.
const JOURNAL_GENERATION: &str = "journal_generation";

/// Each journal's size, and so about how much a checkpoint writes: its writes delay the
/// journal's fdatasyncs while they reach the disk (a 2 MiB checkpoint delayed them by up to
/// 30 ms, a 512 KiB one by up to 10 ms). It holds a couple of the proposer's batches of small
/// requests (see `node::proposer`); a sync larger than a journal commits durably instead.
/// Staged entries stay in memory until a checkpoint, so this also bounds that memory.
const JOURNAL_BYTES: u64 = 512 << 10;

/// Why the log store failed. Any of these but [`LogStoreError::Gap`] and
/// [`LogStoreError::PurgeRegress`] means the disk or the file is in trouble; those two mean
/// the caller broke the log's rules.
#[derive(Debug, Error)]
pub enum LogStoreError {
    /// The data directory could not be created.
    #[error("cannot create the data directory {path}: {source}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The database file could not be opened or created.
    #[error("cannot open the Raft log {path}: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        source: redb::DatabaseError,
    },
    /// The journal could not be opened, read or written.
    #[error("Raft log journal {path}: {source}")]
    Journal {
        /// The journal file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A transaction could not start.
    #[error("Raft log transaction: {0}")]
    Transaction(#[from] redb::TransactionError),
    /// A table could not be opened.
    #[error("Raft log table: {0}")]
    Table(#[from] redb::TableError),
    /// Reading or writing the file failed.
    #[error("Raft log storage: {0}")]
    Storage(#[from] redb::StorageError),
    /// The durability of a transaction could not be set.
    #[error("Raft log durability: {0}")]
    Durability(#[from] redb::SetDurabilityError),
    /// A transaction could not be committed.
    #[error("Raft log commit: {0}")]
    Commit(#[from] redb::CommitError),
    /// A record could not be encoded.
    #[error("cannot encode the Raft log's {what}: {source}")]
    Encode {
        /// Which record.
        what: &'static str,
        /// Why.
        source: WireError,
    },
    /// A stored record could not be decoded: the file is damaged or from another program.
    #[error("cannot decode the Raft log's {what}: {source}")]
    Decode {
        /// Which record.
        what: &'static str,
        /// Why.
        source: WireError,
    },
    /// A stored entry names another index than the one it is stored under.
    #[error("the Raft log holds entry {found} under index {index}")]
    Misplaced {
        /// The index it is stored under.
        index: u64,
        /// The index the entry names.
        found: u64,
    },
    /// An appended entry does not directly follow the log.
    #[error("entry {found} does not follow the Raft log, which expects entry {expected}")]
    Gap {
        /// The index the log expects next.
        expected: u64,
        /// The index offered.
        found: u64,
    },
    /// A purge asked to keep entries that an earlier purge already dropped.
    #[error("cannot purge the Raft log up to {requested}: it is already purged up to {purged}")]
    PurgeRegress {
        /// The last purged index.
        purged: u64,
        /// The index asked for.
        requested: u64,
    },
}

/// Why a wait for the log to reach the disk failed.
#[derive(Debug, Clone, Error)]
pub enum PersistError {
    /// A sync failed; what was staged may be lost, so nothing staged since can be trusted to
    /// reach the disk either.
    #[error("the Raft log could not be synced to disk: {0}")]
    Failed(Arc<str>),
    /// The log was closed first.
    #[error("the Raft log was closed before the entry reached the disk")]
    Closed,
}

/// How far the log is on disk: the id of the last entry a durable commit covered (the last
/// purged one when no entry is left), or why syncing failed.
type Mark = Result<Option<LogId>, Arc<str>>;

/// Tells how far a [`LogStore`] is on disk and waits for it to get further. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Persisted(watch::Receiver<Mark>);

impl Persisted {
    /// Returns once the entry `log_id`, or one after it, is on disk (after a truncation, once
    /// an entry that sorts after `log_id` is).
    pub async fn reach(&self, log_id: LogId) -> Result<(), PersistError> {
        let mut mark = self.0.clone();
        let reached = mark
            .wait_for(|mark| mark.as_ref().map_or(true, |last| *last >= Some(log_id)))
            .await
            .map_err(|_| PersistError::Closed)?;
        match &*reached {
            Ok(_) => Ok(()),
            Err(reason) => Err(PersistError::Failed(reason.clone())),
        }
    }

    /// The id of the last entry on disk now; `None` if there is none or syncing failed.
    pub fn last(&self) -> Option<LogId> {
        self.0.borrow().as_ref().ok().copied().flatten()
    }
}

/// The durable Raft log of one node. Cheap to clone: clones share the open database, and
/// redb serialises their writes.
#[derive(Clone)]
pub struct LogStore {
    shared: Arc<Shared>,
    /// Dropped with the last clone, it waits for a checkpoint under way, which holds the
    /// database open.
    checkpoint: Arc<Checkpoint>,
    path: PathBuf,
}

/// The checkpoint thread last started.
#[derive(Debug, Default)]
struct Checkpoint(Mutex<Option<JoinHandle<()>>>);

impl Checkpoint {
    /// Runs `work` on a thread of its own, once the checkpoint before it has finished.
    fn start(&self, work: impl FnOnce() + Send + 'static) {
        let mut running = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(previous) = running.take() {
            let _ = previous.join();
        }
        *running = Some(std::thread::spawn(work));
    }
}

impl Drop for Checkpoint {
    fn drop(&mut self) {
        let running = self.0.get_mut().unwrap_or_else(PoisonError::into_inner);
        if let Some(running) = running.take() {
            let _ = running.join();
        }
    }
}

/// What clones share: the database, the committed log id not written to it yet, and how far
/// the log is written and persisted.
struct Shared {
    db: Database,
    /// The last committed log id recorded that no transaction has carried to the file yet.
    unsaved_committed: Mutex<Option<Option<LogId>>>,
    /// The id of the last entry written, staged or durable (the last purged one when no entry
    /// is left), and the staged entries. Every write holds it, so a write and the mark it
    /// publishes stay in step, and takes it before it starts a database write transaction.
    written: Mutex<Written>,
    /// Where syncs make staged entries durable. Taken after `written` where both are held; a
    /// sync keeps it (and lets `written` go) while it appends.
    journal: Mutex<Journals>,
    persisted: watch::Sender<Mark>,
    /// Whether a background sync is queued and not started yet.
    sync_queued: AtomicBool,
    /// The member this log belongs to, once known.
    member: OnceLock<NodeId>,
    /// Whether the last saved vote is this member's own, committed: it leads.
    leading: AtomicBool,
}

/// How far the log is written, and what of it the database does not hold yet.
#[derive(Debug, Default)]
struct Written {
    last: Option<LogId>,
    /// Entries the database does not hold yet, by index.
    staged: BTreeMap<u64, Staged>,
    /// Encoded entries staged since the last sync, in order.
    unjournaled: Vec<Bytes>,
}

/// An entry kept in memory until a durable commit carries it to the database.
#[derive(Debug)]
struct Staged {
    entry: Entry,
    encoded: Bytes,
}

/// The two journal files: syncs append to the active one; a full one hands over to the
/// other, which must hold nothing the database lacks.
#[derive(Debug)]
struct Journals {
    active: Journal,
    standby: Journal,
    /// The oldest generation that may hold entries the database does not, as the database
    /// records it.
    oldest_live: u64,
}

impl Journals {
    /// Makes the standby journal active with the next generation, if the database holds
    /// everything it has; returns whether it did.
    fn hand_over(&mut self) -> bool {
        if self.standby.generation() >= self.oldest_live {
            return false;
        }
        std::mem::swap(&mut self.active, &mut self.standby);
        self.active.restart(self.standby.generation() + 1);
        true
    }
}

impl Shared {
    fn lock_written(&self) -> MutexGuard<'_, Written> {
        self.written.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_journal(&self) -> MutexGuard<'_, Journals> {
        self.journal.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn begin_write(&self, durability: Durability) -> Result<WriteTransaction, LogStoreError> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(durability)?;
        Ok(txn)
    }

    /// Writes the committed log id recorded since the last transaction into `meta`, so the
    /// transaction being built carries it to disk.
    fn carry_committed(&self, meta: &mut Table<&str, &[u8]>) -> Result<(), LogStoreError> {
        if let Some(committed) = self.take_unsaved_committed() {
            meta.insert(
                COMMITTED,
                encode(&committed, "committed log id")?.as_slice(),
            )?;
        }
        Ok(())
    }

    /// Commits the entries staged now to the database durably, and records that the journals
    /// before the active one's generation hold nothing the database lacks, so that the
    /// standby journal may be reused. Entries staged meanwhile stay staged.
    fn checkpoint(&self) -> Result<(), LogStoreError> {
        let written = self.lock_written();
        let generation = self.lock_journal().active.generation();
        // Begun under the write lock: a truncation cannot slip in between the copy and the
        // commit and have stale entries written after it.
        let txn = self.begin_write(Durability::Immediate)?;
        let carried: Vec<(LogId, Bytes)> = written
            .staged
            .values()
            .map(|staged| (staged.entry.log_id, staged.encoded.clone()))
            .collect();
        drop(written);
        insert_entries(
            &txn,
            carried
                .iter()
                .map(|(log_id, encoded)| (log_id.index, encoded.as_ref())),
        )?;
        {
            let mut meta = txn.open_table(META)?;
            self.carry_committed(&mut meta)?;
            let recorded = read_meta::<u64>(&meta, JOURNAL_GENERATION)?.unwrap_or(0);
            if recorded < generation {
                meta.insert(
                    JOURNAL_GENERATION,
                    encode(&generation, "journal generation")?.as_slice(),
                )?;
            }
        }
        txn.commit()?;
        let mut written = self.lock_written();
        for (log_id, _) in &carried {
            if written
                .staged
                .get(&log_id.index)
                .is_some_and(|staged| staged.entry.log_id == *log_id)
            {
                written.staged.remove(&log_id.index);
            }
        }
        let mut journals = self.lock_journal();
        journals.oldest_live = journals.oldest_live.max(generation);
        Ok(())
    }

    fn take_unsaved_committed(&self) -> Option<Option<LogId>> {
        self.unsaved_committed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

impl Drop for Shared {
    /// A clean close keeps the staged entries and the last committed log id recorded.
    fn drop(&mut self) {
        let saved = (|| {
            let txn = self.begin_write(Durability::Immediate)?;
            insert_entries(&txn, staged_entries(&self.lock_written().staged))?;
            self.carry_committed(&mut txn.open_table(META)?)?;
            txn.commit()?;
            Ok::<_, LogStoreError>(())
        })();
        if let Err(error) = saved {
            tracing::warn!(%error, "cannot sync the Raft log while closing it");
        }
    }
}

impl fmt::Debug for LogStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl LogStore {
    /// The log's file name inside the data directory.
    pub const FILE_NAME: &'static str = "raft-log.redb";

    /// The journals' file names inside the data directory.
    pub const JOURNAL_NAMES: [&'static str; 2] = ["raft-log.journal", "raft-log.journal-2"];

    /// Opens the log in `data_dir`, creating the directory and the file if they do not exist.
    /// A file left by a killed process is recovered to its last durable commit.
    pub fn open(data_dir: &Path) -> Result<Self, LogStoreError> {
        std::fs::create_dir_all(data_dir).map_err(|source| LogStoreError::CreateDir {
            path: data_dir.to_path_buf(),
            source,
        })?;
        let path = data_dir.join(Self::FILE_NAME);
        let db = Database::create(&path).map_err(|source| LogStoreError::Open {
            path: path.clone(),
            source,
        })?;
        // The durable commit at the end of opening persists the tables this creates.
        let generation = {
            let mut txn = db.begin_write()?;
            txn.set_durability(Durability::None)?;
            let generation = read_meta::<u64>(&txn.open_table(META)?, JOURNAL_GENERATION)?;
            txn.open_table(LOG)?;
            txn.commit()?;
            generation.unwrap_or(0)
        };
        let (journals, journaled) = open_journals(data_dir, generation)?;
        let store = Self {
            shared: Arc::new(Shared {
                db,
                unsaved_committed: Mutex::new(None),
                written: Mutex::new(Written::default()),
                journal: Mutex::new(journals),
                persisted: watch::channel(Ok(None)).0,
                sync_queued: AtomicBool::new(false),
                member: OnceLock::new(),
                leading: AtomicBool::new(false),
            }),
            checkpoint: Arc::default(),
            path,
        };
        store.shared.lock_written().last = store.database_state()?.last_log_id;
        store.replay(&journaled)?;
        // Persists what the journal held, and starts the journal's next generation.
        store.write_durably(|_| Ok(()))?;
        Ok(store)
    }

    /// Stages the journaled entries that the database's last durable commit does not hold.
    fn replay(&self, journaled: &[Vec<u8>]) -> Result<(), LogStoreError> {
        let last = self.shared.lock_written().last.map(|id| id.index);
        let mut missing = Vec::new();
        for payload in journaled {
            let entry = wire::decode_entry(payload).map_err(|source| LogStoreError::Decode {
                what: "journaled entry",
                source,
            })?;
            if last.is_none_or(|last| entry.get_log_id().index > last) {
                missing.push(entry);
            }
        }
        self.stage_entries(missing)?;
        Ok(())
    }

    /// How far the log is on disk, now and from now on.
    pub fn persisted(&self) -> Persisted {
        Persisted(self.shared.persisted.subscribe())
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `entries`, which must be contiguous and directly follow the last entry (or the
    /// last purged one; an empty, never purged log takes any first index), and returns once
    /// they are on disk. Returns the id of the last entry written, `None` if there were none.
    pub fn write_entries<I>(&self, entries: I) -> Result<Option<LogId>, LogStoreError>
    where
        I: IntoIterator<Item = Entry>,
    {
        let last = self.stage_entries(entries)?;
        self.sync()?;
        Ok(last)
    }

    /// Appends `entries` as [`LogStore::write_entries`] does, but returns before they are on
    /// disk: readers see them at once, and the next sync (or durable write) persists them.
    pub fn stage_entries<I>(&self, entries: I) -> Result<Option<LogId>, LogStoreError>
    where
        I: IntoIterator<Item = Entry>,
    {
        let mut written = self.shared.lock_written();
        let mut expected = written.last.map(|id| id.index + 1);
        let mut staged = Vec::new();
        for entry in entries {
            let index = entry.get_log_id().index;
            if let Some(expected) = expected.filter(|&expected| expected != index) {
                return Err(LogStoreError::Gap {
                    expected,
                    found: index,
                });
            }
            let encoded = Bytes::from(wire::encode_entry(&entry).map_err(|source| {
                LogStoreError::Encode {
                    what: "entry",
                    source,
                }
            })?);
            staged.push(Staged { entry, encoded });
            expected = Some(index + 1);
        }
        let last = staged.last().map(|staged| staged.entry.log_id);
        for staged in staged {
            written.unjournaled.push(staged.encoded.clone());
            written.staged.insert(staged.entry.log_id.index, staged);
        }
        if last.is_some() {
            written.last = last;
        }
        Ok(last)
    }

    /// Makes every staged entry durable (appended to the journal with one fdatasync; or with a
    /// durable commit when neither journal has room, or they are larger than a journal), then
    /// publishes how far the log is on disk. A failed sync is final: [`Persisted`] reports it
    /// from then on.
    pub fn sync(&self) -> Result<(), LogStoreError> {
        match self.journal_staged() {
            Ok(()) => Ok(()),
            Err(error) => {
                let reason: Arc<str> = Arc::from(error.to_string());
                // The mark it replaces is of no further use.
                let _ = self.shared.persisted.send_replace(Err(reason));
                Err(error)
            }
        }
    }

    /// Appends the unjournaled entries to the active journal and publishes the log's end as
    /// persisted. When they do not fit, the standby journal takes over and a checkpoint
    /// starts; when it cannot take over (the last checkpoint has not finished) or the entries
    /// do not fit in it either, they are committed durably, which starts the journals over.
    /// Entries are staged meanwhile: the write lock is held only to take the batch, while
    /// the journal lock, held throughout, keeps batches in order and a durable commit (which
    /// takes it too) from starting the journal over under the append.
    fn journal_staged(&self) -> Result<(), LogStoreError> {
        let mut written = self.shared.lock_written();
        if self.shared.persisted.borrow().as_ref().ok() == Some(&written.last) {
            return Ok(());
        }
        let mut journals = self.shared.lock_journal();
        let mut handed_over = false;
        if !journals.active.has_room(&written.unjournaled) {
            handed_over = journals.hand_over();
            if !handed_over || !journals.active.has_room(&written.unjournaled) {
                drop(journals);
                self.commit_durably(&mut written, |_| Ok(()))?;
                self.publish_persisted(written.last);
                return Ok(());
            }
        }
        let batch = std::mem::take(&mut written.unjournaled);
        let last = written.last;
        drop(written);
        journals
            .active
            .append(&batch)
            .map_err(|source| LogStoreError::Journal {
                path: journals.active.path().to_path_buf(),
                source,
            })?;
        // Under the journal lock, so that syncs publish in the order they appended: the mark
        // never moves back past what an earlier sync made durable.
        self.publish_persisted(last);
        drop(journals);
        if handed_over {
            let shared = Arc::clone(&self.shared);
            self.checkpoint.start(move || {
                if let Err(error) = shared.checkpoint() {
                    tracing::error!(%error, "cannot checkpoint the Raft log");
                }
            });
        }
        Ok(())
    }

    /// Runs [`LogStore::sync`] on tokio's blocking pool unless a sync is already queued (it
    /// will cover what was staged before it starts). Must be called inside a tokio runtime.
    pub fn sync_soon(&self) {
        if self.shared.sync_queued.swap(true, Ordering::AcqRel) {
            return;
        }
        let store = self.clone();
        tokio::task::spawn_blocking(move || {
            store.shared.sync_queued.store(false, Ordering::Release);
            if let Err(error) = store.sync() {
                tracing::error!(%error, "cannot sync the Raft log");
            }
        });
    }

    /// The entries whose indexes fall in `range`, in order. Indexes that are not in the log
    /// (purged, or past its end) are skipped.
    pub fn entries<R>(&self, range: R) -> Result<Vec<Entry>, LogStoreError>
    where
        R: RangeBounds<u64>,
    {
        self.entries_within(range, usize::MAX)
    }

    /// Like [`LogStore::entries`], but stops once the entries taken reach `max_bytes` in
    /// their stored encoding; the first entry is always taken, however large.
    pub fn entries_within<R>(&self, range: R, max_bytes: usize) -> Result<Vec<Entry>, LogStoreError>
    where
        R: RangeBounds<u64>,
    {
        let bounds: (Bound<u64>, Bound<u64>) =
            (range.start_bound().cloned(), range.end_bound().cloned());
        if is_empty(bounds) {
            return Ok(Vec::new());
        }
        // Staged entries follow the database's; one a checkpoint carries is read from memory
        // while it is staged, and from the database once it is not. The database's come
        // first, so the staged ones needed are at most `max_bytes` of them.
        let (first_staged, staged) = {
            let written = self.shared.lock_written();
            let mut staged = Vec::new();
            let mut size = 0usize;
            for entry in written.staged.range(bounds).map(|(_, staged)| staged) {
                if !staged.is_empty() && size >= max_bytes {
                    break;
                }
                size = size.saturating_add(entry.encoded.len());
                staged.push((entry.entry.clone(), entry.encoded.len()));
            }
            (written.staged.keys().next().copied(), staged)
        };
        let stored_bounds = match first_staged {
            Some(first) => (bounds.0, clamp_end(bounds.1, first)),
            None => bounds,
        };
        let mut entries = Vec::new();
        let mut taken = 0usize;
        let full = |entries: &Vec<Entry>, taken: usize| !entries.is_empty() && taken >= max_bytes;
        let txn = self.shared.db.begin_read()?;
        let log = txn.open_table(LOG)?;
        let stored = if is_empty(stored_bounds) {
            None
        } else {
            Some(log.range(stored_bounds)?)
        };
        for item in stored.into_iter().flatten() {
            if full(&entries, taken) {
                return Ok(entries);
            }
            let (index, bytes) = item?;
            taken = taken.saturating_add(bytes.value().len());
            entries.push(decode_entry(index.value(), bytes.value())?);
        }
        for (entry, size) in staged {
            if full(&entries, taken) {
                break;
            }
            taken = taken.saturating_add(size);
            entries.push(entry);
        }
        Ok(entries)
    }

    /// The last purged log id and the last log id (the last purged one when the log is
    /// empty).
    pub fn log_state(&self) -> Result<LogState<TypeConfig>, LogStoreError> {
        let last_log_id = self.shared.lock_written().last;
        let txn = self.shared.db.begin_read()?;
        Ok(LogState {
            last_purged_log_id: read_meta::<LogId>(&txn.open_table(META)?, LAST_PURGED)?,
            last_log_id,
        })
    }

    /// [`LogStore::log_state`] as the database alone tells it.
    fn database_state(&self) -> Result<LogState<TypeConfig>, LogStoreError> {
        let txn = self.shared.db.begin_read()?;
        let last_purged_log_id = read_meta::<LogId>(&txn.open_table(META)?, LAST_PURGED)?;
        let last_entry = match txn.open_table(LOG)?.last()? {
            Some((index, bytes)) => Some(*decode_entry(index.value(), bytes.value())?.get_log_id()),
            None => None,
        };
        Ok(LogState {
            last_purged_log_id,
            last_log_id: last_entry.or(last_purged_log_id),
        })
    }

    /// Deletes the entries from index `since` on (a conflicting suffix), durably.
    pub fn truncate_from(&self, since: u64) -> Result<(), LogStoreError> {
        self.write_durably(|txn| {
            txn.open_table(LOG)?.retain_in(since.., |_, _| false)?;
            Ok(())
        })
    }

    /// Deletes the entries up to and including `upto` and remembers it as the last purged
    /// log id, durably. `upto` may lie past the last entry (after a snapshot was installed);
    /// it may not lie before an earlier purge.
    pub fn purge_upto(&self, upto: LogId) -> Result<(), LogStoreError> {
        self.write_durably(|txn| {
            let mut meta = txn.open_table(META)?;
            if let Some(purged) = read_meta::<LogId>(&meta, LAST_PURGED)? {
                if upto.index < purged.index {
                    return Err(LogStoreError::PurgeRegress {
                        purged: purged.index,
                        requested: upto.index,
                    });
                }
            }
            meta.insert(LAST_PURGED, encode(&upto, "last purged log id")?.as_slice())?;
            txn.open_table(LOG)?
                .retain_in(..=upto.index, |_, _| false)?;
            Ok(())
        })
    }

    /// Saves the vote, durably.
    pub fn write_vote(&self, vote: &Vote) -> Result<(), LogStoreError> {
        let value = encode(vote, "vote")?;
        self.write_durably(|txn| {
            txn.open_table(META)?.insert(VOTE, value.as_slice())?;
            Ok(())
        })?;
        self.note_leading(Some(vote));
        Ok(())
    }

    /// Names the member this log belongs to, so that it knows when the member leads.
    pub fn set_member(&self, id: NodeId) -> Result<(), LogStoreError> {
        // Only the first call counts: a log belongs to one member.
        let _ = self.shared.member.set(id);
        self.note_leading(self.vote_at_start()?.as_ref());
        Ok(())
    }

    /// The saved vote as a member that starts must take it: its own committed vote (it
    /// led) becomes a plain vote for itself in that term, so that it leads again only after
    /// winning a later term, as in Raft.
    ///
    /// openraft 0.9 would resume leading in the same term. But a leader sends entries to
    /// followers before they are on its own disk (it stages them, as etcd's leader writes in
    /// parallel with replicating), so a leader killed and resumed in the same term could
    /// write other entries at the indexes it lost, under the same term, and followers that
    /// kept the first ones would take them for the same: logs that differ where Raft says
    /// they cannot (found by the fault runs of issue 21, after every member was killed).
    pub fn vote_at_start(&self) -> Result<Option<Vote>, LogStoreError> {
        let vote = self.vote()?;
        let own = |vote: &Vote| {
            vote.is_committed()
                && vote.leader_id().voted_for().is_some()
                && vote.leader_id().voted_for() == self.shared.member.get().copied()
        };
        Ok(vote.map(|vote| match own(&vote) {
            true => Vote::new(vote.leader_id().get_term(), vote.leader_id().node_id),
            false => vote,
        }))
    }

    /// Whether the member leads, as far as its saved vote tells.
    pub fn leading(&self) -> bool {
        self.shared.leading.load(Ordering::Acquire)
    }

    fn note_leading(&self, vote: Option<&Vote>) {
        let leading = match (vote, self.shared.member.get()) {
            (Some(vote), Some(&id)) => {
                vote.is_committed() && vote.leader_id().voted_for() == Some(id)
            }
            _ => false,
        };
        self.shared.leading.store(leading, Ordering::Release);
    }

    /// The last saved vote.
    pub fn vote(&self) -> Result<Option<Vote>, LogStoreError> {
        let txn = self.shared.db.begin_read()?;
        read_meta(&txn.open_table(META)?, VOTE)
    }

    /// Records the committed log id; the next durable write, or closing the store, saves it
    /// (see the module documentation).
    pub fn write_committed(&self, committed: Option<LogId>) {
        *self
            .shared
            .unsaved_committed
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(committed);
    }

    /// The last recorded committed log id.
    pub fn committed(&self) -> Result<Option<LogId>, LogStoreError> {
        if let Some(unsaved) = *self
            .shared
            .unsaved_committed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
        {
            return Ok(unsaved);
        }
        let txn = self.shared.db.begin_read()?;
        Ok(read_meta::<Option<LogId>>(&txn.open_table(META)?, COMMITTED)?.flatten())
    }

    /// Commits `change` durably, carrying the recorded committed log id and every staged
    /// entry to disk with it, and publishes the log's new end as written and persisted.
    fn write_durably(
        &self,
        change: impl FnOnce(&WriteTransaction) -> Result<(), LogStoreError>,
    ) -> Result<(), LogStoreError> {
        let mut written = self.shared.lock_written();
        self.commit_durably(&mut written, change)?;
        written.last = self.database_state()?.last_log_id;
        self.publish_persisted(written.last);
        Ok(())
    }

    /// Commits `change` in one durable transaction that also carries the recorded committed
    /// log id and every staged entry (before `change`, which may delete them), and names the
    /// journal's next generation, which then starts: the database holds all the journals did.
    /// The caller holds the write lock.
    fn commit_durably(
        &self,
        written: &mut Written,
        change: impl FnOnce(&WriteTransaction) -> Result<(), LogStoreError>,
    ) -> Result<(), LogStoreError> {
        let mut journals = self.shared.lock_journal();
        let next = journals.active.generation() + 1;
        let txn = self.shared.begin_write(Durability::Immediate)?;
        insert_entries(&txn, staged_entries(&written.staged))?;
        change(&txn)?;
        {
            let mut meta = txn.open_table(META)?;
            self.shared.carry_committed(&mut meta)?;
            meta.insert(
                JOURNAL_GENERATION,
                encode(&next, "journal generation")?.as_slice(),
            )?;
        }
        txn.commit()?;
        journals.active.restart(next);
        journals.oldest_live = next;
        written.staged.clear();
        written.unjournaled.clear();
        Ok(())
    }

    /// Publishes `last` as the log's end on disk, unless a sync failed before: what it staged
    /// may be lost even if later commits succeed.
    fn publish_persisted(&self, last: Option<LogId>) {
        self.shared.persisted.send_if_modified(|mark| match mark {
            Ok(persisted) if *persisted != last => {
                *persisted = last;
                true
            }
            _ => false,
        });
    }
}

/// Opens both journals, and returns them with the entries they hold that the database may
/// lack: those of `oldest_live`, then those of the generation after it, which the other file
/// holds if the first one filled up and its checkpoint did not finish.
fn open_journals(
    data_dir: &Path,
    oldest_live: u64,
) -> Result<(Journals, Vec<Vec<u8>>), LogStoreError> {
    let open = |name: &str| {
        let path = data_dir.join(name);
        Journal::open(&path, JOURNAL_BYTES, oldest_live)
            .map_err(|source| LogStoreError::Journal { path, source })
    };
    let [first, second] = LogStore::JOURNAL_NAMES;
    let (first, mut journaled) = open(first)?;
    let (second, in_second) = open(second)?;
    // The file that holds the oldest generation is the standby; the other one goes on.
    let (mut active, standby) = if journaled.is_empty() {
        journaled = in_second;
        (first, second)
    } else {
        (second, first)
    };
    if !journaled.is_empty() {
        let next = active
            .read(oldest_live + 1)
            .map_err(|source| LogStoreError::Journal {
                path: active.path().to_path_buf(),
                source,
            })?;
        journaled.extend(next);
    }
    Ok((
        Journals {
            active,
            standby,
            oldest_live,
        },
        journaled,
    ))
}

/// Writes encoded entries under their indexes in `txn`'s log table.
fn insert_entries<'a>(
    txn: &WriteTransaction,
    entries: impl IntoIterator<Item = (u64, &'a [u8])>,
) -> Result<(), LogStoreError> {
    let mut log = txn.open_table(LOG)?;
    for (index, encoded) in entries {
        log.insert(index, encoded)?;
    }
    Ok(())
}

/// The staged entries' indexes and encodings, in order.
fn staged_entries(staged: &BTreeMap<u64, Staged>) -> impl Iterator<Item = (u64, &[u8])> {
    staged
        .iter()
        .map(|(index, staged)| (*index, staged.encoded.as_ref()))
}

/// Whether no index lies within `bounds` (which `BTreeMap::range` would refuse).
fn is_empty((start, end): (Bound<u64>, Bound<u64>)) -> bool {
    let first = match start {
        Bound::Included(start) => start,
        Bound::Excluded(start) => match start.checked_add(1) {
            Some(first) => first,
            None => return true,
        },
        Bound::Unbounded => 0,
    };
    match end {
        Bound::Included(end) => first > end,
        Bound::Excluded(end) => first >= end,
        Bound::Unbounded => false,
    }
}

/// `end`, or the bound just before `first` if that comes first.
fn clamp_end(end: Bound<u64>, first: u64) -> Bound<u64> {
    match end {
        Bound::Included(end) if end < first => Bound::Included(end),
        Bound::Excluded(end) if end <= first => Bound::Excluded(end),
        _ => Bound::Excluded(first),
    }
}

/// A record other than an entry, as JSON: small, rare, and readable with any redb viewer.
fn encode<T: Serialize>(value: &T, what: &'static str) -> Result<Vec<u8>, LogStoreError> {
    Encoding::Json
        .encode(value)
        .map_err(|source| LogStoreError::Encode { what, source })
}

fn decode_entry(index: u64, bytes: &[u8]) -> Result<Entry, LogStoreError> {
    let entry = wire::decode_entry(bytes).map_err(|source| LogStoreError::Decode {
        what: "entry",
        source,
    })?;
    match entry.get_log_id().index {
        found if found == index => Ok(entry),
        found => Err(LogStoreError::Misplaced { index, found }),
    }
}

fn read_meta<T: DeserializeOwned>(
    meta: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &'static str,
) -> Result<Option<T>, LogStoreError> {
    match meta.get(key)? {
        Some(bytes) => Encoding::Json
            .decode(bytes.value())
            .map(Some)
            .map_err(|source| LogStoreError::Decode { what: key, source }),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use openraft::testing::log_id;
    use openraft::{EntryPayload, Membership};

    use super::*;
    use crate::v3::{Command, PutRequest};

    fn put(index: u64) -> Command {
        Command::Put(PutRequest {
            key: format!("key-{index}").into_bytes(),
            value: vec![0xff, 0, index.to_le_bytes()[0]],
            ..PutRequest::default()
        })
    }

    fn entry(term: u64, index: u64) -> Entry {
        Entry {
            log_id: log_id(term, 1, index),
            payload: EntryPayload::Normal(crate::raft::Request::V3(put(index))),
        }
    }

    fn member(peer_url: &str) -> crate::raft::Member {
        crate::raft::Member {
            name: peer_url.to_owned(),
            peer_urls: vec![peer_url.to_owned()],
            client_urls: Vec::new(),
        }
    }

    fn entries(term: u64, indexes: impl IntoIterator<Item = u64>) -> Vec<Entry> {
        indexes
            .into_iter()
            .map(|index| entry(term, index))
            .collect()
    }

    fn indexes(entries: &[Entry]) -> Vec<u64> {
        entries.iter().map(|entry| entry.log_id.index).collect()
    }

    #[test]
    fn appended_entries_of_every_kind_read_back_equal() {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::open(dir.path()).unwrap();
        let membership = Membership::new(
            vec![BTreeSet::from([1, 2])],
            BTreeMap::from([
                (1, member("http://10.0.0.1:2380")),
                (2, member("http://10.0.0.2:2380")),
            ]),
        );
        let written = vec![
            Entry {
                log_id: log_id(0, 0, 0),
                payload: EntryPayload::Membership(membership),
            },
            Entry {
                log_id: log_id(1, 1, 1),
                payload: EntryPayload::Blank,
            },
            entry(1, 2),
            entry(1, 3),
        ];

        assert_eq!(
            store.write_entries(written.clone()).unwrap(),
            Some(log_id(1, 1, 3))
        );

        assert_eq!(store.entries(..).unwrap(), written);
        assert_eq!(store.entries(1..3).unwrap(), written[1..3]);
        assert_eq!(store.entries(2..=2).unwrap(), written[2..3]);
        assert_eq!(indexes(&store.entries(3..10).unwrap()), [3]);
        assert!(store.entries(4..).unwrap().is_empty());
        let state = store.log_state().unwrap();
        assert_eq!(state.last_log_id, Some(log_id(1, 1, 3)));
        assert_eq!(state.last_purged_log_id, None);
    }

    #[test]
    fn empty_log_has_no_state_and_appending_nothing_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::open(dir.path()).unwrap();

        assert_eq!(store.write_entries(Vec::new()).unwrap(), None);

        let state = store.log_state().unwrap();
        assert_eq!((state.last_log_id, state.last_purged_log_id), (None, None));
        assert!(store.entries(..).unwrap().is_empty());
        assert_eq!(store.vote().unwrap(), None);
        assert_eq!(store.committed().unwrap(), None);
    }

    #[test]
    fn reopened_store_has_the_entries_vote_committed_and_last_purged() {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("node-1");
        {
            let store = LogStore::open(&data_dir).unwrap();
            store.write_entries(entries(1, 1..=6)).unwrap();
            store.write_vote(&Vote::new_committed(3, 2)).unwrap();
            store.purge_upto(log_id(1, 1, 2)).unwrap();
            store.write_committed(Some(log_id(1, 1, 5)));
            store.write_entries(entries(3, 7..=8)).unwrap();
        }

        let store = LogStore::open(&data_dir).unwrap();

        assert_eq!(store.path(), data_dir.join(LogStore::FILE_NAME));
        let mut expected = entries(1, 3..=6);
        expected.extend(entries(3, 7..=8));
        assert_eq!(store.entries(..).unwrap(), expected);
        assert_eq!(store.vote().unwrap(), Some(Vote::new_committed(3, 2)));
        assert_eq!(store.committed().unwrap(), Some(log_id(1, 1, 5)));
        let state = store.log_state().unwrap();
        assert_eq!(state.last_purged_log_id, Some(log_id(1, 1, 2)));
        assert_eq!(state.last_log_id, Some(log_id(3, 1, 8)));
    }

    #[test]
    fn a_later_vote_replaces_the_earlier_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::open(dir.path()).unwrap();

        store.write_vote(&Vote::new(1, 1)).unwrap();
        store.write_vote(&Vote::new(2, 3)).unwrap();

        assert_eq!(store.vote().unwrap(), Some(Vote::new(2, 3)));
    }

    #[test]
    fn a_member_that_led_starts_again_with_only_a_vote_for_itself() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = LogStore::open(dir.path()).unwrap();
            store.set_member(7).unwrap();
            store.write_vote(&Vote::new_committed(3, 7)).unwrap();
            assert!(store.leading());
        }
        let store = LogStore::open(dir.path()).unwrap();
        store.set_member(7).unwrap();
        // It must win term 4 or later to lead again; what was saved stays as it was.
        assert_eq!(store.vote_at_start().unwrap(), Some(Vote::new(3, 7)));
        assert_eq!(store.vote().unwrap(), Some(Vote::new_committed(3, 7)));
        assert!(!store.leading());

        // Another member's leadership is kept as it is.
        let other = tempfile::tempdir().unwrap();
        let store = LogStore::open(other.path()).unwrap();
        store.set_member(8).unwrap();
        store.write_vote(&Vote::new_committed(3, 7)).unwrap();
        assert_eq!(
            store.vote_at_start().unwrap(),
            Some(Vote::new_committed(3, 7))
        );
    }

    #[test]
    fn truncate_deletes_the_suffix_and_the_log_continues_from_there() {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::open(dir.path()).unwrap();
        store.write_entries(entries(1, 1..=5)).unwrap();

        store.truncate_from(3).unwrap();

        assert_eq!(indexes(&store.entries(..).unwrap()), [1, 2]);
        assert_eq!(
            store.log_state().unwrap().last_log_id,
            Some(log_id(1, 1, 2))
        );
        // The leader of term 2 replaces the conflicting entries.
        store.write_entries(entries(2, 3..=4)).unwrap();
        let mut expected = entries(1, 1..=2);
        expected.extend(entries(2, 3..=4));
        assert_eq!(store.entries(..).unwrap(), expected);
    }

    #[test]
    fn truncate_past_the_end_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::open(dir.path()).unwrap();
        store.write_entries(entries(1, 1..=3)).unwrap();

        store.truncate_from(4).unwrap();

        assert_eq!(indexes(&store.entries(..).unwrap()), [1, 2, 3]);
    }

    #[test]
    fn a_byte_bounded_read_stops_after_the_entry_that_reaches_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::open(dir.path()).unwrap();
        store.write_entries(entries(1, 1..=5)).unwrap();
        let one = wire::encode_entry(&entries(1, 1..=1)[0]).unwrap().len();

        assert_eq!(indexes(&store.entries_within(2.., 0).unwrap()), [2]);
        assert_eq!(indexes(&store.entries_within(2.., 1).unwrap()), [2]);
        assert_eq!(
            indexes(&store.entries_within(2.., one + 1).unwrap()),
            [2, 3]
        );
        assert_eq!(
            indexes(&store.entries_within(2..4, usize::MAX).unwrap()),
            [2, 3]
        );
    }

    #[test]
    fn purge_deletes_the_prefix_and_remembers_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::open(dir.path()).unwrap();
        store.write_entries(entries(1, 1..=5)).unwrap();

        store.purge_upto(log_id(1, 1, 3)).unwrap();

        assert_eq!(indexes(&store.entries(..).unwrap()), [4, 5]);
        let state = store.log_state().unwrap();
        assert_eq!(state.last_purged_log_id, Some(log_id(1, 1, 3)));
        assert_eq!(state.last_log_id, Some(log_id(1, 1, 5)));
        // Purging the same point again is harmless.
        store.purge_upto(log_id(1, 1, 3)).unwrap();
        assert_eq!(indexes(&store.entries(..).unwrap()), [4, 5]);
    }

    #[test]
    fn purge_of_everything_leaves_the_purged_id_as_the_last_and_appends_follow_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::open(dir.path()).unwrap();
        store.write_entries(entries(1, 1..=3)).unwrap();

        // As after installing a snapshot that reaches past the log.
        store.purge_upto(log_id(2, 2, 10)).unwrap();

        assert!(store.entries(..).unwrap().is_empty());
        let state = store.log_state().unwrap();
        assert_eq!(state.last_purged_log_id, Some(log_id(2, 2, 10)));
        assert_eq!(state.last_log_id, Some(log_id(2, 2, 10)));
        assert!(matches!(
            store.write_entries(entries(2, 12..=12)),
            Err(LogStoreError::Gap {
                expected: 11,
                found: 12
            })
        ));
        store.write_entries(entries(2, 11..=12)).unwrap();
        assert_eq!(indexes(&store.entries(..).unwrap()), [11, 12]);
    }

    #[test]
    fn purge_never_goes_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::open(dir.path()).unwrap();
        store.write_entries(entries(1, 1..=5)).unwrap();
        store.purge_upto(log_id(1, 1, 3)).unwrap();

        let refused = store.purge_upto(log_id(1, 1, 2));

        assert!(matches!(
            refused,
            Err(LogStoreError::PurgeRegress {
                purged: 3,
                requested: 2
            })
        ));
        assert_eq!(
            store.log_state().unwrap().last_purged_log_id,
            Some(log_id(1, 1, 3))
        );
    }

    #[test]
    fn appends_that_leave_a_gap_or_overlap_are_refused_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::open(dir.path()).unwrap();
        store.write_entries(entries(1, 1..=3)).unwrap();
        store.write_committed(Some(log_id(1, 1, 3)));

        let gap = store.write_entries(entries(1, [4, 5, 7]));
        let overlap = store.write_entries(entries(1, 3..=4));

        assert!(matches!(
            gap,
            Err(LogStoreError::Gap {
                expected: 6,
                found: 7
            })
        ));
        assert!(matches!(
            overlap,
            Err(LogStoreError::Gap {
                expected: 4,
                found: 3
            })
        ));
        // Neither batch left anything behind, nor lost the committed log id recorded.
        assert_eq!(indexes(&store.entries(..).unwrap()), [1, 2, 3]);
        assert_eq!(store.committed().unwrap(), Some(log_id(1, 1, 3)));
    }

    #[test]
    fn committed_can_be_cleared() {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::open(dir.path()).unwrap();

        store.write_committed(Some(log_id(1, 1, 4)));
        assert_eq!(store.committed().unwrap(), Some(log_id(1, 1, 4)));
        store.write_committed(None);

        assert_eq!(store.committed().unwrap(), None);
    }

    #[test]
    fn the_last_committed_log_id_recorded_survives_a_clean_close() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = LogStore::open(dir.path()).unwrap();
            store.write_entries(entries(1, 1..=3)).unwrap();
            store.write_committed(Some(log_id(1, 1, 2)));
            store.write_committed(Some(log_id(1, 1, 3)));
            // A clone going away does not close the store.
            drop(store.clone());
            assert_eq!(store.committed().unwrap(), Some(log_id(1, 1, 3)));
        }

        let store = LogStore::open(dir.path()).unwrap();

        assert_eq!(store.committed().unwrap(), Some(log_id(1, 1, 3)));
    }

    #[test]
    fn staged_entries_are_read_at_once_and_persisted_by_the_next_sync() {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::open(dir.path()).unwrap();
        let persisted = store.persisted();
        store.write_entries(entries(1, 1..=2)).unwrap();
        assert_eq!(persisted.last(), Some(log_id(1, 1, 2)));

        store.stage_entries(entries(1, 3..=4)).unwrap();
        store.stage_entries(entries(1, 5..=5)).unwrap();

        assert_eq!(indexes(&store.entries(..).unwrap()), [1, 2, 3, 4, 5]);
        assert_eq!(persisted.last(), Some(log_id(1, 1, 2)));
        store.sync().unwrap();
        assert_eq!(persisted.last(), Some(log_id(1, 1, 5)));
    }

    #[test]
    fn a_durable_write_persists_what_was_staged_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::open(dir.path()).unwrap();
        store.stage_entries(entries(1, 1..=3)).unwrap();

        store.write_vote(&Vote::new(2, 1)).unwrap();

        assert_eq!(store.persisted().last(), Some(log_id(1, 1, 3)));
    }

    #[test]
    fn a_truncation_moves_the_persisted_end_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::open(dir.path()).unwrap();
        store.write_entries(entries(1, 1..=5)).unwrap();

        store.truncate_from(4).unwrap();

        assert_eq!(store.persisted().last(), Some(log_id(1, 1, 3)));
        store.stage_entries(entries(2, 4..=4)).unwrap();
        assert_eq!(store.persisted().last(), Some(log_id(1, 1, 3)));
        store.sync().unwrap();
        assert_eq!(store.persisted().last(), Some(log_id(2, 1, 4)));
    }

    fn big(index: u64) -> Entry {
        Entry {
            log_id: log_id(1, 1, index),
            payload: EntryPayload::Normal(crate::raft::Request::V3(Command::Put(PutRequest {
                key: format!("big-{index}").into_bytes(),
                value: vec![b'x'; 4096],
                ..PutRequest::default()
            }))),
        }
    }

    /// Copies the data directory's files as a crash would leave them.
    fn crash_copy(from: &Path) -> tempfile::TempDir {
        let copy = tempfile::tempdir().unwrap();
        for file in std::fs::read_dir(from).unwrap() {
            let file = file.unwrap();
            std::fs::copy(file.path(), copy.path().join(file.file_name())).unwrap();
        }
        copy
    }

    #[test]
    fn syncs_that_overflow_a_journal_go_on_in_the_other_while_a_checkpoint_commits() {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::open(dir.path()).unwrap();
        let first_generation = store.shared.lock_journal().active.generation();
        let generation = || store.shared.lock_journal().active.generation();
        let mut in_journal = 0;
        while generation() == first_generation {
            store
                .stage_entries((in_journal + 1..=in_journal + 20).map(big))
                .unwrap();
            store.sync().unwrap();
            in_journal += 20;
            assert!(in_journal < 1000, "a journal holds less than 5 MiB");
        }
        let checkpoint = store.checkpoint.0.lock().unwrap().take();
        checkpoint.expect("a checkpoint started").join().unwrap();
        assert_eq!(
            store.database_state().unwrap().last_log_id,
            Some(log_id(1, 1, in_journal)),
            "the checkpoint carried what was staged when it began"
        );
        let last = in_journal + 20;
        store
            .stage_entries((in_journal + 1..=last).map(big))
            .unwrap();
        store.sync().unwrap();
        assert_eq!(store.persisted().last(), Some(log_id(1, 1, last)));
        assert_eq!(generation(), first_generation + 1);
        assert_eq!(store.shared.lock_written().staged.len(), 20);
        assert_eq!(
            indexes(&store.entries(1..).unwrap()),
            (1..=last).collect::<Vec<_>>(),
            "reads join the database and the staged entries"
        );
        let in_database = in_journal;
        let across = in_database..=in_database + 1;
        assert_eq!(
            indexes(&store.entries(across.clone()).unwrap()),
            across.collect::<Vec<_>>()
        );
        assert_eq!(
            indexes(&store.entries_within(in_database.., 1).unwrap()),
            [in_database]
        );
        assert!(store.entries(last..last).unwrap().is_empty());
        assert!(store.entries(last + 1..=last).unwrap().is_empty());

        let crashed = crash_copy(dir.path());
        let recovered = LogStore::open(crashed.path()).unwrap();
        assert_eq!(
            indexes(&recovered.entries(1..).unwrap()),
            (1..=last).collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_crash_before_the_checkpoint_finished_recovers_both_generations() {
        let dir = tempfile::tempdir().unwrap();
        drop(LogStore::open(dir.path()).unwrap());
        let generation = {
            let db = Database::create(dir.path().join(LogStore::FILE_NAME)).unwrap();
            let txn = db.begin_read().unwrap();
            read_meta::<u64>(&txn.open_table(META).unwrap(), JOURNAL_GENERATION)
                .unwrap()
                .unwrap()
        };
        let journal = |name: &str, generation: u64, indexes: std::ops::RangeInclusive<u64>| {
            let (mut journal, _) =
                Journal::open(&dir.path().join(name), JOURNAL_BYTES, generation).unwrap();
            let payloads: Vec<Vec<u8>> = indexes
                .map(|index| wire::encode_entry(&entry(1, index)).unwrap())
                .collect();
            journal.append(&payloads).unwrap();
        };
        // The oldest live generation in the second file, the next one in the first.
        journal(LogStore::JOURNAL_NAMES[1], generation, 1..=3);
        journal(LogStore::JOURNAL_NAMES[0], generation + 1, 4..=5);

        let store = LogStore::open(dir.path()).unwrap();

        assert_eq!(indexes(&store.entries(..).unwrap()), [1, 2, 3, 4, 5]);
        assert_eq!(store.persisted().last(), Some(log_id(1, 1, 5)));
    }

    #[test]
    fn staged_entries_survive_a_clean_close() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = LogStore::open(dir.path()).unwrap();
            store.stage_entries(entries(1, 1..=3)).unwrap();
        }

        let store = LogStore::open(dir.path()).unwrap();

        assert_eq!(
            store.log_state().unwrap().last_log_id,
            Some(log_id(1, 1, 3))
        );
        assert_eq!(store.persisted().last(), Some(log_id(1, 1, 3)));
    }

    #[tokio::test]
    async fn reach_returns_once_a_background_sync_persisted_the_entry() {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::open(dir.path()).unwrap();
        let persisted = store.persisted();
        store.stage_entries(entries(1, 1..=2)).unwrap();
        let waiting = tokio::spawn({
            let persisted = persisted.clone();
            async move { persisted.reach(log_id(1, 1, 2)).await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "nothing synced the entry yet");

        store.sync_soon();

        waiting.await.unwrap().unwrap();
        assert_eq!(persisted.last(), Some(log_id(1, 1, 2)));
    }

    #[tokio::test]
    async fn reach_fails_once_the_log_is_closed() {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::open(dir.path()).unwrap();
        let persisted = store.persisted();
        store.stage_entries(entries(1, 1..=1)).unwrap();

        drop(store);

        assert!(matches!(
            persisted.reach(log_id(1, 1, 1)).await,
            Err(PersistError::Closed)
        ));
    }

    #[test]
    fn the_log_leads_while_its_members_own_committed_vote_is_saved() {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::open(dir.path()).unwrap();
        let mut own = Vote::new(3, 7);
        store.write_vote(&own).unwrap();
        store.set_member(7).unwrap();
        assert!(!store.leading(), "a candidate does not lead");

        own.commit();
        store.write_vote(&own).unwrap();
        assert!(store.leading());

        store.write_vote(&Vote::new_committed(4, 8)).unwrap();
        assert!(!store.leading(), "another member leads term 4");
        drop(store);

        let store = LogStore::open(dir.path()).unwrap();
        store.write_vote(&Vote::new_committed(5, 7)).unwrap();
        assert!(
            !store.leading(),
            "a log that was not told its member never leads"
        );
        store.set_member(7).unwrap();
        assert!(
            !store.leading(),
            "a member that starts leads only once it wins a new term"
        );
        store.write_vote(&Vote::new_committed(6, 7)).unwrap();
        assert!(store.leading());
    }

    /// Writes `records` into the log's table as they are, as a damaged file or an earlier
    /// kvd would hold them.
    fn put_records(store: &LogStore, records: &[(u64, &[u8])]) {
        let txn = store.shared.db.begin_write().unwrap();
        {
            let mut log = txn.open_table(LOG).unwrap();
            for &(index, bytes) in records {
                log.insert(index, bytes).unwrap();
            }
        }
        txn.commit().unwrap();
    }

    #[test]
    fn a_damaged_entry_is_reported_not_returned() {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::open(dir.path()).unwrap();
        store.write_entries(entries(1, 1..=2)).unwrap();
        // A durable commit carries the staged entries to the database.
        store.write_vote(&Vote::new(1, 1)).unwrap();
        let misplaced = wire::encode_entry(&entry(1, 9)).unwrap();
        put_records(&store, &[(2, b"{not json"), (3, &misplaced)]);

        assert!(matches!(
            store.entries(2..=2),
            Err(LogStoreError::Decode { what: "entry", .. })
        ));
        assert!(matches!(
            store.entries(3..),
            Err(LogStoreError::Misplaced { index: 3, found: 9 })
        ));
        drop(store);
        assert!(
            matches!(
                LogStore::open(dir.path()),
                Err(LogStoreError::Misplaced { .. })
            ),
            "opening reads the last entry"
        );
    }

    #[test]
    fn entries_an_earlier_kvd_wrote_as_json_read_beside_binary_ones() {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::open(dir.path()).unwrap();
        store.write_entries(entries(1, 1..=1)).unwrap();
        store.write_vote(&Vote::new(1, 1)).unwrap();
        put_records(&store, &[(2, &serde_json::to_vec(&entry(1, 2)).unwrap())]);
        drop(store);

        let store = LogStore::open(dir.path()).unwrap();
        assert_eq!(indexes(&store.entries(..).unwrap()), [1, 2]);
        store.write_entries(entries(1, 3..=3)).unwrap();
        assert_eq!(indexes(&store.entries(..).unwrap()), [1, 2, 3]);
    }

    #[test]
    fn a_second_open_of_the_same_directory_is_refused_while_the_first_is_open() {
        let dir = tempfile::tempdir().unwrap();
        let first = LogStore::open(dir.path()).unwrap();

        assert!(matches!(
            LogStore::open(dir.path()),
            Err(LogStoreError::Open { .. })
        ));
        drop(first);
        LogStore::open(dir.path()).unwrap();
    }

    #[test]
    fn open_fails_with_a_typed_error_when_the_directory_cannot_exist() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plain-file");
        std::fs::write(&file, b"").unwrap();

        let refused = LogStore::open(&file.join("data"));

        assert!(matches!(refused, Err(LogStoreError::CreateDir { .. })));
    }
}
