//! The engine's view of the cluster, kept from one read and a watch of everything under
//! [`keys::ROOT`]: each put or delete changes only what its key names, so an event costs
//! what it changes, never a reread (fleet re-read the whole registry on every event).

use std::collections::BTreeMap;

use sinew_proto::kv::KeyValue;
use thiserror::Error;

use crate::instance::InstanceId;
use crate::keys::{self, Key};
use crate::placement::{Placed, View};
use crate::records::{Assignment, Failure, MachineRecord, UnitRecord};

/// A record the engine could not use; it goes on without it and logs this.
#[derive(Debug, Error)]
#[error("ignoring {key}: {reason}")]
pub struct RecordError {
    /// The key, as text.
    pub key: String,
    /// What was wrong with it.
    pub reason: String,
}

/// The view, and the revisions the engine's writes compare against.
#[derive(Debug, Clone, Default)]
pub struct Cluster {
    /// What placement plans from.
    pub view: View,
    /// Each machine record's creation revision: a placement holds only for the machine
    /// registration that it saw.
    machine_revisions: BTreeMap<String, i64>,
    /// Each unit record's last revision: a placement holds only for the spec it saw.
    unit_revisions: BTreeMap<String, i64>,
}

impl Cluster {
    /// The creation revision of `machine`'s record, 0 if it has none.
    pub fn machine_revision(&self, machine: &str) -> i64 {
        self.machine_revisions.get(machine).copied().unwrap_or(0)
    }

    /// The last revision of `unit`'s record, 0 if it has none.
    pub fn unit_revision(&self, unit: &str) -> i64 {
        self.unit_revisions.get(unit).copied().unwrap_or(0)
    }

    /// Takes in a key's new value.
    pub fn put(&mut self, kv: &KeyValue) -> Result<(), RecordError> {
        let text_key = String::from_utf8_lossy(&kv.key).into_owned();
        let refuse = |reason: String| RecordError {
            key: text_key.clone(),
            reason,
        };
        let Some(key) = Key::parse(&kv.key) else {
            return Err(refuse("not a key of the scheduler's layout".into()));
        };
        let json =
            |what| move |error: serde_json::Error| refuse(format!("not a valid {what}: {error}"));
        match key {
            Key::Machine(name) => {
                let record: MachineRecord =
                    serde_json::from_slice(&kv.value).map_err(json("machine record"))?;
                if record.id != name {
                    return Err(refuse(format!("the record names machine {}", record.id)));
                }
                self.machine_revisions
                    .insert(name.clone(), kv.create_revision);
                self.view.machines.insert(name, record);
            }
            Key::Unit(name) => {
                let record: UnitRecord =
                    serde_json::from_slice(&kv.value).map_err(json("unit record"))?;
                if record.spec.name != name {
                    return Err(refuse(format!("the spec names unit {}", record.spec.name)));
                }
                self.unit_revisions.insert(name.clone(), kv.mod_revision);
                self.view.digests.insert(name.clone(), record.spec.digest());
                self.view.units.insert(name, record);
            }
            Key::Assignment { machine, instance } => {
                let assignment: Assignment =
                    serde_json::from_slice(&kv.value).map_err(json("assignment"))?;
                self.view.placed.insert(
                    instance,
                    Placed {
                        machine,
                        spec_digest: assignment.spec_digest,
                    },
                );
            }
            Key::Failed(instance) => {
                let failure: Failure =
                    serde_json::from_slice(&kv.value).map_err(json("failure record"))?;
                self.view.failed.insert(instance, failure.reason);
            }
            Key::Placement(_) | Key::State(_) | Key::Waiting(_) | Key::Engine => {}
        }
        Ok(())
    }

    /// Takes in a key's deletion (or its lease's end).
    pub fn delete(&mut self, key: &[u8]) {
        match Key::parse(key) {
            Some(Key::Machine(name)) => {
                self.machine_revisions.remove(&name);
                self.view.machines.remove(&name);
            }
            Some(Key::Unit(name)) => {
                self.unit_revisions.remove(&name);
                self.view.digests.remove(&name);
                self.view.units.remove(&name);
            }
            Some(Key::Assignment { machine, instance })
                if self
                    .view
                    .placed
                    .get(&instance)
                    .is_some_and(|placed| placed.machine == machine) =>
            {
                self.view.placed.remove(&instance);
            }
            Some(Key::Failed(instance)) => {
                self.view.failed.remove(&instance);
            }
            _ => {}
        }
    }

    /// Records a placement the engine wrote, before its watch reports it.
    pub fn placed(&mut self, instance: &InstanceId, machine: &str) {
        if let Some(spec_digest) = self.view.digest_of(&instance.unit) {
            self.view.placed.insert(
                instance.clone(),
                Placed {
                    machine: machine.to_owned(),
                    spec_digest,
                },
            );
        }
    }

    /// Records a removal the engine wrote, before its watch reports it.
    pub fn removed(&mut self, instance: &InstanceId, machine: &str) {
        self.delete(keys::assignment(machine, instance).as_bytes());
    }
}
