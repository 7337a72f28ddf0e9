//! Running a deck's blocks: one job per block at a time (a new Run of a block stops the
//! one before), each a build and then the program, every step reported as a [`RunEvent`]
//! and stoppable. A job whose listener goes away (the tab closed, the fetch aborted) stops
//! itself, and so does every job when the server quits.

mod compile;
mod event;
pub mod lab;
mod outbox;
pub mod process;
mod scratch;
mod sdk;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

pub use event::RunEvent;
pub use outbox::Events;
pub use scratch::{Scratch, ScratchError};

use super::deck::{CodeBlock, LabMachine, Runnable};
use crate::paths::Paths;
use compile::Built;
use process::{Ended, Stream};
use sdk::Sdk;

/// The file in a deck's work directory that keeps its blocks' last output.
const CAPTURED: &str = "captured.json";

/// A short key for the deck file at `deck`: its work directory's name, and part of its
/// scratch packages' names.
fn deck_key(deck: &Path) -> String {
    use sha2::{Digest, Sha256};
    let canonical = deck.canonicalize().unwrap_or_else(|_| deck.to_path_buf());
    let mut key = hex::encode(Sha256::digest(canonical.as_os_str().as_encoded_bytes()));
    key.truncate(12);
    key
}

/// The output captured by earlier runs of the deck whose work directory is `work`; nothing
/// when there is none or it is unreadable.
fn load_captured(work: &Path) -> HashMap<String, Vec<RunEvent>> {
    std::fs::read(work.join(CAPTURED))
        .ok()
        .and_then(|json| serde_json::from_slice(&json).ok())
        .unwrap_or_default()
}

/// How much of a block's output its capture for `--export` keeps.
const CAPTURED_LIMIT: usize = 256 << 10;

/// What to run for a block.
#[derive(Debug, Clone)]
pub struct Job {
    /// The block's id (`3.0`).
    pub block: String,
    /// What the block runs.
    pub run: Runnable,
    /// The code to run: the block's text, or the presenter's edit of it.
    pub code: String,
    /// The block's first line in a Go file (1 for other blocks), for placing diagnostics.
    pub first_line: usize,
    /// The deck's lab, for a guest block.
    pub lab: Vec<LabMachine>,
}

impl Job {
    /// Block `block` (its id) as the deck has it, of a deck whose lab is `lab`; `None` when
    /// it does not run.
    pub fn of(block: String, code: &CodeBlock, lab: &[LabMachine]) -> Option<Self> {
        let run = code.run.clone()?;
        Some(Self {
            block,
            code: match &run {
                Runnable::Playbook { source } => source.clone(),
                _ => code.text(),
            },
            first_line: match &run {
                Runnable::Go { before, .. } => before.lines().count() + 1,
                _ => 1,
            },
            lab: lab.to_vec(),
            run,
        })
    }
}

/// A job in flight.
#[derive(Debug)]
struct Running {
    stop: Arc<watch::Sender<bool>>,
    task: JoinHandle<()>,
}

/// Starts and stops the jobs of one deck.
#[derive(Debug)]
pub struct Runner {
    scratch: Scratch,
    /// The deck's own directory in the state directory: Go builds, captured output.
    work: PathBuf,
    running: Mutex<HashMap<String, Running>>,
    /// One lock per block: a Run waits for an edit's build in flight (and then finds it
    /// fresh) instead of racing it.
    build_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// The deck's lab, once a guest block has booted it.
    lab: tokio::sync::Mutex<Option<Arc<lab::Lab>>>,
    /// The SDK as a shared library, once built (one build at a time).
    sdk: tokio::sync::Mutex<Option<Sdk>>,
    /// Each block's events of its last run, for `--export`.
    captured: Mutex<HashMap<String, Vec<RunEvent>>>,
}

impl Runner {
    /// A runner for the deck at `deck`, whose playbook blocks build against the workspace
    /// in `paths`; its output captured earlier is loaded.
    pub fn new(paths: &Paths, deck: &Path) -> Self {
        let key = deck_key(deck);
        let work = paths.state.join("present").join(&key);
        let captured = load_captured(&work);
        Self {
            scratch: Scratch::new(&key, &paths.workspace),
            work,
            running: Mutex::default(),
            build_locks: Mutex::default(),
            lab: tokio::sync::Mutex::default(),
            sdk: tokio::sync::Mutex::default(),
            captured: Mutex::new(captured),
        }
    }

    /// Starts `job`, after stopping the block's previous run; its events come on the
    /// returned channel, and dropping the channel stops the job.
    pub async fn start(self: &Arc<Self>, job: Job) -> Events {
        self.stop(&job.block).await;
        let (tx, rx) = outbox::channel();
        let (stop_tx, stop_rx) = watch::channel(false);
        let stop_tx = Arc::new(stop_tx);
        // The listener leaving is a Stop; the watch ends with the job (`done` dropped).
        let (done, job_ended) = oneshot::channel::<()>();
        let (listener, stopper) = (tx.watcher(), Arc::clone(&stop_tx));
        tokio::spawn(async move {
            tokio::select! {
                () = listener.closed() => { stopper.send_replace(true); }
                _ = job_ended => {}
            }
        });
        let runner = Arc::clone(self);
        let block = job.block.clone();
        let task = tokio::spawn(async move {
            runner.job(job, tx, stop_rx).await;
            drop(done);
        });
        let replaced = self.lock_running().insert(
            block,
            Running {
                stop: stop_tx,
                task,
            },
        );
        // Two Runs of one block at once: the one that came first stops.
        if let Some(earlier) = replaced {
            earlier.stop.send_replace(true);
        }
        rx
    }

    /// Stops the block's run, if any, and waits until it has ended.
    pub async fn stop(&self, block: &str) {
        let running = self.lock_running().remove(block);
        if let Some(running) = running {
            running.stop.send_replace(true);
            let _ = running.task.await;
        }
    }

    /// Stops every run and waits for them all.
    pub async fn stop_all(&self) {
        let all: Vec<Running> = self.lock_running().drain().map(|(_, r)| r).collect();
        for running in &all {
            running.stop.send_replace(true);
        }
        for running in all {
            let _ = running.task.await;
        }
        let lab = self.lab.lock().await.take();
        if let Some(lab) = lab.and_then(Arc::into_inner) {
            lab.shutdown().await;
        }
    }

    /// The events of each block's last run (a run in flight counts as far as it got).
    pub fn captured(&self) -> HashMap<String, Vec<RunEvent>> {
        self.captured
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn lock_running(&self) -> std::sync::MutexGuard<'_, HashMap<String, Running>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `job` to its end, sending its events to `tx` and keeping them as captured.
    async fn job(&self, job: Job, mut tx: outbox::Outbox, mut stop: watch::Receiver<bool>) {
        let started = Instant::now();
        self.captured
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(job.block.clone(), Vec::new());
        // The export keeps the start of a long output, and says how much it left out.
        let (mut kept, mut bound) = (0, outbox::Bound::new(CAPTURED_LIMIT));
        let mut send = |event: RunEvent| {
            let mut captured = self.captured.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(events) = captured.get_mut(&job.block) {
                for event in bound.pass(kept, event.clone()) {
                    kept += event.output_len();
                    events.push(event);
                }
            }
            drop(captured);
            tx.send(event);
        };
        let ended = self.build_and_run(&job, &mut stop, &mut send).await;
        let event = match ended {
            Ok(ended) => RunEvent::Exit {
                code: match ended {
                    Ended::Exited(status) => status.code(),
                    Ended::Stopped => None,
                },
                stopped: ended == Ended::Stopped,
                seconds: started.elapsed().as_secs_f64(),
            },
            Err(message) => RunEvent::Failed { message },
        };
        send(event);
        self.keep_captured();
    }

    /// Writes the captured output of every block for a later `--export`; failing to only
    /// costs the export its output, so it is logged.
    fn keep_captured(&self) {
        let captured = self.captured();
        let file = self.work.join(CAPTURED);
        let written = serde_json::to_vec(&captured)
            .map_err(std::io::Error::other)
            .and_then(|json| {
                std::fs::create_dir_all(&self.work)?;
                std::fs::write(&file, json)
            });
        if let Err(err) = written {
            tracing::warn!(file = %file.display(), %err, "cannot keep the runs' output");
        }
    }

    /// Starts building `job` (a playbook block being edited) in the background, so that a
    /// Run of the same code finds it built; the build's events are dropped (Run shows them
    /// again if it has to build).
    pub fn prebuild(self: &Arc<Self>, job: Job) {
        if !matches!(job.run, Runnable::Playbook { .. }) {
            return;
        }
        let runner = Arc::clone(self);
        tokio::spawn(async move {
            if let Err(err) = runner.build_only(&job, &mut |_| {}).await {
                tracing::debug!(block = %job.block, %err, "an edit does not build (yet)");
            }
        });
    }

    /// The lock that keeps two builds of `block` from writing its binary at once.
    fn block_lock(&self, block: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.build_locks.lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(locks.entry(block.to_owned()).or_default())
    }

    /// Builds `job` without running it, passing on the build's events; an error says why
    /// it failed.
    pub async fn build_only(
        &self,
        job: &Job,
        send: &mut impl FnMut(RunEvent),
    ) -> Result<(), String> {
        let (_never, mut stop) = watch::channel(false);
        match self.build(job, &mut stop, send).await? {
            Built::Executable(_) | Built::Stopped | Built::Nothing => Ok(()),
            Built::Failed(message) => Err(message),
        }
    }

    /// Builds and runs the job; an error says why it could not (a build's diagnostics were
    /// sent already).
    async fn build_and_run(
        &self,
        job: &Job,
        stop: &mut watch::Receiver<bool>,
        send: &mut impl FnMut(RunEvent),
    ) -> Result<Ended, String> {
        if let Runnable::Guest { guest, .. } = &job.run {
            return self.run_on_guest(job, guest, stop, send).await;
        }
        send(RunEvent::Phase {
            text: "compiling".into(),
        });
        let built = self
            .build(job, stop, send)
            .await
            .map_err(|e| format!("cannot build block {}: {e}", job.block))?;
        let executable = match built {
            Built::Executable(path) => path,
            Built::Stopped => return Ok(Ended::Stopped),
            Built::Failed(message) => return Err(message),
            Built::Nothing => return Err(format!("block {} has nothing to run", job.block)),
        };
        send(RunEvent::Phase {
            text: "running".into(),
        });
        let mut command = tokio::process::Command::new(&executable);
        // Task lines keep their colours in the slide.
        command.env("CLICOLOR_FORCE", "1");
        if matches!(job.run, Runnable::Playbook { .. }) {
            if let Some(sdk) = self.sdk.lock().await.as_ref() {
                let (name, value) = sdk.env();
                command.env(name, value);
            }
        }
        if let Some(dir) = executable.parent() {
            command.current_dir(dir);
        }
        process::run(command, stop, |stream, text| {
            send(match stream {
                Stream::Stdout => RunEvent::Stdout { text },
                Stream::Stderr => RunEvent::Stderr { text },
            });
        })
        .await
        .map_err(|e| format!("cannot start {}: {e}", executable.display()))
    }

    /// Runs a guest block's command (as edited) on its guest, booting the lab first if
    /// this is the deck's first guest block.
    async fn run_on_guest(
        &self,
        job: &Job,
        guest: &str,
        stop: &mut watch::Receiver<bool>,
        send: &mut impl FnMut(RunEvent),
    ) -> Result<Ended, String> {
        let lab = {
            let mut slot = self.lab.lock().await;
            if slot.is_none() {
                send(RunEvent::Phase {
                    text: "booting the lab".into(),
                });
                let program = std::env::current_exe()
                    .map_err(|e| format!("cannot find the sinew binary for the lab: {e}"))?;
                let booting = lab::Lab::start(&program, &job.lab);
                tokio::select! {
                    lab = booting => *slot = Some(Arc::new(lab?)),
                    () = process::stopped(stop) => return Ok(Ended::Stopped),
                }
            }
            slot.as_ref().map(Arc::clone).ok_or("the lab is not up")?
        };
        send(RunEvent::Phase {
            text: "running".into(),
        });
        let (id, mut events) = lab.run(guest, job.code.trim_end()).await?;
        let mut stopping = false;
        loop {
            let event = tokio::select! {
                event = events.recv() => event,
                () = process::stopped(stop), if !stopping => {
                    stopping = true;
                    lab.stop(id, guest).await?;
                    continue;
                }
            };
            match event {
                Some(lab::LabEvent::Output { stream, text, .. }) => send(if stream == "stderr" {
                    RunEvent::Stderr { text }
                } else {
                    RunEvent::Stdout { text }
                }),
                Some(lab::LabEvent::Exit { code, signal, .. }) => {
                    use std::os::unix::process::ExitStatusExt;
                    if stopping {
                        return Ok(Ended::Stopped);
                    }
                    let raw = code.map_or(signal.unwrap_or(0), |code| code << 8);
                    return Ok(Ended::Exited(std::process::ExitStatus::from_raw(raw)));
                }
                Some(lab::LabEvent::Error { message, .. }) => return Err(message),
                Some(_) | None => return Err("the lab keeper went away".into()),
            }
        }
    }

    /// The SDK library, built on first use; `None` when stopped while building.
    async fn sdk(
        &self,
        stop: &mut watch::Receiver<bool>,
        send: &mut impl FnMut(RunEvent),
    ) -> Result<Option<Sdk>, String> {
        let mut built = self.sdk.lock().await;
        if built.is_none() {
            *built = Sdk::build(&self.scratch, stop, send).await?;
        }
        Ok(built.clone())
    }

    async fn build(
        &self,
        job: &Job,
        stop: &mut watch::Receiver<bool>,
        send: &mut impl FnMut(RunEvent),
    ) -> Result<Built, String> {
        match &job.run {
            Runnable::Playbook { .. } => {
                let Some(sdk) = self.sdk(stop, send).await? else {
                    return Ok(Built::Stopped);
                };
                let lock = self.block_lock(&job.block);
                let _one_build_at_a_time = lock.lock().await;
                let package = self
                    .scratch
                    .write(&job.block, &job.code)
                    .map_err(|e| e.to_string())?;
                sdk.compile(&package, stop, send).await
            }
            Runnable::WorkspacePlaybook { name } => {
                let mut cargo = tokio::process::Command::from(crate::build::nested_cargo(
                    self.scratch.workspace(),
                ));
                cargo.args(["build", "--bin", name]);
                compile::cargo_bin(cargo, name, stop, send)
                    .await
                    .map_err(|e| format!("cannot run cargo: {e}"))
            }
            Runnable::Go { before, after } => {
                let dir = self.work.join("go").join(&job.block);
                let program = format!("{before}{}{after}", job.code);
                std::fs::create_dir_all(&dir)
                    .and_then(|()| std::fs::write(dir.join("main.go"), program))
                    .map_err(|e| format!("cannot write {}: {e}", dir.display()))?;
                compile::go(&dir, job.first_line, stop, send)
                    .await
                    .map_err(|e| format!("cannot run go: {e}"))
            }
            Runnable::Guest { .. } => Ok(Built::Nothing),
        }
    }
}
