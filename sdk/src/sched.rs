//! The scheduler from a playbook (fleet's job, run by `schedd`): [`Run::deploy_scheduler`]
//! ships schedd and schedctl to every host, runs schedd as a service against a KV
//! deployment and waits until every host is registered; [`Scheduler`] submits and starts
//! units and waits on what the cluster reports, through schedctl on the first host that
//! answers (the KV store is on the data plane, which the playbook's machine does not
//! reach). Unit specs and records are `sinew_proto::sched`'s, re-exported here.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

pub use sinew_proto::discovery::{Listen, ListenError, Mode};
pub use sinew_proto::sched::client::Snapshot;
pub use sinew_proto::sched::records::{InstanceState, MachineRecord, Phase, Target};
pub use sinew_proto::sched::unit::{
    Build, Exec, ExecKind, HealthCheck, Placement, Probe, Register, Resources, Restart, UnitSpec,
};
pub use sinew_proto::sched::{InstanceId, Slot};
use sinew_proto::Sha256Digest;
use thiserror::Error;

use crate::build::{Artifacts, BuildError};
use crate::deploy::{DeployError, Operator};
use crate::host::{Host, HostError};
use crate::image::{host_archive_path, ImageError, SignedImage};
use crate::kv::KvDeployment;
use crate::outcome::{Outcome, Status};
use crate::Arch;
use crate::{Run, ServiceSpec, TaskFailed};

/// Where schedd is installed on a host.
pub const SCHEDD_PATH: &str = "/usr/local/bin/schedd";
/// Where schedctl is installed on a host.
pub const SCHEDCTL_PATH: &str = "/usr/local/bin/schedctl";
/// The service name schedd runs under.
pub const SERVICE: &str = "schedd";
/// The port each schedd serves its instances' logs on, on the host's data-plane address.
pub const JOURNAL_PORT: u16 = 7081;

/// How long every host may take to register (guests may be emulated).
const REGISTER_PATIENCE: Duration = Duration::from_secs(120);

/// Why the scheduler could not be deployed or asked.
#[derive(Debug, Error)]
pub enum SchedError {
    /// schedd or schedctl was not built for a host's architecture.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// A host refused a step.
    #[error(transparent)]
    Host(#[from] HostError),
    /// schedctl refused a request.
    #[error("schedctl {request} on {host}: {stderr}")]
    Refused {
        /// The request.
        request: String,
        /// The host it ran on.
        host: String,
        /// What schedctl said.
        stderr: String,
    },
    /// A unit the SDK was asked to make cannot be made as asked.
    #[error("unit {unit}: {reason}")]
    Unit {
        /// The unit.
        unit: String,
        /// What is wrong.
        reason: String,
    },
    /// No host could run schedctl.
    #[error("no host could run schedctl: {0}")]
    NoHost(String),
    /// schedctl printed something that is not a snapshot.
    #[error("schedctl's JSON on {host}: {reason}")]
    Output {
        /// The host.
        host: String,
        /// Why it could not be read.
        reason: String,
    },
    /// A wait ran out.
    #[error("{what}: not within {patience:?}; {last}")]
    Timeout {
        /// What was waited for.
        what: String,
        /// How long.
        patience: Duration,
        /// What the cluster last reported, in short.
        last: String,
    },
}

/// What each host registers with, besides its name and architecture.
#[derive(Debug, Clone, Default)]
pub struct SchedulerSpec {
    /// Metadata by host name (`region=east`).
    pub metadata: BTreeMap<String, BTreeMap<String, String>>,
    /// The machines' and engine's lease TTL in seconds; by default
    /// [`default_ttl_s`], long enough to ride out the KV cluster electing a leader.
    pub ttl_s: Option<u32>,
}

/// The lease TTL that outlasts a leaderless KV cluster deployed by [`Run::deploy_kv`]: an
/// agent that cannot renew kills its instances before its lease could end, so a TTL shorter
/// than an election (up to twice the election timeout, plus the vote) would have every
/// machine stop its instances whenever the KV leader is lost.
pub fn default_ttl_s() -> u32 {
    let election = crate::kv::deploy::ELECTION_TIMEOUT;
    u32::try_from((election * 2).as_secs() + 2).unwrap_or(u32::MAX)
}

/// A unit's exec: the static binary `name` from `bins`, for every architecture `bins` was
/// built for, installed at `path` on the hosts of that architecture (with its digest, which
/// the agent checks before it starts it).
pub fn binary_exec(bins: &Artifacts, name: &str, path: &str) -> Result<Exec, BuildError> {
    let archs: BTreeSet<Arch> = bins.iter().map(|artifact| artifact.arch).collect();
    let builds = archs
        .into_iter()
        .map(|arch| {
            Ok(Build {
                arch: arch.to_string(),
                path: path.to_owned(),
                sha256: bins.get(name, arch)?.sha256.clone(),
            })
        })
        .collect::<Result<_, BuildError>>()?;
    Ok(Exec {
        kind: ExecKind::Binary,
        builds,
    })
}

/// Where [`proxy_unit`] runs sinew-proxy from; the playbook installs it there on the
/// machines the unit may go to.
pub const PROXY_PATH: &str = "/usr/local/bin/sinew-proxy";

/// A unit running sinew-proxy (from `bins`, at [`PROXY_PATH`]) against the store at
/// `endpoints` (`KvDeployment::endpoints`), with `listen` as its listeners and `drain` as
/// its drain grace. It always restarts, and is healthy once its first listener accepts
/// connections. Place it with [`UnitSpec::placement`] like any unit.
pub fn proxy_unit(
    name: &str,
    bins: &Artifacts,
    endpoints: &str,
    listen: &[Listen],
    drain: Duration,
) -> Result<UnitSpec, SchedError> {
    let first = listen.first().ok_or_else(|| SchedError::Unit {
        unit: name.to_owned(),
        reason: "a proxy needs at least one listener".into(),
    })?;
    let mut unit = UnitSpec::new(name, binary_exec(bins, "sinew-proxy", PROXY_PATH)?);
    unit.args = vec![format!("--endpoints={endpoints}")];
    unit.args
        .extend(listen.iter().map(|listen| format!("--listen={listen}")));
    unit.args
        .push(format!("--drain-grace={}ms", drain.as_millis()));
    unit.restart.policy = crate::RestartPolicy::Always;
    unit.health = Some(HealthCheck::new(Probe::Tcp {
        port: first.address.port(),
    }));
    Ok(unit)
}

/// A unit's exec for a signed image, on the hosts where [`Run::install_image`] put it (at
/// [`host_archive_path`]): a build per architecture the image covers, each the archive with
/// its digest. The agent checks the digest, has sinew-run verify the signature against the
/// keys the host trusts, and runs the image's build for the host, on the host's network.
pub fn image_exec(image: &SignedImage) -> Result<Exec, ImageError> {
    let (_, digest) = Sha256Digest::of_file(&image.archive).map_err(|source| ImageError::Io {
        action: "hashing",
        path: image.archive.clone(),
        source,
    })?;
    let path = host_archive_path(image);
    let builds = image
        .manifests
        .iter()
        .map(|(arch, _)| Build {
            arch: arch.to_string(),
            path: path.clone(),
            sha256: digest.to_hex(),
        })
        .collect();
    Ok(Exec {
        kind: ExecKind::Container,
        builds,
    })
}

/// A deployed scheduler; cheap to clone.
#[derive(Debug, Clone)]
pub struct Scheduler {
    hosts: Vec<Host>,
    endpoints: String,
}

impl Outcome for Scheduler {
    fn status(&self) -> Status {
        Status::Ok
    }

    fn detail(&self) -> Option<String> {
        Some(format!("{} machines registered", self.hosts.len()))
    }
}

impl Outcome for Snapshot {
    fn status(&self) -> Status {
        Status::Ok
    }

    fn detail(&self) -> Option<String> {
        Some(format!(
            "{} instances on {} machines",
            self.placed.len(),
            self.machines.len()
        ))
    }
}

// Extends `Run` (run.rs) with the scheduler; indexed in `Run`'s doc comment.
impl Run {
    /// Installs schedd and schedctl on every host (from `bins`), starts schedd as a service
    /// (each host a machine named after it, with `spec`'s metadata) against `kv`, and waits
    /// until every host is registered. Idempotent: a running schedd is left running.
    pub fn deploy_scheduler(
        &self,
        hosts: &[Host],
        bins: &Artifacts,
        kv: &KvDeployment,
        spec: &SchedulerSpec,
    ) -> Result<Scheduler, TaskFailed> {
        let endpoints = kv.endpoints();
        self.each(hosts, "install schedd", |host| {
            Ok::<_, SchedError>(host.install(bins.get("schedd", host.arch())?, SCHEDD_PATH)?)
        })?;
        self.each(hosts, "install schedctl", |host| {
            Ok::<_, SchedError>(host.install(bins.get("schedctl", host.arch())?, SCHEDCTL_PATH)?)
        })?;
        self.each(hosts, "start schedd", |host| {
            host.start_service(&service(host, &endpoints, spec))
        })?;
        let scheduler = Scheduler {
            hosts: hosts.to_vec(),
            endpoints,
        };
        if self.is_dry_run() {
            return Ok(scheduler);
        }
        let names: Vec<String> = hosts.iter().map(|host| host.name().to_owned()).collect();
        self.task("machines registered", || {
            scheduler.wait_until("every machine registered", REGISTER_PATIENCE, |snapshot| {
                names
                    .iter()
                    .all(|name| snapshot.machines.contains_key(name))
            })?;
            Ok::<_, SchedError>(scheduler.clone())
        })
    }
}

/// schedd's service on `host`.
pub fn service(host: &Host, endpoints: &str, spec: &SchedulerSpec) -> ServiceSpec {
    let mut argv = vec![
        SCHEDD_PATH.to_owned(),
        format!("--endpoints={endpoints}"),
        format!("--machine={}", host.name()),
        format!("--journal-listen={}:{JOURNAL_PORT}", host.data_ip()),
        format!("--address={}", host.data_ip()),
    ];
    if let Some(metadata) = spec.metadata.get(host.name()) {
        let pairs: Vec<String> = metadata
            .iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect();
        argv.push(format!("--metadata={}", pairs.join(",")));
    }
    argv.push(format!(
        "--ttl={}",
        spec.ttl_s.unwrap_or_else(default_ttl_s)
    ));
    ServiceSpec::new(SERVICE, argv)
}

impl Scheduler {
    /// The hosts schedd runs on.
    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    /// Submits `unit` and starts it (schedctl `start FILE`).
    pub fn start(&self, unit: &UnitSpec) -> Result<(), SchedError> {
        let file = format!("/run/{}.unit.json", unit.name);
        let json = serde_json::to_vec(unit).map_err(|error| SchedError::Output {
            host: String::new(),
            reason: error.to_string(),
        })?;
        self.schedctl(&format!("start {}", unit.name), |host| {
            host.put(&json, &file, 0o644)?;
            Ok(vec!["start".to_owned(), file.clone()])
        })
        .map(drop)
    }

    /// Stops a unit's instances (schedctl `stop`).
    pub fn stop(&self, unit: &str) -> Result<(), SchedError> {
        self.schedctl(&format!("stop {unit}"), |_| {
            Ok(vec!["stop".to_owned(), unit.to_owned()])
        })
        .map(drop)
    }

    /// Changes a unit's replica count (schedctl `scale`).
    pub fn scale(&self, unit: &str, replicas: u32) -> Result<(), SchedError> {
        self.schedctl(&format!("scale {unit} {replicas}"), |_| {
            Ok(vec![
                "scale".to_owned(),
                unit.to_owned(),
                replicas.to_string(),
            ])
        })
        .map(drop)
    }

    /// Makes `versions` of `service` the ones that get traffic; none: every version
    /// (schedctl `route`).
    pub fn route(&self, service: &str, versions: &[String]) -> Result<(), SchedError> {
        self.schedctl(&format!("route {service}"), |_| {
            let mut args = vec!["route".to_owned(), service.to_owned()];
            args.extend(versions.iter().cloned());
            Ok(args)
        })
        .map(drop)
    }

    /// The last `lines` lines of an instance's log, from its machine.
    pub fn journal(&self, instance: &InstanceId, lines: usize) -> Result<String, SchedError> {
        let (_, log) = self.schedctl(&format!("journal {instance}"), |_| {
            Ok(vec![
                "journal".to_owned(),
                instance.to_string(),
                format!("--lines={lines}"),
            ])
        })?;
        Ok(log)
    }

    /// Everything the scheduler holds now.
    pub fn snapshot(&self) -> Result<Snapshot, SchedError> {
        let (host, stdout) = self.schedctl("list-units -o json", |_| {
            Ok(vec![
                "list-units".to_owned(),
                "-o".to_owned(),
                "json".to_owned(),
            ])
        })?;
        serde_json::from_str(&stdout).map_err(|error| SchedError::Output {
            host,
            reason: error.to_string(),
        })
    }

    /// Polls the scheduler until `check` holds, for at most `patience`.
    pub fn wait_until(
        &self,
        what: &str,
        patience: Duration,
        check: impl Fn(&Snapshot) -> bool,
    ) -> Result<Snapshot, SchedError> {
        let started = Instant::now();
        loop {
            let last = match self.snapshot() {
                Ok(snapshot) if check(&snapshot) => return Ok(snapshot),
                Ok(snapshot) => summary(&snapshot),
                Err(error) => error.to_string(),
            };
            if started.elapsed() > patience {
                return Err(SchedError::Timeout {
                    what: what.to_owned(),
                    patience,
                    last,
                });
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Waits until every instance of `unit` (by its spec: replicas, or one per machine it
    /// is placed on if global) runs healthy where it is placed.
    pub fn wait_healthy(
        &self,
        unit: &UnitSpec,
        patience: Duration,
    ) -> Result<Snapshot, SchedError> {
        self.wait_until(&format!("{} healthy", unit.name), patience, |snapshot| {
            snapshot.all_healthy(unit)
        })
    }

    /// Runs schedctl on the first host that answers, with the arguments `args` gives for
    /// that host; returns the host's name and what schedctl printed.
    fn schedctl(
        &self,
        request: &str,
        args: impl Fn(&Host) -> Result<Vec<String>, HostError>,
    ) -> Result<(String, String), SchedError> {
        let endpoints = format!("--endpoints={}", self.endpoints);
        let mut unreachable = Vec::new();
        for host in &self.hosts {
            let attempt = args(host).and_then(|args| {
                let mut argv = vec![SCHEDCTL_PATH, endpoints.as_str()];
                argv.extend(args.iter().map(String::as_str));
                host.try_exec(&argv)
            });
            match attempt {
                Ok(exec) if exec.success() => {
                    return Ok((host.name().to_owned(), exec.stdout_text()))
                }
                Ok(exec) => {
                    return Err(SchedError::Refused {
                        request: request.to_owned(),
                        host: host.name().to_owned(),
                        stderr: String::from_utf8_lossy(&exec.stderr).trim().to_owned(),
                    })
                }
                Err(error) => unreachable.push(format!("{}: {error}", host.name())),
            }
        }
        Err(SchedError::NoHost(unreachable.join("; ")))
    }
}

/// Placements and waits in short, for timeouts.
fn summary(snapshot: &Snapshot) -> String {
    let placed: Vec<String> = snapshot
        .placed
        .iter()
        .map(|(instance, (machine, _))| {
            let phase = snapshot
                .states
                .get(instance)
                .map_or("placed".to_owned(), |state| format!("{:?}", state.phase));
            format!("{instance} on {machine} ({phase})")
        })
        .collect();
    let waiting: Vec<String> = snapshot
        .waiting
        .iter()
        .map(|(instance, why)| format!("{instance} waits: {why}"))
        .collect();
    format!(
        "machines [{}]; {}; {}",
        snapshot
            .machines
            .keys()
            .cloned()
            .collect::<Vec<_>>()
            .join(", "),
        placed.join(", "),
        waiting.join("; ")
    )
}

/// The deploy strategies drive a deployed scheduler through schedctl on its hosts.
impl Operator for Scheduler {
    fn start(&self, unit: &UnitSpec) -> Result<(), DeployError> {
        Scheduler::start(self, unit).map_err(deploy_error)
    }

    fn stop(&self, unit: &str) -> Result<(), DeployError> {
        Scheduler::stop(self, unit).map_err(deploy_error)
    }

    fn scale(&self, unit: &str, replicas: u32) -> Result<(), DeployError> {
        Scheduler::scale(self, unit, replicas).map_err(deploy_error)
    }

    fn route(&self, service: &str, versions: &[String]) -> Result<(), DeployError> {
        Scheduler::route(self, service, versions).map_err(deploy_error)
    }

    fn snapshot(&self) -> Result<Snapshot, DeployError> {
        Scheduler::snapshot(self).map_err(deploy_error)
    }
}

fn deploy_error(error: SchedError) -> DeployError {
    DeployError::Scheduler(error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxy_builds() -> Artifacts {
        let items = Arch::ALL
            .iter()
            .map(|arch| crate::Artifact {
                name: "sinew-proxy".into(),
                arch: *arch,
                path: "/store/sinew-proxy".into(),
                sha256: format!("{:064x}", *arch as u8),
                size: 1,
            })
            .collect();
        Artifacts::built(items)
    }

    #[test]
    fn a_proxy_unit_runs_its_listeners_and_checks_the_first_and_needs_one() {
        let listen: Vec<Listen> = ["0.0.0.0:8080=web/http", "0.0.0.0:6379=cache/tcp"]
            .iter()
            .map(|given| given.parse().unwrap())
            .collect();
        let unit = proxy_unit(
            "edge",
            &proxy_builds(),
            "http://10.0.0.1:2379",
            &listen,
            Duration::from_millis(1500),
        )
        .unwrap();
        assert_eq!(
            unit.args,
            [
                "--endpoints=http://10.0.0.1:2379",
                "--listen=0.0.0.0:8080=web/http",
                "--listen=0.0.0.0:6379=cache/tcp",
                "--drain-grace=1500ms",
            ]
        );
        assert_eq!(unit.health.unwrap().probe, Probe::Tcp { port: 8080 });
        assert_eq!(unit.exec.builds.len(), 2);

        let error = proxy_unit("edge", &proxy_builds(), "", &[], Duration::ZERO).unwrap_err();
        assert_eq!(
            error.to_string(),
            "unit edge: a proxy needs at least one listener"
        );
    }
}
