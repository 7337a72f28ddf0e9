//! Container start-to-exit benchmark: a busybox `true` from a cached, verified image under
//! sinew-run, against crun running an OCI bundle of the same rootfs, interleaved in one run.
//!
//! Both get the same isolation: new mount, PID, UTS, IPC and network namespaces (network
//! none), a cgroup, a pivot into the image's root. crun refuses this host's hybrid cgroup
//! layout, so the whole benchmark runs in a private mount namespace in which the empty
//! cgroup2 mount (`/sys/fs/cgroup/unified`) is unmounted; there crun uses the v1
//! controllers, as sinew-run does. crun's default `process.rlimits` are removed.
//!
//! `cargo bench -p sinew-tests --bench container`; `SINEW_BENCH_RUNS=N` runs per runtime
//! (default 30). The last line is `RATIO container_start=<sinew-run p50 / crun p50>`.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
use sinew::{Arch, Build};
use sinew_tests::median;

const IMAGE: &str = "bench.sinew.local/true:1";
/// Set once the benchmark has re-executed itself in its private mount namespace.
const IN_PRIVATE_NS: &str = "SINEW_BENCH_CONTAINER_NS";

fn main() -> Result<()> {
    if std::env::var_os(IN_PRIVATE_NS).is_none() {
        return Err(reexec_in_private_ns());
    }
    let runs: usize = sinew_tests::bench_setting("SINEW_BENCH_RUNS", 30);
    ensure!(runs > 0, "SINEW_BENCH_RUNS must be at least 1");
    let work = tempfile::Builder::new()
        .prefix("sinew-bench-container")
        .tempdir()?;
    let sinew_run = build_sinew_run(work.path())?;
    let rootfs = prepare_image(&sinew_run, work.path())?;
    let bundle = crun_bundle(work.path(), &rootfs)?;

    // One untimed run each warms the page cache and the cgroup parents.
    sinew_once(&sinew_run, work.path())?;
    crun_once(&bundle, "sinew-bench-warm")?;
    let (mut sinew, mut crun) = (Vec::new(), Vec::new());
    for i in 0..runs {
        sinew.push(sinew_once(&sinew_run, work.path())?);
        crun.push(crun_once(
            &bundle,
            &format!("sinew-bench-{}-{i}", std::process::id()),
        )?);
    }
    let rows = [
        ("sinew-run", summary(&mut sinew)),
        ("crun", summary(&mut crun)),
    ];
    println!(
        "{:<10} {:>5} {:>10} {:>10}",
        "runtime", "runs", "p50 ms", "p90 ms"
    );
    for (name, (p50, p90)) in &rows {
        println!("{name:<10} {runs:>5} {p50:>10.2} {p90:>10.2}");
    }
    println!("RATIO container_start={:.3}", rows[0].1 .0 / rows[1].1 .0);
    Ok(())
}

/// Re-executes this benchmark under `unshare --mount` with the cgroup2 mount removed.
fn reexec_in_private_ns() -> anyhow::Error {
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => return anyhow::Error::new(e).context("locating the benchmark executable"),
    };
    let err = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
        .arg("umount /sys/fs/cgroup/unified 2>/dev/null; exec \"$0\" \"$@\"")
        .arg(exe)
        .args(std::env::args_os().skip(1))
        .env(IN_PRIVATE_NS, "1")
        .exec();
    anyhow::Error::new(err).context("re-executing under unshare --mount (util-linux)")
}

/// The static sinew-run binary for this machine, built like every shipped binary; the
/// stored artifact is read-only, so an executable copy goes into `work`.
fn build_sinew_run(work: &Path) -> Result<PathBuf> {
    let arch = Arch::host().context("sinew-run is built for x86_64 and aarch64 hosts only")?;
    let artifacts =
        sinew_tests::run("bench-container").build(&Build::bins(&["sinew-run"]).archs(&[arch]))?;
    let binary = work.join("sinew-run");
    std::fs::copy(&artifacts.get("sinew-run", arch)?.path, &binary)?;
    std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755))?;
    Ok(binary)
}

fn sinew(sinew_run: &Path, work: &Path) -> Command {
    let mut cmd = Command::new(sinew_run);
    cmd.arg("--dir")
        .arg(work.join("state"))
        .env_remove("SINEW_RUN_DIR");
    cmd
}

fn ok(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Builds and signs a busybox image whose command is `true`, trusts its key and fetches
/// it into the state directory (verified and rendered once); returns the rendered rootfs.
fn prepare_image(sinew_run: &Path, work: &Path) -> Result<PathBuf> {
    let (key, public, layout) = (
        work.join("key.pgp"),
        work.join("key.pub"),
        work.join("layout"),
    );
    ok(sinew(sinew_run, work)
        .args([
            "key",
            "generate",
            "--userid",
            "bench <bench@sinew.local>",
            "--out",
        ])
        .arg(&key))?;
    ok(sinew(sinew_run, work)
        .args(["key", "export", "--key"])
        .arg(&key)
        .arg("--out")
        .arg(&public))?;
    ok(sinew(sinew_run, work)
        .args(["trust", "--prefix", "bench.sinew.local"])
        .arg(&public))?;
    let busybox = format!("{}=/bin/busybox", image_arch()?);
    ok(sinew(sinew_run, work)
        .args([
            "image",
            "build",
            "--name",
            IMAGE,
            "--entrypoint",
            "/bin/busybox",
            "--cmd",
            "true",
        ])
        .args(["--arch", &busybox, "--sign-key"])
        .arg(&key)
        .arg("--out")
        .arg(&layout))?;
    ok(sinew(sinew_run, work).arg("fetch").arg(&layout))?;
    let store = sinew_runner::image::Store::open(&work.join("state"))?;
    Ok(store.resolve(IMAGE)?.rootfs)
}

fn image_arch() -> Result<&'static str> {
    match Arch::host() {
        Some(Arch::X86_64) => Ok("amd64"),
        Some(Arch::Aarch64) => Ok("arm64"),
        None => bail!("unsupported host architecture"),
    }
}

/// An OCI bundle for crun: `crun spec`'s defaults with a copy of the same rootfs, the same
/// program, no terminal and no rlimits.
fn crun_bundle(work: &Path, rootfs: &Path) -> Result<PathBuf> {
    let bundle = work.join("bundle");
    std::fs::create_dir_all(&bundle)?;
    let copy = bundle.join("rootfs");
    ok(Command::new("cp").arg("-a").arg(rootfs).arg(&copy))?;
    ok(Command::new("crun").arg("spec").current_dir(&bundle))
        .context("is crun installed? (apt-get install crun)")?;
    let path = bundle.join("config.json");
    let mut config: serde_json::Value = serde_json::from_slice(&std::fs::read(&path)?)?;
    config["root"] = serde_json::json!({ "path": copy, "readonly": false });
    let process = config["process"]
        .as_object_mut()
        .context("crun spec has a process object")?;
    process.insert("terminal".into(), false.into());
    process.insert("args".into(), serde_json::json!(["/bin/busybox", "true"]));
    process.remove("rlimits");
    std::fs::write(&path, serde_json::to_vec_pretty(&config)?)?;
    Ok(bundle)
}

/// Seconds from spawning `cmd` to its exit.
fn timed(cmd: &mut Command) -> Result<f64> {
    let start = Instant::now();
    let status = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    let took = start.elapsed().as_secs_f64();
    ensure!(status.success(), "{cmd:?} exited with {status}");
    Ok(took)
}

fn sinew_once(sinew_run: &Path, work: &Path) -> Result<f64> {
    timed(sinew(sinew_run, work).args(["run", "--net", "none", IMAGE]))
}

fn crun_once(bundle: &Path, id: &str) -> Result<f64> {
    timed(
        Command::new("crun")
            .arg("run")
            .arg("--bundle")
            .arg(bundle)
            .arg(id),
    )
}

/// (p50, p90) in milliseconds.
fn summary(samples: &mut [f64]) -> (f64, f64) {
    let p50 = median(samples) * 1000.0;
    samples.sort_by(f64::total_cmp);
    let p90 = samples[((samples.len() * 9).div_ceil(10)).saturating_sub(1)] * 1000.0;
    (p50, p90)
}
