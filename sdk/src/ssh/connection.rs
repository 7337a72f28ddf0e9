//! One SSH connection to a host (through its jump hosts): the host key checked against
//! `known_hosts`, then the user authenticated by key.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client::{self, AuthResult, Handle};
use russh::keys::agent::client::AgentClient;
use russh::keys::ssh_key::{Algorithm, PublicKey};
use russh::keys::{PrivateKey, PrivateKeyWithHashAlg, PublicKeyOrCertificate};

use super::inventory::{HostKeyPolicy, RemoteHost, SshTarget};
use super::known_hosts::{fingerprint, KnownHostsFiles, Verdict};
use super::SshError;

/// How long connecting, exchanging keys and logging in may take, per hop.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// The key files tried, after ssh-agent's keys, when the inventory names none.
const DEFAULT_KEYS: [&str; 3] = ["id_ed25519", "id_ecdsa", "id_rsa"];

/// A logged-in connection; channels (commands, forwards) are opened on it.
pub(crate) struct Connection {
    handle: Handle<HostKeyCheck>,
    /// The jump hosts' connections, which carry this one.
    _jumps: Vec<Handle<HostKeyCheck>>,
    /// How the host key was accepted.
    pub(crate) host_key: HostKeyAccepted,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("host_key", &self.host_key)
            .finish_non_exhaustive()
    }
}

/// A host key that passed the check.
#[derive(Debug, Clone)]
pub(crate) struct HostKeyAccepted {
    /// `TYPE SHA256:...`.
    pub(crate) fingerprint: String,
    /// Why it was trusted.
    pub(crate) trust: Trust,
}

/// Why a host key was trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Trust {
    /// `known_hosts` has it.
    Known,
    /// It was unknown and is recorded now (trust on first use).
    Recorded,
    /// It is unknown, trusted on first use, and a dry run records nothing.
    WouldRecord,
}

impl Connection {
    /// Connects to `host` through its jump hosts, each hop's key checked and its user
    /// logged in.
    /// Trust on first use records a key only when `record`.
    pub(crate) async fn open(host: &RemoteHost, record: bool) -> Result<Self, SshError> {
        let mut jumps: Vec<Handle<HostKeyCheck>> = Vec::new();
        for hop in &host.jumps {
            let handle = match jumps.last() {
                None => hop_over_tcp(hop, &host.host_keys, record).await?,
                Some(via) => hop_through(via, hop, &host.host_keys, record).await?,
            };
            jumps.push(handle.0);
        }
        let (handle, host_key) = match jumps.last() {
            None => hop_over_tcp(&host.ssh, &host.host_keys, record).await?,
            Some(via) => hop_through(via, &host.ssh, &host.host_keys, record).await?,
        };
        Ok(Self {
            handle,
            _jumps: jumps,
            host_key,
        })
    }

    /// A new session channel.
    pub(crate) async fn session(&self) -> Result<russh::Channel<client::Msg>, russh::Error> {
        self.handle.channel_open_session().await
    }

    /// A TCP connection from the host to `address:port` (OpenSSH's `-L`).
    pub(crate) async fn direct_tcpip(
        &self,
        address: &str,
        port: u16,
    ) -> Result<russh::Channel<client::Msg>, russh::Error> {
        self.handle
            .channel_open_direct_tcpip(address, u32::from(port), "127.0.0.1", 0)
            .await
    }
}

async fn hop_over_tcp(
    target: &SshTarget,
    policy: &HostKeyPolicy,
    record: bool,
) -> Result<(Handle<HostKeyCheck>, HostKeyAccepted), SshError> {
    let address = (target.address.as_str(), target.port);
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(address))
        .await
        .map_err(|_| SshError::Connect {
            target: target.to_string(),
            message: format!("no answer within {}s", CONNECT_TIMEOUT.as_secs()),
        })?
        .map_err(|e| SshError::Connect {
            target: target.to_string(),
            message: e.to_string(),
        })?;
    let _ = stream.set_nodelay(true);
    hop(stream, target, policy, record).await
}

async fn hop_through(
    via: &Handle<HostKeyCheck>,
    target: &SshTarget,
    policy: &HostKeyPolicy,
    record: bool,
) -> Result<(Handle<HostKeyCheck>, HostKeyAccepted), SshError> {
    let channel = via
        .channel_open_direct_tcpip(&target.address, u32::from(target.port), "127.0.0.1", 0)
        .await
        .map_err(|e| SshError::Connect {
            target: target.to_string(),
            message: format!("the jump host could not open a connection to it: {e}"),
        })?;
    hop(channel.into_stream(), target, policy, record).await
}

/// Key exchange, host key check and login over `stream`.
async fn hop<S>(
    stream: S,
    target: &SshTarget,
    policy: &HostKeyPolicy,
    record: bool,
) -> Result<(Handle<HostKeyCheck>, HostKeyAccepted), SshError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let files = KnownHostsFiles::new(&policy.known_hosts);
    let name = target.known_hosts_name();
    let known = files.algorithms(&name)?;
    let outcome = Arc::new(Mutex::new(None));
    let check = HostKeyCheck {
        files,
        name: name.clone(),
        trust_on_first_use: policy.trust_on_first_use,
        record,
        outcome: outcome.clone(),
    };
    let connect_error = |message: String| SshError::Connect {
        target: target.to_string(),
        message,
    };
    let login = async {
        let mut handle = client::connect_stream(Arc::new(config(&known)), stream, check)
            .await
            .map_err(
                |e| match outcome.lock().unwrap_or_else(|e| e.into_inner()).take() {
                    Some(Err(refused)) => refused,
                    _ => connect_error(e.to_string()),
                },
            )?;
        authenticate(&mut handle, target).await?;
        Ok::<_, SshError>(handle)
    };
    let handle = tokio::time::timeout(CONNECT_TIMEOUT, login)
        .await
        .map_err(|_| {
            connect_error(format!(
                "no login within {}s (key exchange or authentication stalled)",
                CONNECT_TIMEOUT.as_secs()
            ))
        })??;
    let accepted = outcome
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
        .and_then(Result::ok)
        .ok_or_else(|| connect_error("the host key check did not run".into()))?;
    Ok((handle, accepted))
}

/// russh's client settings: the key types `known_hosts` has for the host asked for first,
/// as OpenSSH does, so that a server with several keys presents the recorded one.
fn config(known: &[Algorithm]) -> client::Config {
    let mut preferred = russh::Preferred::default();
    let mut keys: Vec<Algorithm> = known
        .iter()
        .filter(|a| preferred.key.contains(a) || matches!(a, Algorithm::Rsa { .. }))
        .flat_map(|a| match a {
            // known_hosts says `ssh-rsa` for every RSA signature hash.
            Algorithm::Rsa { .. } => preferred
                .key
                .iter()
                .filter(|k| matches!(k, Algorithm::Rsa { .. }))
                .cloned()
                .collect(),
            other => vec![other.clone()],
        })
        .collect();
    for algorithm in preferred.key.iter() {
        if !keys.contains(algorithm) {
            keys.push(algorithm.clone());
        }
    }
    preferred.key = keys.into();
    client::Config {
        preferred,
        nodelay: true,
        keepalive_interval: Some(Duration::from_secs(15)),
        ..Default::default()
    }
}

/// The handler that checks the server's key; what it decided is left in `outcome`, since
/// russh reports a refusal only as "unknown key".
struct HostKeyCheck {
    files: KnownHostsFiles,
    name: String,
    trust_on_first_use: bool,
    record: bool,
    outcome: Arc<Mutex<Option<Result<HostKeyAccepted, SshError>>>>,
}

impl HostKeyCheck {
    fn decide(&self, key: &PublicKey) -> Result<HostKeyAccepted, SshError> {
        let presented = fingerprint(key);
        let accepted = |trust| HostKeyAccepted {
            fingerprint: presented.clone(),
            trust,
        };
        match self.files.check(&self.name, key)? {
            Verdict::Known => Ok(accepted(Trust::Known)),
            Verdict::Unknown if self.trust_on_first_use && !self.record => {
                Ok(accepted(Trust::WouldRecord))
            }
            Verdict::Unknown if self.trust_on_first_use => {
                self.files.record(&self.name, key)?;
                Ok(accepted(Trust::Recorded))
            }
            Verdict::Unknown => Err(SshError::UnknownHost {
                name: self.name.clone(),
                presented,
                known_hosts: self.files.user().into(),
            }),
            Verdict::Changed(recorded) => Err(SshError::HostKeyChanged {
                name: self.name.clone(),
                presented,
                recorded,
            }),
            Verdict::Revoked(at) => Err(SshError::HostKeyRevoked {
                name: self.name.clone(),
                presented,
                at,
            }),
        }
    }
}

impl client::Handler for HostKeyCheck {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        server_public_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let decision = self.decide(&server_public_key.public_key());
        let ok = decision.is_ok();
        *self.outcome.lock().unwrap_or_else(|e| e.into_inner()) = Some(decision);
        Ok(ok)
    }
}

/// Logs in as the target's user: with the inventory's key alone when it names one (as
/// OpenSSH's `IdentitiesOnly`), else with ssh-agent's keys, then the default key files.
async fn authenticate(
    handle: &mut Handle<HostKeyCheck>,
    target: &SshTarget,
) -> Result<(), SshError> {
    let mut tried = Vec::new();
    if let Some(path) = &target.key {
        let key = load_key(path)?;
        if with_key(handle, target, key).await? {
            return Ok(());
        }
        tried.push(path.display().to_string());
        return Err(SshError::LoginRefused {
            target: target.to_string(),
            tried,
        });
    }
    if let Ok(mut agent) = AgentClient::connect_env().await {
        let identities = agent.request_identities().await.unwrap_or_default();
        for identity in identities {
            let key = identity.public_key().into_owned();
            let hash = rsa_hash(handle, target, key.algorithm()).await?;
            match handle
                .authenticate_publickey_with(&target.user, key.clone(), hash, &mut agent)
                .await
            {
                Ok(AuthResult::Success) => return Ok(()),
                Ok(AuthResult::Failure { .. }) | Err(_) => {
                    tried.push(format!("ssh-agent's {}", fingerprint(&key)));
                }
            }
        }
    }
    for name in DEFAULT_KEYS {
        let path = crate::paths::home_dir().join(".ssh").join(name);
        if !path.exists() {
            continue;
        }
        let key = load_key(&path)?;
        if with_key(handle, target, key).await? {
            return Ok(());
        }
        tried.push(path.display().to_string());
    }
    Err(SshError::LoginRefused {
        target: target.to_string(),
        tried,
    })
}

async fn with_key(
    handle: &mut Handle<HostKeyCheck>,
    target: &SshTarget,
    key: PrivateKey,
) -> Result<bool, SshError> {
    let hash = rsa_hash(handle, target, key.algorithm()).await?;
    let key = PrivateKeyWithHashAlg::new(Arc::new(key), hash);
    let result = handle
        .authenticate_publickey(&target.user, key)
        .await
        .map_err(|e| SshError::Connect {
            target: target.to_string(),
            message: format!("during login: {e}"),
        })?;
    Ok(result.success())
}

/// For an RSA key, the best signature hash the server accepts (asking waits for the
/// server's extension list, so only RSA keys ask).
async fn rsa_hash(
    handle: &Handle<HostKeyCheck>,
    target: &SshTarget,
    algorithm: Algorithm,
) -> Result<Option<russh::keys::HashAlg>, SshError> {
    if !algorithm.is_rsa() {
        return Ok(None);
    }
    Ok(handle
        .best_supported_rsa_hash()
        .await
        .map_err(|e| SshError::Connect {
            target: target.to_string(),
            message: format!("asking which RSA signatures it accepts: {e}"),
        })?
        .flatten())
}

fn load_key(path: &Path) -> Result<PrivateKey, SshError> {
    russh::keys::load_secret_key(path, None).map_err(|e| SshError::Key {
        path: PathBuf::from(path),
        message: match e {
            russh::keys::Error::KeyIsEncrypted => {
                "it is encrypted; add it to ssh-agent (ssh-add) instead".into()
            }
            other => other.to_string(),
        },
    })
}
