//! Instances: a unit runs as `unit@0`, `unit@1`, ... (replicas), or `unit@machine` (global).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::unit::check_name;

/// One instance of a unit.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct InstanceId {
    /// The unit.
    pub unit: String,
    /// Which of its instances.
    pub slot: Slot,
}

/// Which instance of a unit.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Slot {
    /// A replica, from 0.
    Replica(u32),
    /// A global unit's instance on this machine.
    Machine(String),
}

impl InstanceId {
    /// Replica `index` of `unit`.
    pub fn replica(unit: &str, index: u32) -> Self {
        Self {
            unit: unit.to_owned(),
            slot: Slot::Replica(index),
        }
    }

    /// Global `unit`'s instance on `machine`.
    pub fn on_machine(unit: &str, machine: &str) -> Self {
        Self {
            unit: unit.to_owned(),
            slot: Slot::Machine(machine.to_owned()),
        }
    }
}

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.slot {
            Slot::Replica(index) => write!(f, "{}@{index}", self.unit),
            Slot::Machine(machine) => write!(f, "{}@{machine}", self.unit),
        }
    }
}

impl FromStr for InstanceId {
    type Err = String;

    /// `unit@3` is a replica; `unit@name`, where the name is not a number, a machine's.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (unit, slot) = text
            .split_once('@')
            .ok_or_else(|| format!("{text:?} is not an instance (unit@slot)"))?;
        check_name(unit)?;
        let slot = if !slot.is_empty() && slot.bytes().all(|b| b.is_ascii_digit()) {
            Slot::Replica(
                slot.parse()
                    .map_err(|_| format!("{text:?}: replica number {slot} is too large"))?,
            )
        } else {
            check_name(slot)?;
            Slot::Machine(slot.to_owned())
        };
        Ok(Self {
            unit: unit.to_owned(),
            slot,
        })
    }
}

impl TryFrom<String> for InstanceId {
    type Error = String;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl From<InstanceId> for String {
    fn from(id: InstanceId) -> Self {
        id.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instances_print_and_parse_back() {
        for id in [
            InstanceId::replica("web", 12),
            InstanceId::on_machine("log", "m-1.a"),
        ] {
            assert_eq!(id.to_string().parse::<InstanceId>().unwrap(), id);
        }
        assert_eq!(InstanceId::replica("web", 0).to_string(), "web@0");
    }

    #[test]
    fn malformed_instances_are_refused() {
        for text in ["web", "@1", "web@", "a/b@1", "web@99999999999"] {
            assert!(text.parse::<InstanceId>().is_err(), "{text}");
        }
    }
}
