//! A playbook that panics or is interrupted leaves no QEMU process and no private
//! directory behind.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use sinew_tests::{prepared, qemu_processes_mentioning};

fn abandon(mode: &str, runtime: &std::path::Path) -> Child {
    prepared();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sinew-test-abandon"))
        .arg(mode)
        .env("XDG_RUNTIME_DIR", runtime)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the abandoning playbook");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read its first line");
    assert!(
        line.starts_with("ready "),
        "the playbook did not boot its guest: {line:?}"
    );
    assert_eq!(
        qemu_processes_mentioning(runtime).len(),
        1,
        "one guest runs before the end"
    );
    child
}

fn assert_nothing_left(runtime: &std::path::Path) {
    let pids = qemu_processes_mentioning(runtime);
    assert!(pids.is_empty(), "QEMU processes left behind: {pids:?}");
    let left: Vec<_> = std::fs::read_dir(runtime).expect("runtime dir").collect();
    assert!(left.is_empty(), "private directories left behind: {left:?}");
}

#[test]
fn a_panicking_playbook_leaves_nothing_behind() {
    let runtime = tempfile::tempdir().expect("tempdir");
    let child = abandon("panic", runtime.path());
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(101), "a panic exits with 101");
    assert_nothing_left(runtime.path());
}

#[test]
fn an_interrupted_playbook_leaves_nothing_behind() {
    let runtime = tempfile::tempdir().expect("tempdir");
    let mut child = abandon("wait", runtime.path());
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id().cast_signed()),
        nix::sys::signal::Signal::SIGINT,
    )
    .expect("send SIGINT");
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(130), "Ctrl-C exits with 130");
    // The killed guest is reaped by init once the playbook is gone; give it a moment.
    for _ in 0..50 {
        if qemu_processes_mentioning(runtime.path()).is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_nothing_left(runtime.path());
}
