//! `sinew present-lab NAME=ARCH...` (hidden): keeps a deck's lab for `sinew present`. It
//! boots the machines, then runs the commands the server sends on stdin (JSON lines,
//! `sinew::present::run::lab`), each on a connection of its own, with their output
//! streamed back on stdout. When stdin closes it shuts the lab down and exits.

use std::io::{BufRead, Write};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use sinew::present::run::lab::{guest_argv, stop_argv, LabEvent, LabRequest};
use sinew::{Arch, LabSpec, MachineSpec, Options, OutputStream, Run, Termination};

/// Keep a deck's lab for `sinew present` (started by it; not for use by hand).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The machines, as NAME=ARCH.
    #[arg(required = true)]
    machines: Vec<String>,
}

/// Where events go: stdout, one JSON line each, from any thread.
#[derive(Debug, Clone)]
struct Events(Arc<Mutex<std::io::Stdout>>);

impl Events {
    fn send(&self, event: &LabEvent) {
        let Ok(line) = serde_json::to_string(event) else {
            return;
        };
        let mut out = self.0.lock().unwrap_or_else(|e| e.into_inner());
        // A server that is gone stops reading; stdin closing ends the keeper then.
        let _ = writeln!(out, "{line}").and_then(|()| out.flush());
    }
}

pub fn main(args: Args) -> Result<ExitCode> {
    let events = Events(Arc::new(Mutex::new(std::io::stdout())));
    let run = Run::with_options("present-lab", Options::default())?;
    let mut spec = LabSpec::new("present");
    for machine in &args.machines {
        let (name, arch) = machine
            .split_once('=')
            .with_context(|| format!("bad machine {machine:?}: expected NAME=ARCH"))?;
        let arch: Arch = arch
            .parse()
            .with_context(|| format!("bad machine {machine:?}"))?;
        spec = spec.machine(MachineSpec::new(name, arch));
    }
    let lab = match run.boot(&spec) {
        Ok(lab) => lab,
        Err(err) => {
            events.send(&LabEvent::Failed {
                message: format!("{err:#}"),
            });
            return Ok(ExitCode::FAILURE);
        }
    };
    if let Err(err) = give_shells(&run, &lab) {
        events.send(&LabEvent::Failed {
            message: format!("{err:#}"),
        });
        run.shutdown(lab)?;
        return Ok(ExitCode::FAILURE);
    }
    events.send(&LabEvent::Ready);
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        match serde_json::from_str::<LabRequest>(&line) {
            Ok(LabRequest::Run { id, guest, command }) => match lab.host(&guest) {
                Some(host) => {
                    let (host, events) = (host.clone(), events.clone());
                    std::thread::spawn(move || run_command(&host, id, &command, &events));
                }
                None => events.send(&LabEvent::Error {
                    id,
                    message: format!("the lab has no guest {guest}"),
                }),
            },
            Ok(LabRequest::Stop { id, guest }) => {
                let argv = stop_argv(id);
                let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
                if let Some(host) = lab.host(&guest) {
                    // A run that ended meanwhile has no group left to signal.
                    if let Err(err) = host.exec(&argv) {
                        tracing::debug!(id, %guest, %err, "nothing to stop");
                    }
                }
            }
            Err(err) => tracing::warn!(%line, %err, "not a lab request"),
        }
    }
    run.shutdown(lab)?;
    run.finish()?;
    Ok(ExitCode::SUCCESS)
}

/// Installs Debian's static busybox on every guest, with its applets linked in `/bin`: a
/// guest block is a shell command, and a guest's initramfs holds only the agent.
fn give_shells(run: &Run, lab: &sinew::Lab) -> Result<()> {
    run.each(
        lab.hosts(),
        "install busybox (a shell for guest blocks)",
        |host| {
            let busybox = busybox(run, host.arch())?;
            host.put_file(&busybox, "/bin/busybox", 0o755)?;
            host.exec(&["/bin/busybox", "--install", "-s", "/bin"])?;
            anyhow::Ok(())
        },
    )?;
    Ok(())
}

/// A static busybox for `arch`: Debian's `busybox-static`, fetched once into the cache.
fn busybox(run: &Run, arch: Arch) -> Result<std::path::PathBuf> {
    let dest = run.paths().cache.join("busybox").join(arch.debian_arch());
    let root = sinew_vm::deb::fetch("busybox-static", arch, &dest)
        .with_context(|| format!("fetching busybox-static for {arch}"))?;
    let binary = root.join("bin/busybox");
    let info = sinew_vm::elf::inspect_file(&binary)
        .with_context(|| format!("reading {}", binary.display()))?;
    anyhow::ensure!(
        info.arch == arch && info.is_static,
        "{} is not a static {arch} busybox",
        binary.display()
    );
    Ok(binary)
}

/// Runs one command on `host`, sending its output and how it ended.
fn run_command(host: &sinew::Host, id: u64, command: &str, events: &Events) {
    let argv = guest_argv(id, command);
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let ended = host.exec_streamed(&argv, |stream, bytes| {
        events.send(&LabEvent::Output {
            id,
            stream: match stream {
                OutputStream::Stdout => "stdout",
                OutputStream::Stderr => "stderr",
            }
            .into(),
            text: String::from_utf8_lossy(bytes).into_owned(),
        });
    });
    events.send(&match ended {
        Ok(status) => LabEvent::Exit {
            id,
            code: status.as_ref().and_then(sinew::ExitStatus::code),
            signal: status.as_ref().and_then(|s| match s.termination {
                Termination::Signaled { signal } => Some(signal),
                _ => None,
            }),
        },
        Err(err) => LabEvent::Error {
            id,
            message: format!("{err}"),
        },
    });
}
