//! flannel's `subnet.env`, the file container runtimes read to join the overlay:
//!
//! ```text
//! FLANNEL_NETWORK=10.5.0.0/16
//! FLANNEL_SUBNET=10.5.3.1/24
//! FLANNEL_MTU=1450
//! FLANNEL_IPMASQ=false
//! ```
//!
//! It is replaced atomically (temporary file, fsync, rename), so a reader never sees half
//! a file.

use std::io::Write;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::ipv4net::Ipv4Net;

/// Writing `subnet.env` failed.
#[derive(Debug, Error)]
#[error("writing {path}")]
pub struct SubnetEnvError {
    /// The file.
    pub path: PathBuf,
    /// The OS error.
    #[source]
    pub source: std::io::Error,
}

/// What `subnet.env` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubnetEnv {
    /// The cluster network.
    pub network: Ipv4Net,
    /// This host's subnet.
    pub subnet: Ipv4Net,
    /// The MTU of the overlay.
    pub mtu: u32,
    /// Whether the daemon masquerades traffic leaving the overlay (overlayd does not).
    pub ip_masq: bool,
}

impl SubnetEnv {
    /// The file's text; the subnet is given as its first host address, the bridge's.
    pub fn render(&self) -> String {
        let gateway = self.subnet.host(1).unwrap_or(self.subnet.network());
        format!(
            "FLANNEL_NETWORK={}\nFLANNEL_SUBNET={}/{}\nFLANNEL_MTU={}\nFLANNEL_IPMASQ={}\n",
            self.network,
            gateway,
            self.subnet.prefix_len(),
            self.mtu,
            self.ip_masq
        )
    }

    /// Replaces `path` with this content atomically, creating its directory if needed.
    pub fn write(&self, path: &Path) -> Result<(), SubnetEnvError> {
        let fail = |source| SubnetEnvError {
            path: path.to_owned(),
            source,
        };
        let dir = path
            .parent()
            .filter(|dir| !dir.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(fail)?;
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let temporary = dir.join(format!(".{name}.{}.tmp", std::process::id()));
        let mut file = std::fs::File::create(&temporary).map_err(fail)?;
        file.write_all(self.render().as_bytes()).map_err(fail)?;
        file.sync_all().map_err(fail)?;
        drop(file);
        std::fs::rename(&temporary, path).map_err(fail)?;
        std::fs::File::open(dir)
            .and_then(|dir| dir.sync_all())
            .map_err(fail)
    }
}

/// The subnet an existing `subnet.env` names, if the file exists and names one.
pub fn read_subnet(path: &Path) -> Option<Ipv4Net> {
    let text = std::fs::read_to_string(path).ok()?;
    let value = text
        .lines()
        .find_map(|line| line.trim().strip_prefix("FLANNEL_SUBNET="))?;
    let (address, prefix_len) = value.trim().trim_matches('"').split_once('/')?;
    Ipv4Net::new(address.parse().ok()?, prefix_len.parse().ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> SubnetEnv {
        SubnetEnv {
            network: "10.5.0.0/16".parse().expect("a network"),
            subnet: "10.5.3.0/24".parse().expect("a network"),
            mtu: 1450,
            ip_masq: false,
        }
    }

    #[test]
    fn renders_flannels_format() {
        assert_eq!(
            env().render(),
            "FLANNEL_NETWORK=10.5.0.0/16\nFLANNEL_SUBNET=10.5.3.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n"
        );
    }

    #[test]
    fn writes_atomically_and_reads_back_the_subnet() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("run/flannel/subnet.env");
        assert_eq!(read_subnet(&path), None);
        env().write(&path).expect("written");
        assert_eq!(
            std::fs::read_to_string(&path).expect("readable"),
            env().render()
        );
        assert_eq!(read_subnet(&path), Some(env().subnet));
        let moved = SubnetEnv {
            subnet: "10.5.4.0/24".parse().expect("a network"),
            ..env()
        };
        moved.write(&path).expect("rewritten");
        assert_eq!(read_subnet(&path), Some(moved.subnet));
        let leftovers: Vec<_> = std::fs::read_dir(path.parent().expect("a parent"))
            .expect("listable")
            .collect();
        assert_eq!(leftovers.len(), 1, "only subnet.env remains: {leftovers:?}");
    }
}
