//! Which machines a playbook drives over SSH, and how to reach each: from a TOML file or
//! built in code.
//!
//! ```toml
//! [defaults]                       # for every host; each field optional
//! user = "deploy"
//! key = "~/.ssh/id_ed25519"        # else ssh-agent, then ~/.ssh/id_{ed25519,ecdsa,rsa}
//! known_hosts = "~/.ssh/known_hosts"
//! trust_on_first_use = false       # an unknown host key is refused unless true
//!
//! [hosts.web1]
//! address = "192.0.2.10"           # defaults to the host's name
//! port = 2222
//! vars = { role = "primary" }
//!
//! [hosts.bastion]
//!
//! [groups.web]
//! hosts = ["web1"]
//! jump = "bastion"                 # a host of this file, or [user@]address[:port]
//! vars = { tier = "front" }
//! ```
//!
//! A setting comes from the host, else its groups (in name order, the last one wins, as
//! in Ansible), else `[defaults]`. Relative paths are relative to the file.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Map, Value};

/// Errors reading an inventory; each names the file and the entry.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    /// The playbook asked for the inventory of its command line, which gave none.
    #[error("this playbook drives existing machines: give their inventory with -i FILE (or SINEW_INVENTORY)")]
    Missing,
    /// The file could not be read.
    #[error("reading inventory {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not an inventory (TOML syntax, a wrong type, an unknown field).
    #[error("inventory {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The TOML parser's message, with line and column.
        message: String,
    },
    /// An entry is invalid: its name, a group naming a missing host, a bad jump.
    #[error("inventory {path}: {entry}: {message}")]
    Entry {
        /// The file, or `(code)` for an inventory built in code.
        path: PathBuf,
        /// The host or group.
        entry: String,
        /// What is wrong and what was expected.
        message: String,
    },
}

/// Where an SSH server is and who logs in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshTarget {
    /// Host name or IP address.
    pub address: String,
    /// TCP port.
    pub port: u16,
    /// The user to log in as.
    pub user: String,
    /// A private key file; `None`: ssh-agent's keys, then the user's default key files.
    pub key: Option<PathBuf>,
}

impl SshTarget {
    /// `user@address:port`.
    pub fn new(address: &str, port: u16, user: &str) -> Self {
        Self {
            address: address.into(),
            port,
            user: user.into(),
            key: None,
        }
    }

    /// The name OpenSSH records the host under in `known_hosts`: `address`, or
    /// `[address]:port` off port 22.
    pub fn known_hosts_name(&self) -> String {
        if self.port == 22 {
            self.address.clone()
        } else {
            format!("[{}]:{}", self.address, self.port)
        }
    }
}

impl fmt::Display for SshTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}:{}", self.user, self.address, self.port)
    }
}

/// How a host's key is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostKeyPolicy {
    /// The OpenSSH `known_hosts` file checked, and written on first use.
    pub known_hosts: PathBuf,
    /// Accept (and record) the key of a host that file does not know yet. A key that
    /// differs from a recorded one is refused whatever this says.
    pub trust_on_first_use: bool,
}

impl Default for HostKeyPolicy {
    fn default() -> Self {
        Self {
            known_hosts: crate::paths::home_dir().join(".ssh/known_hosts"),
            trust_on_first_use: false,
        }
    }
}

/// One machine of an inventory.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteHost {
    /// Its name in the playbook's output.
    pub name: String,
    /// Where its SSH server is and who logs in.
    pub ssh: SshTarget,
    /// Jump hosts to go through, first to last (OpenSSH's `ProxyJump`).
    pub jumps: Vec<SshTarget>,
    /// The groups it belongs to, in name order.
    pub groups: Vec<String>,
    /// Its variables: defaults', then its groups', then its own.
    pub vars: Map<String, Value>,
    /// How its host key is checked.
    pub host_keys: HostKeyPolicy,
}

impl RemoteHost {
    /// A host named `name` at `address`, port 22, as the local user, known hosts from
    /// `~/.ssh/known_hosts`.
    pub fn new(name: &str, address: &str) -> Self {
        Self {
            name: name.into(),
            ssh: SshTarget::new(address, 22, &local_user()),
            jumps: Vec::new(),
            groups: Vec::new(),
            vars: Map::new(),
            host_keys: HostKeyPolicy::default(),
        }
    }

    /// Its SSH port.
    pub fn port(mut self, port: u16) -> Self {
        self.ssh.port = port;
        self
    }

    /// The user to log in as.
    pub fn user(mut self, user: &str) -> Self {
        self.ssh.user = user.into();
        self
    }

    /// A private key file to log in with.
    pub fn key(mut self, path: impl Into<PathBuf>) -> Self {
        self.ssh.key = Some(path.into());
        self
    }

    /// A jump host to go through (after those added before).
    pub fn jump(mut self, target: SshTarget) -> Self {
        self.jumps.push(target);
        self
    }

    /// Puts it in group `group`.
    pub fn group(mut self, group: &str) -> Self {
        if !self.groups.iter().any(|g| g == group) {
            self.groups.push(group.into());
            self.groups.sort();
        }
        self
    }

    /// Sets variable `name`.
    pub fn var(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.vars.insert(name.into(), value.into());
        self
    }

    /// How its host key is checked.
    pub fn host_keys(mut self, policy: HostKeyPolicy) -> Self {
        self.host_keys = policy;
        self
    }

    /// Whether it is in `group`.
    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }
}

/// The machines a playbook drives over SSH ([`crate::Run::connect`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Inventory {
    hosts: Vec<RemoteHost>,
}

impl Inventory {
    /// An empty inventory, to add hosts to in code.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `host`, replacing a host of the same name.
    pub fn host(mut self, host: RemoteHost) -> Self {
        self.hosts.retain(|h| h.name != host.name);
        self.hosts.push(host);
        self
    }

    /// Reads the TOML inventory at `path` (format in the module's documentation).
    pub fn from_file(path: &Path) -> Result<Self, InventoryError> {
        let text = std::fs::read_to_string(path).map_err(|source| InventoryError::Read {
            path: path.into(),
            source,
        })?;
        Self::from_toml(&text, path)
    }

    /// Reads an inventory from TOML text; `path` names it in errors and anchors relative
    /// paths.
    pub fn from_toml(text: &str, path: &Path) -> Result<Self, InventoryError> {
        let file: File = toml::from_str(text).map_err(|e| InventoryError::Parse {
            path: path.into(),
            message: e.to_string(),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        file.resolve(path, base)
    }

    /// Every host, in name order for a file, in the order added for code.
    pub fn hosts(&self) -> &[RemoteHost] {
        &self.hosts
    }

    /// The host named `name`.
    pub fn get(&self, name: &str) -> Option<&RemoteHost> {
        self.hosts.iter().find(|h| h.name == name)
    }

    /// The hosts of `group`, as an inventory of their own.
    pub fn group(&self, group: &str) -> Self {
        Self {
            hosts: self
                .hosts
                .iter()
                .filter(|h| h.in_group(group))
                .cloned()
                .collect(),
        }
    }

    /// Whether it has no host.
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }
}

/// The file's shape.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    defaults: Settings,
    #[serde(default)]
    hosts: BTreeMap<String, Settings>,
    #[serde(default)]
    groups: BTreeMap<String, Settings>,
}

/// What a host, a group or the defaults may set; `hosts` only a group.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    #[serde(default)]
    hosts: Vec<String>,
    address: Option<String>,
    port: Option<u16>,
    user: Option<String>,
    key: Option<PathBuf>,
    jump: Option<String>,
    known_hosts: Option<PathBuf>,
    trust_on_first_use: Option<bool>,
    #[serde(default)]
    vars: Map<String, Value>,
}

impl Settings {
    /// `self` with `over`'s fields where `over` sets them; variables merged.
    fn overlaid(&self, over: &Settings) -> Settings {
        let mut vars = self.vars.clone();
        vars.extend(over.vars.clone());
        Settings {
            hosts: Vec::new(),
            address: over.address.clone().or_else(|| self.address.clone()),
            port: over.port.or(self.port),
            user: over.user.clone().or_else(|| self.user.clone()),
            key: over.key.clone().or_else(|| self.key.clone()),
            jump: over.jump.clone().or_else(|| self.jump.clone()),
            known_hosts: over
                .known_hosts
                .clone()
                .or_else(|| self.known_hosts.clone()),
            trust_on_first_use: over.trust_on_first_use.or(self.trust_on_first_use),
            vars,
        }
    }
}

impl File {
    fn resolve(&self, path: &Path, base: &Path) -> Result<Inventory, InventoryError> {
        let entry = |entry: &str, message: String| InventoryError::Entry {
            path: path.into(),
            entry: entry.into(),
            message,
        };
        let only_groups = "only a group lists hosts".to_string();
        if !self.defaults.hosts.is_empty() {
            return Err(entry("defaults", only_groups));
        }
        for (name, own) in &self.hosts {
            sinew_proto::names::check_name(name).map_err(|m| entry(name, m))?;
            if !own.hosts.is_empty() {
                return Err(entry(name, only_groups));
            }
        }
        let mut groups_of: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (group, spec) in &self.groups {
            sinew_proto::names::check_name(group).map_err(|m| entry(group, m))?;
            if spec.address.is_some() {
                return Err(entry(
                    group,
                    "a group has no address; set it per host".into(),
                ));
            }
            for host in &spec.hosts {
                if !self.hosts.contains_key(host) {
                    return Err(entry(
                        group,
                        format!("lists host {host:?}, which is not under [hosts]"),
                    ));
                }
                groups_of.entry(host).or_default().push(group);
            }
        }
        let settings: BTreeMap<&str, Settings> = self
            .hosts
            .iter()
            .map(|(name, own)| {
                let mut merged = self.defaults.clone();
                for group in groups_of.get(name.as_str()).into_iter().flatten() {
                    merged = merged.overlaid(&self.groups[*group]);
                }
                (name.as_str(), merged.overlaid(own))
            })
            .collect();
        let hosts = settings
            .iter()
            .map(|(name, s)| {
                let mut chain = Vec::new();
                let jumps = jumps(name, s, &settings, base, &mut chain)
                    .map_err(|message| entry(name, message))?;
                Ok(RemoteHost {
                    name: (*name).into(),
                    ssh: target(name, s, base),
                    jumps,
                    groups: groups_of
                        .get(name)
                        .map(|g| g.iter().map(|g| (*g).to_string()).collect())
                        .unwrap_or_default(),
                    vars: s.vars.clone(),
                    host_keys: HostKeyPolicy {
                        known_hosts: s
                            .known_hosts
                            .as_deref()
                            .map(|p| expand(p, base))
                            .unwrap_or_else(|| HostKeyPolicy::default().known_hosts),
                        trust_on_first_use: s.trust_on_first_use.unwrap_or(false),
                    },
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Inventory { hosts })
    }
}

fn target(name: &str, s: &Settings, base: &Path) -> SshTarget {
    SshTarget {
        address: s.address.clone().unwrap_or_else(|| name.into()),
        port: s.port.unwrap_or(22),
        user: s.user.clone().unwrap_or_else(local_user),
        key: s.key.as_deref().map(|p| expand(p, base)),
    }
}

/// The jump hosts to reach `name` through, first to last: a jump naming a host of the
/// file goes through that host's own jumps first.
fn jumps(
    name: &str,
    s: &Settings,
    all: &BTreeMap<&str, Settings>,
    base: &Path,
    chain: &mut Vec<String>,
) -> Result<Vec<SshTarget>, String> {
    let Some(jump) = &s.jump else {
        return Ok(Vec::new());
    };
    chain.push(name.into());
    if let Some(next) = all.get(jump.as_str()) {
        if chain.iter().any(|c| c == jump) {
            chain.push(jump.clone());
            return Err(format!(
                "jump hosts go round in a loop: {}",
                chain.join(" -> ")
            ));
        }
        let mut hops = jumps(jump, next, all, base, chain)?;
        hops.push(target(jump, next, base));
        return Ok(hops);
    }
    let own = target(name, s, base);
    parse_jump(jump, &own).map(|t| vec![t])
}

/// `[user@]address[:port]`, user and key defaulting to `own`'s.
fn parse_jump(spec: &str, own: &SshTarget) -> Result<SshTarget, String> {
    let expected =
        || format!("jump {spec:?} is neither a host of this inventory nor [user@]address[:port]");
    let (user, rest) = match spec.split_once('@') {
        Some((user, rest)) if !user.is_empty() => (user.to_string(), rest),
        Some(_) => return Err(expected()),
        None => (own.user.clone(), spec),
    };
    let (address, port) = if let Some(bracketed) = rest.strip_prefix('[') {
        let (address, after) = bracketed.split_once(']').ok_or_else(expected)?;
        let port = match after.strip_prefix(':') {
            Some(port) => port.parse::<u16>().map_err(|_| expected())?,
            None if after.is_empty() => 22,
            None => return Err(expected()),
        };
        (address, port)
    } else {
        match rest.split_once(':') {
            // A bare IPv6 address has several colons and no port.
            Some((address, port)) if !port.contains(':') => {
                (address, port.parse::<u16>().map_err(|_| expected())?)
            }
            _ => (rest, 22),
        }
    };
    if address.is_empty() || address.contains(char::is_whitespace) {
        return Err(expected());
    }
    Ok(SshTarget {
        address: address.into(),
        port,
        user,
        key: own.key.clone(),
    })
}

/// `~/x` under the home directory; a relative path under `base`.
fn expand(path: &Path, base: &Path) -> PathBuf {
    match path.strip_prefix("~") {
        Ok(rest) => crate::paths::home_dir().join(rest),
        Err(_) => base.join(path),
    }
}

fn local_user() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "root".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
[defaults]
user = "deploy"
key = "keys/id"
vars = { dc = "east", tier = "any" }

[hosts.web1]
address = "192.0.2.10"
port = 2222
vars = { role = "primary" }

[hosts.web2]
user = "root"

[hosts.bastion]
address = "192.0.2.1"
trust_on_first_use = true

[groups.web]
hosts = ["web1", "web2"]
jump = "bastion"
vars = { tier = "front" }

[groups.zz]
hosts = ["web2"]
vars = { tier = "last" }
"#;

    fn inventory() -> Inventory {
        Inventory::from_toml(FILE, Path::new("/etc/fleet/hosts.toml")).expect("parses")
    }

    #[test]
    fn a_host_takes_its_own_settings_then_its_groups_then_the_defaults() {
        let inv = inventory();
        let web1 = inv.get("web1").expect("web1");
        assert_eq!(web1.ssh.to_string(), "deploy@192.0.2.10:2222");
        assert_eq!(
            web1.ssh.key.as_deref(),
            Some(Path::new("/etc/fleet/keys/id"))
        );
        assert_eq!(web1.groups, ["web"]);
        assert_eq!(web1.vars["tier"], "front");
        assert_eq!(web1.vars["dc"], "east");
        assert_eq!(web1.vars["role"], "primary");
        let web2 = inv.get("web2").expect("web2");
        assert_eq!(
            web2.ssh.to_string(),
            "root@web2:22",
            "address defaults to the name"
        );
        assert_eq!(
            web2.vars["tier"], "last",
            "the last group in name order wins"
        );
        assert!(!web2.host_keys.trust_on_first_use);
        assert!(
            inv.get("bastion")
                .expect("bastion")
                .host_keys
                .trust_on_first_use
        );
    }

    #[test]
    fn a_jump_naming_a_host_of_the_file_uses_that_hosts_settings() {
        let inv = inventory();
        let web1 = inv.get("web1").expect("web1");
        assert_eq!(web1.jumps.len(), 1);
        assert_eq!(web1.jumps[0].to_string(), "deploy@192.0.2.1:22");
        assert!(inv.get("bastion").expect("bastion").jumps.is_empty());
        assert_eq!(
            inv.group("web")
                .hosts()
                .iter()
                .map(|h| &h.name[..])
                .collect::<Vec<_>>(),
            ["web1", "web2"]
        );
    }

    #[test]
    fn a_jump_given_as_an_address_takes_the_hosts_user_unless_it_names_one() {
        let own = SshTarget::new("a", 22, "me");
        assert_eq!(parse_jump("gw", &own).expect("gw").to_string(), "me@gw:22");
        assert_eq!(
            parse_jump("ops@gw:2200", &own).expect("full").to_string(),
            "ops@gw:2200"
        );
        let v6 = parse_jump("[2001:db8::1]:2022", &own).expect("v6");
        assert_eq!((v6.address.as_str(), v6.port), ("2001:db8::1", 2022));
        assert_eq!(parse_jump("2001:db8::1", &own).expect("bare v6").port, 22);
        assert!(parse_jump("@gw", &own).is_err());
        assert!(parse_jump("gw:port", &own).is_err());
    }

    #[test]
    fn bad_entries_are_refused_naming_the_file_and_the_entry() {
        let path = Path::new("inv.toml");
        let err = |text: &str| {
            Inventory::from_toml(text, path)
                .expect_err("must be refused")
                .to_string()
        };
        assert_eq!(
            err("[hosts.a]\n[groups.g]\nhosts = [\"b\"]\n"),
            "inventory inv.toml: g: lists host \"b\", which is not under [hosts]"
        );
        assert_eq!(
            err("[hosts.a]\njump = \"b\"\n[hosts.b]\njump = \"a\"\n"),
            "inventory inv.toml: a: jump hosts go round in a loop: a -> b -> a"
        );
        assert!(err("[hosts.a]\nprot = 22\n").contains("unknown field `prot`"));
        assert!(err("[hosts.a]\nport = \"ssh\"\n").contains("line 2"));
        assert!(err("[hosts.\"a b\"]\n").starts_with("inventory inv.toml: a b: "));
    }
}
