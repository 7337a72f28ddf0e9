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
                if last.is_some() && failed >= check.failures {
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc;

    #[tokio::test]
    async fn an_instance_that_passed_is_failing_after_its_checks_fail_in_a_row() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let check = HealthCheck {
            interval_ms: 10,
            start_period_ms: 60_000,
            ..HealthCheck::new(Probe::Tcp { port })
        };
        let (seen, mut told) = mpsc::unbounded_channel();
        let watching = tokio::spawn(async move {
            watch(Some(&check), |healthy| {
                let _ = seen.send(healthy);
            })
            .await
        });
        assert_eq!(told.recv().await, Some(true));
        drop(listener);
        assert_eq!(told.recv().await, Some(false));
        let reason = tokio::time::timeout(Duration::from_secs(5), watching)
            .await
            .expect("the watch ends after three failed checks")
            .unwrap();
        assert!(
            reason.starts_with(&format!(
                "health check failed 3 times in a row: (tcp 127.0.0.1:{port}): "
            )),
            "{reason}"
        );
    }
}
