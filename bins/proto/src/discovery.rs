//! Service discovery in the KV store: where healthy instances of a service answer, and
//! which of its versions get traffic. The scheduler's agents write registrations; proxies
//! and deploys read them.
//!
//! | key | value | lease |
//! |---|---|---|
//! | `<service>/instances/<machine>/<instance>` | [`Registration`] | the machine's |
//! | `<service>/routing` | [`Routing`] | none |
//!
//! all under [`ROOT`]. A registration exists only while its instance runs and passes its
//! health check: the agent writes it when the instance turns healthy and deletes it when the
//! instance fails a check, ends or is stopped (before stopping it); it is written under the
//! machine's lease, so a lost machine's registrations end with its lease. The key names the
//! machine, so an instance moving between machines never has one machine delete the other's
//! registration.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::names::check_name;

/// Where discovery's keys live.
pub const ROOT: &str = "/sinew/services/";

/// One instance of a service, answering at `address:port`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registration {
    /// The service.
    pub service: String,
    /// The version it runs, which [`Routing`] selects on.
    pub version: String,
    /// Where it answers: the machine's address.
    pub address: String,
    /// Its port.
    pub port: u16,
    /// The instance (`unit@slot`).
    pub instance: String,
    /// The machine it runs on.
    pub machine: String,
    /// Anything else a client may select on.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

impl Registration {
    /// The key it is stored at.
    pub fn key(&self) -> String {
        registration(&self.service, &self.machine, &self.instance)
    }

    /// `address:port`.
    pub fn endpoint(&self) -> String {
        if self.address.contains(':') {
            format!("[{}]:{}", self.address, self.port)
        } else {
            format!("{}:{}", self.address, self.port)
        }
    }
}

/// Which versions of a service get traffic. Without a routing record every registered
/// version does; a blue-green switch is one write of this record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Routing {
    /// The versions whose instances get traffic.
    pub versions: Vec<String>,
}

impl Routing {
    /// Whether `version` gets traffic under `routing`.
    pub fn admits(routing: Option<&Routing>, version: &str) -> bool {
        routing.is_none_or(|routing| routing.versions.iter().any(|v| v == version))
    }
}

/// A service as the store holds it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    /// Its routing record, if it has one.
    pub routing: Option<Routing>,
    /// Its registered instances.
    pub instances: Vec<Registration>,
}

impl Service {
    /// The registered instances that get traffic under the routing.
    pub fn routed(&self) -> impl Iterator<Item = &Registration> {
        self.instances
            .iter()
            .filter(|instance| Routing::admits(self.routing.as_ref(), &instance.version))
    }
}

/// The prefix of every key of `service`.
pub fn service_prefix(service: &str) -> String {
    format!("{ROOT}{service}/")
}

/// An instance's registration.
pub fn registration(service: &str, machine: &str, instance: &str) -> String {
    format!("{ROOT}{service}/instances/{machine}/{instance}")
}

/// A service's routing record.
pub fn routing(service: &str) -> String {
    format!("{ROOT}{service}/routing")
}

/// A key under [`ROOT`], parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    /// `<service>/instances/<machine>/<instance>`.
    Registration {
        /// The service.
        service: String,
        /// The machine.
        machine: String,
        /// The instance.
        instance: String,
    },
    /// `<service>/routing`.
    Routing {
        /// The service.
        service: String,
    },
}

impl Key {
    /// Parses a key; `None` for one outside the layout.
    pub fn parse(key: &[u8]) -> Option<Self> {
        let rest = std::str::from_utf8(key).ok()?.strip_prefix(ROOT)?;
        let (service, rest) = rest.split_once('/')?;
        if check_name(service).is_err() {
            return None;
        }
        let service = service.to_owned();
        if rest == "routing" {
            return Some(Self::Routing { service });
        }
        let (machine, instance) = rest.strip_prefix("instances/")?.split_once('/')?;
        if machine.is_empty() || instance.is_empty() || instance.contains('/') {
            return None;
        }
        Some(Self::Registration {
            service,
            machine: machine.to_owned(),
            instance: instance.to_owned(),
        })
    }

    /// The service the key belongs to.
    pub fn service(&self) -> &str {
        match self {
            Self::Registration { service, .. } | Self::Routing { service } => service,
        }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Registration {
                service,
                machine,
                instance,
            } => f.write_str(&registration(service, machine, instance)),
            Self::Routing { service } => f.write_str(&routing(service)),
        }
    }
}

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

/// One of sinew-proxy's listeners: `ADDRESS=SERVICE[/tcp|/http]` on its command line, as
/// the SDK's proxy unit writes it.
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

impl fmt::Display for Listen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}/{}", self.address, self.service, self.mode.name())
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_back_and_others_are_refused() {
        for key in [
            Key::Registration {
                service: "web".into(),
                machine: "h1".into(),
                instance: "web@0".into(),
            },
            Key::Routing {
                service: "api.v2".into(),
            },
        ] {
            assert_eq!(Key::parse(key.to_string().as_bytes()), Some(key));
        }
        for other in [
            "/sinew/services/web",
            "/sinew/services/web/other",
            "/sinew/services/web/instances/h1",
            "/sinew/services/web/instances/h1/web@0/x",
            "/sinew/services/we b/routing",
            "/sinew/sched/units/web",
        ] {
            assert_eq!(Key::parse(other.as_bytes()), None, "{other}");
        }
    }

    #[test]
    fn routing_admits_its_versions_and_no_record_admits_all() {
        let blue = Routing {
            versions: vec!["blue".into()],
        };
        assert!(Routing::admits(Some(&blue), "blue"));
        assert!(!Routing::admits(Some(&blue), "green"));
        assert!(Routing::admits(None, "green"));
    }

    #[test]
    fn an_ipv6_endpoint_is_bracketed() {
        let mut registration = Registration {
            service: "web".into(),
            version: "1".into(),
            address: "10.0.0.2".into(),
            port: 80,
            instance: "web@0".into(),
            machine: "h1".into(),
            metadata: BTreeMap::new(),
        };
        assert_eq!(registration.endpoint(), "10.0.0.2:80");
        registration.address = "fd00::2".into();
        assert_eq!(registration.endpoint(), "[fd00::2]:80");
    }

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
        for given in ["0.0.0.0:8080=web/http", "[::1]:6379=cache/tcp"] {
            let listen: Listen = given.parse().unwrap();
            assert_eq!(listen.to_string(), given);
        }
    }
}
