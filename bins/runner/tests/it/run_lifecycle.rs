//! Signals reach the container's init (SIGKILL after the grace period), and detached
//! containers are listed, inspected, stopped, logged and removed.

use crate::run_support;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use run_support::*;

/// Starts a foreground container and returns once it printed "ready".
fn start_ready(dir: &std::path::Path, flags: &[&str], script: &str) -> std::process::Child {
    let mut child = run_cmd(dir, flags, &["sh", "-c", script])
        .stdout(Stdio::piped())
        .spawn()
        .expect("sinew-run starts");
    let mut line = String::new();
    BufReader::new(
        child
            .stdout
            .as_mut()
            .expect("the container stdout is piped"),
    )
    .read_line(&mut line)
    .expect("the container prints a line");
    assert_eq!(line, "ready\n");
    child
}

#[test]
fn sigterm_is_forwarded_to_the_container_init() {
    let dir = state_dir();
    let script = "trap 'echo got-term; exit 3' TERM; echo ready; while true; do sleep 0.1; done";
    let child = start_ready(dir.path(), &[], script);
    kill(Pid::from_raw(child.id().cast_signed()), Signal::SIGTERM).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_eq!(stdout(&out), "got-term\n");
}

#[test]
fn an_init_ignoring_sigterm_is_killed_after_the_grace_period() {
    let dir = state_dir();
    let script = "trap '' TERM; echo ready; while true; do sleep 0.1; done";
    let child = start_ready(dir.path(), &["--stop-timeout", "700ms"], script);
    let sent = Instant::now();
    kill(Pid::from_raw(child.id().cast_signed()), Signal::SIGTERM).unwrap();
    let out = child.wait_with_output().unwrap();
    let took = sent.elapsed();
    assert_eq!(out.status.code(), Some(137), "{}", stderr(&out));
    assert!(
        took >= Duration::from_millis(700) && took < Duration::from_secs(5),
        "took {took:?}"
    );
}

#[test]
fn detached_containers_are_listed_inspected_logged_stopped_and_removed() {
    let dir = state_dir();
    let out = run_cmd(
        dir.path(),
        &["--detach"],
        &["sh", "-c", "echo started; sleep 30"],
    )
    .output()
    .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let id = stdout(&out).trim().to_string();
    assert_eq!(id.len(), 16, "{id:?}");

    let state = status_json(dir.path(), &id);
    assert_eq!(state["status"], "running");
    let pid = i32::try_from(state["pid"].as_i64().unwrap()).expect("a pid fits in i32");
    assert!(
        kill(Pid::from_raw(pid), None).is_ok(),
        "init {pid} must be alive"
    );
    let cgroup = state["cgroup"].as_str().unwrap().to_string();
    assert!(cgroup == "v1" || cgroup == "v2", "{cgroup}");
    let status = stdout(&cli(dir.path(), &["status", &id[..6]]));
    assert!(
        status.contains("status:    running") && status.contains(&format!("cgroup:    {cgroup}")),
        "{status}"
    );

    let list = stdout(&cli(dir.path(), &["list"]));
    let row = list
        .lines()
        .find(|l| l.starts_with(&id))
        .unwrap_or_else(|| panic!("{list}"));
    assert!(
        row.contains("running") && row.contains(&pid.to_string()),
        "{row}"
    );

    assert!(wait_until(Duration::from_secs(5), || stdout(&cli(
        dir.path(),
        &["logs", &id]
    )) == "started\n"));

    let refused = cli(dir.path(), &["rm", &id]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("is running; stop it first or use --force"),
        "{}",
        stderr(&refused)
    );

    // sh as PID 1 has no SIGTERM handler, so the kernel drops the signal: stop escalates.
    let stopped = cli(dir.path(), &["stop", &id, "--timeout", "500ms"]);
    assert!(stopped.status.success(), "{}", stderr(&stopped));
    assert!(
        kill(Pid::from_raw(pid), None).is_err(),
        "init {pid} must be gone"
    );
    let list: serde_json::Value =
        serde_json::from_slice(&cli(dir.path(), &["list", "--format", "json"]).stdout).unwrap();
    assert_eq!(list[0]["id"], id.as_str());
    assert_eq!(list[0]["status"], "exited");
    assert_eq!(list[0]["exit_code"], 137);

    let removed = cli(dir.path(), &["rm", &id]);
    assert!(removed.status.success(), "{}", stderr(&removed));
    assert!(!dir.path().join("containers").join(&id).exists());
    assert_eq!(
        stdout(&cli(dir.path(), &["list", "--format", "json"])).trim(),
        "[]"
    );
}

#[test]
fn rm_force_kills_a_running_container() {
    let dir = state_dir();
    let out = run_cmd(dir.path(), &["-d"], &["sleep", "30"])
        .output()
        .unwrap();
    let id = stdout(&out).trim().to_string();
    let pid = i32::try_from(status_json(dir.path(), &id)["pid"].as_i64().unwrap())
        .expect("a pid fits in i32");
    let removed = cli(dir.path(), &["rm", "--force", &id]);
    assert!(removed.status.success(), "{}", stderr(&removed));
    assert!(
        kill(Pid::from_raw(pid), None).is_err(),
        "init {pid} must be gone"
    );
    assert!(!dir.path().join("containers").join(&id).exists());
}

#[test]
fn a_detached_container_that_cannot_start_reports_why() {
    let dir = state_dir();
    let out = run_cmd(dir.path(), &["-d"], &["/bin/nope"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr(&out).contains("exec /bin/nope: No such file or directory"),
        "{}",
        stderr(&out)
    );
    let id = only_container(dir.path())
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let state = status_json(dir.path(), &id);
    assert_eq!(state["status"], "failed");
    assert!(
        state["error"]
            .as_str()
            .unwrap()
            .contains("exec /bin/nope: No such file or directory"),
        "{state}"
    );
}
