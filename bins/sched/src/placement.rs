//! Where instances go: a pure function from the engine's view of the cluster to a plan.
//!
//! Placement is stable: an instance stays where it is for as long as its assignment lives
//! and its unit's spec is unchanged, so a new engine (or a new plan) moves nothing that
//! runs. Unplaced instances are placed in a fixed order (units without `machine_of` first,
//! then by name, then by slot) on the machine that, among those the rules allow and with
//! room for it, holds the fewest instances of the same unit, then the fewest instances,
//! then the smallest share of its memory in use, then has the smallest name. The same view
//! always gives the same plan.

use std::collections::{BTreeMap, BTreeSet};

use crate::instance::{InstanceId, Slot};
use crate::records::{MachineRecord, Target, UnitRecord};
use crate::unit::{Resources, UnitSpec};

/// What the engine knows of the cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct View {
    /// Live machines, by name.
    pub machines: BTreeMap<String, MachineRecord>,
    /// Submitted units, by name.
    pub units: BTreeMap<String, UnitRecord>,
    /// Placed instances.
    pub placed: BTreeMap<InstanceId, Placed>,
    /// Instances that failed for good, with the reason.
    pub failed: BTreeMap<InstanceId, String>,
    /// Units' spec digests, kept as records arrive so that a plan does not hash every spec;
    /// a unit missing here is hashed when planned.
    pub digests: BTreeMap<String, String>,
}

impl View {
    /// The digest of `unit`'s spec.
    pub fn digest_of(&self, unit: &str) -> Option<String> {
        match self.digests.get(unit) {
            Some(digest) => Some(digest.clone()),
            None => self.units.get(unit).map(|record| record.spec.digest()),
        }
    }
}

/// Where an instance is placed, and with which spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    /// The machine.
    pub machine: String,
    /// The digest of the spec it was placed with.
    pub spec_digest: String,
}

/// What the engine should change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Instances to place, and where.
    pub place: Vec<(InstanceId, String)>,
    /// Instances to take off their machine, and why.
    pub remove: Vec<Removal>,
    /// Instances that cannot be placed now, and why.
    pub waiting: BTreeMap<InstanceId, String>,
}

/// An instance to take off a machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removal {
    /// The instance.
    pub instance: InstanceId,
    /// Its machine.
    pub machine: String,
    /// Why.
    pub why: &'static str,
}

/// Plans what `view` needs.
pub fn plan(view: &View) -> Plan {
    let mut plan = Plan::default();
    let desired = desired_instances(view);
    let mut load: BTreeMap<&str, MachineLoad> = view
        .machines
        .keys()
        .map(|name| (name.as_str(), MachineLoad::default()))
        .collect();
    for (instance, placed) in &view.placed {
        let why = match view.units.get(&instance.unit) {
            None => Some("its unit was destroyed"),
            Some(unit) if unit.target == Target::Inactive => Some("its unit was stopped"),
            Some(_) if view.digest_of(&instance.unit).as_ref() != Some(&placed.spec_digest) => {
                Some("its unit's spec changed")
            }
            Some(_) if !desired.contains_key(instance) => Some("its unit has fewer instances now"),
            Some(_) => None,
        };
        match why {
            Some(why) => plan.remove.push(Removal {
                instance: instance.clone(),
                machine: placed.machine.clone(),
                why,
            }),
            None => {
                if let (Some(machine_load), Some(unit)) = (
                    load.get_mut(placed.machine.as_str()),
                    view.units.get(&instance.unit),
                ) {
                    machine_load.add(instance, &unit.spec);
                }
            }
        }
    }
    let removed: BTreeSet<&InstanceId> = plan.remove.iter().map(|r| &r.instance).collect();
    let mut pending: Vec<(&InstanceId, &UnitSpec)> = desired
        .iter()
        .filter(|(instance, _)| !removed.contains(instance) && !view.placed.contains_key(*instance))
        .filter(|(instance, _)| match view.failed.get(*instance) {
            Some(reason) => {
                plan.waiting.insert(
                    (*instance).clone(),
                    format!("failed: {reason}; start the unit again to run it"),
                );
                false
            }
            None => true,
        })
        .map(|(instance, spec)| (instance, *spec))
        .collect();
    pending
        .sort_by_key(|(instance, spec)| (spec.placement.machine_of.is_some(), (*instance).clone()));
    let mut where_placed: BTreeMap<InstanceId, String> = view
        .placed
        .iter()
        .filter(|(instance, _)| !removed.contains(instance))
        .map(|(instance, placed)| (instance.clone(), placed.machine.clone()))
        .collect();
    // Units placed next to another wait for it; a pass that places nothing ends the loop.
    loop {
        let mut progress = false;
        let mut still_pending = Vec::new();
        for (instance, spec) in pending {
            match choose(view, &load, &where_placed, instance, spec) {
                Ok(machine) => {
                    if let Some(machine_load) = load.get_mut(machine.as_str()) {
                        machine_load.add(instance, spec);
                    }
                    where_placed.insert(instance.clone(), machine.clone());
                    plan.place.push((instance.clone(), machine));
                    progress = true;
                }
                Err(why) => still_pending.push((instance, spec, why)),
            }
        }
        if !progress || still_pending.is_empty() {
            for (instance, _, why) in still_pending {
                plan.waiting.insert(instance.clone(), why);
            }
            break;
        }
        pending = still_pending
            .into_iter()
            .map(|(instance, spec, _)| (instance, spec))
            .collect();
    }
    plan
}

/// Every instance that launched units should have, with its unit's spec.
fn desired_instances(view: &View) -> BTreeMap<InstanceId, &UnitSpec> {
    let mut desired = BTreeMap::new();
    for (name, unit) in &view.units {
        if unit.target != Target::Launched {
            continue;
        }
        let spec = &unit.spec;
        if spec.placement.global {
            for machine in view.machines.values() {
                if static_refusal(spec, machine).is_none() {
                    desired.insert(InstanceId::on_machine(name, &machine.id), spec);
                }
            }
        } else {
            for index in 0..spec.placement.replicas {
                desired.insert(InstanceId::replica(name, index), spec);
            }
        }
    }
    desired
}

/// What is placed on a machine, planned placements included.
#[derive(Debug, Default)]
struct MachineLoad {
    used: Resources,
    instances: Vec<(InstanceId, UnitSpec)>,
}

impl MachineLoad {
    fn add(&mut self, instance: &InstanceId, spec: &UnitSpec) {
        self.used = self.used.plus(&spec.resources);
        self.instances.push((instance.clone(), spec.clone()));
    }

    fn same_unit(&self, unit: &str) -> usize {
        self.instances
            .iter()
            .filter(|(instance, _)| instance.unit == unit)
            .count()
    }

    /// Whether `instance` of `spec` may not share this machine with what is on it.
    fn conflict(&self, instance: &InstanceId, spec: &UnitSpec) -> Option<InstanceId> {
        self.instances
            .iter()
            .find(|(other, other_spec)| {
                other != instance
                    && (spec.conflicts_with(other) || other_spec.conflicts_with(instance))
            })
            .map(|(other, _)| other.clone())
    }
}

/// Why `machine` can never run `spec`, whatever else is placed: architecture and metadata.
fn static_refusal(spec: &UnitSpec, machine: &MachineRecord) -> Option<String> {
    refuse_builds(spec, machine)
        .or_else(|| refuse_arch(spec, machine))
        .or_else(|| refuse_metadata(spec, machine))
}

fn refuse_builds(spec: &UnitSpec, machine: &MachineRecord) -> Option<String> {
    spec.build_for(&machine.arch).is_none().then(|| {
        format!(
            "no machine of arch {} (the unit's builds)",
            spec.build_archs()
        )
    })
}

fn refuse_arch(spec: &UnitSpec, machine: &MachineRecord) -> Option<String> {
    spec.placement
        .arch
        .as_ref()
        .filter(|arch| **arch != machine.arch)
        .map(|arch| format!("no machine of arch {arch}"))
}

fn refuse_metadata(spec: &UnitSpec, machine: &MachineRecord) -> Option<String> {
    spec.placement
        .metadata
        .iter()
        .find(|(key, values)| {
            !machine
                .metadata
                .get(*key)
                .is_some_and(|value| values.contains(value))
        })
        .map(|(key, values)| format!("no machine with metadata {key} in [{}]", values.join(", ")))
}

/// The machine for `instance`, or why there is none. The reason names the rule that ruled
/// out the last machines.
fn choose(
    view: &View,
    load: &BTreeMap<&str, MachineLoad>,
    where_placed: &BTreeMap<InstanceId, String>,
    instance: &InstanceId,
    spec: &UnitSpec,
) -> Result<String, String> {
    if view.machines.is_empty() {
        return Err("no machines are registered".to_owned());
    }
    let mut candidates: Vec<&MachineRecord> = view.machines.values().collect();
    let mut why = String::new();
    let mut keep = |candidates: &mut Vec<&MachineRecord>,
                    test: &dyn Fn(&MachineRecord) -> Option<String>| {
        let mut last_refusal = None;
        candidates.retain(|machine| match test(machine) {
            Some(refusal) => {
                last_refusal = Some(refusal);
                false
            }
            None => true,
        });
        if candidates.is_empty() {
            if let Some(refusal) = last_refusal {
                why = refusal;
            }
        }
    };
    if let Slot::Machine(own) = &instance.slot {
        keep(&mut candidates, &|machine| {
            (&machine.id != own).then(|| format!("machine {own} is gone"))
        });
    }
    keep(&mut candidates, &|machine| refuse_builds(spec, machine));
    keep(&mut candidates, &|machine| refuse_arch(spec, machine));
    keep(&mut candidates, &|machine| refuse_metadata(spec, machine));
    if let Some(next_to) = &spec.placement.machine_of {
        let target = machine_of_target(view, next_to, instance)?;
        let target_machine = where_placed
            .get(&target)
            .ok_or_else(|| format!("waits for {target} (machine_of) to be placed"))?;
        keep(&mut candidates, &|machine| {
            (&machine.id != target_machine).then(|| {
                format!("the machine of {target} ({target_machine}) does not meet the unit's other rules")
            })
        });
    }
    keep(&mut candidates, &|machine| {
        load.get(machine.id.as_str())
            .and_then(|machine_load| machine_load.conflict(instance, spec))
            .map(|other| {
                format!(
                    "every machine that fits runs a conflicting instance (last: {other} on {})",
                    machine.id
                )
            })
    });
    keep(&mut candidates, &|machine| {
        let used = load
            .get(machine.id.as_str())
            .map(|machine_load| machine_load.used)
            .unwrap_or_default();
        (!spec.resources.fits_in(&machine.capacity.minus(&used))).then(|| {
            format!(
                "no machine has room for {} MiB and {} millicpus",
                spec.resources.memory_mb, spec.resources.cpu_millis
            )
        })
    });
    if candidates.is_empty() {
        return Err(why);
    }
    let score = |machine: &MachineRecord| {
        let machine_load = load.get(machine.id.as_str());
        let same = machine_load.map_or(0, |l| l.same_unit(&instance.unit));
        let count = machine_load.map_or(0, |l| l.instances.len());
        let used = machine_load.map_or(0, |l| l.used.memory_mb);
        let share = used
            .saturating_mul(1000)
            .checked_div(machine.capacity.memory_mb)
            .unwrap_or(0);
        (same, count, share, machine.id.clone())
    };
    candidates
        .into_iter()
        .min_by_key(|machine| score(machine))
        .map(|machine| machine.id.clone())
        .ok_or(why)
}

/// The instance that `instance` must run next to: the same replica of `unit`, or its only
/// instance.
fn machine_of_target(view: &View, unit: &str, instance: &InstanceId) -> Result<InstanceId, String> {
    let other = view
        .units
        .get(unit)
        .filter(|other| other.target == Target::Launched)
        .ok_or_else(|| format!("waits for unit {unit} (machine_of), which is not launched"))?;
    if other.spec.placement.global {
        return Err(format!(
            "machine_of names {unit}, a global unit; name one instance's unit"
        ));
    }
    match &instance.slot {
        Slot::Replica(index) if *index < other.spec.placement.replicas => {
            Ok(InstanceId::replica(unit, *index))
        }
        _ if other.spec.placement.replicas == 1 => Ok(InstanceId::replica(unit, 0)),
        _ => Err(format!(
            "machine_of {unit}: it has no instance {unit}@{} to run next to",
            match &instance.slot {
                Slot::Replica(index) => index.to_string(),
                Slot::Machine(machine) => machine.clone(),
            }
        )),
    }
}

#[cfg(test)]
mod tests;
