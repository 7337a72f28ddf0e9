//! Moving the lead to another voter, as etcd's MoveLeader does.
//!
//! openraft 0.9 has no leadership transfer, and a follower refuses to vote while its leader
//! lease holds ([`super::leader_lease`] since the leader last reached it). So the leader holds
//! every request that would reach Raft, waits for the target to hold its whole log, stops its
//! heartbeats, waits out the lease, and asks the target to stand for election. The other
//! followers would stand only after the lease and a full election timeout, so the target
//! stands first and wins. Whatever happens, the leader's heartbeats and requests resume.

use tokio::time::Instant;

use super::{peer_paths, Node, NodeError};
use crate::raft::NodeId;

impl Node {
    /// Moves the lead to the voter `target` and returns once it leads, with the store's
    /// revision then. Only the leader can; a target that is not a voter is refused, and
    /// moving it to itself changes nothing.
    pub async fn move_leader(&self, target: NodeId) -> Result<i64, NodeError> {
        if !self.is_leader() {
            return Err(NodeError::NotLeader);
        }
        let metrics = self.inner.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership();
        if !membership.voter_ids().any(|voter| voter == target) {
            return Err(NodeError::BadLeaderTransferee);
        }
        if target == self.inner.id {
            return Ok(self.inner.machine.read(crate::v3::Store::revision));
        }
        let member = membership
            .get_node(&target)
            .cloned()
            .ok_or(NodeError::BadLeaderTransferee)?;
        let lease = super::leader_lease(&self.inner.config);
        let deadline = Instant::now() + lease + super::REQUEST_TIMEOUT;
        let _held = Hold::start(self);
        self.wait_until_caught_up(target, deadline).await?;
        self.inner.raft.runtime_config().heartbeat(false);
        // Past the lease of every follower the leader reached last just now.
        tokio::time::sleep(lease + self.inner.config.heartbeat).await;
        super::forward_to::<_, ()>(
            &self.inner.transport,
            &member,
            peer_paths::CAMPAIGN,
            &(),
            deadline,
        )
        .await?;
        let mut leader = self.inner.raft.metrics();
        tokio::time::timeout_at(
            deadline,
            leader.wait_for(|metrics| metrics.current_leader == Some(target)),
        )
        .await
        .map_err(|_| NodeError::LeaderTransferTimeout)?
        .map_err(|_| NodeError::Stopped)?;
        Ok(self.inner.machine.read(crate::v3::Store::revision))
    }

    /// Stands for election at once: the leader asks this of the member it moves the lead to.
    pub(super) async fn campaign(&self) -> Result<(), NodeError> {
        self.inner
            .raft
            .trigger()
            .elect()
            .await
            .map_err(|error| super::error::fatal(&error))
    }

    /// Waits while the lead is being moved away from this member; requests that would reach
    /// Raft meanwhile would renew the followers' leases and hold the transfer up.
    pub(super) async fn wait_for_transfer(&self, deadline: Instant) -> Result<(), NodeError> {
        let mut moving = self.inner.moving_lead.subscribe();
        tokio::time::timeout_at(deadline, moving.wait_for(|moving| !moving))
            .await
            .map_err(|_| NodeError::Timeout)?
            .map_err(|_| NodeError::Stopped)?;
        Ok(())
    }

    async fn wait_until_caught_up(
        &self,
        target: NodeId,
        deadline: Instant,
    ) -> Result<(), NodeError> {
        let mut metrics = self.inner.raft.metrics();
        let caught_up = metrics.wait_for(|metrics| {
            let matched = metrics
                .replication
                .as_ref()
                .and_then(|replication| replication.get(&target).copied().flatten());
            matched.map(|log_id| log_id.index) >= metrics.last_log_index
        });
        tokio::time::timeout_at(deadline, caught_up)
            .await
            .map_err(|_| NodeError::LeaderTransferTimeout)?
            .map_err(|_| NodeError::Stopped)?;
        Ok(())
    }
}

/// Holds requests and, once dropped, lets them and the heartbeats go again.
struct Hold<'a>(&'a Node);

impl<'a> Hold<'a> {
    fn start(node: &'a Node) -> Self {
        node.inner.moving_lead.send_replace(true);
        Self(node)
    }
}

impl Drop for Hold<'_> {
    fn drop(&mut self) {
        self.0.inner.raft.runtime_config().heartbeat(true);
        self.0.inner.moving_lead.send_replace(false);
    }
}
