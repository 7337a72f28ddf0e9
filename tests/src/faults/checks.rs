//! The checkers that compare a run's records with the store's history: every acknowledged
//! write is in the history at the revision it was acknowledged with, no refused write is,
//! no write is applied twice, the history has no gap, and every watcher saw exactly the
//! history, in order. (Linearizability of each key is `crate::linearizable`'s.)

use std::collections::HashMap;
use std::fmt;

use super::watchers::Seen;
use super::workload::{Ending, Record};
use crate::linearizable::{Call, Operation, Outcome};

/// One anomaly: which checker found it, what it is, and the evidence.
#[derive(Debug, Clone)]
pub struct Violation {
    /// The checker.
    pub checker: &'static str,
    /// What is wrong.
    pub what: String,
    /// The operations or events that show it.
    pub evidence: Vec<String>,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}: {}", self.checker, self.what)?;
        for line in &self.evidence {
            writeln!(f, "    {line}")?;
        }
        Ok(())
    }
}

/// How many anomalies of one kind are shown in full.
const SHOWN: usize = 5;

/// Every write's fate against `history`: acknowledged writes present at their revision,
/// refused writes absent, none applied twice.
pub fn writes(records: &[Record], history: &[Seen]) -> Vec<Violation> {
    let by_value = puts_by_value(history);
    let mut lost = Vec::new();
    let mut misplaced = Vec::new();
    let mut refused_applied = Vec::new();
    let mut twice = Vec::new();
    for record in records {
        let Some(value) = record.written_value() else {
            continue;
        };
        let found = by_value
            .get(&(record.operation.key.as_str(), value))
            .map_or(&[][..], Vec::as_slice);
        if found.len() > 1 {
            twice.push(format!(
                "{} at revisions {:?}",
                describe(record),
                revisions(found)
            ));
        }
        match (&record.ending, found.first()) {
            (Ending::Answered { .. }, None) if record.acknowledged_write() => {
                lost.push(describe(record));
            }
            (Ending::Answered { revision }, Some(seen))
                if record.acknowledged_write() && seen.revision != *revision =>
            {
                misplaced.push(format!(
                    "{}, in the history at {}",
                    describe(record),
                    seen.revision
                ));
            }
            (Ending::Answered { .. }, Some(seen)) if !record.acknowledged_write() => {
                refused_applied.push(format!("{}, yet in the history: {seen}", describe(record)));
            }
            (Ending::Refused(_), Some(seen)) => {
                refused_applied.push(format!("{}, yet in the history: {seen}", describe(record)));
            }
            _ => {}
        }
    }
    [
        (
            "lost writes",
            "acknowledged writes missing from the history",
            lost,
        ),
        (
            "lost writes",
            "acknowledged writes at another revision than acknowledged",
            misplaced,
        ),
        (
            "lost writes",
            "writes refused or not done that took effect",
            refused_applied,
        ),
        ("lost writes", "writes applied more than once", twice),
    ]
    .into_iter()
    .filter(|(_, _, found)| !found.is_empty())
    .map(|(checker, what, found)| Violation {
        checker,
        what: format!("{} {what}", found.len()),
        evidence: found.into_iter().take(SHOWN).collect(),
    })
    .collect()
}

/// The history's puts by (key under [`super::workload::PREFIX`], value): every value a run
/// writes is its own, so one entry is one write's effect (two are a write applied twice).
fn puts_by_value(history: &[Seen]) -> HashMap<(&str, &str), Vec<&Seen>> {
    let mut by_value: HashMap<(&str, &str), Vec<&Seen>> = HashMap::new();
    for seen in history.iter().filter(|seen| !seen.deleted) {
        let key = seen
            .key
            .strip_prefix(super::workload::PREFIX)
            .unwrap_or(&seen.key);
        by_value.entry((key, &seen.value)).or_default().push(seen);
    }
    by_value
}

/// The operations for the linearizability checker, with the indeterminate ones settled by
/// the store's history (which [`writes`], [`gaps`] and the watchers check): refused
/// operations and unanswered reads never took effect and are left out; an unanswered
/// write whose value the history lacks never took effect either; one whose value it has
/// took effect, at its revision, before the first answer that carried that revision or a
/// later one, so it is checked as acknowledged then. Settled, nothing returns at infinity,
/// which keeps the search small however many operations were in doubt.
pub fn settled(records: &[Record], history: &[Seen]) -> Vec<Operation> {
    let by_value = puts_by_value(history);
    // The earliest completion among answers carrying each revision or a later one.
    let mut earliest: Vec<(i64, u64)> = records
        .iter()
        .filter_map(|record| match record.ending {
            Ending::Answered { revision } => Some((revision, record.operation.completed)),
            _ => None,
        })
        .collect();
    earliest.sort_unstable();
    for index in (0..earliest.len().saturating_sub(1)).rev() {
        earliest[index].1 = earliest[index].1.min(earliest[index + 1].1);
    }
    let known_by = |revision: i64| {
        let at = earliest.partition_point(|(answered, _)| *answered < revision);
        earliest.get(at).map(|(_, completed)| *completed)
    };
    records
        .iter()
        .filter_map(|record| {
            let op = &record.operation;
            match (&record.ending, &op.call) {
                (Ending::Answered { .. }, _) => Some(op.clone()),
                (Ending::Refused(_), _) | (Ending::Unknown(_), Call::Read) => None,
                (Ending::Unknown(_), Call::Write(value) | Call::Cas { new: value, .. }) => {
                    let seen = by_value.get(&(op.key.as_str(), value.as_str()))?.first()?;
                    let mut settled = op.clone();
                    settled.outcome = match op.call {
                        Call::Write(_) => Outcome::Written,
                        _ => Outcome::Cas(true),
                    };
                    match known_by(seen.revision) {
                        Some(completed) => settled.completed = completed.max(op.invoked),
                        None => settled.outcome = Outcome::Unknown,
                    }
                    Some(settled)
                }
            }
        })
        .collect()
}

fn revisions(found: &[&Seen]) -> Vec<i64> {
    found.iter().map(|seen| seen.revision).collect()
}

/// A record as a report line.
pub fn describe(record: &Record) -> String {
    let op = &record.operation;
    let ending = match &record.ending {
        Ending::Answered { revision } => format!("{:?} at rev {revision}", op.outcome),
        Ending::Refused(why) => format!("refused: {why}"),
        Ending::Unknown(why) => format!("unknown: {why}"),
    };
    format!(
        "client {} ({}, member {}) {:?} {} [{:.3}-{:.3} s]: {ending}",
        op.client,
        record.api.name(),
        record.member,
        op.call,
        op.key,
        op.invoked as f64 / 1e6,
        op.completed as f64 / 1e6,
    )
}

/// Every answered read and compare-and-set against the history at the revision its answer
/// carries: the value it saw must be the key's value at that revision, and that revision
/// must not be older than any write to the key acknowledged before it began (a stale read);
/// writes acknowledged one after the other must have increasing revisions. These locate
/// what the linearizability checker only says exists, with the operations involved.
pub fn revisions_in_order(records: &[Record], history: &[Seen]) -> Vec<Violation> {
    let mut puts: HashMap<&str, Vec<(i64, &str)>> = HashMap::new();
    for seen in history.iter().filter(|seen| !seen.deleted) {
        let key = seen
            .key
            .strip_prefix(super::workload::PREFIX)
            .unwrap_or(&seen.key);
        puts.entry(key)
            .or_default()
            .push((seen.revision, &seen.value));
    }
    let value_at = |key: &str, revision: i64| -> Option<&str> {
        let puts = puts.get(key)?;
        let before = puts.partition_point(|(at, _)| *at <= revision);
        before.checked_sub(1).map(|index| puts[index].1)
    };
    // Acknowledged writes per key, by completion time.
    let mut acknowledged: HashMap<&str, Vec<(u64, i64, &Record)>> = HashMap::new();
    for record in records.iter().filter(|record| record.acknowledged_write()) {
        if let Ending::Answered { revision } = record.ending {
            acknowledged
                .entry(&record.operation.key)
                .or_default()
                .push((record.operation.completed, revision, record));
        }
    }
    for writes in acknowledged.values_mut() {
        writes.sort_by_key(|(completed, _, _)| *completed);
    }
    // The newest acknowledged write to `key` completed before `instant`.
    let newest_before = |key: &str, instant: u64| -> Option<&(u64, i64, &Record)> {
        let writes = acknowledged.get(key)?;
        let before = writes.partition_point(|(completed, _, _)| *completed < instant);
        writes[..before]
            .iter()
            .max_by_key(|(_, revision, _)| *revision)
    };
    let mut wrong = Vec::new();
    let mut stale = Vec::new();
    let mut reordered = Vec::new();
    for record in records {
        let Ending::Answered { revision } = record.ending else {
            continue;
        };
        let op = &record.operation;
        let there = value_at(&op.key, revision);
        let saw_wrong = match (&op.call, &op.outcome) {
            (Call::Read, Outcome::Read(value)) => value.as_deref() != there,
            (Call::Cas { expected, .. }, Outcome::Cas(false)) => expected.as_deref() == there,
            _ => false,
        };
        if saw_wrong {
            wrong.push(format!(
                "{}, but the history has {there:?} at rev {revision}",
                describe(record)
            ));
        }
        if let Some((_, newer, write)) = newest_before(&op.key, op.invoked) {
            if *newer > revision && !record.acknowledged_write() {
                stale.push(format!(
                    "{}
      began after {}",
                    describe(record),
                    describe(write)
                ));
            }
            if *newer >= revision && record.acknowledged_write() {
                reordered.push(format!(
                    "{}
      began after {}",
                    describe(record),
                    describe(write)
                ));
            }
        }
    }
    [
        ("reads and compare-and-sets that saw another value than the history's at their revision", wrong),
        ("stale reads: older than a write acknowledged before they began", stale),
        ("writes ordered before a write acknowledged before they began", reordered),
    ]
    .into_iter()
    .filter(|(_, found)| !found.is_empty())
    .map(|(what, found)| Violation {
        checker: "revisions",
        what: format!("{} {what}", found.len()),
        evidence: found.into_iter().take(SHOWN).collect(),
    })
    .collect()
}

/// Revisions in `(start, end]` that the history skips: each write of a run makes one
/// revision, so none may be missing.
pub fn gaps(history: &[Seen], start: i64, end: i64) -> Option<Violation> {
    let mut missing = Vec::new();
    let mut expected = start;
    for seen in history {
        if seen.revision > expected {
            missing.push(format!("revisions {expected}..{} missing", seen.revision));
        }
        expected = expected.max(seen.revision + 1);
    }
    if expected <= end {
        missing.push(format!("revisions {expected}..={end} missing"));
    }
    (!missing.is_empty()).then(|| Violation {
        checker: "history",
        what: format!("{} gaps in the store's revisions", missing.len()),
        evidence: missing.into_iter().take(SHOWN).collect(),
    })
}

/// Whether a watcher saw exactly `history`: every event, in order, none twice.
pub fn watcher(name: &str, seen: &[Seen], history: &[Seen]) -> Option<Violation> {
    let first_difference = seen
        .iter()
        .zip(history)
        .position(|(saw, truth)| saw != truth)
        .or((seen.len() != history.len()).then(|| seen.len().min(history.len())))?;
    let around = first_difference.saturating_sub(2);
    let show = |events: &[Seen]| -> Vec<String> {
        events
            .iter()
            .skip(around)
            .take(5)
            .map(ToString::to_string)
            .collect()
    };
    let mut evidence = vec!["saw:".to_owned()];
    evidence.extend(show(seen));
    evidence.push("history:".to_owned());
    evidence.extend(show(history));
    Some(Violation {
        checker: "watch",
        what: format!(
            "the {name} watcher saw {} events, the history has {}; first difference at event {first_difference}",
            seen.len(),
            history.len()
        ),
        evidence,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faults::workload::Api;

    fn put(revision: i64, key: &str, value: &str) -> Seen {
        Seen {
            revision,
            key: format!("{}{key}", crate::faults::workload::PREFIX),
            value: value.to_owned(),
            deleted: false,
        }
    }

    fn write(value: &str, outcome: Outcome, ending: Ending) -> Record {
        Record {
            operation: Operation {
                client: 0,
                key: "a".to_owned(),
                call: Call::Write(value.to_owned()),
                outcome,
                invoked: 0,
                completed: 1,
            },
            api: Api::Json,
            member: 0,
            ending,
        }
    }

    #[test]
    fn writes_are_found_at_their_revision_and_refused_ones_nowhere() {
        let history = vec![put(5, "a", "0.1"), put(6, "a", "0.2"), put(7, "a", "0.4")];
        let good = vec![
            write("0.1", Outcome::Written, Ending::Answered { revision: 5 }),
            write(
                "0.2",
                Outcome::Unknown,
                Ending::Unknown("timeout".to_owned()),
            ),
            write(
                "0.3",
                Outcome::Unknown,
                Ending::Refused("no leader".to_owned()),
            ),
        ];
        assert!(writes(&good, &history).is_empty());
        let bad = vec![
            write("0.1", Outcome::Written, Ending::Answered { revision: 6 }),
            write("0.9", Outcome::Written, Ending::Answered { revision: 8 }),
            write(
                "0.4",
                Outcome::Unknown,
                Ending::Refused("no leader".to_owned()),
            ),
        ];
        let found = writes(&bad, &history);
        let whats: Vec<&str> = found.iter().map(|v| v.what.as_str()).collect();
        assert_eq!(
            whats,
            [
                "1 acknowledged writes missing from the history",
                "1 acknowledged writes at another revision than acknowledged",
                "1 writes refused or not done that took effect",
            ]
        );
        let twice = vec![put(5, "a", "0.1"), put(6, "a", "0.1")];
        assert_eq!(writes(&good[..1], &twice).len(), 1);
    }

    fn read(value: Option<&str>, revision: i64, invoked: u64) -> Record {
        Record {
            operation: Operation {
                client: 1,
                key: "a".to_owned(),
                call: Call::Read,
                outcome: Outcome::Read(value.map(str::to_owned)),
                invoked,
                completed: invoked + 1,
            },
            api: Api::Grpc,
            member: 1,
            ending: Ending::Answered { revision },
        }
    }

    #[test]
    fn stale_wrong_and_reordered_answers_are_found_by_revision() {
        let history = vec![put(5, "a", "0.1"), put(6, "a", "0.2")];
        let first = write("0.1", Outcome::Written, Ending::Answered { revision: 5 });
        let mut second = write("0.2", Outcome::Written, Ending::Answered { revision: 6 });
        second.operation.invoked = 2;
        second.operation.completed = 3;
        let good = vec![
            first.clone(),
            second.clone(),
            read(Some("0.1"), 5, 1),
            read(Some("0.2"), 6, 4),
            read(None, 4, 0),
        ];
        assert!(revisions_in_order(&good, &history).is_empty());
        let bad = vec![
            first.clone(),
            second.clone(),
            read(Some("0.1"), 5, 4),
            read(Some("0.1"), 6, 7),
        ];
        let whats: Vec<String> = revisions_in_order(&bad, &history)
            .into_iter()
            .map(|violation| violation.what)
            .collect();
        assert_eq!(whats.len(), 2, "{whats:?}");
        assert!(whats[0].starts_with("1 reads and compare-and-sets that saw another value"));
        assert!(whats[1].starts_with("1 stale reads"));
        let mut early = second;
        early.ending = Ending::Answered { revision: 4 };
        let found = revisions_in_order(&[first, early], &[put(4, "a", "0.2"), put(5, "a", "0.1")]);
        assert_eq!(found.len(), 1, "{found:?}");
    }

    #[test]
    fn writes_in_doubt_are_settled_by_the_history() {
        let history = vec![put(5, "a", "0.1"), put(6, "a", "0.2")];
        let doubt = |value: &str| {
            write(
                value,
                Outcome::Unknown,
                Ending::Unknown("timeout".to_owned()),
            )
        };
        let records = vec![
            doubt("0.1"),
            doubt("0.9"),
            write(
                "0.3",
                Outcome::Unknown,
                Ending::Refused("no leader".to_owned()),
            ),
            read(Some("0.1"), 5, 7),
            read(Some("0.2"), 6, 3),
            doubt("0.2"),
        ];
        let settled = settled(&records, &history);
        let calls: Vec<(&Call, &Outcome, u64)> = settled
            .iter()
            .map(|op| (&op.call, &op.outcome, op.completed))
            .collect();
        // The first answer carrying revision 5 or later is the read at 3-4 (it carried 6):
        // both writes in doubt took effect by then; 0.9 and the refused 0.3 never did.
        assert_eq!(
            calls,
            [
                (&Call::Write("0.1".to_owned()), &Outcome::Written, 4),
                (&Call::Read, &Outcome::Read(Some("0.1".to_owned())), 8),
                (&Call::Read, &Outcome::Read(Some("0.2".to_owned())), 4),
                (&Call::Write("0.2".to_owned()), &Outcome::Written, 4),
            ]
        );
    }

    #[test]
    fn gaps_and_watchers_that_differ_from_the_history_are_found() {
        let history = vec![put(5, "a", "0.1"), put(6, "b", "0.2"), put(7, "a", "0.3")];
        assert!(gaps(&history, 5, 7).is_none());
        assert!(gaps(&history, 4, 7).is_some());
        assert!(gaps(&history, 5, 8).is_some());
        assert!(gaps(&[history[0].clone(), history[2].clone()], 5, 7).is_some());
        assert!(watcher("json", &history, &history).is_none());
        let skipped = [history[0].clone(), history[2].clone()];
        assert!(watcher("json", &skipped, &history).is_some());
        let repeated = [history[0].clone(), history[0].clone(), history[1].clone()];
        assert!(watcher("json", &repeated, &history).is_some());
        assert!(watcher("json", &history[..2], &history).is_some());
    }
}
