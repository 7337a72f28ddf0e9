//! A steady HTTP/1.1 load, as a playbook (or a test, or a benchmark) puts on a service to
//! show that a change loses no request: a blocking client that keeps its connection open
//! between requests (as a browser or a service client does), and a load of such clients
//! that counts every answer and every failure.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// How long a request may take before it counts as failed.
const TIMEOUT: Duration = Duration::from_secs(5);
/// How often at most a client adds what it saw to the load's tally.
const REPORT_EVERY: Duration = Duration::from_millis(20);

/// An answer: its status and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// The body.
    pub body: String,
}

/// A client with one kept-alive connection, opened again when the server closes it
/// between requests.
#[derive(Debug)]
pub struct KeepAliveClient {
    address: SocketAddr,
    connection: Option<BufReader<TcpStream>>,
}

impl KeepAliveClient {
    /// A client of `address`; it connects on the first request.
    pub fn new(address: SocketAddr) -> Self {
        Self {
            address,
            connection: None,
        }
    }

    /// `GET path`. A connection the server closed while idle is opened again once; any
    /// other failure is the request's.
    pub fn get(&mut self, path: &str) -> Result<Answer> {
        let reused = self.connection.is_some();
        match self.try_get(path) {
            Err(error) if reused && idle_close(&error) => {
                self.connection = None;
                self.try_get(path)
            }
            outcome => outcome,
        }
    }

    fn try_get(&mut self, path: &str) -> Result<Answer> {
        if self.connection.is_none() {
            let stream = TcpStream::connect_timeout(&self.address, TIMEOUT)
                .with_context(|| format!("connecting to {}", self.address))?;
            stream.set_read_timeout(Some(TIMEOUT))?;
            stream.set_nodelay(true)?;
            self.connection = Some(BufReader::new(stream));
        }
        let result = self.exchange(path);
        if !matches!(&result, Ok((_, true))) {
            self.connection = None;
        }
        result.map(|(answer, _)| answer)
    }

    /// One request on the open connection; the answer and whether the connection stays
    /// open.
    fn exchange(&mut self, path: &str) -> Result<(Answer, bool)> {
        let connection = self.connection.as_mut().context("no connection")?;
        write!(
            connection.get_mut(),
            "GET {path} HTTP/1.1\r\nHost: {}\r\n\r\n",
            self.address
        )?;
        let mut line = String::new();
        if connection.read_line(&mut line)? == 0 {
            return Err(ClosedBeforeAnswer.into());
        }
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .with_context(|| format!("status line {line:?}"))?;
        let mut length = None;
        let mut keep = true;
        loop {
            line.clear();
            connection.read_line(&mut line)?;
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = Some(value.trim().parse::<u64>()?);
                } else if name.eq_ignore_ascii_case("connection") {
                    keep = !value.trim().eq_ignore_ascii_case("close");
                }
            }
        }
        let length = length.context("an answer without Content-Length")?;
        let mut body = String::new();
        connection.take(length).read_to_string(&mut body)?;
        Ok((Answer { status, body }, keep))
    }
}

/// The server closed the connection without answering the request sent on it.
#[derive(Debug)]
struct ClosedBeforeAnswer;

impl std::fmt::Display for ClosedBeforeAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the connection closed before an answer")
    }
}

impl std::error::Error for ClosedBeforeAnswer {}

/// A server closing a kept-alive connection while it was idle: the request never reached
/// it, so sending it again on a new connection is what every client does.
fn idle_close(error: &anyhow::Error) -> bool {
    error.is::<ClosedBeforeAnswer>()
        || error.downcast_ref::<std::io::Error>().is_some_and(|error| {
            matches!(
                error.kind(),
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
            )
        })
}

/// What a load saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// Answers with status 200.
    pub ok: u64,
    /// Requests that failed, by reason (a status other than 200, or an error).
    pub failed: BTreeMap<String, u64>,
    /// 200 answers by body.
    pub bodies: BTreeMap<String, u64>,
    /// The slowest request.
    pub slowest: Duration,
    /// Every request's time, in microseconds.
    pub latencies_us: Vec<u32>,
}

impl Tally {
    /// Failed requests in all.
    pub fn failures(&self) -> u64 {
        self.failed.values().sum()
    }

    /// The values of `field` in the 200 answers' JSON bodies (the probe's `version` or
    /// `instance`), each once.
    pub fn values_of(&self, field: &str) -> Result<BTreeSet<String>> {
        self.bodies
            .keys()
            .map(|body| {
                let answer: serde_json::Value =
                    serde_json::from_str(body).with_context(|| format!("answer {body:?}"))?;
                Ok(answer[field].as_str().unwrap_or_default().to_owned())
            })
            .collect()
    }

    /// Requests in all, answered or failed.
    pub fn requests(&self) -> u64 {
        self.ok + self.failures()
    }

    /// Counts a failed request, under `reason`.
    pub fn fail(&mut self, reason: String) {
        *self.failed.entry(reason).or_default() += 1;
    }

    /// Counts how long a request (answered or failed) took.
    pub fn took(&mut self, took: Duration) {
        self.slowest = self.slowest.max(took);
        self.latencies_us
            .push(u32::try_from(took.as_micros()).unwrap_or(u32::MAX));
    }

    /// Adds what `other` saw.
    pub fn add(&mut self, other: &Tally) {
        self.ok += other.ok;
        for (reason, count) in &other.failed {
            *self.failed.entry(reason.clone()).or_default() += count;
        }
        for (body, count) in &other.bodies {
            *self.bodies.entry(body.clone()).or_default() += count;
        }
        self.slowest = self.slowest.max(other.slowest);
        self.latencies_us.extend_from_slice(&other.latencies_us);
    }
}

/// `clients` clients sending `GET path` to `address` back to back, each on its own
/// kept-alive connection, until [`Load::finish`].
#[derive(Debug)]
pub struct Load {
    running: Arc<AtomicBool>,
    tally: Arc<Mutex<Tally>>,
    threads: Vec<JoinHandle<()>>,
}

impl Load {
    /// Starts the clients.
    pub fn start(address: SocketAddr, path: &str, clients: usize) -> Self {
        let running = Arc::new(AtomicBool::new(true));
        let tally = Arc::new(Mutex::new(Tally::default()));
        let threads = (0..clients)
            .map(|_| {
                let running = Arc::clone(&running);
                let tally = Arc::clone(&tally);
                let path = path.to_owned();
                std::thread::spawn(move || {
                    let mut client = KeepAliveClient::new(address);
                    let mut mine = Tally::default();
                    let mut reported = Instant::now();
                    while running.load(Ordering::Relaxed) {
                        let started = Instant::now();
                        match client.get(&path) {
                            Ok(answer) if answer.status == 200 => {
                                mine.ok += 1;
                                *mine.bodies.entry(answer.body).or_default() += 1;
                            }
                            Ok(answer) => {
                                mine.fail(format!("{} {}", answer.status, answer.body.trim()));
                            }
                            Err(error) => mine.fail(format!("{error:#}")),
                        }
                        mine.took(started.elapsed());
                        if mine.latencies_us.len() >= 64 || reported.elapsed() >= REPORT_EVERY {
                            reported = Instant::now();
                            tally
                                .lock()
                                .unwrap_or_else(PoisonError::into_inner)
                                .add(&mine);
                            mine = Tally::default();
                        }
                    }
                    tally
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .add(&mine);
                })
            })
            .collect();
        Self {
            running,
            tally,
            threads,
        }
    }

    /// What the clients saw so far (but for what each saw in the last 20 ms, or its last
    /// 63 answers, not yet added).
    pub fn so_far(&self) -> Tally {
        self.tally
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Stops the clients and returns what they saw.
    pub fn finish(mut self) -> Tally {
        self.running.store(false, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        self.so_far()
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.running.store(false, Ordering::Relaxed);
    }
}
