//! Subnet allocation: choosing a subnet from what the store holds, claiming it with a
//! transaction so that no two hosts ever hold the same one, and renewing the claim.
//!
//! A host keeps its subnet across restarts: a lease that names its public IP is taken
//! over. Otherwise it tries the subnet its `subnet.env` names, then a free one. The claim
//! is a transaction that succeeds only if the key does not exist (or, when taking over our
//! own lease, has not changed since it was read); on a conflict the host reads again and
//! picks again.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::net::Ipv4Addr;
use std::time::Duration;

use sinew_proto::kv::{
    txn, CompareResult, KvClient, KvClientError, PutRequest, TargetUnion, TxnRequest,
};
use thiserror::Error;
use tokio::time::Instant;

use crate::config::NetworkConfig;
use crate::ipv4net::Ipv4Net;
use crate::lease::{self, LeaseAttrs};

/// How many times a claim may lose a race before the host gives up for now.
const MAX_CONFLICTS: usize = 32;

/// Why a subnet could not be acquired or kept.
#[derive(Debug, Error)]
pub enum AllocError {
    /// Every subnet between SubnetMin and SubnetMax is leased to another host.
    #[error("no free subnet: all {total} subnets of {network} between SubnetMin and SubnetMax are leased")]
    Exhausted {
        /// The network.
        network: Ipv4Net,
        /// How many subnets the config allows.
        total: usize,
    },
    /// Other hosts kept winning the claim.
    #[error("gave up after losing {0} claims in a row to other hosts")]
    Contended(usize),
    /// The KV store failed.
    #[error("{what}")]
    Kv {
        /// What was being done.
        what: &'static str,
        /// The client's error.
        #[source]
        source: KvClientError,
    },
    /// The lease expired or was revoked.
    #[error("the KV lease {0} of our subnet expired or was revoked")]
    Lost(i64),
}

fn kv(what: &'static str) -> impl FnOnce(KvClientError) -> AllocError {
    move |source| AllocError::Kv { what, source }
}

/// A lease the store holds, as allocation sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Existing {
    /// Its subnet.
    pub subnet: Ipv4Net,
    /// Its holder's public IP; `None` if its value could not be read.
    pub public_ip: Option<Ipv4Addr>,
    /// Its key's last modification, for taking it over safely.
    pub mod_revision: i64,
}

/// What to claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// Our own lease from before: take it over if it is unchanged since `mod_revision`.
    Reuse {
        /// Its subnet.
        subnet: Ipv4Net,
        /// Its key's last modification.
        mod_revision: i64,
    },
    /// A subnet nobody holds.
    Claim(Ipv4Net),
}

impl Choice {
    /// The subnet chosen.
    pub fn subnet(&self) -> Ipv4Net {
        match self {
            Self::Reuse { subnet, .. } | Self::Claim(subnet) => *subnet,
        }
    }
}

/// Chooses a subnet for the host at `public_ip`: its own lease if one exists, else
/// `preferred` if it is free, else a free subnet. The free subnet is picked from a start
/// that depends on the public IP, so that hosts starting together rarely race for one.
pub fn choose(
    config: &NetworkConfig,
    existing: &[Existing],
    public_ip: Ipv4Addr,
    preferred: Option<Ipv4Net>,
) -> Result<Choice, AllocError> {
    if let Some(own) = existing
        .iter()
        .find(|lease| lease.public_ip == Some(public_ip) && config.allows(&lease.subnet))
    {
        return Ok(Choice::Reuse {
            subnet: own.subnet,
            mod_revision: own.mod_revision,
        });
    }
    let taken = |subnet: &Ipv4Net| existing.iter().any(|lease| lease.subnet == *subnet);
    if let Some(subnet) = preferred.filter(|subnet| config.allows(subnet) && !taken(subnet)) {
        return Ok(Choice::Claim(subnet));
    }
    let free: Vec<Ipv4Net> = config
        .candidates()
        .filter(|subnet| !taken(subnet))
        .collect();
    if free.is_empty() {
        return Err(AllocError::Exhausted {
            network: config.network,
            total: config.candidates().count(),
        });
    }
    let mut hasher = DefaultHasher::new();
    public_ip.hash(&mut hasher);
    let start = usize::try_from(hasher.finish() % free.len() as u64).unwrap_or(0);
    Ok(Choice::Claim(free[start]))
}

/// A subnet this host holds, through a KV lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// The subnet.
    pub subnet: Ipv4Net,
    /// Its key.
    pub key: String,
    /// The KV lease the key is attached to.
    pub lease_id: i64,
    /// When the KV lease runs out unless renewed.
    pub expires: Instant,
}

/// Acquires and renews subnet leases in the KV store under one prefix.
#[derive(Debug, Clone)]
pub struct Allocator {
    kv: KvClient,
    prefix: String,
    ttl: Duration,
}

impl Allocator {
    /// An allocator for leases under `prefix` that live `ttl` unless renewed.
    pub fn new(kv: KvClient, prefix: &str, ttl: Duration) -> Self {
        Self {
            kv,
            prefix: prefix.to_owned(),
            ttl,
        }
    }

    /// The leases the store holds now.
    pub async fn existing(&self) -> Result<Vec<Existing>, AllocError> {
        let range = self
            .kv
            .get_prefix(lease::subnets_prefix(&self.prefix))
            .await
            .map_err(kv("listing the subnet leases"))?;
        Ok(range
            .kvs
            .iter()
            .filter_map(|pair| {
                let key = String::from_utf8_lossy(&pair.key);
                let subnet = match lease::parse_key(&key) {
                    Ok(subnet) => subnet,
                    Err(error) => {
                        tracing::warn!(%error, "ignoring a key that is not a lease");
                        return None;
                    }
                };
                let public_ip = LeaseAttrs::parse(&key, &pair.value)
                    .map(|attrs| attrs.public_ip)
                    .ok();
                Some(Existing {
                    subnet,
                    public_ip,
                    mod_revision: pair.mod_revision,
                })
            })
            .collect())
    }

    /// Claims a subnet for a host publishing `attrs`, retrying with a fresh read when
    /// another host wins the race.
    pub async fn acquire(
        &self,
        config: &NetworkConfig,
        attrs: &LeaseAttrs,
        preferred: Option<Ipv4Net>,
    ) -> Result<Held, AllocError> {
        for _ in 0..MAX_CONFLICTS {
            let existing = self.existing().await?;
            let choice = choose(config, &existing, attrs.public_ip, preferred)?;
            if let Some(held) = self.claim(choice, attrs).await? {
                return Ok(held);
            }
            tracing::debug!(subnet = %choice.subnet(), "another host claimed the subnet first; choosing again");
        }
        Err(AllocError::Contended(MAX_CONFLICTS))
    }

    /// Writes the lease if the key is still as `choice` saw it; `None` if it was not.
    async fn claim(&self, choice: Choice, attrs: &LeaseAttrs) -> Result<Option<Held>, AllocError> {
        let ttl = i64::try_from(self.ttl.as_secs().max(1)).unwrap_or(i64::MAX);
        let granted = self
            .kv
            .lease_grant(ttl)
            .await
            .map_err(kv("granting a KV lease for the subnet"))?;
        let key = lease::key(&self.prefix, &choice.subnet());
        let compare = match choice {
            Choice::Reuse { mod_revision, .. } => TargetUnion::ModRevision(mod_revision),
            // The key must not exist.
            Choice::Claim(_) => TargetUnion::CreateRevision(0),
        };
        let compare = txn::compare(key.clone(), CompareResult::Equal, compare);
        let put = txn::put(PutRequest {
            key: key.clone().into_bytes(),
            value: attrs.to_json(),
            lease: granted.id,
            ..PutRequest::default()
        });
        let answer = self
            .kv
            .txn(&TxnRequest {
                compare: vec![compare],
                success: vec![put],
                failure: Vec::new(),
            })
            .await
            .map_err(kv("claiming the subnet"))?;
        if !answer.succeeded {
            // The lease holds no key; letting it expire would do too.
            if let Err(error) = self.kv.lease_revoke(granted.id).await {
                tracing::debug!(%error, lease = granted.id, "revoking an unused lease failed");
            }
            return Ok(None);
        }
        Ok(Some(Held {
            subnet: choice.subnet(),
            key,
            lease_id: granted.id,
            expires: Instant::now() + secs(granted.ttl),
        }))
    }

    /// Renews `held` if it expires within `margin`; `Lost` if the lease is gone.
    pub async fn renew_if_due(
        &self,
        held: &mut Held,
        margin: Duration,
    ) -> Result<bool, AllocError> {
        if Instant::now() + margin < held.expires {
            return Ok(false);
        }
        let answer = self
            .kv
            .lease_keepalive_once(held.lease_id)
            .await
            .map_err(kv("renewing the subnet lease"))?;
        if answer.ttl <= 0 {
            return Err(AllocError::Lost(held.lease_id));
        }
        held.expires = Instant::now() + secs(answer.ttl);
        Ok(true)
    }
}

fn secs(ttl: i64) -> Duration {
    Duration::from_secs(u64::try_from(ttl).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> NetworkConfig {
        NetworkConfig::parse(
            br#"{"Network": "10.5.0.0/16", "SubnetMin": "10.5.1.0", "SubnetMax": "10.5.4.0"}"#,
        )
        .expect("a valid config")
    }

    fn net(text: &str) -> Ipv4Net {
        text.parse().expect("a network")
    }

    fn held_by(subnet: &str, host: u8, mod_revision: i64) -> Existing {
        Existing {
            subnet: net(subnet),
            public_ip: Some(Ipv4Addr::new(192, 168, 0, host)),
            mod_revision,
        }
    }

    const ME: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 9);

    #[test]
    fn reuses_the_lease_holding_our_public_ip() {
        let existing = [held_by("10.5.1.0/24", 1, 5), held_by("10.5.3.0/24", 9, 7)];
        let choice = choose(&config(), &existing, ME, Some(net("10.5.2.0/24")));
        assert_eq!(
            choice.expect("a choice"),
            Choice::Reuse {
                subnet: net("10.5.3.0/24"),
                mod_revision: 7
            }
        );
    }

    #[test]
    fn ignores_our_lease_outside_the_config() {
        // The network changed since: the old lease is not reused, and not handed out.
        let existing = [held_by("10.9.1.0/24", 9, 5)];
        let choice = choose(&config(), &existing, ME, None).expect("a choice");
        assert!(matches!(choice, Choice::Claim(subnet) if config().allows(&subnet)));
    }

    #[test]
    fn prefers_the_previous_subnet_when_free() {
        let existing = [held_by("10.5.1.0/24", 1, 5)];
        let choice = choose(&config(), &existing, ME, Some(net("10.5.2.0/24")));
        assert_eq!(choice.expect("a choice"), Choice::Claim(net("10.5.2.0/24")));
        // Taken by someone else, or outside SubnetMin..SubnetMax: a free one instead.
        for preferred in ["10.5.1.0/24", "10.5.9.0/24", "10.5.0.0/24"] {
            let choice = choose(&config(), &existing, ME, Some(net(preferred))).expect("a choice");
            assert_ne!(choice.subnet(), net(preferred));
            assert_ne!(choice.subnet(), net("10.5.1.0/24"));
        }
    }

    #[test]
    fn never_hands_out_a_taken_subnet() {
        let mut existing = Vec::new();
        for host in 0..4u8 {
            let choice = choose(&config(), &existing, Ipv4Addr::new(10, 0, 0, host), None)
                .expect("a free subnet");
            let Choice::Claim(subnet) = choice else {
                panic!("a new host claims: {choice:?}");
            };
            assert!(existing
                .iter()
                .all(|lease: &Existing| lease.subnet != subnet));
            existing.push(Existing {
                subnet,
                public_ip: Some(Ipv4Addr::new(10, 0, 0, host)),
                mod_revision: 1,
            });
        }
        // An unreadable lease still counts as taken.
        existing[0].public_ip = None;
        let error = choose(&config(), &existing, ME, None).expect_err("all four are taken");
        assert!(
            matches!(error, AllocError::Exhausted { total: 4, .. }),
            "{error}"
        );
        assert!(error.to_string().contains("all 4 subnets of 10.5.0.0/16"));
    }

    #[test]
    fn hosts_start_from_different_subnets() {
        let first: std::collections::HashSet<Ipv4Net> = (1..=20u8)
            .map(|host| {
                choose(&config(), &[], Ipv4Addr::new(10, 0, 0, host), None)
                    .expect("a choice")
                    .subnet()
            })
            .collect();
        assert!(first.len() > 1, "every host picked {first:?}");
    }
}
