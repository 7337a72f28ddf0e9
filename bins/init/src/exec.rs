//! Running commands for `Exec` requests, streaming their output as it comes.

use std::ffi::OsString;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::signal::Signal;
use sinew_proto::{
    Channel, ChannelError, ErrorKind, ExecRequest, ExitStatus, FrameKind, RemoteError, Response,
};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::time::Instant;

use crate::reaper::{Child, ProcessTable};

/// `PATH` for children when the agent has none: the kernel starts PID 1 without one.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// How long to keep collecting output after the command exited, for background processes
/// that inherited its pipes. Output they write later is not collected.
const DRAIN_AFTER_EXIT: Duration = Duration::from_millis(250);

const READ_CHUNK: usize = 64 * 1024;

/// Why a command could not be started.
#[derive(Debug, Error)]
pub enum ExecError {
    /// The request itself is unusable.
    #[error("{0}")]
    BadRequest(String),
    /// The working directory does not exist.
    #[error("working directory {0} does not exist")]
    NoWorkingDirectory(String),
    /// No such program.
    #[error("program not found: {program}{}", searched.as_ref().map(|path| format!(" (searched PATH={path})")).unwrap_or_default())]
    NotFound {
        /// The program as requested.
        program: String,
        /// The `PATH` searched, if the program had no `/`.
        searched: Option<String>,
    },
    /// The program exists but what it needs to run (ELF interpreter, `#!` interpreter) does not.
    #[error("cannot execute {0}: its interpreter (dynamic loader or #! program) is missing")]
    InterpreterMissing(String),
    /// Not allowed to execute it.
    #[error("permission denied: cannot execute {0}")]
    PermissionDenied(String),
    /// The kernel does not recognise it as an executable (commonly: built for another
    /// architecture).
    #[error("{program} is not an executable for this machine ({machine})")]
    WrongMachine {
        /// The program as requested.
        program: String,
        /// `uname -m` of this machine.
        machine: String,
    },
    /// Any other failure to start it.
    #[error("cannot execute {program}: {source}")]
    Spawn {
        /// The program as requested.
        program: String,
        /// What the operating system said.
        source: io::Error,
    },
}

impl From<ExecError> for RemoteError {
    fn from(error: ExecError) -> Self {
        let kind = match error {
            ExecError::BadRequest(_) => ErrorKind::BadRequest,
            ExecError::NoWorkingDirectory(_) => ErrorKind::NotFound,
            _ => ErrorKind::ExecFailed,
        };
        RemoteError::new(kind, error.to_string())
    }
}

/// Builds and starts commands for exec requests and services.
#[derive(Debug, Clone)]
pub struct Launcher {
    processes: ProcessTable,
    machine: String,
    /// Set when the agent's own environment has no `PATH`.
    default_path: Option<&'static str>,
}

impl Launcher {
    /// A launcher spawning through `processes` on a machine whose `uname -m` is `machine`.
    pub fn new(processes: ProcessTable, machine: String) -> Self {
        let default_path = std::env::var_os("PATH").is_none().then_some(DEFAULT_PATH);
        Self {
            processes,
            machine,
            default_path,
        }
    }

    /// Starts `argv` in `cwd` with `env` added to the agent's environment. The child leads
    /// its own process group; stdout and stderr are pipes, stdin a pipe if `stdin_piped`,
    /// otherwise `/dev/null`.
    pub fn launch<'a>(
        &self,
        argv: &[String],
        env: impl IntoIterator<Item = (&'a String, &'a String)>,
        cwd: &str,
        stdin_piped: bool,
    ) -> Result<Child, ExecError> {
        let (program, args) = argv
            .split_first()
            .filter(|(program, _)| !program.is_empty())
            .ok_or_else(|| ExecError::BadRequest("argv is empty".into()))?;
        if !Path::new(cwd).is_dir() {
            return Err(ExecError::NoWorkingDirectory(cwd.to_owned()));
        }
        let mut command = Command::new(program);
        command
            .args(args)
            .current_dir(cwd)
            .stdin(if stdin_piped {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(path) = self.default_path {
            command.env("PATH", path);
        }
        let mut search_path = None;
        for (name, value) in env {
            if name == "PATH" {
                search_path = Some(OsString::from(value));
            }
            command.env(name, value);
        }
        let search_path = search_path
            .or_else(|| self.default_path.map(OsString::from))
            .or_else(|| std::env::var_os("PATH"))
            .unwrap_or_default();
        self.processes
            .spawn(&mut command)
            .map_err(|error| self.explain(program, &search_path, error))
    }

    /// Turns a spawn error into one that names the program and says what to do about it.
    fn explain(&self, program: &str, search_path: &OsString, error: io::Error) -> ExecError {
        let has_slash = program.contains('/');
        match error.raw_os_error() {
            Some(libc::ENOENT) => {
                let found = if has_slash {
                    Path::new(program).exists()
                } else {
                    find_in_path(program, search_path).is_some()
                };
                if found {
                    ExecError::InterpreterMissing(program.to_owned())
                } else {
                    ExecError::NotFound {
                        program: program.to_owned(),
                        searched: (!has_slash).then(|| search_path.to_string_lossy().into_owned()),
                    }
                }
            }
            Some(libc::EACCES) => ExecError::PermissionDenied(program.to_owned()),
            Some(libc::ENOEXEC) => ExecError::WrongMachine {
                program: program.to_owned(),
                machine: self.machine.clone(),
            },
            _ => ExecError::Spawn {
                program: program.to_owned(),
                source: error,
            },
        }
    }

    /// Serves one exec request: starts the command, forwards its output as `Stdout` and
    /// `Stderr` frames, and ends with `Exited` (or an error if it could not start). Fails only
    /// if the connection fails, after killing the command's process group.
    pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        request: ExecRequest,
        channel: &mut Channel<S>,
    ) -> Result<(), ChannelError> {
        let started = Instant::now();
        let cwd = request.cwd.as_deref().unwrap_or("/");
        let mut child = match self.launch(&request.argv, &request.env, cwd, request.stdin.is_some())
        {
            Ok(child) => child,
            Err(error) => return channel.send_control(&Response::Error(error.into())).await,
        };
        let result = stream_until_exit(&mut child, request, started, channel).await;
        if result.is_err() {
            child.signal_group(Signal::SIGKILL);
        }
        result
    }
}

async fn stream_until_exit<S: AsyncRead + AsyncWrite + Unpin>(
    child: &mut Child,
    request: ExecRequest,
    started: Instant,
    channel: &mut Channel<S>,
) -> Result<(), ChannelError> {
    let pipes = (|| -> io::Result<_> {
        let stdout = child
            .stdout
            .take()
            .map(|out| pipe::Receiver::from_owned_fd(OwnedFd::from(out)));
        let stderr = child
            .stderr
            .take()
            .map(|err| pipe::Receiver::from_owned_fd(OwnedFd::from(err)));
        let stdin = child
            .stdin
            .take()
            .map(|input| pipe::Sender::from_owned_fd(OwnedFd::from(input)));
        Ok((stdout.transpose()?, stderr.transpose()?, stdin.transpose()?))
    })();
    let (mut stdout, mut stderr, stdin) = match pipes {
        Ok(pipes) => pipes,
        Err(error) => {
            child.signal_group(Signal::SIGKILL);
            let error =
                RemoteError::new(ErrorKind::Internal, format!("cannot set up pipes: {error}"));
            return channel.send_control(&Response::Error(error)).await;
        }
    };
    let feeder = match (stdin, request.stdin) {
        (Some(mut pipe), Some(input)) => Some(tokio::spawn(async move {
            // A command that exits without reading all its input closes the pipe: not an error.
            let _ = pipe.write_all(&input).await;
        })),
        _ => None,
    };
    let timeout_at = request.timeout.map(|limit| started + limit);
    let (mut out_buf, mut err_buf) = (vec![0u8; READ_CHUNK], vec![0u8; READ_CHUNK]);
    let mut ended = None;
    let mut timed_out = false;
    let result = loop {
        if ended.is_some() && stdout.is_none() && stderr.is_none() {
            break Ok(());
        }
        let drain_until = ended.map(|(_, at): (_, Instant)| at + DRAIN_AFTER_EXIT);
        tokio::select! {
            read = read_some(&mut stdout, &mut out_buf) => match read {
                Some(n) => {
                    if let Err(error) = channel.send(FrameKind::Stdout, &out_buf[..n]).await {
                        break Err(error);
                    }
                }
                None => stdout = None,
            },
            read = read_some(&mut stderr, &mut err_buf) => match read {
                Some(n) => {
                    if let Err(error) = channel.send(FrameKind::Stderr, &err_buf[..n]).await {
                        break Err(error);
                    }
                }
                None => stderr = None,
            },
            termination = child.wait(), if ended.is_none() => match termination {
                Ok(termination) => ended = Some((termination, Instant::now())),
                Err(error) => {
                    // `ended` stays unset, so no exit status follows this error.
                    let error = RemoteError::new(ErrorKind::Internal, error.to_string());
                    break channel.send_control(&Response::Error(error)).await;
                }
            },
            () = sleep_until(timeout_at), if !timed_out && ended.is_none() => {
                child.signal_group(Signal::SIGKILL);
                timed_out = true;
            },
            () = sleep_until(drain_until) => break Ok(()),
        }
    };
    if let Some(feeder) = feeder {
        feeder.abort();
    }
    result?;
    match ended {
        Some((termination, at)) => {
            let status = ExitStatus {
                termination,
                duration: at - started,
                timed_out,
            };
            channel.send_control(&Response::Exited(status)).await
        }
        None => Ok(()),
    }
}

/// Reads from an open pipe; `None` once it is closed (or failed), pending forever if there is
/// no pipe.
async fn read_some(pipe: &mut Option<pipe::Receiver>, buffer: &mut [u8]) -> Option<usize> {
    match pipe {
        Some(pipe) => match pipe.read(buffer).await {
            Ok(0) | Err(_) => None,
            Ok(n) => Some(n),
        },
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Where `PATH` lookup would find `program`, if anywhere.
fn find_in_path(program: &str, search_path: &OsString) -> Option<PathBuf> {
    std::env::split_paths(search_path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}
