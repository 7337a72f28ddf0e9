//! Shared support for sinew's integration tests and benchmarks: one-time preparation of
//! the machine (QEMU, musl targets, kernels, guest builds), static busybox for each
//! architecture, and checks for leftover processes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use anyhow::{ensure, Context, Result};
use sinew::{Arch, Build, Options, Run};
use sinew_vm::{deb, elf};

pub mod browser;
pub mod faults;
pub mod kv_cluster;
pub mod linearizable;
pub mod overlay_bed;
pub mod proxy_bed;
pub mod sched_bed;
pub mod ssh_bed;
pub mod underlay;

/// Guest binaries the guest tests need, built for both architectures in one cargo call.
pub const GUEST_BINS: [&str; 9] = [
    "sinew-init",
    "sinew-probe",
    "kvd",
    "kvctl",
    "sinew-run",
    "overlayd",
    "schedd",
    "schedctl",
    "sinew-proxy",
];

/// The playbook that a test cross-compiles for both architectures and runs.
pub const CROSS_PLAYBOOK: &str = "two-arch";

/// A quiet run for tests: no spinners, warnings only.
pub fn run(name: &str) -> Run {
    Run::with_options(name, Options::default()).expect("a run starts")
}

/// Prepares the machine once per process: QEMU for both architectures, the musl targets,
/// both kernels, busybox-static, and the guest binaries built for both architectures.
/// Later boots find everything cached. Panics with the setup's error, which names what
/// is missing and how to get it.
pub fn prepared() {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    let ready = READY.get_or_init(|| prepare(&run("prepare")).map_err(|e| format!("{e:#}")));
    if let Err(e) = ready {
        panic!("preparing the machine for guest tests failed: {e}");
    }
}

/// What [`prepared`] does, as tasks of `run`: the `sinew-test-prepare` binary runs it
/// on its own, so that CI shows the machine's preparation apart from the tests.
pub fn prepare(run: &Run) -> Result<()> {
    run.prepare(&Arch::ALL)?;
    run.prepare_network_boot(&Arch::ALL)?;
    run.task("test tools: busybox, qemu-user, cpio, chromium, go", || {
        use sinew::setup::{ensure_tools, Tool};
        let tools = [
            Tool {
                program: "busybox",
                package: "busybox-static",
            },
            Tool {
                program: "qemu-aarch64-static",
                package: "qemu-user-static",
            },
            // Tests list initramfs images with GNU cpio, a second opinion on our writer.
            Tool {
                program: "cpio",
                package: "cpio",
            },
            // `sinew present`'s page tests, and Go `.play` blocks and Go's present beside it.
            browser::TOOLS[0],
            browser::TOOLS[1],
            GO_TOOLS[0],
            GO_TOOLS[1],
        ];
        ensure_tools(&tools, false)
    })?;
    run.build(&Build::bins(&GUEST_BINS))?;
    // A playbook test cross-compiles this one as a user would; built here, apart from the
    // guest binaries (one cargo call would unify their features and rebuild both), its
    // minutes are not spent beside the guest tests.
    run.build(&Build::bins(&[CROSS_PLAYBOOK]))?;
    for arch in Arch::ALL {
        busybox(arch)?;
    }
    run.task(
        "sinew present: the SDK library for playbook blocks",
        warm_present,
    )?;
    Ok(())
}

/// Builds the optimised SDK library that `sinew present` compiles playbook blocks against
/// (`sinew present --check` on a deck of one block), so that the presenter's tests do not
/// spend minutes of their time budget, and the other tests' CPU, building it.
fn warm_present() -> Result<()> {
    const DECK: &str = r#"# Warm

---

## SDK

```playbook
fn main() -> anyhow::Result<()> {
    sinew::Run::from_args("warm")?.finish()?;
    Ok(())
}
```
"#;
    let dir = tempfile::tempdir()?;
    let deck = dir.path().join("warm.md");
    std::fs::write(&deck, DECK)?;
    let out = std::process::Command::new(host_bins(false)?.join("sinew"))
        .args(["present", "--check"])
        .arg(&deck)
        .output()
        .context("running sinew present --check")?;
    ensure!(
        out.status.success(),
        "sinew present --check of a one-block deck failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// The directory that holds this workspace's host binaries (kvd, kvctl, overlayd, the
/// playbooks, ...), all built now, once per process and profile.
///
/// The test profile builds them with `--workspace --tests`, which resolves dependency
/// features exactly as `cargo test --workspace` does: the binaries reuse the test build's
/// dependencies instead of compiling them again with one package's own feature set
/// (`cargo build -p sinew-kvd` would rebuild some sixty crates). The release profile, for
/// benchmarks, builds them optimised.
pub fn host_bins(release: bool) -> Result<PathBuf> {
    /// Each profile's outcome; errors as text, so they can be cloned.
    static BUILT: OnceLock<Mutex<HashMap<bool, Result<PathBuf, String>>>> = OnceLock::new();
    let mut built = BUILT
        .get_or_init(Mutex::default)
        .lock()
        .map_err(|_| anyhow::anyhow!("an earlier build of the host binaries panicked"))?;
    built
        .entry(release)
        .or_insert_with(|| build_host_bins(release).map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(anyhow::Error::msg)
}

fn build_host_bins(release: bool) -> Result<PathBuf> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("the tests crate lives in the workspace")?;
    let mut build = sinew::build::nested_cargo(workspace);
    build.args(["build", "--quiet", "--workspace", "--bins"]);
    build.arg(if release { "--release" } else { "--tests" });
    let status = build
        .status()
        .context("running cargo build for the workspace's binaries")?;
    ensure!(
        status.success(),
        "cargo build of the workspace's binaries failed: {status}"
    );
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace.join("target"), PathBuf::from);
    Ok(target.join(if release { "release" } else { "debug" }))
}

/// Where the tests cache kernels and packages: the SDK's own cache, so that tests,
/// benchmarks and playbooks fetch each kernel once.
pub fn cache_dir() -> PathBuf {
    sinew::paths::Paths::from_env().cache
}

/// A static busybox for `arch`: the host's own if it is one, else Debian's
/// `busybox-static` for that architecture, unpacked once into the cache.
pub fn busybox(arch: Arch) -> Result<PathBuf> {
    let host = Path::new("/bin/busybox");
    if elf::inspect_file(host).is_ok_and(|info| info.arch == arch && info.is_static) {
        return Ok(host.to_owned());
    }
    let root = deb::fetch(
        "busybox-static",
        arch,
        &cache_dir().join("busybox").join(arch.debian_arch()),
    )?;
    let binary = root.join("bin/busybox");
    let info = elf::inspect_file(&binary)?;
    ensure!(
        info.arch == arch && info.is_static,
        "{} is not a static {arch} busybox",
        binary.display()
    );
    Ok(binary)
}

/// Go and Go's `present`: `.play` blocks of `sinew present` and the presenter benchmark's
/// anchor.
pub const GO_TOOLS: [sinew::setup::Tool; 2] = [
    sinew::setup::Tool {
        program: "go",
        package: "golang-go",
    },
    sinew::setup::Tool {
        program: "present",
        package: "golang-golang-x-tools",
    },
];

/// Waits until `condition` holds, checking every 50 ms, or fails naming `what` once
/// `patience` has passed: for what happens soon but not at once (a process reaped, a file
/// written by a process that reported itself started).
pub fn eventually(
    what: &str,
    patience: std::time::Duration,
    mut condition: impl FnMut() -> bool,
) -> Result<()> {
    let deadline = std::time::Instant::now() + patience;
    while !condition() {
        ensure!(
            std::time::Instant::now() < deadline,
            "{what}: not within {patience:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Ok(())
}

/// A free loopback port, for a server started a moment later.
pub fn free_port() -> Result<u16> {
    Ok(sinew_support::ports::free_loopback_port()?)
}

/// Installs the `tools` missing from this machine (as root on Debian) once per process:
/// each set of tools keeps its own `ready` cell, and later calls return the first answer.
pub fn tools_installed(
    ready: &'static OnceLock<Result<(), String>>,
    tools: &[sinew::setup::Tool],
) -> Result<()> {
    ready
        .get_or_init(|| {
            sinew::setup::ensure_tools(tools, false)
                .map(|_| ())
                .map_err(|error| format!("{error:#}"))
        })
        .clone()
        .map_err(anyhow::Error::msg)
}

/// Pids of live QEMU processes whose command line mentions `needle`.
pub fn qemu_processes_mentioning(needle: &Path) -> Vec<i32> {
    let needle = needle.to_string_lossy().into_owned();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()))
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let zombie = state
                .rsplit(')')
                .next()
                .is_some_and(|rest| rest.trim_start().starts_with('Z'));
            cmdline.contains("qemu-system") && cmdline.contains(&needle) && !zombie
        })
        .collect()
}

/// The CPU time process `pid` has used so far, in user and kernel mode together.
pub fn cpu_time(pid: u32) -> Result<std::time::Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The fields after the command name, which is in parentheses: utime and stime are the
    // 12th and 13th of them.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |index: usize| -> Result<u64> {
        fields
            .get(index)
            .and_then(|field| field.parse().ok())
            .with_context(|| format!("/proc/{pid}/stat: no CPU time in {stat:?}"))
    };
    // Linux reports them in USER_HZ, which is 100 on every architecture sinew runs on.
    let total = ticks(11)? + ticks(12)?;
    Ok(std::time::Duration::from_millis(total * 10))
}

/// The median of `samples` (sorted in place).
pub fn median(samples: &mut [f64]) -> f64 {
    samples.sort_by(|a, b| a.total_cmp(b));
    let n = samples.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        samples[n / 2]
    } else {
        (samples[n / 2 - 1] + samples[n / 2]) / 2.0
    }
}

/// The `p`-th percentile (0 to 100) of `samples` by nearest rank; NaN if there are none.
pub fn percentile(samples: &mut [f64], p: f64) -> f64 {
    samples.sort_by(|a, b| a.total_cmp(b));
    let rank = (p / 100.0 * samples.len() as f64).ceil();
    // A rank is a small positive count of samples.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let index = (rank as usize).clamp(1, samples.len().max(1)) - 1;
    samples.get(index).copied().unwrap_or(f64::NAN)
}

/// A benchmark's setting from the environment variable `name`, or `default` when it is
/// unset or not a number.
pub fn bench_setting<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let mut samples: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(percentile(&mut samples, 95.0), 19.0);
        assert_eq!(percentile(&mut samples, 50.0), 10.0);
        assert_eq!(percentile(&mut [3.0], 95.0), 3.0);
        assert!(percentile(&mut [], 95.0).is_nan());
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(&mut []).is_nan());
    }
}
