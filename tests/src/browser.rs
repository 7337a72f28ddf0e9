//! A real browser for page tests and benchmarks: Debian's Chromium, headless, driven over
//! WebDriver by `chromedriver` (fantoccini), and a `sinew present` server to point it at.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use fantoccini::{Client, ClientBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

/// A headless Chromium session; the driver and browser end when it is dropped. chromedriver
/// runs in a process group of its own, which Chromium and its helpers inherit, so that the
/// whole group goes even when a failed test drops the session without closing it.
#[derive(Debug)]
pub struct Browser {
    /// The WebDriver session.
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver on a free loopback port and opens a session with a window of
    /// 1280x800 and a fresh profile.
    pub async fn start() -> Result<Self> {
        static READY: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
        crate::tools_installed(&READY, &TOOLS)?;
        let port = crate::free_port()?;
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting chromedriver (Debian: chromium-driver)")?;
        let profile = tempfile::tempdir().context("a browser profile directory")?;
        let capabilities = serde_json::json!({
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu",
                    "--disable-dev-shm-usage", "--window-size=1280,800",
                    "--no-first-run", "--disable-extensions",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }
        });
        let serde_json::Value::Object(capabilities) = capabilities else {
            bail!("capabilities are an object");
        };
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = loop {
            match ClientBuilder::new(HttpConnector::new())
                .capabilities(capabilities.clone())
                .connect(&url)
                .await
            {
                Ok(client) => break client,
                // chromedriver takes a moment to listen after it starts.
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(err) => bail!("cannot open a Chromium session through chromedriver: {err}"),
            }
        };
        Ok(Self {
            client,
            driver,
            _profile: profile,
        })
    }

    /// Evaluates `script` (a function body; `return` gives the result) in the page.
    pub async fn eval(&self, script: &str) -> Result<serde_json::Value> {
        self.client
            .execute(script, Vec::new())
            .await
            .with_context(|| format!("running in the page: {script}"))
    }

    /// Polls `script` every 20 ms until it returns true, for at most `limit`.
    pub async fn wait_until(&self, script: &str, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            if self.eval(script).await?.as_bool() == Some(true) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("waited {limit:?} for the page: {script}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Ends the session, then the driver and anything of the browser left.
    pub async fn close(self) -> Result<()> {
        self.client
            .clone()
            .close()
            .await
            .context("closing the browser session")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let group = Pid::from_raw(self.driver.id().cast_signed());
        let _ = killpg(group, Signal::SIGKILL);
        let _ = self.driver.wait();
    }
}

/// A `sinew present` server on a free loopback port; stopped with SIGTERM when dropped.
#[derive(Debug)]
pub struct Presenting {
    /// The URL it printed.
    pub url: String,
    child: Child,
    log: Arc<Mutex<String>>,
}

impl Presenting {
    /// Serves `deck` with the `sinew` binary in `bins` (the workspace's host binaries) and
    /// `args` after `present` (on a free loopback port unless they say `--listen`), with
    /// `env` added.
    pub fn start(bins: &Path, deck: &Path, args: &[&str], env: &[(&str, &Path)]) -> Result<Self> {
        let mut command = Command::new(bins.join("sinew"));
        command.arg("present");
        if !args.contains(&"--listen") {
            command.args(["--listen", "127.0.0.1:0"]);
        }
        command
            .args(args)
            .arg(deck)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().context("starting sinew present")?;
        let log = Arc::new(Mutex::new(String::new()));
        if let Some(mut stderr) = child.stderr.take() {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = stderr.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let text = String::from_utf8_lossy(buf.get(..n).unwrap_or_default());
                    log.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push_str(&text);
                }
            });
        }
        let stdout = child.stdout.take().context("piped stdout")?;
        let mut url = String::new();
        BufReader::new(stdout)
            .read_line(&mut url)
            .context("reading the URL sinew present prints")?;
        let url = url.trim().to_owned();
        if !url.starts_with("http://") {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "sinew present printed no URL; its log:\n{}",
                log.lock().unwrap_or_else(|e| e.into_inner())
            );
        }
        Ok(Self { url, child, log })
    }

    /// What the server logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The server's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits for the server to exit; returns its exit code.
    pub fn stop(&mut self) -> Result<Option<i32>> {
        let _ = kill(
            Pid::from_raw(self.child.id().cast_signed()),
            Signal::SIGTERM,
        );
        Ok(self
            .child
            .wait()
            .context("waiting for sinew present")?
            .code())
    }
}

impl Drop for Presenting {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.stop();
        }
    }
}

/// One HTTP/1.1 exchange with the server at `url`'s address (`0.0.0.0` reached on
/// loopback): `request` is sent as written, `HOST` in it replaced by that address, and the
/// response read to its end. Returns the status and the body.
pub fn http(url: &str, request: &str) -> Result<(u16, String)> {
    use std::io::Write;
    let address = url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or_default()
        .replace("0.0.0.0", "127.0.0.1");
    let mut stream = std::net::TcpStream::connect(&address)
        .with_context(|| format!("connecting to {address}"))?;
    stream
        .write_all(request.replace("HOST", &address).as_bytes())
        .context("sending the request")?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .context("reading the response")?;
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no status in {response:?}"))?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// What page tests need: Chromium and chromedriver.
pub const TOOLS: [sinew::setup::Tool; 2] = [
    sinew::setup::Tool {
        program: "chromium",
        package: "chromium",
    },
    sinew::setup::Tool {
        program: "chromedriver",
        package: "chromium-driver",
    },
];
