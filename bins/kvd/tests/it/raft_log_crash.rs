//! The Raft log keeps every acknowledged append when its process is killed with SIGKILL.
//!
//! The parent test re-runs this test binary as a child (selecting [`crash_child`] and naming
//! a data directory in [`CHILD_DIR_VAR`]). The child appends batches through openraft's
//! `append` (which reports them written before they are on disk) and prints the last index of
//! each batch once the store reports it persisted, as kvd waits before acknowledging; every few batches it purges an old
//! prefix, as after a snapshot, and prints that too. The parent kills it with SIGKILL while it
//! writes, reopens the log and checks that every acknowledged index and purge is there, that
//! the log is contiguous and that every entry holds what the child wrote. Six rounds, each
//! continuing the log the previous one left, the last three past several journal hand-overs.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command as Process, Stdio};

use openraft::storage::{RaftLogStorage, RaftLogStorageExt};
use openraft::testing::log_id;
use openraft::{EntryPayload, RaftLogId, RaftLogReader};
use sinew_kvd::raft::{Entry, LogStore, Request};
use sinew_kvd::v3::{Command, PutRequest};

/// Set for the child: the data directory to append to.
const CHILD_DIR_VAR: &str = "SINEW_KVD_CRASH_CHILD_DIR";
/// [`crash_child`]'s name in the test binary, as the child's filter.
const CHILD_TEST: &str = "raft_log_crash::crash_child";
/// Entries per append.
const BATCH: u64 = 4;
/// The child purges every this many batches...
const PURGE_EVERY: u64 = 8;
/// ...keeping this many entries before the end of the log.
const KEEP: u64 = 16;
/// The prefix of the child's lines acknowledging an append, then the last index appended.
const ACK: &str = "ACK ";
/// The prefix of the child's lines acknowledging a purge, then the last index purged.
const PURGED: &str = "PURGED ";

/// When the parent kills a child.
#[derive(Debug, Clone, Copy)]
enum KillAt {
    /// Right after reading the acknowledgement of this many appends: the kill lands while the
    /// next append is being written.
    Append(usize),
    /// Right after the first purge acknowledged once this many appends were: nothing later
    /// has carried the purge to disk.
    PurgeAfter(usize),
}

/// One child per round, each continuing the log the previous one left. The later rounds
/// append past both journals (512 KiB each), so kills land after hand-overs and while
/// checkpoints run.
const ROUNDS: [KillAt; 6] = [
    KillAt::Append(10),
    KillAt::PurgeAfter(40),
    KillAt::Append(25),
    KillAt::Append(1200),
    KillAt::Append(700),
    KillAt::Append(1900),
];

/// What the child writes at `index`, so the parent can check contents, not just presence.
fn entry(index: u64) -> Entry {
    Entry {
        log_id: log_id(1 + index / 50, 1, index),
        payload: EntryPayload::Normal(Request::V3(Command::Put(PutRequest {
            key: format!("crash/{index:08}").into_bytes(),
            value: vec![index.to_le_bytes()[0]; 512],
            ..PutRequest::default()
        }))),
    }
}

/// The child: a no-op unless the parent set [`CHILD_DIR_VAR`]; then it appends until killed.
#[tokio::test]
async fn crash_child() {
    let Some(dir) = std::env::var_os(CHILD_DIR_VAR) else {
        return;
    };
    let mut store = LogStore::open(Path::new(&dir)).unwrap();
    let state = store.get_log_state().await.unwrap();
    let mut next = state.last_log_id.map_or(1, |id| id.index + 1);
    let mut purged = state.last_purged_log_id.map_or(0, |id| id.index);
    let persisted = store.persisted();
    let mut stdout = std::io::stdout();
    // Bounded so a child the parent lost cannot run forever.
    for batch_number in 1..100_000 {
        let batch: Vec<Entry> = (next..next + BATCH).map(entry).collect();
        let last = *batch.last().unwrap().get_log_id();
        store.blocking_append(batch).await.unwrap();
        persisted.reach(last).await.unwrap();
        next += BATCH;
        writeln!(stdout, "{ACK}{}", next - 1).unwrap();
        let upto = (next - 1).saturating_sub(KEEP);
        if batch_number % PURGE_EVERY == 0 && upto > purged {
            store.purge(*entry(upto).get_log_id()).await.unwrap();
            purged = upto;
            writeln!(stdout, "{PURGED}{purged}").unwrap();
        }
        stdout.flush().unwrap();
    }
}

/// What a child acknowledged before it died.
#[derive(Debug, Default)]
struct Acknowledged {
    /// The last index of every append.
    appended: Vec<u64>,
    /// The last index of every purge.
    purged: Vec<u64>,
}

/// Runs one child, kills it with SIGKILL as `kill_at` says and returns everything it
/// acknowledged before it died.
fn run_child_and_kill(dir: &Path, kill_at: KillAt) -> Acknowledged {
    let mut child = Process::new(std::env::current_exe().expect("test binary path"))
        .args([CHILD_TEST, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR_VAR, dir)
        .stdout(Stdio::piped())
        // A child that fails shows why.
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the child");
    let stdout = BufReader::new(child.stdout.take().expect("child stdout"));
    let mut acknowledged = Acknowledged::default();
    let mut killed = false;
    for line in stdout.lines() {
        let line = line.expect("read the child's output");
        // libtest may print its own text before the child's on the same line.
        let just_purged = if let Some((_, index)) = line.split_once(ACK) {
            acknowledged.appended.push(parse_index(index));
            false
        } else if let Some((_, index)) = line.split_once(PURGED) {
            acknowledged.purged.push(parse_index(index));
            true
        } else {
            false
        };
        let appended = acknowledged.appended.len();
        let kill = match kill_at {
            KillAt::Append(count) => !just_purged && appended >= count,
            KillAt::PurgeAfter(count) => just_purged && appended >= count,
        };
        if !killed && kill {
            // Std's kill sends SIGKILL; lines already in the pipe are still read.
            child.kill().expect("kill the child");
            killed = true;
        }
    }
    let status = child.wait().expect("reap the child");
    assert_eq!(
        status.signal(),
        Some(9),
        "the child must die by SIGKILL, not end: {status}"
    );
    acknowledged
}

fn parse_index(text: &str) -> u64 {
    text.trim().parse().expect("an acknowledged index")
}

#[tokio::test]
async fn acknowledged_appends_and_purges_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut previous_last = 0;
    let mut purges = 0;
    for kill_at in ROUNDS {
        let acknowledged = run_child_and_kill(dir.path(), kill_at);

        assert_eq!(
            acknowledged.appended[0],
            previous_last + BATCH,
            "the child continues the log"
        );
        let mut store = LogStore::open(dir.path()).unwrap();
        let state = store.get_log_state().await.unwrap();
        let last = state.last_log_id.map_or(0, |id| id.index);
        let max_appended = *acknowledged.appended.iter().max().unwrap();
        assert!(
            last >= max_appended,
            "acknowledged {max_appended}, but the log ends at {last}"
        );
        let purged = state.last_purged_log_id.map_or(0, |id| id.index);
        let max_purged = acknowledged.purged.iter().copied().max().unwrap_or(0);
        assert!(
            purged >= max_purged,
            "acknowledged a purge up to {max_purged}, but the log is purged up to {purged}"
        );
        if purged > 0 {
            assert_eq!(state.last_purged_log_id, Some(*entry(purged).get_log_id()));
        }
        // The log, purged+1..=last, holds exactly what the child wrote, with no gap.
        let entries = store.try_get_log_entries(..).await.unwrap();
        let expected: Vec<Entry> = (purged + 1..=last).map(entry).collect();
        assert_eq!(entries.len(), expected.len());
        assert!(entries == expected, "the log differs from what was written");
        // A batch is one transaction: the log never ends inside one.
        assert_eq!(
            last % BATCH,
            0,
            "a torn batch survived: the log ends at {last}"
        );
        previous_last = last;
        purges += acknowledged.purged.len();
    }
    assert!(purges > 0, "the children never purged");
}
