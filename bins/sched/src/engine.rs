//! The engine: one at a time, elected through a lease ([`keys::ENGINE_ELECTION`]). While it
//! leads, it reads everything under [`keys::ROOT`] once, then follows a watch from that
//! revision ([`Cluster`]), and after each batch of events plans ([`placement::plan`]) and
//! writes the plan.
//!
//! Every write is a transaction that holds only while this engine leads, so an engine that
//! lost its lease without knowing it changes nothing. A placement also holds only if the
//! machine's registration and the unit's record are the ones planned from, the instance
//! has no placement and has not failed; it is written under the machine's lease, so it
//! ends with the machine. A new engine starts from what is in the store and, placement
//! being stable, moves nothing that runs.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{self, StreamExt as _};
use sinew_proto::kv::{
    prefix_end, txn, AtRevision as _, CompareResult, DeleteRangeRequest, Election, EventType,
    KvClient, KvClientError, Leadership, LockError, PutRequest, RangeRequest, TargetUnion,
    TxnRequest, WatchCreateRequest,
};
use thiserror::Error;

use crate::cluster::Cluster;
use crate::instance::InstanceId;
use crate::keys;
use crate::placement::{self, Plan, Removal};
use crate::records::{to_json, Assignment};

/// How the engine runs.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// What this engine proclaims when it leads (its machine's name).
    pub name: String,
    /// Its leadership lease's time to live, in seconds: how long a dead engine delays the
    /// next one.
    pub ttl_s: i64,
    /// Writes in flight at once.
    pub concurrency: usize,
    /// What the engine counts, for its log and its tests.
    pub stats: Arc<EngineStats>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            name: "engine".to_owned(),
            ttl_s: 2,
            concurrency: 32,
            stats: Arc::default(),
        }
    }
}

/// What an engine did, counted since it started.
#[derive(Debug, Default)]
pub struct EngineStats {
    /// Whole reads of the scheduler's keys: one each time it begins to lead (or leads
    /// again after a broken watch), never one per event.
    pub reads: AtomicU64,
    /// Plans made: at most one per batch of events.
    pub plans: AtomicU64,
    /// Instances it placed.
    pub placed: AtomicU64,
}

/// Why the engine is not leading (it logs this and tries again).
#[derive(Debug, Error)]
pub enum EngineError {
    /// The election failed.
    #[error("engine election: {0}")]
    Election(#[from] LockError),
    /// The store could not be read or watched.
    #[error("engine: {what}: {source}")]
    Kv {
        /// What the engine was doing.
        what: &'static str,
        /// Why it failed.
        source: KvClientError,
    },
    /// The watch ended.
    #[error("engine: the watch of the scheduler's keys ended")]
    WatchEnded,
}

/// How long the engine waits before it plans again after writes that failed for a reason
/// its watch may never report (a lost connection).
const RETRY: Duration = Duration::from_millis(500);

/// Campaigns, leads while elected, and campaigns again when it loses the lead or cannot
/// reach the store, until `shutdown` resolves; then it steps down, so the next engine leads
/// at once.
pub async fn run(client: KvClient, config: EngineConfig, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    let election = Election::new(&client, keys::ENGINE_ELECTION);
    loop {
        let leadership = tokio::select! {
            () = &mut shutdown => return,
            won = election.campaign(config.name.clone(), config.ttl_s) => match won {
                Ok(leadership) => leadership,
                Err(error) => {
                    tracing::warn!("{}; campaigning again", EngineError::Election(error));
                    tokio::time::sleep(RETRY).await;
                    continue;
                }
            },
        };
        tracing::info!(engine = %config.name, revision = leadership.revision(), "leading");
        loop {
            tokio::select! {
                () = &mut shutdown => {
                    if let Err(error) = leadership.resign().await {
                        tracing::warn!(%error, "cannot step down; the lease will run out");
                    }
                    return;
                }
                () = leadership.keepalive().lost() => {
                    tracing::warn!(engine = %config.name, "lost the lead (its lease ended)");
                    break;
                }
                error = lead(&client, &leadership, &config) => {
                    tracing::warn!(%error, "leading again from a fresh read");
                    tokio::time::sleep(RETRY).await;
                }
            }
        }
    }
}

/// Leads from one read and a watch until either fails.
async fn lead(client: &KvClient, leadership: &Leadership, config: &EngineConfig) -> EngineError {
    let (mut cluster, revision) = match load(client).await {
        Ok(loaded) => loaded,
        Err(error) => return error,
    };
    config.stats.reads.fetch_add(1, Ordering::Relaxed);
    let mut watch = client.watch(WatchCreateRequest {
        key: keys::ROOT.as_bytes().to_vec(),
        range_end: prefix_end(keys::ROOT.as_bytes()),
        start_revision: revision + 1,
        ..WatchCreateRequest::default()
    });
    let mut writer = Writer {
        client,
        leadership,
        concurrency: config.concurrency.max(1),
        waiting: BTreeMap::new(),
        stats: &config.stats,
    };
    loop {
        let plan = placement::plan(&cluster.view);
        config.stats.plans.fetch_add(1, Ordering::Relaxed);
        let complete = writer.write(&mut cluster, &plan).await;
        let next = if complete {
            watch.next().await
        } else {
            match tokio::time::timeout(RETRY, watch.next()).await {
                Ok(next) => next,
                Err(_) => continue,
            }
        };
        let mut batch = match next {
            Some(Ok(batch)) => batch,
            Some(Err(source)) => {
                return EngineError::Kv {
                    what: "watching",
                    source,
                }
            }
            None => return EngineError::WatchEnded,
        };
        // Plans once for everything that has arrived, not once per event.
        loop {
            for event in &batch.events {
                let Some(kv) = &event.kv else { continue };
                if event.r#type() == EventType::Delete {
                    cluster.delete(&kv.key);
                } else if let Err(error) = cluster.put(kv) {
                    tracing::warn!(%error);
                }
            }
            match tokio::time::timeout(Duration::ZERO, watch.next()).await {
                Ok(Some(Ok(more))) => batch = more,
                Ok(Some(Err(source))) => {
                    return EngineError::Kv {
                        what: "watching",
                        source,
                    }
                }
                Ok(None) => return EngineError::WatchEnded,
                Err(_) => break,
            }
        }
    }
}

/// Reads every key under [`keys::ROOT`] at one revision.
async fn load(client: &KvClient) -> Result<(Cluster, i64), EngineError> {
    let answer = client
        .range(&RangeRequest {
            key: keys::ROOT.as_bytes().to_vec(),
            range_end: prefix_end(keys::ROOT.as_bytes()),
            ..RangeRequest::default()
        })
        .await
        .map_err(|source| EngineError::Kv {
            what: "reading the scheduler's keys",
            source,
        })?;
    let mut cluster = Cluster::default();
    for kv in &answer.kvs {
        if let Err(error) = cluster.put(kv) {
            tracing::warn!(%error);
        }
    }
    Ok((cluster, answer.revision()))
}

/// Writes plans, guarded by the leadership.
struct Writer<'a> {
    client: &'a KvClient,
    leadership: &'a Leadership,
    concurrency: usize,
    /// The reasons written under `waiting/`, so that only changes are written.
    waiting: BTreeMap<InstanceId, String>,
    stats: &'a EngineStats,
}

/// One write of a plan.
enum Write {
    Place(InstanceId, String),
    Remove(Removal),
    Wait(InstanceId, String),
    Unwait(InstanceId),
}

impl Writer<'_> {
    /// Writes `plan`, recording in `cluster` what took effect; returns whether every write
    /// got an answer (a refused comparison is an answer: the watch brings the reason).
    async fn write(&mut self, cluster: &mut Cluster, plan: &Plan) -> bool {
        let mut writes: Vec<Write> = plan
            .remove
            .iter()
            .cloned()
            .map(Write::Remove)
            .chain(
                plan.place
                    .iter()
                    .map(|(instance, machine)| Write::Place(instance.clone(), machine.clone())),
            )
            .collect();
        for (instance, why) in &plan.waiting {
            if self.waiting.get(instance) != Some(why) {
                writes.push(Write::Wait(instance.clone(), why.clone()));
            }
        }
        for instance in self.waiting.keys() {
            if !plan.waiting.contains_key(instance) {
                writes.push(Write::Unwait(instance.clone()));
            }
        }
        if writes.is_empty() {
            return true;
        }
        let requests: Vec<(Write, TxnRequest)> = writes
            .into_iter()
            .filter_map(|write| {
                let request = self.request(cluster, &write)?;
                Some((write, request))
            })
            .collect();
        let client = self.client;
        let answers: Vec<(Write, Result<bool, KvClientError>)> = stream::iter(requests)
            .map(|(write, request)| async move {
                let answer = client.txn(&request).await.map(|answer| answer.succeeded);
                (write, answer)
            })
            .buffer_unordered(self.concurrency)
            .collect()
            .await;
        let mut complete = true;
        for (write, answer) in answers {
            match (&write, answer) {
                (_, Err(error)) => {
                    complete = false;
                    tracing::warn!(%error, "{}", write.describe());
                }
                (_, Ok(false)) => tracing::debug!("{}: outdated, planning again", write.describe()),
                (Write::Place(instance, machine), Ok(true)) => {
                    tracing::info!(%instance, %machine, "placed");
                    self.stats.placed.fetch_add(1, Ordering::Relaxed);
                    cluster.placed(instance, machine);
                }
                (Write::Remove(removal), Ok(true)) => {
                    tracing::info!(
                        instance = %removal.instance,
                        machine = %removal.machine,
                        "removed: {}",
                        removal.why
                    );
                    cluster.removed(&removal.instance, &removal.machine);
                }
                (Write::Wait(instance, why), Ok(true)) => {
                    tracing::info!(%instance, "waiting: {why}");
                    self.waiting.insert(instance.clone(), why.clone());
                }
                (Write::Unwait(instance), Ok(true)) => {
                    self.waiting.remove(instance);
                }
            }
        }
        complete
    }

    /// The transaction for `write`; `None` if the view no longer has what it needs.
    fn request(&self, cluster: &Cluster, write: &Write) -> Option<TxnRequest> {
        let leading = self.leadership.is_held_compare();
        Some(match write {
            Write::Place(instance, machine) => {
                let record = cluster.view.machines.get(machine)?;
                let unit = cluster.view.units.get(&instance.unit)?;
                let assignment = Assignment {
                    instance: instance.clone(),
                    machine: machine.clone(),
                    spec: unit.spec.clone(),
                    spec_digest: cluster.view.digest_of(&instance.unit)?,
                };
                let value = to_json(&assignment);
                TxnRequest {
                    compare: vec![
                        leading,
                        txn::compare(
                            keys::machine(machine),
                            CompareResult::Equal,
                            TargetUnion::CreateRevision(cluster.machine_revision(machine)),
                        ),
                        txn::compare(
                            keys::unit(&instance.unit),
                            CompareResult::Equal,
                            TargetUnion::ModRevision(cluster.unit_revision(&instance.unit)),
                        ),
                        txn::compare(
                            keys::placement(instance),
                            CompareResult::Equal,
                            TargetUnion::CreateRevision(0),
                        ),
                        txn::compare(
                            keys::failed(instance),
                            CompareResult::Equal,
                            TargetUnion::CreateRevision(0),
                        ),
                    ],
                    success: vec![
                        txn::put(PutRequest {
                            key: keys::placement(instance).into_bytes(),
                            value: machine.clone().into_bytes(),
                            lease: record.lease,
                            ..PutRequest::default()
                        }),
                        txn::put(PutRequest {
                            key: keys::assignment(machine, instance).into_bytes(),
                            value,
                            lease: record.lease,
                            ..PutRequest::default()
                        }),
                    ],
                    failure: Vec::new(),
                }
            }
            Write::Remove(removal) => TxnRequest {
                compare: vec![leading],
                success: vec![
                    delete(keys::placement(&removal.instance)),
                    delete(keys::assignment(&removal.machine, &removal.instance)),
                ],
                failure: Vec::new(),
            },
            Write::Wait(instance, why) => TxnRequest {
                compare: vec![leading],
                success: vec![txn::put(PutRequest {
                    key: keys::waiting(instance).into_bytes(),
                    value: why.clone().into_bytes(),
                    lease: self.leadership.keepalive().lease(),
                    ..PutRequest::default()
                })],
                failure: Vec::new(),
            },
            Write::Unwait(instance) => TxnRequest {
                compare: vec![leading],
                success: vec![delete(keys::waiting(instance))],
                failure: Vec::new(),
            },
        })
    }
}

impl Write {
    fn describe(&self) -> String {
        match self {
            Self::Place(instance, machine) => format!("placing {instance} on {machine}"),
            Self::Remove(removal) => {
                format!("removing {} from {}", removal.instance, removal.machine)
            }
            Self::Wait(instance, _) => format!("recording why {instance} waits"),
            Self::Unwait(instance) => format!("clearing why {instance} waited"),
        }
    }
}

fn delete(key: String) -> sinew_proto::kv::RequestOp {
    txn::delete(DeleteRangeRequest {
        key: key.into_bytes(),
        ..DeleteRangeRequest::default()
    })
}
