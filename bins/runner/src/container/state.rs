//! A container's record: `<dir>/containers/<id>/state.json`, replaced atomically, plus
//! the lock its supervisor holds while the container runs.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

/// A state-directory operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Reading or writing a file of the state directory.
    #[error("{what} {path}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// `state.json` does not parse.
    #[error("{path}: invalid state")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// No container has this id (or unique id prefix).
    #[error("no container {0:?}")]
    NotFound(String),
    /// An id prefix matches several containers.
    #[error("container id prefix {0:?} is ambiguous")]
    Ambiguous(String),
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> StateError + 'a {
    move |source| StateError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// Lifecycle of a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Being set up.
    Created,
    /// The program is running under its supervisor.
    Running,
    /// The program ended; `exit_code` says how.
    Exited,
    /// It never started; `error` says why.
    Failed,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Exited => "exited",
            Status::Failed => "failed",
        })
    }
}

/// What `state.json` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// Container id (hex).
    pub id: String,
    /// Image name as given.
    pub image: String,
    /// Digest of the image manifest, when run from the store.
    pub manifest_digest: Option<String>,
    /// Lifecycle status.
    pub status: Status,
    /// PID of the container's init process, in the host PID namespace.
    pub pid: Option<i32>,
    /// PID of the supervising sinew-run process.
    pub supervisor_pid: i32,
    /// Start time, seconds since the Unix epoch.
    pub started_at: u64,
    /// End time, seconds since the Unix epoch.
    pub finished_at: Option<u64>,
    /// Exit code: the program's, or 128+N when killed by signal N.
    pub exit_code: Option<i32>,
    /// Whether the kernel's OOM killer killed a process of the container.
    pub oom_killed: bool,
    /// cgroup hierarchy used for limits: "v2", "v1" or "none".
    pub cgroup: String,
    /// Network mode: "host", "none" or "overlay".
    pub net: String,
    /// The container's address on the overlay bridge.
    pub address: Option<String>,
    /// Published ports, as given to `-p`.
    pub ports: Vec<String>,
    /// Why the container failed to start.
    pub error: Option<String>,
}

/// A container's directory.
#[derive(Debug, Clone)]
pub struct ContainerDir {
    path: PathBuf,
}

/// The supervisor's hold on a container; released when dropped (or the process dies).
#[derive(Debug)]
pub struct Lock {
    _held: Flock<File>,
}

impl ContainerDir {
    /// `<dir>/containers`.
    pub fn root(state_dir: &Path) -> PathBuf {
        state_dir.join("containers")
    }

    /// The directory of container `id`, which need not exist yet.
    pub fn new(state_dir: &Path, id: &str) -> ContainerDir {
        ContainerDir {
            path: Self::root(state_dir).join(id),
        }
    }

    /// Finds a container by full id or unique id prefix.
    pub fn find(state_dir: &Path, id: &str) -> Result<ContainerDir, StateError> {
        let exact = ContainerDir::new(state_dir, id);
        if exact.path.join("state.json").exists() {
            return Ok(exact);
        }
        let matches: Vec<String> = list_ids(state_dir)?
            .into_iter()
            .filter(|c| c.starts_with(id))
            .collect();
        match matches.as_slice() {
            [one] => Ok(ContainerDir::new(state_dir, one)),
            [] => Err(StateError::NotFound(id.to_string())),
            _ => Err(StateError::Ambiguous(id.to_string())),
        }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The combined stdout/stderr log.
    pub fn log(&self) -> PathBuf {
        self.path.join("log")
    }

    /// Reads `state.json`.
    pub fn read(&self) -> Result<State, StateError> {
        let path = self.path.join("state.json");
        let text = std::fs::read(&path).map_err(io("reading", &path))?;
        serde_json::from_slice(&text).map_err(|source| StateError::Corrupt { path, source })
    }

    /// Replaces `state.json` atomically: readers see the old or the new state, never half.
    pub fn write(&self, state: &State) -> Result<(), StateError> {
        let path = self.path.join("state.json");
        let tmp = self.path.join(".state.json.tmp");
        let json = serde_json::to_vec_pretty(state).map_err(|source| StateError::Corrupt {
            path: path.clone(),
            source,
        })?;
        let mut file = File::create(&tmp).map_err(io("creating", &tmp))?;
        file.write_all(&json).map_err(io("writing", &tmp))?;
        std::fs::rename(&tmp, &path).map_err(io("renaming", &tmp))
    }

    /// Takes the supervisor lock, failing if another process holds it.
    pub fn lock(&self) -> Result<Lock, StateError> {
        let path = self.path.join("lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io("opening", &path))?;
        Flock::lock(file, FlockArg::LockExclusiveNonblock)
            .map(|held| Lock { _held: held })
            .map_err(|(_, errno)| StateError::Io {
                what: "locking",
                path,
                source: errno.into(),
            })
    }

    /// Whether a live supervisor holds the lock.
    pub fn is_locked(&self) -> bool {
        let path = self.path.join("lock");
        let Ok(file) = OpenOptions::new().write(true).open(&path) else {
            return false;
        };
        Flock::lock(file, FlockArg::LockExclusiveNonblock).is_err()
    }

    /// The state as recorded, corrected for a supervisor that died without recording the
    /// end: "running" with no lock held is reported as exited with no code.
    pub fn current(&self) -> Result<State, StateError> {
        let mut state = self.read()?;
        if matches!(state.status, Status::Running | Status::Created) && !self.is_locked() {
            state.status = Status::Exited;
        }
        Ok(state)
    }
}

/// Ids of all containers in the state directory, sorted.
pub fn list_ids(state_dir: &Path) -> Result<Vec<String>, StateError> {
    let root = ContainerDir::root(state_dir);
    let entries = match std::fs::read_dir(&root) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io("listing", &root)(e)),
    };
    let mut ids: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|e| e.path().join("state.json").exists())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    ids.sort();
    Ok(ids)
}

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// RFC 3339 UTC time for `secs` since the epoch (civil-from-days, no time zone data).
pub fn format_time(secs: u64) -> String {
    // At most u64::MAX / 86 400, well inside i64.
    let days = (secs / 86_400).cast_signed();
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(id: &str) -> State {
        State {
            id: id.into(),
            image: "busybox".into(),
            manifest_digest: None,
            status: Status::Running,
            pid: Some(10),
            supervisor_pid: std::process::id().cast_signed(),
            started_at: 0,
            finished_at: None,
            exit_code: None,
            oom_killed: false,
            cgroup: "v1".into(),
            net: "none".into(),
            address: None,
            ports: vec![],
            error: None,
        }
    }

    #[test]
    fn state_round_trips_and_prefixes_resolve() {
        let dir = tempfile::tempdir().unwrap();
        for id in ["abc123", "abd456"] {
            let c = ContainerDir::new(dir.path(), id);
            std::fs::create_dir_all(c.path()).unwrap();
            c.write(&state(id)).unwrap();
        }
        assert_eq!(
            ContainerDir::find(dir.path(), "abc")
                .unwrap()
                .read()
                .unwrap(),
            state("abc123")
        );
        assert!(matches!(
            ContainerDir::find(dir.path(), "ab"),
            Err(StateError::Ambiguous(_))
        ));
        assert!(matches!(
            ContainerDir::find(dir.path(), "zz"),
            Err(StateError::NotFound(_))
        ));
        assert_eq!(list_ids(dir.path()).unwrap(), vec!["abc123", "abd456"]);
    }

    #[test]
    fn running_without_a_lock_holder_reads_as_exited() {
        let dir = tempfile::tempdir().unwrap();
        let c = ContainerDir::new(dir.path(), "c1");
        std::fs::create_dir_all(c.path()).unwrap();
        c.write(&state("c1")).unwrap();
        let lock = c.lock().unwrap();
        assert!(c.is_locked());
        assert!(
            c.lock().is_err(),
            "a second supervisor must not get the lock"
        );
        assert_eq!(c.current().unwrap().status, Status::Running);
        drop(lock);
        assert_eq!(c.current().unwrap().status, Status::Exited);
    }

    #[test]
    fn formats_utc_times() {
        assert_eq!(format_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_time(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(format_time(1_795_000_000), "2026-11-18T11:06:40Z");
    }
}
