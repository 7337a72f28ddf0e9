//! The flagship playbook, cross-compiled as Go programs were: a static aarch64 build plans
//! under qemu-user, and a static x86_64 build runs the whole thing end to end.

use std::path::PathBuf;
use std::process::Command;

use sinew::Arch;
use sinew_tests::prepared;

fn cross_compile_playbook() -> Vec<(Arch, PathBuf)> {
    prepared();
    let paths = sinew::paths::Paths::from_env();
    let target_dir = sinew::build::target_dir(&paths);
    let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cargo
        .current_dir(&paths.workspace)
        .args(["build", "--release", "--bin", "two-arch", "--target-dir"])
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
            let path = target_dir.join(arch.rust_target()).join("release/two-arch");
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

#[test]
fn kv_cluster_survives_losing_the_leaders_guest() {
    prepared();
    let paths = sinew::paths::Paths::from_env();
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(&paths.workspace)
        .args([
            "run",
            "--quiet",
            "-p",
            "sinew-playbooks",
            "--bin",
            "kv-cluster",
        ])
        .output()
        .expect("cargo runs the playbook");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "kv-cluster failed:\n{stderr}");
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
