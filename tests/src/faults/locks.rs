//! Lock clients of a fault run and the lock checker. Clients take one lock in turns: over
//! JSON with sinew's lock recipe (`sinew_proto::kv::Lock`, a queue of leased keys), over
//! gRPC with etcd's Lock service (which kvd serves), both etcd's recipe, so they exclude
//! each other. Each records the revision at which it knew it held the lock; the checker
//! then asks the store's own history whether, at that revision, its key was the oldest
//! key queued: no two holders ever overlap.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use sinew_etcd_api::etcdserverpb::lease_client::LeaseClient;
use sinew_etcd_api::etcdserverpb::{LeaseGrantRequest, LeaseKeepAliveRequest, LeaseRevokeRequest};
use sinew_etcd_api::v3lockpb::lock_client::LockClient;
use sinew_etcd_api::v3lockpb::{LockRequest, UnlockRequest};
use sinew_proto::kv::{KvClient, Lock, RangeRequest};
use tonic::transport::{Channel, Endpoint};

use super::checks::Violation;
use super::watchers::Seen;
use super::workload::{self, Api};

/// The lock every lock client takes.
pub const LOCK: &str = "/faults-lock";

/// The lease behind a holder's key, in seconds: kvd's and etcd's minimum for a 1 s
/// election timeout.
const TTL: i64 = 2;

/// How long a client waits for the lock, or for its release, before giving up on it.
const PATIENCE: Duration = Duration::from_secs(8);

/// A time a client knew it held the lock.
#[derive(Debug, Clone)]
pub struct Held {
    /// The client.
    pub client: usize,
    /// Its API.
    pub api: Api,
    /// Its key in the lock's queue.
    pub key: String,
    /// The revision at which it knew it held the lock.
    pub revision: i64,
}

/// Takes and releases the lock through `api` until `until`, holding it for times drawn
/// from `seed`; returns every holding known and how many attempts failed.
pub async fn drive(
    client: usize,
    api: Api,
    endpoints: Vec<String>,
    seed: u64,
    until: Instant,
) -> (Vec<Held>, usize) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut held = Vec::new();
    let mut failed = 0;
    while Instant::now() < until {
        let attempt = match api {
            Api::Json => {
                tokio::time::timeout(PATIENCE, hold_json(client, &endpoints, &mut rng)).await
            }
            Api::Grpc => {
                tokio::time::timeout(PATIENCE, hold_grpc(client, &endpoints, &mut rng)).await
            }
        };
        match attempt {
            Ok(Ok(Some(holding))) => held.push(holding),
            // Lost before it was known to be held: nothing to check.
            Ok(Ok(None)) => {}
            Ok(Err(_)) | Err(_) => {
                failed += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    (held, failed)
}

/// Holds the lock once through sinew's recipe, for a moment; the revision is that of a
/// linearizable read that found the client's key still there.
async fn hold_json(
    client: usize,
    endpoints: &[String],
    rng: &mut fastrand::Rng,
) -> anyhow::Result<Option<Held>> {
    let kv = KvClient::with_timeout(endpoints.to_vec(), Duration::from_secs(2))?;
    let lock = Lock::acquire(&kv, LOCK, TTL).await?;
    let key = lock.is_held_compare().key;
    let read = kv
        .range(&RangeRequest {
            key: key.clone(),
            ..RangeRequest::default()
        })
        .await?;
    let holding = (!read.kvs.is_empty()).then(|| Held {
        client,
        api: Api::Json,
        key: String::from_utf8_lossy(&key).into_owned(),
        revision: workload::revision(read.header),
    });
    tokio::time::sleep(Duration::from_millis(rng.u64(20..150))).await;
    lock.unlock().await?;
    Ok(holding)
}

/// Holds the lock once through etcd's Lock service, with a lease kept alive meanwhile.
async fn hold_grpc(
    client: usize,
    endpoints: &[String],
    rng: &mut fastrand::Rng,
) -> anyhow::Result<Option<Held>> {
    let endpoint = &endpoints[rng.usize(..endpoints.len())];
    let channel = Endpoint::from_shared(endpoint.clone())?
        .connect_timeout(Duration::from_millis(500))
        .connect()
        .await?;
    let mut leases = LeaseClient::new(channel.clone());
    let lease = leases
        .lease_grant(LeaseGrantRequest { ttl: TTL, id: 0 })
        .await?
        .into_inner()
        .id;
    let keepalive = tokio::spawn(keep_alive(channel.clone(), lease));
    let result = async {
        let mut locks = LockClient::new(channel);
        let response = locks
            .lock(LockRequest {
                name: LOCK.as_bytes().to_vec(),
                lease,
            })
            .await?
            .into_inner();
        let holding = Held {
            client,
            api: Api::Grpc,
            key: String::from_utf8_lossy(&response.key).into_owned(),
            revision: workload::revision(response.header),
        };
        tokio::time::sleep(Duration::from_millis(rng.u64(20..150))).await;
        locks.unlock(UnlockRequest { key: response.key }).await?;
        anyhow::Ok(Some(holding))
    }
    .await;
    keepalive.abort();
    // The lease ends with the holding either way; if the revoke fails it expires.
    let _ = leases.lease_revoke(LeaseRevokeRequest { id: lease }).await;
    result
}

/// Keeps `lease` alive over one keep-alive stream until aborted.
async fn keep_alive(channel: Channel, lease: i64) {
    let requests = futures::stream::unfold(true, move |first| async move {
        if !first {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Some((LeaseKeepAliveRequest { id: lease }, false))
    });
    if let Ok(responses) = LeaseClient::new(channel).lease_keep_alive(requests).await {
        let mut responses = responses.into_inner();
        while let Ok(Some(_)) = responses.message().await {}
    }
}

/// Whether every holding was exclusive: at its revision, no key queued before the holder's
/// was still there, by the store's history.
pub fn check(held: &[Held], history: &[Seen]) -> Option<Violation> {
    let prefix = format!("{LOCK}/");
    // Each queued key's life: created, and deleted (if it was).
    let mut lives: HashMap<&str, (i64, Option<i64>)> = HashMap::new();
    for seen in history.iter().filter(|seen| seen.key.starts_with(&prefix)) {
        let life = lives.entry(&seen.key).or_insert((seen.revision, None));
        if seen.deleted {
            life.1 = Some(seen.revision);
        }
    }
    let mut overlaps = Vec::new();
    for holding in held {
        let Some(&(created, _)) = lives.get(holding.key.as_str()) else {
            overlaps.push(format!(
                "client {} ({}) held with key {} at rev {}, a key the history never had",
                holding.client,
                holding.api.name(),
                holding.key,
                holding.revision
            ));
            continue;
        };
        for (key, (other_created, deleted)) in &lives {
            let alive = *other_created <= holding.revision
                && deleted.is_none_or(|deleted| deleted > holding.revision);
            if *other_created < created && alive {
                overlaps.push(format!(
                    "client {} ({}) held with key {} (rev {created}) at rev {}, while {key} (rev {other_created}, released at {deleted:?}) was ahead of it",
                    holding.client,
                    holding.api.name(),
                    holding.key,
                    holding.revision,
                ));
            }
        }
    }
    (!overlaps.is_empty()).then(|| Violation {
        checker: "locks",
        what: format!("{} holdings overlapped another holder's", overlaps.len()),
        evidence: overlaps.into_iter().take(5).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(revision: i64, key: &str, deleted: bool) -> Seen {
        Seen {
            revision,
            key: format!("{LOCK}/{key}"),
            value: String::new(),
            deleted,
        }
    }

    fn held(key: &str, revision: i64) -> Held {
        Held {
            client: 0,
            api: Api::Grpc,
            key: format!("{LOCK}/{key}"),
            revision,
        }
    }

    #[test]
    fn holders_in_turn_pass_and_overlapping_ones_fail() {
        let history = vec![
            event(10, "a", false),
            event(11, "b", false),
            event(12, "a", true),
            event(14, "b", true),
        ];
        assert!(check(
            &[held("a", 10), held("a", 11), held("b", 12), held("b", 13)],
            &history
        )
        .is_none());
        // b knew it held at 11, when a, queued first, still did.
        let found = check(&[held("a", 10), held("b", 11)], &history).expect("an overlap");
        assert!(found.evidence[0].contains("/a (rev 10"), "{found}");
        assert!(check(&[held("c", 15)], &history).is_some());
    }
}
