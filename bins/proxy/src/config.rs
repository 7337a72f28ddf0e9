//! What the proxy serves: listeners (`sinew_proto::discovery::Listen`, each for one
//! service in one mode), and how it picks and leaves backends.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::time::Duration;

pub use sinew_proto::discovery::{Listen, ListenError, Mode};

/// How a backend is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Balance {
    /// Each in turn.
    #[default]
    RoundRobin,
    /// The one with the fewest open connections (requests in flight, for HTTP); ties in
    /// turn.
    LeastConn,
}

/// Everything the daemon runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    /// KV endpoints.
    pub endpoints: Vec<String>,
    /// The listeners.
    pub listen: Vec<Listen>,
    /// How backends are chosen.
    pub balance: Balance,
    /// How long a backend has to accept a connection before the next one is tried.
    pub connect_timeout: Duration,
    /// How long a leaving backend's open connections may go on; also how long the proxy's
    /// own connections may finish when it is stopped.
    pub drain_grace: Duration,
    /// Where the status endpoint listens, if anywhere.
    pub status_listen: Option<SocketAddr>,
    /// Threads that serve connections.
    pub workers: NonZeroUsize,
}
