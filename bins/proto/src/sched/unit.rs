//! A unit: what to run, how to keep it running, how to tell it is healthy, and where it may
//! run (fleet's unit with its `[X-Fleet]` section, as one typed spec). Read from TOML or
//! JSON; an unknown field, a constraint fleet or sinew does not know included, is an error
//! that names it.
//!
//! ```
//! use sinew_proto::sched::unit::UnitSpec;
//!
//! let unit = UnitSpec::from_toml(r#"
//!     name = "echo"
//!     args = ["--port", "7000"]
//!     [exec]
//!     kind = "binary"
//!     builds = [{ arch = "x86_64", path = "/opt/echo", sha256 = "aa00000000000000000000000000000000000000000000000000000000000000" }]
//!     [placement]
//!     replicas = 2
//!     conflicts = ["db*"]
//! "#, "echo.toml")?;
//! assert_eq!(unit.placement.replicas, 2);
//! # Ok::<(), sinew_proto::sched::unit::SpecError>(())
//! ```

use std::collections::BTreeMap;
use std::fmt;

pub use crate::names::{check_name, MAX_NAME};
pub use crate::RestartPolicy;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use thiserror::Error;

/// Why a unit spec was refused. Every variant names the unit (or the file) and the field.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SpecError {
    /// The text is not a spec: bad syntax, a missing field, an unknown field or constraint.
    #[error("{source_name}: {reason}")]
    Parse {
        /// The file or other source the text came from.
        source_name: String,
        /// The parser's message (it names the field and what it expected).
        reason: String,
    },
    /// A field holds a value the scheduler cannot use.
    #[error("unit {unit}: {field}: {reason}")]
    Invalid {
        /// The unit's name, as given.
        unit: String,
        /// The field, as written in the spec (`placement.replicas`).
        field: &'static str,
        /// What was expected.
        reason: String,
    },
}

/// A unit as submitted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnitSpec {
    /// The unit's name: letters, digits, `-`, `_` and `.`; instances are `name@slot`.
    pub name: String,
    /// What runs.
    pub exec: Exec,
    /// Arguments after the program.
    #[serde(default)]
    pub args: Vec<String>,
    /// Environment variables (twelve-factor configuration); the agent adds
    /// `SINEW_UNIT`, `SINEW_INSTANCE`, `SINEW_MACHINE` and `SINEW_FENCING_TOKEN`.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// When the agent runs it again after it exits.
    #[serde(default)]
    pub restart: Restart,
    /// What one instance needs of a machine.
    #[serde(default)]
    pub resources: Resources,
    /// How the agent tells an instance is healthy; without one, running is healthy.
    #[serde(default)]
    pub health: Option<HealthCheck>,
    /// Where instances may run, and how many.
    #[serde(default)]
    pub placement: Placement,
    /// Registers healthy instances as a service, for proxies and clients to find
    /// ([`crate::discovery`]).
    #[serde(default)]
    pub register: Option<Register>,
}

/// How a unit's instances are registered as a service while they run and pass their
/// health check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Register {
    /// The service's name.
    pub service: String,
    /// The port an instance listens on, on its machine.
    pub port: u16,
    /// The version, which the service's routing selects on; empty when unversioned.
    #[serde(default)]
    pub version: String,
    /// Anything else a client may select on.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

/// What a unit runs: a static binary or a signed container image, one build per
/// architecture. A machine can run the unit only if there is a build for its architecture.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exec {
    /// Binary or container.
    pub kind: ExecKind,
    /// The builds, at most one per architecture.
    pub builds: Vec<Build>,
}

/// How a build is started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecKind {
    /// The build is a static executable, run as it is.
    Binary,
    /// The build is a signed OCI archive, run through `sinew-run`, which verifies it.
    Container,
}

/// One architecture's build, already on the machines of that architecture (the SDK installs
/// it); the agent checks its digest before every start and refuses a file that differs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Build {
    /// The architecture, as `uname -m` prints it.
    pub arch: String,
    /// Where the file is on the machine.
    pub path: String,
    /// Its SHA-256, in hex.
    pub sha256: String,
}

/// When an instance that exited is started again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Restart {
    /// The policy, as for the agent's services (a failed health check counts as a failure).
    pub policy: RestartPolicy,
    /// How many restarts in a row (without a run of 10 s in between, the agent's back-off
    /// reset) before the instance is failed for good; 0 for no limit.
    #[serde(default = "Restart::default_max")]
    pub max_restarts: u32,
}

impl Restart {
    fn default_max() -> u32 {
        5
    }
}

impl Default for Restart {
    fn default() -> Self {
        Self {
            policy: RestartPolicy::OnFailure,
            max_restarts: Self::default_max(),
        }
    }
}

/// What an instance needs, or what a machine offers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// Memory, in MiB.
    #[serde(default)]
    pub memory_mb: u64,
    /// CPU, in thousandths of a CPU (`500` is half a CPU).
    #[serde(default)]
    pub cpu_millis: u64,
}

impl Resources {
    /// Whether `self` fits in `free`.
    pub fn fits_in(&self, free: &Resources) -> bool {
        self.memory_mb <= free.memory_mb && self.cpu_millis <= free.cpu_millis
    }

    /// What is left of `self` after `used`, never below zero.
    pub fn minus(&self, used: &Resources) -> Resources {
        Resources {
            memory_mb: self.memory_mb.saturating_sub(used.memory_mb),
            cpu_millis: self.cpu_millis.saturating_sub(used.cpu_millis),
        }
    }

    /// `self` and `other` together.
    pub fn plus(&self, other: &Resources) -> Resources {
        Resources {
            memory_mb: self.memory_mb.saturating_add(other.memory_mb),
            cpu_millis: self.cpu_millis.saturating_add(other.cpu_millis),
        }
    }
}

/// How the agent checks an instance, every `interval_ms` once it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    /// The probe.
    pub probe: Probe,
    /// Between checks.
    #[serde(default = "HealthCheck::default_interval")]
    pub interval_ms: u64,
    /// How long one check may take.
    #[serde(default = "HealthCheck::default_timeout")]
    pub timeout_ms: u64,
    /// Failed checks in a row, after one passed, that count as the instance failing: it is
    /// stopped, and started again as its restart policy says.
    #[serde(default = "HealthCheck::default_failures")]
    pub failures: u32,
    /// How long a starting instance has to pass its first check; not passing by then is
    /// failing.
    #[serde(default = "HealthCheck::default_start_period")]
    pub start_period_ms: u64,
}

impl HealthCheck {
    /// `probe` with the defaults a spec file gets when it names only the probe.
    pub fn new(probe: Probe) -> Self {
        Self {
            probe,
            interval_ms: Self::default_interval(),
            timeout_ms: Self::default_timeout(),
            failures: Self::default_failures(),
            start_period_ms: Self::default_start_period(),
        }
    }

    fn default_interval() -> u64 {
        250
    }

    fn default_timeout() -> u64 {
        1000
    }

    fn default_failures() -> u32 {
        3
    }

    fn default_start_period() -> u64 {
        30_000
    }
}

/// What a health check does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Probe {
    /// Runs a command on the machine; exit status 0 is healthy.
    Command {
        /// The program and its arguments.
        argv: Vec<String>,
    },
    /// Connects to a TCP port on the machine's loopback.
    Tcp {
        /// The port.
        port: u16,
    },
    /// Sends `GET path` to a port on the machine's loopback; a 2xx answer is healthy.
    Http {
        /// The port.
        port: u16,
        /// The path, `/` if not given.
        #[serde(default = "Probe::default_path")]
        path: String,
    },
}

impl Probe {
    fn default_path() -> String {
        "/".to_owned()
    }
}

/// fleet's placement rules, with a replica count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Placement {
    /// Only machines of this architecture (besides the builds' own limit).
    #[serde(default)]
    pub arch: Option<String>,
    /// Only machines whose metadata has, for every key here, one of the listed values
    /// (fleet's `MachineMetadata`).
    #[serde(default)]
    pub metadata: BTreeMap<String, Vec<String>>,
    /// Only the machine that runs this unit (fleet's `MachineOf`): instance `i` goes next to
    /// that unit's instance `i`, or next to its only instance.
    #[serde(default)]
    pub machine_of: Option<String>,
    /// Never on a machine with an instance whose unit or instance name matches one of these
    /// globs (fleet's `Conflicts`); the rule holds both ways.
    #[serde(default)]
    pub conflicts: Vec<String>,
    /// One instance on every machine that the other rules allow (fleet's `Global`);
    /// `replicas` must then be left out.
    #[serde(default)]
    pub global: bool,
    /// How many instances; 0 keeps the unit submitted with none running.
    #[serde(default = "Placement::default_replicas")]
    pub replicas: u32,
}

impl Placement {
    fn default_replicas() -> u32 {
        1
    }
}

impl Default for Placement {
    fn default() -> Self {
        Self {
            arch: None,
            metadata: BTreeMap::new(),
            machine_of: None,
            conflicts: Vec::new(),
            global: false,
            replicas: Self::default_replicas(),
        }
    }
}

impl UnitSpec {
    /// A unit named `name` running `exec` once per slot, with no arguments, environment,
    /// health check or placement rules, restarted as [`Restart`]'s default says.
    pub fn new(name: impl Into<String>, exec: Exec) -> Self {
        Self {
            name: name.into(),
            exec,
            args: Vec::new(),
            env: BTreeMap::new(),
            restart: Restart::default(),
            resources: Resources::default(),
            health: None,
            placement: Placement::default(),
            register: None,
        }
    }

    /// Reads and checks a spec written in TOML; `source_name` names it in errors.
    pub fn from_toml(text: &str, source_name: &str) -> Result<Self, SpecError> {
        let spec: Self = toml::from_str(text).map_err(|error| SpecError::Parse {
            source_name: source_name.to_owned(),
            reason: error.message().to_owned()
                + &error
                    .span()
                    .map(|span| format!(" (at byte {})", span.start))
                    .unwrap_or_default(),
        })?;
        spec.check()?;
        Ok(spec)
    }

    /// Reads and checks a spec written in JSON; `source_name` names it in errors.
    pub fn from_json(text: &str, source_name: &str) -> Result<Self, SpecError> {
        let spec: Self = serde_json::from_str(text).map_err(|error| SpecError::Parse {
            source_name: source_name.to_owned(),
            reason: error.to_string(),
        })?;
        spec.check()?;
        Ok(spec)
    }

    /// Reads a spec from a file's text, as TOML unless its name ends in `.json`.
    pub fn from_file_text(text: &str, file_name: &str) -> Result<Self, SpecError> {
        if file_name.ends_with(".json") {
            Self::from_json(text, file_name)
        } else {
            Self::from_toml(text, file_name)
        }
    }

    /// Checks what the types cannot: names, digests, paths, and rules that contradict each
    /// other.
    pub fn check(&self) -> Result<(), SpecError> {
        let invalid = |field, reason: String| SpecError::Invalid {
            unit: self.name.clone(),
            field,
            reason,
        };
        check_name(&self.name).map_err(|reason| invalid("name", reason))?;
        if self.exec.builds.is_empty() {
            return Err(invalid(
                "exec.builds",
                "at least one build is needed".into(),
            ));
        }
        for (index, build) in self.exec.builds.iter().enumerate() {
            if build.arch.is_empty() {
                return Err(invalid(
                    "exec.builds.arch",
                    "an architecture is needed".into(),
                ));
            }
            if self.exec.builds[..index]
                .iter()
                .any(|earlier| earlier.arch == build.arch)
            {
                return Err(invalid(
                    "exec.builds.arch",
                    format!("two builds for {}", build.arch),
                ));
            }
            if !build.path.starts_with('/') {
                return Err(invalid(
                    "exec.builds.path",
                    format!("{:?} is not an absolute path", build.path),
                ));
            }
            if build.sha256.len() != 64 || hex::decode(&build.sha256).is_err() {
                return Err(invalid(
                    "exec.builds.sha256",
                    format!("{:?} is not 64 hex digits", build.sha256),
                ));
            }
        }
        for key in self.env.keys() {
            if key.is_empty() || key.contains(['=', '\0']) {
                return Err(invalid("env", format!("{key:?} is not a variable name")));
            }
            if key.starts_with("SINEW_") {
                return Err(invalid(
                    "env",
                    format!("{key} is set by the agent (names starting SINEW_ are its own)"),
                ));
            }
        }
        if let Some(register) = &self.register {
            check_name(&register.service).map_err(|reason| invalid("register.service", reason))?;
            if register.port == 0 {
                return Err(invalid("register.port", "must be above 0".into()));
            }
            if !register.version.is_empty() {
                check_name(&register.version)
                    .map_err(|reason| invalid("register.version", reason))?;
            }
        }
        if let Some(health) = &self.health {
            if health.interval_ms == 0 || health.timeout_ms == 0 || health.failures == 0 {
                return Err(invalid(
                    "health",
                    "interval_ms, timeout_ms and failures must be above 0".into(),
                ));
            }
            if let Probe::Command { argv } = &health.probe {
                if argv.is_empty() {
                    return Err(invalid("health.probe.argv", "a program is needed".into()));
                }
            }
        }
        let placement = &self.placement;
        if let Some(arch) = &placement.arch {
            if !self.exec.builds.iter().any(|build| &build.arch == arch) {
                return Err(invalid(
                    "placement.arch",
                    format!(
                        "{arch}, but the unit has builds only for {}",
                        self.build_archs()
                    ),
                ));
            }
        }
        if placement.global && placement.replicas != 1 {
            return Err(invalid(
                "placement.replicas",
                "a global unit runs once per machine; leave replicas out".into(),
            ));
        }
        if placement.machine_of.as_deref() == Some(&self.name) {
            return Err(invalid(
                "placement.machine_of",
                "a unit cannot be placed next to itself".into(),
            ));
        }
        if let Some(other) = &placement.machine_of {
            check_name(other).map_err(|reason| invalid("placement.machine_of", reason))?;
        }
        for glob in &placement.conflicts {
            glob::Pattern::new(glob)
                .map_err(|error| invalid("placement.conflicts", format!("{glob:?}: {error}")))?;
        }
        for (key, values) in &placement.metadata {
            if values.is_empty() {
                return Err(invalid(
                    "placement.metadata",
                    format!("{key} lists no values"),
                ));
            }
        }
        Ok(())
    }

    /// The build for machines of `arch`, if there is one.
    pub fn build_for(&self, arch: &str) -> Option<&Build> {
        self.exec.builds.iter().find(|build| build.arch == arch)
    }

    /// The builds' architectures, for messages: `x86_64, aarch64`.
    pub fn build_archs(&self) -> String {
        self.exec
            .builds
            .iter()
            .map(|build| build.arch.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// A digest of the spec but its replica count: an assignment records it, so a changed
    /// spec is noticed and its instances started again, while scaling leaves the instances
    /// that stay alone.
    pub fn digest(&self) -> String {
        let mut unscaled = self.clone();
        unscaled.placement.replicas = 0;
        let encoded = serde_json::to_vec(&unscaled).unwrap_or_default();
        hex::encode(Sha256::digest(encoded))
    }

    /// Whether `glob`-matching names this unit's instance `instance` (its unit name or its
    /// instance name).
    pub fn conflicts_with(&self, instance: &super::instance::InstanceId) -> bool {
        self.placement.conflicts.iter().any(|glob| {
            glob::Pattern::new(glob).is_ok_and(|pattern| {
                pattern.matches(&instance.unit) || pattern.matches(&instance.to_string())
            })
        })
    }
}

impl fmt::Display for ExecKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Binary => "binary",
            Self::Container => "container",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "aa00000000000000000000000000000000000000000000000000000000000000";

    fn toml(extra: &str) -> String {
        format!(
            "name = \"web\"\n{extra}\n[exec]\nkind = \"binary\"\nbuilds = [{{ arch = \"x86_64\", path = \"/opt/web\", sha256 = \"{DIGEST}\" }}]\n"
        )
    }

    fn refusal(text: &str) -> String {
        UnitSpec::from_toml(text, "web.toml")
            .expect_err("the spec is refused")
            .to_string()
    }

    #[test]
    fn a_minimal_spec_takes_the_defaults() {
        let unit = UnitSpec::from_toml(&toml(""), "web.toml").unwrap();
        assert_eq!(unit.placement, Placement::default());
        assert_eq!(unit.placement.replicas, 1);
        assert_eq!(unit.restart, Restart::default());
        assert_eq!(unit.health, None);
        assert_eq!(
            unit.build_for("x86_64").map(|b| b.path.as_str()),
            Some("/opt/web")
        );
        assert_eq!(unit.build_for("aarch64"), None);
    }

    #[test]
    fn every_section_reads_from_toml_and_json_alike() {
        let text = format!(
            "{}\n[restart]\npolicy = \"always\"\nmax_restarts = 0\n[resources]\nmemory_mb = 64\ncpu_millis = 250\n[health]\nprobe = {{ kind = \"http\", port = 8080, path = \"/healthz\" }}\ninterval_ms = 100\n[placement]\narch = \"x86_64\"\nmetadata = {{ region = [\"east\", \"west\"] }}\nmachine_of = \"db\"\nconflicts = [\"web*\"]\nreplicas = 3\n[register]\nservice = \"web\"\nport = 8080\nversion = \"2\"\nmetadata = {{ tier = \"front\" }}\n",
            toml("args = [\"--port\", \"8080\"]\nenv = { MODE = \"prod\" }")
        );
        let unit = UnitSpec::from_toml(&text, "web.toml").unwrap();
        assert_eq!(unit.restart.policy, RestartPolicy::Always);
        assert_eq!(unit.resources.memory_mb, 64);
        let health = unit.health.clone().unwrap();
        assert_eq!(
            health.probe,
            Probe::Http {
                port: 8080,
                path: "/healthz".into()
            }
        );
        assert_eq!(
            (health.interval_ms, health.timeout_ms, health.failures),
            (100, 1000, 3)
        );
        assert_eq!(unit.placement.machine_of.as_deref(), Some("db"));
        assert_eq!(unit.env["MODE"], "prod");
        let register = unit.register.clone().unwrap();
        assert_eq!(
            (
                register.service.as_str(),
                register.port,
                register.version.as_str()
            ),
            ("web", 8080, "2")
        );
        assert_eq!(register.metadata["tier"], "front");
        let json = serde_json::to_string(&unit).unwrap();
        assert_eq!(UnitSpec::from_json(&json, "web.json").unwrap(), unit);
        assert_eq!(UnitSpec::from_file_text(&json, "web.json").unwrap(), unit);
    }

    #[test]
    fn an_unknown_constraint_is_refused_by_name() {
        let message = refusal(&toml("[placement]\nzone = \"a\""));
        assert!(message.starts_with("web.toml: "), "{message}");
        assert!(message.contains("unknown field `zone`"), "{message}");
        assert!(message.contains("machine_of"), "{message}");
    }

    #[test]
    fn contradictions_and_bad_values_are_refused_naming_the_field() {
        for (extra, field, reason) in [
            (
                "[placement]\nglobal = true\nreplicas = 3",
                "placement.replicas",
                "global",
            ),
            (
                "[placement]\narch = \"riscv64\"",
                "placement.arch",
                "builds only for x86_64",
            ),
            (
                "[placement]\nmachine_of = \"web\"",
                "placement.machine_of",
                "itself",
            ),
            (
                "[placement]\nconflicts = [\"[a\"]",
                "placement.conflicts",
                "\"[a\"",
            ),
            (
                "[placement]\nmetadata = { region = [] }",
                "placement.metadata",
                "region",
            ),
            ("env = { SINEW_UNIT = \"x\" }", "env", "set by the agent"),
            (
                "[health]\nprobe = { kind = \"command\", argv = [] }",
                "health.probe.argv",
                "program",
            ),
            (
                "[register]\nservice = \"web\"\nport = 0",
                "register.port",
                "above 0",
            ),
            (
                "[register]\nservice = \"w b\"\nport = 80",
                "register.service",
                "letters",
            ),
            (
                "[register]\nservice = \"web\"\nport = 80\nversion = \"v/2\"",
                "register.version",
                "letters",
            ),
        ] {
            let message = refusal(&toml(extra));
            assert!(
                message.starts_with(&format!("unit web: {field}: ")) && message.contains(reason),
                "{extra}: {message}"
            );
        }
    }

    #[test]
    fn names_digests_and_paths_are_checked() {
        let bad_name = refusal(&toml("").replace("\"web\"", "\"web@1\""));
        assert!(bad_name.contains("unit web@1: name:"), "{bad_name}");
        let bad_digest = refusal(&toml("").replace(DIGEST, "abc"));
        assert!(bad_digest.contains("exec.builds.sha256"), "{bad_digest}");
        let relative = refusal(&toml("").replace("/opt/web", "opt/web"));
        assert!(relative.contains("not an absolute path"), "{relative}");
        let unknown_kind = refusal(&toml("").replace("\"binary\"", "\"vm\""));
        assert!(
            unknown_kind.contains("unknown variant `vm`"),
            "{unknown_kind}"
        );
    }

    #[test]
    fn the_digest_changes_with_any_field_but_the_replica_count() {
        let unit = UnitSpec::from_toml(&toml(""), "web.toml").unwrap();
        let mut changed = unit.clone();
        changed.args.push("-v".into());
        let mut scaled = unit.clone();
        scaled.placement.replicas = 7;
        assert_eq!(unit.digest(), scaled.digest());
        assert_ne!(unit.digest(), changed.digest());
    }
}
