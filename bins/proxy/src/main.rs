//! `sinew-proxy`: the command line; everything it does lives in the `sinew_proxy` library.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use sinew_proxy::config::{Balance, Listen, Settings};
use sinew_support::duration;
use sinew_support::logging::Logging;

/// A request costs the proxy a dozen small allocations (hyper's messages, header maps and
/// channels); with mimalloc instead of glibc's malloc its user-space time per request fell
/// from 11.2-11.8 µs to 7.7-8.6 µs (small requests at 64 connections, on loopback).
#[cfg(target_env = "gnu")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// TCP and HTTP/1.1 proxying to a service's healthy instances, as the KV store says they
/// are; backend changes apply in process, without a reload or a dropped connection.
#[derive(Debug, Parser)]
#[command(name = "sinew-proxy", version, about)]
struct Cli {
    /// KV endpoints (kvd or etcd, v3 API), comma-separated.
    #[arg(
        long,
        env = "SINEW_PROXY_ENDPOINTS",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:2379"
    )]
    endpoints: Vec<String>,

    /// A listener, `ADDRESS=SERVICE[/tcp|/http]` (http when not given); repeatable, or
    /// comma-separated in the environment.
    #[arg(
        long,
        env = "SINEW_PROXY_LISTEN",
        value_delimiter = ',',
        required = true
    )]
    listen: Vec<Listen>,

    /// How a backend is chosen.
    #[arg(long, env = "SINEW_PROXY_BALANCE", value_enum, default_value_t)]
    balance: Balance,

    /// How long a backend has to accept a connection before the next one is tried (5s,
    /// 500ms).
    #[arg(long, env = "SINEW_PROXY_CONNECT_TIMEOUT", default_value = "1s", value_parser = seconds)]
    connect_timeout: Duration,

    /// How long the open connections of a backend that leaves may go on; also how long the
    /// proxy's own may finish when it stops.
    #[arg(long, env = "SINEW_PROXY_DRAIN_GRACE", default_value = "10s", value_parser = seconds)]
    drain_grace: Duration,

    /// Threads that serve connections, each with every listener (default: one per CPU).
    #[arg(long, env = "SINEW_PROXY_WORKERS", default_value_t = default_workers())]
    workers: NonZeroUsize,

    /// Where to serve `GET /status` (JSON), `address:port`; off when not given.
    #[arg(long, env = "SINEW_PROXY_STATUS_LISTEN")]
    status_listen: Option<SocketAddr>,
}

fn default_workers() -> NonZeroUsize {
    std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN)
}

fn seconds(text: &str) -> Result<Duration, duration::DurationError> {
    duration::parse(text, Duration::from_secs(1))
}

fn main() -> ExitCode {
    Logging::new("RUST_LOG", "info").init();
    let cli = Cli::parse();
    let settings = Settings {
        endpoints: cli.endpoints,
        listen: cli.listen,
        balance: cli.balance,
        connect_timeout: cli.connect_timeout,
        drain_grace: cli.drain_grace,
        workers: cli.workers,
        status_listen: cli.status_listen,
    };
    match sinew_proxy::daemon::run(settings) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            eprintln!("sinew-proxy: {error:#}");
            ExitCode::FAILURE
        }
    }
}
