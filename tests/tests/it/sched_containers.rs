//! Container units on namespace hosts (`SchedBed`): the agent has sinew-run verify a signed
//! OCI archive and run it on the machine's network with the unit's limits; an image signed
//! by a key the machine does not trust fails with sinew-run's reason.

use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, TcpStream};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use sinew_proto::Sha256Digest;
use sinew_sched::unit::{Build, Exec, ExecKind, HealthCheck, Probe, Resources, UnitSpec};
use sinew_sched::InstanceId;
use sinew_tests::sched_bed::SchedBed;
use sinew_tests::underlay::block_on;

const PATIENCE: Duration = Duration::from_secs(30);
const PORT: u16 = 7300;
const BUSYBOX: &str = "/bin/busybox";
/// A CGI script: the container's environment, as busybox httpd runs it.
const ENV_CGI: &str = "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\n'\nenv\n";

/// Runs `command` and returns its stdout; fails with its stderr.
fn output(command: &mut Command) -> Result<String> {
    let out = command
        .output()
        .with_context(|| format!("running {command:?}"))?;
    ensure!(
        out.status.success(),
        "{command:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}

/// A key made with `sinew-run key generate` in `dir`: the secret key and its public export.
fn key(bed: &SchedBed, dir: &Path, name: &str) -> Result<(PathBuf, PathBuf)> {
    let secret = dir.join(format!("{name}.pgp"));
    let public = dir.join(format!("{name}.pub"));
    output(
        bed.sinew_run(0)
            .args(["key", "generate", "--userid"])
            .arg(format!("{name} <{name}@sinew.test>"))
            .arg("--out")
            .arg(&secret),
    )?;
    output(
        bed.sinew_run(0)
            .args(["key", "export", "--key"])
            .arg(&secret)
            .arg("--out")
            .arg(&public),
    )?;
    Ok((secret, public))
}

/// `name`, an image of the host's static busybox serving `www` (with a CGI script that
/// prints its environment) by `httpd` on [`PORT`], signed with `secret` and packed as an
/// OCI archive with its signature beside it (`.asc`), as `Run::install_image` ships one.
fn busybox_httpd_archive(bed: &SchedBed, dir: &Path, name: &str, secret: &Path) -> Result<PathBuf> {
    let slug = name.replace(['/', ':', '.'], "_");
    let www = dir.join(format!("{slug}-www"));
    std::fs::create_dir_all(&www)?;
    std::fs::write(www.join("index.html"), format!("served by {name}\n"))?;
    std::fs::write(www.join("env"), ENV_CGI)?;
    std::fs::set_permissions(www.join("env"), std::fs::Permissions::from_mode(0o755))?;
    let layout = dir.join(format!("{slug}.layout"));
    let arch = format!("{}={BUSYBOX}", std::env::consts::ARCH);
    output(
        bed.sinew_run(0)
            .args(["image", "build", "--name", name, "--arch", &arch])
            .args(["--file", &format!("{BUSYBOX}:/bin/sh")])
            .arg("--file")
            .arg(format!(
                "{}:/www/index.html",
                www.join("index.html").display()
            ))
            .arg("--file")
            .arg(format!("{}:/www/cgi-bin/env", www.join("env").display()))
            .args(["--entrypoint", BUSYBOX, "--cmd", "httpd", "--cmd=-f"])
            .args([
                "--cmd=-p",
                "--cmd",
                &PORT.to_string(),
                "--cmd=-h",
                "--cmd",
                "/www",
            ])
            .arg("--out")
            .arg(&layout)
            .arg("--sign-key")
            .arg(secret),
    )?;
    let archive = dir.join(format!("{slug}.tar"));
    output(
        Command::new("tar")
            .arg("-C")
            .arg(&layout)
            .arg("-cf")
            .arg(&archive)
            .arg("."),
    )?;
    std::fs::copy(
        dir.join(format!("{slug}.layout.asc")),
        dir.join(format!("{slug}.tar.asc")),
    )
    .context("copying the layout's signature beside the archive")?;
    Ok(archive)
}

/// A container unit running `archive`, HTTP-checked on `/index.html`.
fn container_unit(name: &str, archive: &Path) -> Result<UnitSpec> {
    let exec = Exec {
        kind: ExecKind::Container,
        builds: vec![Build {
            arch: std::env::consts::ARCH.to_owned(),
            path: archive.display().to_string(),
            sha256: Sha256Digest::of_file(archive)?.1.to_hex(),
        }],
    };
    let mut unit = UnitSpec::new(name, exec);
    unit.health = Some(HealthCheck {
        interval_ms: 100,
        ..HealthCheck::new(Probe::Http {
            port: PORT,
            path: "/index.html".to_owned(),
        })
    });
    Ok(unit)
}

/// `GET path` on `address`:[`PORT`]; the whole answer.
fn http_get(address: Ipv4Addr, path: &str) -> Result<String> {
    let mut stream = TcpStream::connect((address, PORT))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n")?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    Ok(answer)
}

#[test]
fn a_container_unit_runs_its_verified_image_with_its_limits_and_an_untrusted_one_fails(
) -> Result<()> {
    let mut bed = SchedBed::new(1, false)?;
    bed.start(0, &[])?;
    let dir = bed.dir().join("images");
    std::fs::create_dir_all(&dir)?;
    let (trusted, trusted_pub) = key(&bed, &dir, "release")?;
    let (stranger, _) = key(&bed, &dir, "stranger")?;
    output(
        bed.sinew_run(0)
            .args(["trust", "--prefix", "sinew.test/web"])
            .arg(&trusted_pub),
    )?;
    let good = busybox_httpd_archive(&bed, &dir, "sinew.test/web:1", &trusted)?;
    let forged = busybox_httpd_archive(&bed, &dir, "sinew.test/web:2", &stranger)?;

    let mut web = container_unit("web", &good)?;
    web.env.insert("GREETING".to_owned(), "hello".to_owned());
    web.resources = Resources {
        memory_mb: 64,
        cpu_millis: 250,
    };
    bed.launch(&web)?;
    let instance = InstanceId::replica("web", 0);
    let snapshot = bed.wait_for("web@0 healthy (HTTP)", PATIENCE, |s| s.healthy(&instance))?;
    let token = snapshot.placed[&instance].1;
    let address = bed.address(0);
    let page = http_get(address, "/index.html")?;
    ensure!(
        page.starts_with("HTTP/1.1 200 OK") && page.ends_with("served by sinew.test/web:1\n"),
        "{page}"
    );
    let env = http_get(address, "/cgi-bin/env")?;
    for line in [
        "GREETING=hello".to_owned(),
        format!("SINEW_FENCING_TOKEN={token}"),
        "SINEW_INSTANCE=web@0".to_owned(),
        "SINEW_MACHINE=h0".to_owned(),
    ] {
        ensure!(env.lines().any(|l| l == line), "{line} not in:\n{env}");
    }
    let containers: serde_json::Value = serde_json::from_str(&output(
        bed.sinew_run(0).args(["list", "--format", "json"]),
    )?)?;
    let [container] = containers.as_array().context("a list")?.as_slice() else {
        anyhow::bail!("one container expected: {containers:#}");
    };
    assert_eq!(container["image"], "sinew.test/web:1");
    assert_eq!(container["status"], "running");
    let id = container["id"].as_str().context("an id")?;
    let (memory, cpu) = match container["cgroup"].as_str() {
        Some("v1") => (
            format!("/sys/fs/cgroup/memory/sinew-run/{id}/memory.limit_in_bytes"),
            format!("/sys/fs/cgroup/cpu/sinew-run/{id}/cpu.cfs_quota_us"),
        ),
        _ => (
            format!("/sys/fs/cgroup/sinew-run/{id}/memory.max"),
            format!("/sys/fs/cgroup/sinew-run/{id}/cpu.max"),
        ),
    };
    assert_eq!(std::fs::read_to_string(&memory)?.trim(), "67108864");
    ensure!(
        std::fs::read_to_string(&cpu)?.starts_with("25000"),
        "{cpu}: a quarter of a CPU"
    );

    // Stopping the unit stops the container: sinew-run records its end, the port closes.
    let client = bed.client()?;
    block_on(client.stop("web"))??;
    bed.wait_for("web off its machine", PATIENCE, |s| s.states.is_empty())?;
    let status: serde_json::Value = serde_json::from_str(&output(
        bed.sinew_run(0).args(["status", id, "--format", "json"]),
    )?)?;
    assert_eq!(status["status"], "exited", "{status:#}");
    ensure!(
        TcpStream::connect((address, PORT)).is_err(),
        "port {PORT} still open"
    );

    // An image signed by a key the machine does not trust never runs.
    bed.launch(&container_unit("forged", &forged)?)?;
    let forged_instance = InstanceId::replica("forged", 0);
    let failed = bed.wait_for("forged@0 failed", PATIENCE, |s| {
        s.failed.contains_key(&forged_instance)
    })?;
    let reason = &failed.failed[&forged_instance].reason;
    ensure!(
        reason.starts_with(&format!("sinew-run refused {}: ", forged.display())),
        "{reason}"
    );
    Ok(())
}
