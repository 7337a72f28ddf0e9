//! flannel's `subnet.env`, the file container runtimes read to join the overlay:
//!
//! ```text
//! FLANNEL_NETWORK=10.5.0.0/16
//! FLANNEL_SUBNET=10.5.3.1/24
//! FLANNEL_MTU=1450
//! FLANNEL_IPMASQ=false
//! ```
//!
//! As in flannel, all four keys are required and other keys are ignored. The file is
//! replaced atomically (temporary file, fsync, rename), so a reader never sees half a file.

use std::fmt;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use thiserror::Error;

/// Where flannel, and overlayd by default, write `subnet.env`.
pub const SUBNET_FILE: &str = "/run/flannel/subnet.env";

/// `subnet.env` could not be read, written or understood.
#[derive(Debug, Error)]
pub enum SubnetEnvError {
    /// The file could not be read.
    #[error("reading {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The file could not be replaced.
    #[error("writing {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A line is not what its key needs.
    #[error("{origin} line {line}: `{text}`: expected {expected}")]
    Line {
        /// The file, or `subnet.env` for text.
        origin: String,
        /// The line's number, from 1.
        line: usize,
        /// The line.
        text: String,
        /// What the line should look like.
        expected: &'static str,
    },
    /// A required key is absent.
    #[error("{origin}: no {key} line")]
    Missing {
        /// The file, or `subnet.env` for text.
        origin: String,
        /// The key.
        key: &'static str,
    },
}

/// An IPv4 address and a prefix length, `a.b.c.d/n`; the address may have host bits set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Cidr {
    /// The address.
    pub address: Ipv4Addr,
    /// The prefix length, 0 to 32.
    pub prefix_len: u8,
}

impl Ipv4Cidr {
    /// The network this address is in: host bits cleared.
    pub fn network(self) -> Ipv4Cidr {
        let mask = u32::MAX
            .checked_shl(32 - u32::from(self.prefix_len))
            .unwrap_or(0);
        Ipv4Cidr {
            address: Ipv4Addr::from(u32::from(self.address) & mask),
            prefix_len: self.prefix_len,
        }
    }

    fn parse(text: &str) -> Option<Self> {
        let (address, prefix_len) = text.split_once('/')?;
        Some(Self {
            address: address.parse().ok()?,
            prefix_len: prefix_len.parse().ok().filter(|len| *len <= 32)?,
        })
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix_len)
    }
}

/// What `subnet.env` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubnetEnv {
    /// `FLANNEL_NETWORK`: the whole overlay network.
    pub network: Ipv4Cidr,
    /// `FLANNEL_SUBNET`'s address: the bridge's, the containers' gateway.
    pub gateway: Ipv4Addr,
    /// `FLANNEL_SUBNET`'s prefix length: that of this host's subnet.
    pub prefix_len: u8,
    /// `FLANNEL_MTU`: the MTU of the overlay.
    pub mtu: u32,
    /// `FLANNEL_IPMASQ`: whether the daemon masquerades traffic leaving the overlay.
    pub ip_masq: bool,
}

impl SubnetEnv {
    /// This host's subnet, e.g. `10.5.3.0/24`.
    pub fn subnet(&self) -> Ipv4Cidr {
        Ipv4Cidr {
            address: self.gateway,
            prefix_len: self.prefix_len,
        }
        .network()
    }

    /// The file's text.
    pub fn render(&self) -> String {
        format!(
            "FLANNEL_NETWORK={}\nFLANNEL_SUBNET={}/{}\nFLANNEL_MTU={}\nFLANNEL_IPMASQ={}\n",
            self.network, self.gateway, self.prefix_len, self.mtu, self.ip_masq
        )
    }

    /// Parses the file's text.
    pub fn parse(text: &str) -> Result<Self, SubnetEnvError> {
        parse_from("subnet.env", text)
    }

    /// Reads and parses the file at `path`.
    pub fn read(path: &Path) -> Result<Self, SubnetEnvError> {
        let text = std::fs::read_to_string(path).map_err(|source| SubnetEnvError::Read {
            path: path.to_owned(),
            source,
        })?;
        parse_from(&path.display().to_string(), &text)
    }

    /// Replaces `path` with this content atomically, creating its directory if needed.
    pub fn write(&self, path: &Path) -> Result<(), SubnetEnvError> {
        let fail = |source| SubnetEnvError::Write {
            path: path.to_owned(),
            source,
        };
        let dir = path
            .parent()
            .filter(|dir| !dir.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(fail)?;
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let temporary = dir.join(format!(".{name}.{}.tmp", std::process::id()));
        let mut file = std::fs::File::create(&temporary).map_err(fail)?;
        file.write_all(self.render().as_bytes()).map_err(fail)?;
        file.sync_all().map_err(fail)?;
        drop(file);
        std::fs::rename(&temporary, path).map_err(fail)?;
        std::fs::File::open(dir)
            .and_then(|dir| dir.sync_all())
            .map_err(fail)
    }
}

/// The four keys' values as far as found.
#[derive(Default)]
struct Found {
    network: Option<Ipv4Cidr>,
    subnet: Option<Ipv4Cidr>,
    mtu: Option<u32>,
    ip_masq: Option<bool>,
}

/// Parses `text`, naming `origin` (the file) in errors.
fn parse_from(origin: &str, text: &str) -> Result<SubnetEnv, SubnetEnvError> {
    let mut found = Found::default();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |expected| SubnetEnvError::Line {
            origin: origin.to_owned(),
            line: index + 1,
            text: line.to_owned(),
            expected,
        };
        let (key, value) = line.split_once('=').ok_or_else(|| bad("KEY=VALUE"))?;
        let value = value.trim().trim_matches('"');
        match key.trim() {
            "FLANNEL_NETWORK" => {
                found.network = Some(
                    Ipv4Cidr::parse(value)
                        .ok_or_else(|| bad("FLANNEL_NETWORK=<network address>/<prefix length>"))?,
                );
            }
            "FLANNEL_SUBNET" => {
                found.subnet = Some(Ipv4Cidr::parse(value).ok_or_else(|| {
                    bad("FLANNEL_SUBNET=<bridge address>/<prefix length>, e.g. 10.5.3.1/24")
                })?);
            }
            "FLANNEL_MTU" => {
                found.mtu = Some(value.parse().map_err(|_| bad("FLANNEL_MTU=<bytes>"))?);
            }
            "FLANNEL_IPMASQ" => {
                found.ip_masq = Some(
                    value
                        .parse()
                        .map_err(|_| bad("FLANNEL_IPMASQ=true or false"))?,
                );
            }
            // flannel's other keys (IPv6, several networks) are not ours to read.
            _ => {}
        }
    }
    let missing = |key| SubnetEnvError::Missing {
        origin: origin.to_owned(),
        key,
    };
    let subnet = found.subnet.ok_or_else(|| missing("FLANNEL_SUBNET"))?;
    Ok(SubnetEnv {
        network: found.network.ok_or_else(|| missing("FLANNEL_NETWORK"))?,
        gateway: subnet.address,
        prefix_len: subnet.prefix_len,
        mtu: found.mtu.ok_or_else(|| missing("FLANNEL_MTU"))?,
        ip_masq: found.ip_masq.ok_or_else(|| missing("FLANNEL_IPMASQ"))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str =
        "FLANNEL_NETWORK=10.5.0.0/16\nFLANNEL_SUBNET=10.5.3.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n";

    fn env() -> SubnetEnv {
        SubnetEnv {
            network: Ipv4Cidr {
                address: Ipv4Addr::new(10, 5, 0, 0),
                prefix_len: 16,
            },
            gateway: Ipv4Addr::new(10, 5, 3, 1),
            prefix_len: 24,
            mtu: 1450,
            ip_masq: false,
        }
    }

    #[test]
    fn renders_and_parses_flannels_format() {
        assert_eq!(env().render(), TEXT);
        assert_eq!(SubnetEnv::parse(TEXT).expect("valid"), env());
        assert_eq!(env().subnet().to_string(), "10.5.3.0/24");
    }

    #[test]
    fn takes_quotes_comments_and_other_keys() {
        let text = "# written by flannel\nFLANNEL_NETWORK=\"10.5.0.0/16\"\nFLANNEL_IPV6_NETWORK=fc00::/48\n\nFLANNEL_SUBNET=10.5.3.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n";
        assert_eq!(SubnetEnv::parse(text).expect("valid"), env());
    }

    #[test]
    fn a_bad_line_is_named_by_number() {
        for (text, line, expected) in [
            (
                "FLANNEL_NETWORK=10.5.0.0/16\nFLANNEL_SUBNET=10.5.3.1",
                2,
                "FLANNEL_SUBNET=",
            ),
            ("FLANNEL_SUBNET=10.5.3.1/33", 1, "FLANNEL_SUBNET="),
            ("\nFLANNEL_MTU=big", 2, "FLANNEL_MTU="),
            ("FLANNEL_IPMASQ=yes", 1, "true or false"),
            ("FLANNEL_NETWORK 10.5.0.0/16", 1, "KEY=VALUE"),
        ] {
            let error = SubnetEnv::parse(text).expect_err(text);
            let message = error.to_string();
            assert!(
                message.starts_with(&format!("subnet.env line {line}: ")),
                "{message}"
            );
            assert!(message.contains(expected), "{message}");
        }
    }

    #[test]
    fn a_missing_key_is_named() {
        let text = TEXT.replace("FLANNEL_MTU=1450\n", "");
        assert_eq!(
            SubnetEnv::parse(&text).expect_err("no MTU").to_string(),
            "subnet.env: no FLANNEL_MTU line"
        );
    }

    #[test]
    fn writes_atomically_and_reads_back() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("run/flannel/subnet.env");
        assert!(matches!(
            SubnetEnv::read(&path),
            Err(SubnetEnvError::Read { .. })
        ));
        env().write(&path).expect("written");
        assert_eq!(std::fs::read_to_string(&path).expect("readable"), TEXT);
        let moved = SubnetEnv {
            gateway: Ipv4Addr::new(10, 5, 4, 1),
            ..env()
        };
        moved.write(&path).expect("rewritten");
        assert_eq!(SubnetEnv::read(&path).expect("valid"), moved);
        let leftovers: Vec<_> = std::fs::read_dir(path.parent().expect("a parent"))
            .expect("listable")
            .collect();
        assert_eq!(leftovers.len(), 1, "only subnet.env remains: {leftovers:?}");
    }

    #[test]
    fn errors_of_a_file_name_it() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("subnet.env");
        std::fs::write(&path, "FLANNEL_SUBNET=x\n").expect("written");
        let message = SubnetEnv::read(&path).expect_err("bad").to_string();
        assert!(
            message.starts_with(&format!("{} line 1: ", path.display())),
            "{message}"
        );
    }
}
