//! A test bed for `sinew-proxy` on loopback: kvd, the proxy with an HTTP and a TCP
//! listener for the service `web` and its status endpoint, and backends that are
//! `sinew-probe http-server` processes, registered in the store as the scheduler's agents
//! register instances. The proxy reaches kvd through a relay that the test can cut, a
//! partition between the proxy and the store.

use std::collections::BTreeMap;
use std::fs::File;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use sinew_proto::discovery::{self, Registration};
use sinew_proto::kv::{AtRevision as _, DeleteRangeRequest, KvClient, RangeRequest};
use sinew_sched::client::SchedClient;
use sinew_support::ports::free_loopback_port;
use tempfile::TempDir;

use crate::kv_cluster::{KvCluster, Server};
use crate::underlay::block_on;
use sinew::load::KeepAliveClient;

/// The service the bed's proxy serves.
pub const SERVICE: &str = "web";

/// A backend: `sinew-probe http-server` on a loopback port.
#[derive(Debug)]
pub struct Backend {
    /// Its registration.
    pub registration: Registration,
    child: Option<Child>,
}

impl Backend {
    /// Where it answers.
    pub fn address(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.registration.port))
    }

    /// Kills it outright.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The bed; everything is torn down on drop.
#[derive(Debug)]
pub struct ProxyBed {
    /// The store.
    pub kv: KvCluster,
    /// The proxy's way to the store.
    pub relay: Relay,
    proxy: Child,
    probe: PathBuf,
    /// The HTTP listener.
    pub http: SocketAddr,
    /// The TCP listener.
    pub tcp: SocketAddr,
    /// The status endpoint.
    pub status: SocketAddr,
    dir: TempDir,
}

impl ProxyBed {
    /// kvd, and the proxy with `args` added; release builds for benchmarks.
    pub fn new(release: bool, args: &[&str]) -> Result<Self> {
        let bins = crate::host_bins(release)?;
        let dir = tempfile::tempdir()?;
        let kv = KvCluster::start(Server::kvd(release)?, dir.path(), 1)?;
        kv.wait_healthy(Duration::from_secs(30))?;
        let store: SocketAddr = kv.endpoints()[0]
            .trim_start_matches("http://")
            .parse()
            .context("kvd's client URL")?;
        let relay = Relay::start(store)?;
        let port = || -> Result<SocketAddr> {
            Ok(SocketAddr::from(([127, 0, 0, 1], free_loopback_port()?)))
        };
        let (http, tcp, status) = (port()?, port()?, port()?);
        let log = File::create(dir.path().join("proxy.log"))?;
        let proxy = Command::new(bins.join("sinew-proxy"))
            .args(["--endpoints", &format!("http://{}", relay.address())])
            .args(["--listen", &format!("{http}={SERVICE}/http")])
            .args(["--listen", &format!("{tcp}={SERVICE}/tcp")])
            .args(["--status-listen", &status.to_string()])
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting sinew-proxy")?;
        let bed = Self {
            kv,
            relay,
            proxy,
            probe: bins.join("sinew-probe"),
            http,
            tcp,
            status,
            dir,
        };
        bed.wait(
            "the status endpoint answers",
            Duration::from_secs(20),
            || Ok(KeepAliveClient::new(bed.status).get("/status").is_ok()),
        )?;
        Ok(bed)
    }

    /// The proxy's process id.
    pub fn proxy_pid(&self) -> u32 {
        self.proxy.id()
    }

    /// A client of the store, directly.
    pub fn client(&self) -> Result<KvClient> {
        Ok(KvClient::new(self.kv.endpoints())?)
    }

    /// A directory that lives as long as the bed.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Starts a backend of `version` as `instance` (registered only by
    /// [`ProxyBed::register`]).
    pub fn backend(&self, instance: &str, version: &str) -> Result<Backend> {
        let port = free_loopback_port()?;
        let child = Command::new(&self.probe)
            .args(["http-server", &port.to_string()])
            .env("PROBE_VERSION", version)
            .env("SINEW_INSTANCE", instance)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting sinew-probe http-server")?;
        let backend = Backend {
            registration: Registration {
                service: SERVICE.to_owned(),
                version: version.to_owned(),
                address: "127.0.0.1".to_owned(),
                port,
                instance: instance.to_owned(),
                machine: "m1".to_owned(),
                metadata: BTreeMap::new(),
            },
            child: Some(child),
        };
        self.wait(
            &format!("{instance} answers"),
            Duration::from_secs(10),
            || {
                Ok(KeepAliveClient::new(backend.address())
                    .get("/healthz")
                    .is_ok())
            },
        )?;
        Ok(backend)
    }

    /// Writes `registration` in the store.
    pub fn register(&self, registration: &Registration) -> Result<()> {
        let client = self.client()?;
        block_on(client.put(registration.key(), serde_json::to_vec(registration)?))??;
        Ok(())
    }

    /// Deletes `registration` from the store.
    pub fn deregister(&self, registration: &Registration) -> Result<()> {
        let client = self.client()?;
        block_on(client.delete(&DeleteRangeRequest {
            key: registration.key().into_bytes(),
            ..DeleteRangeRequest::default()
        }))??;
        Ok(())
    }

    /// Makes `versions` the ones that get traffic, as `schedctl route` does.
    pub fn route(&self, versions: &[&str]) -> Result<()> {
        let versions: Vec<String> = versions.iter().map(|v| (*v).to_owned()).collect();
        let client = SchedClient::new(self.client()?);
        block_on(client.route(SERVICE, &versions))??;
        Ok(())
    }

    /// The proxy's status endpoint's answer for the service.
    pub fn service_status(&self) -> Result<serde_json::Value> {
        let answer = KeepAliveClient::new(self.status).get("/status")?;
        let mut status: serde_json::Value = serde_json::from_str(&answer.body)?;
        Ok(status["services"][SERVICE].take())
    }

    /// Waits until the proxy's pool is current to the store's latest revision.
    pub fn wait_applied(&self) -> Result<()> {
        let client = self.client()?;
        let latest = block_on(client.range(&RangeRequest {
            key: discovery::routing(SERVICE).into_bytes(),
            ..RangeRequest::default()
        }))??
        .revision();
        self.wait(
            &format!("the proxy applies revision {latest}"),
            Duration::from_secs(10),
            || Ok(self.service_status()?["revision"].as_i64() >= Some(latest)),
        )
    }

    /// Sends the proxy SIGTERM and waits for it to exit; its exit status.
    pub fn terminate(&mut self) -> Result<std::process::ExitStatus> {
        self.signal_stop()?;
        Ok(self.proxy.wait()?)
    }

    /// Sends the proxy SIGTERM without waiting for it to end.
    pub fn signal_stop(&self) -> Result<()> {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.proxy.id())?);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM)?;
        Ok(())
    }

    /// The proxy's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("proxy.log")).unwrap_or_default()
    }

    /// Polls `check` every 20 ms until it holds, for at most `patience`.
    pub fn wait(
        &self,
        what: &str,
        patience: Duration,
        mut check: impl FnMut() -> Result<bool>,
    ) -> Result<()> {
        let started = Instant::now();
        let mut last = String::new();
        loop {
            match check() {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(error) => last = format!("{error:#}"),
            }
            if started.elapsed() > patience {
                bail!(
                    "{what}: not within {patience:?} ({last}); proxy log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ProxyBed {
    fn drop(&mut self) {
        let _ = self.proxy.kill();
        let _ = self.proxy.wait();
    }
}

/// A TCP relay to one address that can be cut (every connection through it closed, new
/// ones refused) and mended.
#[derive(Debug)]
pub struct Relay {
    address: SocketAddr,
    cut: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Relay {
    /// A relay to `target` on a free loopback port.
    pub fn start(target: SocketAddr) -> Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0))?;
        let address = listener.local_addr()?;
        let cut = Arc::new(AtomicBool::new(false));
        let open = Arc::new(Mutex::new(Vec::new()));
        let (accepting_cut, accepting_open) = (Arc::clone(&cut), Arc::clone(&open));
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if accepting_cut.load(Ordering::SeqCst) {
                    continue;
                }
                let Ok(server) = TcpStream::connect(target) else {
                    continue;
                };
                let pair = [&client, &server].map(|s| s.try_clone());
                let ([Ok(client_read), Ok(server_read)], mut open) = (
                    pair,
                    accepting_open
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner),
                ) else {
                    continue;
                };
                open.extend(
                    [client_read.try_clone(), server_read.try_clone()]
                        .into_iter()
                        .flatten(),
                );
                pipe(client_read, server);
                pipe(server_read, client);
            }
        });
        Ok(Self { address, cut, open })
    }

    /// Where the relay listens.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Closes every connection through the relay and refuses new ones.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for stream in self
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
        {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    /// Lets connections through again.
    pub fn mend(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

/// Copies `from` to `to` on a thread of its own until either ends.
fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from, &mut to);
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}
