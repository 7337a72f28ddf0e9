//! Watchers of a fault run: each watches the whole keyspace from the run's first revision
//! and records every event it is given, across reconnects. The JSON watcher is sinew's own
//! resuming watch (`KvClient::watch`); the gRPC watcher resumes as etcd's clients do, from
//! the revision after the last event it saw, on the next member.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use sinew_etcd_api::etcdserverpb::watch_client::WatchClient;
use sinew_etcd_api::etcdserverpb::{watch_request, WatchCreateRequest, WatchRequest};
use sinew_etcd_api::mvccpb::event::EventType;
use sinew_etcd_api::mvccpb::Event;
use sinew_proto::kv::KvClient;
use tokio::task::JoinHandle;
use tonic::transport::Endpoint;

use super::workload::Api;

/// One event as a watcher saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// The revision it happened at.
    pub revision: i64,
    /// The key.
    pub key: String,
    /// The value it was given (empty for a delete).
    pub value: String,
    /// Whether it was a delete.
    pub deleted: bool,
}

impl Seen {
    fn from_event(event: &Event) -> Option<Self> {
        let kv = event.kv.as_ref()?;
        Some(Self {
            revision: kv.mod_revision,
            key: String::from_utf8_lossy(&kv.key).into_owned(),
            value: String::from_utf8_lossy(&kv.value).into_owned(),
            deleted: event.r#type == EventType::Delete as i32,
        })
    }
}

impl std::fmt::Display for Seen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.deleted {
            true => write!(f, "rev {} delete {}", self.revision, self.key),
            false => write!(f, "rev {} put {}={}", self.revision, self.key, self.value),
        }
    }
}

/// A running watcher; it stops when dropped or finished.
#[derive(Debug)]
pub struct Watcher {
    /// The API it watches through.
    pub api: Api,
    seen: Arc<Mutex<Vec<Seen>>>,
    errors: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The whole keyspace, as a watch request's key and range end.
fn everything(start_revision: i64) -> WatchCreateRequest {
    WatchCreateRequest {
        key: vec![0],
        range_end: vec![0],
        start_revision,
        ..WatchCreateRequest::default()
    }
}

impl Watcher {
    /// Starts watching every key from `start_revision` through `api` on `endpoints`.
    pub fn start(api: Api, endpoints: &[String], start_revision: i64) -> anyhow::Result<Self> {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let task = match api {
            Api::Json => {
                let client = KvClient::new(endpoints.to_vec())?;
                tokio::spawn(json(client, start_revision, seen.clone(), errors.clone()))
            }
            Api::Grpc => tokio::spawn(grpc(
                endpoints.to_vec(),
                start_revision,
                seen.clone(),
                errors.clone(),
            )),
        };
        Ok(Self {
            api,
            seen,
            errors,
            task,
        })
    }

    /// The last revision seen (0 if none).
    pub fn last_revision(&self) -> i64 {
        lock(&self.seen).last().map_or(0, |seen| seen.revision)
    }

    /// Waits until the watcher has seen `revision`, at most `patience`; returns whether it
    /// did.
    pub async fn caught_up(&self, revision: i64, patience: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + patience;
        while self.last_revision() < revision {
            if tokio::time::Instant::now() > deadline || self.task.is_finished() {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        true
    }

    /// Stops the watcher and returns what it saw and the errors that broke its streams.
    pub fn finish(self) -> (Vec<Seen>, Vec<String>) {
        self.task.abort();
        let seen = lock(&self.seen).clone();
        let errors = lock(&self.errors).clone();
        (seen, errors)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn json(
    client: KvClient,
    start_revision: i64,
    seen: Arc<Mutex<Vec<Seen>>>,
    errors: Arc<Mutex<Vec<String>>>,
) {
    let mut watch = client.watch(everything(start_revision));
    while let Some(batch) = watch.next().await {
        match batch {
            Ok(batch) => lock(&seen).extend(batch.events.iter().filter_map(Seen::from_event)),
            Err(error) => lock(&errors).push(error.to_string()),
        }
    }
}

async fn grpc(
    endpoints: Vec<String>,
    start_revision: i64,
    seen: Arc<Mutex<Vec<Seen>>>,
    errors: Arc<Mutex<Vec<String>>>,
) {
    let mut next = start_revision;
    for endpoint in endpoints.iter().cycle() {
        if let Err(error) = grpc_once(endpoint, &mut next, &seen).await {
            lock(&errors).push(format!("{endpoint}: {error}"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One gRPC watch stream from `next`, advancing `next` past every event recorded.
async fn grpc_once(endpoint: &str, next: &mut i64, seen: &Mutex<Vec<Seen>>) -> anyhow::Result<()> {
    let channel = Endpoint::from_shared(endpoint.to_owned())?
        .connect_timeout(Duration::from_millis(500))
        .connect()
        .await?;
    let create = WatchRequest {
        request_union: Some(watch_request::RequestUnion::CreateRequest(everything(
            *next,
        ))),
    };
    // The request stream stays open: closing it would end the watch.
    let requests = futures::stream::iter([create]).chain(futures::stream::pending());
    let mut stream = WatchClient::new(channel)
        .watch(requests)
        .await?
        .into_inner();
    while let Some(response) = stream.message().await? {
        if response.canceled {
            anyhow::bail!("watch canceled: {}", response.cancel_reason);
        }
        let events: Vec<Seen> = response
            .events
            .iter()
            .filter_map(Seen::from_event)
            .collect();
        if let Some(last) = events.last() {
            *next = last.revision + 1;
        }
        lock(seen).extend(events);
    }
    anyhow::bail!("the server ended the watch")
}

/// Everything the store holds from `start_revision` to `end_revision`, read with a fresh
/// watch once the cluster is whole again: the reference the watchers and writes are
/// checked against.
pub async fn history(
    endpoints: &[String],
    start_revision: i64,
    end_revision: i64,
) -> anyhow::Result<Vec<Seen>> {
    let client = KvClient::new(endpoints.to_vec())?;
    let mut watch = client.watch(everything(start_revision));
    let mut events = Vec::new();
    while events
        .last()
        .map_or(start_revision - 1, |seen: &Seen| seen.revision)
        < end_revision
    {
        let batch = tokio::time::timeout(Duration::from_secs(10), watch.next())
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "no history past revision {} within 10 s",
                    events.last().map_or(0, |seen: &Seen| seen.revision)
                )
            })?
            .ok_or_else(|| anyhow::anyhow!("the history watch ended"))??;
        events.extend(batch.events.iter().filter_map(Seen::from_event));
    }
    Ok(events)
}
