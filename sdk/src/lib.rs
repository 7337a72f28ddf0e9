//! sinew: infrastructure as small compiled programs.
//!
//! A playbook is a plain `main()` that starts a [`Run`], boots a [`Lab`] of QEMU guests
//! (x86_64 and aarch64), cross-compiles static binaries with [`build`], ships and runs
//! them on each [`Host`], and ends the run with a summary:
//!
//! ```no_run
//! use sinew::{Arch, Build, LabSpec, MachineSpec, Run};
//!
//! fn main() -> anyhow::Result<()> {
//!     let run = Run::from_args("hello")?;
//!     let probe = run.build(&Build::bins(&["sinew-probe"]))?;
//!     let lab = run.boot(
//!         &LabSpec::new("hello")
//!             .machine(MachineSpec::new("amd", Arch::X86_64))
//!             .machine(MachineSpec::new("arm", Arch::Aarch64)),
//!     )?;
//!     run.each(lab.hosts(), "install probe", |host| {
//!         host.install(probe.get("sinew-probe", host.arch())?, "/usr/bin/sinew-probe")
//!             .map_err(sinew::BoxError::from)
//!     })?;
//!     let outputs = run.each(lab.hosts(), "run probe", |host| host.exec(&["/usr/bin/sinew-probe"]))?;
//!     for (host, out) in lab.hosts().iter().zip(&outputs) {
//!         run.say(format!("{host}: {}", out.stdout_text()));
//!     }
//!     run.shutdown(lab)?;
//!     run.finish()?;
//!     Ok(())
//! }
//! ```
//!
//! Every task prints a line: a spinner while it runs (with its [`Progress`] for long
//! steps), then `ok` (nothing needed doing), `changed`, `failed` or `plan` (with
//! `--dry-run`) and its duration. Tasks over several
//! hosts ([`Run::each`]) run in parallel. Libraries return typed errors; a playbook's
//! `main` uses `anyhow`.

pub mod boot;
pub mod build;
pub mod deploy;
pub mod host;
mod http1;
pub mod image;
mod janitor;
pub mod kv;
pub mod lab;
pub mod load;
pub mod machine_image;
mod outcome;
pub mod overlay;
pub mod paths;
pub mod present;
mod report;
mod run;
pub mod sched;
pub mod setup;
pub mod ssh;
mod stored;
pub mod template;

pub use build::{Artifact, Artifacts, Build};
pub use host::{AgentStarted, Exec, Host, HostError, Put};
pub use lab::{BootFrom, Lab, LabSpec, MachineSpec};
pub use machine_image::{MachineImage, MachineImageSpec};
pub use outcome::{BoxError, Outcome, Status, TaskFailed};
pub use report::{Progress, Tally};
pub use run::{Options, Password, Run, RunError, RunFailed};
pub use sinew_proto::termination::Termination;
pub use sinew_proto::{
    ExitStatus, Facts, OutputStream, RestartPolicy, ServiceChange, ServiceSpec, ServiceState,
    ServiceStatus,
};
pub use sinew_vm::Arch;
