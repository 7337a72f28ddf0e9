//! The operator's side (fleetctl's): submit, start, stop and destroy units, and read what
//! the cluster is doing. `schedctl`, the SDK and the tests all go through this.

use std::collections::BTreeMap;

use crate::kv::{
    prefix_end, txn, CompareResult, DeleteRangeRequest, KeyValue, KvClient, KvClientError,
    PutRequest, RangeRequest, TargetUnion, TxnRequest,
};
use thiserror::Error;

use super::instance::InstanceId;
use super::keys::{self, Key};
use super::records::{to_json, Failure, InstanceState, MachineRecord, Phase, Target, UnitRecord};
use super::unit::UnitSpec;
use crate::discovery::{self, Service};
use crate::names::check_name;

/// Why an operator's request failed.
#[derive(Debug, Error)]
pub enum ClientError {
    /// The store could not be asked.
    #[error("{what}: {source}")]
    Kv {
        /// What was being done.
        what: String,
        /// Why it failed.
        source: KvClientError,
    },
    /// No unit has that name.
    #[error("unit {0} is not submitted")]
    NoSuchUnit(String),
    /// A submitted unit with that name has another spec; fleet refuses this too.
    #[error("unit {0} is already submitted with another spec; destroy it first")]
    Conflict(String),
    /// The spec is not valid.
    #[error(transparent)]
    Spec(#[from] super::unit::SpecError),
    /// A record in the store is not what its key should hold.
    #[error("{key} holds no valid record: {reason}")]
    Unreadable {
        /// The key.
        key: String,
        /// Why.
        reason: String,
    },
    /// A unit's record kept changing under the request.
    #[error("unit {0} kept changing; try again")]
    Contended(String),
    /// A service or version name is not valid.
    #[error("{what} {reason}")]
    BadName {
        /// What was named.
        what: &'static str,
        /// What is wrong with the name.
        reason: String,
    },
}

/// A client of the scheduler's keys.
#[derive(Debug, Clone)]
pub struct SchedClient {
    kv: KvClient,
}

/// Everything the scheduler holds, read at one revision (`schedctl … -o json` prints it).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Snapshot {
    /// Machines, by name.
    pub machines: BTreeMap<String, MachineRecord>,
    /// Units, by name.
    pub units: BTreeMap<String, UnitRecord>,
    /// Placed instances: machine and fencing token (the assignment's creation revision).
    pub placed: BTreeMap<InstanceId, (String, i64)>,
    /// What agents report.
    pub states: BTreeMap<InstanceId, InstanceState>,
    /// Instances that failed for good.
    pub failed: BTreeMap<InstanceId, Failure>,
    /// Why the engine cannot place an instance.
    pub waiting: BTreeMap<InstanceId, String>,
    /// The engine that leads, if any (its proclamation).
    pub engine: Option<String>,
    /// Services, by name: routing and registered instances (discovery's keys, read at the
    /// same revision).
    #[serde(default)]
    pub services: BTreeMap<String, Service>,
    /// Keys that could not be read, with the reason.
    pub unreadable: Vec<String>,
    /// The store's revision.
    pub revision: i64,
}

impl Snapshot {
    /// Whether `instance` runs healthy on its machine, under its current assignment.
    pub fn healthy(&self, instance: &InstanceId) -> bool {
        match (self.placed.get(instance), self.states.get(instance)) {
            (Some((machine, token)), Some(state)) => {
                state.phase == Phase::Running
                    && state.healthy
                    && &state.machine == machine
                    && state.fencing_token == *token
            }
            _ => false,
        }
    }

    /// Whether every instance of `unit` runs healthy: its replicas, or, for a global unit,
    /// at least one instance and every one placed.
    pub fn all_healthy(&self, unit: &UnitSpec) -> bool {
        if unit.placement.global {
            let mut placed = self
                .placed
                .keys()
                .filter(|instance| instance.unit == unit.name)
                .peekable();
            placed.peek().is_some() && placed.all(|instance| self.healthy(instance))
        } else {
            (0..unit.placement.replicas)
                .all(|index| self.healthy(&InstanceId::replica(&unit.name, index)))
        }
    }
}

impl SchedClient {
    /// A client over `kv`.
    pub fn new(kv: KvClient) -> Self {
        Self { kv }
    }

    /// The KV client underneath.
    pub fn kv(&self) -> &KvClient {
        &self.kv
    }

    /// Submits `spec`, inactive (fleetctl `submit`). Submitting the same spec again does
    /// nothing; another spec under the same name is refused.
    pub async fn submit(&self, spec: &UnitSpec) -> Result<(), ClientError> {
        spec.check()?;
        let record = UnitRecord {
            spec: spec.clone(),
            target: Target::Inactive,
        };
        let key = keys::unit(&spec.name);
        let answer = self
            .kv
            .txn(&TxnRequest {
                compare: vec![txn::compare(
                    key.clone(),
                    CompareResult::Equal,
                    TargetUnion::CreateRevision(0),
                )],
                success: vec![txn::put(PutRequest {
                    key: key.into_bytes(),
                    value: to_json(&record),
                    ..PutRequest::default()
                })],
                failure: Vec::new(),
            })
            .await
            .map_err(|source| kv_error(format!("submitting unit {}", spec.name), source))?;
        if answer.succeeded {
            return Ok(());
        }
        match self.unit(&spec.name).await? {
            Some((existing, _)) if existing.spec == *spec => Ok(()),
            Some(_) => Err(ClientError::Conflict(spec.name.clone())),
            None => Err(ClientError::Contended(spec.name.clone())),
        }
    }

    /// Replaces a submitted unit's spec, keeping its target; its running instances start
    /// again with the new spec (the engine sees the digest change).
    pub async fn replace(&self, spec: &UnitSpec) -> Result<(), ClientError> {
        spec.check()?;
        let spec = spec.clone();
        self.update(&spec.name.clone(), move |record| record.spec = spec.clone())
            .await
    }

    /// Launches a unit (fleetctl `start`); an instance that had failed for good may run
    /// again.
    pub async fn start(&self, name: &str) -> Result<(), ClientError> {
        self.update(name, |record| record.target = Target::Launched)
            .await?;
        self.kv
            .delete(&DeleteRangeRequest {
                key: format!("{}{name}@", failed_prefix()).into_bytes(),
                range_end: prefix_end(format!("{}{name}@", failed_prefix()).as_bytes()),
                ..DeleteRangeRequest::default()
            })
            .await
            .map_err(|source| kv_error(format!("clearing unit {name}'s failures"), source))?;
        Ok(())
    }

    /// Stops a unit's instances, keeping it submitted (fleetctl `stop`).
    pub async fn stop(&self, name: &str) -> Result<(), ClientError> {
        self.update(name, |record| record.target = Target::Inactive)
            .await
    }

    /// Changes a unit's replica count.
    pub async fn scale(&self, name: &str, replicas: u32) -> Result<(), ClientError> {
        self.update(name, |record| record.spec.placement.replicas = replicas)
            .await
    }

    /// Removes a unit (fleetctl `destroy`): its instances stop.
    pub async fn destroy(&self, name: &str) -> Result<(), ClientError> {
        let deleted = self
            .kv
            .delete(&DeleteRangeRequest {
                key: keys::unit(name).into_bytes(),
                ..DeleteRangeRequest::default()
            })
            .await
            .map_err(|source| kv_error(format!("destroying unit {name}"), source))?;
        if deleted.deleted == 0 {
            return Err(ClientError::NoSuchUnit(name.to_owned()));
        }
        Ok(())
    }

    /// Reads everything the scheduler holds at one revision.
    pub async fn snapshot(&self) -> Result<Snapshot, ClientError> {
        let answer = self
            .kv
            .range(&RangeRequest {
                key: keys::ROOT.as_bytes().to_vec(),
                range_end: prefix_end(keys::ROOT.as_bytes()),
                ..RangeRequest::default()
            })
            .await
            .map_err(|source| kv_error("reading the scheduler's keys".into(), source))?;
        let mut snapshot = Snapshot {
            revision: crate::kv::AtRevision::revision(&answer),
            ..Snapshot::default()
        };
        // The election queue's head (lowest creation revision) leads; keys sort by lease id.
        let mut engine_head: Option<&KeyValue> = None;
        for kv in &answer.kvs {
            let outcome: Result<(), String> = match Key::parse(&kv.key) {
                Some(Key::Machine(name)) => {
                    from_json(&kv.value).map(|record| drop(snapshot.machines.insert(name, record)))
                }
                Some(Key::Unit(name)) => {
                    from_json(&kv.value).map(|record| drop(snapshot.units.insert(name, record)))
                }
                Some(Key::Assignment { machine, instance }) => {
                    snapshot
                        .placed
                        .insert(instance, (machine, kv.create_revision));
                    Ok(())
                }
                Some(Key::State(instance)) => {
                    from_json(&kv.value).map(|state| drop(snapshot.states.insert(instance, state)))
                }
                Some(Key::Failed(instance)) => from_json(&kv.value)
                    .map(|failure| drop(snapshot.failed.insert(instance, failure))),
                Some(Key::Waiting(instance)) => {
                    snapshot
                        .waiting
                        .insert(instance, String::from_utf8_lossy(&kv.value).into_owned());
                    Ok(())
                }
                Some(Key::Engine) => {
                    if engine_head.is_none_or(|head| kv.create_revision < head.create_revision) {
                        engine_head = Some(kv);
                    }
                    Ok(())
                }
                Some(Key::Placement(_)) => Ok(()),
                None => Err("not a key of the scheduler's layout".into()),
            };
            if let Err(reason) = outcome {
                snapshot
                    .unreadable
                    .push(format!("{}: {reason}", String::from_utf8_lossy(&kv.key)));
            }
        }
        snapshot.engine = engine_head.map(|kv| String::from_utf8_lossy(&kv.value).into_owned());
        self.read_services(&mut snapshot).await?;
        Ok(snapshot)
    }

    /// Adds discovery's keys to `snapshot`, read at its revision.
    async fn read_services(&self, snapshot: &mut Snapshot) -> Result<(), ClientError> {
        let answer = self
            .kv
            .range(&RangeRequest {
                key: discovery::ROOT.as_bytes().to_vec(),
                range_end: prefix_end(discovery::ROOT.as_bytes()),
                revision: snapshot.revision,
                ..RangeRequest::default()
            })
            .await
            .map_err(|source| kv_error("reading the services' keys".into(), source))?;
        for kv in &answer.kvs {
            let outcome: Result<(), String> = match discovery::Key::parse(&kv.key) {
                Some(discovery::Key::Routing { service }) => from_json(&kv.value).map(|routing| {
                    snapshot.services.entry(service).or_default().routing = Some(routing);
                }),
                Some(discovery::Key::Registration { service, .. }) => {
                    from_json(&kv.value).map(|registration| {
                        snapshot
                            .services
                            .entry(service)
                            .or_default()
                            .instances
                            .push(registration);
                    })
                }
                None => Err("not a key of discovery's layout".into()),
            };
            if let Err(reason) = outcome {
                snapshot
                    .unreadable
                    .push(format!("{}: {reason}", String::from_utf8_lossy(&kv.key)));
            }
        }
        Ok(())
    }

    /// Makes `versions` of `service` the ones that get traffic; with none, every version
    /// does (the routing record is deleted).
    pub async fn route(&self, service: &str, versions: &[String]) -> Result<(), ClientError> {
        check_name(service).map_err(|reason| ClientError::BadName {
            what: "service",
            reason,
        })?;
        for version in versions {
            check_name(version).map_err(|reason| ClientError::BadName {
                what: "version",
                reason,
            })?;
        }
        let key = discovery::routing(service);
        let outcome = if versions.is_empty() {
            self.kv
                .delete(&DeleteRangeRequest {
                    key: key.clone().into_bytes(),
                    ..DeleteRangeRequest::default()
                })
                .await
                .map(drop)
        } else {
            let routing = discovery::Routing {
                versions: versions.to_vec(),
            };
            self.kv.put(key.clone(), to_json(&routing)).await.map(drop)
        };
        outcome.map_err(|source| kv_error(format!("writing {key}"), source))
    }

    async fn unit(&self, name: &str) -> Result<Option<(UnitRecord, i64)>, ClientError> {
        let Some(kv) = self
            .kv
            .get(keys::unit(name))
            .await
            .map_err(|source| kv_error(format!("reading unit {name}"), source))?
        else {
            return Ok(None);
        };
        let record = from_json(&kv.value).map_err(|reason| ClientError::Unreadable {
            key: keys::unit(name),
            reason,
        })?;
        Ok(Some((record, kv.mod_revision)))
    }

    /// Changes a unit's record with `change`, retrying if it changes meanwhile.
    async fn update(
        &self,
        name: &str,
        change: impl Fn(&mut UnitRecord),
    ) -> Result<(), ClientError> {
        for _ in 0..10 {
            let (mut record, revision) = self
                .unit(name)
                .await?
                .ok_or_else(|| ClientError::NoSuchUnit(name.to_owned()))?;
            change(&mut record);
            record.spec.check()?;
            let answer = self
                .kv
                .txn(&TxnRequest {
                    compare: vec![txn::compare(
                        keys::unit(name),
                        CompareResult::Equal,
                        TargetUnion::ModRevision(revision),
                    )],
                    success: vec![txn::put(PutRequest {
                        key: keys::unit(name).into_bytes(),
                        value: to_json(&record),
                        ..PutRequest::default()
                    })],
                    failure: Vec::new(),
                })
                .await
                .map_err(|source| kv_error(format!("updating unit {name}"), source))?;
            if answer.succeeded {
                return Ok(());
            }
        }
        Err(ClientError::Contended(name.to_owned()))
    }
}

fn failed_prefix() -> String {
    format!("{}failed/", keys::ROOT)
}

fn kv_error(what: String, source: KvClientError) -> ClientError {
    ClientError::Kv { what, source }
}

fn from_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    serde_json::from_slice(bytes).map_err(|error| error.to_string())
}
