//! Read-index rounds shared by the linearizable reads that wait for them, as etcd's read
//! loop shares one ReadIndex among the reads that arrived before it.
//!
//! openraft 0.9 confirms leadership for each `get_read_log_id` call with a heartbeat of its
//! own to every follower, so sixty-four concurrent reads cost sixty-four rounds of messages.
//! Here one round runs at a time and serves every read that asked before it began; a read
//! that asks during a round waits for the next, because the index of a round that began
//! before it could miss a write acknowledged before the read was made.

use openraft::error::{CheckIsLeaderError, RaftError};
use openraft::Raft;
use tokio::sync::{mpsc, oneshot};

use super::error::{fatal, NodeError, Redirect};
use super::REQUEST_TIMEOUT;
use crate::raft::TypeConfig;

/// A read's answer: the log index it must see applied (0: nothing yet), or where to go.
type Answer = Result<u64, Redirect>;

/// Hands reads to the task that runs the rounds; clones share it.
#[derive(Debug, Clone)]
pub(super) struct ReadIndex {
    queue: mpsc::UnboundedSender<oneshot::Sender<Answer>>,
}

impl ReadIndex {
    /// Starts the task that runs the rounds, which ends once every [`ReadIndex`] is dropped.
    pub(super) fn start(raft: Raft<TypeConfig>) -> Self {
        let (queue, waiting) = mpsc::unbounded_channel();
        tokio::spawn(run(raft, waiting));
        Self { queue }
    }

    /// The read index of the next round to begin; a follower answers with where the leader is.
    pub(super) async fn next(&self) -> Answer {
        let (answer, answered) = oneshot::channel();
        self.queue
            .send(answer)
            .map_err(|_| Redirect::Failed(NodeError::Stopped))?;
        answered
            .await
            .unwrap_or(Err(Redirect::Failed(NodeError::Stopped)))
    }
}

async fn run(
    raft: Raft<TypeConfig>,
    mut waiting: mpsc::UnboundedReceiver<oneshot::Sender<Answer>>,
) {
    while let Some(first) = waiting.recv().await {
        let mut round = vec![first];
        while let Ok(next) = waiting.try_recv() {
            round.push(next);
        }
        let answer = match tokio::time::timeout(REQUEST_TIMEOUT, raft.get_read_log_id()).await {
            Err(_) => Err(Redirect::Failed(NodeError::Timeout)),
            Ok(Ok((read_index, _applied))) => Ok(read_index.map_or(0, |log_id| log_id.index)),
            Ok(Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(forward)))) => {
                Err(forward.leader_node.map_or(Redirect::Unknown, Redirect::To))
            }
            Ok(Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(_)))) => {
                Err(Redirect::Unknown)
            }
            Ok(Err(RaftError::Fatal(error))) => Err(Redirect::Failed(fatal(&error))),
        };
        for reader in round {
            // A reader that gave up waiting is fine.
            let _ = reader.send(answer.clone());
        }
    }
}
