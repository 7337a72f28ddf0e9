//! Building what a block runs: cargo for playbooks (its JSON messages give the diagnostics
//! about the block's `main.rs` and the executable), `go build` for `.play` blocks. Each
//! build reports to the slide as it goes and can be stopped like the program.

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
}

/// A cargo JSON message, as far as a build needs it.
#[derive(Debug, Deserialize)]
struct Message {
    reason: String,
    #[serde(default)]
    target: Option<Target>,
    #[serde(default)]
    executable: Option<PathBuf>,
    #[serde(default)]
    message: Option<Diagnostic>,
}

#[derive(Debug, Deserialize)]
struct Target {
    name: String,
}

#[derive(Debug, Deserialize)]
struct Diagnostic {
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

/// Builds binary `bin` with `cargo` (a command already in the right directory, with the
/// build's arguments but not the message format), sending the diagnostics about `main_rs`
/// (a path relative to the package, as cargo names it) as [`RunEvent::Diagnostic`]s with
/// `line_offset` taken off their lines.
pub async fn cargo(
    mut cargo: Command,
    bin: &str,
    main_rs: Option<&str>,
    stop: &mut watch::Receiver<bool>,
    send: &mut impl FnMut(RunEvent),
) -> std::io::Result<Built> {
    cargo.arg("--message-format=json-diagnostic-rendered-ansi");
    cargo.env("CARGO_TERM_COLOR", "always");
    let mut stdout = String::new();
    let mut executable = None;
    let ended = process::run(cargo, stop, |stream, text| match stream {
        Stream::Stderr => send(RunEvent::Build { text }),
        Stream::Stdout => {
            stdout.push_str(&text);
            while let Some((line, rest)) = stdout.split_once('\n') {
                if let Ok(message) = serde_json::from_str::<Message>(line) {
                    if let Some(path) = artifact(&message, bin) {
                        executable = Some(path);
                    }
                    if let Some(event) = diagnostic(message, main_rs) {
                        send(event);
                    }
                }
                stdout = rest.to_owned();
            }
        }
    })
    .await?;
    Ok(match (ended, executable) {
        (Ended::Stopped, _) => Built::Stopped,
        (Ended::Exited(status), Some(path)) if status.success() => Built::Executable(path),
        (Ended::Exited(status), _) => Built::Failed(format!("the build failed ({status})")),
    })
}

/// The executable a `compiler-artifact` message reports for binary `bin`.
fn artifact(message: &Message, bin: &str) -> Option<PathBuf> {
    (message.reason == "compiler-artifact" && message.target.as_ref()?.name == bin)
        .then(|| message.executable.clone())
        .flatten()
}

/// A compiler message as an event: every error, and warnings about the block itself.
fn diagnostic(message: Message, main_rs: Option<&str>) -> Option<RunEvent> {
    if message.reason != "compiler-message" {
        return None;
    }
    let diagnostic = message.message?;
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
        let error = r#"{"reason":"compiler-message","message":{"level":"error","rendered":"error[E0425]","spans":[{"file_name":"src/main.rs","line_start":4,"is_primary":true}]}}"#;
        let warning = r#"{"reason":"compiler-message","message":{"level":"warning","rendered":"w","spans":[{"file_name":"/x/lib.rs","line_start":9,"is_primary":true}]}}"#;
        let parse = |line| serde_json::from_str::<Message>(line).unwrap();
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
    fn an_artifact_names_the_executable_of_its_binary() {
        let line = r#"{"reason":"compiler-artifact","target":{"name":"hello"},"executable":"/t/debug/hello"}"#;
        let message = serde_json::from_str::<Message>(line).unwrap();
        assert_eq!(artifact(&message, "hello"), Some("/t/debug/hello".into()));
        assert_eq!(artifact(&message, "other"), None);
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
