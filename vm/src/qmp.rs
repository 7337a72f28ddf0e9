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

/// Events kept for [`Qmp::wait_event`]; older ones are dropped first, so a
/// connection nobody waits on does not grow without bound.
const KEPT_EVENTS: usize = 256;

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
        f.debug_struct("Qmp")
            .field("socket", &self.socket)
            .field("closed", &self.closed)
            .finish_non_exhaustive()
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
        let connect_err = |source| QmpError::Connect {
            socket: socket.to_owned(),
            source,
        };
        let attempt = async {
            loop {
                match QmpStreamTokio::open_uds(socket).await {
                    Ok(negotiation) => return negotiation.negotiate().await,
                    Err(e)
                        if matches!(
                            e.kind(),
                            ErrorKind::NotFound | ErrorKind::ConnectionRefused
                        ) =>
                    {
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
        Ok(Qmp {
            socket: socket.to_owned(),
            service,
            events,
            seen: VecDeque::new(),
            closed: false,
        })
    }

    /// The VM's run state (`query-status`).
    pub async fn status(&mut self) -> Result<StatusInfo, QmpError> {
        self.execute(qapi::qmp::query_status {}, "query-status")
            .await
    }

    /// Presses the virtual power button (`system_powerdown`). What follows is up
    /// to the guest: on a kernel without a power-button driver nothing happens.
    pub async fn system_powerdown(&mut self) -> Result<(), QmpError> {
        self.execute(qapi::qmp::system_powerdown {}, "system_powerdown")
            .await
            .map(drop)
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
        if let Some(event) = self
            .seen
            .iter()
            .position(&mut matches)
            .and_then(|at| self.seen.remove(at))
        {
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
                    return Err(QmpError::Timeout {
                        socket: self.socket.clone(),
                        what,
                        waited: start.elapsed(),
                    });
                }
                Ok(Some(Ok(event))) if matches(&event) => return Ok(event),
                Ok(Some(Ok(event))) => self.keep(event),
                Ok(Some(Err(e))) => {
                    self.closed = true;
                    return Err(self.closed_err(what, e));
                }
                Ok(None) => self.closed = true,
            }
        }
    }

    /// Waits for QEMU's `SHUTDOWN` event (guest power-off, `quit`, or a signal).
    pub async fn wait_shutdown(&mut self, timeout: Duration) -> Result<Event, QmpError> {
        self.wait_event("SHUTDOWN", timeout, |e| matches!(e, Event::SHUTDOWN { .. }))
            .await
    }

    async fn execute<C>(&mut self, command: C, name: &'static str) -> Result<C::Ok, QmpError>
    where
        C: qapi::qmp::QmpCommand + Send + 'static,
        C::Ok: Send,
    {
        if self.closed {
            return Err(self.closed_err(name, std::io::Error::from(ErrorKind::UnexpectedEof)));
        }
        // The command runs as a task of its own, so that a caller who gives up on it (a
        // timeout) does not cancel it halfway: qapi would keep its id pending without the
        // reply that clears it, and the next command on this connection would panic on the
        // duplicate id. The task ends with QEMU's reply, or when the connection closes.
        let reply = tokio::spawn(self.service.execute(command));
        tokio::pin!(reply);
        loop {
            tokio::select! {
                biased;
                result = &mut reply => {
                    let result = result.unwrap_or_else(|joined| {
                        Err(qapi::ExecuteError::Io(std::io::Error::other(joined.to_string())))
                    });
                    return result.map_err(|e| match e {
                        qapi::ExecuteError::Qapi(e) => QmpError::Command {
                            socket: self.socket.clone(),
                            command: name,
                            message: e.to_string(),
                        },
                        // The command could not be sent or its reply cannot come: qapi keeps
                        // its id pending, and another command would panic on the duplicate.
                        qapi::ExecuteError::Io(e) => {
                            self.closed = true;
                            self.closed_err(name, e)
                        }
                    });
                }
                event = self.events.next() => match event {
                    Some(Ok(event)) => self.keep(event),
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

    fn keep(&mut self, event: Event) {
        if self.seen.len() == KEPT_EVENTS {
            self.seen.pop_front();
        }
        self.seen.push_back(event);
    }

    fn closed_err(&self, during: &'static str, source: std::io::Error) -> QmpError {
        QmpError::Closed {
            socket: self.socket.clone(),
            during,
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    use tokio::net::UnixListener;

    /// What QEMU 7.2 says first on a QMP connection.
    const GREETING: &str = r#"{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": ""}, "capabilities": []}}"#;

    /// A QMP server that answers like QEMU: an event slipped in before the
    /// `query-status` reply, and `quit` answered by hanging up. `system_powerdown` is
    /// refused, or with `powerdown_after` answered that late, as a loaded QEMU might.
    async fn fake_qemu(listener: UnixListener, powerdown_after: Option<Duration>) {
        let (stream, _) = listener.accept().await.unwrap();
        let (read, mut write) = stream.into_split();
        write
            .write_all(format!("{GREETING}\r\n").as_bytes())
            .await
            .unwrap();
        let mut lines = BufReader::new(read).lines();
        while let Some(line) = lines.next_line().await.unwrap() {
            let reply = if line.contains("qmp_capabilities") {
                r#"{"return": {}}"#.to_owned()
            } else if line.contains("query-status") {
                let event = r#"{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "STOP"}"#;
                format!(
                    "{event}\r\n{}",
                    r#"{"return": {"running": false, "status": "paused"}}"#
                )
            } else if line.contains("quit") {
                return;
            } else if let (true, Some(after)) = (line.contains("system_powerdown"), powerdown_after)
            {
                tokio::time::sleep(after).await;
                r#"{"return": {}}"#.to_owned()
            } else {
                r#"{"error": {"class": "CommandNotFound", "desc": "nope"}}"#.to_owned()
            };
            write
                .write_all(format!("{reply}\r\n").as_bytes())
                .await
                .unwrap();
        }
    }

    #[tokio::test]
    async fn commands_events_and_quit_against_a_fake_qemu() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("qmp.sock");
        let connecting = tokio::spawn({
            let socket = socket.clone();
            async move { Qmp::connect(&socket, Duration::from_secs(5)).await }
        });
        // The socket appears after the client started retrying.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let server = tokio::spawn(fake_qemu(UnixListener::bind(&socket).unwrap(), None));
        let mut qmp = connecting.await.unwrap().unwrap();

        let status = qmp.status().await.unwrap();
        assert!(
            !status.running && matches!(status.status, RunState::paused),
            "{status:?}"
        );
        let stop = qmp
            .wait_event("STOP", Duration::from_secs(1), |e| {
                matches!(e, Event::STOP { .. })
            })
            .await;
        assert!(stop.is_ok(), "{stop:?}");
        let err = qmp.system_powerdown().await.unwrap_err().to_string();
        assert!(
            err.contains("system_powerdown") && err.contains("nope"),
            "{err}"
        );

        qmp.quit().await.unwrap();
        server.await.unwrap();
        let err = qmp.status().await.unwrap_err();
        assert!(matches!(err, QmpError::Closed { .. }), "{err}");
        let err = qmp
            .wait_shutdown(Duration::from_millis(50))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains(&socket.display().to_string()), "{err}");
    }

    #[tokio::test]
    async fn a_command_given_up_on_leaves_the_connection_usable() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("qmp.sock");
        let server = tokio::spawn(fake_qemu(
            UnixListener::bind(&socket).unwrap(),
            Some(Duration::from_millis(300)),
        ));
        let mut qmp = Qmp::connect(&socket, Duration::from_secs(5)).await.unwrap();
        let gave_up = tokio::time::timeout(Duration::from_millis(50), qmp.system_powerdown()).await;
        assert!(gave_up.is_err(), "the fake answers late: {gave_up:?}");
        // The next command waits for the late reply, then gets its own.
        let status = qmp.status().await.unwrap();
        assert!(!status.running, "{status:?}");
        qmp.quit().await.unwrap();
        server.await.unwrap();
    }

    /// QEMU on its way out: it stops reading commands (a write to it fails) while its
    /// side of the connection is still open, so no end of stream arrives first.
    #[tokio::test]
    async fn a_command_that_cannot_be_sent_closes_the_connection() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("qmp.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let server = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let mut stream = BufReader::new(stream);
            stream
                .get_mut()
                .write_all(format!("{GREETING}\r\n").as_bytes())
                .await
                .unwrap();
            let mut line = String::new();
            stream.read_line(&mut line).await.unwrap();
            stream
                .get_mut()
                .write_all(b"{\"return\": {}}\r\n")
                .await
                .unwrap();
            let stream = stream.into_inner().into_std().unwrap();
            stream.shutdown(std::net::Shutdown::Read).unwrap();
            stream
        });
        let mut qmp = Qmp::connect(&socket, Duration::from_secs(5)).await.unwrap();
        let _held_open = server.await.unwrap();

        let err = qmp.system_powerdown().await.unwrap_err();
        assert!(matches!(err, QmpError::Closed { .. }), "{err}");
        // The failed command's id stays pending in qapi: sending another would panic in
        // its task. A closed connection sends nothing more.
        let err = qmp.status().await.unwrap_err();
        let QmpError::Closed { source, .. } = &err else {
            panic!("{err}")
        };
        assert_eq!(source.kind(), ErrorKind::UnexpectedEof, "{err}");
        qmp.quit().await.unwrap();
    }

    #[tokio::test]
    async fn connect_gives_up_at_the_deadline_naming_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("absent.sock");
        let started = Instant::now();
        let err = Qmp::connect(&socket, Duration::from_millis(200))
            .await
            .unwrap_err()
            .to_string();
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(err.contains("absent.sock"), "{err}");
    }
}
