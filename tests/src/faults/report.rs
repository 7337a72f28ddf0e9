//! A fault run's report: what ran, the faults as they happened, how operations ended, and
//! every checker's verdict; for a failed run, the smallest history that still fails and the
//! seed that replays the schedule.

use std::collections::BTreeMap;
use std::fmt;

use super::checks::{self, Violation};
use super::nemesis::Happened;
use super::workload::{Api, Ending};
use super::{locks, Config, Run};
use crate::linearizable::{self, Call, Operation, Outcome, Verdict};

/// A history longer than this is shown as it is rather than shrunk (each step of the
/// shrinking is a full check).
const SHRINKABLE: usize = 400;

/// What a fault run did and found.
#[derive(Debug)]
pub struct Report {
    /// The run's settings, as a line.
    pub setting: String,
    /// The seed.
    pub seed: u64,
    /// The environment that replays this run's schedule with the `faults` benchmark.
    pub replay: String,
    /// The faults as they happened.
    pub happened: Vec<Happened>,
    /// Operations by API and ending (`answered`, `refused`, `unknown`).
    pub endings: BTreeMap<(Api, &'static str), usize>,
    /// Events each watcher saw, and how often its stream broke.
    pub watched: Vec<(Api, usize, usize)>,
    /// Times a lock client knew it held the lock, by API, and attempts that failed.
    pub locked: (BTreeMap<Api, usize>, usize),
    /// The history's revisions checked.
    pub revisions: (i64, i64),
    /// Every anomaly found.
    pub violations: Vec<Violation>,
    /// Where a failed run's member data directories and logs were left.
    pub kept: Option<std::path::PathBuf>,
}

impl Report {
    /// Checks a run's records, lock holdings, watchers and history.
    pub(super) fn new(config: &Config, run: Run) -> Self {
        let mut endings = BTreeMap::new();
        for record in &run.records {
            let ending = match record.ending {
                Ending::Answered { .. } => "answered",
                Ending::Refused(_) => "refused",
                Ending::Unknown(_) => "unknown",
            };
            *endings.entry((record.api, ending)).or_insert(0) += 1;
        }
        let mut violations = Vec::new();
        match linearizable::check(&checks::settled(&run.records, &run.history)) {
            Verdict::Linearizable => {}
            Verdict::Violation { key, operations } => {
                violations.push(not_linearizable(&key, operations));
            }
            Verdict::Undecided { key } => violations.push(Violation {
                checker: "linearizable",
                what: format!(
                    "key {key}: undecided, the search gave up after {} states",
                    linearizable::MAX_STATES
                ),
                evidence: Vec::new(),
            }),
        }
        violations.extend(checks::writes(&run.records, &run.history));
        violations.extend(checks::revisions_in_order(&run.records, &run.history));
        violations.extend(checks::gaps(&run.history, run.revisions.0, run.revisions.1));
        violations.extend(locks::check(&run.held, &run.history));
        let mut locked = BTreeMap::new();
        for holding in &run.held {
            *locked.entry(holding.api).or_insert(0) += 1;
        }
        let mut watched = Vec::new();
        for (api, events, errors) in &run.seen {
            violations.extend(checks::watcher(api.name(), events, &run.history));
            watched.push((*api, events.len(), errors.len()));
        }
        Self {
            setting: format!(
                "{}, {} members, {} clients, {} keys, {} lock clients, {:.0?}, faults {:?}",
                config.server.name(),
                config.members,
                config.clients,
                config.keys,
                config.lockers,
                config.duration,
                config.kinds,
            ),
            seed: config.seed,
            replay: config.replay(),
            happened: run.happened,
            endings,
            locked: (locked, run.lock_failures),
            watched,
            revisions: run.revisions,
            violations,
            kept: None,
        }
    }

    /// Whether every checker passed.
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }

    /// How many operations ended `ending` (over both APIs).
    pub fn count(&self, ending: &str) -> usize {
        self.endings
            .iter()
            .filter(|((_, name), _)| *name == ending)
            .map(|(_, count)| count)
            .sum()
    }
}

/// The violation for a key whose history admits no linearization, with the history shrunk
/// to the fewest operations that still admit none.
fn not_linearizable(key: &str, operations: Vec<Operation>) -> Violation {
    let total = operations.len();
    if total > SHRINKABLE {
        return Violation {
            checker: "linearizable",
            what: format!(
                "key {key}: no order of its {total} operations explains what clients saw (too many to shrink; the revision checks point at the operations involved)"
            ),
            evidence: Vec::new(),
        };
    }
    let minimal = shrink(operations);
    Violation {
        checker: "linearizable",
        what: format!(
            "key {key}: no order of its {total} operations explains what clients saw; {} of them already fail",
            minimal.len()
        ),
        evidence: minimal
            .iter()
            .map(|op| {
                format!(
                    "client {} {:?} -> {:?} [{:.3}-{:.3} s]",
                    op.client,
                    op.call,
                    op.outcome,
                    op.invoked as f64 / 1e6,
                    op.completed as f64 / 1e6
                )
            })
            .collect(),
    }
}

/// Drops every operation whose absence keeps the history non-linearizable, one at a time,
/// except the writes of values that kept reads returned (without them, any such read fails
/// alone, which shows nothing).
fn shrink(mut operations: Vec<Operation>) -> Vec<Operation> {
    let mut index = 0;
    while index < operations.len() {
        if wrote_what_is_read(&operations, index) {
            index += 1;
            continue;
        }
        let mut without = operations.clone();
        without.remove(index);
        if matches!(linearizable::check(&without), Verdict::Violation { .. }) {
            operations = without;
        } else {
            index += 1;
        }
    }
    operations
}

/// Whether operation `index` writes a value that another operation read.
fn wrote_what_is_read(operations: &[Operation], index: usize) -> bool {
    let value = match &operations[index].call {
        Call::Read => return false,
        Call::Write(value) | Call::Cas { new: value, .. } => value,
    };
    operations
        .iter()
        .any(|op| op.outcome == Outcome::Read(Some(value.clone())))
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "fault run: {}, seed {}", self.setting, self.seed)?;
        writeln!(f, "faults ({}):", self.happened.len())?;
        for happened in &self.happened {
            writeln!(f, "  {happened}")?;
        }
        let endings: Vec<String> = self
            .endings
            .iter()
            .map(|((api, ending), count)| format!("{} {ending} {count}", api.name()))
            .collect();
        writeln!(f, "operations: {}", endings.join(", "))?;
        let locked: Vec<String> = self
            .locked
            .0
            .iter()
            .map(|(api, count)| format!("{} {count}", api.name()))
            .collect();
        writeln!(
            f,
            "locks held: {} ({} attempts failed)",
            locked.join(", "),
            self.locked.1
        )?;
        let watched: Vec<String> = self
            .watched
            .iter()
            .map(|(api, events, breaks)| {
                format!("{} {events} events ({breaks} reconnects)", api.name())
            })
            .collect();
        writeln!(
            f,
            "watchers: {}; history: revisions {}..={}",
            watched.join(", "),
            self.revisions.0,
            self.revisions.1
        )?;
        if self.passed() {
            return writeln!(
                f,
                "checks: linearizable, writes, history, locks and watchers all passed"
            );
        }
        writeln!(f, "violations ({}):", self.violations.len())?;
        for violation in &self.violations {
            write!(f, "  {violation}")?;
        }
        if let Some(kept) = &self.kept {
            writeln!(f, "members' data and logs kept in {}", kept.display())?;
        }
        writeln!(
            f,
            "replay the schedule: {} cargo bench -p sinew-tests --bench faults",
            self.replay
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(client: usize, call: Call, outcome: Outcome, invoked: u64, completed: u64) -> Operation {
        Operation {
            client,
            key: "k0".to_owned(),
            call,
            outcome,
            invoked,
            completed,
        }
    }

    #[test]
    fn a_failing_history_shrinks_to_the_operations_that_fail() {
        let write = |value: &str| Call::Write(value.to_owned());
        let history = vec![
            op(0, write("a"), Outcome::Written, 0, 10),
            op(1, Call::Read, Outcome::Read(Some("a".to_owned())), 11, 12),
            op(2, write("b"), Outcome::Written, 13, 20),
            op(1, Call::Read, Outcome::Read(Some("b".to_owned())), 21, 22),
            // A stale read after b was read: the anomaly.
            op(3, Call::Read, Outcome::Read(Some("a".to_owned())), 23, 24),
            op(0, Call::Read, Outcome::Read(Some("b".to_owned())), 25, 26),
        ];
        let violation = not_linearizable("k0", history);
        assert!(
            violation.what.contains("its 6 operations"),
            "{}",
            violation.what
        );
        // Both writes and the stale read are enough to fail.
        assert_eq!(violation.evidence.len(), 3, "{violation}");
        assert!(violation.evidence[2].contains("client 3"), "{violation}");
    }
}
