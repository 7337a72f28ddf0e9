//! `/v3/maintenance/snapshot`: a copy of the member's whole state, streamed in chunks with
//! how many bytes remain, as etcd streams its database. kvd's copy is its own snapshot
//! format (both stores), not etcd's bbolt file.

use tokio::sync::mpsc;

use crate::gateway::backend::Backend;
use crate::gateway::body::{result_chunk, StreamItem};
use crate::gateway::error::Status;
use crate::gateway::wire::cluster::WireSnapshotResponse;
use crate::gateway::Gateway;

/// Bytes per streamed chunk (etcd sends 32 KiB).
const CHUNK: usize = 32 * 1024;

/// Streams the backend's snapshot to `out`; the request body carries nothing.
pub(crate) async fn run<B: Backend, T>(
    gateway: Gateway<B>,
    _body: T,
    out: mpsc::Sender<StreamItem>,
) {
    let snapshot = match gateway.backend.snapshot().await {
        Ok(snapshot) => snapshot,
        Err(error) => {
            // A gone receiver means the client left; nobody to tell.
            let _ = out.send(Err(Status::from(error))).await;
            return;
        }
    };
    let header = gateway.header(snapshot.revision);
    let mut remaining = snapshot.data.len();
    for chunk in snapshot.data.chunks(CHUNK) {
        remaining -= chunk.len();
        let message = WireSnapshotResponse::new(header, remaining as u64, chunk);
        if out.send(result_chunk(&message)).await.is_err() {
            return;
        }
    }
}
