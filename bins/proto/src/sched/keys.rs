//! The scheduler's keys in the KV store, all under [`ROOT`]:
//!
//! | key | value | lease |
//! |---|---|---|
//! | `machines/<machine>` | [`MachineRecord`](super::records::MachineRecord) | the machine's |
//! | `units/<unit>` | [`UnitRecord`](super::records::UnitRecord) | none |
//! | `placement/<instance>` | the machine's name | the machine's |
//! | `assign/<machine>/<instance>` | [`Assignment`](super::records::Assignment) | the machine's |
//! | `state/<instance>` | [`InstanceState`](super::records::InstanceState) | the machine's |
//! | `failed/<instance>` | [`Failure`](super::records::Failure) | none |
//! | `waiting/<instance>` | why the engine cannot place it now | the engine's |
//! | `engine/<lease>` | the engine's election ([`crate::kv::Election`]) | the engine's |
//!
//! An instance is placed at most once at a time: the engine creates its `placement` key only
//! if there is none. Everything placed on a machine is written under the machine's lease, so
//! it all ends, at one revision, when the lease does.

use super::instance::InstanceId;

/// Where the scheduler's keys live.
pub const ROOT: &str = "/sinew/sched/";

/// The engine's election.
pub const ENGINE_ELECTION: &str = "/sinew/sched/engine";

/// A machine's record.
pub fn machine(machine: &str) -> String {
    format!("{ROOT}machines/{machine}")
}

/// A unit's record.
pub fn unit(unit: &str) -> String {
    format!("{ROOT}units/{unit}")
}

/// Where an instance is placed.
pub fn placement(instance: &InstanceId) -> String {
    format!("{ROOT}placement/{instance}")
}

/// An instance's assignment to a machine.
pub fn assignment(machine: &str, instance: &InstanceId) -> String {
    format!("{ROOT}assign/{machine}/{instance}")
}

/// The prefix of a machine's assignments, which its agent watches.
pub fn assignments_of(machine: &str) -> String {
    format!("{ROOT}assign/{machine}/")
}

/// An instance's state.
pub fn state(instance: &InstanceId) -> String {
    format!("{ROOT}state/{instance}")
}

/// An instance's failure.
pub fn failed(instance: &InstanceId) -> String {
    format!("{ROOT}failed/{instance}")
}

/// Why an instance waits to be placed.
pub fn waiting(instance: &InstanceId) -> String {
    format!("{ROOT}waiting/{instance}")
}

/// A key under [`ROOT`], parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    /// `machines/<machine>`.
    Machine(String),
    /// `units/<unit>`.
    Unit(String),
    /// `placement/<instance>`.
    Placement(InstanceId),
    /// `assign/<machine>/<instance>`.
    Assignment {
        /// The machine.
        machine: String,
        /// The instance.
        instance: InstanceId,
    },
    /// `state/<instance>`.
    State(InstanceId),
    /// `failed/<instance>`.
    Failed(InstanceId),
    /// `waiting/<instance>`.
    Waiting(InstanceId),
    /// The engine's election.
    Engine,
}

impl Key {
    /// Parses `key`; `None` for a key outside the layout (the caller logs it, naming it).
    pub fn parse(key: &[u8]) -> Option<Self> {
        let rest = std::str::from_utf8(key).ok()?.strip_prefix(ROOT)?;
        let (kind, name) = rest.split_once('/')?;
        let instance = || name.parse::<InstanceId>().ok();
        Some(match kind {
            "machines" => Self::Machine(name.to_owned()),
            "units" => Self::Unit(name.to_owned()),
            "placement" => Self::Placement(instance()?),
            "assign" => {
                let (machine, instance) = name.split_once('/')?;
                Self::Assignment {
                    machine: machine.to_owned(),
                    instance: instance.parse().ok()?,
                }
            }
            "state" => Self::State(instance()?),
            "failed" => Self::Failed(instance()?),
            "waiting" => Self::Waiting(instance()?),
            "engine" => Self::Engine,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_parses_back() {
        let web = InstanceId::replica("web", 2);
        for (key, parsed) in [
            (machine("m1"), Key::Machine("m1".into())),
            (unit("web"), Key::Unit("web".into())),
            (placement(&web), Key::Placement(web.clone())),
            (
                assignment("m1", &web),
                Key::Assignment {
                    machine: "m1".into(),
                    instance: web.clone(),
                },
            ),
            (state(&web), Key::State(web.clone())),
            (failed(&web), Key::Failed(web.clone())),
            (waiting(&web), Key::Waiting(web.clone())),
            (format!("{ENGINE_ELECTION}/694d"), Key::Engine),
        ] {
            assert_eq!(Key::parse(key.as_bytes()), Some(parsed), "{key}");
        }
    }

    #[test]
    fn keys_outside_the_layout_are_not_parsed() {
        for key in [
            "/other/units/web",
            "/sinew/sched/units",
            "/sinew/sched/placement/web",
            "/sinew/sched/x/y",
        ] {
            assert_eq!(Key::parse(key.as_bytes()), None, "{key}");
        }
    }
}
