//! sinew against Ansible at Ansible's own job, on the same real OpenSSH servers.
//!
//! N `sshd` hosts on loopback (`SshBed`), reached as an unprivileged deploy user with a key.
//! The same play on every host, twenty tasks each: gather facts, make a directory, eight
//! commands, four files whose content changes every run, four that never do, two templates. sinew runs it as the
//! release `ssh-hosts` playbook; Ansible (Debian's `ansible-core`) as the equivalent
//! playbook with forks set to the host count and pipelining on, its defaults otherwise
//! (fact gathering, the linear strategy, OpenSSH with ControlPersist, which keeps its
//! connections warm between runs while sinew connects afresh every run). One untimed run
//! of each first, then `SINEW_BENCH_RUNS` (default 5) timed runs of each, in turns; wall
//! time of the whole command, median per tool.
//!
//! `cargo bench -p sinew-tests --bench ssh`; `SINEW_BENCH_HOSTS=N` hosts (default 8). Last
//! line: `RATIO ssh_vs_ansible=<sinew/ansible median wall time>`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{ensure, Context, Result};
use sinew::setup::Tool;
use sinew_tests::ssh_bed::{account, SshBed};
use sinew_tests::{bench_setting, median};

fn main() -> Result<()> {
    let hosts: usize = bench_setting("SINEW_BENCH_HOSTS", 8);
    let runs: usize = bench_setting("SINEW_BENCH_RUNS", 5);
    ensure!(
        hosts >= 1 && runs >= 1,
        "need at least one host and one run"
    );
    ansible_installed()?;
    let user = account()?.user;
    let bed = SshBed::start(hosts)?;
    let known_hosts = bed.known_hosts()?;
    let work = bed.dir().join("work");
    std::fs::create_dir_all(&work)?;
    sinew_tests::underlay::sh("chown", &[user, path_str(&work)?])?;

    let playbook = sinew_tests::host_bins(true)?.join("ssh-hosts");
    let inventory = bed.dir().join("sinew.toml");
    let extra = format!(
        "[groups.all]\nhosts = [{}]\nuser = \"{user}\"\nvars = {{ work_dir = \"{}/sinew\" }}\n",
        bed.hosts
            .iter()
            .map(|h| format!("\"{}\"", h.name))
            .collect::<Vec<_>>()
            .join(", "),
        work.display()
    );
    std::fs::write(&inventory, bed.inventory(&known_hosts, &extra))?;
    let ansible = Ansible::write(&bed, user, &known_hosts, &work.join("ansible"))?;

    let sinew_run = || -> Result<f64> {
        let started = Instant::now();
        let out = Command::new(&playbook)
            .arg("-i")
            .arg(&inventory)
            .output()
            .context("running ssh-hosts")?;
        let seconds = started.elapsed().as_secs_f64();
        ensure!(
            out.status.success(),
            "ssh-hosts failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        ensure!(
            stdout.contains(&format!(
                "{hosts} of {hosts} host(s) went through every step"
            )),
            "ssh-hosts left hosts out:\n{stdout}"
        );
        Ok(seconds)
    };
    sinew_run()?;
    ansible.run(hosts)?;
    let (mut sinew, mut ansible_times) = (Vec::new(), Vec::new());
    for run in 1..=runs {
        let s = sinew_run()?;
        let a = ansible.run(hosts)?;
        println!("run {run}: sinew {s:.3} s, ansible {a:.3} s");
        sinew.push(s);
        ansible_times.push(a);
    }
    let (s, a) = (median(&mut sinew), median(&mut ansible_times));
    println!(
        "{hosts} hosts, 20 tasks each: sinew median {s:.3} s, ansible median {a:.3} s ({:.0} ms per task for ansible, {:.1} ms for sinew)",
        a * 1000.0 / 20.0,
        s * 1000.0 / 20.0
    );
    println!("RATIO ssh_vs_ansible={:.3}", s / a);
    Ok(())
}

fn ansible_installed() -> Result<()> {
    static READY: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    let tools = [Tool {
        program: "ansible-playbook",
        package: "ansible-core",
    }];
    sinew_tests::tools_installed(&READY, &tools)
}

fn path_str(path: &Path) -> Result<&str> {
    path.to_str().context("a UTF-8 path")
}

/// Ansible's side: its configuration, inventory, playbook and templates in one directory.
struct Ansible {
    dir: PathBuf,
}

/// The same play as `ssh-hosts`, task for task.
const PLAY: &str = r#"- hosts: all
  tasks:
    - file: { path: "{{ work_dir }}/{{ inventory_hostname }}", state: directory }
    - command: uname -r
    - command: uptime
    - command: id -un
    - command: df -P /
    - command: hostname
    - command: date +%s
    - command: cat /proc/loadavg
    - command: sh -c 'echo "$SHELL"'
    - copy: { content: "stamp 1 of run {{ stamp }}\n", dest: "{{ work_dir }}/{{ inventory_hostname }}/stamp-1", mode: "0644" }
    - copy: { content: "stamp 2 of run {{ stamp }}\n", dest: "{{ work_dir }}/{{ inventory_hostname }}/stamp-2", mode: "0644" }
    - copy: { content: "stamp 3 of run {{ stamp }}\n", dest: "{{ work_dir }}/{{ inventory_hostname }}/stamp-3", mode: "0644" }
    - copy: { content: "stamp 4 of run {{ stamp }}\n", dest: "{{ work_dir }}/{{ inventory_hostname }}/stamp-4", mode: "0644" }
    - copy: { content: "static file 1, the same every run\n", dest: "{{ work_dir }}/{{ inventory_hostname }}/static-1", mode: "0644" }
    - copy: { content: "static file 2, the same every run\n", dest: "{{ work_dir }}/{{ inventory_hostname }}/static-2", mode: "0644" }
    - copy: { content: "static file 3, the same every run\n", dest: "{{ work_dir }}/{{ inventory_hostname }}/static-3", mode: "0644" }
    - copy: { content: "static file 4, the same every run\n", dest: "{{ work_dir }}/{{ inventory_hostname }}/static-4", mode: "0644" }
    - template: { src: motd.j2, dest: "{{ work_dir }}/{{ inventory_hostname }}/motd", mode: "0644" }
    - template: { src: hosts.j2, dest: "{{ work_dir }}/{{ inventory_hostname }}/hosts", mode: "0644" }
"#;

const MOTD: &str = "{{ inventory_hostname }} ({{ ansible_architecture }}), managed by sinew
groups: {{ group_names | join(', ') }}
work_dir = {{ work_dir }}
";

const HOSTS: &str = "# every machine of the inventory
{% for host in groups['all'] %}{{ hostvars[host].ansible_host }} {{ host }}
{% endfor %}";

impl Ansible {
    fn write(bed: &SshBed, user: &str, known_hosts: &Path, work: &Path) -> Result<Self> {
        let dir = bed.dir().join("ansible");
        std::fs::create_dir_all(&dir)?;
        let mut inventory = String::from("[all]\n");
        for host in &bed.hosts {
            writeln!(
                inventory,
                "{} ansible_host={} ansible_port={}",
                host.name, host.address, host.port
            )?;
        }
        writeln!(
            inventory,
            "\n[all:vars]\nansible_user={user}\nansible_ssh_private_key_file={}\n\
             ansible_ssh_common_args='-o UserKnownHostsFile={}'\nwork_dir={}",
            bed.client_key("ed25519").display(),
            known_hosts.display(),
            work.display()
        )?;
        std::fs::write(dir.join("inventory.ini"), inventory)?;
        std::fs::write(
            dir.join("ansible.cfg"),
            format!(
                "[defaults]\nforks = {}\ninventory = inventory.ini\n\n[ssh_connection]\npipelining = True\n",
                bed.hosts.len()
            ),
        )?;
        std::fs::write(dir.join("play.yml"), PLAY)?;
        std::fs::write(dir.join("motd.j2"), MOTD)?;
        std::fs::write(dir.join("hosts.j2"), HOSTS)?;
        Ok(Self { dir })
    }

    /// One run of the play; its wall time.
    fn run(&self, hosts: usize) -> Result<f64> {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos();
        let started = Instant::now();
        let out = Command::new("ansible-playbook")
            .current_dir(&self.dir)
            .env("ANSIBLE_CONFIG", self.dir.join("ansible.cfg"))
            .env("ANSIBLE_NOCOLOR", "1")
            .args(["play.yml", "-e", &format!("stamp={stamp}")])
            .output()
            .context("running ansible-playbook")?;
        let seconds = started.elapsed().as_secs_f64();
        let stdout = String::from_utf8_lossy(&out.stdout);
        ensure!(
            out.status.success(),
            "ansible-playbook failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let recap = stdout
            .lines()
            .filter(|l| l.contains("ok=20") && l.contains("failed=0"))
            .count();
        ensure!(
            recap == hosts,
            "ansible did not run 20 tasks on every host:\n{stdout}"
        );
        Ok(seconds)
    }
}
