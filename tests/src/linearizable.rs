//! A linearizability checker for histories of register operations (read, write,
//! compare-and-set) on independent keys, for the fault tests of issue 21.
//!
//! Each key is checked on its own (linearizability is compositional). The search is Wing and
//! Gong's with Lowe's memoisation, as in porcupine: walk the history's calls and returns in
//! time order, linearize a pending call when the model allows its outcome, backtrack at a
//! return whose call could not be placed, and never revisit a (set of linearized operations,
//! register value) pair. An operation whose outcome is unknown (a timeout, a lost
//! connection) returns at infinity: it may take effect at any point after its call, or never.

use std::collections::{BTreeMap, HashSet};
use std::hash::{Hash, Hasher};

/// What a client asked of one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// Read the key.
    Read,
    /// Set it to a value.
    Write(String),
    /// Set it to `new` if it holds `expected` (`None`: the key is absent).
    Cas {
        /// The value it must hold.
        expected: Option<String>,
        /// The value it gets.
        new: String,
    },
}

/// How an operation ended, as the client saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A read's answer (`None`: absent).
    Read(Option<String>),
    /// A write was acknowledged.
    Written,
    /// A compare-and-set answered whether it succeeded.
    Cas(bool),
    /// No answer: it may or may not have taken effect.
    Unknown,
}

/// One operation of a history: its key, call, outcome, and when it was invoked and when it
/// completed (any monotonic clock; `completed` is ignored for an unknown outcome).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    /// The client that ran it, for reports.
    pub client: usize,
    /// The key.
    pub key: String,
    /// What was asked.
    pub call: Call,
    /// What came back.
    pub outcome: Outcome,
    /// Invocation time.
    pub invoked: u64,
    /// Completion time.
    pub completed: u64,
}

/// The verdict for a history: every key linearizable, or the first key that is not, with
/// its operations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every key's operations are linearizable.
    Linearizable,
    /// This key's operations admit no linearization.
    Violation {
        /// The key.
        key: String,
        /// Its operations, in invocation order.
        operations: Vec<Operation>,
    },
    /// The search for this key's linearization visited [`MAX_STATES`] states without an
    /// answer (the other keys may be unchecked).
    Undecided {
        /// The key.
        key: String,
    },
}

/// How many (linearized set, register value) states one key's search may remember: about
/// 500 MB. Histories whose operations are all settled need far fewer.
pub const MAX_STATES: usize = 10_000_000;

/// Checks `history`, key by key.
pub fn check(history: &[Operation]) -> Verdict {
    let mut by_key: BTreeMap<&str, Vec<&Operation>> = BTreeMap::new();
    for op in history {
        by_key.entry(&op.key).or_default().push(op);
    }
    for (key, ops) in by_key {
        let Some(linearizable) = linearizable(&ops) else {
            return Verdict::Undecided {
                key: key.to_string(),
            };
        };
        if !linearizable {
            let mut operations: Vec<Operation> = ops.into_iter().cloned().collect();
            operations.sort_by_key(|op| op.invoked);
            return Verdict::Violation {
                key: key.to_string(),
                operations,
            };
        }
    }
    Verdict::Linearizable
}

/// The register after `call` with `outcome` from `state`, if the model allows that outcome.
fn step(state: &Option<String>, call: &Call, outcome: &Outcome) -> Option<Option<String>> {
    match (call, outcome) {
        (Call::Read, Outcome::Read(value)) => (value == state).then(|| state.clone()),
        (Call::Read, Outcome::Unknown) => Some(state.clone()),
        (Call::Write(value), Outcome::Written | Outcome::Unknown) => Some(Some(value.clone())),
        (Call::Cas { expected, new }, Outcome::Cas(true)) => {
            (expected == state).then(|| Some(new.clone()))
        }
        (Call::Cas { expected, .. }, Outcome::Cas(false)) => {
            (expected != state).then(|| state.clone())
        }
        (Call::Cas { expected, new }, Outcome::Unknown) => Some(if expected == state {
            Some(new.clone())
        } else {
            state.clone()
        }),
        _ => None,
    }
}

/// A call or return event in the doubly linked list the search walks.
#[derive(Debug, Clone, Copy)]
struct Event {
    op: usize,
    is_call: bool,
    /// For a call, the index of its return event.
    matching: usize,
}

/// Whether one key's operations have a linearization; `None` past [`MAX_STATES`].
fn linearizable(ops: &[&Operation]) -> Option<bool> {
    // Unknown reads tell nothing and change nothing.
    let ops: Vec<&Operation> = ops
        .iter()
        .copied()
        .filter(|op| !(op.call == Call::Read && op.outcome == Outcome::Unknown))
        .collect();
    let mut timed: Vec<(u64, bool, usize)> = Vec::with_capacity(ops.len() * 2);
    for (index, op) in ops.iter().enumerate() {
        let returned = if op.outcome == Outcome::Unknown {
            u64::MAX
        } else {
            op.completed
        };
        // Calls before returns at the same instant: touching operations overlap.
        timed.push((op.invoked, false, index));
        timed.push((returned, true, index));
    }
    timed.sort();
    let mut events: Vec<Event> = Vec::with_capacity(timed.len());
    let mut return_at = vec![0; ops.len()];
    for (position, (_, is_return, op)) in timed.iter().enumerate() {
        if *is_return {
            return_at[*op] = position;
        }
        events.push(Event {
            op: *op,
            is_call: !is_return,
            matching: 0,
        });
    }
    for event in &mut events {
        if event.is_call {
            event.matching = return_at[event.op];
        }
    }
    let len = events.len();
    if len == 0 {
        return Some(true);
    }
    // The events as a doubly linked list, so that an operation's two events can be lifted
    // out and put back in constant time; index `len` is the head, `usize::MAX` the end.
    let mut next: Vec<usize> = (0..=len).map(|i| i + 1).collect();
    let mut prev: Vec<usize> = (0..=len).map(|i| i.wrapping_sub(1)).collect();
    next[len - 1] = usize::MAX;
    next[len] = 0;
    prev[0] = len;
    let lift = |next: &mut Vec<usize>, prev: &mut Vec<usize>, at: usize| {
        let (p, n) = (prev[at], next[at]);
        next[p] = n;
        if n != usize::MAX {
            prev[n] = p;
        }
    };
    let unlift = |next: &mut Vec<usize>, prev: &mut Vec<usize>, at: usize| {
        let (p, n) = (prev[at], next[at]);
        next[p] = at;
        if n != usize::MAX {
            prev[n] = at;
        }
    };
    let known = ops
        .iter()
        .filter(|op| op.outcome != Outcome::Unknown)
        .count();
    let mut linearized = vec![0u64; ops.len().div_ceil(64)];
    // States seen, as 128-bit fingerprints: a copy of the set per state would take
    // kilobytes each on long histories.
    let mut cache: HashSet<u128> = HashSet::new();
    let mut state: Option<String> = None;
    // What was linearized, to undo: the call's event and the state before it.
    let mut stack: Vec<(usize, Option<String>)> = Vec::new();
    let mut done_known = 0;
    let mut at = next[len];
    loop {
        if done_known == known {
            return Some(true);
        }
        if at == usize::MAX {
            // Only operations of unknown outcome remain, and they need not take effect.
            return Some(true);
        }
        let event = events[at];
        if event.is_call {
            let op = ops[event.op];
            if let Some(after) = step(&state, &op.call, &op.outcome) {
                let mut marked = linearized.clone();
                marked[event.op / 64] |= 1 << (event.op % 64);
                if cache.len() >= MAX_STATES {
                    return None;
                }
                if cache.insert(fingerprint(&marked, &after)) {
                    stack.push((at, std::mem::replace(&mut state, after)));
                    linearized = marked;
                    if op.outcome != Outcome::Unknown {
                        done_known += 1;
                    }
                    lift(&mut next, &mut prev, at);
                    lift(&mut next, &mut prev, event.matching);
                    at = next[len];
                    continue;
                }
            }
            at = next[at];
        } else {
            // A return whose call could not be placed: undo the last placement.
            let Some((call_at, before)) = stack.pop() else {
                return Some(false);
            };
            let call = events[call_at];
            state = before;
            linearized[call.op / 64] &= !(1 << (call.op % 64));
            if ops[call.op].outcome != Outcome::Unknown {
                done_known -= 1;
            }
            unlift(&mut next, &mut prev, call.matching);
            unlift(&mut next, &mut prev, call_at);
            at = next[call_at];
        }
    }
}

/// A 128-bit fingerprint of a search state: two SipHashes of it under different prefixes.
fn fingerprint(linearized: &[u64], state: &Option<String>) -> u128 {
    let half = |prefix: u8| {
        let mut hasher = std::hash::DefaultHasher::new();
        prefix.hash(&mut hasher);
        linearized.hash(&mut hasher);
        state.hash(&mut hasher);
        hasher.finish()
    };
    (u128::from(half(0)) << 64) | u128::from(half(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(client: usize, call: Call, outcome: Outcome, invoked: u64, completed: u64) -> Operation {
        Operation {
            client,
            key: "k".into(),
            call,
            outcome,
            invoked,
            completed,
        }
    }

    fn write(client: usize, value: &str, invoked: u64, completed: u64) -> Operation {
        op(
            client,
            Call::Write(value.into()),
            Outcome::Written,
            invoked,
            completed,
        )
    }

    fn read(client: usize, value: Option<&str>, invoked: u64, completed: u64) -> Operation {
        op(
            client,
            Call::Read,
            Outcome::Read(value.map(Into::into)),
            invoked,
            completed,
        )
    }

    #[test]
    fn sequential_and_overlapping_histories_that_have_an_order_pass() {
        let history = [write(0, "1", 0, 10), read(1, Some("1"), 11, 20)];
        assert_eq!(check(&history), Verdict::Linearizable);
        // The read overlaps the write: either value is fine.
        for seen in [None, Some("1")] {
            let history = [write(0, "1", 0, 10), read(1, seen, 5, 15)];
            assert_eq!(check(&history), Verdict::Linearizable, "{seen:?}");
        }
        let history = [
            write(0, "1", 0, 10),
            write(1, "2", 5, 15),
            read(2, Some("1"), 12, 20),
            read(3, Some("2"), 21, 30),
        ];
        assert_eq!(check(&history), Verdict::Linearizable);
    }

    #[test]
    fn a_stale_read_after_an_acknowledged_write_is_a_violation() {
        let history = [write(0, "1", 0, 10), read(1, None, 11, 20)];
        let Verdict::Violation { key, operations } = check(&history) else {
            panic!("a stale read must be found");
        };
        assert_eq!((key.as_str(), operations.len()), ("k", 2));
        // Reads that go back in time: 2 then 1 after both writes completed.
        let history = [
            write(0, "1", 0, 10),
            write(1, "2", 11, 20),
            read(2, Some("2"), 21, 30),
            read(3, Some("1"), 31, 40),
        ];
        assert!(matches!(check(&history), Verdict::Violation { .. }));
    }

    #[test]
    fn unknown_outcomes_may_take_effect_late_or_never() {
        let lost = op(0, Call::Write("1".into()), Outcome::Unknown, 0, 0);
        assert_eq!(
            check(&[lost.clone(), read(1, None, 50, 60)]),
            Verdict::Linearizable
        );
        assert_eq!(
            check(&[
                lost.clone(),
                read(1, None, 50, 60),
                read(2, Some("1"), 70, 80)
            ]),
            Verdict::Linearizable,
            "an unknown write may take effect long after its call"
        );
        assert!(
            matches!(
                check(&[lost, read(1, Some("1"), 50, 60), read(2, None, 70, 80)]),
                Verdict::Violation { .. }
            ),
            "but once seen it cannot be undone"
        );
        let ghost = [read(0, Some("7"), 0, 10)];
        assert!(
            matches!(check(&ghost), Verdict::Violation { .. }),
            "a value nobody wrote"
        );
    }

    #[test]
    fn compare_and_set_follows_the_register() {
        let cas = |client, expected: Option<&str>, new: &str, ok, invoked, completed| {
            op(
                client,
                Call::Cas {
                    expected: expected.map(Into::into),
                    new: new.into(),
                },
                Outcome::Cas(ok),
                invoked,
                completed,
            )
        };
        let history = [
            write(0, "1", 0, 10),
            cas(1, Some("1"), "2", true, 11, 20),
            cas(2, Some("1"), "3", false, 21, 30),
            read(3, Some("2"), 31, 40),
        ];
        assert_eq!(check(&history), Verdict::Linearizable);
        // Two sequential compare-and-sets from the same value cannot both succeed.
        let history = [
            write(0, "1", 0, 10),
            cas(1, Some("1"), "2", true, 11, 20),
            cas(2, Some("1"), "3", true, 21, 30),
        ];
        assert!(matches!(check(&history), Verdict::Violation { .. }));
    }

    #[test]
    fn keys_are_checked_apart_and_the_bad_one_is_named() {
        let mut other = write(0, "x", 0, 10);
        other.key = "other".into();
        let mut stale = read(1, None, 11, 20);
        stale.key = "other".into();
        let history = [
            write(2, "1", 0, 10),
            read(3, Some("1"), 11, 20),
            other,
            stale,
        ];
        let Verdict::Violation { key, .. } = check(&history) else {
            panic!("the stale read of `other` must be found");
        };
        assert_eq!(key, "other");
    }

    #[test]
    fn a_history_of_many_concurrent_operations_is_checked_quickly() {
        // Eight clients writing their own values and reading, in overlapping rounds.
        let mut history = Vec::new();
        let mut last = None;
        for round in 0..200u64 {
            let base = round * 100;
            for client in 0..4usize {
                let value = format!("{round}-{client}");
                history.push(write(client, &value, base + client as u64, base + 50));
            }
            last = Some(format!("{round}-3"));
            for client in 4..8usize {
                history.push(read(client, last.as_deref(), base + 60, base + 90));
            }
        }
        let started = std::time::Instant::now();
        assert_eq!(check(&history), Verdict::Linearizable);
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        assert!(last.is_some());
    }
}
