//! What the proxy serves: listeners, each for one service in one mode, and how it picks
//! and leaves backends.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::str::FromStr;
use std::time::Duration;

use sinew_proto::names::check_name;
use thiserror::Error;

/// How a listener's connections are proxied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Bytes both ways, a backend per connection.
    Tcp,
    /// HTTP/1.1, a backend per request.
    Http,
}

impl Mode {
    /// `tcp` or `http`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Http => "http",
        }
    }
}

/// One listener: `ADDRESS=SERVICE[/tcp|/http]` on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listen {
    /// Where it listens.
    pub address: SocketAddr,
    /// The service it proxies to.
    pub service: String,
    /// How.
    pub mode: Mode,
}

/// A listener that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("--listen {given:?}: {reason}")]
pub struct ListenError {
    /// What was given.
    pub given: String,
    /// What is wrong with it.
    pub reason: String,
}

impl FromStr for Listen {
    type Err = ListenError;

    fn from_str(given: &str) -> Result<Self, Self::Err> {
        let error = |reason: String| ListenError {
            given: given.to_owned(),
            reason,
        };
        let (address, target) = given.split_once('=').ok_or_else(|| {
            error("expected ADDRESS=SERVICE[/tcp|/http], e.g. 0.0.0.0:8080=web/http".into())
        })?;
        let address = address
            .parse()
            .map_err(|_| error(format!("{address:?} is not an address:port")))?;
        let (service, mode) = match target.split_once('/') {
            None => (target, Mode::Http),
            Some((service, "http")) => (service, Mode::Http),
            Some((service, "tcp")) => (service, Mode::Tcp),
            Some((_, other)) => {
                return Err(error(format!("mode {other:?}: expected tcp or http")));
            }
        };
        check_name(service).map_err(|reason| error(format!("service {reason}")))?;
        Ok(Self {
            address,
            service: service.to_owned(),
            mode,
        })
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listeners_parse_with_http_by_default_and_bad_ones_say_what_is_expected() {
        assert_eq!(
            "0.0.0.0:8080=web".parse(),
            Ok(Listen {
                address: "0.0.0.0:8080".parse().unwrap(),
                service: "web".into(),
                mode: Mode::Http,
            })
        );
        assert_eq!(
            "127.0.0.1:6379=cache/tcp".parse::<Listen>().unwrap().mode,
            Mode::Tcp
        );
        for (given, reason) in [
            (
                "8080",
                "expected ADDRESS=SERVICE[/tcp|/http], e.g. 0.0.0.0:8080=web/http",
            ),
            ("localhost:80=web", "\"localhost:80\" is not an address:port"),
            ("0.0.0.0:80=web/udp", "mode \"udp\": expected tcp or http"),
            (
                "0.0.0.0:80=we b",
                "service \"we b\" may hold only letters, digits, '-', '_' and '.', and not start with '.'",
            ),
        ] {
            let error = given.parse::<Listen>().unwrap_err();
            assert_eq!(error.reason, reason, "{given}");
            assert!(error.to_string().starts_with(&format!("--listen {given:?}: ")));
        }
    }
}
