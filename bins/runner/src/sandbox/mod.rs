//! Namespaces and the process inside them: one `clone(2)` into new mount, PID, UTS, IPC
//! and (optionally) network namespaces; the child waits until the supervisor has put it in
//! its cgroup and network, then assembles its root filesystem and executes the program.

pub mod capabilities;
mod copy;
#[cfg(test)]
pub mod fake;
pub mod process;
pub mod rootfs;
pub mod sys;
pub mod user;

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

use nix::sched::CloneFlags;
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::unistd::Pid;

pub use process::{Exec, ProcessError, ProcessSpec};
pub use rootfs::RootfsPlan;
pub use sys::{FsKind, RealSys, Sys, SysError};

/// Exit status of a child that failed before executing the program.
const SETUP_FAILED: i32 = 125;
/// Stack for the cloned child until it execs; the pages are only touched as used.
const CHILD_STACK: usize = 512 * 1024;

/// Why a sandbox could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// A pipe or the clone itself failed.
    #[error("{what}")]
    Os {
        /// What was being done.
        what: &'static str,
        /// The OS error.
        #[source]
        source: nix::Error,
    },
    /// The child failed while setting up the container, before the program ran.
    #[error("container setup failed: {0}")]
    Setup(String),
}

fn os(what: &'static str) -> impl FnOnce(nix::Error) -> SandboxError {
    move |source| SandboxError::Os { what, source }
}

/// File descriptors that become the container's standard streams.
#[derive(Debug)]
pub struct Stdio {
    /// Standard input; `None` keeps the supervisor's.
    pub stdin: Option<OwnedFd>,
    /// Standard output.
    pub stdout: OwnedFd,
    /// Standard error.
    pub stderr: OwnedFd,
}

/// What the child sets up besides mount, PID, UTS and IPC namespaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespaces {
    /// A fresh network namespace (only `lo`, brought up).
    pub network: bool,
    /// cgroup files the child writes "0" into to join them itself, first thing
    /// (see `Cgroup::self_join_files`).
    pub join_cgroup: Vec<PathBuf>,
}

/// A cloned child waiting for the go-ahead: put it in its cgroup and network first.
#[derive(Debug)]
pub struct Pending {
    pid: Pid,
    go: File,
    errors: File,
}

impl Pending {
    /// The child's PID in the supervisor's PID namespace.
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// Kills and reaps the child without starting it.
    pub fn abort(self) {
        let _ = nix::sys::signal::kill(self.pid, Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(self.pid, None);
    }

    /// Lets the child set up its root filesystem and exec the program; returns once the
    /// exec has happened, or the setup error the child reported.
    pub fn start(mut self) -> Result<Pid, SandboxError> {
        self.go
            .write_all(b"g")
            .map_err(|e| SandboxError::Setup(format!("signalling the child: {e}")))?;
        drop(self.go);
        // The error pipe is close-on-exec: EOF with no data means the exec succeeded.
        let mut message = String::new();
        self.errors
            .read_to_string(&mut message)
            .map_err(|e| SandboxError::Setup(format!("reading the child's status: {e}")))?;
        if message.is_empty() {
            return Ok(self.pid);
        }
        // The child exits right after reporting; reap it so it does not linger.
        let _ = nix::sys::wait::waitpid(self.pid, None);
        Err(SandboxError::Setup(message))
    }
}

/// Clones the container's init process into new namespaces. The child blocks until
/// [`Pending::start`]. The caller must be single-threaded, as for `fork`.
pub fn spawn(
    sys: &dyn Sys,
    rootfs: &RootfsPlan,
    exec: &Exec,
    namespaces: &Namespaces,
    stdio: Stdio,
) -> Result<Pending, SandboxError> {
    let (go_r, go_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(os("creating the start pipe"))?;
    let (err_r, err_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(os("creating the error pipe"))?;
    let mut flags = CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWIPC;
    if namespaces.network {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    let fds = ChildFds {
        go: go_r.as_raw_fd(),
        go_parent: go_w.as_raw_fd(),
        errors: err_w.as_raw_fd(),
        errors_parent: err_r.as_raw_fd(),
        stdin: stdio.stdin.as_ref().map(|f| f.as_raw_fd()),
        stdout: stdio.stdout.as_raw_fd(),
        stderr: stdio.stderr.as_raw_fd(),
    };
    let mut stack = vec![0u8; CHILD_STACK];
    let child = Box::new(|| child_main(sys, rootfs, exec, namespaces, &fds));
    // SAFETY: the child runs on its own stack in a copy of this address space and only
    // calls async-signal-safe functions plus allocation, which is sound because the caller
    // is single-threaded; it ends in exec or _exit.
    let pid = unsafe { nix::sched::clone(child, &mut stack, flags, Some(Signal::SIGCHLD as i32)) }
        .map_err(os("cloning the container process"))?;
    drop((go_r, err_w, stdio));
    Ok(Pending {
        pid,
        go: File::from(go_w),
        errors: File::from(err_r),
    })
}

/// Raw descriptors the child rearranges before setup.
struct ChildFds {
    go: RawFd,
    go_parent: RawFd,
    errors: RawFd,
    errors_parent: RawFd,
    stdin: Option<RawFd>,
    stdout: RawFd,
    stderr: RawFd,
}

/// The container side of the setup, in order: cgroup (by host paths, so before the
/// pivot), root filesystem, loopback, identity.
fn prepare_child(
    sys: &dyn Sys,
    rootfs: &RootfsPlan,
    exec: &Exec,
    ns: &Namespaces,
) -> Result<(), SysError> {
    for file in &ns.join_cgroup {
        sys.write_file(file, "0")?;
    }
    rootfs::enter(sys, rootfs)?;
    if ns.network {
        sys.loopback_up()?;
    }
    exec.setup(sys)
}

fn child_main(
    sys: &dyn Sys,
    rootfs: &RootfsPlan,
    exec: &Exec,
    ns: &Namespaces,
    fds: &ChildFds,
) -> isize {
    // SAFETY: plain syscalls on descriptors this process owns; nothing else uses them.
    unsafe {
        libc::close(fds.go_parent);
        libc::close(fds.errors_parent);
        if let Some(stdin) = fds.stdin {
            libc::dup2(stdin, 0);
        }
        libc::dup2(fds.stdout, 1);
        libc::dup2(fds.stderr, 2);
        // The container dies with its supervisor instead of running unsupervised.
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
    }
    // The supervisor blocks the signals it handles; the program must start with none blocked.
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
    // Assemble the container while the supervisor moves us into the cgroup (which can
    // wait for an RCU grace period) and plugs in the network; exec only after its go-ahead.
    let err = match prepare_child(sys, rootfs, exec, ns) {
        Err(e) => e,
        Ok(()) => {
            let mut byte = [0u8; 1];
            // SAFETY: reading one byte into a valid buffer.
            if unsafe { libc::read(fds.go, byte.as_mut_ptr().cast(), 1) } != 1 {
                // The supervisor gave up before starting us.
                return SETUP_FAILED as isize;
            }
            exec.exec(sys)
        }
    };
    let message = format!("{err}: {}", err.source);
    // SAFETY: writing a valid buffer to our end of the error pipe.
    unsafe { libc::write(fds.errors, message.as_ptr().cast(), message.len()) };
    SETUP_FAILED as isize
}

#[cfg(test)]
mod tests {
    use super::*;
    use fake::FakeSys;
    use std::path::Path;

    fn exec() -> Exec {
        Exec::prepare(&ProcessSpec {
            args: vec!["/bin/true".into()],
            env: vec![],
            cwd: "/srv".into(),
            uid: 5,
            gid: 6,
            hostname: "h".into(),
        })
        .unwrap()
    }

    #[test]
    fn the_child_pivots_before_touching_its_identity() {
        let sys = FakeSys::default();
        let plan = RootfsPlan::in_container_dir(Path::new("/img"), Path::new("/c"));
        let ns = Namespaces {
            network: true,
            join_cgroup: vec![
                PathBuf::from("/cg/memory/c/tasks"),
                PathBuf::from("/cg/pids/c/tasks"),
            ],
        };
        prepare_child(&sys, &plan, &exec(), &ns).unwrap();
        let calls = sys.calls();
        assert_eq!(
            calls[..2],
            ["write /cg/memory/c/tasks 0", "write /cg/pids/c/tasks 0"]
        );
        let tail: Vec<&str> = calls[calls.len() - 7..]
            .iter()
            .map(String::as_str)
            .collect();
        assert_eq!(
            tail,
            vec![
                "pivot_root /c/rootfs",
                "loopback_up",
                "sethostname h",
                "mkdir /srv",
                "limit_capabilities",
                "set_user 5:6",
                "chdir /srv"
            ]
        );
    }

    #[test]
    fn the_host_network_is_left_alone() {
        let sys = FakeSys::default();
        let plan = RootfsPlan::in_container_dir(Path::new("/img"), Path::new("/c"));
        let ns = Namespaces {
            network: false,
            join_cgroup: Vec::new(),
        };
        prepare_child(&sys, &plan, &exec(), &ns).unwrap();
        assert!(!sys.calls().iter().any(|c| c == "loopback_up"));
    }
}
