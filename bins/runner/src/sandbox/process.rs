//! The program a container runs: argv, environment, working directory, user, hostname.
//! Everything is converted to C strings before the clone so the child only makes syscalls.

use std::ffi::CString;
use std::path::PathBuf;

use super::sys::{Sys, SysError};

/// What to execute inside the container, fully resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessSpec {
    /// Program and arguments; `args[0]` is looked up in `PATH` when it has no slash.
    pub args: Vec<String>,
    /// `KEY=VALUE` entries.
    pub env: Vec<String>,
    /// Absolute working directory inside the container.
    pub cwd: String,
    /// User id to run as.
    pub uid: u32,
    /// Group id to run as.
    pub gid: u32,
    /// UTS hostname.
    pub hostname: String,
}

/// Invalid process specification.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// Neither the image nor the flags name a program.
    #[error("no program to run: the image has no entrypoint or cmd and none was given")]
    NoProgram,
    /// A string holds a NUL byte and cannot be passed to the kernel.
    #[error("{what} contains a NUL byte: {value:?}")]
    Nul {
        /// Which field.
        what: &'static str,
        /// The offending value.
        value: String,
    },
}

/// `ProcessSpec` converted to what `execve` takes.
#[derive(Debug)]
pub struct Exec {
    candidates: Vec<CString>,
    argv: Vec<CString>,
    envp: Vec<CString>,
    cwd: PathBuf,
    uid: u32,
    gid: u32,
    hostname: String,
}

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn cstring(what: &'static str, value: &str) -> Result<CString, ProcessError> {
    CString::new(value).map_err(|_| ProcessError::Nul {
        what,
        value: value.to_string(),
    })
}

impl Exec {
    /// Prepares `spec` for execution: argv and env as C strings, the candidate paths of
    /// the program from the container's `PATH` (or the conventional default).
    pub fn prepare(spec: &ProcessSpec) -> Result<Exec, ProcessError> {
        let program = spec.args.first().ok_or(ProcessError::NoProgram)?;
        let path = spec
            .env
            .iter()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or(DEFAULT_PATH);
        let candidates = if program.contains('/') {
            vec![cstring("program", program)?]
        } else {
            path.split(':')
                .filter(|dir| !dir.is_empty())
                .map(|dir| {
                    cstring(
                        "program",
                        &format!("{}/{program}", dir.trim_end_matches('/')),
                    )
                })
                .collect::<Result<_, _>>()?
        };
        Ok(Exec {
            candidates,
            argv: spec
                .args
                .iter()
                .map(|a| cstring("argument", a))
                .collect::<Result<_, _>>()?,
            envp: spec
                .env
                .iter()
                .map(|e| cstring("environment", e))
                .collect::<Result<_, _>>()?,
            cwd: PathBuf::from(&spec.cwd),
            uid: spec.uid,
            gid: spec.gid,
            hostname: spec.hostname.clone(),
        })
    }

    /// Executes the program, trying each `PATH` candidate in turn. Returns only on failure.
    pub fn exec(&self, sys: &dyn Sys) -> SysError {
        let mut last = None;
        for program in &self.candidates {
            let err = sys.exec(program, &self.argv, &self.envp);
            // Keep looking along PATH only when this candidate does not exist.
            if err.errno() != Some(libc::ENOENT) && err.errno() != Some(libc::ENOTDIR) {
                return err;
            }
            last = Some(err);
        }
        last.unwrap_or_else(|| SysError {
            op: "exec",
            target: String::new(),
            source: std::io::Error::from_raw_os_error(libc::ENOENT),
        })
    }

    /// Runs inside the container after `pivot_root`: hostname, working directory (created
    /// if missing), capabilities, user, then changes into the working directory.
    pub fn setup(&self, sys: &dyn Sys) -> Result<(), SysError> {
        sys.sethostname(&self.hostname)?;
        // As runc does: a working directory the image lacks is created (in the upper layer).
        sys.mkdir_all(&self.cwd)?;
        // Before the user changes: dropping from the bounding set needs CAP_SETPCAP.
        sys.limit_capabilities()?;
        sys.set_user(self.uid, self.gid)?;
        sys.chdir(&self.cwd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::fake::FakeSys;

    fn spec(args: &[&str], env: &[&str]) -> ProcessSpec {
        ProcessSpec {
            args: args.iter().map(|s| s.to_string()).collect(),
            env: env.iter().map(|s| s.to_string()).collect(),
            cwd: "/srv".into(),
            uid: 1000,
            gid: 1001,
            hostname: "box".into(),
        }
    }

    #[test]
    fn sets_up_identity_then_searches_path() {
        let sys = FakeSys::default();
        let exec = Exec::prepare(&spec(&["echo", "hi"], &["PATH=/usr/bin:/bin"])).unwrap();
        exec.setup(&sys).unwrap();
        let err = exec.exec(&sys);
        assert_eq!(err.errno(), Some(libc::ENOENT));
        assert_eq!(
            sys.calls(),
            vec![
                "sethostname box",
                "mkdir /srv",
                "limit_capabilities",
                "set_user 1000:1001",
                "chdir /srv",
                "exec /usr/bin/echo echo hi",
                "exec /bin/echo echo hi",
            ]
        );
    }

    #[test]
    fn a_path_with_a_slash_is_used_as_is_and_other_errors_stop_the_search() {
        let sys = FakeSys {
            fail: vec!["exec /opt/app".into()],
            ..FakeSys::default()
        };
        let exec = Exec::prepare(&spec(&["/opt/app"], &[])).unwrap();
        assert_eq!(exec.exec(&sys).errno(), Some(libc::EINVAL));
        assert_eq!(sys.calls().last().unwrap(), "exec /opt/app /opt/app");
    }

    #[test]
    fn a_failing_setup_step_stops_before_chdir() {
        let sys = FakeSys {
            fail: vec!["set_user".into()],
            ..FakeSys::default()
        };
        let exec = Exec::prepare(&spec(&["true"], &[])).unwrap();
        assert!(exec.setup(&sys).is_err());
        assert_eq!(
            sys.calls(),
            vec![
                "sethostname box",
                "mkdir /srv",
                "limit_capabilities",
                "set_user 1000:1001"
            ]
        );
    }

    #[test]
    fn empty_argv_and_nul_bytes_are_rejected() {
        assert!(matches!(
            Exec::prepare(&spec(&[], &[])),
            Err(ProcessError::NoProgram)
        ));
        assert!(matches!(
            Exec::prepare(&spec(&["a\0b"], &[])),
            Err(ProcessError::Nul {
                what: "program",
                ..
            })
        ));
    }
}
