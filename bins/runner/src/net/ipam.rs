//! Address allocation on the overlay bridge: one lease file per address under
//! `<dir>/net/<bridge>/`, taken under an exclusive lock, removed on exit. A lease whose
//! container no longer has a live supervisor is stale and handed out again.

use std::fs::{File, OpenOptions};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use sinew_proto::overlay::SubnetEnv;

use crate::container::state::ContainerDir;

/// Allocation failed.
#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    /// The lease directory or lock could not be used.
    #[error("{what} {path}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Every address is leased to a running container.
    #[error("no free address left in {0}")]
    Exhausted(String),
    /// The subnet's prefix length is outside 8 to 30: too many addresses to go through,
    /// or none besides the bridge's.
    #[error("subnet {0} has no room for containers: its prefix length must be 8 to 30")]
    Unusable(String),
}

/// An address leased to one container until released.
#[derive(Debug)]
pub struct Lease {
    /// The address.
    pub address: Ipv4Addr,
    file: PathBuf,
}

impl Lease {
    /// Gives the address back.
    pub fn release(self) {
        // A lease file that is already gone has nothing left to release.
        let _ = std::fs::remove_file(&self.file);
    }
}

/// Leases the first free address of `subnet` on `bridge` to container `id`.
pub fn allocate(
    state_dir: &Path,
    bridge: &str,
    subnet: &SubnetEnv,
    id: &str,
) -> Result<Lease, IpamError> {
    let name = || format!("{}/{}", subnet.gateway, subnet.prefix_len);
    if !(8..=30).contains(&subnet.prefix_len) {
        return Err(IpamError::Unusable(name()));
    }
    let dir = state_dir.join("net").join(bridge);
    std::fs::create_dir_all(&dir).map_err(|source| IpamError::Io {
        what: "creating",
        path: dir.clone(),
        source,
    })?;
    let _lock = lock(&dir.join("lock"))?;
    for address in hosts(subnet) {
        let file = dir.join(address.to_string());
        match std::fs::read_to_string(&file) {
            Ok(owner) if ContainerDir::new(state_dir, owner.trim()).is_locked() => continue,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(IpamError::Io {
                    what: "reading",
                    path: file,
                    source,
                })
            }
        }
        std::fs::write(&file, id).map_err(|source| IpamError::Io {
            what: "writing",
            path: file.clone(),
            source,
        })?;
        return Ok(Lease { address, file });
    }
    Err(IpamError::Exhausted(name()))
}

/// Host addresses containers may get, in order: the subnet minus network, broadcast and
/// the gateway.
fn hosts(subnet: &SubnetEnv) -> impl Iterator<Item = Ipv4Addr> + '_ {
    let network = u32::from(subnet.subnet().address);
    let broadcast = network | (u32::MAX >> subnet.prefix_len);
    (network + 1..broadcast)
        .map(Ipv4Addr::from)
        .filter(move |address| *address != subnet.gateway)
}

fn lock(path: &Path) -> Result<Flock<File>, IpamError> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|source| IpamError::Io {
            what: "opening",
            path: path.to_path_buf(),
            source,
        })?;
    Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, e)| IpamError::Io {
        what: "locking",
        path: path.to_path_buf(),
        source: e.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running(state_dir: &Path, id: &str) -> crate::container::state::Lock {
        let c = ContainerDir::new(state_dir, id);
        std::fs::create_dir_all(c.path()).unwrap();
        c.lock().unwrap()
    }

    /// A `subnet.env` whose `FLANNEL_SUBNET` is `cidr`.
    fn subnet(cidr: &str) -> SubnetEnv {
        SubnetEnv::parse(&format!(
            "FLANNEL_NETWORK=10.0.0.0/8\nFLANNEL_SUBNET={cidr}\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n"
        ))
        .unwrap()
    }

    #[test]
    fn hosts_are_the_subnet_less_network_broadcast_and_gateway() {
        let addresses: Vec<_> = hosts(&subnet("10.5.3.1/24")).collect();
        assert_eq!(addresses.first(), Some(&Ipv4Addr::new(10, 5, 3, 2)));
        assert_eq!(addresses.last(), Some(&Ipv4Addr::new(10, 5, 3, 254)));
        assert_eq!(addresses.len(), 253);
        // The gateway need not be the first address.
        assert_eq!(
            hosts(&subnet("10.9.0.5/30")).collect::<Vec<_>>(),
            vec![Ipv4Addr::new(10, 9, 0, 6)]
        );
    }

    #[test]
    fn a_subnet_without_room_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        for cidr in ["10.5.3.1/31", "10.5.3.1/7"] {
            assert!(
                matches!(
                    allocate(dir.path(), "br", &subnet(cidr), "a"),
                    Err(IpamError::Unusable(_))
                ),
                "{cidr}"
            );
        }
    }

    #[test]
    fn hands_out_distinct_addresses_and_reuses_released_and_stale_ones() {
        let dir = tempfile::tempdir().unwrap();
        let subnet = subnet("10.5.3.1/29");
        let _a_lock = running(dir.path(), "a");
        let b_lock = running(dir.path(), "b");
        let _c_lock = running(dir.path(), "c");
        let a = allocate(dir.path(), "br", &subnet, "a").unwrap();
        let b = allocate(dir.path(), "br", &subnet, "b").unwrap();
        assert_eq!(
            (a.address, b.address),
            (Ipv4Addr::new(10, 5, 3, 2), Ipv4Addr::new(10, 5, 3, 3))
        );
        a.release();
        assert_eq!(
            allocate(dir.path(), "br", &subnet, "c").unwrap().address,
            Ipv4Addr::new(10, 5, 3, 2)
        );
        // b's supervisor died without releasing: its address is free again.
        drop(b_lock);
        let _d_lock = running(dir.path(), "d");
        assert_eq!(
            allocate(dir.path(), "br", &subnet, "d").unwrap().address,
            Ipv4Addr::new(10, 5, 3, 3)
        );
    }

    #[test]
    fn a_full_subnet_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let subnet = subnet("10.9.0.5/30");
        let _lock = running(dir.path(), "a");
        allocate(dir.path(), "br", &subnet, "a").unwrap();
        assert!(matches!(
            allocate(dir.path(), "br", &subnet, "b"),
            Err(IpamError::Exhausted(_))
        ));
    }
}
