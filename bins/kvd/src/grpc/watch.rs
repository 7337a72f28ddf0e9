//! The Watch service, etcd's watch server: a stream of create, cancel and progress requests
//! in, a stream of answers out, open until the client goes away (the end of its requests
//! does not end it). The JSON gateway's `/v3/watch` runs the same session.
//!
//! The session subscribes to the backend's applied batches before reading any history, so a
//! watcher's history (read at revision R) and the batches after R cover every change once.
//! Each watcher remembers the next revision it needs; batches below it are skipped. A lagging
//! subscription is recovered by reading each watcher's history again from that revision.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::time::Duration;

use futures::{Stream, StreamExt};
use prost::Message;
use sinew_etcd_api::etcdserverpb::watch_create_request::FilterType;
use sinew_etcd_api::etcdserverpb::watch_request::RequestUnion;
use sinew_etcd_api::etcdserverpb::watch_server::Watch;
use sinew_etcd_api::etcdserverpb::{WatchCreateRequest, WatchRequest, WatchResponse};
use sinew_etcd_api::mvccpb;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, mpsc};
use tokio::time::{interval_at, Instant};
use tokio_stream::wrappers::ReceiverStream;

use super::{broken_request, Grpc};
use crate::gateway::{Backend, BackendError, Status, WatchHistory};
use crate::v3::{Event, EventType, WatchBatch};

/// The watch id etcd answers progress requests and refused creations with.
const STREAM_WATCH_ID: i64 = -1;

/// The shortest progress notification interval honoured.
const MIN_PROGRESS_INTERVAL: Duration = Duration::from_millis(10);

/// etcd's reason for refusing a watch id already in use on the stream.
const DUPLICATE_ID: &str = "mvcc: duplicate watch ID provided on the WatchStream";

/// How many answers may wait for a slow client before the session waits.
const ANSWER_BUFFER: usize = 64;

/// An answer of a watch stream, or the error that ends it.
pub(crate) type Answer = Result<WatchResponse, Status>;

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
    fragment: bool,
    /// The lowest revision whose changes this watcher has not been given yet.
    next_revision: i64,
    /// Whether events were sent since the last progress tick.
    active: bool,
}

impl Watcher {
    fn new(request: &WatchCreateRequest, next_revision: i64) -> Self {
        let has = |filter: FilterType| request.filters.contains(&(filter as i32));
        Self {
            key: request.key.clone(),
            range_end: request.range_end.clone(),
            no_put: has(FilterType::Noput),
            no_delete: has(FilterType::Nodelete),
            prev_kv: request.prev_kv,
            progress_notify: request.progress_notify,
            fragment: request.fragment,
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
    fn select<'a>(&self, events: impl IntoIterator<Item = &'a Event>) -> Vec<mvccpb::Event> {
        events
            .into_iter()
            .filter(|event| event.kv.as_ref().is_some_and(|kv| self.watches(&kv.key)))
            .filter(|event| match event.r#type() {
                EventType::Put => !self.no_put,
                EventType::Delete => !self.no_delete,
            })
            .map(|event| {
                let mut event = event.clone();
                if !self.prev_kv {
                    event.prev_kv = None;
                }
                event
            })
            .collect()
    }
}

/// Splits an answer whose encoding reaches `limit` bytes into fragments, each under the
/// limit unless it holds a single event, all but the last marked `fragment` (etcd's
/// `sendFragments`).
fn fragments(response: WatchResponse, limit: usize) -> Vec<WatchResponse> {
    if response.encoded_len() < limit || response.events.len() < 2 {
        return vec![response];
    }
    let mut template = response;
    let events = std::mem::take(&mut template.events);
    template.fragment = true;
    let mut pieces = Vec::new();
    let mut current = template.clone();
    for event in events {
        current.events.push(event);
        if current.events.len() > 1 && current.encoded_len() >= limit {
            let overflow = current.events.pop();
            pieces.push(std::mem::replace(&mut current, template.clone()));
            current.events.extend(overflow);
        }
    }
    current.fragment = false;
    pieces.push(current);
    pieces
}

/// The state of one watch stream.
struct Session<B> {
    grpc: Grpc<B>,
    out: mpsc::Sender<Answer>,
    watchers: BTreeMap<i64, Watcher>,
    next_id: i64,
    /// The revision every watcher has been given all changes up to.
    synced: i64,
}

/// What woke the session.
enum Step {
    Request(Option<Result<WatchRequest, Status>>),
    Batch(Result<WatchBatch, RecvError>),
    Tick,
    Stop,
}

/// Serves one watch stream: `requests` in, answers on `out`.
pub(crate) async fn run<B, S>(grpc: Grpc<B>, requests: S, out: mpsc::Sender<Answer>)
where
    B: Backend,
    S: Stream<Item = Result<WatchRequest, Status>> + Unpin,
{
    let mut batches = grpc.gateway.backend.subscribe();
    let synced = match grpc
        .gateway
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
    let mut session = Session {
        grpc,
        out,
        watchers: BTreeMap::new(),
        next_id: 0,
        synced,
    };
    // Ending quietly is right whichever way the session stops.
    let _ = session.serve(requests, &mut batches).await;
}

impl<B: Backend> Session<B> {
    async fn serve<S>(
        &mut self,
        mut requests: S,
        batches: &mut broadcast::Receiver<WatchBatch>,
    ) -> Result<(), Gone>
    where
        S: Stream<Item = Result<WatchRequest, Status>> + Unpin,
    {
        // tokio's interval refuses a zero period.
        let period = self
            .grpc
            .gateway
            .config
            .progress_notify_interval
            .max(MIN_PROGRESS_INTERVAL);
        let mut ticker = interval_at(Instant::now() + period, period);
        let mut closing = self.grpc.gateway.closing();
        let mut reading = true;
        loop {
            let step = tokio::select! {
                request = requests.next(), if reading => Step::Request(request),
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

    async fn send(&self, response: WatchResponse) -> Result<(), Gone> {
        self.out.send(Ok(response)).await.map_err(|_| Gone)
    }

    /// Ends the stream with an error.
    async fn fail(&self, status: Status) -> Result<(), Gone> {
        self.out.send(Err(status)).await.map_err(|_| Gone)
    }

    /// An answer about watcher `watch_id` at `revision`.
    fn answer(&self, watch_id: i64, revision: i64) -> WatchResponse {
        WatchResponse {
            header: self.grpc.header(revision),
            watch_id,
            ..WatchResponse::default()
        }
    }

    async fn request(&mut self, request: WatchRequest) -> Result<(), Gone> {
        match request.request_union {
            Some(RequestUnion::CreateRequest(create)) => self.create(create).await,
            Some(RequestUnion::CancelRequest(cancel)) => self.cancel(cancel.watch_id).await,
            Some(RequestUnion::ProgressRequest(_)) => {
                self.send(self.answer(STREAM_WATCH_ID, self.synced)).await
            }
            None => Ok(()),
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

    async fn create(&mut self, request: WatchCreateRequest) -> Result<(), Gone> {
        let Some(id) = self.assign_id(request.watch_id) else {
            return self.refuse(STREAM_WATCH_ID, DUPLICATE_ID.to_owned()).await;
        };
        let start = request.start_revision;
        let history = match self
            .grpc
            .gateway
            .backend
            .watch_history(start, request.key.clone(), request.range_end.clone())
            .await
        {
            Ok(history) => history,
            Err(error) => return self.refuse(id, error.to_string()).await,
        };
        self.synced = self.synced.max(history.revision);
        self.send(WatchResponse {
            created: true,
            ..self.answer(id, history.revision)
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
        self.send(WatchResponse {
            created: true,
            canceled: true,
            cancel_reason: reason,
            ..self.answer(id, self.synced)
        })
        .await
    }

    /// If the history starts below the last compaction, tells the client (as etcd: cancelled,
    /// with the compaction's revision and a header without revision) and says so.
    async fn compacted(&self, id: i64, history: &WatchHistory) -> Result<bool, Gone> {
        if history.compact_revision == 0 {
            return Ok(false);
        }
        self.send(WatchResponse {
            canceled: true,
            compact_revision: history.compact_revision,
            ..self.answer(id, 0)
        })
        .await?;
        Ok(true)
    }

    /// Sends the events `watcher` wants from changes up to `revision`, in fragments if it
    /// accepts them and they are large.
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
        let response = WatchResponse {
            events,
            ..self.answer(id, revision)
        };
        if !watcher.fragment {
            return self.send(response).await;
        }
        for piece in fragments(response, self.grpc.gateway.config.max_request_bytes) {
            self.send(piece).await?;
        }
        Ok(())
    }

    async fn cancel(&mut self, id: i64) -> Result<(), Gone> {
        if self.watchers.remove(&id).is_none() {
            return Ok(());
        }
        self.send(WatchResponse {
            canceled: true,
            ..self.answer(id, self.synced)
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
                .grpc
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
            self.send(self.answer(id, self.synced)).await?;
        }
        Ok(())
    }
}

/// A client's stream failing to deliver a request (a broken message, a reset): etcd's
/// server sees the same and ends the session with it.
#[tonic::async_trait]
impl<B: Backend> Watch for Grpc<B> {
    type WatchStream =
        Pin<Box<dyn Stream<Item = Result<WatchResponse, tonic::Status>> + Send + 'static>>;

    async fn watch(
        &self,
        request: tonic::Request<tonic::Streaming<WatchRequest>>,
    ) -> Result<tonic::Response<Self::WatchStream>, tonic::Status> {
        let requests = request
            .into_inner()
            .map(|request| request.map_err(broken_request));
        let (out, answers) = mpsc::channel(ANSWER_BUFFER);
        tokio::spawn(run(self.clone(), requests, out));
        let answers = ReceiverStream::new(answers).map(|answer| answer.map_err(Into::into));
        Ok(tonic::Response::new(Box::pin(answers)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watcher(key: &[u8], range_end: &[u8]) -> Watcher {
        let request = WatchCreateRequest {
            key: key.to_vec(),
            range_end: range_end.to_vec(),
            ..WatchCreateRequest::default()
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

    fn event(value_len: usize) -> mvccpb::Event {
        mvccpb::Event {
            kv: Some(mvccpb::KeyValue {
                key: b"k".to_vec(),
                value: vec![b'v'; value_len],
                ..mvccpb::KeyValue::default()
            }),
            ..mvccpb::Event::default()
        }
    }

    #[test]
    fn large_answers_split_into_fragments_under_the_limit_as_etcd_does() {
        let response = WatchResponse {
            watch_id: 7,
            events: (0..10).map(|_| event(100)).collect(),
            ..WatchResponse::default()
        };
        let whole = response.encoded_len();
        assert_eq!(
            fragments(response.clone(), whole + 1),
            vec![response.clone()]
        );
        let pieces = fragments(response.clone(), 350);
        assert!(pieces.len() > 2, "{} pieces", pieces.len());
        let (last, rest) = pieces.split_last().expect("pieces");
        assert!(!last.fragment);
        assert!(rest
            .iter()
            .all(|piece| piece.fragment && piece.encoded_len() < 350));
        assert!(pieces.iter().all(|piece| piece.watch_id == 7));
        let events: Vec<_> = pieces.into_iter().flat_map(|piece| piece.events).collect();
        assert_eq!(events, response.events);
        let single = WatchResponse {
            events: vec![event(1000)],
            ..WatchResponse::default()
        };
        assert_eq!(fragments(single.clone(), 10), vec![single]);
    }
}
