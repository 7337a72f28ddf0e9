//! A process of a run (a build, the program) in a process group of its own, its output
//! read as it comes, and stopped as a whole: SIGTERM to the group first, so that a playbook
//! shuts its guests down and removes its directories (its janitor does that on SIGTERM),
//! then SIGKILL to whatever is left after a grace period. Guests the playbook started are
//! in process groups of their own but die with it (`PR_SET_PDEATHSIG`).

use std::process::ExitStatus;
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, watch};

/// How long a stopped program has to clean up after SIGTERM.
const GRACE: Duration = Duration::from_secs(10);

/// Which stream a chunk of output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// On its own.
    Exited(ExitStatus),
    /// Stopped by the presenter.
    Stopped,
}

/// Starts `command` in a new process group with piped output and no input, and calls
/// `output` with each chunk of output as it comes (UTF-8, never splitting a character)
/// until the process ends or `stop` turns true.
pub async fn run(
    mut command: Command,
    stop: &mut watch::Receiver<bool>,
    mut output: impl FnMut(Stream, String),
) -> std::io::Result<Ended> {
    command
        .process_group(0)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn()?;
    let group = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .map(Pid::from_raw);
    let (tx, mut rx) = mpsc::channel(64);
    if let Some(out) = child.stdout.take() {
        tokio::spawn(pump(out, Stream::Stdout, tx.clone()));
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(pump(err, Stream::Stderr, tx));
    }
    let ended = tokio::select! {
        status = until_exit(&mut child, &mut rx, &mut output) => Ended::Exited(status?),
        () = stopped(stop) => {
            if let Some(group) = group {
                stop_group(group, &mut child).await;
            }
            Ended::Stopped
        }
    };
    // Anything left in the group (a daemon the program forked) goes with it, and with it
    // the last holders of the pipes.
    if let Some(group) = group {
        let _ = killpg(group, Signal::SIGKILL);
    }
    while let Some((stream, text)) = rx.recv().await {
        output(stream, text);
    }
    Ok(ended)
}

/// Resolves once `stop` turns true (never, if its sender is gone without).
pub async fn stopped(stop: &mut watch::Receiver<bool>) {
    if stop.wait_for(|stop| *stop).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Passes output on until the process exits.
async fn until_exit(
    child: &mut Child,
    rx: &mut mpsc::Receiver<(Stream, String)>,
    output: &mut impl FnMut(Stream, String),
) -> std::io::Result<ExitStatus> {
    loop {
        tokio::select! {
            Some((stream, text)) = rx.recv() => output(stream, text),
            status = child.wait() => return status,
        }
    }
}

/// SIGTERM to the group, SIGKILL after the grace period; returns once the leader is gone.
async fn stop_group(group: Pid, child: &mut Child) {
    let _ = killpg(group, Signal::SIGTERM);
    if tokio::time::timeout(GRACE, child.wait()).await.is_err() {
        tracing::warn!(pid = %group, "a stopped run ignored SIGTERM for {GRACE:?}; killing it");
        let _ = killpg(group, Signal::SIGKILL);
        let _ = child.wait().await;
    }
}

/// Reads `reader` to its end, sending each chunk as text.
async fn pump(
    mut reader: impl AsyncRead + Unpin,
    stream: Stream,
    tx: mpsc::Sender<(Stream, String)>,
) {
    let mut buf = vec![0u8; 8192];
    let mut pending = Vec::new();
    loop {
        let n = match reader.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        pending.extend_from_slice(buf.get(..n).unwrap_or_default());
        let text = take_utf8(&mut pending);
        if !text.is_empty() && tx.send((stream, text)).await.is_err() {
            return;
        }
    }
    if !pending.is_empty() {
        let _ = tx
            .send((stream, String::from_utf8_lossy(&pending).into_owned()))
            .await;
    }
}

/// The text at the front of `bytes` up to a character cut in two at the end (left in
/// `bytes` for the next chunk); bytes that are not UTF-8 become U+FFFD.
fn take_utf8(bytes: &mut Vec<u8>) -> String {
    let complete = match std::str::from_utf8(bytes) {
        Ok(_) => bytes.len(),
        Err(e) if e.error_len().is_none() => e.valid_up_to(),
        Err(_) => bytes.len(),
    };
    let rest = bytes.split_off(complete);
    let text = String::from_utf8_lossy(bytes).into_owned();
    *bytes = rest;
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_character_cut_at_a_chunk_end_waits_for_its_rest() {
        let mut bytes = "aé".as_bytes().to_vec();
        let last = bytes.pop().unwrap();
        assert_eq!(take_utf8(&mut bytes), "a");
        bytes.push(last);
        assert_eq!(take_utf8(&mut bytes), "é");
        assert!(bytes.is_empty());
    }

    #[test]
    fn bytes_that_are_not_utf8_become_replacement_characters() {
        let mut bytes = vec![b'a', 0xff, b'b'];
        assert_eq!(take_utf8(&mut bytes), "a\u{fffd}b");
    }

    #[tokio::test]
    async fn stop_ends_the_whole_process_group() {
        let (tx, mut rx) = watch::channel(false);
        let mut command = Command::new("sh");
        command.args(["-c", "sleep 60 & echo $!; wait"]);
        let mut child_pid = String::new();
        // Stopped once the background sleep's pid is out, however slowly the shell starts.
        let ended = run(command, &mut rx, |_, text| {
            child_pid.push_str(&text);
            if child_pid.ends_with('\n') {
                tx.send_replace(true);
            }
        })
        .await
        .unwrap();
        assert_eq!(ended, Ended::Stopped);
        let pid = Pid::from_raw(child_pid.trim().parse().unwrap());
        // The background sleep was in the group: it dies (SIGKILL is delivered a moment
        // later) and is gone, or a zombie of init's.
        let gone = || {
            let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            state.is_empty() || state.contains(") Z")
        };
        for _ in 0..100 {
            if gone() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(gone(), "the group's background sleep still runs");
    }
}
