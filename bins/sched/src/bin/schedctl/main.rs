//! `schedctl`: fleetctl for sinew's scheduler; everything it does lives in the `sinew_sched`
//! library's client.

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use sinew_proto::discovery::Registration;
use sinew_proto::kv::KvClient;
use sinew_sched::client::{SchedClient, Snapshot};
use sinew_sched::records::{Phase, Target};
use sinew_sched::unit::UnitSpec;
use sinew_sched::InstanceId;

/// Submits, starts, stops and destroys units, and shows where they run.
#[derive(Debug, Parser)]
#[command(name = "schedctl", version)]
struct Cli {
    /// KV endpoints (etcd v3 or kvd), comma-separated.
    #[arg(
        long,
        global = true,
        env = "SINEW_SCHED_ENDPOINTS",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:2379"
    )]
    endpoints: Vec<String>,

    /// How list-units, list-machines and status print: `table`, or `json` (everything the
    /// scheduler holds, for programs).
    #[arg(long, short = 'o', global = true, value_enum, default_value = "table")]
    output: Output,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Output {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Submits unit files (TOML, or JSON if named *.json) without starting them.
    Submit {
        /// The files.
        #[arg(required = true)]
        files: Vec<std::path::PathBuf>,
    },
    /// Starts units: their instances are placed and run (submitting files first, if given).
    Start {
        /// Unit names, or unit files.
        #[arg(required = true)]
        units: Vec<String>,
    },
    /// Stops units' instances; the units stay submitted.
    Stop {
        /// Unit names.
        #[arg(required = true)]
        units: Vec<String>,
    },
    /// Stops and removes units.
    Destroy {
        /// Unit names.
        #[arg(required = true)]
        units: Vec<String>,
    },
    /// Changes a unit's replica count.
    Scale {
        /// The unit.
        unit: String,
        /// Its new replica count.
        replicas: u32,
    },
    /// Lists every instance: where it runs and how it is doing.
    ListUnits,
    /// Prints an instance's log from its machine (its agent's journal server).
    Journal {
        /// The instance (`web@0`).
        instance: InstanceId,
        /// How many of the last lines.
        #[arg(long, short = 'n', default_value = "50")]
        lines: usize,
        /// Keep printing what it writes.
        #[arg(long, short = 'f')]
        follow: bool,
    },
    /// Lists the machines.
    ListMachines,
    /// Lists services: each registered instance, its address and version, and whether the
    /// service's routing sends it traffic.
    ListServices,
    /// Makes the given versions of a service the ones that get traffic (a blue-green
    /// switch); with none, every version does.
    Route {
        /// The service.
        service: String,
        /// The versions.
        versions: Vec<String>,
    },
    /// Shows units in detail: spec, instances, why an instance waits or failed.
    Status {
        /// Unit names.
        #[arg(required = true)]
        units: Vec<String>,
    },
}

fn main() -> ExitCode {
    sinew_support::logging::Logging::new("RUST_LOG", "warn").init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("schedctl: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("schedctl: {}", sinew_support::error_chain(error.as_ref()));
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    let client = SchedClient::new(KvClient::new(&cli.endpoints).context("--endpoints")?);
    match cli.command {
        Command::Submit { files } => {
            for file in files {
                let spec = read_spec(&file)?;
                client.submit(&spec).await?;
                println!("submitted {}", spec.name);
            }
        }
        Command::Start { units } => {
            for unit in units {
                let name = if std::path::Path::new(&unit).is_file() {
                    let spec = read_spec(std::path::Path::new(&unit))?;
                    client.submit(&spec).await?;
                    spec.name
                } else {
                    unit
                };
                client.start(&name).await?;
                println!("started {name}");
            }
        }
        Command::Stop { units } => {
            for unit in units {
                client.stop(&unit).await?;
                println!("stopped {unit}");
            }
        }
        Command::Destroy { units } => {
            for unit in units {
                client.destroy(&unit).await?;
                println!("destroyed {unit}");
            }
        }
        Command::Scale { unit, replicas } => {
            client.scale(&unit, replicas).await?;
            println!("scaled {unit} to {replicas}");
        }
        Command::Route { service, versions } => {
            client.route(&service, &versions).await?;
            if versions.is_empty() {
                println!("{service}: every version gets traffic");
            } else {
                println!("{service}: traffic to {}", versions.join(", "));
            }
        }
        Command::ListUnits
        | Command::ListMachines
        | Command::ListServices
        | Command::Status { .. }
            if cli.output == Output::Json =>
        {
            println!("{}", serde_json::to_string(&client.snapshot().await?)?);
        }
        Command::Journal {
            instance,
            lines,
            follow,
        } => journal(&client.snapshot().await?, &instance, lines, follow).await?,
        Command::ListUnits => print!("{}", list_units(&client.snapshot().await?)),
        Command::ListMachines => print!("{}", list_machines(&client.snapshot().await?)),
        Command::ListServices => print!("{}", list_services(&client.snapshot().await?)),
        Command::Status { units } => {
            let snapshot = client.snapshot().await?;
            for unit in units {
                print!("{}", status(&snapshot, &unit)?);
            }
        }
    }
    Ok(())
}

/// Streams an instance's log from its machine's journal server to stdout.
async fn journal(
    snapshot: &Snapshot,
    instance: &InstanceId,
    lines: usize,
    follow: bool,
) -> Result<()> {
    use http_body_util::BodyExt as _;
    use std::io::Write as _;

    let (machine, _) = snapshot
        .placed
        .get(instance)
        .with_context(|| format!("{instance} is not placed on any machine"))?;
    let url = snapshot
        .machines
        .get(machine)
        .and_then(|record| record.journal.clone())
        .with_context(|| {
            format!("machine {machine} serves no journal (schedd --journal-listen)")
        })?;
    let uri: hyper::Uri = format!("{url}/journal/{instance}?lines={lines}&follow={follow}")
        .parse()
        .with_context(|| format!("machine {machine}'s journal URL {url:?}"))?;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<hyper::body::Bytes>>();
    let response = client
        .get(uri.clone())
        .await
        .with_context(|| format!("asking {uri}"))?;
    let status = response.status();
    let mut body = response.into_body();
    let mut stdout = std::io::stdout().lock();
    let mut refusal = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.with_context(|| format!("reading {uri}"))?;
        if let Some(data) = frame.data_ref() {
            if status.is_success() {
                stdout.write_all(data)?;
                stdout.flush()?;
            } else {
                refusal.extend_from_slice(data);
            }
        }
    }
    anyhow::ensure!(
        status.is_success(),
        "{machine} answered {status}: {}",
        String::from_utf8_lossy(&refusal).trim()
    );
    Ok(())
}

fn read_spec(path: &std::path::Path) -> Result<UnitSpec> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading unit file {}", path.display()))?;
    Ok(UnitSpec::from_file_text(
        &text,
        &path.display().to_string(),
    )?)
}

/// One line per instance, fleetctl's columns.
fn list_units(snapshot: &Snapshot) -> String {
    let mut rows = vec![[
        "INSTANCE".to_owned(),
        "MACHINE".to_owned(),
        "STATE".to_owned(),
        "HEALTH".to_owned(),
    ]];
    for (name, unit) in &snapshot.units {
        let mut instances: Vec<&InstanceId> = snapshot
            .placed
            .keys()
            .chain(snapshot.waiting.keys())
            .chain(snapshot.failed.keys())
            .filter(|instance| &instance.unit == name)
            .collect();
        instances.sort();
        instances.dedup();
        if instances.is_empty() {
            let state = match unit.target {
                Target::Inactive => "inactive",
                Target::Launched => "launched",
            };
            rows.push([name.clone(), "-".into(), state.into(), "-".into()]);
        }
        for instance in instances {
            rows.push(instance_row(snapshot, instance));
        }
    }
    table(&rows)
}

fn instance_row(snapshot: &Snapshot, instance: &InstanceId) -> [String; 4] {
    let machine = snapshot
        .placed
        .get(instance)
        .map_or("-".to_owned(), |(machine, _)| machine.clone());
    let state = snapshot.states.get(instance);
    let phase = match (
        state,
        snapshot.failed.get(instance),
        snapshot.waiting.get(instance),
    ) {
        (Some(state), _, _) => match &state.phase {
            Phase::Starting => "starting".to_owned(),
            Phase::Running => "running".to_owned(),
            Phase::Exited => "exited".to_owned(),
            Phase::Failed { .. } => "failed".to_owned(),
        },
        (None, Some(_), _) => "failed".to_owned(),
        (None, None, Some(_)) => "waiting".to_owned(),
        (None, None, None) => "placed".to_owned(),
    };
    let health = match state {
        Some(state) if state.healthy => "healthy",
        Some(_) => "unhealthy",
        None => "-",
    };
    [instance.to_string(), machine, phase, health.to_owned()]
}

fn list_machines(snapshot: &Snapshot) -> String {
    let mut rows = vec![[
        "MACHINE".to_owned(),
        "ARCH".to_owned(),
        "METADATA".to_owned(),
        "INSTANCES".to_owned(),
    ]];
    for (name, machine) in &snapshot.machines {
        let metadata: Vec<String> = machine
            .metadata
            .iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect();
        let instances = snapshot
            .placed
            .values()
            .filter(|(placed_on, _)| placed_on == name)
            .count();
        rows.push([
            name.clone(),
            machine.arch.clone(),
            if metadata.is_empty() {
                "-".to_owned()
            } else {
                metadata.join(",")
            },
            instances.to_string(),
        ]);
    }
    table(&rows)
}

fn list_services(snapshot: &Snapshot) -> String {
    let mut rows = vec![[
        "SERVICE".to_owned(),
        "VERSION".to_owned(),
        "INSTANCE".to_owned(),
        "MACHINE".to_owned(),
        "ADDRESS".to_owned(),
        "TRAFFIC".to_owned(),
    ]];
    for (name, service) in &snapshot.services {
        let routed: Vec<&Registration> = service.routed().collect();
        for instance in &service.instances {
            rows.push([
                name.clone(),
                if instance.version.is_empty() {
                    "-".to_owned()
                } else {
                    instance.version.clone()
                },
                instance.instance.clone(),
                instance.machine.clone(),
                instance.endpoint(),
                if routed.contains(&instance) {
                    "yes"
                } else {
                    "no"
                }
                .to_owned(),
            ]);
        }
    }
    table(&rows)
}

fn status(snapshot: &Snapshot, name: &str) -> Result<String> {
    let unit = snapshot
        .units
        .get(name)
        .with_context(|| format!("unit {name} is not submitted"))?;
    let mut out = format!(
        "{name}: {} ({} build{} for {}; replicas {}{})\n",
        match unit.target {
            Target::Inactive => "inactive",
            Target::Launched => "launched",
        },
        unit.spec.exec.kind,
        if unit.spec.exec.builds.len() == 1 {
            ""
        } else {
            "s"
        },
        unit.spec.build_archs(),
        unit.spec.placement.replicas,
        if unit.spec.placement.global {
            ", global"
        } else {
            ""
        },
    );
    let mut instances: Vec<&InstanceId> = snapshot
        .placed
        .keys()
        .chain(snapshot.waiting.keys())
        .chain(snapshot.failed.keys())
        .filter(|instance| instance.unit == name)
        .collect();
    instances.sort();
    instances.dedup();
    for instance in instances {
        let [id, machine, phase, health] = instance_row(snapshot, instance);
        out += &format!("  {id}: {phase} on {machine}, {health}");
        if let Some((_, token)) = snapshot.placed.get(instance) {
            out += &format!(", fencing token {token}");
        }
        if let Some(state) = snapshot.states.get(instance) {
            if let Some(pid) = state.pid {
                out += &format!(", pid {pid}");
            }
            if state.restarts > 0 {
                out += &format!(", {} restarts in a row", state.restarts);
            }
        }
        out += "\n";
        if let Some(why) = snapshot.waiting.get(instance) {
            out += &format!("    waiting: {why}\n");
        }
        if let Some(failure) = snapshot.failed.get(instance) {
            out += &format!("    failed on {}: {}\n", failure.machine, failure.reason);
        }
    }
    Ok(out)
}

/// Left-aligned columns, two spaces apart.
fn table<const N: usize>(rows: &[[String; N]]) -> String {
    let mut widths = [0; N];
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out += line.join("  ").trim_end();
        out += "\n";
    }
    out
}
