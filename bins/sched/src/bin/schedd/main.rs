//! `schedd`: the scheduler's daemon on every machine, its machine agent and a candidate
//! engine; everything it does lives in the `sinew_sched` library.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs as _, UdpSocket};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};
use sinew_proto::kv::KvClient;
use sinew_sched::agent::AgentConfig;
use sinew_sched::daemon::{self, DaemonConfig};
use sinew_sched::engine::EngineConfig;
use sinew_sched::records::MachineRecord;
use sinew_sched::unit::{check_name, Resources};
use sinew_support::logging::Logging;

/// fleet's daemon: registers this machine in the KV store, runs the instances placed on it,
/// and takes its turn as the engine that places them.
#[derive(Debug, Parser)]
#[command(name = "schedd", version)]
struct Cli {
    /// KV endpoints (etcd v3 or kvd), comma-separated.
    #[arg(
        long,
        env = "SINEW_SCHED_ENDPOINTS",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:2379"
    )]
    endpoints: Vec<String>,

    /// This machine's name in the cluster (default: the host name).
    #[arg(long, env = "SINEW_SCHED_MACHINE")]
    machine: Option<String>,

    /// Labels units select on, as key=value, comma-separated (fleet's --metadata).
    #[arg(long, env = "SINEW_SCHED_METADATA", value_delimiter = ',')]
    metadata: Vec<String>,

    /// Memory units may use, in MiB (default: the machine's).
    #[arg(long, env = "SINEW_SCHED_MEMORY_MB")]
    memory_mb: Option<u64>,

    /// CPU units may use, in thousandths of a CPU (default: the machine's CPUs).
    #[arg(long, env = "SINEW_SCHED_CPU_MILLIS")]
    cpu_millis: Option<u64>,

    /// The machine's architecture as units see it (default: `uname -m`).
    #[arg(long, env = "SINEW_SCHED_ARCH")]
    arch: Option<String>,

    /// Seconds the machine's lease (and the engine's) lives without renewal: how long a
    /// lost machine keeps its instances from being placed elsewhere.
    #[arg(long, env = "SINEW_SCHED_TTL", default_value = "2")]
    ttl: i64,

    /// Where the lease and the instances' logs are kept.
    #[arg(
        long,
        env = "SINEW_SCHED_STATE_DIR",
        default_value = "/run/sinew-sched"
    )]
    state_dir: PathBuf,

    /// The container runner, for container units.
    #[arg(
        long,
        env = "SINEW_SCHED_SINEW_RUN",
        default_value = "/usr/local/bin/sinew-run"
    )]
    sinew_run: PathBuf,

    /// Where the agent serves instance logs for `schedctl journal` (`address:port`); off
    /// when not given.
    #[arg(long, env = "SINEW_SCHED_JOURNAL_LISTEN")]
    journal_listen: Option<SocketAddr>,

    /// The journal's URL as other machines reach it (default: `http://` and
    /// `--journal-listen`, unless that listens on every address).
    #[arg(long, env = "SINEW_SCHED_JOURNAL_URL")]
    journal_url: Option<String>,

    /// What this daemon does.
    #[arg(long, env = "SINEW_SCHED_ROLE", value_enum, default_value = "both")]
    role: Role,

    /// Where other machines reach this one, as its instances are registered for service
    /// discovery (default: this machine's address on the route to the first endpoint).
    #[arg(long, env = "SINEW_SCHED_ADDRESS")]
    address: Option<IpAddr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Role {
    /// Run instances.
    Agent,
    /// Place instances.
    Engine,
    /// Both.
    Both,
}

fn main() -> ExitCode {
    Logging::new("RUST_LOG", "info").init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let error = sinew_support::error_chain(error.as_ref());
            tracing::error!("{error}");
            eprintln!("schedd: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let mut record = machine_record(&cli)?;
    record.journal = match (&cli.journal_url, cli.journal_listen) {
        (Some(url), _) => Some(url.clone()),
        (None, Some(listen)) if !listen.ip().is_unspecified() => Some(format!("http://{listen}")),
        (None, Some(listen)) => bail!(
            "--journal-listen {listen} listens on every address; say with --journal-url where other machines reach it"
        ),
        (None, None) => None,
    };
    // A member that stopped answering must not hold a request for long: renewals have to
    // fail over to a live member well within the lease's TTL.
    let patience = Duration::from_millis(u64::try_from(cli.ttl).unwrap_or(1) * 1000 / 4)
        .max(Duration::from_millis(500));
    let client = KvClient::with_timeout(&cli.endpoints, patience).context("--endpoints")?;
    let engine = (cli.role != Role::Agent).then(|| EngineConfig {
        name: record.id.clone(),
        ttl_s: cli.ttl,
        ..EngineConfig::default()
    });
    let agent = (cli.role != Role::Engine).then(|| AgentConfig {
        record,
        state_dir: cli.state_dir.clone(),
        sinew_run: cli.sinew_run.clone(),
    });
    let config = DaemonConfig {
        journal_listen: cli.journal_listen,
        agent,
        engine,
    };
    daemon::run(client, config)
}

fn machine_record(cli: &Cli) -> Result<MachineRecord> {
    let id = match &cli.machine {
        Some(name) => name.clone(),
        None => nix::unistd::gethostname()
            .context("reading the host name for --machine")?
            .to_string_lossy()
            .into_owned(),
    };
    check_name(&id)
        .map_err(anyhow::Error::msg)
        .context("--machine")?;
    let mut metadata = BTreeMap::new();
    for pair in &cli.metadata {
        let Some((key, value)) = pair.split_once('=') else {
            bail!("--metadata {pair:?}: expected key=value");
        };
        metadata.insert(key.trim().to_owned(), value.trim().to_owned());
    }
    let arch = match &cli.arch {
        Some(arch) => arch.clone(),
        None => nix::sys::utsname::uname()
            .context("uname, for --arch")?
            .machine()
            .to_string_lossy()
            .into_owned(),
    };
    if cli.ttl < 1 {
        bail!("--ttl {}: expected at least 1 second", cli.ttl);
    }
    Ok(MachineRecord {
        id,
        arch,
        metadata,
        capacity: Resources {
            memory_mb: match cli.memory_mb {
                Some(memory) => memory,
                None => memory_mb().context("reading /proc/meminfo for --memory-mb")?,
            },
            cpu_millis: cli.cpu_millis.unwrap_or_else(|| {
                let cpus = std::thread::available_parallelism().map_or(1, usize::from);
                u64::try_from(cpus).unwrap_or(1).saturating_mul(1000)
            }),
        },
        lease: 0,
        ttl_s: cli.ttl,
        journal: None,
        address: cli
            .address
            .or_else(|| cli.endpoints.first().and_then(|e| address_towards(e)))
            .map(|address| address.to_string()),
    })
}

/// This machine's address on the route to `endpoint` (`http://host:port`): the source
/// address the kernel picks for it. A UDP socket's connect sends nothing.
fn address_towards(endpoint: &str) -> Option<IpAddr> {
    let authority = endpoint
        .split_once("://")
        .map_or(endpoint, |(_, rest)| rest);
    let authority = authority.split('/').next()?;
    let target = authority.to_socket_addrs().ok()?.next()?;
    let local: SocketAddr = if target.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(local).ok()?;
    socket.connect(target).ok()?;
    Some(socket.local_addr().ok()?.ip())
}

/// The machine's memory, from `MemTotal` in /proc/meminfo.
fn memory_mb() -> Result<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo")?;
    let kib = meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .context("no MemTotal line")?;
    Ok(kib / 1024)
}
