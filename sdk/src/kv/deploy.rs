//! Deploying kvd to a set of hosts: ship `kvd` and `kvctl` built for each host's
//! architecture, start kvd as a supervised service with etcd's flags for a static cluster
//! over the data-plane addresses, and wait until every member serves a linearizable read.

use std::time::{Duration, Instant};

use thiserror::Error;

use crate::build::{Artifacts, BuildError};
use crate::host::{Host, HostError};
use crate::outcome::{Outcome, Status};
use crate::{Run, ServiceSpec, TaskFailed};

/// Where kvd and kvctl are installed on a host.
pub const KVD_PATH: &str = "/usr/local/bin/kvd";
/// Where kvctl is installed on a host.
pub const KVCTL_PATH: &str = "/usr/local/bin/kvctl";
/// The client port every member listens on.
pub const CLIENT_PORT: u16 = 2379;
/// The peer port every member listens on.
pub const PEER_PORT: u16 = 2380;
/// The service name kvd runs under.
pub const SERVICE: &str = "kvd";
/// The members' election timeout (openraft waits up to twice this without a leader).
pub const ELECTION_TIMEOUT: Duration = Duration::from_millis(2500);

/// How long a new cluster may take to serve its first read (guests may be emulated).
const HEALTHY_PATIENCE: Duration = Duration::from_secs(120);

/// Why kvd could not be deployed.
#[derive(Debug, Error)]
pub enum DeployError {
    /// kvd or kvctl was not built for a host's architecture.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// A host refused a step.
    #[error(transparent)]
    Host(#[from] HostError),
    /// The cluster did not become healthy in time.
    #[error("the kv cluster did not become healthy within {patience:?}: {last}")]
    Unhealthy {
        /// How long it was given.
        patience: Duration,
        /// What the last check said.
        last: String,
    },
}

/// A kvd cluster running on hosts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvDeployment {
    /// Each member: its host's name and its client URL, in host order.
    pub members: Vec<(String, String)>,
}

impl KvDeployment {
    /// The client URLs, comma-separated, as `--endpoints` takes them.
    pub fn endpoints(&self) -> String {
        self.members
            .iter()
            .map(|(_, url)| url.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The host running the member whose client URL is `url`.
    pub fn host_of(&self, url: &str) -> Option<&str> {
        self.members
            .iter()
            .find(|(_, client)| client == url)
            .map(|(host, _)| host.as_str())
    }
}

impl Outcome for KvDeployment {
    fn status(&self) -> Status {
        Status::Ok
    }

    fn detail(&self) -> Option<String> {
        Some(format!("{} members healthy", self.members.len()))
    }
}

fn client_url(host: &Host) -> String {
    format!("http://{}:{CLIENT_PORT}", host.data_ip())
}

fn peer_url(host: &Host) -> String {
    format!("http://{}:{PEER_PORT}", host.data_ip())
}

/// The kvd service for `host` in a static cluster of `hosts` (etcd's flags, so the same
/// line starts etcd).
pub fn service(host: &Host, hosts: &[Host]) -> ServiceSpec {
    let initial_cluster: Vec<String> = hosts
        .iter()
        .map(|member| format!("{}={}", member.name(), peer_url(member)))
        .collect();
    ServiceSpec::new(
        SERVICE,
        [
            KVD_PATH.to_owned(),
            format!("--name={}", host.name()),
            "--data-dir=/var/lib/kvd".to_owned(),
            format!("--listen-client-urls={}", client_url(host)),
            format!("--advertise-client-urls={}", client_url(host)),
            format!("--listen-peer-urls={}", peer_url(host)),
            format!("--initial-advertise-peer-urls={}", peer_url(host)),
            format!("--initial-cluster={}", initial_cluster.join(",")),
            "--initial-cluster-token=sinew-kv".to_owned(),
            // Emulated guests are slow: a longer election timeout avoids needless elections.
            "--heartbeat-interval=250".to_owned(),
            format!("--election-timeout={}", ELECTION_TIMEOUT.as_millis()),
        ],
    )
}

// Extends `Run` (run.rs) with the KV cluster; indexed in `Run`'s doc comment.
impl Run {
    /// Installs kvd and kvctl on every host (from `bins`, built for each host's
    /// architecture), starts kvd as a service forming one cluster over the data-plane
    /// addresses, and waits until every member is healthy. Idempotent: files already in
    /// place are not sent again and a running kvd is left running.
    pub fn deploy_kv(&self, hosts: &[Host], bins: &Artifacts) -> Result<KvDeployment, TaskFailed> {
        self.each(hosts, "install kvd", |host| {
            Ok::<_, DeployError>(host.install(bins.get("kvd", host.arch())?, KVD_PATH)?)
        })?;
        self.each(hosts, "install kvctl", |host| {
            Ok::<_, DeployError>(host.install(bins.get("kvctl", host.arch())?, KVCTL_PATH)?)
        })?;
        self.each(hosts, "start kvd", |host| {
            host.start_service(&service(host, hosts))
        })?;
        let deployment = KvDeployment {
            members: hosts
                .iter()
                .map(|host| (host.name().to_owned(), client_url(host)))
                .collect(),
        };
        if self.is_dry_run() {
            return Ok(deployment);
        }
        let first = hosts.first().cloned();
        self.task("kv cluster healthy", || {
            let Some(first) = first else {
                return Ok(deployment.clone());
            };
            wait_healthy(&first, &deployment.endpoints())?;
            Ok::<_, DeployError>(deployment.clone())
        })
    }
}

/// Runs `kvctl endpoint health` on `host` until every endpoint answers.
fn wait_healthy(host: &Host, endpoints: &str) -> Result<(), DeployError> {
    let started = Instant::now();
    let endpoints = format!("--endpoints={endpoints}");
    loop {
        let check = host.try_exec(&[KVCTL_PATH, &endpoints, "endpoint", "health"])?;
        if check.success() {
            return Ok(());
        }
        if started.elapsed() > HEALTHY_PATIENCE {
            return Err(DeployError::Unhealthy {
                patience: HEALTHY_PATIENCE,
                last: String::from_utf8_lossy(&check.stderr).trim().to_owned(),
            });
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
