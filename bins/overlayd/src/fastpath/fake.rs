//! An in-memory kernel for the fast path's unit tests: links and a bridge FDB the test
//! sets, and the filters, loads and ports map the fast path makes, with a log of changes.

use std::collections::{BTreeMap, BTreeSet};

use sinew_proto::mac::MacAddr;

use super::kernel::{FastPathKernel, Role};
use super::plan::{FdbEntry, Link};
use super::{BpfError, FastPathError, TcError};

/// A kernel in memory.
#[derive(Debug, Default)]
pub struct FakeKernel {
    /// The host's links.
    pub links: Vec<Link>,
    /// The bridge FDB.
    pub fdb: Vec<FdbEntry>,
    /// Links that vanish between a listing and a request.
    pub vanishing: BTreeSet<u32>,
    /// Whether the verifier refuses the programs.
    pub refuse_programs: bool,
    /// Every load, as (bridge, VXLAN device).
    pub loads: Vec<(u32, u32)>,
    /// Our filters: link → the program and the load it came from (1-based).
    pub filters: BTreeMap<u32, (Role, usize)>,
    /// The ports map.
    pub ports: BTreeMap<MacAddr, u32>,
    /// Every change, as `attach 6 sinew_tx`, `set 0a:..:16 6` and so on.
    pub changes: Vec<String>,
}

impl FastPathKernel for FakeKernel {
    async fn tables(&mut self) -> Result<(Vec<Link>, Vec<FdbEntry>), FastPathError> {
        Ok((self.links.clone(), self.fdb.clone()))
    }

    fn load(&mut self, bridge: u32, vxlan: u32) -> Result<(), FastPathError> {
        if self.refuse_programs {
            return Err(FastPathError::Bpf(BpfError::Load {
                name: Role::Rx.name().to_owned(),
                source: std::io::Error::from_raw_os_error(libc::EINVAL),
                log: "invalid func unknown#155".to_owned(),
            }));
        }
        self.loads.push((bridge, vxlan));
        self.changes.push(format!("load {bridge} {vxlan}"));
        Ok(())
    }

    async fn attach(&mut self, index: u32, role: Role) -> Result<(), FastPathError> {
        if self.vanishing.contains(&index) {
            return Err(FastPathError::Tc(TcError {
                what: format!("attaching {} to link {index}", role.name()),
                errno: libc::ENODEV,
            }));
        }
        self.filters.insert(index, (role, self.loads.len()));
        self.changes.push(format!("attach {index} {}", role.name()));
        Ok(())
    }

    async fn detach(&mut self, index: u32) -> Result<(), FastPathError> {
        self.filters.remove(&index);
        self.changes.push(format!("detach {index}"));
        Ok(())
    }

    fn set_port(&mut self, mac: MacAddr, port: u32) -> Result<(), FastPathError> {
        self.ports.insert(mac, port);
        self.changes.push(format!("set {mac} {port}"));
        Ok(())
    }

    fn clear_port(&mut self, mac: MacAddr) -> Result<(), FastPathError> {
        self.ports.remove(&mac);
        self.changes.push(format!("clear {mac}"));
        Ok(())
    }
}
