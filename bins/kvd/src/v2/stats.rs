//! Counts of v2 operations by kind and outcome, shown by `/v2/stats/store`.

use serde::{Deserialize, Serialize};

/// The write kinds counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StatsCounter {
    Set,
    Create,
    Update,
    CompareAndSwap,
    Delete,
    CompareAndDelete,
}

/// Applied writes by kind and outcome, and expired nodes. Part of the replicated state:
/// every replica applies the same commands, so every replica counts the same.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Stats {
    /// Successful sets.
    pub sets_success: u64,
    /// Refused sets.
    pub sets_fail: u64,
    /// Successful deletes.
    pub delete_success: u64,
    /// Refused deletes.
    pub delete_fail: u64,
    /// Successful updates.
    pub update_success: u64,
    /// Refused updates.
    pub update_fail: u64,
    /// Successful creates.
    pub create_success: u64,
    /// Refused creates.
    pub create_fail: u64,
    /// Successful compare-and-swaps.
    pub compare_and_swap_success: u64,
    /// Refused compare-and-swaps.
    pub compare_and_swap_fail: u64,
    /// Successful compare-and-deletes.
    pub compare_and_delete_success: u64,
    /// Refused compare-and-deletes.
    pub compare_and_delete_fail: u64,
    /// Nodes removed because their TTL ran out.
    #[serde(rename = "expireCount")]
    pub expired: u64,
}

impl Stats {
    pub(crate) fn count(&mut self, counter: StatsCounter, ok: bool) {
        let (success, fail) = match counter {
            StatsCounter::Set => (&mut self.sets_success, &mut self.sets_fail),
            StatsCounter::Create => (&mut self.create_success, &mut self.create_fail),
            StatsCounter::Update => (&mut self.update_success, &mut self.update_fail),
            StatsCounter::Delete => (&mut self.delete_success, &mut self.delete_fail),
            StatsCounter::CompareAndSwap => (
                &mut self.compare_and_swap_success,
                &mut self.compare_and_swap_fail,
            ),
            StatsCounter::CompareAndDelete => (
                &mut self.compare_and_delete_success,
                &mut self.compare_and_delete_fail,
            ),
        };
        if ok {
            *success += 1;
        } else {
            *fail += 1;
        }
    }
}
