//! Shared by the `run_*` tests: a busybox root filesystem, a private state directory and
//! the `sinew-run` binary.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The sinew-run binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_sinew-run")
}

/// A static busybox root filesystem with every applet, an `app` user (1000:1000) and
/// `/srv`, built once per test binary and shared read-only, as a rendered image is.
pub fn rootfs() -> &'static Path {
    static ROOTFS: OnceLock<tempfile::TempDir> = OnceLock::new();
    ROOTFS
        .get_or_init(|| {
            let dir = tempfile::Builder::new()
                .prefix("sinew-rootfs")
                .tempdir()
                .unwrap();
            let root = dir.path();
            for d in ["bin", "etc", "tmp", "proc", "sys", "dev", "srv", "home/app"] {
                std::fs::create_dir_all(root.join(d)).unwrap();
            }
            std::fs::set_permissions(root.join("tmp"), std::fs::Permissions::from_mode(0o1777))
                .unwrap();
            std::os::unix::fs::chown(root.join("home/app"), Some(1000), Some(1000)).unwrap();
            if !std::path::Path::new("/bin/busybox").exists() {
                let installed = Command::new("apt-get")
                    .args([
                        "-o",
                        "DPkg::Lock::Timeout=600",
                        "install",
                        "-y",
                        "busybox-static",
                    ])
                    .status()
                    .unwrap();
                assert!(installed.success(), "apt-get install busybox-static failed");
            }
            std::fs::copy("/bin/busybox", root.join("bin/busybox"))
                .expect("busybox-static must be installed");
            let list = Command::new("/bin/busybox").arg("--list").output().unwrap();
            for applet in String::from_utf8(list.stdout)
                .unwrap()
                .lines()
                .filter(|a| *a != "busybox")
            {
                std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
            }
            std::fs::write(
                root.join("etc/passwd"),
                "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n",
            )
            .unwrap();
            std::fs::write(root.join("etc/group"), "root:x:0:\napp:x:1000:\n").unwrap();
            std::fs::write(root.join("etc/motd"), "pristine\n").unwrap();
            dir
        })
        .path()
}

/// A private state directory for one test.
pub fn state_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("sinew-run-state")
        .tempdir()
        .unwrap()
}

/// `sinew-run --dir <dir> run --rootfs-dir <rootfs> <flags> -- <args>`.
pub fn run_cmd(dir: &Path, flags: &[&str], args: &[&str]) -> Command {
    let mut cmd = Command::new(bin());
    cmd.arg("--dir")
        .arg(dir)
        .arg("run")
        .arg("--rootfs-dir")
        .arg(rootfs())
        .args(flags)
        .arg("--")
        .args(args);
    cmd.env_remove("SINEW_RUN_DIR").stdin(Stdio::null());
    cmd
}

/// Runs a container to completion and returns its output.
pub fn run(dir: &Path, flags: &[&str], args: &[&str]) -> Output {
    run_cmd(dir, flags, args).output().unwrap()
}

/// Runs `sinew-run --dir <dir> <args>` (list, status, ...).
pub fn cli(dir: &Path, args: &[&str]) -> Output {
    Command::new(bin())
        .arg("--dir")
        .arg(dir)
        .args(args)
        .env_remove("SINEW_RUN_DIR")
        .output()
        .unwrap()
}

/// Standard output as text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Standard error as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The single container directory of a state directory.
pub fn only_container(dir: &Path) -> PathBuf {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir.join("containers"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    entries.remove(0)
}

/// The recorded state of container `id`, as JSON.
pub fn status_json(dir: &Path, id: &str) -> serde_json::Value {
    let out = cli(dir, &["status", id, "--format", "json"]);
    assert!(out.status.success(), "status: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Polls `check` every 20 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    check()
}
