//! A `Sys` that records every call and fails the ones it is told to: unit tests of the
//! setup sequence and of cgroup decisions run against it.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::ffi::{CStr, CString};
use std::path::{Path, PathBuf};

use super::sys::{FsKind, Mount, Sys, SysError, SysResult};

/// Records calls as readable strings, e.g. `mount overlay /c/rootfs lowerdir=...`.
#[derive(Debug, Default)]
pub struct FakeSys {
    /// Every call made, in order.
    pub calls: RefCell<Vec<String>>,
    /// Files and their contents, as written or preset.
    pub files: RefCell<BTreeMap<PathBuf, String>>,
    /// Calls whose recorded string starts with one of these fail with EINVAL.
    pub fail: Vec<String>,
    /// Filesystem kinds by path, for `fs_kind`.
    pub filesystems: BTreeMap<PathBuf, FsKind>,
}

impl FakeSys {
    /// A fake with the given files preset.
    pub fn with_files(files: &[(&str, &str)]) -> Self {
        let fake = FakeSys::default();
        for (path, contents) in files {
            fake.files
                .borrow_mut()
                .insert(PathBuf::from(path), contents.to_string());
        }
        fake
    }

    /// The calls made so far.
    pub fn calls(&self) -> Vec<String> {
        self.calls.borrow().clone()
    }

    fn record(&self, call: String) -> SysResult<()> {
        let failed = self.fail.iter().any(|f| call.starts_with(f.as_str()));
        self.calls.borrow_mut().push(call.clone());
        if failed {
            return Err(SysError {
                op: "fake",
                target: call,
                source: std::io::Error::from_raw_os_error(libc::EINVAL),
            });
        }
        Ok(())
    }
}

impl Sys for FakeSys {
    fn mount(&self, target: &Path, m: &Mount<'_>) -> SysResult<()> {
        let flags = if m.flags.is_empty() {
            "(empty)".to_string()
        } else {
            m.flags
                .iter_names()
                .map(|(name, _)| name)
                .collect::<Vec<_>>()
                .join(" | ")
        };
        let data = m.data.unwrap_or("");
        self.record(format!(
            "mount {} {} {flags} {data}",
            m.fstype.unwrap_or("-"),
            target.display()
        ))
    }
    fn limit_capabilities(&self) -> SysResult<()> {
        self.record("limit_capabilities".to_owned())
    }
    fn pivot_root(&self, new_root: &Path) -> SysResult<()> {
        self.record(format!("pivot_root {}", new_root.display()))
    }
    fn mkdir_all(&self, path: &Path) -> SysResult<()> {
        self.record(format!("mkdir {}", path.display()))
    }
    fn rmdir(&self, path: &Path) -> SysResult<()> {
        self.record(format!("rmdir {}", path.display()))
    }
    fn mknod_char(&self, path: &Path, major: u64, minor: u64, mode: u32) -> SysResult<()> {
        self.record(format!("mknod {} {major}:{minor} {mode:o}", path.display()))
    }
    fn symlink(&self, target: &str, link: &Path) -> SysResult<()> {
        self.record(format!("symlink {} -> {target}", link.display()))
    }
    fn copy_tree(&self, from: &Path, to: &Path) -> SysResult<()> {
        self.record(format!("copy {} {}", from.display(), to.display()))
    }
    fn write_file(&self, path: &Path, contents: &str) -> SysResult<()> {
        self.record(format!("write {} {contents}", path.display()))?;
        self.files
            .borrow_mut()
            .insert(path.to_path_buf(), contents.to_string());
        Ok(())
    }
    fn read_file(&self, path: &Path) -> SysResult<String> {
        self.files
            .borrow()
            .get(path)
            .cloned()
            .ok_or_else(|| SysError {
                op: "read",
                target: path.display().to_string(),
                source: std::io::Error::from_raw_os_error(libc::ENOENT),
            })
    }
    fn exists(&self, path: &Path) -> bool {
        self.files.borrow().contains_key(path)
    }
    fn fs_kind(&self, path: &Path) -> Option<FsKind> {
        self.filesystems.get(path).copied()
    }
    fn sethostname(&self, name: &str) -> SysResult<()> {
        self.record(format!("sethostname {name}"))
    }
    fn loopback_up(&self) -> SysResult<()> {
        self.record("loopback_up".to_string())
    }
    fn set_user(&self, uid: u32, gid: u32) -> SysResult<()> {
        self.record(format!("set_user {uid}:{gid}"))
    }
    fn chdir(&self, path: &Path) -> SysResult<()> {
        self.record(format!("chdir {}", path.display()))
    }
    fn exec(&self, program: &CStr, argv: &[CString], _envp: &[CString]) -> SysError {
        let args: Vec<_> = argv
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let call = format!("exec {} {}", program.to_string_lossy(), args.join(" "));
        match self.record(call.clone()) {
            Err(e) => e,
            // A real exec never returns on success; the fake reports ENOENT so the caller
            // moves on to the next PATH candidate and the test sees them all.
            Ok(()) => SysError {
                op: "exec",
                target: call,
                source: std::io::Error::from_raw_os_error(libc::ENOENT),
            },
        }
    }
}
