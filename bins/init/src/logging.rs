//! Logs to stderr, which for PID 1 is the console.

use std::io::IsTerminal;

use tracing_subscriber::fmt::time::uptime;
use tracing_subscriber::EnvFilter;

/// Starts logging with `filter` (tracing's filter syntax), or `RUST_LOG`, or `info`.
/// Timestamps count from the start of logging, which for PID 1 is just after the mounts:
/// useful for reading boot times off the console. Colours only on a terminal, and never for
/// PID 1 (`color: false`), whose console is usually captured to a file.
pub fn init(filter: Option<&str>, color: bool) {
    let filter = filter
        .map(EnvFilter::new)
        .or_else(|| EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(color && std::io::stderr().is_terminal())
        .with_timer(uptime())
        .with_target(false)
        .init();
}
