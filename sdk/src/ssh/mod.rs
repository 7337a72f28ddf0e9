//! Existing machines over SSH: an [`Inventory`] of them, and [`Run::connect`], which gives
//! the same [`Host`] handles a lab gives, each on one SSH connection (russh, in process)
//! with its host key checked against OpenSSH's `known_hosts`.
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! let run = sinew::Run::from_args("uptime")?;
//! let inventory = sinew::ssh::Inventory::from_file("hosts.toml".as_ref())?;
//! let hosts = run.connect(&inventory);
//! run.each(&hosts, "uptime", |host| host.exec(&["uptime"]))?;
//! run.finish()?;
//! # Ok(()) }
//! ```

mod agent;
mod commands;
mod connection;
mod inventory;
mod known_hosts;

use std::path::PathBuf;

pub(crate) use agent::RemoteAgent;
pub(crate) use commands::{Sudo, Written};
pub(crate) use connection::{Connection, Trust};
pub use inventory::{HostKeyPolicy, Inventory, InventoryError, RemoteHost, SshTarget};
pub use known_hosts::KnownHostsError;

use crate::host::Host;
use crate::outcome::TaskFailed;
use crate::run::Run;

/// Errors of an SSH connection or of what runs over it.
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    /// The server could not be reached, or the SSH handshake failed.
    #[error("connecting to {target}: {message}")]
    Connect {
        /// `user@address:port`.
        target: String,
        /// What went wrong.
        message: String,
    },
    /// The host's key is in no `known_hosts` file and trust on first use is off.
    #[error(
        "{name} presented host key {presented}, which {known_hosts} does not know: check it \
         and add it (ssh-keyscan), or set trust_on_first_use for this host"
    )]
    UnknownHost {
        /// The host as `known_hosts` names it.
        name: String,
        /// The key's type and fingerprint.
        presented: String,
        /// The file that was checked.
        known_hosts: PathBuf,
    },
    /// The host presented a key other than the one recorded: refused, always.
    #[error(
        "HOST KEY CHANGED for {name}: it presented {presented}, but known_hosts records {}; \
         refusing to connect (if the machine was rebuilt, remove the old line)",
        recorded.join(", ")
    )]
    HostKeyChanged {
        /// The host as `known_hosts` names it.
        name: String,
        /// The presented key's type and fingerprint.
        presented: String,
        /// The recorded keys, as `file:line TYPE fingerprint`.
        recorded: Vec<String>,
    },
    /// The host presented a key marked `@revoked`.
    #[error("{name} presented host key {presented}, which is revoked at {at}")]
    HostKeyRevoked {
        /// The host as `known_hosts` names it.
        name: String,
        /// The key's type and fingerprint.
        presented: String,
        /// `file:line` of the `@revoked` line.
        at: String,
    },
    /// A `known_hosts` file could not be read or written.
    #[error(transparent)]
    KnownHosts(#[from] KnownHostsError),
    /// A private key file could not be used.
    #[error("private key {path}: {message}")]
    Key {
        /// The key file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// The server accepted none of the keys.
    #[error("{target} refused every key offered ({})", if tried.is_empty() { "none found: no key in the inventory, no ssh-agent, no ~/.ssh/id_*".to_string() } else { tried.join(", ") })]
    LoginRefused {
        /// `user@address:port`.
        target: String,
        /// The keys tried.
        tried: Vec<String>,
    },
    /// The server would not do what was asked (open a channel, run a command).
    #[error("{0}")]
    Refused(String),
    /// The connection ended while this was going on.
    #[error("connection lost: {0}")]
    Lost(String),
    /// Sudo would not run a command as another user.
    #[error("sudo -u {user} {command}: {message}")]
    Sudo {
        /// The user to become.
        user: String,
        /// The command.
        command: String,
        /// Why: no password, a refused one, sudo's own error.
        message: String,
    },
    /// A remote step failed.
    #[error("{what}: {message}")]
    Remote {
        /// The step, e.g. `writing /etc/motd`.
        what: String,
        /// How it failed, with the tail of its stderr.
        message: String,
    },
    /// The machine is of an architecture sinew builds nothing for.
    #[error("its machine is {0} (uname -m), but sinew builds for x86_64 and aarch64 only")]
    Machine(String),
}

impl SshError {
    fn channel(error: russh::Error) -> Self {
        match error {
            russh::Error::Disconnect | russh::Error::SendError | russh::Error::RecvError => {
                SshError::Lost(error.to_string())
            }
            other => SshError::Refused(format!("opening a channel: {other}")),
        }
    }

    /// True when the connection is gone (the host went away), not a refusal.
    pub fn is_connection_lost(&self) -> bool {
        matches!(self, SshError::Lost(_))
    }
}

impl std::fmt::Display for RemoteHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

impl Run {
    /// Reads the inventory given with `-i FILE` (or `SINEW_INVENTORY`).
    pub fn inventory(&self) -> Result<Inventory, InventoryError> {
        match &self.ctx().options.inventory {
            Some(path) => Inventory::from_file(path),
            None => Err(InventoryError::Missing),
        }
    }

    /// Connects to every host of `inventory` at once (at most `--forks` at a time), one
    /// task line each, and returns the hosts that answered, in the inventory's order. A
    /// host that could not be reached or refused is a failed line naming the cause; the
    /// others carry on, and the run fails at its end.
    pub fn connect(&self, inventory: &Inventory) -> Vec<Host> {
        self.connect_each(inventory)
            .into_iter()
            .filter_map(Result::ok)
            .collect()
    }

    /// Like [`Run::connect`], returning every host's result in the inventory's order.
    pub fn connect_each(&self, inventory: &Inventory) -> Vec<Result<Host, TaskFailed>> {
        let ctx = self.ctx().clone();
        self.each_result(inventory.hosts(), "connect", |remote| {
            Host::connect(ctx.clone(), remote.clone())
        })
    }
}
