//! `sinew-run trust`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Args;
use sinew_runner::trust::{KeyStore, Prefix, TrustScope, TrustedKey};

/// `trust [--prefix P | --root] KEYFILE`, `trust --list`, `trust --remove FP [--prefix P | --root]`.
#[derive(Debug, Args)]
pub struct TrustArgs {
    /// Trust the key for images whose name equals or lies under this prefix (e.g. example.com/app).
    #[arg(long, conflicts_with = "root")]
    prefix: Option<String>,
    /// Trust the key for every image.
    #[arg(long)]
    root: bool,
    /// List trusted keys.
    #[arg(long, conflicts_with_all = ["remove", "keyfile", "prefix", "root"])]
    list: bool,
    /// Remove the key with this fingerprint (from every scope unless --prefix or --root).
    #[arg(long, value_name = "FINGERPRINT", conflicts_with = "keyfile")]
    remove: Option<String>,
    /// The OpenPGP certificate to trust (armored or binary).
    keyfile: Option<PathBuf>,
}

pub fn run(dir: &Path, args: TrustArgs) -> anyhow::Result<()> {
    let store = KeyStore::in_state_dir(dir);
    if args.list {
        let keys = store.list().context("listing trusted keys")?;
        for key in &keys {
            print_key(key);
        }
        return Ok(());
    }
    let scope = match (&args.prefix, args.root) {
        (Some(prefix), _) => Some(TrustScope::Prefix(
            Prefix::parse(prefix).with_context(|| format!("--prefix {prefix}"))?,
        )),
        (None, true) => Some(TrustScope::Root),
        (None, false) => None,
    };
    if let Some(fingerprint) = &args.remove {
        let removed = store
            .remove(fingerprint, scope.as_ref())
            .with_context(|| format!("removing key {fingerprint}"))?;
        for scope in removed {
            println!("removed {fingerprint} from {scope}");
        }
        return Ok(());
    }
    let Some(keyfile) = &args.keyfile else {
        bail!("nothing to do: give KEYFILE with --prefix PREFIX or --root, or use --list or --remove FINGERPRINT");
    };
    let Some(scope) = scope else {
        bail!(
            "say where to trust {}: --prefix PREFIX or --root",
            keyfile.display()
        );
    };
    let added = store
        .trust(&scope, keyfile)
        .with_context(|| format!("trusting {} for {scope}", keyfile.display()))?;
    for key in &added {
        print_key(key);
    }
    Ok(())
}

fn print_key(key: &TrustedKey) {
    println!(
        "{}\t{}\t{}",
        key.fingerprint,
        key.scope,
        key.user_ids.join(", ")
    );
}
