//! Gathering facts about this machine.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use nix::ifaddrs::getifaddrs;
use nix::net::if_::InterfaceFlags;
use nix::sys::socket::SockaddrStorage;
use sinew_proto::mac::MacAddr;
use sinew_proto::{ErrorKind, Facts, ImageLabel, InterfaceAddress, NetInterface, RemoteError};
use thiserror::Error;

/// Why facts could not be gathered.
#[derive(Debug, Error)]
pub enum FactsError {
    /// A system call failed.
    #[error("cannot {action}: {source}")]
    System {
        /// What was being asked.
        action: &'static str,
        /// What the kernel said.
        source: nix::Error,
    },
    /// A file under /proc could not be read or parsed.
    #[error("cannot read {path}: {reason}")]
    Proc {
        /// The file.
        path: &'static str,
        /// What went wrong.
        reason: String,
    },
}

impl From<FactsError> for RemoteError {
    fn from(error: FactsError) -> Self {
        RemoteError::new(ErrorKind::Io, error.to_string())
    }
}

/// `uname -m` of this machine.
pub fn machine() -> Result<String, FactsError> {
    let uname = nix::sys::utsname::uname().map_err(|source| FactsError::System {
        action: "call uname",
        source,
    })?;
    Ok(uname.machine().to_string_lossy().into_owned())
}

/// Gathers every fact.
pub fn gather() -> Result<Facts, FactsError> {
    let uname = nix::sys::utsname::uname().map_err(|source| FactsError::System {
        action: "call uname",
        source,
    })?;
    let meminfo = read_proc("/proc/meminfo")?;
    Ok(Facts {
        hostname: uname.nodename().to_string_lossy().into_owned(),
        arch: uname.machine().to_string_lossy().into_owned(),
        kernel_release: uname.release().to_string_lossy().into_owned(),
        uptime: parse_uptime(&read_proc("/proc/uptime")?).ok_or_else(|| FactsError::Proc {
            path: "/proc/uptime",
            reason: "unexpected format".into(),
        })?,
        cpus: std::thread::available_parallelism()
            .map_or(1, |n| u32::try_from(n.get()).unwrap_or(u32::MAX)),
        mem_total_kib: meminfo_kib(&meminfo, "MemTotal").unwrap_or(0),
        mem_available_kib: meminfo_kib(&meminfo, "MemAvailable").unwrap_or(0),
        interfaces: interfaces()?,
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
        image: image_label(),
    })
}

/// The label of the machine image this guest booted; none when it booted none, or when the
/// label does not parse (said in the log: facts still answer).
fn image_label() -> Option<ImageLabel> {
    let text = std::fs::read(ImageLabel::PATH).ok()?;
    serde_json::from_slice(&text)
        .inspect_err(
            |error| tracing::warn!(path = ImageLabel::PATH, %error, "unreadable image label"),
        )
        .ok()
}

fn read_proc(path: &'static str) -> Result<String, FactsError> {
    std::fs::read_to_string(path).map_err(|error| FactsError::Proc {
        path,
        reason: error.to_string(),
    })
}

/// The first field of `/proc/uptime`: seconds since boot, with hundredths.
fn parse_uptime(text: &str) -> Option<Duration> {
    let seconds: f64 = text.split_whitespace().next()?.parse().ok()?;
    Duration::try_from_secs_f64(seconds).ok()
}

/// A `Name:   1234 kB` line of `/proc/meminfo`.
fn meminfo_kib(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let value = line.strip_prefix(name)?.strip_prefix(':')?;
        value.split_whitespace().next()?.parse().ok()
    })
}

fn interfaces() -> Result<Vec<NetInterface>, FactsError> {
    let entries = getifaddrs().map_err(|source| FactsError::System {
        action: "list network interfaces",
        source,
    })?;
    let mut interfaces: BTreeMap<String, NetInterface> = BTreeMap::new();
    for entry in entries {
        let interface = interfaces
            .entry(entry.interface_name.clone())
            .or_insert_with(|| NetInterface {
                name: entry.interface_name.clone(),
                mac: None,
                up: false,
                addresses: Vec::new(),
            });
        interface.up |= entry.flags.contains(InterfaceFlags::IFF_UP);
        let Some(address) = entry.address else {
            continue;
        };
        if let Some(link) = address.as_link_addr() {
            // Loopback and tunnels report an all-zero or empty hardware address.
            if let Some(mac) = link.addr().filter(|mac| mac.iter().any(|&byte| byte != 0)) {
                interface.mac = Some(MacAddr(mac).to_string());
            }
        } else if let Some(ip) = ip_of(&address) {
            let prefix_len = entry
                .netmask
                .as_ref()
                .and_then(ip_of)
                .map_or(0, prefix_len_of);
            interface.addresses.push(InterfaceAddress {
                address: ip,
                prefix_len,
            });
        }
    }
    Ok(interfaces.into_values().collect())
}

fn ip_of(address: &SockaddrStorage) -> Option<IpAddr> {
    if let Some(v4) = address.as_sockaddr_in() {
        Some(IpAddr::V4(v4.ip()))
    } else {
        address.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
    }
}

fn prefix_len_of(netmask: IpAddr) -> u8 {
    let ones = match netmask {
        IpAddr::V4(mask) => u32::from(mask).leading_ones(),
        IpAddr::V6(mask) => u128::from(mask).leading_ones(),
    };
    u8::try_from(ones).unwrap_or(u8::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_files() {
        assert_eq!(
            parse_uptime("12.34 40.00\n"),
            Some(Duration::from_millis(12340))
        );
        assert_eq!(parse_uptime(""), None);
        let meminfo =
            "MemTotal:        2030036 kB\nMemFree:  100 kB\nMemAvailable:    1795780 kB\n";
        assert_eq!(meminfo_kib(meminfo, "MemTotal"), Some(2_030_036));
        assert_eq!(meminfo_kib(meminfo, "MemAvailable"), Some(1_795_780));
        assert_eq!(meminfo_kib(meminfo, "Mem"), None);
    }

    #[test]
    fn prefix_lengths() {
        assert_eq!(prefix_len_of("255.255.255.0".parse().unwrap()), 24);
        assert_eq!(prefix_len_of("ffff:ffff:ffff:ffff::".parse().unwrap()), 64);
    }

    #[test]
    fn loopback_is_listed() {
        let facts = gather().unwrap();
        let lo = facts.interfaces.iter().find(|i| i.name == "lo").unwrap();
        assert!(lo
            .addresses
            .iter()
            .any(|a| a.address.is_loopback() && a.prefix_len == 8));
    }
}
