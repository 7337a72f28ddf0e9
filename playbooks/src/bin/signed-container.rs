//! `signed-container`: packages a cross-compiled program as a signed multi-arch OCI image,
//! trusts the signing key on a guest of each architecture, and runs the image there under
//! sinew-run, which verifies the signature before it renders anything. Then a copy tampered
//! with in transit is refused.
//!
//! `cargo run --bin signed-container [-- --dry-run | -v]`

use anyhow::{bail, Context};
use sinew::image::{
    host_archive_path, tampered_copy, ImageSpec, SignedImage, HOST_IMAGE_DIR, SINEW_RUN_PATH,
};
use sinew::{Arch, Build, Exec, Host, LabSpec, MachineSpec, Run, Status};

/// The image's name; the signing key is trusted for its repository, `sinew.example/demo/probe`.
const IMAGE: &str = "sinew.example/demo/probe:1";

fn main() -> anyhow::Result<()> {
    let run = Run::from_args("signed-container")?;
    let bins = run.build(&Build::bins(&["sinew-run", "sinew-probe"]))?;
    let key = run.signing_key("sinew playbooks <playbooks@sinew.example>")?;
    let image = run.build_image(&ImageSpec::new(IMAGE, "sinew-probe"), &bins, &key)?;
    let lab = run.boot(
        &LabSpec::new("signed-container")
            .machine(MachineSpec::new("amd", Arch::X86_64))
            .machine(MachineSpec::new("arm", Arch::Aarch64)),
    )?;
    run.install_image(lab.hosts(), &image, &key, &bins)?;
    // A copy tampered with in transit reaches one guest first: it must be refused before
    // anything of it is stored.
    if !run.is_dry_run() {
        refuse_tampered(&run, &image, &lab.hosts()[0])?;
    }
    let archive = host_archive_path(&image);
    run.each(lab.hosts(), "fetch and verify the image", |host| {
        host.exec(&[SINEW_RUN_PATH, "fetch", &archive])
    })?;
    let outputs = run.each(lab.hosts(), "run the signed image", |host| {
        host.exec(&[
            SINEW_RUN_PATH,
            "run",
            "--hostname",
            "probe",
            "--memory",
            "64M",
            "--pids",
            "32",
            IMAGE,
        ])
    })?;
    if !run.is_dry_run() {
        for (host, output) in lab.hosts().iter().zip(&outputs) {
            run.say(format!("{host}: {}", output.stdout_text().trim()));
        }
        run.each(lab.hosts(), "limits went through", |host| {
            limits_hierarchy(&host.exec(&[SINEW_RUN_PATH, "list", "--format", "json"])?)
        })?;
    }
    run.shutdown(lab)?;
    run.finish()?;
    Ok(())
}

/// Ships a copy of `image` with every layer tampered with to `victim`, which must refuse it.
fn refuse_tampered(run: &Run, image: &SignedImage, victim: &Host) -> anyhow::Result<()> {
    let tampered = run.task("tamper with a copy of the image", || {
        let dest = image.archive.with_file_name("tampered.tar");
        tampered_copy(image, &dest).map(|_| Changed(dest))
    })?;
    let on_host = format!("{HOST_IMAGE_DIR}/tampered.tar");
    run.task(&format!("the tampered copy is refused [{victim}]"), || {
        victim.put_file(&tampered.0, &on_host, 0o644)?;
        victim.put_file(
            &tampered.0.with_extension("tar.asc"),
            &format!("{on_host}.asc"),
            0o644,
        )?;
        refused(&victim.try_exec(&[SINEW_RUN_PATH, "fetch", &on_host])?)
    })?;
    Ok(())
}

/// The error sinew-run gave for the tampered copy; an error when it accepted it.
fn refused(fetch: &Exec) -> anyhow::Result<Refused> {
    if fetch.success() {
        bail!("sinew-run accepted a tampered image");
    }
    let stderr = String::from_utf8_lossy(&fetch.stderr).into_owned();
    stderr
        .lines()
        .rev()
        .find(|line| !line.trim().is_empty())
        .map(|line| Refused(line.trim().to_owned()))
        .context("sinew-run refused the image without saying why")
}

/// A file the playbook wrote.
#[derive(Debug)]
struct Changed(std::path::PathBuf);

impl sinew::Outcome for Changed {
    fn status(&self) -> Status {
        Status::Changed
    }

    fn detail(&self) -> Option<String> {
        Some(self.0.display().to_string())
    }
}

/// A host refused what it should refuse: the task is `ok`, its line shows why.
#[derive(Debug)]
struct Refused(String);

impl sinew::Outcome for Refused {
    fn status(&self) -> Status {
        Status::Ok
    }

    fn detail(&self) -> Option<String> {
        Some(format!("refused: {}", self.0))
    }
}

/// The cgroup hierarchy the last container's limits went through, from `sinew-run list`.
fn limits_hierarchy(list: &Exec) -> anyhow::Result<Hierarchy> {
    let containers: serde_json::Value = serde_json::from_str(&list.stdout_text())?;
    let last = containers
        .as_array()
        .and_then(|all| all.iter().max_by_key(|c| c["started_at"].as_u64()))
        .context("sinew-run lists no container")?;
    let cgroup = last["cgroup"].as_str().unwrap_or_default();
    if cgroup == "none" || cgroup.is_empty() {
        bail!("the container ran without its limits: {last}");
    }
    Ok(Hierarchy(cgroup.to_owned()))
}

/// Which cgroup hierarchy enforced a container's limits.
#[derive(Debug)]
struct Hierarchy(String);

impl sinew::Outcome for Hierarchy {
    fn status(&self) -> Status {
        Status::Ok
    }

    fn detail(&self) -> Option<String> {
        Some(format!("cgroup {}: memory 64M, pids 32", self.0))
    }
}
