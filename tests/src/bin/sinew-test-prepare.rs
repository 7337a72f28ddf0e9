//! Prepares this machine for the test suite as its first guest test would (QEMU, the musl
//! targets, the kernels, the test tools, the guest binaries for both architectures), with
//! the tasks shown: CI runs it as a phase of its own, so that its time shows apart from
//! the tests', which then find everything cached.

fn main() -> anyhow::Result<()> {
    let run = sinew::Run::from_args("prepare")?;
    sinew_tests::prepare(&run)?;
    run.finish()?;
    Ok(())
}
