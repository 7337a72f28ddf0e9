//! Existing machines over SSH: real OpenSSH servers (`sshd` from Debian's
//! `openssh-server`) on loopback ports and in a network namespace, reached through
//! `Run::connect` with an inventory file, host keys checked against `known_hosts`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use sinew::ssh::Inventory;
use sinew::{Arch, Artifact, Host, HostError};
use sinew_tests::ssh_bed::{Account, SshBed, CLIENT_KEYS};
use sinew_tests::{eventually, run};

fn inventory(bed: &SshBed, known_hosts: &Path, extra: &str) -> Inventory {
    let path = bed.dir().join(format!("inventory-{}.toml", rand_suffix()));
    std::fs::write(&path, bed.inventory(known_hosts, extra)).expect("write inventory");
    Inventory::from_file(&path).expect("the bed's inventory parses")
}

/// `count` sshd hosts whose keys are known, and a run connected to every one as root.
fn connected(count: usize, name: &str) -> (SshBed, sinew::Run, Vec<Host>) {
    let bed = SshBed::start(count).expect("sshd hosts");
    let known_hosts = bed.known_hosts().expect("known_hosts");
    let run = run(name);
    let hosts = run.connect(&inventory(&bed, &known_hosts, ""));
    assert_eq!(hosts.len(), count, "every host connects");
    (bed, run, hosts)
}

/// An inventory of the bed's one host, logging in as the unprivileged test account.
fn as_account(bed: &SshBed) -> (Inventory, &'static Account) {
    let account = sinew_tests::ssh_bed::account().expect("the test account");
    let known_hosts = bed.known_hosts().expect("known_hosts");
    let extra = format!(
        "[groups.all]\nhosts = [\"ssh-0\"]\nuser = \"{}\"\n",
        account.user
    );
    (inventory(bed, &known_hosts, &extra), account)
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// `SHA256:...` of a public key line, as `ssh-keygen -l` prints it.
fn fingerprint(dir: &Path, public_key: &str) -> String {
    let path = dir.join(format!("fp-{}.pub", rand_suffix()));
    std::fs::write(&path, format!("{public_key}\n")).expect("write key");
    let out = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(&path)
        .output()
        .expect("ssh-keygen -l");
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .nth(1)
        .expect("a fingerprint")
        .to_string()
}

fn failure(result: &Result<Host, sinew::TaskFailed>) -> &str {
    match result {
        Ok(host) => panic!("{host} connected, but it must be refused"),
        Err(failed) => failed.message(),
    }
}

#[test]
fn commands_and_files_over_ssh_on_every_host_of_an_inventory() {
    let (bed, run, hosts) = connected(3, "it-ssh-basics");
    assert_eq!(run.tally().failed, 0);
    let files = bed.dir().join("files");
    std::fs::create_dir_all(&files).expect("files dir");
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();

    run.each(&hosts, "exercise", |host| {
        assert_eq!(Some(host.arch()), Arch::host());
        assert_eq!(host.inventory().expect("a remote host").ssh.user, "root");
        assert!(host.console_log().is_none() && host.agent_address().is_none());

        let out = host.exec(&["sh", "-c", "echo \"hello from $0\"", "it's me"])?;
        assert_eq!(
            out.stdout_text(),
            "hello from it's me",
            "arguments keep their quoting"
        );
        let out = host.try_exec(&["sh", "-c", "echo out; echo err >&2; exit 3"])?;
        assert_eq!(
            (out.code(), out.stdout_text()),
            (Some(3), "out".to_string())
        );
        assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
        let missing = host
            .exec(&["sinew-no-such-command"])
            .expect_err("a missing command fails");
        let text = missing.to_string();
        assert!(
            text.starts_with(&format!("{host}: ")) && text.contains("exited with code 127"),
            "{text}"
        );
        assert!(text.contains("not found"), "{text}");

        let path = files.join(host.name()).join("blob");
        let path = path.to_str().expect("utf-8 path");
        let first = host.put(&data, path, 0o640)?;
        assert!(first.changed(), "a new file is written");
        assert_eq!(std::fs::read(path).expect("the file"), data);
        assert!(
            !host.put(&data, path, 0o640)?.changed(),
            "the same file is left alone"
        );
        assert!(
            host.put(&data, path, 0o600)?.changed(),
            "a new mode is a change"
        );
        assert_eq!(host.exec(&["stat", "-c", "%a", path])?.stdout_text(), "600");
        assert_eq!(host.get(path)?, data);
        assert!(host.get("/nonexistent/sinew").is_err());

        let facts = host.facts()?;
        assert_eq!(facts.arch, std::env::consts::ARCH);
        assert_eq!(
            facts.hostname,
            nix::unistd::gethostname()
                .expect("hostname")
                .to_string_lossy()
        );
        assert!(facts.cpus >= 1 && facts.mem_total_kib > 0 && facts.uptime > Duration::ZERO);
        let lo = facts
            .interfaces
            .iter()
            .find(|i| i.name == "lo")
            .expect("lo");
        assert!(lo.addresses.iter().any(|a| a.address.is_loopback()));
        Ok::<_, HostError>(first)
    })
    .expect("every step works on every host");
    let leftovers: Vec<PathBuf> = std::fs::read_dir(files.join(hosts[0].name()))
        .expect("dir")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(
        leftovers.len(),
        1,
        "no temporary file is left: {leftovers:?}"
    );
}

#[test]
fn installs_check_the_remote_architecture_before_sending() {
    let (_bed, _run, hosts) = connected(1, "it-ssh-arch");
    let host = &hosts[0];
    let other = match host.arch() {
        Arch::X86_64 => Arch::Aarch64,
        Arch::Aarch64 => Arch::X86_64,
    };
    let artifact = Artifact {
        name: "sinew-probe".into(),
        arch: other,
        path: "/bin/true".into(),
        sha256: String::new(),
        size: 0,
    };
    let err = host
        .install(&artifact, "/tmp/never-written")
        .expect_err("another architecture is refused");
    assert!(matches!(err, HostError::WrongArch { .. }), "{err}");
    assert!(!Path::new("/tmp/never-written").exists());
}

#[test]
fn unknown_hosts_are_refused_unless_trusted_on_first_use_which_records_them() {
    let bed = SshBed::start(1).expect("sshd hosts");
    let known_hosts = bed.dir().join("empty_known_hosts");
    std::fs::write(&known_hosts, "").expect("empty known_hosts");
    let key = &bed.hosts[0].host_key;
    let presented = fingerprint(bed.dir(), key);
    let run = run("it-ssh-tofu");

    let refused = run.connect_each(&inventory(&bed, &known_hosts, ""));
    let message = failure(&refused[0]);
    assert!(message.contains("does not know"), "{message}");
    assert!(
        message.contains(&presented),
        "the presented key is shown: {message}"
    );
    assert_eq!(std::fs::read_to_string(&known_hosts).expect("read"), "");

    let trusting = inventory(&bed, &known_hosts, "").hosts()[0]
        .clone()
        .host_keys(sinew::ssh::HostKeyPolicy {
            known_hosts: known_hosts.clone(),
            trust_on_first_use: true,
        });
    let hosts = run.connect(&Inventory::new().host(trusting));
    assert_eq!(hosts.len(), 1, "trust on first use connects");
    assert_eq!(
        std::fs::read_to_string(&known_hosts).expect("read"),
        format!("{} {key}\n", bed.hosts[0].known_hosts_name()),
        "and records the key as OpenSSH would"
    );
    let again = run.connect(&inventory(&bed, &known_hosts, ""));
    assert_eq!(again.len(), 1, "the recorded key is known from then on");
    assert_eq!(run.tally().failed, 1);
}

#[test]
fn a_changed_host_key_is_refused_showing_both_fingerprints_even_with_trust_on_first_use() {
    let mut bed = SshBed::start(2).expect("sshd hosts");
    let known_hosts = bed.known_hosts().expect("known_hosts");
    let old = fingerprint(bed.dir(), &bed.hosts[0].host_key);
    bed.rekey(0).expect("new host key");
    let new = fingerprint(bed.dir(), &bed.hosts[0].host_key);
    let run = run("it-ssh-changed");
    let extra = "[groups.all]\nhosts = [\"ssh-0\", \"ssh-1\"]\ntrust_on_first_use = true\n";
    let results = run.connect_each(&inventory(&bed, &known_hosts, extra));
    let message = failure(&results[0]);
    assert!(message.contains("HOST KEY CHANGED"), "{message}");
    assert!(
        message.contains(&old) && message.contains(&new),
        "{message}"
    );
    assert!(results[1].is_ok(), "the other host carries on");
    let recorded = std::fs::read_to_string(&known_hosts).expect("read");
    assert!(
        !recorded.contains(&bed.hosts[0].host_key),
        "nothing recorded: {recorded}"
    );
}

#[test]
fn every_client_key_type_logs_in_and_an_unknown_key_is_refused() {
    let bed = SshBed::start(1).expect("sshd hosts");
    let known_hosts = bed.known_hosts().expect("known_hosts");
    let run = run("it-ssh-keys");
    let base = inventory(&bed, &known_hosts, "").hosts()[0].clone();
    let mut each_key = Inventory::new();
    for kind in CLIENT_KEYS {
        let mut host = base.clone().key(bed.client_key(kind));
        host.name = format!("with-{kind}");
        each_key = each_key.host(host);
    }
    let hosts = run.connect(&each_key);
    assert_eq!(
        hosts.len(),
        CLIENT_KEYS.len(),
        "ed25519, ECDSA and RSA keys log in"
    );

    let stranger = bed.dir().join("stranger");
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&stranger)
        .status()
        .expect("ssh-keygen");
    assert!(status.success());
    let refused = run.connect_each(&Inventory::new().host(base.key(&stranger)));
    let message = failure(&refused[0]);
    assert!(message.contains("refused every key offered"), "{message}");
    assert!(
        message.contains(&stranger.display().to_string()),
        "{message}"
    );
}

#[test]
fn a_host_only_a_jump_host_reaches_is_driven_through_it() {
    let mut bed = SshBed::start(0).expect("sshd bed");
    let (_, inner) = bed.behind_jump("gate", "inner").expect("namespace hosts");
    let known_hosts = bed.known_hosts().expect("known_hosts");
    let inner_port = bed.hosts[inner].port;
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", inner_port)).is_err(),
        "inner is out of this namespace's reach"
    );
    let run = run("it-ssh-jump");
    let extra = "[groups.hidden]\nhosts = [\"inner\"]\njump = \"gate\"\n";
    let hosts = run.connect(&inventory(&bed, &known_hosts, extra));
    assert_eq!(hosts.len(), 2);
    let inner_host = hosts.iter().find(|h| h.name() == "inner").expect("inner");
    assert_eq!(inner_host.inventory().expect("remote").jumps.len(), 1);
    let listening = inner_host
        .exec(&["sh", "-c", "cat /proc/net/tcp"])
        .expect("a command on inner");
    assert!(
        listening
            .stdout_text()
            .contains(&format!(":{inner_port:04X} ")),
        "the command ran in inner's namespace"
    );
}

#[test]
fn a_host_going_away_mid_command_fails_its_line_and_the_others_carry_on() {
    let (mut bed, run, hosts) = connected(2, "it-ssh-away");
    let results = std::thread::scope(|scope| {
        let running = scope.spawn(|| {
            run.each_result(&hosts, "sleep", |host| {
                host.exec(&["sh", "-c", "sleep 2; echo done"])
            })
        });
        std::thread::sleep(Duration::from_millis(700));
        bed.hosts[0].kill();
        running.join().expect("the task threads")
    });
    let message = match &results[0] {
        Ok(_) => panic!("the killed host's command must fail"),
        Err(failed) => failed.message().to_string(),
    };
    assert!(message.starts_with("ssh-0: connection lost"), "{message}");
    assert_eq!(
        results[1].as_ref().expect("the other host").stdout_text(),
        "done"
    );
}

#[test]
fn a_full_disk_during_put_is_reported_and_leaves_no_partial_file() {
    let (bed, _run, hosts) = connected(1, "it-ssh-full");
    let full = bed.dir().join("full");
    std::fs::create_dir_all(&full).expect("mount point");
    let tmpfs = Tmpfs::mount(&full, "64k");
    let path = full.join("big");
    let err = hosts[0]
        .put(&vec![7u8; 1 << 20], path.to_str().expect("utf-8"), 0o644)
        .expect_err("a file larger than the disk fails");
    let text = err.to_string();
    assert!(text.contains("No space left on device"), "{text}");
    assert!(text.starts_with("ssh-0: writing "), "{text}");
    let left: Vec<_> = std::fs::read_dir(&full).expect("dir").collect();
    assert!(left.is_empty(), "the partial file is removed: {left:?}");
    drop(tmpfs);
}

/// A small tmpfs, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Self {
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .status()
            .expect("mount");
        assert!(status.success(), "mount tmpfs at {}", path.display());
        Self(path.into())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn the_ssh_hosts_playbook_drives_an_inventory_and_a_second_run_sends_only_what_changed() {
    let bed = SshBed::start(3).expect("sshd hosts");
    let known_hosts = bed.known_hosts().expect("known_hosts");
    let work = bed.dir().join("work");
    let closed = sinew_tests::free_port().expect("a closed port");
    let vars = format!(
        "[groups.all]\nhosts = [\"ssh-0\", \"ssh-1\", \"ssh-2\"]\nvars = {{ work_dir = \"{}\" }}\n",
        work.display()
    );
    let first = bed.dir().join("playbook.toml");
    std::fs::write(&first, bed.inventory(&known_hosts, &vars)).expect("inventory");
    let second = bed.dir().join("playbook-gone.toml");
    let gone = format!("{vars}\n[hosts.gone]\naddress = \"127.0.0.1\"\nport = {closed}\n");
    std::fs::write(&second, bed.inventory(&known_hosts, &gone)).expect("inventory");
    let playbook = sinew_tests::host_bins(false)
        .expect("the workspace's binaries build")
        .join("ssh-hosts");
    let play = |inventory: &Path| {
        let out = Command::new(&playbook)
            .arg("-i")
            .arg(inventory)
            .output()
            .expect("ssh-hosts runs");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.code(), stdout, stderr)
    };

    let (code, stdout, stderr) = play(&first);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("3 of 3 host(s) went through every step"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("ssh-1: {}", std::env::consts::ARCH)),
        "{stdout}"
    );
    let motd = std::fs::read_to_string(work.join("ssh-2/motd")).expect("motd");
    assert!(
        motd.starts_with(&format!(
            "ssh-2 ({}), managed by sinew\ngroups: all\n",
            std::env::consts::ARCH
        )),
        "{motd}"
    );
    assert!(
        motd.contains(&format!("work_dir = {}", work.display())),
        "{motd}"
    );
    let hosts = std::fs::read_to_string(work.join("ssh-0/hosts")).expect("hosts");
    assert!(hosts.contains("127.0.0.1 ssh-2\n"), "{hosts}");

    let (code, stdout, stderr) = play(&second);
    assert_eq!(
        code,
        Some(1),
        "an unreachable host fails the run:\n{stderr}"
    );
    assert!(
        stdout.contains("3 of 4 host(s) went through every step"),
        "{stdout}"
    );
    let line = |status: &str, task: &str| {
        stderr
            .lines()
            .any(|l| l.trim_start().starts_with(status) && l.contains(task))
    };
    assert!(line("failed", "connect [gone]"), "{stderr}");
    for host in ["ssh-0", "ssh-1", "ssh-2"] {
        assert!(line("ok", &format!("file static-4 [{host}]")), "{stderr}");
        assert!(
            line("changed", &format!("file stamp-1 (new each run) [{host}]")),
            "{stderr}"
        );
        assert!(line("ok", &format!("template motd [{host}]")), "{stderr}");
    }
}

#[test]
fn sudo_runs_commands_and_files_as_root_with_the_password_sent_to_its_prompt() {
    let bed = SshBed::start(1).expect("sshd hosts");
    let (inventory, account) = as_account(&bed);
    let with_password = |password: Option<&str>| {
        let options = sinew::Options {
            become_password: password.map(sinew::Password::new),
            ..sinew::Options::default()
        };
        let run = sinew::Run::with_options("it-ssh-sudo", options).expect("a run");
        let host = run.connect(&inventory).pop().expect("the host connects");
        (run, host)
    };

    let (_run, host) = with_password(Some(account.password));
    assert_eq!(
        host.exec(&["id", "-un"]).expect("id").stdout_text(),
        account.user
    );
    let root = host.sudo().exec(&["id", "-un"]).expect("sudo id");
    assert_eq!(root.stdout_text(), "root", "the marker line is not output");
    assert!(
        !String::from_utf8_lossy(&root.stderr).contains("sinew-sudo"),
        "nor the prompt"
    );
    let nobody = host
        .sudo_as("nobody")
        .exec(&["id", "-un"])
        .expect("sudo -u nobody");
    assert_eq!(nobody.stdout_text(), "nobody");
    let failing = host
        .sudo()
        .try_exec(&["sh", "-c", "echo out; exit 4"])
        .expect("runs");
    assert_eq!(
        (failing.code(), failing.stdout_text()),
        (Some(4), "out".to_string())
    );

    let private = bed.dir().join("root-only");
    std::fs::create_dir(&private).expect("dir");
    std::fs::set_permissions(
        &private,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .expect("chmod");
    let path = private.join("secret");
    let path = path.to_str().expect("utf-8");
    let denied = host
        .put(b"secret\n", path, 0o600)
        .expect_err("not as the user");
    assert!(denied.to_string().contains("Permission denied"), "{denied}");
    assert!(host
        .sudo()
        .put(b"secret\n", path, 0o600)
        .expect("as root")
        .changed());
    assert!(!host
        .sudo()
        .put(b"secret\n", path, 0o600)
        .expect("again")
        .changed());
    assert_eq!(host.sudo().get(path).expect("get as root"), b"secret\n");

    let (_run, host) = with_password(Some("not the password"));
    let refused = host.sudo().exec(&["true"]).expect_err("a wrong password");
    assert!(
        refused.to_string().contains("sudo refused the password"),
        "{refused}"
    );
    let (_run, host) = with_password(None);
    let refused = host.sudo().exec(&["true"]).expect_err("no password");
    assert!(
        refused.to_string().contains("sudo asks for a password"),
        "{refused}"
    );
}

#[test]
fn a_bootstrapped_agent_serves_the_host_through_the_ssh_connection_and_goes_with_it() {
    sinew_tests::prepared();
    let bed = SshBed::start(1).expect("sshd hosts");
    let (inventory, account) = as_account(&bed);
    let run = run("it-ssh-agent");
    let host = run.connect(&inventory).pop().expect("the host connects");
    // The guest binaries as the preparation built them: a build of the same set is cached.
    let init = run
        .build(&sinew::Build::bins(&sinew_tests::GUEST_BINS))
        .expect("sinew-init builds");
    let init = init
        .get("sinew-init", host.arch())
        .expect("the host's build");
    assert!(matches!(
        host.facts().expect("facts over SSH").agent_version.as_str(),
        "none (facts gathered over SSH)"
    ));
    let err = host
        .service_status("nothing")
        .expect_err("no agent, no services");
    assert!(err.to_string().contains("bootstrap_agent"), "{err}");

    let started = host.bootstrap_agent(init).expect("the agent starts");
    let dir = started
        .place
        .split(", from ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .expect("the agent's directory")
        .to_string();
    assert!(Path::new(&dir).join("sinew-init").exists());
    let facts = host.facts().expect("facts from the agent");
    assert_eq!(
        facts.agent_version,
        env!("CARGO_PKG_VERSION"),
        "the agent answers"
    );
    assert_eq!(
        host.exec(&["id", "-un"]).expect("id").stdout_text(),
        account.user
    );
    let path = format!("{dir}/through-the-agent");
    assert!(host.put(b"agent\n", &path, 0o644).expect("put").changed());
    assert!(!host.put(b"agent\n", &path, 0o644).expect("again").changed());
    assert_eq!(host.get(&path).expect("get"), b"agent\n");
    let spec = sinew::ServiceSpec::new("sleeper", ["sleep", "300"]);
    assert!(host.start_service(&spec).expect("a service").changed);
    assert!(matches!(
        host.service_status("sleeper").expect("status").state,
        sinew::ServiceState::Running { .. }
    ));
    assert_eq!(
        host.sudo()
            .exec(&["id", "-un"])
            .map(|e| e.stdout_text())
            .ok(),
        None,
        "sudo still goes over SSH, where this run has no password"
    );

    drop(host);
    drop(run);
    eventually(
        &format!("leaving the playbook removes {dir}"),
        Duration::from_secs(10),
        || !Path::new(&dir).exists(),
    )
    .expect("the agent's directory removed");
    // The wrapper removes the directory on its way out, so it may outlive it by a moment.
    let left = || {
        Command::new("pgrep")
            .args(["-f", &dir])
            .output()
            .expect("pgrep")
            .stdout
    };
    let ended = eventually("the agent's processes end", Duration::from_secs(5), || {
        left().is_empty()
    });
    assert!(
        ended.is_ok(),
        "agent processes left: {}",
        String::from_utf8_lossy(&left())
    );
}

#[test]
fn without_a_key_in_the_inventory_the_login_goes_through_ssh_agent() {
    let bed = SshBed::start(1).expect("sshd hosts");
    let known_hosts = bed.known_hosts().expect("known_hosts");
    let key = bed.client_key("ed25519");
    let work = format!(
        "[groups.all]\nhosts = [\"ssh-0\"]\nvars = {{ work_dir = \"{}\" }}\n",
        bed.dir().join("work").display()
    );
    let without_key: String = bed
        .inventory(&known_hosts, &work)
        .lines()
        .filter(|line| !line.starts_with("key = "))
        .map(|line| format!("{line}\n"))
        .collect();
    let inventory = bed.dir().join("agent.toml");
    std::fs::write(&inventory, without_key).expect("inventory");
    // A home without key files, so that only the agent can log in.
    let home = bed.dir().join("empty-home");
    std::fs::create_dir_all(&home).expect("home");
    let socket = bed.dir().join("agent.sock");
    let mut agent = Command::new("ssh-agent")
        .arg("-D")
        .arg("-a")
        .arg(&socket)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("ssh-agent starts");
    let up = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(20));
        socket.exists()
    });
    assert!(up, "ssh-agent listens");
    let playbook = sinew_tests::host_bins(false)
        .expect("the workspace's binaries build")
        .join("ssh-hosts");
    let play = || {
        let out = Command::new(&playbook)
            .arg("-i")
            .arg(&inventory)
            .env("SSH_AUTH_SOCK", &socket)
            .env("HOME", &home)
            .output()
            .expect("ssh-hosts runs");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.code(), stderr)
    };

    let (code, stderr) = play();
    assert_eq!(code, Some(1), "an empty agent logs in nowhere:\n{stderr}");
    assert!(
        stderr.contains("refused every key offered (none found"),
        "{stderr}"
    );
    let added = Command::new("ssh-add")
        .arg(&key)
        .env("SSH_AUTH_SOCK", &socket)
        .output()
        .expect("ssh-add");
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    let (code, stderr) = play();
    assert_eq!(code, Some(0), "the agent's key logs in:\n{stderr}");
    let _ = agent.kill();
    let _ = agent.wait();
}
