//! Read-index rounds shared by the linearizable reads that wait for them, as etcd's read
//! loop shares one ReadIndex among the reads that arrived before it.
//!
//! openraft 0.9 confirms leadership for each `get_read_log_id` call with a heartbeat of its
//! own to every follower, so sixty-four concurrent reads cost sixty-four rounds of messages;
//! and a follower asks the leader over the peer network for each read. Here one round runs
//! at a time and serves every read that asked before it began; a read that asks during a
//! round waits for the next, because the index of a round that began before it could miss a
//! write acknowledged before the read was made.

use std::future::Future;

use openraft::error::{CheckIsLeaderError, RaftError};
use openraft::Raft;
use tokio::sync::{mpsc, oneshot};

use super::error::{fatal, NodeError, Redirect};
use super::{forward_to, peer_paths, REQUEST_TIMEOUT};
use crate::raft::{Member, Transport, TypeConfig};

/// A read's answer: the log index it must see applied (0: nothing yet), or where to go.
pub(super) type Answer = Result<u64, Redirect>;

/// Rounds of one way of getting a read index, each taking the argument of the first read
/// it serves (the leader to ask, for a follower's).
#[derive(Debug)]
pub(super) struct Rounds<A> {
    queue: mpsc::UnboundedSender<(A, oneshot::Sender<Answer>)>,
}

impl<A: Send + 'static> Rounds<A> {
    /// Starts the task that runs rounds of `ask`, which ends once the [`Rounds`] is dropped.
    pub(super) fn start<F, Fut>(ask: F) -> Self
    where
        F: Fn(A) -> Fut + Send + 'static,
        Fut: Future<Output = Answer> + Send + 'static,
    {
        let (queue, waiting) = mpsc::unbounded_channel();
        tokio::spawn(run(ask, waiting));
        Self { queue }
    }

    /// The answer of the next round to begin.
    pub(super) async fn next(&self, argument: A) -> Answer {
        let (answer, answered) = oneshot::channel();
        self.queue
            .send((argument, answer))
            .map_err(|_| Redirect::Failed(NodeError::Stopped))?;
        answered
            .await
            .unwrap_or(Err(Redirect::Failed(NodeError::Stopped)))
    }
}

async fn run<A, F, Fut>(ask: F, mut waiting: mpsc::UnboundedReceiver<(A, oneshot::Sender<Answer>)>)
where
    F: Fn(A) -> Fut,
    Fut: Future<Output = Answer>,
{
    while let Some((argument, first)) = waiting.recv().await {
        let mut round = vec![first];
        while let Ok((_, next)) = waiting.try_recv() {
            round.push(next);
        }
        let answer = ask(argument).await;
        for reader in round {
            // A reader that gave up waiting is fine.
            let _ = reader.send(answer.clone());
        }
    }
}

/// This member's read index, if it leads: confirmed by a quorum's answers to a heartbeat.
pub(super) async fn confirmed_here(raft: Raft<TypeConfig>) -> Answer {
    match tokio::time::timeout(REQUEST_TIMEOUT, raft.get_read_log_id()).await {
        Err(_) => Err(Redirect::Failed(NodeError::Timeout)),
        Ok(Ok((read_index, _applied))) => Ok(read_index.map_or(0, |log_id| log_id.index)),
        Ok(Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(forward)))) => {
            Err(forward.leader_node.map_or(Redirect::Unknown, Redirect::To))
        }
        Ok(Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(_)))) => {
            Err(Redirect::Unknown)
        }
        Ok(Err(RaftError::Fatal(error))) => Err(Redirect::Failed(fatal(&error))),
    }
}

/// The read index of `leader`, asked over the peer network by a member that does not lead.
pub(super) async fn confirmed_by(transport: Transport, leader: Member) -> Answer {
    let deadline = tokio::time::Instant::now() + REQUEST_TIMEOUT;
    match forward_to(&transport, &leader, peer_paths::READ_INDEX, &(), deadline).await {
        Ok(index) => Ok(index),
        // Asking for a read index has no effect: the next round asks the next leader.
        Err(NodeError::NoLeader | NodeError::LeaderFailed) => Err(Redirect::Unknown),
        Err(error) => Err(Redirect::Failed(error)),
    }
}
