//! The deck's lab, kept by a child process (`sinew present-lab`) that boots the guests
//! when the first `guest=` block runs, keeps them across slides, runs each block's command
//! on its guest and stops it on request. A process of its own, because a playbook run
//! answers SIGINT and SIGTERM by killing its guests and exiting, which the server must do
//! its own way (every run stopped first). The two talk in JSON lines over the keeper's
//! stdin and stdout; the keeper's task lines go to the server's stderr. Closing its stdin
//! (the server quitting, or dying) shuts the lab down.

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::{mpsc, oneshot};

use super::super::deck::LabMachine;

/// What the server asks of the keeper.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum LabRequest {
    /// Runs `command` with `sh -c` on `guest`.
    Run {
        /// Names the run in the keeper's answers.
        id: u64,
        /// The machine.
        guest: String,
        /// The command, as the slide shows it.
        command: String,
    },
    /// Stops run `id` on `guest` (SIGTERM to its process group there).
    Stop {
        /// The run.
        id: u64,
        /// The machine it runs on.
        guest: String,
    },
}

/// What the keeper tells the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum LabEvent {
    /// The lab is up.
    Ready,
    /// The lab could not boot; the keeper exits.
    Failed {
        /// Why.
        message: String,
    },
    /// Output of run `id`.
    Output {
        /// The run.
        id: u64,
        /// `stdout` or `stderr`.
        stream: String,
        /// The bytes, as UTF-8.
        text: String,
    },
    /// Run `id` ended.
    Exit {
        /// The run.
        id: u64,
        /// Its exit code, when it exited.
        code: Option<i32>,
        /// The signal that killed it, when one did.
        signal: Option<i32>,
    },
    /// Run `id` could not run.
    Error {
        /// The run.
        id: u64,
        /// Why.
        message: String,
    },
}

/// The command line that runs `command` on a guest as run `id`: the shell records its pid,
/// which leads the process group the agent gives each command, so that Stop can signal
/// the group.
pub fn guest_argv(id: u64, command: &str) -> Vec<String> {
    vec![
        "sh".into(),
        "-c".into(),
        format!("mkdir -p {PID_DIR} && echo $$ > {PID_DIR}/{id}.pid && exec sh -c \"$1\"",),
        "sh".into(),
        command.into(),
    ]
}

/// The command line that stops run `id` on its guest.
pub fn stop_argv(id: u64) -> Vec<String> {
    vec![
        "sh".into(),
        "-c".into(),
        format!("kill -TERM -- -$(cat {PID_DIR}/{id}.pid)"),
    ]
}

/// Where a guest keeps the pids of the deck's commands.
const PID_DIR: &str = "/run/sinew-present";

/// The server's side: the keeper process and the runs waiting for its answers.
#[derive(Debug)]
pub struct Lab {
    stdin: tokio::sync::Mutex<ChildStdin>,
    waiting: Arc<Mutex<HashMap<u64, mpsc::UnboundedSender<LabEvent>>>>,
    next: Mutex<u64>,
    child: Child,
}

impl Lab {
    /// Starts the keeper (`program present-lab NAME=ARCH...`) and waits until the lab is up
    /// or failed.
    pub async fn start(program: &Path, machines: &[LabMachine]) -> Result<Self, String> {
        let mut command = Command::new(program);
        command
            .arg("present-lab")
            .args(machines.iter().map(|m| format!("{}={}", m.name, m.arch)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot start the lab keeper {}: {e}", program.display()))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err("the lab keeper has no pipes".into());
        };
        let waiting: Arc<Mutex<HashMap<u64, mpsc::UnboundedSender<LabEvent>>>> = Arc::default();
        let (ready_tx, ready_rx) = oneshot::channel();
        let routes = Arc::clone(&waiting);
        tokio::spawn(async move {
            let mut ready = Some(ready_tx);
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let Ok(event) = serde_json::from_str::<LabEvent>(&line) else {
                    tracing::warn!(%line, "the lab keeper said something that is not an event");
                    continue;
                };
                let id = match &event {
                    LabEvent::Ready | LabEvent::Failed { .. } => {
                        if let Some(ready) = ready.take() {
                            let _ = ready.send(event);
                        }
                        continue;
                    }
                    LabEvent::Output { id, .. }
                    | LabEvent::Exit { id, .. }
                    | LabEvent::Error { id, .. } => *id,
                };
                let done = !matches!(event, LabEvent::Output { .. });
                let mut routes = routes.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(route) = routes.get(&id) {
                    let _ = route.send(event);
                }
                if done {
                    routes.remove(&id);
                }
            }
            // The keeper is gone: every run waiting hears so.
            let mut routes = routes.lock().unwrap_or_else(|e| e.into_inner());
            for (id, route) in routes.drain() {
                let _ = route.send(LabEvent::Error {
                    id,
                    message: "the lab keeper exited".into(),
                });
            }
        });
        match ready_rx.await {
            Ok(LabEvent::Ready) => Ok(Self {
                stdin: tokio::sync::Mutex::new(stdin),
                waiting,
                next: Mutex::new(0),
                child,
            }),
            Ok(LabEvent::Failed { message }) => {
                Err(format!("the deck's lab did not boot: {message}"))
            }
            _ => Err("the lab keeper exited before its lab was up".into()),
        }
    }

    /// Starts `command` on `guest`; its events come on the returned channel, ending with
    /// `Exit` or `Error`.
    pub async fn run(
        &self,
        guest: &str,
        command: &str,
    ) -> Result<(u64, mpsc::UnboundedReceiver<LabEvent>), String> {
        let id = {
            let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
            *next += 1;
            *next
        };
        let (tx, rx) = mpsc::unbounded_channel();
        self.waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, tx);
        self.send(&LabRequest::Run {
            id,
            guest: guest.to_owned(),
            command: command.to_owned(),
        })
        .await?;
        Ok((id, rx))
    }

    /// Shuts the lab down: the keeper's stdin closes, and it stops its guests and exits.
    pub async fn shutdown(self) {
        let Self {
            stdin, mut child, ..
        } = self;
        drop(stdin);
        if tokio::time::timeout(std::time::Duration::from_secs(60), child.wait())
            .await
            .is_err()
        {
            tracing::warn!("the lab keeper did not shut its lab down within 60 s; killing it");
            let _ = child.kill().await;
        }
    }

    /// Asks the keeper to stop run `id` on `guest`.
    pub async fn stop(&self, id: u64, guest: &str) -> Result<(), String> {
        self.send(&LabRequest::Stop {
            id,
            guest: guest.to_owned(),
        })
        .await
    }

    async fn send(&self, request: &LabRequest) -> Result<(), String> {
        let mut line = serde_json::to_string(request).map_err(|e| e.to_string())?;
        line.push('\n');
        self.stdin
            .lock()
            .await
            .write_all(line.as_bytes())
            .await
            .map_err(|e| format!("the lab keeper is gone: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_events_are_json_lines_with_a_tag() {
        let request = LabRequest::Run {
            id: 3,
            guest: "amd".into(),
            command: "uname -m".into(),
        };
        let line = serde_json::to_string(&request).unwrap();
        assert_eq!(
            line,
            r#"{"op":"run","id":3,"guest":"amd","command":"uname -m"}"#
        );
        assert_eq!(serde_json::from_str::<LabRequest>(&line).unwrap(), request);
        let event: LabEvent =
            serde_json::from_str(r#"{"kind":"exit","id":3,"code":0,"signal":null}"#).unwrap();
        assert_eq!(
            event,
            LabEvent::Exit {
                id: 3,
                code: Some(0),
                signal: None
            }
        );
    }

    #[test]
    fn a_guest_command_records_the_pid_that_stop_signals() {
        let argv = guest_argv(7, "sleep 600");
        assert_eq!(argv[4], "sleep 600", "the command is passed as written");
        assert!(argv[2].contains("/run/sinew-present/7.pid"));
        assert!(stop_argv(7)[2].contains("kill -TERM -- -$(cat /run/sinew-present/7.pid)"));
    }
}
