//! One instance on this machine: checked, started, health-checked, restarted by its
//! policy, and stopped, gracefully on request or at once when the machine fences itself.
//!
//! An instance's processes are its own process group, killed whole. They also die with the
//! agent (parent-death signal): an agent killed outright takes its instances with it, so
//! they cannot outlive the lease that the dead agent no longer renews.

use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, SystemTime};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use sinew_proto::{RestartPolicy, Sha256Digest, Termination};
use sinew_support::backoff::{Backoff, STABLE_AFTER};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::health;
use crate::instance::InstanceId;
use crate::records::{Assignment, Phase};
use crate::unit::{ExecKind, Resources};

/// How long an instance has to exit after SIGTERM before SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(3);

/// sinew-run's own grace for a container, shorter than [`STOP_GRACE`]: it kills the
/// container's init itself and removes the container's cgroup before the agent's SIGKILL.
const CONTAINER_STOP_GRACE: Duration = Duration::from_secs(2);

/// A change in an instance's life, for the agent to report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The instance.
    pub instance: InstanceId,
    /// The assignment's fencing token.
    pub fencing_token: i64,
    /// Its phase.
    pub phase: Phase,
    /// Whether it is healthy.
    pub healthy: bool,
    /// Restarts in a row.
    pub restarts: u32,
    /// Its process, while it runs.
    pub pid: Option<u32>,
}

/// How the supervisor is asked to end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    No,
    Gracefully,
    Now,
}

/// What the supervisor needs of the machine.
#[derive(Debug, Clone)]
pub struct Machine {
    /// The machine's name.
    pub name: String,
    /// Its architecture.
    pub arch: String,
    /// Where instance logs go.
    pub log_dir: PathBuf,
    /// The container runner, for container units.
    pub sinew_run: PathBuf,
}

/// A running supervisor; dropping it kills the instance.
#[derive(Debug)]
pub struct Supervised {
    /// The assignment's fencing token.
    pub fencing_token: i64,
    stop: watch::Sender<Stop>,
    task: JoinHandle<()>,
}

impl Drop for Supervised {
    fn drop(&mut self) {
        // The task kills the group when it sees this, or its child's kill-on-drop does
        // if the task is gone.
        self.stop.send_replace(Stop::Now);
    }
}

impl Supervised {
    /// Starts supervising `assignment` under `fencing_token`, reporting to `reports`.
    pub fn start(
        assignment: Assignment,
        fencing_token: i64,
        machine: Machine,
        reports: mpsc::UnboundedSender<Report>,
    ) -> Self {
        let (stop, stopping) = watch::channel(Stop::No);
        let task = tokio::spawn(supervise(
            assignment,
            fencing_token,
            machine,
            reports,
            stopping,
        ));
        Self {
            fencing_token,
            stop,
            task,
        }
    }

    /// Stops the instance (SIGTERM, then SIGKILL after [`STOP_GRACE`]) and waits for it.
    pub async fn stop(mut self) {
        self.stop.send_replace(Stop::Gracefully);
        let _ = (&mut self.task).await;
    }

    /// Kills the instance's whole process group now and waits for it.
    pub async fn kill(mut self) {
        self.stop.send_replace(Stop::Now);
        let _ = (&mut self.task).await;
    }
}

/// The supervisor's task: runs until the instance ends for good or is stopped.
async fn supervise(
    assignment: Assignment,
    fencing_token: i64,
    machine: Machine,
    reports: mpsc::UnboundedSender<Report>,
    mut stopping: watch::Receiver<Stop>,
) {
    let spec = &assignment.spec;
    let report = |phase: Phase, healthy: bool, restarts: u32, pid: Option<u32>| {
        let _ = reports.send(Report {
            instance: assignment.instance.clone(),
            fencing_token,
            phase,
            healthy,
            restarts,
            pid,
        });
    };
    let mut backoff = Backoff::default();
    let mut restarts = 0;
    loop {
        report(Phase::Starting, false, restarts, None);
        let mut child = match launch(&assignment, fencing_token, &machine).await {
            Ok(child) => child,
            Err(reason) => {
                tracing::warn!(instance = %assignment.instance, "{reason}");
                report(Phase::Failed { reason }, false, restarts, None);
                return;
            }
        };
        let pid = child.id();
        tracing::info!(instance = %assignment.instance, pid, fencing_token, "started");
        let started = Instant::now();
        report(Phase::Running, spec.health.is_none(), restarts, pid);
        let ended = tokio::select! {
            status = child.wait() => Ended::Exited(status.map(termination).map_err(|e| e.to_string())),
            reason = health::watch(spec.health.as_ref(), |healthy| {
                report(Phase::Running, healthy, restarts, pid);
            }) => Ended::Unhealthy(reason),
            stop = wait_for_stop(&mut stopping) => Ended::Stopped(stop),
        };
        let termination = match ended {
            Ended::Stopped(how) => {
                end_group(&mut child, pid, how).await;
                tracing::info!(instance = %assignment.instance, "stopped");
                return;
            }
            Ended::Unhealthy(reason) => {
                end_group(&mut child, pid, Stop::Gracefully).await;
                Err(reason)
            }
            Ended::Exited(Ok(termination)) => {
                // The rest of the group goes with the instance's main process.
                kill_group(pid);
                Ok(termination)
            }
            Ended::Exited(Err(error)) => Err(format!("cannot wait for the process: {error}")),
        };
        if started.elapsed() >= STABLE_AFTER {
            backoff.reset();
            restarts = 0;
        }
        let failure = match &termination {
            Ok(ended) if ended.success() => None,
            Ok(ended) => Some(match last_output(&machine.log_dir, &assignment.instance) {
                Some(line) => format!("{ended} (last output: {line})"),
                None => ended.to_string(),
            }),
            Err(reason) => Some(reason.clone()),
        };
        let restart = match spec.restart.policy {
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => failure.is_some(),
            RestartPolicy::Never => false,
        };
        let max = spec.restart.max_restarts;
        if !restart || (max > 0 && restarts >= max) {
            let phase = match failure {
                None => Phase::Exited,
                Some(reason) if restart => Phase::Failed {
                    reason: format!("{reason}, after {restarts} restarts in a row"),
                },
                Some(reason) => Phase::Failed { reason },
            };
            tracing::info!(instance = %assignment.instance, ?phase, "ended");
            report(phase, false, restarts, None);
            return;
        }
        restarts += 1;
        let delay = backoff.next_delay();
        tracing::info!(
            instance = %assignment.instance,
            "{}; restarting in {delay:?}",
            failure.as_deref().unwrap_or("exited")
        );
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            _ = wait_for_stop(&mut stopping) => return,
        }
    }
}

enum Ended {
    Exited(Result<Termination, String>),
    Unhealthy(String),
    Stopped(Stop),
}

async fn wait_for_stop(stopping: &mut watch::Receiver<Stop>) -> Stop {
    match stopping.wait_for(|stop| *stop != Stop::No).await {
        Ok(stop) => *stop,
        // The handle is gone: kill.
        Err(_) => Stop::Now,
    }
}

/// Ends the instance's process group: SIGTERM and a grace period, or SIGKILL now.
async fn end_group(child: &mut Child, pid: Option<u32>, how: Stop) {
    if how == Stop::Gracefully {
        if let Some(group) = group(pid) {
            let _ = killpg(group, Signal::SIGTERM);
        }
        if tokio::time::timeout(STOP_GRACE, child.wait()).await.is_ok() {
            kill_group(pid);
            return;
        }
    }
    kill_group(pid);
    let _ = child.wait().await;
}

fn kill_group(pid: Option<u32>) {
    if let Some(group) = group(pid) {
        let _ = killpg(group, Signal::SIGKILL);
    }
}

fn group(pid: Option<u32>) -> Option<Pid> {
    pid.and_then(|pid| i32::try_from(pid).ok())
        .map(Pid::from_raw)
}

fn termination(status: std::process::ExitStatus) -> Termination {
    match (status.code(), status.signal()) {
        (Some(code), _) => Termination::Exited { code },
        (None, Some(signal)) => Termination::Signaled { signal },
        (None, None) => Termination::Exited { code: -1 },
    }
}

/// Checks the build's digest and starts it in a process group of its own, with its output
/// appended to the instance's log.
async fn launch(
    assignment: &Assignment,
    fencing_token: i64,
    machine: &Machine,
) -> Result<Child, String> {
    let spec = &assignment.spec;
    let build = spec.build_for(&machine.arch).ok_or_else(|| {
        format!(
            "unit {} has no build for {} (it has {})",
            spec.name,
            machine.arch,
            spec.build_archs()
        )
    })?;
    let path = PathBuf::from(&build.path);
    let found = tokio::task::spawn_blocking(move || Sha256Digest::of_file(&path))
        .await
        .map_err(|error| format!("cannot hash {}: {error}", build.path))?
        .map_err(|error| format!("cannot read {}: {error}", build.path))?
        .1
        .to_hex();
    if found != build.sha256 {
        return Err(format!(
            "{} has sha256 {found}, but the unit expects {}; refusing to run it",
            build.path, build.sha256
        ));
    }
    let env = spec
        .env
        .iter()
        .map(|(key, value)| (key.clone(), value.clone()))
        .chain([
            ("SINEW_UNIT".to_owned(), spec.name.clone()),
            ("SINEW_INSTANCE".to_owned(), assignment.instance.to_string()),
            ("SINEW_MACHINE".to_owned(), machine.name.clone()),
            ("SINEW_FENCING_TOKEN".to_owned(), fencing_token.to_string()),
        ]);
    let mut command = match spec.exec.kind {
        ExecKind::Binary => {
            let mut command = Command::new(&build.path);
            command.envs(env);
            command
        }
        ExecKind::Container => {
            let digest = fetch_image(machine, &build.path).await?;
            container_command(machine, &spec.resources, env, &digest)
        }
    };
    let log = open_log(&machine.log_dir, &assignment.instance)
        .map_err(|error| format!("cannot open the instance's log: {error}"))?;
    let log_err = log
        .try_clone()
        .map_err(|error| format!("cannot open the instance's log: {error}"))?;
    command
        .args(&spec.args)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .process_group(0)
        .kill_on_drop(true);
    // SAFETY: the closure runs in the child between fork and exec and only makes the
    // prctl system call, which is async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
        });
    }
    command
        .spawn()
        .map_err(|error| format!("cannot start {}: {error}", build.path))
}

/// `sinew-run fetch` of a container unit's archive: it verifies the archive's signature
/// against the keys the machine trusts and adds the image to the machine's store. Returns
/// the manifest digest it printed.
async fn fetch_image(machine: &Machine, archive: &str) -> Result<String, String> {
    let fetched = Command::new(&machine.sinew_run)
        .arg("fetch")
        .arg(archive)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|error| format!("cannot start {}: {error}", machine.sinew_run.display()))?;
    if !fetched.status.success() {
        let stderr = String::from_utf8_lossy(&fetched.stderr);
        let reason = stderr.lines().rev().find(|line| !line.trim().is_empty());
        return Err(format!(
            "sinew-run refused {archive}: {}",
            reason.unwrap_or("it said nothing")
        ));
    }
    // `name<TAB>digest`.
    let stdout = String::from_utf8_lossy(&fetched.stdout);
    stdout
        .lines()
        .rev()
        .find_map(|line| line.split('\t').nth(1))
        .map(str::to_owned)
        .ok_or_else(|| format!("sinew-run fetch {archive} printed no manifest digest: {stdout:?}"))
}

/// `sinew-run run` of a fetched image in the foreground: the instance's environment goes
/// into the container, its resources become the container's limits, and it shares the
/// machine's network, so that its ports (and its health check) are the machine's.
fn container_command(
    machine: &Machine,
    resources: &Resources,
    env: impl Iterator<Item = (String, String)>,
    digest: &str,
) -> Command {
    let mut command = Command::new(&machine.sinew_run);
    command
        .args(["run", "--net", "host", "--stop-timeout"])
        .arg(format!("{}ms", CONTAINER_STOP_GRACE.as_millis()));
    for (key, value) in env {
        command.arg("--env").arg(format!("{key}={value}"));
    }
    if resources.memory_mb > 0 {
        command
            .arg("--memory")
            .arg(format!("{}M", resources.memory_mb));
    }
    if resources.cpu_millis > 0 {
        let millis = resources.cpu_millis;
        command
            .arg("--cpus")
            .arg(format!("{}.{:03}", millis / 1000, millis % 1000));
    }
    command.arg(digest).arg("--");
    command
}

/// Log files larger than this are kept as `.1` when the instance starts, and a new one begun.
const LOG_KEEP: u64 = 1 << 20;

/// Where an instance's log is.
pub fn log_path(log_dir: &Path, instance: &InstanceId) -> PathBuf {
    log_dir.join(format!("{instance}.log"))
}

/// The last line the instance's latest run wrote, if it wrote any: what a failure's reason
/// quotes, since a program usually says why it ends just before it does.
fn last_output(log_dir: &Path, instance: &InstanceId) -> Option<String> {
    const TAIL: u64 = 16 << 10;
    const LONGEST: usize = 300;
    let mut file = std::fs::File::open(log_path(log_dir, instance)).ok()?;
    let len = file.metadata().ok()?.len();
    std::io::Seek::seek(
        &mut file,
        std::io::SeekFrom::Start(len.saturating_sub(TAIL)),
    )
    .ok()?;
    let mut tail = Vec::new();
    std::io::Read::read_to_end(&mut file, &mut tail).ok()?;
    let tail = String::from_utf8_lossy(&tail);
    let marker = start_marker(instance);
    // After the latest start line (which ends with its time), or all of a tail that begins
    // within the latest run.
    let run = match tail.rsplit_once(&marker) {
        Some((_, run)) => run.split_once('\n').map_or("", |(_, output)| output),
        None => &tail,
    };
    let line = run.lines().map(str::trim).rfind(|line| !line.is_empty())?;
    Some(match line.char_indices().nth(LONGEST) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line.to_owned(),
    })
}

/// The start of the line that opens each run in the instance's log.
fn start_marker(instance: &InstanceId) -> String {
    format!("-- {instance} starting at ")
}

fn open_log(log_dir: &Path, instance: &InstanceId) -> std::io::Result<std::fs::File> {
    std::fs::create_dir_all(log_dir)?;
    let path = log_path(log_dir, instance);
    if std::fs::metadata(&path).is_ok_and(|meta| meta.len() > LOG_KEEP) {
        std::fs::rename(&path, path.with_extension("log.1"))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)?;
    let now = unix_time_now();
    std::io::Write::write_all(
        &mut file,
        format!("{}{now} --\n", start_marker(instance)).as_bytes(),
    )?;
    Ok(file)
}

/// Seconds since the Unix epoch, for the log's start lines.
fn unix_time_now() -> String {
    let since = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    format!(
        "{}.{:03} (Unix time)",
        since.as_secs(),
        since.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_quotes_the_last_line_of_the_latest_run_only() {
        let dir = tempfile::tempdir().unwrap();
        let instance = InstanceId::replica("web", 0);
        drop(open_log(dir.path(), &instance).unwrap());
        let path = log_path(dir.path(), &instance);
        let append = |text: &str| {
            let mut file = std::fs::OpenOptions::new()
                .append(true)
                .open(&path)
                .unwrap();
            std::io::Write::write_all(&mut file, text.as_bytes()).unwrap();
        };
        assert_eq!(last_output(dir.path(), &instance), None);
        append("listening\nerror: port 80 taken\n\n");
        assert_eq!(
            last_output(dir.path(), &instance).as_deref(),
            Some("error: port 80 taken")
        );
        drop(open_log(dir.path(), &instance).unwrap());
        assert_eq!(last_output(dir.path(), &instance), None);
        append(&"x".repeat(400));
        let long = last_output(dir.path(), &instance).unwrap();
        assert_eq!(long, format!("{}…", "x".repeat(300)));
    }
}
