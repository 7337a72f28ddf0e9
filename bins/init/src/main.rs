//! `sinew-init`: PID 1 and node agent for sinew guests.
//!
//! Started by the kernel as PID 1 it mounts the pseudo file systems, loads the listed kernel
//! modules, configures the network from the kernel command line, serves the authenticated
//! agent protocol of `sinew-proto`, supervises services, reaps orphans and powers the machine
//! off on request. `sinew-init agent ...` runs only the agent, on any machine (for tests).

mod boot;
mod cmdline;
mod exec;
mod facts;
mod files;
mod flow;
mod kernel_modules;
mod mounts;
mod network;
mod reaper;
mod server;
mod services;
mod shutdown;

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use sinew_proto::Secret;
use sinew_support::error_chain;
use sinew_support::logging::Logging;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::exec::Launcher;
use crate::reaper::ProcessTable;
use crate::server::Agent;
use crate::services::Services;

#[derive(Debug, Parser)]
#[command(version, about = "PID 1 and node agent for sinew guests")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run only the agent (no mounts, modules or network), e.g. for tests on the host.
    Agent(AgentArgs),
}

#[derive(Debug, clap::Args)]
struct AgentArgs {
    /// Address to listen on; port 0 picks a free port. The bound address is printed on
    /// stdout as `listening <addr>`.
    #[arg(long, default_value = "127.0.0.1:7070")]
    listen: SocketAddr,
    /// File holding the lab secret as 64 hex characters.
    #[arg(long)]
    secret_file: PathBuf,
    /// Directory for state; service logs go to its `log/` subdirectory.
    #[arg(long, default_value = "sinew-state")]
    state_dir: PathBuf,
}

fn main() -> ExitCode {
    if nix::unistd::getpid().as_raw() == 1 {
        boot::run();
    }
    let result = match Cli::parse().command {
        Command::Agent(args) => run_agent(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("sinew-init: {}", error_chain(error.as_ref()));
            ExitCode::FAILURE
        }
    }
}

fn run_agent(args: AgentArgs) -> anyhow::Result<()> {
    Logging::new("RUST_LOG", "info").for_console().init();
    let secret = Secret::load(&args.secret_file)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve_agent(args, secret))?;
    // Blocking tasks (file reads) of connections still open must not hold up the exit.
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}

async fn serve_agent(args: AgentArgs, secret: Secret) -> anyhow::Result<()> {
    let processes = ProcessTable::get()?;
    // As in a guest, orphans of commands come back to the agent to be reaped.
    if let Err(error) = nix::sys::prctl::set_child_subreaper(true) {
        tracing::warn!(%error, "cannot become a child subreaper");
    }
    let launcher = Launcher::new(processes, facts::machine()?);
    let services = Services::new(launcher.clone(), args.state_dir.join("log"));
    let (trigger, reasons) = mpsc::channel(4);
    shutdown::watch_signals(trigger.clone())?;
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening {addr}")
        .and_then(|()| stdout.flush())
        .context("writing the bound address")?;
    drop(stdout);
    tracing::info!(%addr, "agent listening");
    let agent = Agent {
        secret,
        launcher,
        services: services.clone(),
        shutdown: trigger,
    };
    server::serve_until_shutdown(listener, agent, reasons).await;
    services.shut_down().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_do_not_repeat_causes() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file");
        let error = anyhow::Error::new(sinew_proto::SecretError::Read {
            path: "/etc/sinew/agent.key".into(),
            source: io,
        })
        .context("loading the secret");
        assert_eq!(
            error_chain(error.as_ref()),
            "loading the secret: cannot read agent secret /etc/sinew/agent.key: No such file"
        );
    }
}
