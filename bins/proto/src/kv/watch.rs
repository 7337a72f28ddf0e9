//! Watch streams that survive a lost connection: the stream reconnects, to the next
//! endpoint if need be, and resumes from the revision after the last one it delivered, so no
//! change is missed or delivered twice.

use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http_body_util::BodyExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::client::{refusal, Attempt, KvClient};
use super::error::KvClientError;
use super::types::{
    watch_request, AtRevision, Event, StreamMessage, WatchCreateRequest, WatchRequest,
    WatchResponse,
};

/// How long to wait before reconnecting after a broken watch.
const RECONNECT_PAUSE: Duration = Duration::from_millis(200);

/// Changes at one revision, as a watch delivers them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchBatch {
    /// The revision of these changes.
    pub revision: i64,
    /// The changes.
    pub events: Vec<Event>,
}

/// A running watch; dropping it stops it.
#[derive(Debug)]
pub struct Watch {
    batches: mpsc::Receiver<Result<WatchBatch, KvClientError>>,
    task: JoinHandle<()>,
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Watch {
    /// The next changes, in revision order; `None` once the watch ended after an error.
    pub async fn next(&mut self) -> Option<Result<WatchBatch, KvClientError>> {
        self.batches.recv().await
    }
}

impl KvClient {
    /// Watches the keys `request` selects from its start revision (from now if 0).
    pub fn watch(&self, request: WatchCreateRequest) -> Watch {
        let (sender, batches) = mpsc::channel(256);
        let task = tokio::spawn(self.clone().run_watch(request, sender));
        Watch { batches, task }
    }

    async fn run_watch(
        self,
        mut request: WatchCreateRequest,
        sender: mpsc::Sender<Result<WatchBatch, KvClientError>>,
    ) {
        loop {
            for (index, endpoint) in self.rotation().collect::<Vec<_>>() {
                let endpoint = endpoint.to_owned();
                match self.watch_once(&endpoint, &mut request, &sender).await {
                    Ok(()) => return,
                    Err(Stop::Fatal(error)) => {
                        // The receiver may be gone; then nobody needs the error.
                        let _ = sender.send(Err(error)).await;
                        return;
                    }
                    Err(Stop::Broken(reason)) => {
                        self.prefer(index + 1);
                        tracing::debug!(%endpoint, %reason, next = request.start_revision, "watch broke, resuming");
                    }
                }
                tokio::time::sleep(RECONNECT_PAUSE).await;
            }
        }
    }

    /// Runs one watch connection, advancing `request.start_revision` past everything it
    /// delivered. `Ok` means the receiver went away.
    async fn watch_once(
        &self,
        endpoint: &str,
        request: &mut WatchCreateRequest,
        sender: &mpsc::Sender<Result<WatchBatch, KvClientError>>,
    ) -> Result<(), Stop> {
        let body = serde_json::to_vec(&WatchRequest {
            request_union: Some(watch_request::RequestUnion::CreateRequest(request.clone())),
        })
        .map_err(|error| Stop::Broken(error.to_string()))?;
        let response = self
            .send(endpoint, "/v3/watch", Bytes::from(body))
            .await
            .map_err(|attempt| match attempt {
                Attempt::NotSent(reason) | Attempt::Unanswered(reason) => Stop::Broken(reason),
                Attempt::Refused(error) => Stop::Fatal(error),
            })?;
        let status = response.status();
        let mut body = response.into_body();
        if !status.is_success() {
            let bytes = body
                .collect()
                .await
                .map(|collected| collected.to_bytes())
                .unwrap_or_default();
            let error = refusal(endpoint, status.as_u16(), &bytes);
            return Err(if error_is_transient(&error) {
                Stop::Broken(error.to_string())
            } else {
                Stop::Fatal(error)
            });
        }
        let mut buffer = BytesMut::new();
        loop {
            let frame = match body.frame().await {
                Some(Ok(frame)) => frame,
                Some(Err(error)) => return Err(Stop::Broken(error.to_string())),
                None => return Err(Stop::Broken("the server ended the watch".to_owned())),
            };
            let Ok(data) = frame.into_data() else {
                continue;
            };
            buffer.extend_from_slice(&data);
            while let Some(end) = buffer.iter().position(|byte| *byte == b'\n') {
                let line = buffer.split_to(end + 1);
                let line = line.chunk();
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let message: StreamMessage<WatchResponse> = serde_json::from_slice(line)
                    .map_err(|error| Stop::Broken(format!("undecodable watch message: {error}")))?;
                if let Some(error) = message.error {
                    return Err(Stop::Broken(error.error));
                }
                let Some(result) = message.result else {
                    continue;
                };
                if result.compact_revision != 0 {
                    return Err(Stop::Fatal(KvClientError::Compacted {
                        requested: request.start_revision,
                        compact_revision: result.compact_revision,
                    }));
                }
                if result.created && request.start_revision == 0 {
                    // Resume after what existed when the watch began.
                    request.start_revision = result.revision() + 1;
                }
                for batch in batches(result.events) {
                    request.start_revision = batch.revision + 1;
                    if sender.send(Ok(batch)).await.is_err() {
                        return Ok(());
                    }
                }
            }
        }
    }
}

fn error_is_transient(error: &KvClientError) -> bool {
    matches!(error, KvClientError::Http { status, .. } if *status >= 500)
        || matches!(error, KvClientError::Server { error, .. } if error.code == 14)
}

/// Groups events by revision, keeping their order.
fn batches(events: Vec<Event>) -> Vec<WatchBatch> {
    let mut batches: Vec<WatchBatch> = Vec::new();
    for event in events {
        let revision = event.kv.as_ref().map_or(0, |kv| kv.mod_revision);
        match batches.last_mut() {
            Some(batch) if batch.revision == revision => batch.events.push(event),
            _ => batches.push(WatchBatch {
                revision,
                events: vec![event],
            }),
        }
    }
    batches
}

enum Stop {
    /// Reconnect and resume.
    Broken(String),
    /// Give up and tell the watcher.
    Fatal(KvClientError),
}
