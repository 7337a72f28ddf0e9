//! Facts about the agent's machine.

use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What the agent knows about its machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Facts {
    /// Host name.
    pub hostname: String,
    /// Machine architecture as `uname -m` prints it, e.g. `x86_64` or `aarch64`.
    pub arch: String,
    /// Kernel release as `uname -r` prints it.
    pub kernel_release: String,
    /// Time since boot.
    pub uptime: Duration,
    /// Number of CPUs the agent may run on.
    pub cpus: u32,
    /// Total memory in KiB (`MemTotal` of `/proc/meminfo`).
    pub mem_total_kib: u64,
    /// Memory available for new work in KiB (`MemAvailable` of `/proc/meminfo`).
    pub mem_available_kib: u64,
    /// Network interfaces, sorted by name.
    pub interfaces: Vec<NetInterface>,
    /// Version of the agent software.
    pub agent_version: String,
    /// The machine image it booted, if it booted one.
    #[serde(default)]
    pub image: Option<ImageLabel>,
}

/// A machine image as it names itself inside, in [`ImageLabel::PATH`]: an image cannot
/// hold its own digest, so the host matches the digest from what it served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageLabel {
    /// The image's name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// The architecture it was built for (`uname -m` form).
    pub arch: String,
}

impl ImageLabel {
    /// Where an image carries its label.
    pub const PATH: &'static str = "/etc/sinew/image.json";
}

/// One network interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetInterface {
    /// Interface name, e.g. `eth0`.
    pub name: String,
    /// Hardware address as `aa:bb:cc:dd:ee:ff`, if it has one.
    pub mac: Option<String>,
    /// Whether the interface is administratively up.
    pub up: bool,
    /// IPv4 and IPv6 addresses.
    pub addresses: Vec<InterfaceAddress>,
}

/// An address assigned to an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceAddress {
    /// The address.
    pub address: IpAddr,
    /// Length of the network prefix, e.g. 24.
    pub prefix_len: u8,
}
