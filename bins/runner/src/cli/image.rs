//! `sinew-run image build|list|rm` and `sinew-run gc`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Args, Subcommand, ValueEnum};
use sinew_runner::container::manage;
use sinew_runner::container::state::Status;
use sinew_runner::image::{build, sign_layout, BuildSpec, Digest, ExtraFile, ImageRecord, Store};
use sinew_runner::signing::load_cert;

/// Image commands.
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Build an OCI image layout from static binaries (one per architecture) and files.
    Build(Box<BuildArgs>),
    /// List fetched images.
    List(ListArgs),
    /// Forget images by name or manifest digest (prefix); `gc` frees their space.
    Rm {
        /// Image names or manifest digests.
        #[arg(required = true)]
        references: Vec<String>,
    },
}

/// `image build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Full image name, e.g. example.com/app:1.0.
    #[arg(long)]
    name: String,
    /// ARCH=PATH of a static binary (x86_64/amd64, aarch64/arm64); repeat per architecture.
    #[arg(long = "arch", value_name = "ARCH=PATH", required = true)]
    arches: Vec<String>,
    /// Where the binary goes in the image (default /bin/<file name>).
    #[arg(long)]
    binary_dest: Option<String>,
    /// SRC:DEST extra file; repeatable.
    #[arg(long = "file", value_name = "SRC:DEST")]
    files: Vec<String>,
    /// Entrypoint, one argument per flag (default: the binary).
    #[arg(long = "entrypoint", value_name = "ARG")]
    entrypoint: Vec<String>,
    /// Cmd, one argument per flag.
    #[arg(long = "cmd", value_name = "ARG")]
    cmd: Vec<String>,
    /// KEY=VALUE environment variable; repeatable.
    #[arg(long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Working directory.
    #[arg(long)]
    workdir: Option<String>,
    /// User (name or uid[:gid]).
    #[arg(long)]
    user: Option<String>,
    /// The layout directory to write.
    #[arg(long)]
    out: PathBuf,
    /// Secret key to sign with; writes OUT.asc.
    #[arg(long)]
    sign_key: Option<PathBuf>,
}

/// `image list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

/// `gc`.
#[derive(Debug, Args)]
pub struct GcArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

/// Output formats.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    /// Human-readable columns.
    Table,
    /// JSON.
    Json,
}

pub fn run(dir: &Path, command: ImageCommand) -> anyhow::Result<()> {
    match command {
        ImageCommand::Build(args) => build_image(*args),
        ImageCommand::List(args) => list(dir, args),
        ImageCommand::Rm { references } => {
            let store = open(dir)?;
            for reference in &references {
                for record in store
                    .remove(reference)
                    .with_context(|| format!("removing image {reference}"))?
                {
                    println!("removed {}\t{}", record.name, record.manifest_digest);
                }
            }
            Ok(())
        }
    }
}

pub fn gc(dir: &Path, args: GcArgs) -> anyhow::Result<()> {
    let in_use = running_manifests(dir)?;
    let report = open(dir)?.gc(&in_use).context("collecting garbage")?;
    match args.format {
        Format::Json => println!("{}", serde_json::to_string(&report).context("encoding the report")?),
        Format::Table => println!(
            "freed {} bytes: {} blobs, {} rendered root filesystems, {} abandoned staging directories; kept {} root filesystems in use by running containers",
            report.bytes_freed, report.blobs_removed, report.rootfs_removed, report.staging_removed, report.rootfs_in_use
        ),
    }
    Ok(())
}

/// Manifests whose rendered root filesystems running (or starting) containers sit on.
fn running_manifests(dir: &Path) -> anyhow::Result<Vec<Digest>> {
    let states = manage::list(dir).context("listing containers")?;
    Ok(states
        .iter()
        .filter(|state| matches!(state.status, Status::Running | Status::Created))
        .filter_map(|state| state.manifest_digest.as_deref())
        .filter_map(|digest| Digest::parse(digest).ok())
        .collect())
}

fn open(dir: &Path) -> anyhow::Result<Store> {
    Store::open(dir).with_context(|| format!("opening the image store in {}", dir.display()))
}

fn list(dir: &Path, args: ListArgs) -> anyhow::Result<()> {
    let records = open(dir)?.list().context("listing images")?;
    match args.format {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&records).context("encoding the list")?
        ),
        Format::Table => {
            println!("NAME\tDIGEST\tARCH\tSIZE\tFETCHED\tSIGNED BY");
            for record in &records {
                print_row(record);
            }
        }
    }
    Ok(())
}

fn print_row(record: &ImageRecord) {
    println!(
        "{}\t{}\t{}\t{}\t{}\t{}",
        record.name,
        record.manifest_digest,
        record.architecture,
        record.size,
        sinew_runner::container::state::format_time(record.fetched_unix),
        record.signed_by.as_deref().unwrap_or("(unverified)")
    );
}

fn build_image(args: BuildArgs) -> anyhow::Result<()> {
    let mut binaries = Vec::new();
    for pair in &args.arches {
        let Some((arch, path)) = pair.split_once('=') else {
            bail!("--arch {pair:?}: expected ARCH=PATH, e.g. x86_64=target/x86_64-unknown-linux-musl/release/app");
        };
        binaries.push((arch.to_owned(), PathBuf::from(path)));
    }
    let mut files = Vec::new();
    for pair in &args.files {
        let Some((source, dest)) = pair.rsplit_once(':') else {
            bail!("--file {pair:?}: expected SRC:DEST, e.g. app.toml:/etc/app.toml");
        };
        files.push(ExtraFile {
            source: PathBuf::from(source),
            dest: dest.to_owned(),
        });
    }
    let spec = BuildSpec {
        name: args.name.clone(),
        binaries,
        binary_dest: args.binary_dest,
        files,
        entrypoint: (!args.entrypoint.is_empty()).then_some(args.entrypoint),
        cmd: args.cmd,
        env: args.env,
        working_dir: args.workdir,
        user: args.user,
        out: args.out.clone(),
    };
    let built = build(&spec).with_context(|| format!("building image {}", args.name))?;
    println!("{}\t{}", args.name, built.top_digest);
    for (arch, digest) in &built.manifests {
        println!("  linux/{arch}\t{digest}");
    }
    if let Some(key) = &args.sign_key {
        let cert =
            load_cert(key).with_context(|| format!("loading signing key {}", key.display()))?;
        let signature = sign_layout(&args.out, &cert)
            .with_context(|| format!("signing {}", args.out.display()))?;
        println!(
            "signed with {} -> {}",
            cert.fingerprint(),
            signature.display()
        );
    }
    Ok(())
}
