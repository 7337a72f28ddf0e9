//! The one cargo call of a build, with its progress: cargo prints a JSON message a line on
//! stdout, read as it comes, and every finished compilation unit advances the count; the
//! compiler's diagnostics stay rendered as text on stderr, whose tail a failure carries.

use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use xshell::{cmd, Shell};

use super::BuildError;
use crate::outcome::last_lines;
use crate::paths::Paths;
use crate::report::Progress;

/// JSON messages on stdout, diagnostics rendered by cargo on stderr as without it.
pub(super) const MESSAGE_FORMAT: &str = "--message-format=json-render-diagnostics";

/// How far a build has got, in compilation units: a crate counts once per target it is
/// built for and its build script once more, fresh units included, so a build counts the
/// same every time its dependency graph is the same.
///
/// cargo announces no plan on stable (`--unit-graph` is nightly-only) and estimates from
/// `cargo metadata` miss build scripts, host crates and per-target copies, so the total is
/// what the same build counted last time; on its first run only the count shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Compiled {
    done: u64,
    total: Option<u64>,
    latest: String,
}

impl fmt::Display for Compiled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.total {
            // A graph grown since last time has outrun its old total, which then says nothing.
            Some(total) if self.done <= total => {
                write!(f, "{}/{total} crates compiled", self.done)?
            }
            _ => write!(f, "{} crates compiled", self.done)?,
        }
        if !self.latest.is_empty() {
            write!(f, ", latest {}", self.latest)?;
        }
        Ok(())
    }
}

/// The part of a cargo JSON message that progress needs.
#[derive(Debug, Deserialize)]
struct Message {
    reason: String,
    package_id: Option<String>,
}

/// The package a `compiler-artifact` message reports a unit of finished; `None` for any
/// other line. The package, not the target: a build script's target is `build-script-build`.
fn finished_crate(line: &str) -> Option<String> {
    let message: Message = serde_json::from_str(line).ok()?;
    (message.reason == "compiler-artifact")
        .then_some(message.package_id)
        .flatten()
        .map(|id| package_name(&id).to_string())
}

/// The name in a package ID: `SOURCE#NAME@VERSION`, or `SOURCE#VERSION` when the name is the
/// source's last path segment (cargo 1.77 on); `NAME VERSION (SOURCE)` before that.
fn package_name(id: &str) -> &str {
    match id.rsplit_once('#') {
        Some((source, fragment)) => match fragment.split_once('@') {
            Some((name, _version)) => name,
            None => source.rsplit('/').next().unwrap_or(source),
        },
        None => id.split(' ').next().unwrap_or(id),
    }
}

/// Reads cargo's stdout to its end, calling `report` after each finished unit; returns
/// how many finished.
fn follow(
    stdout: impl BufRead,
    total: Option<u64>,
    mut report: impl FnMut(&Compiled),
) -> io::Result<u64> {
    let mut compiled = Compiled {
        total,
        ..Compiled::default()
    };
    for line in stdout.lines() {
        if let Some(name) = finished_crate(&line?) {
            compiled.done += 1;
            compiled.latest = name;
            report(&compiled);
        }
    }
    Ok(compiled.done)
}

/// cargo for a build started from a running program (a playbook under `cargo run`, a test
/// under `cargo test`): the `CARGO` that ran it, if any, in `workspace`, without the variables
/// an outer cargo sets for the program it runs. Build scripts such as ring's name some of
/// them in `rerun-if-env-changed`, so a nested build that kept them would rebuild those
/// crates, and all that depends on them, whenever it runs from a different place than the
/// last build did.
pub fn nested(workspace: &Path) -> Command {
    let mut command = Command::new(cargo_program());
    command.current_dir(workspace);
    without_outer_cargo(&mut command);
    command
}

/// The `CARGO` that runs us, if any, so that a nested build uses the same toolchain.
fn cargo_program() -> OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

fn without_outer_cargo(command: &mut Command) -> &mut Command {
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(set_by_outer_cargo) {
            command.env_remove(name);
        }
    }
    command
}

/// Whether cargo sets `name` for the programs it runs (`cargo run`, `cargo test`).
fn set_by_outer_cargo(name: &str) -> bool {
    const NAMES: [&str; 8] = [
        "CARGO_MANIFEST_DIR",
        "CARGO_MANIFEST_PATH",
        "CARGO_MANIFEST_LINKS",
        "CARGO_CRATE_NAME",
        "CARGO_BIN_NAME",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_TARGET_TMPDIR",
        "OUT_DIR",
    ];
    NAMES.contains(&name) || name.starts_with("CARGO_PKG_") || name.starts_with("CARGO_BIN_EXE_")
}

/// Runs `cargo ARGS` in the workspace, showing its progress on `progress` against the unit
/// count of the same build last time, and keeps this run's count for the next.
pub(super) fn run(paths: &Paths, args: &[String], progress: &Progress) -> Result<(), BuildError> {
    let count_file = count_file(paths, args);
    let total = fs::read_to_string(&count_file)
        .ok()
        .and_then(|text| text.trim().parse().ok());
    let counted = run_counting(&paths.workspace, args, total, progress)?;
    // Without the count the next run only loses its total, so a failure to keep it is
    // logged rather than failing a build that worked.
    let kept = count_file
        .parent()
        .map_or(Ok(()), fs::create_dir_all)
        .and_then(|()| fs::write(&count_file, counted.to_string()));
    if let Err(err) = kept {
        tracing::debug!(file = %count_file.display(), %err, "cannot keep the build's unit count");
    }
    Ok(())
}

/// Where the unit count of a build is kept: the arguments and the lockfile fix its unit graph.
fn count_file(paths: &Paths, args: &[String]) -> PathBuf {
    let mut key = Sha256::new();
    for arg in args {
        key.update(arg.as_bytes());
        key.update([0]);
    }
    key.update(fs::read(paths.workspace.join("Cargo.lock")).unwrap_or_default());
    let key = hex::encode(key.finalize());
    paths.state.join("build-units").join(&key[..32])
}

/// Runs cargo, reporting each finished unit; returns how many finished.
fn run_counting(
    workspace: &Path,
    args: &[String],
    total: Option<u64>,
    progress: &Progress,
) -> Result<u64, BuildError> {
    let cargo_err = |source| BuildError::Cargo {
        workspace: workspace.into(),
        source,
    };
    let sh = Shell::new().map_err(|e| cargo_err(io::Error::other(e)))?;
    sh.change_dir(workspace);
    let cargo = cargo_program();
    let mut command = Command::from(cmd!(sh, "{cargo} {args...}"));
    let mut child = without_outer_cargo(&mut command)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(cargo_err)?;
    let (Some(stdout), Some(mut stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(cargo_err(io::Error::other("cargo's output is not piped")));
    };
    // stderr is drained on its own thread so that neither pipe fills while the other is read.
    let (counted, stderr) = thread::scope(|scope| {
        let stderr = scope.spawn(move || {
            let mut bytes = Vec::new();
            let _ = stderr.read_to_end(&mut bytes);
            String::from_utf8_lossy(&bytes).into_owned()
        });
        let counted = follow(BufReader::new(stdout), total, |compiled| {
            progress.set_message(compiled.to_string());
        });
        let stderr = stderr
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (counted, stderr)
    });
    let status = child.wait().map_err(cargo_err)?;
    if !status.success() {
        return Err(BuildError::Failed {
            command: format!("cargo {}", args.join(" ")),
            tail: last_lines(&stderr, 30, "\n"),
        });
    }
    counted.map_err(cargo_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MESSAGES: &str = r#"{"reason":"compiler-artifact","package_id":"registry+https://github.com/rust-lang/crates.io-index#libc@0.2.155","manifest_path":"/r/libc/Cargo.toml","target":{"kind":["custom-build"],"crate_types":["bin"],"name":"build-script-build","src_path":"/r/libc/build.rs","edition":"2015","doc":false,"doctest":false,"test":false},"profile":{"opt_level":"0","debuginfo":0,"debug_assertions":false,"overflow_checks":false,"test":false},"features":["std"],"filenames":["/t/release/build/libc-1/build-script-build"],"executable":null,"fresh":true}
{"reason":"build-script-executed","package_id":"registry+https://github.com/rust-lang/crates.io-index#libc@0.2.155","linked_libs":[],"linked_paths":[],"cfgs":["freebsd11"],"env":[],"out_dir":"/t/out"}
{"reason":"compiler-artifact","package_id":"registry+https://github.com/rust-lang/crates.io-index#libc@0.2.155","manifest_path":"/r/libc/Cargo.toml","target":{"kind":["lib"],"crate_types":["lib"],"name":"libc","src_path":"/r/libc/src/lib.rs","edition":"2015","doc":true,"doctest":true,"test":true},"profile":{"opt_level":"3","debuginfo":0,"debug_assertions":false,"overflow_checks":false,"test":false},"features":["std"],"filenames":["/t/liblibc.rlib"],"executable":null,"fresh":false}
{"reason":"compiler-message","package_id":"path+file:///w/probe#0.1.0","manifest_path":"/w/probe/Cargo.toml","target":{"kind":["bin"],"crate_types":["bin"],"name":"sinew-probe","src_path":"/w/probe/src/main.rs"},"message":{"rendered":"warning: unused\n","level":"warning"}}
{"reason":"compiler-artifact","package_id":"path+file:///w/bins/probe#sinew-probe@0.1.0","manifest_path":"/w/bins/probe/Cargo.toml","target":{"kind":["bin"],"crate_types":["bin"],"name":"sinew-probe","src_path":"/w/bins/probe/src/main.rs","edition":"2021","doc":true,"doctest":false,"test":true},"profile":{"opt_level":"3","debuginfo":0,"debug_assertions":false,"overflow_checks":false,"test":false},"features":[],"filenames":["/t/sinew-probe"],"executable":"/t/sinew-probe","fresh":false}
{"reason":"build-finished","success":true}
"#;

    #[test]
    fn a_nested_cargo_drops_what_an_outer_cargo_set_and_keeps_its_configuration() {
        for outer in [
            "CARGO_PKG_NAME",
            "CARGO_PKG_VERSION_MAJOR",
            "CARGO_MANIFEST_DIR",
            "CARGO_BIN_EXE_sinew-run",
            "OUT_DIR",
        ] {
            assert!(set_by_outer_cargo(outer), "{outer}");
        }
        for configuration in [
            "CARGO_HOME",
            "CARGO_TARGET_DIR",
            "CARGO_INCREMENTAL",
            "CARGO_PROFILE_DEV_DEBUG",
            "CARGO",
            "CC_aarch64_unknown_linux_musl",
        ] {
            assert!(!set_by_outer_cargo(configuration), "{configuration}");
        }
    }

    #[test]
    fn only_compiler_artifacts_count_as_finished_units() {
        let mut shown = Vec::new();
        let counted = follow(MESSAGES.as_bytes(), Some(3), |c| shown.push(c.to_string()))
            .expect("reading from memory");
        assert_eq!(counted, 3);
        assert_eq!(
            shown,
            [
                "1/3 crates compiled, latest libc",
                "2/3 crates compiled, latest libc",
                "3/3 crates compiled, latest sinew-probe",
            ]
        );
        assert_eq!(finished_crate("   Compiling libc v0.2.155"), None);
    }

    #[test]
    fn package_ids_name_their_package_in_every_form() {
        assert_eq!(package_name("path+file:///w/bins/kvd#0.1.0"), "kvd");
        assert_eq!(
            package_name("git+https://github.com/a/b?branch=x#openraft@0.9.1"),
            "openraft"
        );
        assert_eq!(
            package_name("libc 0.2.155 (registry+https://github.com/rust-lang/crates.io-index)"),
            "libc"
        );
    }

    #[test]
    fn without_a_total_that_holds_only_the_count_shows() {
        let compiled = |done, total| Compiled {
            done,
            total,
            latest: "ring".into(),
        };
        assert_eq!(
            compiled(4, None).to_string(),
            "4 crates compiled, latest ring"
        );
        assert_eq!(
            compiled(9, Some(8)).to_string(),
            "9 crates compiled, latest ring"
        );
        assert_eq!(Compiled::default().to_string(), "0 crates compiled");
    }

    #[test]
    fn the_count_is_kept_per_build_and_lockfile() {
        let dir = tempfile::tempdir().expect("tempdir");
        let paths = crate::build::tests::paths_in(dir.path());
        let args = |bin: &str| vec!["build".to_string(), "--bin".into(), bin.into()];
        let first = count_file(&paths, &args("a"));
        assert_eq!(first, count_file(&paths, &args("a")));
        assert_ne!(first, count_file(&paths, &args("b")));
        fs::create_dir_all(&paths.workspace).expect("workspace");
        fs::write(paths.workspace.join("Cargo.lock"), "changed").expect("lockfile");
        assert_ne!(first, count_file(&paths, &args("a")));
        assert!(first.starts_with(paths.state.join("build-units")));
    }
}
