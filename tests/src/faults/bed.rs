//! The ground a fault run stands on: a KV cluster whose members each run in a network
//! namespace of their own on one bridge, so that partitions are real packet drops
//! (nftables in the members' namespaces), pauses are SIGSTOP, and crashes are SIGKILL.
//! Clients run in the test's own namespace and reach every member over the bridge.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use sinew_proto::kv::KvClient;

use crate::kv_cluster::{KvCluster, Placement, Server};
use crate::underlay::{sh, Underlay};

/// How long replacing a member may take, faults and all.
const REPLACE_PATIENCE: Duration = Duration::from_secs(30);

/// The nftables table a partition lives in, one per member namespace.
const TABLE: &str = "sinew_fault";

/// A pair of members that cannot reach each other (lower index first).
pub type Cut = (usize, usize);

/// A cluster in namespaces; members die with it, then the namespaces go.
#[derive(Debug)]
pub struct FaultBed {
    /// The members (dropped first: processes before their namespaces).
    pub cluster: KvCluster,
    underlay: Underlay,
    cuts: BTreeSet<Cut>,
}

/// `nft`, installed once if missing.
fn nft_installed() -> Result<()> {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    let tools = [sinew::setup::Tool {
        program: "nft",
        package: "nftables",
    }];
    crate::tools_installed(&READY, &tools)
}

impl FaultBed {
    /// Starts `members` members of `server`, each in its own namespace, and waits until the
    /// cluster answers.
    pub fn start(server: Server, members: usize) -> Result<Self> {
        nft_installed()?;
        let underlay = Underlay::bare("fl", members)?;
        let placements: Vec<Placement> = underlay
            .hosts
            .iter()
            .map(|host| Placement {
                netns: Some(host.netns.clone()),
                address: host.address,
            })
            .collect();
        let cluster = KvCluster::start_placed(server, underlay.dir(), &placements)?;
        Ok(Self {
            cluster,
            underlay,
            cuts: BTreeSet::new(),
        })
    }

    /// The number of members.
    pub fn size(&self) -> usize {
        self.cluster.members.len()
    }

    /// A directory that lives as long as the bed (member data and logs are there).
    pub fn dir(&self) -> &Path {
        self.underlay.dir()
    }

    /// Leaves the members' data directories and logs in place when the bed goes.
    pub fn keep_dir(&mut self) -> &Path {
        self.underlay.keep_dir()
    }

    /// Every member's client URL, by index.
    pub fn endpoints(&self) -> Vec<String> {
        self.cluster.endpoints()
    }

    /// Every member's client URL but member `index`'s.
    pub fn endpoints_except(&self, index: usize) -> Vec<String> {
        let mut endpoints = self.endpoints();
        endpoints.remove(index);
        endpoints
    }

    fn address(&self, index: usize) -> Ipv4Addr {
        self.underlay.hosts[index].address
    }

    /// Cuts every pair in `cuts` (and only those: earlier cuts not named are mended). A
    /// member drops every packet from and to the members it is cut from; clients still
    /// reach every member.
    pub fn partition(&mut self, cuts: &BTreeSet<Cut>) -> Result<()> {
        for index in 0..self.size() {
            let peers: Vec<String> = cuts
                .iter()
                .filter_map(|&(a, b)| match index {
                    _ if a == index => Some(b),
                    _ if b == index => Some(a),
                    _ => None,
                })
                .map(|peer| self.address(peer).to_string())
                .collect();
            self.drop_rules(index, &peers)?;
        }
        self.cuts = cuts.clone();
        Ok(())
    }

    /// Mends every cut.
    pub fn heal(&mut self) -> Result<()> {
        self.partition(&BTreeSet::new())
    }

    /// Ends every fault: mends every cut, continues every member, restarts every member
    /// that is down.
    pub fn mend(&mut self) -> Result<()> {
        self.heal()?;
        for index in 0..self.size() {
            if self.cluster.is_running(index) {
                self.cluster.resume(index)?;
            } else {
                self.cluster.restart(index)?;
            }
        }
        Ok(())
    }

    /// The cuts in force.
    pub fn cuts(&self) -> &BTreeSet<Cut> {
        &self.cuts
    }

    /// Replaces member `index`'s drop rules with drops from and to `peers`.
    fn drop_rules(&self, index: usize, peers: &[String]) -> Result<()> {
        let netns = &self.underlay.hosts[index].netns;
        let mut script = format!("table inet {TABLE}\ndelete table inet {TABLE}\n");
        if !peers.is_empty() {
            let set = peers.join(", ");
            script.push_str(&format!(
                "table inet {TABLE} {{\n\
                 chain input {{ type filter hook input priority 0; ip saddr {{ {set} }} drop; }}\n\
                 chain output {{ type filter hook output priority 0; ip daddr {{ {set} }} drop; }}\n\
                 }}\n"
            ));
        }
        let path = self.dir().join(format!("nft-{index}.conf"));
        std::fs::write(&path, script)?;
        let path = path.to_string_lossy();
        sh("ip", &["netns", "exec", netns, "nft", "-f", &path])
            .with_context(|| format!("setting member {index}'s partition rules"))
            .map(drop)
    }

    /// Replaces member `index` as etcd's documentation replaces a machine: removes it from
    /// the cluster, wipes it, adds it back as a learner and promotes it once it has caught
    /// up. Each step is retried until the cluster takes it (faults may be in the way), for
    /// at most [`REPLACE_PATIENCE`] in all.
    pub async fn replace(&mut self, index: usize) -> Result<()> {
        let deadline = Instant::now() + REPLACE_PATIENCE;
        let client = KvClient::with_timeout(self.endpoints_except(index), Duration::from_secs(3))?;
        let member = self.cluster.members[index].clone();
        let id = retry(deadline, "finding the member", || async {
            let members = client.member_list().await?.members;
            members
                .iter()
                .find(|listed| {
                    listed.name == member.name || listed.peer_ur_ls == [member.peer_url.clone()]
                })
                .map(|listed| listed.id)
                .ok_or_else(|| anyhow::anyhow!("{} is not a member", member.name))
        })
        .await?;
        retry(deadline, "removing the member", || async {
            match client.member_remove(id).await {
                Err(error) if error.server_message() == Some("etcdserver: member not found") => {
                    Ok(())
                }
                other => other.map(drop).map_err(Into::into),
            }
        })
        .await?;
        self.cluster.kill(index)?;
        let peer_urls = vec![member.peer_url.clone()];
        let id = retry(deadline, "adding the learner", || async {
            match client.member_add(peer_urls.clone(), true).await {
                Ok(added) => added
                    .member
                    .map(|added| added.id)
                    .context("no member in the answer"),
                // An earlier attempt went through: find it.
                Err(error)
                    if error.server_message() == Some("etcdserver: Peer URLs already exists") =>
                {
                    let members = client.member_list().await?.members;
                    members
                        .iter()
                        .find(|listed| listed.peer_ur_ls == peer_urls)
                        .map(|listed| listed.id)
                        .context("the member with those peer URLs vanished")
                }
                Err(error) => Err(error.into()),
            }
        })
        .await?;
        self.cluster.rejoin(index)?;
        retry(deadline, "promoting the learner", || async {
            match client.member_promote(id).await {
                Err(error)
                    if error.server_message()
                        == Some("etcdserver: can only promote a learner member") =>
                {
                    Ok(())
                }
                other => other.map(drop).map_err(Into::into),
            }
        })
        .await
    }

    /// The member every running member that answers names as leader, if they agree.
    pub async fn leader(&self) -> Option<usize> {
        let mut leaders = BTreeSet::new();
        for (index, endpoint) in self.endpoints().iter().enumerate() {
            if !self.cluster.is_running(index) {
                continue;
            }
            let Ok(client) = KvClient::with_timeout([endpoint.clone()], Duration::from_millis(500))
            else {
                continue;
            };
            if let Ok(status) = client.status(endpoint).await {
                if status.leader != 0 {
                    leaders.insert(status.leader);
                }
            }
        }
        let leader = leaders.pop_first().filter(|_| leaders.is_empty())?;
        self.member_index(leader).await
    }

    /// The index of the member whose id is `id`.
    async fn member_index(&self, id: u64) -> Option<usize> {
        let client = KvClient::with_timeout(self.endpoints(), Duration::from_millis(500)).ok()?;
        let members = client.member_list().await.ok()?.members;
        let member = members.iter().find(|member| member.id == id)?;
        self.cluster
            .members
            .iter()
            .position(|ours| member.name == ours.name)
    }
}

/// Runs `step` until it succeeds or `deadline` passes, then fails with its last error.
async fn retry<T, F, Fut>(deadline: Instant, what: &str, step: F) -> Result<T>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    loop {
        match step().await {
            Ok(value) => return Ok(value),
            Err(error) if Instant::now() > deadline => {
                return Err(
                    error.context(format!("{what}: still failing after {REPLACE_PATIENCE:?}"))
                );
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}
