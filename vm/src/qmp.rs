//! Async QMP client for one QEMU process, on the `qapi` crate.
//!
//! `qapi` delivers command replies through the same stream as events, so every
//! call here polls that stream while it waits and keeps the events it sees for
//! [`Qmp::wait_event`]. No background task is spawned: a [`Qmp`] works on any
//! tokio runtime, current-thread included.

use std::collections::VecDeque;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures::StreamExt;
use qapi::futures::{QapiEvents, QapiService, QmpStreamTokio};
use tokio::io::{ReadHalf, WriteHalf};
use tokio::net::UnixStream;

pub use qapi::qmp::{Event, RunState, StatusInfo};

type Reader = QmpStreamTokio<ReadHalf<UnixStream>>;
type Writer = QmpStreamTokio<WriteHalf<UnixStream>>;

/// A negotiated QMP connection.
pub struct Qmp {
    socket: PathBuf,
    service: QapiService<Writer>,
    events: QapiEvents<Reader>,
    seen: VecDeque<Event>,
    closed: bool,
}

impl std::fmt::Debug for Qmp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Qmp").field("socket", &self.socket).field("closed", &self.closed).finish_non_exhaustive()
    }
}

/// Error from a QMP operation; each names the socket.
#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    /// Could not connect and negotiate before the deadline.
    #[error("cannot connect to QMP at {socket}: {source}")]
    Connect {
        /// The QMP socket.
        socket: PathBuf,
        /// The last error seen.
        source: std::io::Error,
    },
    /// QEMU refused a command.
    #[error("QMP command {command} at {socket} failed: {message}")]
    Command {
        /// The QMP socket.
        socket: PathBuf,
        /// The command.
        command: &'static str,
        /// QEMU's error.
        message: String,
    },
    /// The connection broke or was closed by QEMU.
    #[error("QMP connection {socket} closed during {during}: {source}")]
    Closed {
        /// The QMP socket.
        socket: PathBuf,
        /// What was in progress.
        during: &'static str,
        /// The I/O error, or end of stream.
        source: std::io::Error,
    },
    /// The awaited event did not come in time.
    #[error("no {what} event on QMP {socket} within {waited:?}")]
    Timeout {
        /// The QMP socket.
        socket: PathBuf,
        /// The event awaited.
        what: &'static str,
        /// How long it waited.
        waited: Duration,
    },
}

impl Qmp {
    /// Connects to `socket`, retrying while it does not exist yet or refuses
    /// (QEMU still starting) for up to `timeout`, and negotiates capabilities.
    pub async fn connect(socket: &Path, timeout: Duration) -> Result<Qmp, QmpError> {
        let deadline = Instant::now() + timeout;
        let connect_err = |source| QmpError::Connect { socket: socket.to_owned(), source };
        let attempt = async {
            loop {
                match QmpStreamTokio::open_uds(socket).await {
                    Ok(negotiation) => return negotiation.negotiate().await,
                    Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::ConnectionRefused) => {
                        if Instant::now() >= deadline {
                            return Err(e);
                        }
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    Err(e) => return Err(e),
                }
            }
        };
        let stream = tokio::time::timeout_at(deadline.into(), attempt)
            .await
            .map_err(|_| connect_err(std::io::Error::new(ErrorKind::TimedOut, "deadline passed")))?
            .map_err(connect_err)?;
        let (service, events) = stream.into_parts();
        Ok(Qmp { socket: socket.to_owned(), service, events, seen: VecDeque::new(), closed: false })
    }

    /// The VM's run state (`query-status`).
    pub async fn status(&mut self) -> Result<StatusInfo, QmpError> {
        self.execute(qapi::qmp::query_status {}, "query-status").await
    }

    /// Presses the virtual power button (`system_powerdown`). What follows is up
    /// to the guest: on a kernel without a power-button driver nothing happens.
    pub async fn system_powerdown(&mut self) -> Result<(), QmpError> {
        self.execute(qapi::qmp::system_powerdown {}, "system_powerdown").await.map(drop)
    }

    /// Ends QEMU at once (`quit`). QEMU may close the connection before or instead
    /// of replying; that counts as success.
    pub async fn quit(&mut self) -> Result<(), QmpError> {
        match self.execute(qapi::qmp::quit {}, "quit").await {
            Ok(_) | Err(QmpError::Closed { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Waits up to `timeout` for an event `matches` accepts (events that arrived
    /// during earlier calls count), and returns it. `what` names the event in the
    /// timeout error.
    pub async fn wait_event(
        &mut self,
        what: &'static str,
        timeout: Duration,
        mut matches: impl FnMut(&Event) -> bool,
    ) -> Result<Event, QmpError> {
        if let Some(event) = self.seen.iter().position(&mut matches).and_then(|at| self.seen.remove(at)) {
            return Ok(event);
        }
        let start = Instant::now();
        let deadline = start + timeout;
        loop {
            if self.closed {
                return Err(self.closed_err(what, std::io::Error::from(ErrorKind::UnexpectedEof)));
            }
            let next = tokio::time::timeout_at(deadline.into(), self.events.next()).await;
            match next {
                Err(_) => {
                    return Err(QmpError::Timeout { socket: self.socket.clone(), what, waited: start.elapsed() });
                }
                Ok(Some(Ok(event))) if matches(&event) => return Ok(event),
                Ok(Some(Ok(event))) => self.seen.push_back(event),
                Ok(Some(Err(e))) => return Err(self.closed_err(what, e)),
                Ok(None) => self.closed = true,
            }
        }
    }

    /// Waits for QEMU's `SHUTDOWN` event (guest power-off, `quit`, or a signal).
    pub async fn wait_shutdown(&mut self, timeout: Duration) -> Result<Event, QmpError> {
        self.wait_event("SHUTDOWN", timeout, |e| matches!(e, Event::SHUTDOWN { .. })).await
    }

    async fn execute<C>(&mut self, command: C, name: &'static str) -> Result<C::Ok, QmpError>
    where
        C: qapi::qmp::QmpCommand,
    {
        if self.closed {
            return Err(self.closed_err(name, std::io::Error::from(ErrorKind::UnexpectedEof)));
        }
        let reply = self.service.execute(command);
        tokio::pin!(reply);
        loop {
            tokio::select! {
                biased;
                result = &mut reply => {
                    return result.map_err(|e| match e {
                        qapi::ExecuteError::Qapi(e) => QmpError::Command {
                            socket: self.socket.clone(),
                            command: name,
                            message: e.to_string(),
                        },
                        qapi::ExecuteError::Io(e) => self.closed_err(name, e),
                    });
                }
                event = self.events.next() => match event {
                    Some(Ok(event)) => self.seen.push_back(event),
                    // After `quit`, QEMU resets the connection: that is its end.
                    Some(Err(e)) => {
                        self.closed = true;
                        return Err(self.closed_err(name, e));
                    }
                    None => {
                        self.closed = true;
                        return Err(self.closed_err(name, std::io::Error::from(ErrorKind::UnexpectedEof)));
                    }
                },
            }
        }
    }

    fn closed_err(&self, during: &'static str, source: std::io::Error) -> QmpError {
        QmpError::Closed { socket: self.socket.clone(), during, source }
    }
}
