//! The streaming watch call, as etcd's watch server and gateway behave: a stream of create,
//! cancel and progress requests in, a stream of `{"result":WatchResponse}` messages out,
//! open until the client goes away (the end of the request body does not end it).
//!
//! The session subscribes to the backend's applied batches before reading any history, so a
//! watcher's history (read at revision R) and the batches after R cover every change once.
//! Each watcher remembers the next revision it needs; batches below it are skipped. A lagging
//! subscription is recovered by reading each watcher's history again from that revision.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use hyper::body::Body;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, mpsc};
use tokio::time::{interval_at, Instant};

use crate::gateway::backend::{Backend, WatchHistory};
use crate::gateway::body::{result_chunk, JsonStream, StreamItem};
use crate::gateway::error::{BackendError, Status};
use crate::gateway::wire::scalar::Int64;
use crate::gateway::wire::watch::{
    FilterType, WireEvent, WireWatchCreateRequest, WireWatchRequest, WireWatchResponse,
};
use crate::gateway::wire::Header;
use crate::gateway::Gateway;
use crate::v3::{Event, EventKind, WatchBatch};

/// The watch id etcd answers progress requests and refused creations with.
const STREAM_WATCH_ID: i64 = -1;

/// The shortest progress notification interval honoured.
const MIN_PROGRESS_INTERVAL: Duration = Duration::from_millis(10);

/// etcd's reason for refusing a watch id already in use on the stream.
const DUPLICATE_ID: &str = "mvcc: duplicate watch ID provided on the WatchStream";

/// The client went away; the session ends.
#[derive(Debug)]
struct Gone;

/// One watcher of a stream.
#[derive(Debug)]
struct Watcher {
    key: Vec<u8>,
    range_end: Vec<u8>,
    no_put: bool,
    no_delete: bool,
    prev_kv: bool,
    progress_notify: bool,
    /// The lowest revision whose changes this watcher has not been given yet.
    next_revision: i64,
    /// Whether events were sent since the last progress tick.
    active: bool,
}

impl Watcher {
    fn new(request: &WireWatchCreateRequest, next_revision: i64) -> Self {
        let has = |filter| request.filters.iter().any(|wire| wire.0 == filter);
        Self {
            key: request.key.0.clone(),
            range_end: request.range_end.0.clone(),
            no_put: has(FilterType::NoPut),
            no_delete: has(FilterType::NoDelete),
            prev_kv: request.prev_kv,
            progress_notify: request.progress_notify,
            next_revision,
            active: false,
        }
    }

    /// Whether the watched range holds `key` (etcd's key and `range_end` rules).
    fn watches(&self, key: &[u8]) -> bool {
        match self.range_end.as_slice() {
            [] => key == self.key,
            [0] => key >= self.key.as_slice(),
            end => self.key.as_slice() <= key && key < end,
        }
    }

    /// The events this watcher wants, as sent.
    fn select<'a>(&self, events: impl IntoIterator<Item = &'a Event>) -> Vec<WireEvent> {
        events
            .into_iter()
            .filter(|event| self.watches(&event.kv.key))
            .filter(|event| match event.kind {
                EventKind::Put => !self.no_put,
                EventKind::Delete => !self.no_delete,
            })
            .map(|event| WireEvent::new(event, self.prev_kv))
            .collect()
    }
}

/// The state of one watch stream.
struct Session<B> {
    gateway: Gateway<B>,
    out: mpsc::Sender<StreamItem>,
    watchers: BTreeMap<i64, Watcher>,
    next_id: i64,
    /// The revision every watcher has been given all changes up to.
    synced: i64,
}

/// What woke the session.
enum Step {
    Request(Option<Result<WireWatchRequest, Status>>),
    Batch(Result<WatchBatch, RecvError>),
    Tick,
    Stop,
}

/// Serves one watch stream: requests from `body`, answers on `out`.
pub(crate) async fn run<B, T>(gateway: Gateway<B>, body: T, out: mpsc::Sender<StreamItem>)
where
    B: Backend,
    T: Body<Data = Bytes> + Unpin,
    T::Error: fmt::Display,
{
    let mut batches = gateway.backend.subscribe();
    let synced = match gateway
        .backend
        .watch_history(0, Vec::new(), Vec::new())
        .await
    {
        Ok(history) => history.revision,
        Err(error) => {
            // The client may already be gone; there is no one else to tell.
            let _ = out.send(Err(error.into())).await;
            return;
        }
    };
    let requests = JsonStream::new(body, gateway.config.grpc_limit());
    let mut session = Session {
        gateway,
        out,
        watchers: BTreeMap::new(),
        next_id: 0,
        synced,
    };
    // Ending quietly is right whichever way the session stops.
    let _ = session.serve(requests, &mut batches).await;
}

impl<B: Backend> Session<B> {
    async fn serve<T>(
        &mut self,
        mut requests: JsonStream<T>,
        batches: &mut broadcast::Receiver<WatchBatch>,
    ) -> Result<(), Gone>
    where
        T: Body<Data = Bytes> + Unpin,
        T::Error: fmt::Display,
    {
        // tokio's interval refuses a zero period.
        let period = self
            .gateway
            .config
            .progress_notify_interval
            .max(MIN_PROGRESS_INTERVAL);
        let mut ticker = interval_at(Instant::now() + period, period);
        let mut closing = self.gateway.closing();
        let mut reading = true;
        loop {
            let step = tokio::select! {
                request = requests.next::<WireWatchRequest>(), if reading => Step::Request(request),
                batch = batches.recv() => Step::Batch(batch),
                _ = ticker.tick() => Step::Tick,
                () = self.out.closed() => Step::Stop,
                _ = closing.wait_for(|closed| *closed) => Step::Stop,
            };
            match step {
                Step::Request(None) => reading = false,
                Step::Request(Some(Err(status))) => return self.fail(status).await,
                Step::Request(Some(Ok(request))) => self.request(request).await?,
                Step::Batch(Ok(batch)) => self.deliver(&batch).await?,
                Step::Batch(Err(RecvError::Lagged(_))) => self.catch_up().await?,
                Step::Batch(Err(RecvError::Closed)) => {
                    return self.fail(BackendError::Stopped.into()).await
                }
                Step::Tick => self.progress_notify().await?,
                Step::Stop => return Ok(()),
            }
        }
    }

    async fn send(&self, response: &WireWatchResponse) -> Result<(), Gone> {
        self.out
            .send(result_chunk(response))
            .await
            .map_err(|_| Gone)
    }

    /// Ends the stream with an error.
    async fn fail(&self, status: Status) -> Result<(), Gone> {
        self.out.send(Err(status)).await.map_err(|_| Gone)
    }

    fn header(&self, revision: i64) -> Header {
        self.gateway.header(revision)
    }

    async fn request(&mut self, request: WireWatchRequest) -> Result<(), Gone> {
        if let Some(create) = request.create_request {
            self.create(create).await
        } else if let Some(cancel) = request.cancel_request {
            self.cancel(cancel.watch_id.0).await
        } else if request.progress_request.is_some() {
            self.send(&WireWatchResponse {
                header: self.header(self.synced),
                watch_id: Int64(STREAM_WATCH_ID),
                ..WireWatchResponse::default()
            })
            .await
        } else {
            Ok(())
        }
    }

    /// The id for a new watcher: the one asked for if free, else the lowest free one from
    /// the stream's counter (etcd's rule; 0 asks for that).
    fn assign_id(&mut self, requested: i64) -> Option<i64> {
        if requested != 0 {
            return (!self.watchers.contains_key(&requested)).then_some(requested);
        }
        while self.watchers.contains_key(&self.next_id) {
            self.next_id += 1;
        }
        let id = self.next_id;
        self.next_id += 1;
        Some(id)
    }

    async fn create(&mut self, request: WireWatchCreateRequest) -> Result<(), Gone> {
        let Some(id) = self.assign_id(request.watch_id.0) else {
            return self.refuse(STREAM_WATCH_ID, DUPLICATE_ID.to_owned()).await;
        };
        let start = request.start_revision.0;
        let history = match self
            .gateway
            .backend
            .watch_history(start, request.key.0.clone(), request.range_end.0.clone())
            .await
        {
            Ok(history) => history,
            Err(error) => return self.refuse(id, error.to_string()).await,
        };
        self.synced = self.synced.max(history.revision);
        self.send(&WireWatchResponse {
            header: self.header(history.revision),
            watch_id: Int64(id),
            created: true,
            ..WireWatchResponse::default()
        })
        .await?;
        let mut watcher = Watcher::new(&request, start.max(history.revision + 1));
        if self.compacted(id, &history).await? {
            return Ok(());
        }
        self.send_events(id, &mut watcher, history.revision, &history.events)
            .await?;
        self.watchers.insert(id, watcher);
        Ok(())
    }

    /// A creation etcd refuses: created and cancelled at once, with the reason.
    async fn refuse(&self, id: i64, reason: String) -> Result<(), Gone> {
        self.send(&WireWatchResponse {
            header: self.header(self.synced),
            watch_id: Int64(id),
            created: true,
            canceled: true,
            cancel_reason: reason,
            ..WireWatchResponse::default()
        })
        .await
    }

    /// If the history starts below the last compaction, tells the client (as etcd: cancelled,
    /// with the compaction's revision and a header without revision) and says so.
    async fn compacted(&self, id: i64, history: &WatchHistory) -> Result<bool, Gone> {
        if history.compact_revision == 0 {
            return Ok(false);
        }
        self.send(&WireWatchResponse {
            header: self.header(0),
            watch_id: Int64(id),
            canceled: true,
            compact_revision: Int64(history.compact_revision),
            ..WireWatchResponse::default()
        })
        .await?;
        Ok(true)
    }

    /// Sends the events `watcher` wants from changes up to `revision`.
    async fn send_events(
        &self,
        id: i64,
        watcher: &mut Watcher,
        revision: i64,
        events: &[Event],
    ) -> Result<(), Gone> {
        watcher.next_revision = watcher.next_revision.max(revision + 1);
        let events = watcher.select(events);
        if events.is_empty() {
            return Ok(());
        }
        watcher.active = true;
        self.send(&WireWatchResponse {
            header: self.header(revision),
            watch_id: Int64(id),
            events,
            ..WireWatchResponse::default()
        })
        .await
    }

    async fn cancel(&mut self, id: i64) -> Result<(), Gone> {
        if self.watchers.remove(&id).is_none() {
            return Ok(());
        }
        self.send(&WireWatchResponse {
            header: self.header(self.synced),
            watch_id: Int64(id),
            canceled: true,
            ..WireWatchResponse::default()
        })
        .await
    }

    /// Hands a published batch to the watchers that have not seen its revision.
    async fn deliver(&mut self, batch: &WatchBatch) -> Result<(), Gone> {
        self.synced = self.synced.max(batch.revision);
        let mut watchers = std::mem::take(&mut self.watchers);
        let mut result = Ok(());
        for (id, watcher) in &mut watchers {
            if batch.revision >= watcher.next_revision {
                result = self
                    .send_events(*id, watcher, batch.revision, &batch.events)
                    .await;
                if result.is_err() {
                    break;
                }
            }
        }
        self.watchers = watchers;
        result
    }

    /// Recovers from missed batches by reading each watcher's history again.
    async fn catch_up(&mut self) -> Result<(), Gone> {
        let ids: Vec<i64> = self.watchers.keys().copied().collect();
        for id in ids {
            let Some(mut watcher) = self.watchers.remove(&id) else {
                continue;
            };
            let history = self
                .gateway
                .backend
                .watch_history(
                    watcher.next_revision,
                    watcher.key.clone(),
                    watcher.range_end.clone(),
                )
                .await;
            let history = match history {
                Ok(history) => history,
                Err(error) => return self.fail(error.into()).await,
            };
            self.synced = self.synced.max(history.revision);
            if self.compacted(id, &history).await? {
                continue;
            }
            if watcher.next_revision <= history.revision {
                self.send_events(id, &mut watcher, history.revision, &history.events)
                    .await?;
            }
            self.watchers.insert(id, watcher);
        }
        Ok(())
    }

    /// Tells each watcher that asked for progress notifications and got no events since the
    /// last tick how far the stream has come.
    async fn progress_notify(&mut self) -> Result<(), Gone> {
        let quiet: Vec<i64> = self
            .watchers
            .iter()
            .filter(|(_, watcher)| watcher.progress_notify && !watcher.active)
            .map(|(id, _)| *id)
            .collect();
        for watcher in self.watchers.values_mut() {
            watcher.active = false;
        }
        for id in quiet {
            self.send(&WireWatchResponse {
                header: self.header(self.synced),
                watch_id: Int64(id),
                ..WireWatchResponse::default()
            })
            .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watcher(key: &[u8], range_end: &[u8]) -> Watcher {
        let request = WireWatchCreateRequest {
            key: crate::gateway::wire::scalar::Bytes(key.to_vec()),
            range_end: crate::gateway::wire::scalar::Bytes(range_end.to_vec()),
            ..WireWatchCreateRequest::default()
        };
        Watcher::new(&request, 1)
    }

    #[test]
    fn watched_ranges_follow_etcds_key_rules() {
        assert!(watcher(b"a", b"").watches(b"a"));
        assert!(!watcher(b"a", b"").watches(b"ab"));
        assert!(watcher(b"a", b"\0").watches(b"zzz"));
        assert!(!watcher(b"b", b"\0").watches(b"a"));
        assert!(watcher(b"a", b"b").watches(b"ab"));
        assert!(!watcher(b"a", b"b").watches(b"b"));
        assert!(!watcher(b"c", b"a").watches(b"b"));
    }
}
