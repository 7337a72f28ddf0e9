//! The `sinew.*` keys of the kernel command line.

use std::net::IpAddr;

use sinew_proto::mac::MacAddr;
use sinew_proto::DEFAULT_AGENT_PORT;
use thiserror::Error;

/// What the host asked for on the kernel command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootParams {
    /// `sinew.hostname=NAME`.
    pub hostname: Option<String>,
    /// `sinew.if=<mac>,<addr>/<prefix>[,<gateway>]`, once per interface.
    pub interfaces: Vec<InterfaceConfig>,
    /// `sinew.agent_port=PORT`, default 7070.
    pub agent_port: u16,
    /// `sinew.log=FILTER`, a tracing filter such as `debug` or `sinew_init=trace`; a
    /// `RUST_LOG=` the kernel hands on as a variable wins, as for every sinew program.
    pub log_filter: Option<String>,
}

impl Default for BootParams {
    fn default() -> Self {
        Self {
            hostname: None,
            interfaces: Vec::new(),
            agent_port: DEFAULT_AGENT_PORT,
            log_filter: None,
        }
    }
}

/// Static configuration for the interface with a given MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InterfaceConfig {
    /// Which link to configure.
    pub mac: MacAddr,
    /// Address to add.
    pub address: IpAddr,
    /// Its prefix length.
    pub prefix_len: u8,
    /// Default route via this gateway, if given.
    pub gateway: Option<IpAddr>,
}

/// A `sinew.*` parameter that could not be used; boot goes on without it.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum CmdlineError {
    /// `sinew.if` was not `<mac>,<addr>/<prefix>[,<gateway>]`.
    #[error("sinew.if={value}: {reason} (expected <mac>,<addr>/<prefix>[,<gateway>])")]
    Interface {
        /// The value given.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// `sinew.agent_port` was not a port number.
    #[error("sinew.agent_port={0}: not a port number between 1 and 65535")]
    Port(String),
    /// `sinew.hostname` was empty or too long.
    #[error("sinew.hostname={0:?}: must be 1 to 64 characters without spaces")]
    Hostname(String),
    /// A `sinew.` key this version does not know.
    #[error("unknown parameter {0}")]
    Unknown(String),
}

/// Parses the kernel command line. Unusable `sinew.*` parameters are returned as errors next
/// to everything that could be used; other parameters are ignored.
pub fn parse(cmdline: &str) -> (BootParams, Vec<CmdlineError>) {
    let mut params = BootParams::default();
    let mut errors = Vec::new();
    for word in split_words(cmdline) {
        let Some(rest) = word.strip_prefix("sinew.") else {
            continue;
        };
        let (key, value) = rest.split_once('=').unwrap_or((rest, ""));
        match key {
            "hostname" => {
                if value.is_empty() || value.len() > 64 {
                    errors.push(CmdlineError::Hostname(value.to_owned()));
                } else {
                    params.hostname = Some(value.to_owned());
                }
            }
            "if" => match parse_interface(value) {
                Ok(interface) => params.interfaces.push(interface),
                Err(reason) => errors.push(CmdlineError::Interface {
                    value: value.to_owned(),
                    reason,
                }),
            },
            "agent_port" => match value.parse::<u16>() {
                Ok(port) if port != 0 => params.agent_port = port,
                _ => errors.push(CmdlineError::Port(value.to_owned())),
            },
            "log" => params.log_filter = Some(value.to_owned()),
            _ => errors.push(CmdlineError::Unknown(word)),
        }
    }
    (params, errors)
}

/// Splits the command line into words the way the kernel does: on whitespace, except inside
/// double quotes, which are removed.
fn split_words(cmdline: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    let mut in_word = false;
    for c in cmdline.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                in_word = true;
            }
            c if c.is_whitespace() && !quoted => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

fn parse_interface(value: &str) -> Result<InterfaceConfig, &'static str> {
    let mut fields = value.split(',');
    let mac = fields
        .next()
        .ok_or("missing MAC address")?
        .parse::<MacAddr>()
        .map_err(|_| "bad MAC address")?;
    let (address, prefix_len) = fields
        .next()
        .ok_or("missing address")?
        .split_once('/')
        .ok_or("address needs a /prefix")?;
    let address: IpAddr = address.parse().map_err(|_| "bad IP address")?;
    let prefix_len: u8 = prefix_len.parse().map_err(|_| "bad prefix length")?;
    let max_prefix = if address.is_ipv4() { 32 } else { 128 };
    if prefix_len > max_prefix {
        return Err("prefix length too large");
    }
    let gateway = match fields.next() {
        None | Some("") => None,
        Some(gateway) => {
            let gateway: IpAddr = gateway.parse().map_err(|_| "bad gateway address")?;
            if gateway.is_ipv4() != address.is_ipv4() {
                return Err("gateway and address are of different IP versions");
            }
            Some(gateway)
        }
    };
    if fields.next().is_some() {
        return Err("too many fields");
    }
    Ok(InterfaceConfig {
        mac,
        address,
        prefix_len,
        gateway,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_command_line() {
        let (params, errors) = parse(
            "console=ttyS0 quiet sinew.hostname=node-1 \
             sinew.if=52:54:00:12:34:56,10.0.2.15/24,10.0.2.2 \
             sinew.if=52:54:00:AB:cd:01,192.168.100.11/24 \
             sinew.agent_port=7171 sinew.log=debug panic=-1\n",
        );
        assert_eq!(errors, []);
        assert_eq!(params.hostname.as_deref(), Some("node-1"));
        assert_eq!(params.agent_port, 7171);
        assert_eq!(params.log_filter.as_deref(), Some("debug"));
        assert_eq!(
            params.interfaces,
            [
                InterfaceConfig {
                    mac: MacAddr([0x52, 0x54, 0, 0x12, 0x34, 0x56]),
                    address: "10.0.2.15".parse().unwrap(),
                    prefix_len: 24,
                    gateway: Some("10.0.2.2".parse().unwrap()),
                },
                InterfaceConfig {
                    mac: MacAddr([0x52, 0x54, 0, 0xab, 0xcd, 0x01]),
                    address: "192.168.100.11".parse().unwrap(),
                    prefix_len: 24,
                    gateway: None,
                },
            ]
        );
    }

    #[test]
    fn defaults_without_sinew_keys() {
        let (params, errors) = parse("root=/dev/vda console=hvc0");
        assert_eq!(errors, []);
        assert_eq!(params, BootParams::default());
        assert_eq!(params.agent_port, 7070);
    }

    #[test]
    fn ipv6_interface() {
        let (params, errors) = parse("sinew.if=02:00:00:00:00:01,fd00::2/64,fd00::1");
        assert_eq!(errors, []);
        assert_eq!(
            params.interfaces[0].address,
            "fd00::2".parse::<IpAddr>().unwrap()
        );
        assert_eq!(params.interfaces[0].prefix_len, 64);
        assert_eq!(
            params.interfaces[0].gateway,
            Some("fd00::1".parse().unwrap())
        );
    }

    #[test]
    fn quoted_values() {
        let words = split_words(r#"a "b c" d="e f" g"#);
        assert_eq!(words, ["a", "b c", "d=e f", "g"]);
    }

    #[test]
    fn bad_values_are_reported_and_skipped() {
        let (params, errors) = parse(
            "sinew.if=52:54:00:12:34,10.0.0.1/24 sinew.if=52:54:00:12:34:56,10.0.0.1 \
             sinew.if=52:54:00:12:34:56,10.0.0.1/33 sinew.if=52:54:00:12:34:56,10.0.0.1/24,fd00::1 \
             sinew.agent_port=0 sinew.agent_port=http sinew.hostname= sinew.colour=blue",
        );
        assert!(params.interfaces.is_empty());
        assert_eq!(params.agent_port, 7070);
        assert_eq!(params.hostname, None);
        let reasons: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(errors.len(), 8, "{reasons:#?}");
        assert!(reasons[0].contains("bad MAC address"));
        assert!(reasons[1].contains("needs a /prefix"));
        assert!(reasons[2].contains("prefix length too large"));
        assert!(reasons[3].contains("different IP versions"));
        assert_eq!(errors[7], CmdlineError::Unknown("sinew.colour=blue".into()));
    }
}
