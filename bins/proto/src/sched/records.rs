//! What the scheduler keeps in the KV store, one JSON record per key (see [`super::keys`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::instance::InstanceId;
use super::unit::{Resources, UnitSpec};

/// A machine, as its agent registers it under its lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MachineRecord {
    /// Its name, unique in the cluster.
    pub id: String,
    /// Its architecture, as `uname -m` prints it.
    pub arch: String,
    /// Labels that units select on (`region = east`).
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// What units may use of it.
    pub capacity: Resources,
    /// The lease the agent keeps alive; the machine's assignments are written under it, so
    /// they end with it.
    pub lease: i64,
    /// The lease's time to live, in seconds.
    pub ttl_s: i64,
    /// Where its agent serves instance logs (`http://address:port`), if it does.
    #[serde(default)]
    pub journal: Option<String>,
    /// Where other machines reach it: the address its instances are registered at.
    #[serde(default)]
    pub address: Option<String>,
}

/// A submitted unit and whether it should run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnitRecord {
    /// The spec.
    pub spec: UnitSpec,
    /// What the operator asked for.
    pub target: Target,
}

/// fleet's target states, less `loaded`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// Submitted, not running (`submit`, `stop`).
    Inactive,
    /// Placed and running (`start`).
    Launched,
}

/// An instance placed on a machine, written by the engine under the machine's lease. The
/// key's creation revision is the assignment's fencing token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Assignment {
    /// The instance.
    pub instance: InstanceId,
    /// The machine.
    pub machine: String,
    /// The unit's spec when it was placed.
    pub spec: UnitSpec,
    /// [`UnitSpec::digest`] of it.
    pub spec_digest: String,
}

/// How an instance is doing, as its machine's agent reports it under the machine's lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceState {
    /// The instance.
    pub instance: InstanceId,
    /// The machine it is on.
    pub machine: String,
    /// The fencing token of the assignment it runs under.
    pub fencing_token: i64,
    /// Its phase.
    pub phase: Phase,
    /// Whether its last health check passed (without a check: whether it runs).
    pub healthy: bool,
    /// Restarts in a row so far.
    pub restarts: u32,
    /// Its process, while it runs.
    pub pid: Option<u32>,
    /// When the phase began, in milliseconds since the Unix epoch (the machine's clock).
    pub since_ms: u64,
}

/// Where an instance is in its life on a machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum Phase {
    /// Being checked and started.
    Starting,
    /// Running.
    Running,
    /// Exited with status 0 under restart policy `never`.
    Exited,
    /// Given up on: the reason says why.
    Failed {
        /// Why.
        reason: String,
    },
}

/// An instance that failed for good, kept without a lease so that it stays failed when its
/// machine is lost; `start` clears it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Failure {
    /// The instance.
    pub instance: InstanceId,
    /// The machine it failed on.
    pub machine: String,
    /// Why.
    pub reason: String,
}

/// A record as JSON, as it is stored; records are plain data, which always encodes.
pub fn to_json<T: Serialize>(record: &T) -> Vec<u8> {
    serde_json::to_vec(record).unwrap_or_default()
}
