//! The machine's registration: its record under a lease that the agent renews, and the
//! deadline that self-fencing keeps.
//!
//! The store ends a lease no earlier than its TTL after it received the last renewal, and it
//! received that after the agent sent it. So `sent + TTL`, with `sent` the moment the agent
//! sent its last renewal that succeeded, is a time before which the lease cannot have ended,
//! whatever the store's clock or the network did since; the agent kills its instances a
//! margin before it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sinew_proto::kv::{KvClient, KvClientError, PutRequest};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::keys;
use crate::records::{to_json, MachineRecord};

/// How far the lease is known to live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// The lease cannot end before this moment.
    Until(Instant),
    /// The store said the lease is gone.
    Gone,
}

/// A registered machine, whose lease a background task renews.
#[derive(Debug)]
pub struct Registration {
    /// The record as written.
    pub record: MachineRecord,
    /// The record's creation revision.
    pub revision: i64,
    liveness: watch::Receiver<Liveness>,
    renewals: JoinHandle<()>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.renewals.abort();
    }
}

impl Registration {
    /// Registers `record` (its `lease` is replaced): under the lease saved in `lease_file`
    /// if the store still has it (a restarted agent keeps its machine's placements), or
    /// under a new one, saved there.
    pub async fn establish(
        client: &KvClient,
        mut record: MachineRecord,
        lease_file: &Path,
    ) -> Result<Self, KvClientError> {
        let sent = Instant::now();
        let lease = match saved_lease(lease_file) {
            Some(lease) => match client.lease_keepalive_once(lease).await {
                Ok(answer) if answer.ttl > 0 => Some((lease, answer.ttl)),
                _ => None,
            },
            None => None,
        };
        let (lease, ttl) = match lease {
            Some(kept) => {
                tracing::info!(lease = %format!("{:x}", kept.0), "kept the machine's lease");
                kept
            }
            None => {
                let granted = client.lease_grant(record.ttl_s).await?;
                save_lease(lease_file, granted.id);
                (granted.id, granted.ttl)
            }
        };
        record.lease = lease;
        record.ttl_s = ttl;
        let put = client
            .put_request(&PutRequest {
                key: keys::machine(&record.id).into_bytes(),
                value: to_json(&record),
                lease,
                prev_kv: true,
                ..PutRequest::default()
            })
            .await?;
        let revision = match &put.prev_kv {
            Some(previous) => previous.create_revision,
            None => sinew_proto::kv::AtRevision::revision(&put),
        };
        let ttl = Duration::from_secs(u64::try_from(ttl).unwrap_or(1));
        let (report, liveness) = watch::channel(Liveness::Until(sent + ttl));
        let renewals = tokio::spawn(renew(client.clone(), lease, ttl, report));
        Ok(Self {
            record,
            revision,
            liveness,
            renewals,
        })
    }

    /// How far the lease is known to live, updated after every renewal.
    pub fn liveness(&self) -> watch::Receiver<Liveness> {
        self.liveness.clone()
    }

    /// Ends the lease now, so the machine's placements end at once (a clean stop).
    pub async fn revoke(self, client: &KvClient, lease_file: &Path) {
        self.renewals.abort();
        if let Err(error) = client.lease_revoke(self.record.lease).await {
            tracing::warn!(%error, "cannot revoke the machine's lease; it will run out");
        }
        let _ = std::fs::remove_file(lease_file);
    }
}

/// Renews every sixth of the TTL and reports how far the lease is known to live. An attempt
/// is never cut short: the client fails over past a dead endpoint on its own (a connect
/// timeout per endpoint), and only a completed attempt makes it prefer a live one; the
/// fencing deadline runs on regardless.
async fn renew(client: KvClient, lease: i64, ttl: Duration, report: watch::Sender<Liveness>) {
    let every = (ttl / 6).max(Duration::from_millis(100));
    let mut next = Instant::now() + every;
    loop {
        tokio::time::sleep_until(next).await;
        let sent = Instant::now();
        next = sent + every;
        match client.lease_keepalive_once(lease).await {
            Ok(answer) if answer.ttl > 0 => {
                let ttl = Duration::from_secs(u64::try_from(answer.ttl).unwrap_or(1));
                report.send_replace(Liveness::Until(sent + ttl));
            }
            Ok(_) => {
                report.send_replace(Liveness::Gone);
                return;
            }
            Err(error) => tracing::debug!(%error, "lease renewal failed"),
        }
    }
}

fn saved_lease(path: &Path) -> Option<i64> {
    let text = std::fs::read_to_string(path).ok()?;
    i64::from_str_radix(text.trim(), 16).ok()
}

fn save_lease(path: &Path, lease: i64) {
    let written = path
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| std::fs::write(path, format!("{lease:x}\n")));
    if let Err(error) = written {
        tracing::warn!(path = %path.display(), %error, "cannot save the machine's lease; a restart will register anew");
    }
}

/// Where the lease is saved under `state_dir`.
pub fn lease_file(state_dir: &Path) -> PathBuf {
    state_dir.join("lease")
}
