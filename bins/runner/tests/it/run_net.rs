//! Networking: `none` leaves only loopback; `overlay` plugs a veth into the bridge of the
//! subnet in `subnet.env`, routes via it, and publishes ports on the host's loopback.
//! The overlay test runs sinew-run inside a network namespace of its own, so the bridge,
//! the veth and the published port never touch the host's network.

use crate::run_support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use run_support::*;

#[test]
fn net_none_has_only_a_working_loopback() {
    let dir = state_dir();
    let script = "cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' '; ping -c 1 -W 1 127.0.0.1 >/dev/null && echo lo-works";
    let out = run(dir.path(), &["--net", "none"], &["sh", "-c", script]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "lo\nlo-works\n");
}

#[test]
fn overlay_gets_an_address_reaches_the_bridge_and_publishes_a_port_on_loopback() {
    let dir = state_dir();
    let subnet_file = dir.path().join("subnet.env");
    std::fs::write(
        &subnet_file,
        "FLANNEL_NETWORK=10.213.0.0/16\nFLANNEL_SUBNET=10.213.7.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n",
    )
    .unwrap();
    let script = "ip -o -4 addr show eth0 | awk '{print $4}'; ip route | grep default; cat /sys/class/net/eth0/mtu; \
        ping -c 1 -W 2 10.213.7.1 >/dev/null && echo reached-bridge; \
        mkdir /www && echo hello-from-container > /www/index.html; echo ready; exec httpd -f -p 80 -h /www";
    let mut child = KillOnDrop(
        Command::new("unshare")
            .args([
                "--net",
                "--",
                "sh",
                "-c",
                "ip link set lo up && exec \"$0\" \"$@\"",
            ])
            .arg(bin())
            .arg("--dir")
            .arg(dir.path())
            .args(["run", "--rootfs-dir"])
            .arg(rootfs())
            .args([
                "--net",
                "overlay",
                "--bridge",
                "sntest0",
                "--stop-timeout",
                "300ms",
            ])
            .arg("--subnet-file")
            .arg(&subnet_file)
            .args(["-p", "127.0.0.1:18080:80", "--", "sh", "-c", script])
            .env_remove("SINEW_RUN_DIR")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        if line == "ready" {
            break;
        }
        seen.push(line);
    }
    assert_eq!(seen[0], "10.213.7.2/24", "{seen:?}");
    assert!(
        seen[1].starts_with("default via 10.213.7.1 dev eth0"),
        "{seen:?}"
    );
    assert_eq!(seen[2], "1450", "{seen:?}");
    assert_eq!(seen[3], "reached-bridge", "{seen:?}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("net/sntest0/10.213.7.2"))
            .unwrap()
            .len(),
        16
    );

    // Connect from the namespace sinew-run runs in: its loopback is the "host" loopback.
    let netns = std::fs::File::open(format!("/proc/{}/ns/net", child.0.id())).unwrap();
    let response = std::thread::spawn(move || {
        nix::sched::setns(&netns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let mut last = None;
        for _ in 0..100 {
            match http_get("127.0.0.1:18080") {
                Ok(body) => return body,
                Err(e) => last = Some(e),
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("published port never answered: {last:?}");
    })
    .join()
    .unwrap();
    assert!(
        response.starts_with("HTTP/1.") && response.ends_with("hello-from-container\n"),
        "{response}"
    );

    kill(Pid::from_raw(child.0.id().cast_signed()), Signal::SIGTERM).unwrap();
    let status = child.0.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(137),
        "httpd as PID 1 ignores SIGTERM; SIGKILL follows the grace period"
    );
    assert!(
        !dir.path().join("net/sntest0/10.213.7.2").exists(),
        "the address lease must be released"
    );
}

/// Kills sinew-run if the test fails before stopping it, so no container outlives it.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // SIGTERM lets the supervisor clean up its cgroup and lease (it escalates itself).
        let _ = kill(Pid::from_raw(self.0.id().cast_signed()), Signal::SIGTERM);
        let _ = self.0.wait();
    }
}

fn http_get(addr: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(addr)?;
    stream.write_all(b"GET /index.html HTTP/1.0\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    if response.is_empty() {
        return Err(std::io::Error::other("empty response"));
    }
    Ok(response)
}
