//! Guests booted by the SDK: the agent's API end to end, on both architectures.

use std::time::Duration;

use sha2::{Digest, Sha256};
use sinew::{
    Arch, Build, HostError, Lab, LabSpec, MachineSpec, Run, ServiceSpec, ServiceState, Status,
};
use sinew_proto::{AgentClient, ClientError, Secret};
use sinew_tests::{busybox, eventually, prepared, run, GUEST_BINS};

fn boot(run: &Run, name: &str, machines: &[(&str, Arch)]) -> Lab {
    prepared();
    let mut spec = LabSpec::new(name);
    for (machine, arch) in machines {
        spec = spec.machine(MachineSpec::new(machine, *arch));
    }
    run.boot(&spec).expect("lab boots")
}

#[test]
fn each_arch_runs_its_own_cross_compiled_probe() {
    let run = run("it-probe");
    let lab = boot(
        &run,
        "it-probe",
        &[("amd", Arch::X86_64), ("arm", Arch::Aarch64)],
    );
    let probes = run
        .build(&Build::bins(&GUEST_BINS))
        .expect("guest builds are cached");
    for host in lab.hosts() {
        let probe = probes
            .get("sinew-probe", host.arch())
            .expect("built for both");
        host.install(probe, "/usr/bin/sinew-probe")
            .expect("install");
        let report: serde_json::Value = serde_json::from_str(
            &host
                .exec(&["/usr/bin/sinew-probe"])
                .expect("probe runs")
                .stdout_text(),
        )
        .expect("probe prints JSON");
        let facts = host.facts().expect("facts");
        assert_eq!(report["machine"], host.arch().uname_machine(), "{host}");
        assert_eq!(facts.arch, host.arch().uname_machine(), "{host}");
        assert_eq!(report["kernel"], facts.kernel_release.as_str(), "{host}");
        assert!(
            facts.kernel_release.contains(host.arch().debian_arch()),
            "{host}: {}",
            facts.kernel_release
        );
        assert_eq!(facts.hostname, host.name());
    }
    run.shutdown(lab).expect("graceful shutdown");
}

#[test]
fn put_get_round_trip_and_idempotent_reput() {
    let run = run("it-files");
    let lab = boot(&run, "it-files", &[("files", Arch::X86_64)]);
    let host = &lab.hosts()[0];
    let data: Vec<u8> = (0..3_000_000u32)
        // The low byte of a multiplicative hash: a varied, reproducible pattern.
        .map(|i| (i.wrapping_mul(2654435761) >> 13).to_le_bytes()[0])
        .collect();
    let first = host.put(&data, "/srv/data/blob", 0o640).expect("put");
    assert!(first.changed());
    assert_eq!(first.sha256, hex::encode(Sha256::digest(&data)));
    assert_eq!(host.get("/srv/data/blob").expect("get"), data);
    let again = host
        .put(&data, "/srv/data/blob", 0o640)
        .expect("second put");
    assert_eq!(
        sinew::Outcome::status(&again),
        Status::Ok,
        "same digest and mode must not be re-sent"
    );
    let remode = host
        .put(&data, "/srv/data/blob", 0o600)
        .expect("put with another mode");
    assert!(remode.changed());
    host.put_file(
        &busybox(Arch::X86_64).expect("busybox"),
        "/bin/busybox",
        0o755,
    )
    .expect("ship busybox");
    let stat = host
        .exec(&["/bin/busybox", "stat", "-c", "%a %s", "/srv/data/blob"])
        .expect("stat");
    assert_eq!(stat.stdout_text(), format!("600 {}", data.len()));
}

#[test]
fn agent_refuses_wrong_secret_and_garbage_then_keeps_serving() {
    let run = run("it-auth");
    let lab = boot(&run, "it-auth", &[("auth", Arch::X86_64)]);
    let host = &lab.hosts()[0];
    let addr = host.agent_address().expect("a guest has an agent");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let wrong = rt.block_on(AgentClient::connect(
        addr,
        &Secret::generate().expect("a secret"),
        Duration::from_secs(10),
    ));
    match wrong {
        Err(err) => assert!(
            err.is_refused_by_auth(),
            "wrong secret must be refused as such: {err}"
        ),
        Ok(_) => panic!("a client with the wrong secret was accepted"),
    }
    rt.block_on(async {
        use tokio::io::AsyncWriteExt;
        let mut raw = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let _ = raw.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
        let _ = raw.write_all(&[0xff; 64]).await;
    });
    let facts = host
        .facts()
        .expect("the agent still serves the right secret");
    assert_eq!(facts.hostname, "auth");
}

#[test]
fn wrong_arch_binaries_are_refused_with_clear_errors() {
    let run = run("it-arch");
    let lab = boot(&run, "it-arch", &[("wrong", Arch::X86_64)]);
    let host = &lab.hosts()[0];
    let probes = run.build(&Build::bins(&GUEST_BINS)).expect("cached builds");
    let arm = probes.get("sinew-probe", Arch::Aarch64).expect("arm probe");
    let err = host
        .install(arm, "/usr/bin/sinew-probe")
        .expect_err("arm binary on x86 guest");
    assert!(matches!(err, HostError::WrongArch { .. }), "{err}");
    assert!(
        err.to_string().contains("aarch64") && err.to_string().contains("x86_64"),
        "{err}"
    );
    // Sent anyway as plain bytes, the agent names the problem when asked to run it.
    let bytes = std::fs::read(&arm.path).expect("read artifact");
    host.put(&bytes, "/usr/bin/arm-probe", 0o755)
        .expect("plain put");
    let err = host
        .exec(&["/usr/bin/arm-probe"])
        .expect_err("cannot execute");
    let text = err.to_string();
    assert!(
        text.contains("/usr/bin/arm-probe") && text.contains("x86_64"),
        "{text}"
    );
}

#[test]
fn guests_reach_each_other_on_the_data_plane() {
    let run = run("it-net");
    let lab = boot(
        &run,
        "it-net",
        &[("amd", Arch::X86_64), ("arm", Arch::Aarch64)],
    );
    for host in lab.hosts() {
        host.put_file(
            &busybox(host.arch()).expect("busybox"),
            "/bin/busybox",
            0o755,
        )
        .expect("ship busybox");
    }
    let [amd, arm] = lab.hosts() else {
        panic!("two hosts")
    };
    for (from, to) in [(amd, arm), (arm, amd)] {
        let target = to.data_ip().to_string();
        let ping = from.exec(&["/bin/busybox", "ping", "-c", "2", "-W", "5", &target]);
        let ping = ping.unwrap_or_else(|e| panic!("{from} cannot ping {to} at {target}: {e}"));
        assert!(
            ping.stdout_text().contains("2 packets received"),
            "{}",
            ping.stdout_text()
        );
    }
}

#[test]
fn services_are_supervised_by_pid_1_and_errors_name_what_went_wrong() {
    let run = run("it-services");
    let lab = boot(&run, "it-services", &[("svc", Arch::Aarch64)]);
    let host = &lab.hosts()[0];
    host.put_file(
        &busybox(Arch::Aarch64).expect("busybox"),
        "/bin/busybox",
        0o755,
    )
    .expect("ship busybox");

    let flaky = ServiceSpec::new("flaky", ["/bin/busybox", "sh", "-c", "echo tick; exit 3"]);
    assert!(host.start_service(&flaky).expect("start").changed);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        let status = host.service_status("flaky").expect("status");
        if status.restarts >= 2 || std::time::Instant::now() > deadline {
            break status;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        status.restarts >= 2,
        "a failing service is restarted with back-off: {status:?}"
    );
    let logs = host.service_logs("flaky", 10).expect("logs");
    assert!(
        logs.iter().filter(|l| l.contains("tick")).count() >= 2,
        "{logs:?}"
    );

    let steady = ServiceSpec::new("steady", ["/bin/busybox", "sleep", "600"]);
    host.start_service(&steady).expect("start steady");
    let again = host.start_service(&steady).expect("start again");
    assert!(!again.changed, "same spec, already running");
    let running = host.service_status("steady").expect("status").state;
    assert!(
        matches!(running, ServiceState::Running { .. }),
        "{running:?}"
    );
    assert!(host.stop_service("steady").expect("stop").changed);
    let stopped = host.service_status("steady").expect("status").state;
    assert_eq!(stopped, ServiceState::Stopped);
    // The stopped service's process is gone, not a zombie: PID 1 reaped it. `flaky` still
    // exits and restarts, so a zombie may show for the moment before PID 1 reaps it.
    let ps = || {
        host.exec(&["/bin/busybox", "ps", "-o", "pid,stat,args"])
            .expect("ps")
            .stdout_text()
    };
    assert!(!ps().lines().any(|l| l.contains("sleep 600")), "{}", ps());
    let zombie = |l: &str| {
        l.split_whitespace()
            .nth(1)
            .is_some_and(|s| s.starts_with('Z'))
    };
    let reaped = eventually("no zombies", Duration::from_secs(5), || {
        !ps().lines().any(zombie)
    });
    assert!(reaped.is_ok(), "zombies left:\n{}", ps());

    let err = host
        .service_status("no-such-service")
        .expect_err("unknown service");
    assert!(err.to_string().contains("no-such-service"), "{err}");
    let err = host
        .exec(&["/no/such/program"])
        .expect_err("missing program");
    assert!(err.to_string().contains("/no/such/program"), "{err}");
    assert!(
        matches!(
            err,
            HostError::Agent {
                source: ClientError::Remote { .. },
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn a_guest_that_cannot_boot_is_reported_with_its_console() {
    prepared();
    let run = run("it-noboot");
    let mut machine = MachineSpec::new("tiny", Arch::X86_64);
    machine.memory_mib = 24;
    let mut spec = LabSpec::new("it-noboot").machine(machine);
    spec.boot_timeout = Duration::from_secs(40);
    let err = run
        .boot(&spec)
        .expect_err("24 MiB cannot hold kernel and initramfs");
    let text = err.to_string();
    assert!(
        text.contains("tiny") && text.contains("console log"),
        "{text}"
    );
    assert!(text.contains(".console.log"), "{text}");
}
