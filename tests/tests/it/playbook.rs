//! The flagship playbook, cross-compiled as Go programs were: a static aarch64 build plans
//! under qemu-user, and a static x86_64 build runs the whole thing end to end.

use std::path::PathBuf;
use std::process::Command;

use sinew::Arch;
use sinew_tests::{prepared, CROSS_PLAYBOOK};

fn cross_compile_playbook() -> Vec<(Arch, PathBuf)> {
    prepared();
    let paths = sinew::paths::Paths::from_env();
    let target_dir = sinew::build::target_dir(&paths);
    let mut cargo = sinew::build::nested_cargo(&paths.workspace);
    cargo
        .args([
            "build",
            "--release",
            "--bin",
            CROSS_PLAYBOOK,
            "--target-dir",
        ])
        .arg(&target_dir);
    for arch in Arch::ALL {
        cargo.args(["--target", arch.rust_target()]);
    }
    let status = cargo.status().expect("cargo runs");
    assert!(
        status.success(),
        "cross-compiling the two-arch playbook failed"
    );
    Arch::ALL
        .iter()
        .map(|arch| {
            let path = target_dir
                .join(arch.rust_target())
                .join("release")
                .join(CROSS_PLAYBOOK);
            let bytes = std::fs::read(&path).expect("playbook binary");
            sinew::build::check_binary(&path, &bytes, *arch)
                .expect("a static playbook of the right arch");
            (*arch, path)
        })
        .collect()
}

#[test]
fn two_arch_cross_compiles_plans_on_aarch64_and_runs_verbosely_on_x86_64() {
    let builds = cross_compile_playbook();
    let arm = &builds
        .iter()
        .find(|(a, _)| *a == Arch::Aarch64)
        .expect("arm build")
        .1;
    let plan = Command::new("qemu-aarch64-static")
        .arg(arm)
        .arg("--dry-run")
        .output()
        .expect("qemu-user runs it");
    let stderr = String::from_utf8_lossy(&plan.stderr);
    assert!(plan.status.success(), "aarch64 dry run failed:\n{stderr}");
    assert!(
        stderr.contains("dry run, nothing will be touched"),
        "{stderr}"
    );
    assert!(
        stderr.contains("plan") && stderr.contains("would run: cargo build"),
        "{stderr}"
    );
    assert!(!stderr.contains("failed "), "{stderr}");

    let amd = &builds
        .iter()
        .find(|(a, _)| *a == Arch::X86_64)
        .expect("x86 build")
        .1;
    let out = Command::new(amd)
        .arg("-v")
        .output()
        .expect("run the static playbook");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "two-arch failed:\n{stderr}");
    assert!(stdout.contains("amd: machine x86_64"), "{stdout}");
    assert!(stdout.contains("arm: machine aarch64"), "{stdout}");
    let again: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("install sinew-probe again"))
        .collect();
    assert_eq!(again.len(), 2, "{stderr}");
    assert!(
        again.iter().all(|l| l.trim_start().starts_with("ok")),
        "re-install must be ok: {again:?}"
    );
    assert!(stderr.contains("0 failed"), "{stderr}");
    for (host, machine) in [("amd", "x86_64"), ("arm", "aarch64")] {
        let streamed = format!("[{host}] {{\"compiled_for\":\"{machine}\"");
        assert!(
            stderr.contains(&streamed),
            "-v must stream {host}'s output as it runs:\n{stderr}"
        );
    }
}

/// Runs a playbook of this workspace to success; its stdout and stderr.
fn run_playbook(name: &str) -> (String, String) {
    prepared();
    let playbook = sinew_tests::host_bins(false)
        .expect("the workspace's binaries build")
        .join(name);
    let out = Command::new(&playbook)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", playbook.display()));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{name} failed:\n{stderr}");
    (stdout, stderr)
}

#[test]
fn kv_cluster_survives_losing_the_leaders_guest() {
    let (stdout, stderr) = run_playbook("kv-cluster");
    let before = stdout
        .lines()
        .find_map(|line| line.strip_prefix("leader before the crash: "))
        .expect("the playbook names the first leader");
    let after = stdout
        .lines()
        .find_map(|line| line.strip_prefix("leader after the crash: "))
        .expect("the playbook names the new leader");
    assert_ne!(before, after, "{stdout}");
    assert!(
        stdout.contains("20 of 20 acknowledged writes present after losing the leader"),
        "{stdout}"
    );
    assert!(
        stderr.contains("crash [") && stderr.contains("kv cluster healthy"),
        "{stderr}"
    );
}

#[test]
fn signed_container_runs_verified_on_both_arches_and_refuses_a_tampered_copy() {
    let (stdout, stderr) = run_playbook("signed-container");
    for (host, machine) in [("amd", "x86_64"), ("arm", "aarch64")] {
        let line = stdout
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{host}: ")))
            .unwrap_or_else(|| panic!("no output from {host}:\n{stdout}"));
        let probe: serde_json::Value = serde_json::from_str(line).expect("the probe's JSON");
        assert_eq!(probe["compiled_for"], machine, "{line}");
        assert_eq!(
            probe["hostname"], "probe",
            "the container's own UTS namespace: {line}"
        );
    }
    let refusal = stderr
        .lines()
        .find(|line| line.contains("refused: "))
        .unwrap_or_else(|| panic!("no refusal shown:\n{stderr}"));
    let limits: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains("cgroup v2: memory 64M, pids 32"))
        .collect();
    assert_eq!(
        limits.len(),
        2,
        "limits through the guests' unified cgroup2:\n{stderr}"
    );
    assert!(
        refusal.contains("tampered with"),
        "the refusal says the layer was tampered with: {refusal}"
    );
    assert!(stderr.contains("0 failed"), "{stderr}");
}

#[test]
fn overlay_connects_containers_across_guests_of_both_arches() {
    let (stdout, stderr) = run_playbook("overlay");
    let subnets: Vec<&str> = stdout
        .lines()
        .filter_map(|line| line.split_once(": subnet ").map(|(_, subnet)| subnet))
        .collect();
    assert_eq!(subnets.len(), 3, "one subnet per guest:\n{stdout}");
    let mut distinct = subnets.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), 3, "subnets must differ: {subnets:?}");
    for client in ["n1", "n3"] {
        let reply = stdout
            .lines()
            .find_map(|line| {
                line.strip_prefix(&format!("{client} -> "))
                    .and_then(|rest| rest.split_once(": ").map(|(_, reply)| reply))
            })
            .unwrap_or_else(|| panic!("no reply reached {client}:\n{stdout}"));
        let reply: serde_json::Value = serde_json::from_str(reply).expect("the echo's JSON");
        assert_eq!(
            reply["echo"],
            format!("hello from a container on {client}"),
            "{reply}"
        );
        assert_eq!(reply["server"]["compiled_for"], "aarch64", "{reply}");
        assert_eq!(reply["server"]["hostname"], "echo", "{reply}");
        let subnet = stdout
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{client}: subnet ")))
            .expect("the client's subnet");
        let network = subnet.rsplit_once('.').expect("a.b.c.d/n").0;
        let from = reply["from"].as_str().expect("the client's address");
        assert!(
            from.starts_with(&format!("{network}.")),
            "the server sees the client container's own address {from}, from {client}'s subnet {subnet}: no NAT"
        );
    }
    // Debian's 6.1 guest kernels of both arches run overlayd's fast path.
    for guest in ["n1", "n2", "n3"] {
        assert!(
            stdout.contains(&format!("{guest}: data path: eBPF fast path")),
            "{stdout}"
        );
    }
    assert!(stderr.contains("0 failed"), "{stderr}");
}

/// One of the blue-green playbook's phase lines: requests, failures, versions answering.
fn phase(stdout: &str, name: &str) -> (u64, u64, Vec<String>) {
    let line = stdout
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{name}: ")))
        .unwrap_or_else(|| panic!("no line for phase {name:?}:\n{stdout}"));
    let (counts, versions) = line
        .split_once("; versions answering: ")
        .unwrap_or_else(|| panic!("phase line {line:?}"));
    let numbers: Vec<u64> = counts
        .split_whitespace()
        .filter_map(|word| word.parse().ok())
        .collect();
    let [requests, failed] = numbers[..] else {
        panic!("phase line {line:?}");
    };
    let versions = versions.split(", ").map(str::to_owned).collect();
    (requests, failed, versions)
}

#[test]
fn blue_green_switches_behind_the_proxy_and_rolls_back_a_broken_version_losing_no_request() {
    let (stdout, stderr) = run_playbook("blue-green");
    let (requests, failed, versions) = phase(&stdout, "version 1 serving");
    assert!(requests > 0 && failed == 0, "{stdout}");
    assert_eq!(versions, ["1"], "{stdout}");
    let (requests, failed, versions) = phase(&stdout, "blue-green to version 2");
    assert!(requests > 0 && failed == 0, "{stdout}");
    assert!(
        versions.contains(&"2".to_owned()) && versions.iter().all(|v| v == "1" || v == "2"),
        "{stdout}"
    );
    let (requests, failed, versions) = phase(&stdout, "rolling deploy of version 3, rolled back");
    assert!(requests > 0 && failed == 0, "{stdout}");
    assert_eq!(
        versions,
        ["2"],
        "the broken version never answered:\n{stdout}"
    );
    assert!(
        stdout.contains("rolled back on its own: web-3 (version 3 of web) did not become healthy"),
        "{stdout}"
    );
    assert!(
        stdout.contains("whole run: ") && stdout.contains(" requests, 0 failed"),
        "{stdout}"
    );
    assert!(
        stderr.contains("blue-green deploy of version 2"),
        "{stderr}"
    );
    assert!(
        stderr.contains("/usr/local/bin/schedd already has sha256"),
        "the guests' signed machine image carries the binaries:\n{stderr}"
    );
}
