//! A playbook that abandons its lab, for the leftover tests: it boots one guest, prints
//! `ready`, then either panics (`panic`) or waits to be interrupted (`wait`).

use std::time::Duration;

use sinew::{Arch, LabSpec, MachineSpec, Run};

fn main() -> anyhow::Result<()> {
    let mode = std::env::args().nth(1).unwrap_or_default();
    let run = Run::with_options("abandon", sinew::Options::default())?;
    // A lab of its own per mode: the leftover tests run both at once, and a lab's console
    // logs are named after the lab and its machines.
    let name = format!("abandon-{mode}");
    let lab = run.boot(&LabSpec::new(&name).machine(MachineSpec::new("left", Arch::X86_64)))?;
    println!("ready {:?}", lab.hosts()[0].agent_address());
    match mode.as_str() {
        "panic" => panic!("the playbook panics with its lab running"),
        "wait" => std::thread::sleep(Duration::from_secs(600)),
        other => anyhow::bail!("mode must be `panic` or `wait`, not {other:?}"),
    }
    Ok(())
}
