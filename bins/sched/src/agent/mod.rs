//! The machine agent: registers the machine under a lease it renews ([`lease`]), follows its
//! assignments (`assign/<machine>/`) from one read and a watch, runs each as a supervised
//! instance ([`supervisor`], [`health`]) and reports their states under the lease.
//!
//! Self-fencing: the agent knows a moment before which its lease cannot have ended
//! ([`lease::Liveness`]). If renewals stop succeeding, it kills every instance
//! [`FENCE_MARGIN`] before that moment, so that when the engine sees the lease end and
//! places the instances elsewhere, they no longer run here. It starts them again only once
//! a renewal succeeds (the assignments are still there) or, if the lease ended, after it
//! registered anew and the engine placed them again.
//!
//! Reports are transactions that hold only while the instance's assignment is the one it
//! runs under (the fencing token is the assignment's creation revision), so an agent that
//! lost its placement cannot overwrite what the next machine reports.

pub mod health;
pub mod journal;
pub mod lease;
pub mod supervisor;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use sinew_proto::kv::{
    prefix_end, txn, AtRevision as _, CompareResult, DeleteRangeRequest, EventType, KeyValue,
    KvClient, KvClientError, PutRequest, RangeRequest, TargetUnion, TxnRequest, WatchCreateRequest,
};
use thiserror::Error;
use tokio::sync::mpsc;
use tokio::time::Instant;

use self::lease::{Liveness, Registration};
use self::supervisor::{Machine, Report, Supervised};
use crate::instance::InstanceId;
use crate::keys::{self, Key};
use crate::records::{to_json, Assignment, Failure, InstanceState, MachineRecord, Phase};
use sinew_proto::discovery::{self, Registration as ServiceRegistration};

/// How long before its lease could end the agent kills its instances, when renewals fail.
pub const FENCE_MARGIN: Duration = Duration::from_millis(500);

/// How the agent runs.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The machine as it registers (its `lease` is filled in).
    pub record: MachineRecord,
    /// Where the lease and the instances' logs are kept.
    pub state_dir: PathBuf,
    /// The container runner, for container units.
    pub sinew_run: PathBuf,
}

/// Why the agent is not registered (it logs this and tries again).
#[derive(Debug, Error)]
pub enum AgentError {
    /// The store could not be reached to register.
    #[error("cannot register machine {machine}: {source}")]
    Register {
        /// The machine.
        machine: String,
        /// Why.
        source: KvClientError,
    },
}

/// How long the agent waits before registering again, reading again or reporting again
/// after a failure.
const RETRY: Duration = Duration::from_millis(250);

/// Runs the agent until `shutdown` resolves, registering again whenever the lease is lost;
/// then it stops its instances gracefully and revokes its lease, so the engine places them
/// elsewhere at once.
pub async fn run(client: KvClient, config: AgentConfig, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    let lease_file = lease::lease_file(&config.state_dir);
    loop {
        let registration = tokio::select! {
            () = &mut shutdown => return,
            registered = Registration::establish(&client, config.record.clone(), &lease_file) => registered,
        };
        let registration = match registration {
            Ok(registration) => registration,
            Err(source) => {
                tracing::warn!(
                    "{}",
                    AgentError::Register {
                        machine: config.record.id.clone(),
                        source
                    }
                );
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        tracing::info!(
            machine = %registration.record.id,
            lease = %format!("{:x}", registration.record.lease),
            "registered"
        );
        let mut machine = MachineAgent::new(&client, &config, &registration);
        let outcome = tokio::select! {
            () = &mut shutdown => None,
            lost = machine.serve(&registration) => Some(lost),
        };
        match outcome {
            None => {
                machine.stop_all().await;
                registration.revoke(&client, &lease_file).await;
                return;
            }
            Some(why) => {
                tracing::warn!("{why}; registering again");
                machine.kill_all().await;
            }
        }
    }
}

/// One registration's work.
struct MachineAgent<'a> {
    client: &'a KvClient,
    lease: i64,
    machine: Machine,
    /// Where other machines reach this one, for service registrations.
    address: Option<String>,
    /// The discovery key of each instance registered as a service now.
    registered: BTreeMap<InstanceId, String>,
    running: BTreeMap<InstanceId, Supervised>,
    /// Assignments, with their fencing tokens.
    assigned: BTreeMap<InstanceId, (Assignment, i64)>,
    /// The revision of each state key this agent last wrote.
    reported: BTreeMap<InstanceId, i64>,
    /// Instances that ended for good under their current assignment.
    ended: BTreeSet<(InstanceId, i64)>,
    reports: mpsc::UnboundedSender<Report>,
    incoming: mpsc::UnboundedReceiver<Report>,
}

impl<'a> MachineAgent<'a> {
    fn new(client: &'a KvClient, config: &AgentConfig, registration: &Registration) -> Self {
        let (reports, incoming) = mpsc::unbounded_channel();
        Self {
            client,
            lease: registration.record.lease,
            machine: Machine {
                name: registration.record.id.clone(),
                arch: registration.record.arch.clone(),
                log_dir: log_dir(&config.state_dir),
                sinew_run: config.sinew_run.clone(),
            },
            address: registration.record.address.clone(),
            registered: BTreeMap::new(),
            running: BTreeMap::new(),
            assigned: BTreeMap::new(),
            reported: BTreeMap::new(),
            ended: BTreeSet::new(),
            reports,
            incoming,
        }
    }

    /// Runs the assignments until the lease is gone or the assignments cannot be followed;
    /// returns why.
    async fn serve(&mut self, registration: &Registration) -> String {
        let mut liveness = registration.liveness();
        let prefix = keys::assignments_of(&self.machine.name);
        let revision = loop {
            match self.load(&prefix).await {
                Ok(revision) => break revision,
                Err(error) => {
                    tracing::warn!(%error, "cannot read the machine's assignments");
                    tokio::time::sleep(RETRY).await;
                }
            }
        };
        let mut watch = self.client.watch(WatchCreateRequest {
            key: prefix.clone().into_bytes(),
            range_end: prefix_end(prefix.as_bytes()),
            start_revision: revision + 1,
            ..WatchCreateRequest::default()
        });
        let mut fenced = false;
        loop {
            let deadline = match *liveness.borrow() {
                Liveness::Until(until) => until,
                Liveness::Gone => return "the machine's lease is gone".to_owned(),
            };
            let fence_at = deadline.checked_sub(FENCE_MARGIN).unwrap_or(deadline);
            if fenced && fence_at > Instant::now() {
                tracing::info!("the lease was renewed; starting the instances again");
                fenced = false;
            }
            if !fenced {
                self.reconcile().await;
            }
            tokio::select! {
                () = tokio::time::sleep_until(fence_at), if !fenced => {
                    tracing::warn!(
                        instances = self.running.len(),
                        "no lease renewal got through: killing every instance before the lease can end"
                    );
                    self.kill_all().await;
                    fenced = true;
                }
                changed = liveness.changed() => {
                    if changed.is_err() {
                        return "the lease's renewals stopped".to_owned();
                    }
                }
                batch = watch.next() => match batch {
                    Some(Ok(batch)) => {
                        for event in batch.events {
                            let Some(kv) = &event.kv else { continue };
                            if event.r#type() == EventType::Delete {
                                self.unassigned(&kv.key);
                            } else {
                                self.assigned(kv);
                            }
                        }
                    }
                    Some(Err(error)) => return format!("the watch of the assignments failed: {error}"),
                    None => return "the watch of the assignments ended".to_owned(),
                },
                Some(report) = self.incoming.recv() => {
                    if !fenced {
                        self.report(report).await;
                    }
                }
            }
        }
    }

    /// Reads the machine's assignments; returns the revision read at.
    async fn load(&mut self, prefix: &str) -> Result<i64, KvClientError> {
        let answer = self
            .client
            .range(&RangeRequest {
                key: prefix.as_bytes().to_vec(),
                range_end: prefix_end(prefix.as_bytes()),
                ..RangeRequest::default()
            })
            .await?;
        self.assigned.clear();
        for kv in &answer.kvs {
            self.assigned(kv);
        }
        Ok(answer.revision())
    }

    fn assigned(&mut self, kv: &KeyValue) {
        let Some(Key::Assignment { machine, instance }) = Key::parse(&kv.key) else {
            tracing::warn!(key = %String::from_utf8_lossy(&kv.key), "ignoring a key outside the layout");
            return;
        };
        match serde_json::from_slice::<Assignment>(&kv.value) {
            Ok(assignment) if assignment.instance == instance && machine == self.machine.name => {
                self.assigned
                    .insert(instance, (assignment, kv.create_revision));
            }
            Ok(_) => {
                tracing::warn!(%instance, "ignoring an assignment that names another instance or machine")
            }
            Err(error) => {
                tracing::warn!(%instance, %error, "ignoring an assignment that is not valid")
            }
        }
    }

    fn unassigned(&mut self, key: &[u8]) {
        if let Some(Key::Assignment { instance, .. }) = Key::parse(key) {
            self.assigned.remove(&instance);
        }
    }

    /// Stops what is no longer assigned (or is assigned anew) and starts what is assigned
    /// and not running.
    async fn reconcile(&mut self) {
        let outdated: Vec<InstanceId> = self
            .running
            .iter()
            .filter(|(instance, supervised)| {
                self.assigned
                    .get(*instance)
                    .is_none_or(|(_, token)| *token != supervised.fencing_token)
            })
            .map(|(instance, _)| instance.clone())
            .collect();
        for instance in outdated {
            if let Some(supervised) = self.running.remove(&instance) {
                tracing::info!(%instance, "no longer assigned here: stopping");
                // Out of discovery first, so that no new connection reaches it.
                self.deregister(&instance).await;
                supervised.stop().await;
                self.forget(&instance).await;
            }
        }
        self.ended.retain(|(instance, token)| {
            self.assigned.get(instance).is_some_and(|(_, t)| t == token)
        });
        for (instance, (assignment, token)) in &self.assigned {
            if self.running.contains_key(instance)
                || self.ended.contains(&(instance.clone(), *token))
            {
                continue;
            }
            let supervised = Supervised::start(
                assignment.clone(),
                *token,
                self.machine.clone(),
                self.reports.clone(),
            );
            self.running.insert(instance.clone(), supervised);
        }
    }

    /// Writes an instance's state, and its failure, while its assignment holds; registers
    /// a service's instance while it is healthy and deregisters it otherwise, in the same
    /// transaction.
    async fn report(&mut self, report: Report) {
        let Some((assignment, token)) = self.assigned.get(&report.instance) else {
            return;
        };
        if *token != report.fencing_token {
            return;
        }
        let register = assignment.spec.register.clone();
        let instance = report.instance.clone();
        let ended = matches!(report.phase, Phase::Failed { .. } | Phase::Exited);
        let state = InstanceState {
            instance: instance.clone(),
            machine: self.machine.name.clone(),
            fencing_token: report.fencing_token,
            phase: report.phase.clone(),
            healthy: report.healthy,
            restarts: report.restarts,
            pid: report.pid,
            since_ms: unix_ms(),
        };
        let mut success = vec![txn::put(PutRequest {
            key: keys::state(&instance).into_bytes(),
            value: to_json(&state),
            lease: self.lease,
            ..PutRequest::default()
        })];
        if let Phase::Failed { reason } = &report.phase {
            success.push(txn::put(PutRequest {
                key: keys::failed(&instance).into_bytes(),
                value: to_json(&Failure {
                    instance: instance.clone(),
                    machine: self.machine.name.clone(),
                    reason: reason.clone(),
                }),
                ..PutRequest::default()
            }));
        }
        let registration = register.map(|register| {
            let key = discovery::registration(&register.service, &self.machine.name, &instance.to_string());
            let serving = report.healthy && report.phase == Phase::Running;
            match (&self.address, serving) {
                (Some(address), true) => {
                    success.push(txn::put(PutRequest {
                        key: key.clone().into_bytes(),
                        value: to_json(&ServiceRegistration {
                            service: register.service,
                            version: register.version,
                            address: address.clone(),
                            port: register.port,
                            instance: instance.to_string(),
                            machine: self.machine.name.clone(),
                            metadata: register.metadata,
                        }),
                        lease: self.lease,
                        ..PutRequest::default()
                    }));
                    (key, true)
                }
                (None, true) => {
                    tracing::warn!(%instance, "not registered as a service: this machine has no address (schedd --address)");
                    (key, false)
                }
                (_, false) => {
                    success.push(txn::delete(DeleteRangeRequest {
                        key: key.clone().into_bytes(),
                        ..DeleteRangeRequest::default()
                    }));
                    (key, false)
                }
            }
        });
        let request = TxnRequest {
            compare: vec![txn::compare(
                keys::assignment(&self.machine.name, &instance),
                CompareResult::Equal,
                TargetUnion::CreateRevision(report.fencing_token),
            )],
            success,
            failure: Vec::new(),
        };
        match self.client.txn(&request).await {
            Ok(answer) if answer.succeeded => {
                self.reported.insert(instance.clone(), answer.revision());
                match registration {
                    Some((key, true)) => {
                        self.registered.insert(instance.clone(), key);
                    }
                    _ => {
                        self.registered.remove(&instance);
                    }
                }
            }
            Ok(_) => tracing::debug!(%instance, "not reported: its assignment changed"),
            Err(error) => tracing::warn!(%instance, %error, "cannot report the instance's state"),
        }
        if ended {
            self.running.remove(&instance);
            self.ended.insert((instance, report.fencing_token));
        }
    }

    /// Deletes `instance`'s service registration, if it has one.
    async fn deregister(&mut self, instance: &InstanceId) {
        let Some(key) = self.registered.remove(instance) else {
            return;
        };
        let request = DeleteRangeRequest {
            key: key.into_bytes(),
            ..DeleteRangeRequest::default()
        };
        if let Err(error) = self.client.delete(&request).await {
            tracing::warn!(%instance, %error, "cannot deregister the instance; its registration ends with the machine's lease");
        }
    }

    /// Deletes the state this agent last wrote for `instance`, unless someone wrote since.
    async fn forget(&mut self, instance: &InstanceId) {
        let Some(revision) = self.reported.remove(instance) else {
            return;
        };
        let request = TxnRequest {
            compare: vec![txn::compare(
                keys::state(instance),
                CompareResult::Equal,
                TargetUnion::ModRevision(revision),
            )],
            success: vec![txn::delete(DeleteRangeRequest {
                key: keys::state(instance).into_bytes(),
                ..DeleteRangeRequest::default()
            })],
            failure: Vec::new(),
        };
        if let Err(error) = self.client.txn(&request).await {
            tracing::debug!(%instance, %error, "cannot clear the instance's state");
        }
    }

    /// Stops every instance gracefully.
    async fn stop_all(&mut self) {
        let running = std::mem::take(&mut self.running);
        futures::future::join_all(running.into_values().map(Supervised::stop)).await;
    }

    /// Kills every instance at once.
    async fn kill_all(&mut self) {
        let running = std::mem::take(&mut self.running);
        futures::future::join_all(running.into_values().map(Supervised::kill)).await;
    }
}

/// Where the agent keeps instance logs under its state directory.
pub fn log_dir(state_dir: &std::path::Path) -> PathBuf {
    state_dir.join("logs")
}

fn unix_ms() -> u64 {
    let since = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}
