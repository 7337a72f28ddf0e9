//! `ssh-hosts`: drive existing machines over SSH, as an Ansible play would: gather facts,
//! run commands, lay down files (sent again only when they change) and templates, on every
//! host of an inventory at once. A host that fails a step leaves the play with its line
//! saying why; the others carry on.
//!
//! `cargo run --bin ssh-hosts -- -i hosts.toml [--forks N] [--dry-run] [-v]`
//!
//! Files go under each host's `work_dir` variable (default `/var/tmp/sinew-ssh-hosts`), in a
//! directory named after the host. Twenty steps per host: facts, the directory, eight
//! commands, four files whose content changes every run, four that never change, two
//! templates.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use serde_json::{json, Value};
use sinew::{Host, Run};

const DEFAULT_WORK_DIR: &str = "/var/tmp/sinew-ssh-hosts";

/// Read-only commands, one task each.
const COMMANDS: [&[&str]; 8] = [
    &["uname", "-r"],
    &["uptime"],
    &["id", "-un"],
    &["df", "-P", "/"],
    &["hostname"],
    &["date", "+%s"],
    &["cat", "/proc/loadavg"],
    &["sh", "-c", "echo \"$SHELL\""],
];

const MOTD: &str = "{{ name }} ({{ arch }}), managed by sinew
groups: {{ groups | join(sep=\", \") }}
{% for key, value in vars %}{{ key }} = {{ value }}
{% endfor %}";

const HOSTS: &str = "# every machine of the inventory
{% for host in hosts %}{{ host.address }} {{ host.name }}
{% endfor %}";

fn main() -> anyhow::Result<()> {
    let run = Run::from_args("ssh-hosts")?;
    let inventory = run.inventory()?;
    let mut hosts = run.connect(&inventory);
    let facts = run.each_or_drop(&mut hosts, "gather facts", Host::facts);
    for (host, facts) in hosts.iter().zip(&facts) {
        run.say(format!(
            "{host}: {} {}, {} CPU(s), {} MiB, up {}s",
            facts.arch,
            facts.kernel_release,
            facts.cpus,
            facts.mem_total_kib / 1024,
            facts.uptime.as_secs()
        ));
    }
    run.each_or_drop(&mut hosts, "work directory", |host| {
        host.exec(&["mkdir", "-p", &path(host, "")])
    });
    for argv in COMMANDS {
        run.each_or_drop(&mut hosts, &argv.join(" "), |host| host.exec(argv));
    }
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("the clock is before 1970")?
        .as_nanos();
    for n in 1..=4 {
        run.each_or_drop(
            &mut hosts,
            &format!("file stamp-{n} (new each run)"),
            |host| {
                let text = format!("stamp {n} of run {stamp}\n");
                host.put(text.as_bytes(), &path(host, &format!("stamp-{n}")), 0o644)
            },
        );
    }
    for n in 1..=4 {
        run.each_or_drop(&mut hosts, &format!("file static-{n}"), |host| {
            let text = format!("static file {n}, the same every run\n");
            host.put(text.as_bytes(), &path(host, &format!("static-{n}")), 0o644)
        });
    }
    let everyone: Vec<Value> = inventory
        .hosts()
        .iter()
        .map(|h| json!({ "name": h.name, "address": h.ssh.address }))
        .collect();
    run.each_or_drop(&mut hosts, "template motd", |host| {
        let remote = host.inventory().context("a remote host")?;
        let context = json!({
            "name": host.name(),
            "arch": host.arch().to_string(),
            "groups": remote.groups,
            "vars": remote.vars,
        });
        let text = sinew::template::render("motd", MOTD, &context)?;
        Ok::<_, anyhow::Error>(host.put(text.as_bytes(), &path(host, "motd"), 0o644)?)
    });
    run.each_or_drop(&mut hosts, "template hosts", |host| {
        let text = sinew::template::render("hosts", HOSTS, &json!({ "hosts": everyone }))?;
        Ok::<_, anyhow::Error>(host.put(text.as_bytes(), &path(host, "hosts"), 0o644)?)
    });
    run.say(format!(
        "{} of {} host(s) went through every step",
        hosts.len(),
        inventory.hosts().len()
    ));
    run.finish()?;
    Ok(())
}

/// `name` in the host's directory under its `work_dir`.
fn path(host: &Host, name: &str) -> String {
    let work_dir = host
        .inventory()
        .and_then(|h| h.vars.get("work_dir"))
        .and_then(Value::as_str)
        .unwrap_or(DEFAULT_WORK_DIR);
    format!("{work_dir}/{}/{name}", host.name())
}
