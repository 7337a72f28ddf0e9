//! `run`, `list`, `status`, `stop`, `rm` and `logs`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;

use sinew_proto::overlay::SUBNET_FILE;
use sinew_runner::cgroup::Limits;
use sinew_runner::container::manage;
use sinew_runner::container::{
    self, ContainerDir, Echo, ImageSource, Overrides, RunOptions, State,
};
use sinew_runner::image::{RuntimeConfig, Store};
use sinew_runner::net::{NetMode, OverlayConfig, PortSpec};

/// `sinew-run run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Image name or manifest digest in the store.
    #[arg(required_unless_present = "rootfs_dir", conflicts_with = "rootfs_dir")]
    pub image: Option<String>,
    /// Run an unpacked root filesystem directory instead of an image (no signature is
    /// involved: for development and for comparing with other runtimes).
    #[arg(long, value_name = "DIR")]
    pub rootfs_dir: Option<PathBuf>,
    /// Replace the image's entrypoint (the image's cmd is dropped too).
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Set an environment variable, KEY=VALUE (repeatable).
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Working directory inside the container.
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// User: name or uid, optionally :group or :gid, resolved in the image's /etc/passwd.
    #[arg(short, long)]
    pub user: Option<String>,
    /// Hostname (default: the container id's first 12 digits).
    #[arg(long)]
    pub hostname: Option<String>,
    /// Memory limit, e.g. 64M.
    #[arg(long)]
    pub memory: Option<String>,
    /// CPU limit in CPUs, e.g. 0.5.
    #[arg(long)]
    pub cpus: Option<String>,
    /// Maximum number of processes.
    #[arg(long)]
    pub pids: Option<u64>,
    /// Network: host, none (only lo) or overlay (a veth into the overlay bridge).
    #[arg(long, value_enum, default_value = "none")]
    pub net: NetMode,
    /// flannel's subnet.env, for --net=overlay.
    #[arg(
        long,
        env = "SINEW_SUBNET_FILE",
        default_value = SUBNET_FILE
    )]
    pub subnet_file: PathBuf,
    /// Host bridge for --net=overlay.
    #[arg(long, env = "SINEW_BRIDGE", default_value = "sinew0")]
    pub bridge: String,
    /// Publish a port: [HOSTIP:]HOSTPORT:CONTAINERPORT[/tcp] (repeatable; --net=overlay).
    #[arg(short, long = "publish", value_name = "PORTS")]
    pub publish: Vec<PortSpec>,
    /// Grace period between SIGTERM and SIGKILL, e.g. 10s or 500ms.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub stop_timeout: Duration,
    /// Run in the background and print the container id.
    #[arg(short, long)]
    pub detach: bool,
    /// Arguments replacing the image's cmd.
    #[arg(last = true)]
    pub args: Vec<String>,
}

/// `sinew-run list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

/// `table` or `json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns.
    Table,
    /// JSON.
    Json,
}

/// `sinew-run status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Container id or unique prefix.
    pub id: String,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

/// `sinew-run stop`.
#[derive(Debug, Args)]
pub struct StopArgs {
    /// Container id or unique prefix.
    pub id: String,
    /// Grace period before SIGKILL.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
}

/// `sinew-run rm`.
#[derive(Debug, Args)]
pub struct RmArgs {
    /// Container id or unique prefix.
    pub id: String,
    /// Kill the container first if it is running.
    #[arg(short, long)]
    pub force: bool,
}

/// `sinew-run logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Container id or unique prefix.
    pub id: String,
}

fn parse_duration(text: &str) -> Result<Duration, sinew_support::duration::DurationError> {
    sinew_support::duration::parse(text, Duration::from_secs(1))
}

/// Runs a container; returns its exit code (foreground) or 0 once started (detached).
pub fn run(dir: &Path, args: RunArgs) -> anyhow::Result<u8> {
    let image = image_source(dir, &args)?;
    let limits = Limits::parse(args.memory.as_deref(), args.cpus.as_deref(), args.pids)?;
    if !args.publish.is_empty() && args.net != NetMode::Overlay {
        bail!("-p needs --net=overlay: published ports are proxied to the container's overlay address");
    }
    let opts = RunOptions {
        id: container::new_id()?,
        image,
        overrides: Overrides {
            entrypoint: args.entrypoint,
            args: args.args,
            env: args.env,
            workdir: args.workdir,
            user: args.user,
            hostname: args.hostname,
        },
        limits,
        net: args.net,
        overlay: OverlayConfig {
            subnet_file: args.subnet_file,
            bridge: args.bridge,
        },
        ports: args.publish,
        stop_timeout: args.stop_timeout,
        echo: if args.detach {
            Echo::LogOnly
        } else {
            Echo::Terminal
        },
    };
    if args.detach {
        let state =
            manage::run_detached(dir, &opts).context("starting the container in the background")?;
        println!("{}", state.id);
        return Ok(0);
    }
    let state = container::run(dir, &opts, |_| {}).context("running the container")?;
    if state.oom_killed {
        eprintln!(
            "sinew-run: container {} was killed by the OOM killer (memory limit reached)",
            state.id
        );
    }
    Ok(state
        .exit_code
        .map_or(0, |code| u8::try_from(code).unwrap_or(u8::MAX)))
}

fn image_source(dir: &Path, args: &RunArgs) -> anyhow::Result<ImageSource> {
    match (&args.rootfs_dir, &args.image) {
        (Some(rootfs), _) => Ok(ImageSource {
            name: rootfs.display().to_string(),
            manifest_digest: None,
            rootfs: std::fs::canonicalize(rootfs)
                .with_context(|| format!("--rootfs-dir {}", rootfs.display()))?,
            config: RuntimeConfig::default(),
        }),
        (None, Some(image)) => {
            // Fetched images were verified and rendered once; resolving is a lookup.
            let store = Store::open(dir)
                .with_context(|| format!("opening the image store in {}", dir.display()))?;
            let rendered = store
                .resolve(image)
                .with_context(|| format!("image {image:?}"))?;
            Ok(rendered.into())
        }
        (None, None) => bail!("an IMAGE or --rootfs-dir is required"),
    }
}

/// Lists containers.
pub fn list(dir: &Path, args: ListArgs) -> anyhow::Result<()> {
    let states = manage::list(dir).context("listing containers")?;
    let mut out = std::io::stdout().lock();
    if args.format == Format::Json {
        serde_json::to_writer_pretty(&mut out, &states)?;
        writeln!(out)?;
        return Ok(());
    }
    writeln!(
        out,
        "{:<16}  {:<24}  {:<8}  {:>7}  {:<20}  {:>4}",
        "ID", "IMAGE", "STATUS", "PID", "STARTED", "EXIT"
    )?;
    for s in &states {
        let pid = s
            .pid
            .filter(|_| s.status == container::Status::Running)
            .map(|p| p.to_string());
        writeln!(
            out,
            "{:<16}  {:<24}  {:<8}  {:>7}  {:<20}  {:>4}",
            s.id,
            s.image,
            s.status.to_string(),
            pid.unwrap_or_else(|| "-".into()),
            container::state::format_time(s.started_at),
            s.exit_code
                .map(|c| c.to_string())
                .unwrap_or_else(|| "-".into())
        )?;
    }
    Ok(())
}

/// Shows one container.
pub fn status(dir: &Path, args: StatusArgs) -> anyhow::Result<()> {
    let state = ContainerDir::find(dir, &args.id)
        .and_then(|d| d.current())
        .context("reading the container state")?;
    let mut out = std::io::stdout().lock();
    if args.format == Format::Json {
        serde_json::to_writer_pretty(&mut out, &state)?;
        writeln!(out)?;
        return Ok(());
    }
    print_status(&mut out, &state)?;
    Ok(())
}

fn print_status(out: &mut impl Write, s: &State) -> std::io::Result<()> {
    let or_dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    writeln!(out, "id:        {}", s.id)?;
    writeln!(out, "image:     {}", s.image)?;
    writeln!(out, "digest:    {}", or_dash(s.manifest_digest.clone()))?;
    writeln!(out, "status:    {}", s.status)?;
    writeln!(out, "pid:       {}", or_dash(s.pid.map(|p| p.to_string())))?;
    writeln!(
        out,
        "started:   {}",
        container::state::format_time(s.started_at)
    )?;
    writeln!(
        out,
        "finished:  {}",
        or_dash(s.finished_at.map(container::state::format_time))
    )?;
    writeln!(
        out,
        "exit code: {}",
        or_dash(s.exit_code.map(|c| c.to_string()))
    )?;
    writeln!(out, "oom kill:  {}", s.oom_killed)?;
    writeln!(out, "cgroup:    {}", s.cgroup)?;
    writeln!(out, "net:       {}", s.net)?;
    writeln!(out, "address:   {}", or_dash(s.address.clone()))?;
    writeln!(
        out,
        "ports:     {}",
        if s.ports.is_empty() {
            "-".to_string()
        } else {
            s.ports.join(", ")
        }
    )?;
    if let Some(error) = &s.error {
        writeln!(out, "error:     {error}")?;
    }
    Ok(())
}

/// Stops a container.
pub fn stop(dir: &Path, args: StopArgs) -> anyhow::Result<()> {
    let state = manage::stop(dir, &args.id, args.timeout)
        .with_context(|| format!("stopping {}", args.id))?;
    println!("{}", state.id);
    Ok(())
}

/// Removes a container.
pub fn rm(dir: &Path, args: RmArgs) -> anyhow::Result<()> {
    let id = manage::remove(dir, &args.id, args.force)
        .with_context(|| format!("removing {}", args.id))?;
    println!("{id}");
    Ok(())
}

/// Prints a container's log.
pub fn logs(dir: &Path, args: LogsArgs) -> anyhow::Result<()> {
    let container = ContainerDir::find(dir, &args.id).context("finding the container")?;
    let mut log = std::fs::File::open(container.log())
        .with_context(|| format!("opening {}", container.log().display()))?;
    std::io::copy(&mut log, &mut std::io::stdout().lock()).context("writing the log")?;
    Ok(())
}
