//! Group commit for the leader: proposals that arrive while earlier ones are being written
//! travel together as one Raft entry ([`Request::Batch`]), so one log write, and one fsync on
//! each member, carries all of them.
//!
//! openraft 0.9 writes each entry it is given and waits for its flush before it takes the next
//! one, so without this every write would pay a whole fsync on the leader, one after the
//! other. The proposer keeps at most [`IN_FLIGHT`] entries in openraft's hands and gathers
//! whatever arrives meanwhile into the next one. A lone proposal goes as it is, so a quiet
//! cluster's log looks as before.

use std::sync::Arc;

use openraft::error::{ClientWriteError, RaftError};
use openraft::Raft;
use tokio::sync::{mpsc, oneshot, Semaphore};

use super::error::{fatal, NodeError, Redirect};
use crate::raft::{Reply, Request, TypeConfig};

/// How many entries may be proposed and not yet applied at once: enough for the next batch
/// to be written while the previous one is replicated.
const IN_FLIGHT: usize = 2;

/// The most requests one entry carries. Each request is at most `--max-request-bytes`, so
/// this bounds an entry, and a batch of entries, well under the peer body limit.
const MAX_BATCH: usize = 64;

/// A batch stops growing once its requests reach this many bytes in the log's encoding, so
/// that an entry stays small enough to reach followers within one heartbeat (see
/// [`crate::raft::APPEND_ENTRIES_BYTES`]); a single larger request still goes alone.
const MAX_BATCH_BYTES: usize = 256 << 10;

/// One proposal waiting for its entry.
struct Waiting {
    request: Request,
    answer: oneshot::Sender<Result<Reply, Redirect>>,
}

/// Hands proposals to the batching task; clones share it.
#[derive(Debug, Clone)]
pub(super) struct Proposer {
    queue: mpsc::UnboundedSender<Waiting>,
}

impl Proposer {
    /// Starts the batching task, which ends once every [`Proposer`] is dropped.
    pub(super) fn start(raft: Raft<TypeConfig>) -> Self {
        let (queue, waiting) = mpsc::unbounded_channel();
        tokio::spawn(run(raft, waiting));
        Self { queue }
    }

    /// Proposes `request` on this member and returns what applying it produced; a follower
    /// answers with where to go instead.
    pub(super) async fn propose(&self, request: Request) -> Result<Reply, Redirect> {
        let (answer, answered) = oneshot::channel();
        self.queue
            .send(Waiting { request, answer })
            .map_err(|_| Redirect::Failed(NodeError::Stopped))?;
        answered
            .await
            .unwrap_or(Err(Redirect::Failed(NodeError::Stopped)))
    }
}

impl std::fmt::Debug for Waiting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Waiting")
            .field("request", &self.request)
            .finish_non_exhaustive()
    }
}

async fn run(raft: Raft<TypeConfig>, mut waiting: mpsc::UnboundedReceiver<Waiting>) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    loop {
        // Waiting for a slot first lets proposals pile up while the slots are busy.
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let Some(first) = waiting.recv().await else {
            return;
        };
        let mut bytes = encoded_len(&first.request);
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
            match waiting.try_recv() {
                Ok(next) => {
                    bytes += encoded_len(&next.request);
                    batch.push(next);
                }
                Err(_) => break,
            }
        }
        let raft = raft.clone();
        tokio::spawn(async move {
            write(&raft, batch).await;
            drop(slot);
        });
    }
}

/// Proposes `batch` as one entry and hands each proposal its own reply.
async fn write(raft: &Raft<TypeConfig>, mut batch: Vec<Waiting>) {
    if batch.len() == 1 {
        if let Some(only) = batch.pop() {
            let reply = client_write(raft, only.request).await;
            // A proposer that gave up waiting is fine.
            let _ = only.answer.send(reply);
        }
        return;
    }
    let (requests, answers): (Vec<Request>, Vec<_>) = batch
        .into_iter()
        .map(|waiting| (waiting.request, waiting.answer))
        .unzip();
    let count = requests.len();
    match client_write(raft, Request::Batch(requests)).await {
        Ok(Reply::Batch(replies)) if replies.len() == count => {
            for (answer, reply) in answers.into_iter().zip(replies) {
                let _ = answer.send(Ok(reply));
            }
        }
        Ok(other) => {
            let error = NodeError::Storage(format!(
                "the state machine answered a batch of {count} with {other:?}"
            ));
            for answer in answers {
                let _ = answer.send(Err(Redirect::Failed(error.clone())));
            }
        }
        Err(redirect) => {
            for answer in answers {
                let _ = answer.send(Err(redirect.clone()));
            }
        }
    }
}

/// One entry through openraft; a follower says where the leader is.
async fn client_write(raft: &Raft<TypeConfig>, request: Request) -> Result<Reply, Redirect> {
    match raft.client_write(request).await {
        Ok(response) => Ok(response.data),
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(forward))) => {
            Err(forward.leader_node.map_or(Redirect::Unknown, Redirect::To))
        }
        Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(error))) => {
            Err(Redirect::Failed(NodeError::BadRequest(error.to_string())))
        }
        Err(RaftError::Fatal(error)) => Err(Redirect::Failed(fatal(&error))),
    }
}
/// How many bytes `request` takes in the log (serde_json, as the log store writes it).
fn encoded_len(request: &Request) -> usize {
    let mut counter = ByteCounter(0);
    // Requests are plain data, so encoding cannot fail; a failure would only count short.
    let _ = serde_json::to_writer(&mut counter, request);
    counter.0
}

/// A writer that keeps only the count of what was written.
struct ByteCounter(usize);

impl std::io::Write for ByteCounter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0 += bytes.len();
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
