//! Lease expiry, which only the leader measures: a deadline per lease, pushed back by
//! keep-alives, and a revocation proposed through Raft when a deadline passes.
//!
//! Deadlines live in the leader's memory alone. A new leader gives every lease a full TTL
//! from the moment it took over, as etcd's lessor does on promotion, so a leader change can
//! extend a lease but never cut one short.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::v3::Lease;

/// How long a proposed revocation may stay unanswered before it is proposed again.
const REVOKE_RETRY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy)]
struct Deadline {
    at: Instant,
    revoke_proposed: Option<Instant>,
}

/// The leader's lease deadlines.
#[derive(Debug, Default)]
pub struct LeaseClock {
    state: Mutex<ClockState>,
}

#[derive(Debug, Default)]
struct ClockState {
    /// The term these deadlines were measured in; a new term starts them over.
    term: Option<u64>,
    deadlines: HashMap<i64, Deadline>,
}

impl LeaseClock {
    /// Brings the deadlines in line with the leases the store holds, as leader of `term` at
    /// `now`, and returns the leases whose revocation should be proposed now.
    pub fn tick(&self, term: u64, leases: &[Lease], now: Instant) -> Vec<i64> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.term != Some(term) {
            state.term = Some(term);
            state.deadlines.clear();
        }
        state
            .deadlines
            .retain(|id, _| leases.iter().any(|lease| lease.id == *id));
        let mut expired = Vec::new();
        for lease in leases {
            let deadline = state.deadlines.entry(lease.id).or_insert(Deadline {
                at: now + ttl(lease.ttl),
                revoke_proposed: None,
            });
            let due = deadline.at <= now
                && deadline
                    .revoke_proposed
                    .is_none_or(|proposed| now.duration_since(proposed) >= REVOKE_RETRY);
            if due {
                deadline.revoke_proposed = Some(now);
                expired.push(lease.id);
            }
        }
        expired
    }

    /// Forgets every deadline: this node is no longer leader.
    pub fn stand_down(&self) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.term = None;
        state.deadlines.clear();
    }

    /// Renews `lease` for its full TTL from `now`; returns the TTL.
    pub fn renew(&self, lease: Lease, now: Instant) -> i64 {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.deadlines.insert(
            lease.id,
            Deadline {
                at: now + ttl(lease.ttl),
                revoke_proposed: None,
            },
        );
        lease.ttl
    }

    /// The whole seconds `lease` has left at `now` (its full TTL if no deadline is set yet).
    pub fn remaining(&self, lease: Lease, now: Instant) -> i64 {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        match state.deadlines.get(&lease.id) {
            Some(deadline) => i64::try_from(deadline.at.saturating_duration_since(now).as_secs())
                .unwrap_or(i64::MAX),
            None => lease.ttl,
        }
    }
}

fn ttl(seconds: i64) -> Duration {
    Duration::from_secs(u64::try_from(seconds).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(id: i64, ttl: i64) -> Lease {
        Lease { id, ttl }
    }

    #[test]
    fn a_lease_expires_after_its_ttl_unless_renewed() {
        let clock = LeaseClock::default();
        let start = Instant::now();
        let leases = [lease(1, 2), lease(2, 2)];
        assert!(clock.tick(1, &leases, start).is_empty());

        clock.renew(leases[1], start + Duration::from_secs(1));

        assert_eq!(clock.tick(1, &leases, start + Duration::from_secs(2)), [1]);
        assert_eq!(
            clock.remaining(leases[1], start + Duration::from_secs(2)),
            1
        );
        // Lease 1's revocation was applied by then.
        assert_eq!(
            clock.tick(1, &leases[1..], start + Duration::from_secs(3)),
            [2]
        );
    }

    #[test]
    fn a_revocation_is_proposed_again_only_after_the_retry_interval() {
        let clock = LeaseClock::default();
        let start = Instant::now();
        let leases = [lease(7, 1)];
        clock.tick(1, &leases, start);
        let due = start + Duration::from_secs(1);

        assert_eq!(clock.tick(1, &leases, due), [7]);
        assert!(clock
            .tick(1, &leases, due + Duration::from_millis(500))
            .is_empty());
        assert_eq!(clock.tick(1, &leases, due + REVOKE_RETRY), [7]);
    }

    #[test]
    fn a_new_term_gives_every_lease_a_full_ttl() {
        let clock = LeaseClock::default();
        let start = Instant::now();
        let leases = [lease(3, 5)];
        clock.tick(1, &leases, start);
        let later = start + Duration::from_secs(4);

        assert!(clock.tick(2, &leases, later).is_empty());
        assert_eq!(clock.remaining(leases[0], later), 5);
        assert!(clock
            .tick(2, &leases, later + Duration::from_secs(4))
            .is_empty());
    }

    #[test]
    fn revoked_leases_are_forgotten() {
        let clock = LeaseClock::default();
        let start = Instant::now();
        clock.tick(1, &[lease(1, 1)], start);
        clock.tick(1, &[], start);
        assert_eq!(clock.remaining(lease(1, 1), start), 1);
    }
}
