//! Building what a block runs: cargo for playbooks (its JSON messages give the diagnostics
//! about the block's `main.rs` and the executable), `go build` for `.play` blocks. Each
//! build reports to the slide as it goes and can be stopped like the program.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use tokio::process::Command;
use tokio::sync::watch;

use super::event::RunEvent;
use super::process::{self, Ended, Stream};

/// How a build ended.
#[derive(Debug)]
pub enum Built {
    /// The executable to run.
    Executable(PathBuf),
    /// Stopped by the presenter.
    Stopped,
    /// It failed; the diagnostics were sent already. The text says why in a line.
    Failed(String),
    /// There is nothing to compile (a guest block's shell command).
    Nothing,
}

/// A cargo JSON message, as far as a build needs it.
#[derive(Debug, Deserialize)]
struct Message {
    reason: String,
    #[serde(default)]
    target: Option<Target>,
    #[serde(default)]
    filenames: Vec<PathBuf>,
    #[serde(default)]
    executable: Option<PathBuf>,
    #[serde(default)]
    message: Option<Diagnostic>,
}

#[derive(Debug, Deserialize)]
struct Target {
    name: String,
}

/// A compiler diagnostic, as cargo relays it and as `rustc --error-format=json` prints it.
#[derive(Debug, Deserialize)]
struct Diagnostic {
    #[serde(default)]
    message: String,
    level: String,
    rendered: Option<String>,
    #[serde(default)]
    spans: Vec<Span>,
}

#[derive(Debug, Deserialize)]
struct Span {
    file_name: String,
    line_start: usize,
    is_primary: bool,
}

/// What a cargo build produced: each target's files, by target name.
#[derive(Debug, Default)]
pub struct Artifacts {
    /// Files of each finished target (a library's `.rlib` or `.so`).
    pub files: HashMap<String, Vec<PathBuf>>,
    /// Executables, by binary name.
    pub executables: HashMap<String, PathBuf>,
}

/// Runs `cargo` (a command already in the right directory, with the build's arguments but
/// not the message format; `rustc_args` go after `--`, for `cargo rustc`), sending its progress as [`RunEvent::Build`] and the diagnostics
/// about `main_rs` (a path relative to the package, as cargo names it; `None`: errors only)
/// as [`RunEvent::Diagnostic`]s. Returns how it ended and what it built.
pub async fn cargo(
    mut cargo: Command,
    rustc_args: &[&str],
    main_rs: Option<&str>,
    stop: &mut watch::Receiver<bool>,
    send: &mut impl FnMut(RunEvent),
) -> std::io::Result<(Ended, Artifacts)> {
    cargo.arg("--message-format=json-diagnostic-rendered-ansi");
    if !rustc_args.is_empty() {
        cargo.arg("--").args(rustc_args);
    }
    cargo.env("CARGO_TERM_COLOR", "always");
    let mut stdout = String::new();
    let mut artifacts = Artifacts::default();
    let ended = process::run(cargo, stop, |stream, text| match stream {
        Stream::Stderr => send(RunEvent::Build { text }),
        Stream::Stdout => {
            for line in complete_lines(&mut stdout, &text) {
                if let Ok(message) = serde_json::from_str::<Message>(&line) {
                    artifacts.add(&message);
                    if message.reason == "compiler-message" {
                        if let Some(event) = message.message.and_then(|d| diagnostic(d, main_rs)) {
                            send(event);
                        }
                    }
                }
            }
        }
    })
    .await?;
    Ok((ended, artifacts))
}

/// Builds binary `bin` with `cargo` as [`cargo`] does.
pub async fn cargo_bin(
    command: Command,
    bin: &str,
    stop: &mut watch::Receiver<bool>,
    send: &mut impl FnMut(RunEvent),
) -> std::io::Result<Built> {
    let (ended, mut artifacts) = cargo(command, &[], None, stop, send).await?;
    Ok(match (ended, artifacts.executables.remove(bin)) {
        (Ended::Stopped, _) => Built::Stopped,
        (Ended::Exited(status), Some(path)) if status.success() => Built::Executable(path),
        (Ended::Exited(status), _) => Built::Failed(format!("the build failed ({status})")),
    })
}

impl Artifacts {
    /// Records what a `compiler-artifact` message reports.
    fn add(&mut self, message: &Message) {
        let Some(target) = (message.reason == "compiler-artifact")
            .then_some(message.target.as_ref())
            .flatten()
        else {
            return;
        };
        if let Some(executable) = &message.executable {
            self.executables
                .insert(target.name.clone(), executable.clone());
        }
        self.files
            .insert(target.name.replace('-', "_"), message.filenames.clone());
    }
}

/// Runs `rustc` (with `--error-format=json` among its arguments, in the directory that
/// holds `main_rs`), sending its diagnostics about `main_rs` as events; returns how it
/// ended.
pub async fn rustc(
    rustc: Command,
    main_rs: &str,
    stop: &mut watch::Receiver<bool>,
    send: &mut impl FnMut(RunEvent),
) -> std::io::Result<Ended> {
    let mut stderr = String::new();
    process::run(rustc, stop, |stream, text| match stream {
        Stream::Stdout => send(RunEvent::Build { text }),
        Stream::Stderr => {
            for line in complete_lines(&mut stderr, &text) {
                match serde_json::from_str::<Diagnostic>(&line) {
                    Ok(message) => {
                        if let Some(event) = diagnostic(message, Some(main_rs)) {
                            send(event);
                        }
                    }
                    Err(_) => send(RunEvent::Build {
                        text: format!("{line}\n"),
                    }),
                }
            }
        }
    })
    .await
}

/// Appends `text` to `pending` and takes out every line it completes (without their
/// newlines); a partial last line stays for the next chunk.
fn complete_lines(pending: &mut String, text: &str) -> Vec<String> {
    pending.push_str(text);
    let Some(end) = pending.rfind('\n') else {
        return Vec::new();
    };
    let rest = pending.split_off(end + 1);
    let complete = std::mem::replace(pending, rest);
    complete.lines().map(str::to_owned).collect()
}

/// A diagnostic as an event: every error, and warnings about the block itself; rustc's
/// closing count of errors says nothing the slide does not show.
fn diagnostic(diagnostic: Diagnostic, main_rs: Option<&str>) -> Option<RunEvent> {
    if diagnostic.message.starts_with("aborting due to") {
        return None;
    }
    let line = diagnostic
        .spans
        .iter()
        .find(|span| span.is_primary && Some(span.file_name.as_str()) == main_rs)
        .map(|span| span.line_start);
    let about_block = line.is_some() || main_rs.is_none();
    if diagnostic.level != "error" && !about_block {
        return None;
    }
    Some(RunEvent::Diagnostic {
        level: diagnostic.level,
        line,
        rendered: diagnostic.rendered.unwrap_or_default(),
    })
}

/// Builds the Go program in `dir` (`main.go`, whose block starts at line `first_line`) into
/// `dir/main`, with go's errors as diagnostics on the block's lines.
pub async fn go(
    dir: &Path,
    first_line: usize,
    stop: &mut watch::Receiver<bool>,
    send: &mut impl FnMut(RunEvent),
) -> std::io::Result<Built> {
    let mut go = Command::new("go");
    go.current_dir(dir)
        .args(["build", "-o", "main", "main.go"])
        .env("GO111MODULE", "off");
    let mut errors = String::new();
    let ended =
        match process::run(go, stop, |_, text| errors.push_str(&text)).await {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Built::Failed(
                "Go blocks need the Go toolchain: `go` is not on PATH (Debian: apt-get install \
                 golang-go)"
                    .into(),
            )),
            other => other?,
        };
    for line in errors.lines() {
        send(go_diagnostic(line, first_line));
    }
    Ok(match ended {
        Ended::Stopped => Built::Stopped,
        Ended::Exited(status) if status.success() => Built::Executable(dir.join("main")),
        Ended::Exited(status) => Built::Failed(format!("go build failed ({status})")),
    })
}

/// A line of `go build` output; `./main.go:LINE:COL: msg` names a line of the block.
fn go_diagnostic(line: &str, first_line: usize) -> RunEvent {
    let named = line
        .strip_prefix("./main.go:")
        .and_then(|rest| rest.split(':').next())
        .and_then(|n| n.parse::<usize>().ok())
        .and_then(|n| n.checked_sub(first_line.saturating_sub(1)))
        .filter(|n| *n > 0);
    RunEvent::Diagnostic {
        level: "error".into(),
        line: named,
        rendered: format!("{line}\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_in_the_block_name_its_line_and_other_warnings_are_dropped() {
        let error = r#"{"$message_type":"diagnostic","level":"error","rendered":"error[E0425]","spans":[{"file_name":"src/main.rs","line_start":4,"is_primary":true}]}"#;
        let warning = r#"{"level":"warning","rendered":"w","spans":[{"file_name":"/x/lib.rs","line_start":9,"is_primary":true}]}"#;
        let parse = |line| serde_json::from_str::<Diagnostic>(line).unwrap();
        assert_eq!(
            diagnostic(parse(error), Some("src/main.rs")),
            Some(RunEvent::Diagnostic {
                level: "error".into(),
                line: Some(4),
                rendered: "error[E0425]".into()
            })
        );
        assert_eq!(diagnostic(parse(warning), Some("src/main.rs")), None);
    }

    #[test]
    fn lines_are_taken_out_when_complete() {
        let mut pending = String::new();
        assert!(complete_lines(&mut pending, "{\"a\"").is_empty());
        assert_eq!(
            complete_lines(&mut pending, ":1}\n{}\n{"),
            vec!["{\"a\":1}", "{}"]
        );
        assert_eq!(pending, "{");
    }

    #[test]
    fn artifacts_name_libraries_and_executables() {
        let mut artifacts = Artifacts::default();
        for line in [
            r#"{"reason":"compiler-artifact","target":{"name":"hello"},"filenames":["/t/debug/hello"],"executable":"/t/debug/hello"}"#,
            r#"{"reason":"compiler-artifact","target":{"name":"serde-json"},"filenames":["/t/libserde_json-1.rlib"]}"#,
            r#"{"reason":"build-finished","success":true}"#,
        ] {
            artifacts.add(&serde_json::from_str::<Message>(line).unwrap());
        }
        assert_eq!(
            artifacts.executables["hello"],
            PathBuf::from("/t/debug/hello")
        );
        assert_eq!(
            artifacts.files["serde_json"],
            vec![PathBuf::from("/t/libserde_json-1.rlib")]
        );
    }

    #[test]
    fn go_errors_are_placed_on_the_blocks_lines() {
        assert_eq!(
            go_diagnostic("./main.go:12:2: undefined: x", 10),
            RunEvent::Diagnostic {
                level: "error".into(),
                line: Some(3),
                rendered: "./main.go:12:2: undefined: x\n".into()
            }
        );
        let RunEvent::Diagnostic { line, .. } = go_diagnostic("./main.go:2:1: bad", 10) else {
            panic!("not a diagnostic");
        };
        assert_eq!(line, None);
    }
}
