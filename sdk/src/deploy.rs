//! Deploy strategies for a service the scheduler runs. Each version of the service is a
//! unit of its own whose [`UnitSpec::register`] names the service and the version; the
//! service's routing record says which versions get traffic ([`sinew_proto::discovery`]),
//! and proxies follow it.
//!
//! - [`blue_green`]: start green, wait until every instance is healthy and registered,
//!   switch the routing to green's version in one write, let blue's connections drain,
//!   stop blue (still submitted, so [`roll_back`] can start it again).
//! - [`rolling`]: add the new version `step` instances at a time beside the old one, each
//!   step gated on the new instances' health, shrinking the old unit as the new one grows;
//!   a step that does not become healthy puts the old unit back as it was and stops the new.
//!
//! A version that never becomes healthy leaves the old one serving, untouched, and the
//! error says why, instance by instance. The strategies drive the scheduler through an
//! [`Operator`]: [`crate::sched::Scheduler`] from a playbook, or a client of the store.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use sinew_proto::sched::client::Snapshot;
use sinew_proto::sched::records::Target;
use sinew_proto::sched::unit::UnitSpec;
use sinew_proto::sched::InstanceId;
use thiserror::Error;

use crate::outcome::{Outcome, Status};

/// How often the strategies look at the cluster while they wait.
const POLL: Duration = Duration::from_millis(200);

/// What the strategies ask of the scheduler.
pub trait Operator {
    /// Submits `unit` (again, if its spec changed nothing) and starts it.
    fn start(&self, unit: &UnitSpec) -> Result<(), DeployError>;
    /// Stops a unit's instances; the unit stays submitted.
    fn stop(&self, unit: &str) -> Result<(), DeployError>;
    /// Changes a unit's replica count; instances that stay are not restarted.
    fn scale(&self, unit: &str, replicas: u32) -> Result<(), DeployError>;
    /// Makes `versions` of `service` the ones that get traffic.
    fn route(&self, service: &str, versions: &[String]) -> Result<(), DeployError>;
    /// Everything the scheduler holds now.
    fn snapshot(&self) -> Result<Snapshot, DeployError>;
}

/// Why a deploy did not happen, or was undone.
#[derive(Debug, Error)]
pub enum DeployError {
    /// The scheduler refused a request or could not be asked.
    #[error("{0}")]
    Scheduler(String),
    /// The unit registers no service.
    #[error("unit {0} registers no service ([register]); a deploy switches a service's traffic")]
    NotAService(String),
    /// The new version did not become healthy; the old one serves on.
    #[error(transparent)]
    NeverHealthy(Box<Unhealthy>),
    /// No running version of the service to roll back to, or from.
    #[error("{0}")]
    Nothing(String),
}

/// A version that did not become healthy, and why.
#[derive(Debug, Error)]
#[error("{unit} (version {version} of {service}) did not become healthy within {patience:?}, so {kept} keeps serving: {why}")]
pub struct Unhealthy {
    /// The new version's unit.
    pub unit: String,
    /// Its version.
    pub version: String,
    /// The service.
    pub service: String,
    /// How long it had.
    pub patience: Duration,
    /// What serves instead.
    pub kept: String,
    /// Each instance's phase, failure or reason to wait.
    pub why: String,
}

/// How long a new version has and how long an old one drains.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// How long the new instances have to become healthy and registered.
    pub patience: Duration,
    /// How long the old version's open connections may go on after the switch, before it
    /// is stopped: the proxies' drain grace.
    pub drain: Duration,
}

/// What a blue-green deploy did: enough to roll it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Switch {
    /// The service.
    pub service: String,
    /// The unit now serving.
    pub green: String,
    /// Its version.
    pub version: String,
    /// The units that served before, now stopped but submitted.
    pub blue: Vec<String>,
    /// The routing before the switch (`None`: every version got traffic).
    pub previous: Option<Vec<String>>,
    /// From the start of green to the switch.
    pub took: Duration,
}

impl Outcome for Switch {
    fn status(&self) -> Status {
        Status::Changed
    }

    fn detail(&self) -> Option<String> {
        Some(format!(
            "{} now routed to version {} ({}) in {:.0} ms",
            self.service,
            self.version,
            self.green,
            self.took.as_secs_f64() * 1000.0
        ))
    }
}

/// Blue-green: see the module's documentation.
pub fn blue_green(
    operator: &impl Operator,
    green: &UnitSpec,
    timing: Timing,
) -> Result<Switch, DeployError> {
    let (service, version) = service_of(green)?;
    let before = operator.snapshot()?;
    let blue = serving_units(&before, &service, &green.name);
    let previous = before
        .services
        .get(&service)
        .and_then(|s| s.routing.as_ref())
        .map(|routing| routing.versions.clone());
    let started = Instant::now();
    if previous.is_none() {
        // Until now every version got traffic: pin it to blue's before green registers.
        operator.route(&service, &versions_of(&before, &blue))?;
    }
    operator.start(green)?;
    if let Err(why) = wait_serving(operator, green, green.placement.replicas, timing.patience) {
        operator.stop(&green.name)?;
        if previous.is_none() {
            operator.route(&service, &[])?;
        }
        return Err(DeployError::NeverHealthy(Box::new(Unhealthy {
            unit: green.name.clone(),
            version,
            service,
            patience: timing.patience,
            kept: describe_units(&blue),
            why,
        })));
    }
    operator.route(&service, std::slice::from_ref(&version))?;
    let took = started.elapsed();
    std::thread::sleep(timing.drain);
    for unit in &blue {
        operator.stop(unit)?;
    }
    Ok(Switch {
        service,
        green: green.name.clone(),
        version,
        blue,
        previous,
        took,
    })
}

/// Undoes `switch`: starts its blue units again, waits until they serve, routes the
/// traffic back, lets green drain and stops it.
pub fn roll_back(
    operator: &impl Operator,
    switch: &Switch,
    timing: Timing,
) -> Result<Switch, DeployError> {
    let snapshot = operator.snapshot()?;
    let mut versions = BTreeSet::new();
    for name in &switch.blue {
        let record = snapshot
            .units
            .get(name)
            .ok_or_else(|| DeployError::Nothing(format!("unit {name} is no longer submitted")))?;
        operator.start(&record.spec)?;
        if let Err(why) = wait_serving(
            operator,
            &record.spec,
            record.spec.placement.replicas,
            timing.patience,
        ) {
            return Err(DeployError::NeverHealthy(Box::new(Unhealthy {
                unit: name.clone(),
                version: service_of(&record.spec)?.1,
                service: switch.service.clone(),
                patience: timing.patience,
                kept: switch.green.clone(),
                why,
            })));
        }
        versions.insert(service_of(&record.spec)?.1);
    }
    let versions: Vec<String> = match &switch.previous {
        Some(previous) => previous.clone(),
        None => versions.into_iter().collect(),
    };
    let started = Instant::now();
    operator.route(&switch.service, &versions)?;
    let took = started.elapsed();
    std::thread::sleep(timing.drain);
    operator.stop(&switch.green)?;
    Ok(Switch {
        service: switch.service.clone(),
        green: switch.blue.join(", "),
        version: versions.join(", "),
        blue: vec![switch.green.clone()],
        previous: Some(vec![switch.version.clone()]),
        took,
    })
}

/// What a rolling deploy did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roll {
    /// The unit replaced.
    pub old: String,
    /// The unit now serving.
    pub new: String,
    /// The steps taken.
    pub steps: u32,
}

impl Outcome for Roll {
    fn status(&self) -> Status {
        Status::Changed
    }

    fn detail(&self) -> Option<String> {
        Some(format!(
            "{} replaced by {} in {} steps",
            self.old, self.new, self.steps
        ))
    }
}

/// Rolling: see the module's documentation. The service must be served by one unit, which
/// `new` replaces with as many replicas.
pub fn rolling(
    operator: &impl Operator,
    new: &UnitSpec,
    step: u32,
    timing: Timing,
) -> Result<Roll, DeployError> {
    let (service, version) = service_of(new)?;
    let before = operator.snapshot()?;
    let serving = serving_units(&before, &service, &new.name);
    let [old] = &serving[..] else {
        return Err(DeployError::Nothing(format!(
            "a rolling deploy replaces the one unit serving {service}; it has {}",
            describe_units(&serving)
        )));
    };
    let old = old.clone();
    let total = before.units[&old].spec.placement.replicas;
    let step = step.clamp(1, total.max(1));
    let old_versions = versions_of(&before, std::slice::from_ref(&old));
    let both: Vec<String> = old_versions
        .iter()
        .cloned()
        .chain([version.clone()])
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    operator.route(&service, &both)?;
    let mut grown = 0;
    let mut steps = 0;
    let mut spec = new.clone();
    while grown < total {
        grown = (grown + step).min(total);
        steps += 1;
        spec.placement.replicas = grown;
        if steps == 1 {
            operator.start(&spec)?;
        } else {
            operator.scale(&spec.name, grown)?;
        }
        if let Err(why) = wait_serving(operator, &spec, grown, timing.patience) {
            operator.scale(&old, total)?;
            let kept = before.units[&old].spec.clone();
            // The old unit's instances that left come back before the new ones go.
            let back = wait_serving(operator, &kept, total, timing.patience);
            operator.route(&service, &old_versions)?;
            std::thread::sleep(timing.drain);
            operator.stop(&spec.name)?;
            back.map_err(DeployError::Nothing)?;
            return Err(DeployError::NeverHealthy(Box::new(Unhealthy {
                unit: spec.name.clone(),
                version,
                service,
                patience: timing.patience,
                kept: format!("{old} (rolled back at step {steps})"),
                why,
            })));
        }
        operator.scale(&old, total - grown)?;
    }
    operator.route(&service, std::slice::from_ref(&version))?;
    std::thread::sleep(timing.drain);
    operator.stop(&old)?;
    Ok(Roll {
        old,
        new: new.name.clone(),
        steps,
    })
}

/// The service and version `unit` registers.
fn service_of(unit: &UnitSpec) -> Result<(String, String), DeployError> {
    let register = unit
        .register
        .as_ref()
        .ok_or_else(|| DeployError::NotAService(unit.name.clone()))?;
    Ok((register.service.clone(), register.version.clone()))
}

/// The started units other than `except` that register `service`.
fn serving_units(snapshot: &Snapshot, service: &str, except: &str) -> Vec<String> {
    snapshot
        .units
        .iter()
        .filter(|(name, record)| {
            name.as_str() != except
                && record.target == Target::Launched
                && record
                    .spec
                    .register
                    .as_ref()
                    .is_some_and(|register| register.service == service)
        })
        .map(|(name, _)| name.clone())
        .collect()
}

/// The versions `units` register, each once.
fn versions_of(snapshot: &Snapshot, units: &[String]) -> Vec<String> {
    units
        .iter()
        .filter_map(|name| snapshot.units.get(name))
        .filter_map(|record| record.spec.register.as_ref())
        .map(|register| register.version.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

fn describe_units(units: &[String]) -> String {
    if units.is_empty() {
        "no other unit".to_owned()
    } else {
        units.join(", ")
    }
}

/// Waits until the first `replicas` instances of `unit` run healthy and are registered;
/// gives up at once when one failed for good, or after `patience`, saying why.
fn wait_serving(
    operator: &impl Operator,
    unit: &UnitSpec,
    replicas: u32,
    patience: Duration,
) -> Result<(), String> {
    let started = Instant::now();
    let Some(register) = &unit.register else {
        return Err(format!("unit {} registers no service", unit.name));
    };
    loop {
        let snapshot = operator.snapshot().map_err(|error| error.to_string())?;
        let instances: Vec<InstanceId> = (0..replicas)
            .map(|slot| InstanceId::replica(&unit.name, slot))
            .collect();
        let registered: BTreeSet<&str> = snapshot
            .services
            .get(&register.service)
            .map(|service| {
                service
                    .instances
                    .iter()
                    .map(|instance| instance.instance.as_str())
                    .collect()
            })
            .unwrap_or_default();
        let serving = |instance: &InstanceId| {
            snapshot.healthy(instance) && registered.contains(instance.to_string().as_str())
        };
        if instances.iter().all(serving) {
            return Ok(());
        }
        let failed = instances
            .iter()
            .any(|instance| snapshot.failed.contains_key(instance));
        if failed || started.elapsed() > patience {
            return Err(instances
                .iter()
                .map(|instance| {
                    format!(
                        "{instance}: {}",
                        condition(&snapshot, instance, serving(instance))
                    )
                })
                .collect::<Vec<_>>()
                .join("; "));
        }
        std::thread::sleep(POLL);
    }
}

/// How an instance is doing, in words.
fn condition(snapshot: &Snapshot, instance: &InstanceId, serving: bool) -> String {
    if serving {
        return "serving".to_owned();
    }
    if let Some(failure) = snapshot.failed.get(instance) {
        return format!("failed on {}: {}", failure.machine, failure.reason);
    }
    if let Some(why) = snapshot.waiting.get(instance) {
        return format!("waiting: {why}");
    }
    match snapshot.states.get(instance) {
        Some(state) if state.healthy => format!("healthy on {} but not registered", state.machine),
        Some(state) => format!(
            "{:?} on {}, not healthy, {} restarts",
            state.phase, state.machine, state.restarts
        ),
        None => "not running yet".to_owned(),
    }
}
