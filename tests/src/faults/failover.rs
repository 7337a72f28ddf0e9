//! Failover, timed: kill the leader with SIGKILL and measure how long until a client's
//! write succeeds again, and how long until a linearizable read does, each client trying
//! the surviving members in turn, as etcd's clients do.

use std::time::{Duration, Instant};

use anyhow::Result;
use sinew_proto::kv::{KvClient, PutRequest, RangeRequest};

use super::bed::FaultBed;
use crate::kv_cluster::Server;

/// One leader kill's times.
#[derive(Debug, Clone, Copy)]
pub struct Failover {
    /// From the kill to the first acknowledged write.
    pub write: Duration,
    /// From the kill to the first answered linearizable read.
    pub read: Duration,
}

/// How long one attempt may wait for an answer before the client tries the next member.
const ATTEMPT: Duration = Duration::from_secs(1);

/// Kills the leader of a `members`-member cluster of `server` `rounds` times (restarting it
/// and letting the cluster settle in between) and times each failover.
pub fn failover(server: Server, members: usize, rounds: usize) -> Result<Vec<Failover>> {
    let mut bed = FaultBed::start(server, members)?;
    let runtime = tokio::runtime::Runtime::new()?;
    let mut times = Vec::new();
    for round in 0..rounds {
        let leader = runtime.block_on(settled_leader(&bed))?;
        let survivors = bed.endpoints_except(leader);
        let killed = Instant::now();
        bed.cluster.kill(leader)?;
        let (write, read) = runtime.block_on(async {
            tokio::join!(
                until_answered(&survivors, killed, |client| async move {
                    let request = PutRequest {
                        key: b"/failover/probe".to_vec(),
                        value: round.to_string().into_bytes(),
                        ..PutRequest::default()
                    };
                    client.put_request(&request).await.map(drop)
                }),
                until_answered(&survivors, killed, |client| async move {
                    let request = RangeRequest {
                        key: b"/failover/probe".to_vec(),
                        ..RangeRequest::default()
                    };
                    client.range(&request).await.map(drop)
                }),
            )
        });
        times.push(Failover {
            write: write?,
            read: read?,
        });
        bed.cluster.restart(leader)?;
        bed.cluster.wait_healthy(Duration::from_secs(30))?;
    }
    Ok(times)
}

/// The leader, once every member agrees on one.
async fn settled_leader(bed: &FaultBed) -> Result<usize> {
    let started = Instant::now();
    loop {
        if let Some(leader) = bed.leader().await {
            return Ok(leader);
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(30),
            "the members agreed on no leader within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Tries `attempt` on each of `endpoints` in turn until one answers; returns the time from
/// `since`.
async fn until_answered<F, Fut>(
    endpoints: &[String],
    since: Instant,
    attempt: F,
) -> Result<Duration>
where
    F: Fn(KvClient) -> Fut,
    Fut: std::future::Future<Output = Result<(), sinew_proto::kv::KvClientError>>,
{
    let clients = endpoints
        .iter()
        .map(|endpoint| KvClient::with_timeout([endpoint.clone()], ATTEMPT))
        .collect::<Result<Vec<_>, _>>()?;
    for client in clients.iter().cycle() {
        if attempt(client.clone()).await.is_ok() {
            return Ok(since.elapsed());
        }
        anyhow::ensure!(
            since.elapsed() < Duration::from_secs(60),
            "no member answered within 60 s of the leader's kill"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    anyhow::bail!("no surviving member to try")
}
