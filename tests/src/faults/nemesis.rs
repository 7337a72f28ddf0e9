//! Faults, one at a time, from a schedule that a seed decides entirely: which fault, which
//! member (or "the leader", resolved when the fault starts), how long it lasts and the pause
//! before the next. The same seed gives the same schedule; what the cluster does under it
//! depends on timing too, so a replay reproduces the faults, not every interleaving.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use anyhow::Result;

use super::bed::{Cut, FaultBed};

/// The kinds of fault a run may schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// SIGKILL, restart when the fault ends.
    Kill,
    /// SIGKILL of every member at once, restart of all when the fault ends.
    KillAll,
    /// SIGSTOP for longer than an election timeout, SIGCONT when the fault ends.
    Pause,
    /// Packets dropped between groups of members.
    Partition,
    /// A restart with the monotonic and boot-time clocks days ahead (a time namespace).
    ClockJump,
    /// A member removed, wiped, added back as a learner and promoted.
    Membership,
}

impl Kind {
    /// Its name, as [`Kind::parse_list`] takes it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Kill => "kill",
            Self::KillAll => "kill-all",
            Self::Pause => "pause",
            Self::Partition => "partition",
            Self::ClockJump => "clock-jump",
            Self::Membership => "membership",
        }
    }

    /// Kinds from a comma-separated list of names (`kill,kill-all,pause,partition,clock-jump,
    /// membership`); an unknown name is refused, naming the ones known.
    pub fn parse_list(list: &str) -> anyhow::Result<Vec<Kind>> {
        list.split(',')
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .map(|name| {
                Self::ALL
                    .into_iter()
                    .find(|kind| kind.name() == name)
                    .ok_or_else(|| {
                        let known: Vec<&str> = Self::ALL.iter().map(|kind| kind.name()).collect();
                        anyhow::anyhow!(
                            "unknown fault kind {name:?}: expected one of {}",
                            known.join(", ")
                        )
                    })
            })
            .collect()
    }

    /// Every kind.
    pub const ALL: [Kind; 6] = [
        Kind::Kill,
        Kind::KillAll,
        Kind::Pause,
        Kind::Partition,
        Kind::ClockJump,
        Kind::Membership,
    ];
}

/// A member named in a schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Whichever member leads when the fault starts (a random one if none does).
    Leader,
    /// This member.
    Member(usize),
}

/// How a partition splits the members, over a permutation of them fixed by the seed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Split {
    /// The first `(n - 1) / 2` of the permutation against the rest.
    MajorityMinority(Vec<usize>),
    /// The leader alone against the rest.
    IsolatedLeader,
    /// Two halves that cannot reach each other, and the middle member of the permutation
    /// that reaches both.
    Bridge(Vec<usize>),
    /// Each member of the permutation, as a cycle, reaches only its two neighbours.
    Ring(Vec<usize>),
}

/// One scheduled fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Kill a member; restart it at the end.
    Kill(Target),
    /// Kill every member; restart them all at the end.
    KillAll,
    /// Pause a member; continue it at the end.
    Pause(Target),
    /// Partition the members.
    Partition(Split),
    /// Restart a member with its clocks this many seconds ahead.
    ClockJump(Target, i64),
    /// Replace a member through membership changes.
    Replace(Target),
}

/// A fault, the quiet time before it, and how long it lasts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Quiet time before the fault starts.
    pub before: Duration,
    /// The fault.
    pub fault: Fault,
    /// How long it lasts.
    pub hold: Duration,
}

/// The schedule for `seed`: faults of `kinds` on `members` members filling `duration`.
pub fn schedule(seed: u64, duration: Duration, members: usize, kinds: &[Kind]) -> Vec<Step> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut steps = Vec::new();
    let mut elapsed = Duration::ZERO;
    while !kinds.is_empty() {
        let before = Duration::from_millis(rng.u64(200..1000));
        let target = |rng: &mut fastrand::Rng| {
            if rng.bool() {
                Target::Leader
            } else {
                Target::Member(rng.usize(..members))
            }
        };
        let fault = match kinds[rng.usize(..kinds.len())] {
            Kind::Kill => Fault::Kill(target(&mut rng)),
            Kind::KillAll => Fault::KillAll,
            Kind::Pause => Fault::Pause(target(&mut rng)),
            Kind::Partition => Fault::Partition(split(&mut rng, members)),
            Kind::ClockJump => Fault::ClockJump(target(&mut rng), 86_400 * rng.i64(1..30)),
            Kind::Membership => Fault::Replace(target(&mut rng)),
        };
        // Pauses and partitions outlast an election timeout (1 s) so that they matter; a
        // clock jump or a replacement is over once the member is back.
        let hold = Duration::from_millis(match fault {
            Fault::ClockJump(..) | Fault::Replace(_) => rng.u64(200..800),
            _ => rng.u64(1200..2500),
        });
        if elapsed + before + hold > duration {
            break;
        }
        elapsed += before + hold;
        steps.push(Step {
            before,
            fault,
            hold,
        });
    }
    steps
}

fn split(rng: &mut fastrand::Rng, members: usize) -> Split {
    let mut order: Vec<usize> = (0..members).collect();
    rng.shuffle(&mut order);
    // A ring of three is every member reaching every other: no partition.
    let choices = if members >= 4 { 4 } else { 3 };
    match rng.usize(..choices) {
        0 => Split::MajorityMinority(order),
        1 => Split::IsolatedLeader,
        2 => Split::Bridge(order),
        _ => Split::Ring(order),
    }
}

impl Split {
    /// The pairs of members cut apart, with `leader` for [`Split::IsolatedLeader`].
    pub fn cuts(&self, members: usize, leader: usize) -> BTreeSet<Cut> {
        let pairs = match self {
            Self::MajorityMinority(order) => {
                let (minority, majority) = order.split_at((members - 1) / 2);
                pairs(minority, majority)
            }
            Self::IsolatedLeader => {
                let rest: Vec<usize> = (0..members).filter(|&m| m != leader).collect();
                pairs(&[leader], &rest)
            }
            Self::Bridge(order) => {
                let middle = members / 2;
                pairs(&order[..middle], &order[middle + 1..])
            }
            Self::Ring(order) => {
                let positions: Vec<usize> = (0..members).collect();
                pairs(&positions, &positions)
                    .into_iter()
                    .filter(|&(a, b)| {
                        let distance = a.abs_diff(b);
                        distance > 1 && distance < members - 1
                    })
                    .map(|(a, b)| (order[a], order[b]))
                    .collect()
            }
        };
        pairs
            .into_iter()
            .filter(|(a, b)| a != b)
            .map(|(a, b)| (a.min(b), a.max(b)))
            .collect()
    }
}

/// Every pair of a member of `left` with a member of `right`.
fn pairs(left: &[usize], right: &[usize]) -> Vec<(usize, usize)> {
    left.iter()
        .flat_map(|&a| right.iter().map(move |&b| (a, b)))
        .collect()
}

/// A fault in force, with what ends it.
#[derive(Debug)]
enum Active {
    Killed(usize),
    AllKilled,
    Paused(usize),
    Partitioned,
    Nothing,
}

/// Starts `fault` on `bed`, with `leader` the current leader if known; returns what ends
/// it and a line for the report.
fn start(
    bed: &mut FaultBed,
    fault: &Fault,
    leader: Option<usize>,
    rng: &mut fastrand::Rng,
    runtime: &tokio::runtime::Runtime,
) -> Result<(Active, String)> {
    let members = bed.size();
    let mut resolve = |target: &Target| match target {
        Target::Member(index) => *index,
        Target::Leader => leader.unwrap_or_else(|| rng.usize(..members)),
    };
    Ok(match fault {
        Fault::KillAll => {
            for member in 0..members {
                bed.cluster.kill(member)?;
            }
            (Active::AllKilled, "kill -9 every member".to_owned())
        }
        Fault::Kill(target) => {
            let member = resolve(target);
            bed.cluster.kill(member)?;
            (
                Active::Killed(member),
                format!("kill -9 member {member}{}", role(member, leader)),
            )
        }
        Fault::Pause(target) => {
            let member = resolve(target);
            bed.cluster.pause(member)?;
            (
                Active::Paused(member),
                format!("SIGSTOP member {member}{}", role(member, leader)),
            )
        }
        Fault::Partition(split) => {
            let leader = leader.unwrap_or(0);
            let cuts = split.cuts(members, leader);
            bed.partition(&cuts)?;
            let name = match split {
                Split::MajorityMinority(_) => "majority/minority",
                Split::IsolatedLeader => "isolated leader",
                Split::Bridge(_) => "bridge",
                Split::Ring(_) => "ring",
            };
            (
                Active::Partitioned,
                format!("partition ({name}), cut {cuts:?}"),
            )
        }
        Fault::Replace(target) => {
            let member = resolve(target);
            let started = std::time::Instant::now();
            runtime.block_on(bed.replace(member))?;
            (
                Active::Nothing,
                format!(
                    "replace member {member}{} (remove, add as learner, promote: {:.1} s)",
                    role(member, leader),
                    started.elapsed().as_secs_f64()
                ),
            )
        }
        Fault::ClockJump(target, offset) => {
            let member = resolve(target);
            bed.cluster.restart_with_clock(member, *offset)?;
            (
                Active::Nothing,
                format!(
                    "restart member {member}{} with clocks +{} days",
                    role(member, leader),
                    offset / 86_400
                ),
            )
        }
    })
}

fn role(member: usize, leader: Option<usize>) -> &'static str {
    if leader == Some(member) {
        " (leader)"
    } else {
        ""
    }
}

/// Ends a fault.
fn end(bed: &mut FaultBed, active: Active) -> Result<()> {
    match active {
        Active::Killed(member) => bed.cluster.restart(member),
        Active::AllKilled => (0..bed.size()).try_for_each(|member| bed.cluster.restart(member)),
        Active::Paused(member) => bed.cluster.resume(member),
        Active::Partitioned => bed.heal(),
        Active::Nothing => Ok(()),
    }
}

/// A fault as it happened: when it started and ended (since the run began) and what it was.
#[derive(Debug, Clone)]
pub struct Happened {
    /// When it started.
    pub started: Duration,
    /// When it ended.
    pub ended: Duration,
    /// What it was, with the members resolved.
    pub what: String,
}

impl fmt::Display for Happened {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:>6.2}-{:<6.2} s  {}",
            self.started.as_secs_f64(),
            self.ended.as_secs_f64(),
            self.what
        )
    }
}

/// Runs `steps` on `bed` (blocking: call it from a thread of its own), timing from
/// `started`; each fault ends before the next starts, and none starts after `until` (a
/// replacement can take longer than its step planned).
pub fn run(
    bed: &mut FaultBed,
    steps: &[Step],
    seed: u64,
    started: std::time::Instant,
    until: std::time::Instant,
) -> Result<Vec<Happened>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // Resolving "a random member" when no leader is known draws from its own stream, so
    // the schedule itself stays the seed's.
    let mut rng = fastrand::Rng::with_seed(seed ^ 0x9e37_79b9_7f4a_7c15);
    let mut happened = Vec::new();
    for step in steps {
        std::thread::sleep(step.before);
        if std::time::Instant::now() >= until {
            break;
        }
        let leader = runtime.block_on(bed.leader());
        let at = started.elapsed();
        let (active, what) = start(bed, &step.fault, leader, &mut rng, &runtime)?;
        std::thread::sleep(step.hold);
        end(bed, active)?;
        happened.push(Happened {
            started: at,
            ended: started.elapsed(),
            what,
        });
    }
    Ok(happened)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_always_gives_the_same_schedule_within_the_duration() {
        let duration = Duration::from_secs(30);
        let first = schedule(7, duration, 5, &Kind::ALL);
        assert_eq!(first, schedule(7, duration, 5, &Kind::ALL));
        assert_ne!(first, schedule(8, duration, 5, &Kind::ALL));
        assert!(first.len() >= 5, "{first:?}");
        let total: Duration = first.iter().map(|step| step.before + step.hold).sum();
        assert!(total <= duration);
        assert!(schedule(7, duration, 3, &[]).is_empty());
    }

    #[test]
    fn kinds_are_named_and_parsed_back() {
        let names: Vec<&str> = Kind::ALL.iter().map(|kind| kind.name()).collect();
        assert_eq!(Kind::parse_list(&names.join(",")).unwrap(), Kind::ALL);
        assert_eq!(
            Kind::parse_list(" kill, pause ").unwrap(),
            [Kind::Kill, Kind::Pause]
        );
        let error = Kind::parse_list("kill,nap").unwrap_err().to_string();
        assert!(
            error.contains("\"nap\"") && error.contains("clock-jump"),
            "{error}"
        );
    }

    #[test]
    fn splits_cut_the_pairs_they_name() {
        let order = vec![3, 0, 4, 1, 2];
        let minority = Split::MajorityMinority(order.clone()).cuts(5, 0);
        // Members 3 and 0 against 4, 1 and 2.
        assert_eq!(minority.len(), 6);
        assert!(minority.contains(&(0, 4)) && minority.contains(&(1, 3)));
        assert!(!minority.contains(&(0, 3)) && !minority.contains(&(1, 2)));
        let isolated = Split::IsolatedLeader.cuts(3, 1);
        assert_eq!(isolated, BTreeSet::from([(0, 1), (1, 2)]));
        // 3 and 0 against 1 and 2; 4 reaches everyone.
        let bridge = Split::Bridge(order.clone()).cuts(5, 0);
        assert_eq!(bridge, BTreeSet::from([(1, 3), (2, 3), (0, 1), (0, 2)]));
        // The cycle 3-0-4-1-2-3: each member keeps exactly two peers.
        let ring = Split::Ring(order).cuts(5, 0);
        for member in 0..5 {
            let cut = ring
                .iter()
                .filter(|(a, b)| *a == member || *b == member)
                .count();
            assert_eq!(cut, 2, "member {member} in {ring:?}");
        }
        assert!(!ring.contains(&(0, 3)) && !ring.contains(&(2, 3)) && ring.contains(&(0, 1)));
    }
}
