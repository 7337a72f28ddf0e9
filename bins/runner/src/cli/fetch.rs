//! `sinew-run fetch`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Args;
use sinew_runner::image::{fetch, FetchOptions, Store};
use sinew_runner::trust::KeyStore;

/// `fetch SOURCE [--name NAME] [--signature SIG] [--insecure-options=image] [--arch ARCH]
/// [--ca-cert FILE]...`.
#[derive(Debug, Args)]
pub struct FetchArgs {
    /// OCI layout directory, OCI archive (.tar, .tar.gz), or http:// or https:// URL of either.
    source: String,
    /// Image name (default: the layout's org.opencontainers.image.ref.name when it is a full name).
    #[arg(long)]
    name: Option<String>,
    /// Detached OpenPGP signature, path or URL (default: SOURCE.asc).
    #[arg(long)]
    signature: Option<String>,
    /// Security checks to skip; only `image` (signature verification) exists.
    #[arg(long, value_delimiter = ',', value_name = "OPTIONS")]
    insecure_options: Vec<String>,
    /// Architecture to pick from a multi-arch image (default: the host's).
    #[arg(long)]
    arch: Option<String>,
    /// PEM file of CA certificates to trust for https:// besides the system roots
    /// (SSL_CERT_FILE / SSL_CERT_DIR replace those); repeatable, or one bundle.
    #[arg(long = "ca-cert", env = "SINEW_RUN_CA_CERT", value_name = "FILE")]
    ca_certs: Vec<PathBuf>,
}

pub fn run(dir: &Path, args: FetchArgs) -> anyhow::Result<()> {
    let mut insecure_skip_verify = false;
    for option in &args.insecure_options {
        match option.as_str() {
            "image" => insecure_skip_verify = true,
            other => bail!("unknown --insecure-options value {other:?}; the only one is \"image\""),
        }
    }
    if insecure_skip_verify {
        tracing::warn!(source = %args.source, "signature verification skipped (--insecure-options=image): the image is not authenticated");
    }
    let store = Store::open(dir)
        .with_context(|| format!("opening the image store in {}", dir.display()))?;
    let options = FetchOptions {
        source: args.source.clone(),
        name: args.name,
        signature: args.signature,
        insecure_skip_verify,
        arch: args.arch,
        ca_certs: args.ca_certs,
    };
    let record = fetch(&store, &KeyStore::in_state_dir(dir), &options)
        .with_context(|| format!("fetching {}", args.source))?;
    match &record.signed_by {
        Some(key) => tracing::info!(image = %record.name, key = %key, "signature verified"),
        None => {
            tracing::warn!(image = %record.name, "image fetched without signature verification")
        }
    }
    println!("{}\t{}", record.name, record.manifest_digest);
    Ok(())
}
