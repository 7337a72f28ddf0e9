//! Health checks: a command, a TCP connect or an HTTP GET, on the machine's loopback.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use http_body_util::Empty;
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpStream;
use tokio::process::Command;

use crate::unit::{HealthCheck, Probe};

/// Checks every interval, telling `healthy` each result that differs from the last, and
/// resolves with the reason once `failures` checks in a row failed after one passed, or
/// none passed within the start period. Without a check it never resolves.
pub async fn watch(check: Option<&HealthCheck>, mut healthy: impl FnMut(bool)) -> String {
    let Some(check) = check else {
        return std::future::pending().await;
    };
    let interval = Duration::from_millis(check.interval_ms);
    let timeout = Duration::from_millis(check.timeout_ms);
    let start_period = Duration::from_millis(check.start_period_ms);
    let started = tokio::time::Instant::now();
    let mut failed = 0;
    let mut last = None;
    loop {
        let outcome = match tokio::time::timeout(timeout, probe(&check.probe)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(format!("no answer within {timeout:?}")),
        };
        match outcome {
            Ok(()) => {
                failed = 0;
                if last != Some(true) {
                    healthy(true);
                    last = Some(true);
                }
            }
            Err(reason) => {
                failed += 1;
                if last.is_none() && started.elapsed() >= start_period {
                    return format!(
                        "never healthy within {start_period:?}: {} {reason}",
                        describe(&check.probe)
                    );
                }
                // Until it first passed, an instance is starting, not failing.
                if last == Some(true) && failed >= check.failures {
                    return format!(
                        "health check failed {failed} times in a row: {} {reason}",
                        describe(&check.probe)
                    );
                }
                if last == Some(true) {
                    healthy(false);
                    last = Some(false);
                }
            }
        }
        tokio::time::sleep(interval).await;
    }
}

/// One check.
pub async fn probe(probe: &Probe) -> Result<(), String> {
    match probe {
        Probe::Command { argv } => {
            let (program, args) = argv.split_first().ok_or("no program")?;
            let status = Command::new(program)
                .args(args)
                .kill_on_drop(true)
                .status()
                .await
                .map_err(|error| error.to_string())?;
            if status.success() {
                Ok(())
            } else {
                Err(format!("ended: {status}"))
            }
        }
        Probe::Tcp { port } => TcpStream::connect(loopback(*port))
            .await
            .map(drop)
            .map_err(|error| error.to_string()),
        Probe::Http { port, path } => {
            let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
            let uri = format!("http://127.0.0.1:{port}{path}")
                .parse::<hyper::Uri>()
                .map_err(|error| error.to_string())?;
            let response = client.get(uri).await.map_err(|error| error.to_string())?;
            if response.status().is_success() {
                Ok(())
            } else {
                Err(format!("answered {}", response.status()))
            }
        }
    }
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

fn describe(probe: &Probe) -> String {
    match probe {
        Probe::Command { argv } => format!("({}):", argv.join(" ")),
        Probe::Tcp { port } => format!("(tcp 127.0.0.1:{port}):"),
        Probe::Http { port, path } => format!("(GET http://127.0.0.1:{port}{path}):"),
    }
}
