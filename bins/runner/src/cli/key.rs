//! `sinew-run key generate|export`.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Subcommand;
use sinew_runner::signing::{export_public, generate_key, load_cert};

/// Key commands.
#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Generate a certificate with a signing subkey; writes the armored secret key.
    Generate {
        /// User ID, e.g. "Builds <builds@example.com>".
        #[arg(long)]
        userid: String,
        /// Secret key file to write (mode 0600; must not exist).
        #[arg(long)]
        out: PathBuf,
        /// Validity from now, e.g. 365d, 12h, 3600s (default: no expiry).
        #[arg(long, value_name = "DURATION")]
        expires_in: Option<String>,
    },
    /// Print (or write) the armored public certificate of a key.
    Export {
        /// Key file (secret or public).
        #[arg(long)]
        key: PathBuf,
        /// Output file (default: stdout).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

pub fn run(command: KeyCommand) -> anyhow::Result<()> {
    match command {
        KeyCommand::Generate {
            userid,
            out,
            expires_in,
        } => {
            let validity = expires_in.as_deref().map(parse_duration).transpose()?;
            let (secret, cert) = generate_key(&userid, validity).context("generating the key")?;
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&out)
                .with_context(|| format!("creating {}", out.display()))?;
            file.write_all(&secret)
                .with_context(|| format!("writing {}", out.display()))?;
            println!("{}", cert.fingerprint());
            Ok(())
        }
        KeyCommand::Export { key, out } => {
            let cert = load_cert(&key).with_context(|| format!("loading {}", key.display()))?;
            let public = export_public(&cert).context("exporting the public key")?;
            match out {
                Some(path) => {
                    fs::write(&path, &public).with_context(|| format!("writing {}", path.display()))
                }
                None => std::io::stdout()
                    .write_all(&public)
                    .context("writing to stdout"),
            }
        }
    }
}

/// `365d`, `12h`, `30m`, `3600s` or plain seconds.
fn parse_duration(text: &str) -> anyhow::Result<Duration> {
    let duration =
        sinew_support::duration::parse(text, Duration::from_secs(1)).context("--expires-in")?;
    if duration.is_zero() {
        bail!("--expires-in must be positive");
    }
    Ok(duration)
}
