//! What a host does over SSH, each on a channel of its own: commands with their output
//! streamed, files sent (skipped when the digest matches) and fetched, facts.
//!
//! The remote side needs only a POSIX shell and coreutils (or busybox): `sha256sum`,
//! `stat -c`, `mktemp`, `cat`, `uname`, and `ip` for addresses.

use std::time::{Duration, Instant};

use russh::ChannelMsg;
use sha2::{Digest, Sha256};
use sinew_proto::termination::Termination;
use sinew_proto::{ExitStatus, Facts, InterfaceAddress, NetInterface, OutputStream};

use super::connection::Connection;
use super::SshError;

/// Writes stdin to a temporary file beside `$1`, checks its digest is `$2`, and renames it
/// into place with mode `$3`; prints `same` and reads nothing when the file already has
/// that digest and mode, else `send` first. Exit 3: the bytes arrived damaged.
const PUT: &str = r#"set -e
p=$1 want=$2 mode=$3
if [ -f "$p" ] && [ "$(stat -c %a -- "$p")" = "$mode" ] && [ "$(sha256sum -- "$p" | cut -d' ' -f1)" = "$want" ]; then echo same; exit 0; fi
echo send
mkdir -p -- "$(dirname -- "$p")"
tmp=$(mktemp -- "$p.sinew-XXXXXX")
trap 'rm -f -- "$tmp"' EXIT
cat > "$tmp"
got=$(sha256sum -- "$tmp" | cut -d' ' -f1)
if [ "$got" != "$want" ]; then echo "received sha256 $got, expected $want" >&2; exit 3; fi
chmod "$mode" -- "$tmp"
mv -f -- "$tmp" "$p"
trap - EXIT"#;

/// Prints the file's digest on a line, then the file.
const GET: &str = r#"set -e
sum=$(sha256sum -- "$1")
printf '%s\n' "${sum%% *}"
exec cat -- "$1""#;

/// Facts, one `key value` per line; `if` lines per interface, then `ip -o addr`'s lines.
const FACTS: &str = r#"echo "hostname $(uname -n)"
echo "arch $(uname -m)"
echo "kernel $(uname -r)"
echo "uptime $(cut -d' ' -f1 /proc/uptime)"
echo "cpus $(nproc 2>/dev/null || grep -c ^processor /proc/cpuinfo)"
grep -E '^(MemTotal|MemAvailable):' /proc/meminfo
for d in /sys/class/net/*; do echo "if ${d##*/} $(cat "$d/address" 2>/dev/null) $(cat "$d/flags")"; done
ip -o addr show 2>/dev/null || true"#;

/// A command's output, gathered.
#[derive(Debug, Default)]
pub(crate) struct Output {
    pub(crate) stdout: Vec<u8>,
    pub(crate) stderr: Vec<u8>,
    pub(crate) exit: Option<ExitStatus>,
}

/// What a put did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Written {
    /// The file had that content and mode already.
    Unchanged,
    /// It was written.
    Changed,
}

/// Who commands run as: another user than the login's, through `sudo`.
#[derive(Clone)]
pub(crate) struct Sudo {
    /// The user to become.
    pub(crate) user: String,
    /// Sudo's password for the login user, when sudo asks for one.
    pub(crate) password: Option<String>,
}

/// A command started on a channel of its own: past sudo, if it went through sudo.
pub(super) struct Started {
    pub(super) channel: russh::Channel<russh::client::Msg>,
    /// The command as the user gave it, for messages.
    command: String,
    /// Stdout that came with sudo's success marker, after it.
    stdout: Vec<u8>,
}

impl Connection {
    /// Opens a channel and starts `argv` on it (quoted for the remote shell), through
    /// `sudo` when given: the password goes to sudo's stdin when its prompt (marked with a
    /// nonce) comes, and the command's own output starts after a marker line it prints.
    pub(super) async fn start(
        &self,
        argv: &[&str],
        sudo: Option<&Sudo>,
    ) -> Result<Started, SshError> {
        let command = command_line(argv)?;
        let Some(sudo) = sudo else {
            let channel = self.session().await.map_err(SshError::channel)?;
            channel
                .exec(true, command.as_bytes())
                .await
                .map_err(SshError::channel)?;
            return Ok(Started {
                channel,
                command,
                stdout: Vec::new(),
            });
        };
        let nonce = nonce()?;
        let prompt = format!("[sinew-sudo-{nonce}] password: ");
        let marker = format!("sinew-sudo-ok-{nonce}\n");
        let mut wrapped = vec![
            "sudo",
            "-S",
            "-p",
            &prompt,
            "-u",
            &sudo.user,
            "--",
            "sh",
            "-c",
            r#"printf 'sinew-sudo-ok-%s\n' "$0" && exec "$@""#,
            &nonce,
        ];
        wrapped.extend_from_slice(argv);
        let mut channel = self.session().await.map_err(SshError::channel)?;
        channel
            .exec(true, command_line(&wrapped)?.as_bytes())
            .await
            .map_err(SshError::channel)?;
        let refused = |message: String| SshError::Sudo {
            user: sudo.user.clone(),
            command: command.clone(),
            message,
        };
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        let mut prompted = false;
        while let Some(message) = channel.wait().await {
            match message {
                ChannelMsg::Data { data } => {
                    stdout.extend_from_slice(&data);
                    if let Some(at) = find(&stdout, marker.as_bytes()) {
                        let stdout = stdout.split_off(at + marker.len());
                        return Ok(Started {
                            channel,
                            command,
                            stdout,
                        });
                    }
                }
                ChannelMsg::ExtendedData { data, .. } => {
                    stderr.extend_from_slice(&data);
                    let Some(at) = find(&stderr, prompt.as_bytes()) else {
                        continue;
                    };
                    stderr.drain(at..at + prompt.len());
                    let Some(password) = &sudo.password else {
                        let _ = channel.close().await;
                        return Err(refused(
                            "sudo asks for a password: set SINEW_BECOME_PASSWORD or run with \
                             --ask-become-pass"
                                .into(),
                        ));
                    };
                    if prompted {
                        let _ = channel.close().await;
                        return Err(refused("sudo refused the password".into()));
                    }
                    prompted = true;
                    channel
                        .data(format!("{password}\n").as_bytes())
                        .await
                        .map_err(SshError::channel)?;
                }
                ChannelMsg::ExitStatus { exit_status } => {
                    return Err(refused(format!(
                        "sudo exited with code {exit_status} before running it{}",
                        stderr_text(&stderr)
                    )));
                }
                _ => {}
            }
        }
        Err(SshError::Lost(format!("sudo -u {} {command}", sudo.user)))
    }

    /// Runs `argv` (through `sudo` when given), calling `output` with each chunk of its
    /// stdout and stderr as it comes.
    pub(crate) async fn exec(
        &self,
        argv: &[&str],
        sudo: Option<&Sudo>,
        mut output: impl FnMut(OutputStream, &[u8]),
    ) -> Result<ExitStatus, SshError> {
        let started = Instant::now();
        let Started {
            mut channel,
            command,
            stdout,
        } = self.start(argv, sudo).await?;
        channel.eof().await.map_err(SshError::channel)?;
        if !stdout.is_empty() {
            output(OutputStream::Stdout, &stdout);
        }
        let mut termination = None;
        while let Some(message) = channel.wait().await {
            match message {
                ChannelMsg::Data { data } => output(OutputStream::Stdout, &data),
                ChannelMsg::ExtendedData { data, ext: 1 } => output(OutputStream::Stderr, &data),
                ChannelMsg::ExitStatus { exit_status } => {
                    termination = Some(Termination::Exited {
                        code: i32::try_from(exit_status).unwrap_or(i32::MAX),
                    });
                }
                ChannelMsg::ExitSignal { signal_name, .. } => {
                    termination = Some(Termination::Signaled {
                        signal: signal_number(&signal_name),
                    });
                }
                ChannelMsg::Failure => {
                    return Err(SshError::Refused(format!(
                        "the server would not run `{command}`"
                    )))
                }
                _ => {}
            }
        }
        let termination = termination.ok_or_else(|| {
            SshError::Lost(format!("`{command}` was running when the connection ended"))
        })?;
        Ok(ExitStatus {
            termination,
            duration: started.elapsed(),
            timed_out: false,
        })
    }

    /// Runs `argv` and gathers its output.
    async fn run(&self, argv: &[&str], sudo: Option<&Sudo>) -> Result<Output, SshError> {
        let mut out = Output::default();
        let exit = self
            .exec(argv, sudo, |stream, bytes| match stream {
                OutputStream::Stdout => out.stdout.extend_from_slice(bytes),
                OutputStream::Stderr => out.stderr.extend_from_slice(bytes),
            })
            .await?;
        out.exit = Some(exit);
        Ok(out)
    }

    /// Runs `argv`, which must succeed, and returns its stdout.
    pub(super) async fn run_ok(
        &self,
        what: &str,
        argv: &[&str],
        sudo: Option<&Sudo>,
    ) -> Result<Vec<u8>, SshError> {
        let out = self.run(argv, sudo).await?;
        match &out.exit {
            Some(exit) if exit.success() => Ok(out.stdout),
            Some(exit) => Err(SshError::Remote {
                what: what.into(),
                message: format!("{}{}", exit.termination, stderr_text(&out.stderr)),
            }),
            None => Err(SshError::Lost(what.into())),
        }
    }

    /// Writes `data`, whose hex digest is `sha256`, to `path` with `mode`, unless it is
    /// there already: one channel, and no byte sent when the digest and mode match. The
    /// host checks what it received against `sha256` before the file takes its place.
    pub(crate) async fn put(
        &self,
        path: &str,
        mode: u32,
        data: &[u8],
        sha256: &str,
        sudo: Option<&Sudo>,
    ) -> Result<Written, SshError> {
        let what = format!("writing {path}");
        let mode = format!("{mode:o}");
        let argv = ["sh", "-c", PUT, "sinew-put", path, sha256, &mode];
        let Started {
            mut channel,
            stdout: mut seen,
            ..
        } = self.start(&argv, sudo).await?;
        let mut stderr = Vec::new();
        let mut sent = false;
        let mut code = None;
        loop {
            if !sent && seen.starts_with(b"send\n") {
                sent = true;
                channel.data(data).await.map_err(SshError::channel)?;
                channel.eof().await.map_err(SshError::channel)?;
            }
            let Some(message) = channel.wait().await else {
                break;
            };
            match message {
                ChannelMsg::Data { data: chunk } => seen.extend_from_slice(&chunk),
                ChannelMsg::ExtendedData { data: chunk, .. } => stderr.extend_from_slice(&chunk),
                ChannelMsg::ExitStatus { exit_status } => code = Some(exit_status),
                _ => {}
            }
        }
        match code {
            Some(0) if seen.starts_with(b"same\n") => Ok(Written::Unchanged),
            Some(0) if sent => Ok(Written::Changed),
            Some(code) => Err(SshError::Remote {
                what,
                message: format!("exited with code {code}{}", stderr_text(&stderr)),
            }),
            None => Err(SshError::Lost(what)),
        }
    }

    /// Reads the file at `path`, checking its digest on arrival.
    pub(crate) async fn get(&self, path: &str, sudo: Option<&Sudo>) -> Result<Vec<u8>, SshError> {
        let what = format!("reading {path}");
        let mut out = self
            .run_ok(&what, &["sh", "-c", GET, "sinew-get", path], sudo)
            .await?;
        let Some(newline) = out.iter().position(|&b| b == b'\n') else {
            return Err(SshError::Remote {
                what,
                message: "no digest came before the file".into(),
            });
        };
        let data = out.split_off(newline + 1);
        let want = String::from_utf8_lossy(&out[..newline]).into_owned();
        let got = hex::encode(Sha256::digest(&data));
        if got != want {
            return Err(SshError::Remote {
                what,
                message: format!(
                    "sha256 {got} arrived, {want} was read (did it change meanwhile?)"
                ),
            });
        }
        Ok(data)
    }

    /// The machine's `uname -m`.
    pub(crate) async fn machine(&self) -> Result<String, SshError> {
        let out = self.run_ok("uname -m", &["uname", "-m"], None).await?;
        Ok(String::from_utf8_lossy(&out).trim().to_string())
    }

    /// What the machine reports about itself.
    pub(crate) async fn facts(&self) -> Result<Facts, SshError> {
        let out = self
            .run_ok("gathering facts", &["sh", "-c", FACTS], None)
            .await?;
        Ok(parse_facts(&String::from_utf8_lossy(&out)))
    }
}

/// Where `needle` starts in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A fresh random tag, so that no output can fake sudo's prompt or success marker.
fn nonce() -> Result<String, SshError> {
    let mut bytes = [0u8; 12];
    getrandom::fill(&mut bytes)
        .map_err(|e| SshError::Refused(format!("no random numbers for a sudo nonce: {e}")))?;
    Ok(hex::encode(bytes))
}

/// `argv` quoted for the remote user's shell.
fn command_line(argv: &[&str]) -> Result<String, SshError> {
    shlex::try_join(argv.iter().copied())
        .map_err(|e| SshError::Refused(format!("cannot quote {argv:?} for a shell: {e}")))
}

fn stderr_text(stderr: &[u8]) -> String {
    crate::outcome::stderr_tail(&String::from_utf8_lossy(stderr))
}

fn signal_number(signal: &russh::Sig) -> i32 {
    use nix::sys::signal::Signal;
    let signal = match signal {
        russh::Sig::ABRT => Signal::SIGABRT,
        russh::Sig::ALRM => Signal::SIGALRM,
        russh::Sig::FPE => Signal::SIGFPE,
        russh::Sig::HUP => Signal::SIGHUP,
        russh::Sig::ILL => Signal::SIGILL,
        russh::Sig::INT => Signal::SIGINT,
        russh::Sig::KILL => Signal::SIGKILL,
        russh::Sig::PIPE => Signal::SIGPIPE,
        russh::Sig::QUIT => Signal::SIGQUIT,
        russh::Sig::SEGV => Signal::SIGSEGV,
        russh::Sig::TERM => Signal::SIGTERM,
        russh::Sig::USR1 => Signal::SIGUSR1,
        russh::Sig::Custom(name) => match format!("SIG{name}").parse::<Signal>() {
            Ok(signal) => signal,
            Err(_) => return 0,
        },
    };
    signal as i32
}

fn parse_facts(text: &str) -> Facts {
    let mut facts = Facts {
        hostname: String::new(),
        arch: String::new(),
        kernel_release: String::new(),
        uptime: Duration::ZERO,
        cpus: 0,
        mem_total_kib: 0,
        mem_available_kib: 0,
        interfaces: Vec::new(),
        agent_version: "none (facts gathered over SSH)".into(),
        image: None,
    };
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let (Some(key), rest) = (words.next(), words.clone().collect::<Vec<_>>()) else {
            continue;
        };
        let first = rest.first().copied().unwrap_or_default();
        match key {
            "hostname" => facts.hostname = first.into(),
            "arch" => facts.arch = first.into(),
            "kernel" => facts.kernel_release = first.into(),
            "uptime" => {
                facts.uptime = first
                    .parse::<f64>()
                    .ok()
                    .and_then(|s| Duration::try_from_secs_f64(s).ok())
                    .unwrap_or_default();
            }
            "cpus" => facts.cpus = first.parse().unwrap_or(0),
            "MemTotal:" => facts.mem_total_kib = first.parse().unwrap_or(0),
            "MemAvailable:" => facts.mem_available_kib = first.parse().unwrap_or(0),
            "if" => facts.interfaces.push(interface(&rest)),
            _ => address(&mut facts.interfaces, key, &rest),
        }
    }
    facts.interfaces.sort_by(|a, b| a.name.cmp(&b.name));
    facts
}

/// `if NAME [MAC] FLAGS`: the MAC is missing for a device without one.
fn interface(words: &[&str]) -> NetInterface {
    let name = words.first().copied().unwrap_or_default().to_string();
    let (mac, flags) = match words {
        [_, mac, flags] => (Some(mac.to_string()), *flags),
        [_, flags] => (None, *flags),
        _ => (None, "0"),
    };
    let flags = u32::from_str_radix(flags.trim_start_matches("0x"), 16).unwrap_or(0);
    NetInterface {
        name,
        mac: mac.filter(|m| m != "00:00:00:00:00:00"),
        up: flags & 1 == 1,
        addresses: Vec::new(),
    }
}

/// One of `ip -o addr`'s lines: `N: NAME inet ADDRESS/PREFIX ...`.
fn address(interfaces: &mut [NetInterface], index: &str, words: &[&str]) {
    if !index.ends_with(':') {
        return;
    }
    let [name, family, cidr, ..] = words else {
        return;
    };
    if !matches!(*family, "inet" | "inet6") {
        return;
    }
    let name = name.split('@').next().unwrap_or(name);
    let Some((address, prefix)) = cidr.split_once('/') else {
        return;
    };
    let (Ok(address), Ok(prefix_len)) = (address.parse(), prefix.parse()) else {
        return;
    };
    if let Some(interface) = interfaces.iter_mut().find(|i| i.name == name) {
        interface.addresses.push(InterfaceAddress {
            address,
            prefix_len,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_are_read_from_the_scripts_lines() {
        let facts = parse_facts(
            "hostname web1\narch aarch64\nkernel 6.1.0-28-cloud-arm64\nuptime 123.45\ncpus 4\n\
             MemTotal:        2000000 kB\nMemAvailable:    1500000 kB\n\
             if lo 00:00:00:00:00:00 0x9\nif eth0 52:54:00:12:34:56 0x1003\nif wg0 0x1090\n\
             1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever\n\
             2: eth0    inet 10.0.2.15/24 brd 10.0.2.255 scope global eth0\n\
             2: eth0    inet6 fe80::5054:ff:fe12:3456/64 scope link\n",
        );
        assert_eq!(facts.hostname, "web1");
        assert_eq!(facts.arch, "aarch64");
        assert_eq!(facts.uptime, Duration::from_millis(123_450));
        assert_eq!(
            (facts.cpus, facts.mem_total_kib, facts.mem_available_kib),
            (4, 2_000_000, 1_500_000)
        );
        let names: Vec<_> = facts.interfaces.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["eth0", "lo", "wg0"]);
        let eth0 = &facts.interfaces[0];
        assert!(eth0.up);
        assert_eq!(eth0.mac.as_deref(), Some("52:54:00:12:34:56"));
        assert_eq!(eth0.addresses.len(), 2);
        assert_eq!(eth0.addresses[0].prefix_len, 24);
        assert_eq!(facts.interfaces[1].mac, None);
        assert!(!facts.interfaces[2].up && facts.interfaces[2].mac.is_none());
    }

    #[test]
    fn arguments_are_quoted_for_the_remote_shell() {
        assert_eq!(
            command_line(&["echo", "a b", "it's", "$HOME"]).expect("quotes"),
            r#"echo 'a b' "it's" '$HOME'"#
        );
    }
}
