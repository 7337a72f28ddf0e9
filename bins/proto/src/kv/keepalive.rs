//! Keeping a lease alive in the background, as etcd's clients do: a renewal every third of
//! the TTL, through whichever endpoint answers.

use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::client::KvClient;

/// Keeps a lease alive until dropped.
#[derive(Debug)]
pub struct KeepAlive {
    lease: i64,
    alive: watch::Receiver<bool>,
    task: JoinHandle<()>,
}

impl Drop for KeepAlive {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl KeepAlive {
    /// The lease kept alive.
    pub fn lease(&self) -> i64 {
        self.lease
    }

    /// Whether the lease is still known to be alive.
    pub fn is_alive(&self) -> bool {
        *self.alive.borrow()
    }

    /// Resolves when the lease is lost: it expired or was revoked, or renewals failed for
    /// longer than its TTL.
    pub async fn lost(&self) {
        let mut alive = self.alive.clone();
        // An error means the task ended, which it only does once the lease is lost.
        let _ = alive.wait_for(|alive| !*alive).await;
    }
}

impl KvClient {
    /// Renews lease `lease`, granted with `ttl` seconds, every `ttl / 3` until the returned
    /// handle is dropped or the lease is lost.
    pub fn keep_alive(&self, lease: i64, ttl: i64) -> KeepAlive {
        let (report, alive) = watch::channel(true);
        let ttl = Duration::from_secs(u64::try_from(ttl.max(1)).unwrap_or(1));
        let client = self.clone();
        let task = tokio::spawn(async move {
            let mut last_renewal = tokio::time::Instant::now();
            loop {
                tokio::time::sleep((ttl / 3).max(Duration::from_millis(100))).await;
                match client.lease_keepalive_once(lease).await {
                    Ok(answer) if answer.ttl > 0 => last_renewal = tokio::time::Instant::now(),
                    Ok(_) => break,
                    Err(error) => {
                        tracing::debug!(lease, %error, "lease renewal failed");
                        if last_renewal.elapsed() >= ttl {
                            break;
                        }
                    }
                }
            }
            report.send_replace(false);
        });
        KeepAlive { lease, alive, task }
    }
}
