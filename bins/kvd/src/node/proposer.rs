//! Group commit for the leader: proposals that arrive while earlier ones are being written
//! travel together as one Raft entry ([`Request::Batch`]), so one log write, and one fsync on
//! each member, carries all of them.
//!
//! openraft 0.9 writes each entry it is given and waits for its flush before it takes the next
//! one, so without this every write would pay a whole fsync on the leader, one after the
//! other. The proposer keeps one entry in openraft's hands and gathers whatever arrives
//! meanwhile into the next one; a second entry goes out early only when a whole batch is
//! waiting (see [`IN_FLIGHT`]). When an entry's answers go out, the clients that sent it
//! are about to send their next writes: the next entry waits for half of them, a fraction
//! of a round at most (see [`Returning`]), instead of leaving with the first to come back
//! and making the rest wait a whole round. A lone proposal goes as it is, so a quiet
//! cluster's log looks as before.

use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use openraft::Raft;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::error::{fatal, NodeError, Redirect};
use crate::raft::{wire, Reply, Request, TypeConfig};

/// How many entries may be proposed and not yet applied at once. A second entry goes out
/// only with a full batch: below that, requests wait for the entry in flight and share the
/// next one, which costs every member less than two entries (each entry is a log write and
/// an AppendEntries on every member), while more clients than a batch holds are not capped
/// at one batch per round.
const IN_FLIGHT: usize = 2;

/// The most requests one entry carries. Each request is at most `--max-request-bytes`, so
/// this bounds an entry, and a batch of entries, well under the peer body limit.
const MAX_BATCH: usize = 64;

/// A batch stops growing once its requests reach this many bytes in the log's encoding, so
/// that an entry stays small enough to reach followers within one heartbeat (see
/// [`crate::raft::APPEND_ENTRIES_BYTES`]); a single larger request still goes alone.
const MAX_BATCH_BYTES: usize = 256 << 10;

/// The longest the next entry waits for the clients of the last one to come back.
const MAX_LINGER: Duration = Duration::from_micros(500);

/// The share of the last entry's time in openraft's hands that the next one may wait.
const LINGER_SHARE: u32 = 4;

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
    let mut in_flight = JoinSet::new();
    let mut batch = Batch::default();
    let mut returning = Returning::default();
    loop {
        while !batch.is_full() {
            match waiting.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let goes = !batch.requests.is_empty()
            && if in_flight.is_empty() {
                batch.is_full() || returning.enough(batch.requests.len(), Instant::now())
            } else {
                batch.is_full() && in_flight.len() < IN_FLIGHT
            };
        if goes {
            let raft = raft.clone();
            let requests = std::mem::take(&mut batch).requests;
            returning = Returning::default();
            in_flight.spawn(async move {
                let count = requests.len();
                let began = Instant::now();
                write(&raft, requests).await;
                (count, began.elapsed())
            });
            continue;
        }
        // Lingering only matters with requests gathered and nothing else to wait for.
        let linger = returning
            .until
            .filter(|_| in_flight.is_empty() && !batch.requests.is_empty());
        tokio::select! {
            next = waiting.recv(), if !batch.is_full() => match next {
                Some(next) => batch.push(next),
                None => break,
            },
            Some(written) = in_flight.join_next(), if !in_flight.is_empty() => {
                if let Ok((count, took)) = written {
                    returning = Returning::after(count, took, Instant::now());
                }
            }
            () = async {
                match linger {
                    Some(until) => tokio::time::sleep_until(until).await,
                    None => std::future::pending().await,
                }
            } => {}
        }
    }
    // Every proposer is gone: what was gathered still goes, and the writes finish on their own.
    if !batch.requests.is_empty() {
        in_flight.spawn(async move {
            write(&raft, batch.requests).await;
            (0, Duration::ZERO)
        });
    }
    in_flight.detach_all();
}

/// Proposals gathered for the next entry.
#[derive(Default)]
struct Batch {
    requests: Vec<Waiting>,
    /// Their size in the log's encoding.
    bytes: usize,
}

impl Batch {
    fn push(&mut self, waiting: Waiting) {
        self.bytes += wire::encoded_len(&waiting.request);
        self.requests.push(waiting);
    }

    /// Whether the batch takes no more: [`MAX_BATCH`] requests, or [`MAX_BATCH_BYTES`] reached.
    fn is_full(&self) -> bool {
        self.requests.len() >= MAX_BATCH || self.bytes >= MAX_BATCH_BYTES
    }
}

/// The clients of the last entry written, whose next requests are on their way.
#[derive(Debug, Default, Clone, Copy)]
struct Returning {
    /// How many requests that entry carried.
    expected: usize,
    /// How long the next entry may wait for them: a [`LINGER_SHARE`] of the time the last
    /// entry took, at most [`MAX_LINGER`]. `None` when nothing is expected.
    until: Option<Instant>,
}

impl Returning {
    /// After an entry of `count` requests that took `took` was answered at `now`.
    fn after(count: usize, took: Duration, now: Instant) -> Self {
        Self {
            expected: count,
            until: Some(now + (took / LINGER_SHARE).min(MAX_LINGER)),
        }
    }

    /// Whether `gathered` requests may go at `now`: half of those expected are back, or
    /// the wait is over.
    fn enough(&self, gathered: usize, now: Instant) -> bool {
        gathered * 2 >= self.expected || self.until.is_none_or(|until| now >= until)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_nothing_expected_a_proposal_goes_at_once() {
        assert!(Returning::default().enough(1, Instant::now()));
    }

    #[test]
    fn after_an_entry_the_next_waits_for_half_of_its_clients() {
        let now = Instant::now();
        let returning = Returning::after(64, Duration::from_millis(2), now);
        assert!(!returning.enough(31, now));
        assert!(returning.enough(32, now));
    }

    #[test]
    fn one_or_two_clients_never_wait_for_each_other() {
        let now = Instant::now();
        for count in [1, 2] {
            assert!(Returning::after(count, Duration::from_millis(2), now).enough(1, now));
        }
    }

    #[test]
    fn the_wait_is_a_share_of_the_last_entry_and_bounded() {
        let now = Instant::now();
        let quick = Returning::after(64, Duration::from_micros(800), now);
        assert!(!quick.enough(1, now + Duration::from_micros(199)));
        assert!(quick.enough(1, now + Duration::from_micros(200)));
        let slow = Returning::after(64, Duration::from_secs(1), now);
        assert!(!slow.enough(1, now + MAX_LINGER - Duration::from_micros(1)));
        assert!(slow.enough(1, now + MAX_LINGER));
    }
}
