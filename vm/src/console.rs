//! A guest's serial console as QEMU writes it to a log file, and waiting on it.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use crate::process::Process;

/// How often the log file is re-read while waiting.
const POLL: Duration = Duration::from_millis(20);
/// Console lines quoted in errors.
const TAIL_LINES: usize = 15;

/// The console log of one [`crate::Vm`]. Waits also watch the QEMU process, so a
/// guest that dies fails the wait at once instead of at its deadline.
#[derive(Debug, Clone)]
pub struct Console {
    name: String,
    path: PathBuf,
    qemu_log: PathBuf,
    process: Process,
}

/// Error from reading or waiting on a console.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// The log could not be read.
    #[error("cannot read console log {path}: {source}")]
    Read {
        /// The log file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The deadline passed first.
    #[error("guest {name}: no {what} on the console within {waited:?} (log {path}); last lines:\n{tail}")]
    Timeout {
        /// The guest.
        name: String,
        /// What was awaited.
        what: String,
        /// How long it waited.
        waited: Duration,
        /// The log file.
        path: PathBuf,
        /// The end of the console.
        tail: String,
    },
    /// QEMU exited first.
    #[error("guest {name}: QEMU exited ({status}) before {what} appeared; QEMU said: {qemu_output}\nlast console lines:\n{tail}")]
    Exited {
        /// The guest.
        name: String,
        /// What was awaited.
        what: String,
        /// QEMU's exit status.
        status: ExitStatus,
        /// The end of QEMU's own stdout/stderr.
        qemu_output: String,
        /// The end of the console.
        tail: String,
    },
}

impl Console {
    pub(crate) fn new(name: &str, path: &Path, qemu_log: &Path, process: Process) -> Console {
        Console {
            name: name.to_owned(),
            path: path.to_owned(),
            qemu_log: qemu_log.to_owned(),
            process,
        }
    }

    /// The log file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Everything the guest printed so far (lossily decoded, `\r` removed).
    pub fn text(&self) -> Result<String, ConsoleError> {
        let mut buf = Vec::new();
        read_from(&self.path, 0, &mut buf).map_err(|source| ConsoleError::Read {
            path: self.path.clone(),
            source,
        })?;
        Ok(String::from_utf8_lossy(&buf).replace('\r', ""))
    }

    /// The last `n` lines printed (fewer if there are fewer; empty if unreadable).
    pub fn last_lines(&self, n: usize) -> Vec<String> {
        tail(&self.text().unwrap_or_default(), n)
    }

    /// Waits up to `timeout` until the guest has printed anything at all: the sign
    /// that it is booting (a guest hung under KVM prints nothing).
    pub async fn wait_for_output(&self, timeout: Duration) -> Result<(), ConsoleError> {
        let start = Instant::now();
        let deadline = start + timeout;
        loop {
            let exited = self.process.exit_status();
            if std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0) > 0 {
                return Ok(());
            }
            self.fail_or_sleep(exited, start, deadline, "output")
                .await?;
        }
    }

    /// Waits up to `timeout` for a complete line containing `needle`, searching
    /// the whole log from its start, and returns it without its line ending.
    pub async fn wait_for_line(
        &self,
        needle: &str,
        timeout: Duration,
    ) -> Result<String, ConsoleError> {
        let start = Instant::now();
        let deadline = start + timeout;
        let what = format!("line containing {needle:?}");
        let mut offset = 0u64;
        let mut pending = Vec::new();
        loop {
            let exited = self.process.exit_status();
            let read = read_from(&self.path, offset, &mut pending).map_err(|source| {
                ConsoleError::Read {
                    path: self.path.clone(),
                    source,
                }
            })?;
            offset += read as u64;
            let mut consumed = 0;
            for line in pending.split_inclusive(|b| *b == b'\n') {
                let complete = line.ends_with(b"\n");
                // A line still being written may be cut anywhere; it only counts
                // once QEMU is gone and it can grow no more.
                if !complete && exited.is_none() {
                    break;
                }
                let text = String::from_utf8_lossy(line);
                let text = text.trim_end_matches(['\n', '\r']);
                if text.contains(needle) {
                    return Ok(text.to_owned());
                }
                consumed += line.len();
            }
            pending.drain(..consumed);
            self.fail_or_sleep(exited, start, deadline, &what).await?;
        }
    }

    /// Between polls: fails if QEMU had exited before the log was last read (so
    /// everything it wrote was seen) or the deadline passed, else sleeps.
    async fn fail_or_sleep(
        &self,
        exited: Option<ExitStatus>,
        start: Instant,
        deadline: Instant,
        what: &str,
    ) -> Result<(), ConsoleError> {
        if let Some(status) = exited {
            return Err(ConsoleError::Exited {
                name: self.name.clone(),
                what: what.to_owned(),
                status,
                qemu_output: qemu_output(&self.qemu_log),
                tail: self.last_lines(TAIL_LINES).join("\n"),
            });
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(ConsoleError::Timeout {
                name: self.name.clone(),
                what: what.to_owned(),
                waited: now - start,
                path: self.path.clone(),
                tail: self.last_lines(TAIL_LINES).join("\n"),
            });
        }
        tokio::time::sleep(POLL.min(deadline - now)).await;
        Ok(())
    }
}

/// Appends the file's bytes from `offset` to `buf`; a file not created yet reads
/// as empty.
fn read_from(path: &Path, offset: u64, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    file.seek(SeekFrom::Start(offset))?;
    file.read_to_end(buf)
}

fn tail(text: &str, n: usize) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| (*l).to_owned())
        .collect()
}

/// The end of QEMU's own output file, for error messages.
pub(crate) fn qemu_output(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines = tail(text.trim(), 10);
    if lines.is_empty() {
        "(nothing)".into()
    } else {
        lines.join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::process::Command;

    fn console(dir: &Path, program: &str, args: &[&str]) -> Console {
        let child = Command::new(program).args(args).spawn().unwrap();
        let log = dir.join("console.log");
        std::fs::write(&log, b"").unwrap();
        Console::new(
            "t",
            &log,
            &dir.join("console.log.qemu"),
            Process::new(child),
        )
    }

    #[tokio::test]
    async fn waits_for_complete_lines_only() {
        let dir = tempfile::tempdir().unwrap();
        let con = console(dir.path(), "sleep", &["30"]);
        let mut log = std::fs::OpenOptions::new()
            .append(true)
            .open(con.path())
            .unwrap();
        log.write_all(b"boot\r\nSINEW-READY x86_64 6.1").unwrap();
        let writer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            log.write_all(b".0-56-cloud-amd64\r\nmore").unwrap();
        });
        let line = con
            .wait_for_line("SINEW-READY", Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(line, "SINEW-READY x86_64 6.1.0-56-cloud-amd64");
        writer.await.unwrap();
        con.wait_for_output(Duration::from_secs(1)).await.unwrap();
        assert_eq!(
            con.last_lines(2),
            ["SINEW-READY x86_64 6.1.0-56-cloud-amd64", "more"]
        );
        let err = con
            .wait_for_line("never", Duration::from_millis(100))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"never\"") && err.contains("more"), "{err}");
        con.process.kill().unwrap();
    }

    #[tokio::test]
    async fn a_dead_process_fails_the_wait_at_once() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("console.log.qemu"),
            b"qemu-system-x86_64: bad thing\n",
        )
        .unwrap();
        let con = console(dir.path(), "false", &[]);
        let start = Instant::now();
        let err = con
            .wait_for_output(Duration::from_secs(30))
            .await
            .unwrap_err();
        assert!(start.elapsed() < Duration::from_secs(5));
        let msg = err.to_string();
        assert!(
            matches!(err, ConsoleError::Exited { .. }) && msg.contains("bad thing"),
            "{msg}"
        );
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), ["b", "c"]);
        assert_eq!(tail("a", 5), ["a"]);
        assert!(tail("", 3).is_empty());
    }
}
