//! `two-arch`: cross-compile a static program for x86_64 and aarch64, boot one guest of
//! each architecture, ship each its own build, run it, and show what it reports.
//!
//! `cargo run --bin two-arch [-- --dry-run | -v]`

use anyhow::Context;
use sinew::{Arch, Build, LabSpec, MachineSpec, Run};

const PROBE: &str = "sinew-probe";
const INSTALL_AT: &str = "/usr/local/bin/sinew-probe";

fn main() -> anyhow::Result<()> {
    let run = Run::from_args("two-arch")?;
    let probes = run.build(&Build::bins(&[PROBE]))?;
    let lab = run.boot(
        &LabSpec::new("two-arch")
            .machine(MachineSpec::new("amd", Arch::X86_64))
            .machine(MachineSpec::new("arm", Arch::Aarch64)),
    )?;

    run.each(lab.hosts(), "install sinew-probe", |host| {
        let probe = probes.get(PROBE, host.arch())?;
        Ok::<_, anyhow::Error>(host.install(probe, INSTALL_AT)?)
    })?;
    let reports = run.each(lab.hosts(), "run sinew-probe", |host| {
        host.exec(&[INSTALL_AT])
    })?;
    // A second install finds the same digest on the guest and sends nothing.
    run.each(lab.hosts(), "install sinew-probe again", |host| {
        let probe = probes.get(PROBE, host.arch())?;
        Ok::<_, anyhow::Error>(host.install(probe, INSTALL_AT)?)
    })?;

    if !run.is_dry_run() {
        for (host, report) in lab.hosts().iter().zip(&reports) {
            let text = report.stdout_text();
            let fields: serde_json::Value =
                serde_json::from_str(&text).with_context(|| format!("{host} printed {text:?}"))?;
            run.say(format!(
                "{host:>4}: machine {}, kernel {}, built for {}",
                fields["machine"].as_str().unwrap_or("?"),
                fields["kernel"].as_str().unwrap_or("?"),
                fields["compiled_for"].as_str().unwrap_or("?"),
            ));
        }
    }
    run.shutdown(lab)?;
    run.finish()?;
    Ok(())
}
