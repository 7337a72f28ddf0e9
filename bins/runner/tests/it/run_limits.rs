//! Limits from flags are enforced through the host's cgroup hierarchy (v1 controllers on
//! this hybrid host, v2 where unified), and the cgroup is gone when the container ends.

use crate::run_support;

use std::path::PathBuf;
use std::time::Duration;

use run_support::*;

/// Doubles a string forever: anonymous memory grows until something stops it.
const EAT_MEMORY: &str = "awk 'BEGIN { s = \"xxxxxxxxxxxxxxxx\"; while (1) s = s s }'";

#[test]
fn a_program_allocating_past_the_memory_limit_is_oom_killed_and_reported() {
    let dir = state_dir();
    let out = run(dir.path(), &["--memory", "32M"], &["sh", "-c", EAT_MEMORY]);
    assert_eq!(out.status.code(), Some(137), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("killed by the OOM killer"),
        "{}",
        stderr(&out)
    );
    let id = only_container(dir.path())
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let state = status_json(dir.path(), &id);
    assert_eq!(state["oom_killed"], true);
    assert_eq!(state["exit_code"], 137);
}

#[test]
fn the_pids_limit_stops_forks() {
    let dir = state_dir();
    let script = "for i in 1 2 3 4 5 6 7 8 9 10; do sleep 2 & done; wait; echo done";
    let limited = run(dir.path(), &["--pids", "4"], &["sh", "-c", script]);
    assert!(
        stderr(&limited).contains("can't fork"),
        "{}",
        stderr(&limited)
    );
    // The same script forks freely without the limit, so the failure above is the limit's.
    let free = run(dir.path(), &[], &["sh", "-c", script]);
    assert!(
        free.status.success() && !stderr(&free).contains("can't fork"),
        "{}",
        stderr(&free)
    );
}

#[test]
fn cpu_and_memory_limits_land_in_the_cgroup_which_is_removed_at_exit() {
    let dir = state_dir();
    let out = run_cmd(
        dir.path(),
        &["-d", "--cpus", "0.5", "--memory", "64M", "--pids", "9"],
        &["sleep", "30"],
    )
    .output()
    .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let id = stdout(&out).trim().to_string();
    let state = status_json(dir.path(), &id);
    let files: Vec<(PathBuf, &str)> = match state["cgroup"].as_str().unwrap() {
        "v1" => vec![
            (
                format!("/sys/fs/cgroup/cpu/sinew-run/{id}/cpu.cfs_quota_us").into(),
                "50000",
            ),
            (
                format!("/sys/fs/cgroup/memory/sinew-run/{id}/memory.limit_in_bytes").into(),
                "67108864",
            ),
            (
                format!("/sys/fs/cgroup/pids/sinew-run/{id}/pids.max").into(),
                "9",
            ),
        ],
        "v2" => vec![
            (
                format!("/sys/fs/cgroup/sinew-run/{id}/cpu.max").into(),
                "50000 100000",
            ),
            (
                format!("/sys/fs/cgroup/sinew-run/{id}/memory.max").into(),
                "67108864",
            ),
            (
                format!("/sys/fs/cgroup/sinew-run/{id}/pids.max").into(),
                "9",
            ),
        ],
        other => panic!("limits need a cgroup, got {other}"),
    };
    for (file, want) in &files {
        assert_eq!(
            std::fs::read_to_string(file).unwrap().trim(),
            *want,
            "{}",
            file.display()
        );
    }
    let pid = state["pid"].as_i64().unwrap();
    let procs = std::fs::read_to_string(files[0].0.with_file_name("cgroup.procs")).unwrap();
    assert!(
        procs.lines().any(|p| p == pid.to_string()),
        "init {pid} not in the cgroup: {procs}"
    );
    let out = cli(dir.path(), &["stop", &id, "--timeout", "1s"]);
    assert!(out.status.success(), "{}", stderr(&out));
    for (file, _) in &files {
        let cgroup = file.parent().unwrap().to_path_buf();
        assert!(
            wait_until(Duration::from_secs(2), || !cgroup.exists()),
            "{} left behind",
            cgroup.display()
        );
    }
}
