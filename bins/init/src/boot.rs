//! PID 1: bring the machine up, serve the agent, bring the machine down.

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::{AsRawFd, IntoRawFd};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use sinew_proto::Secret;
use sinew_support::logging::Logging;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::exec::Launcher;
use crate::reaper::ProcessTable;
use crate::server::{self, Agent};
use crate::services::Services;
use crate::{cmdline, facts, kernel_modules, mounts, network, shutdown};

/// The agent secret as QEMU's fw_cfg hands it over: the lab's way, because it never crosses
/// a network (a network-booted guest's initramfs comes from a boot server and is shared).
const AGENT_KEY_FW_CFG: &str = "/sys/firmware/qemu_fw_cfg/by_name/opt/sinew/agent.key/raw";
/// The agent secret in the initramfs, for machines without fw_cfg; never on the command line.
const AGENT_KEY: &str = "/etc/sinew/agent.key";
/// Where service logs go.
const LOG_DIR: &str = "/var/log/sinew";
/// The line the host waits for on the console.
const READY_LINE: &str = "sinew-init: ready";

/// Runs as PID 1. Never returns: PID 1 exiting panics the kernel, so every failure ends in a
/// power-off instead.
pub fn run() -> ! {
    std::panic::set_hook(Box::new(|info| {
        eprintln!("sinew-init: fatal: {info}");
        shutdown::power_off_now();
    }));
    match boot() {
        Err(error) => {
            // Printed directly as well: logging may not be up yet.
            eprintln!(
                "sinew-init: fatal: {}",
                sinew_support::error_chain(error.as_ref())
            );
            shutdown::power_off_now()
        }
        Ok(never) => match never {},
    }
}

fn boot() -> anyhow::Result<Infallible> {
    let started = Instant::now();
    // From now on Ctrl-Alt-Del sends us SIGINT instead of rebooting on the spot.
    let cad = nix::sys::reboot::set_cad_enabled(false);
    let mount_warnings = mounts::mount_all().context("mounting file systems")?;
    ensure_console_stdio();
    let cmdline = std::fs::read_to_string("/proc/cmdline").context("reading /proc/cmdline")?;
    let (params, cmdline_errors) = cmdline::parse(&cmdline);
    Logging::new("RUST_LOG", params.log_filter.as_deref().unwrap_or("info"))
        .for_console()
        .init();
    if let Err(error) = cad {
        tracing::warn!(%error, "cannot disable Ctrl-Alt-Del reboot");
    }
    for warning in mount_warnings {
        tracing::warn!("{warning}");
    }
    for error in cmdline_errors {
        tracing::warn!("ignoring kernel command line: {error}");
    }
    if let Some(hostname) = &params.hostname {
        if let Err(error) = nix::unistd::sethostname(hostname) {
            tracing::warn!(%hostname, %error, "cannot set host name");
        }
    }
    let uname = nix::sys::utsname::uname().context("calling uname")?;
    let release = uname.release().to_string_lossy().into_owned();
    match kernel_modules::load_listed(Path::new(kernel_modules::MODULE_LIST), &release) {
        Ok(report) => {
            for failure in &report.failures {
                tracing::error!("{failure}");
            }
            tracing::info!(
                loaded = report.loaded,
                present = report.present,
                failed = report.failures.len(),
                "kernel modules"
            );
        }
        Err(error) => tracing::error!("{error}"),
    }
    let key = [AGENT_KEY_FW_CFG, AGENT_KEY]
        .into_iter()
        .find(|path| Path::new(path).exists())
        .unwrap_or(AGENT_KEY);
    let secret = Secret::load(Path::new(key))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(params, secret, started))
}

async fn serve(
    params: cmdline::BootParams,
    secret: Secret,
    started: Instant,
) -> anyhow::Result<Infallible> {
    let processes = ProcessTable::get()?;
    for failure in network::bring_up(&params.interfaces).await {
        tracing::error!("{failure}");
    }
    let launcher = Launcher::new(processes.clone(), facts::machine()?);
    let services = Services::new(launcher.clone(), PathBuf::from(LOG_DIR));
    let (trigger, reasons) = mpsc::channel(4);
    shutdown::watch_signals(trigger.clone())?;
    shutdown::watch_power_button(trigger.clone());
    let addr = SocketAddr::from((Ipv4Addr::UNSPECIFIED, params.agent_port));
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening on {addr}"))?;
    let boot_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    tracing::info!(%addr, boot_ms, "agent listening");
    eprintln!("{READY_LINE}");
    let agent = Agent {
        secret,
        launcher,
        services: services.clone(),
        shutdown: trigger,
    };
    server::serve_until_shutdown(listener, agent, reasons).await;
    Ok(shutdown::power_off(&services, &processes).await)
}

/// The kernel opens /dev/console as PID 1's stdin, stdout and stderr only if the image has
/// that node; without it, open it now that devtmpfs is mounted, so logs reach the console.
fn ensure_console_stdio() {
    if Path::new("/proc/self/fd/2").exists() {
        return;
    }
    if let Ok(console) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/console")
    {
        // Nothing can report a failure here: there is nowhere to write it yet.
        let _ = nix::unistd::dup2_stdin(&console);
        let _ = nix::unistd::dup2_stdout(&console);
        let _ = nix::unistd::dup2_stderr(&console);
        if console.as_raw_fd() <= 2 {
            // With 0-2 closed, the console itself landed on one of them: keep it open.
            let _ = console.into_raw_fd();
        }
    }
}
