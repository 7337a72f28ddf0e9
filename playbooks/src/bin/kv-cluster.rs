//! `kv-cluster`: three guests of both architectures run kvd over the data-plane segment.
//! The playbook writes keys, pulls the plug on the leader's guest, shows the new leader and
//! that every acknowledged write is still there.
//!
//! `cargo run --bin kv-cluster [-- --dry-run | -v]`

use anyhow::{bail, Context};
use sinew::kv::deploy::KVCTL_PATH;
use sinew::{Arch, Build, Host, LabSpec, MachineSpec, Run};

/// How many keys the playbook writes before the crash.
const WRITES: usize = 20;

fn main() -> anyhow::Result<()> {
    let run = Run::from_args("kv-cluster")?;
    let bins = run.build(&Build::bins(&["kvd", "kvctl"]))?;
    let lab = run.boot(
        &LabSpec::new("kv-cluster")
            .machine(MachineSpec::new("kv1", Arch::X86_64))
            .machine(MachineSpec::new("kv2", Arch::Aarch64))
            .machine(MachineSpec::new("kv3", Arch::X86_64)),
    )?;
    let cluster = run.deploy_kv(lab.hosts(), &bins)?;
    let endpoints = format!("--endpoints={}", cluster.endpoints());
    let kvctl = |host: &Host, args: &[&str]| {
        let mut argv = vec![KVCTL_PATH, endpoints.as_str()];
        argv.extend_from_slice(args);
        host.exec(&argv)
    };

    let writer = &lab.hosts()[0];
    run.task(&format!("write {WRITES} keys [{writer}]"), || {
        for index in 0..WRITES {
            kvctl(
                writer,
                &[
                    "put",
                    &format!("demo/{index:02}"),
                    &format!("value-{index}"),
                ],
            )?;
        }
        Ok::<_, anyhow::Error>(())
    })?;
    if run.is_dry_run() {
        run.shutdown(lab)?;
        run.finish()?;
        return Ok(());
    }

    let leader = run.task("find the leader", || {
        leader_host(
            &cluster,
            &kvctl(writer, &["endpoint", "status", "-w", "json"])?.stdout_text(),
        )
    })?;
    run.say(format!("leader before the crash: {leader}"));
    run.crash(&lab, &leader.0)?;

    let survivor = lab
        .hosts()
        .iter()
        .find(|host| host.name() != leader.0)
        .context("a surviving guest")?;
    let survivors: Vec<String> = cluster
        .members
        .iter()
        .filter(|(host, _)| *host != leader.0)
        .map(|(_, url)| url.clone())
        .collect();
    let surviving_endpoints = format!("--endpoints={}", survivors.join(","));
    let new_leader = run.task("elect a new leader", || {
        for _ in 0..120 {
            let status = survivor.try_exec(&[
                KVCTL_PATH,
                &surviving_endpoints,
                "endpoint",
                "status",
                "-w",
                "json",
            ])?;
            if let Ok(found) = leader_host(&cluster, &status.stdout_text()) {
                if found.0 != leader.0 {
                    return Ok(found);
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
        bail!("no new leader within 60 s")
    })?;
    run.say(format!("leader after the crash: {new_leader}"));

    let kept = run.task("read back every acknowledged write", || {
        let listed =
            survivor.exec(&[KVCTL_PATH, &surviving_endpoints, "get", "--prefix", "demo/"])?;
        let text = listed.stdout_text();
        let lines: Vec<&str> = text.lines().collect();
        let missing: Vec<usize> = (0..WRITES)
            .filter(|index| {
                let pair = [format!("demo/{index:02}"), format!("value-{index}")];
                !lines
                    .windows(2)
                    .any(|window| window[0] == pair[0] && window[1] == pair[1])
            })
            .collect();
        if !missing.is_empty() {
            bail!("acknowledged writes missing after the crash: {missing:?}");
        }
        Ok(Counted(WRITES, sinew::Status::Ok))
    })?;
    run.say(format!(
        "{} of {WRITES} acknowledged writes present after losing the leader",
        kept.0
    ));
    run.shutdown(lab)?;
    run.finish()?;
    Ok(())
}

/// A guest name and its member id, found in `kvctl endpoint status -w json` output.
#[derive(Debug, Clone)]
struct Leader(String, u64);

impl std::fmt::Display for Leader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (member {:x})", self.0, self.1)
    }
}

impl sinew::Outcome for Leader {
    fn status(&self) -> sinew::Status {
        sinew::Status::Ok
    }

    fn detail(&self) -> Option<String> {
        Some(self.to_string())
    }
}

/// A count of keys written (changed) or found (ok).
#[derive(Debug)]
struct Counted(usize, sinew::Status);

impl sinew::Outcome for Counted {
    fn status(&self) -> sinew::Status {
        self.1
    }

    fn detail(&self) -> Option<String> {
        let verb = if self.1 == sinew::Status::Changed {
            "written"
        } else {
            "present"
        };
        Some(format!("{} {verb}", self.0))
    }
}

/// The guest whose member every answering member names as leader.
fn leader_host(cluster: &sinew::kv::KvDeployment, status_lines: &str) -> anyhow::Result<Leader> {
    let mut leader = None;
    let mut members = Vec::new();
    for line in status_lines.lines().filter(|line| !line.trim().is_empty()) {
        let entry: serde_json::Value = serde_json::from_str(line)?;
        let endpoint = entry["Endpoint"].as_str().unwrap_or_default().to_owned();
        let status: sinew::kv::StatusResponse = serde_json::from_value(entry["Status"].clone())?;
        members.push((endpoint, status.header.unwrap_or_default().member_id));
        leader = Some(status.leader);
    }
    let leader = leader
        .filter(|id| *id != 0)
        .context("no member names a leader")?;
    let endpoint = members
        .iter()
        .find(|(_, id)| *id == leader)
        .map(|(endpoint, _)| endpoint.clone())
        .context("the leader did not answer")?;
    let host = cluster
        .host_of(&endpoint)
        .context("the leader is not a deployed member")?;
    Ok(Leader(host.to_owned(), leader))
}
