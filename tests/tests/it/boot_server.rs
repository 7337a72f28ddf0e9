//! `sinew boot-server` as an operator runs it: a bad data directory keeps it from
//! starting, SIGHUP reloads (a bad reload keeps the running configuration), SIGTERM stops
//! it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use sinew_tests::{eventually, free_port, host_bins};

fn write(dir: &Path, name: &str, text: &str) {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().expect("a parent")).expect("create the directory");
    std::fs::write(path, text).expect("write the file");
}

/// A data directory with one profile per kernel name and the default group on `profile`.
fn data(dir: &Path, profile: &str) {
    write(dir, "assets/vmlinuz-1", "kernel 1");
    write(dir, "assets/vmlinuz-2", "kernel 2");
    for (id, kernel) in [("one", "vmlinuz-1"), ("two", "vmlinuz-2")] {
        write(
            dir,
            &format!("profiles/{id}.json"),
            &format!(r#"{{"id": "{id}", "boot": {{"kernel": "/assets/{kernel}"}}}}"#),
        );
    }
    write(
        dir,
        "groups/default.json",
        &format!(r#"{{"id": "default", "profile": "{profile}"}}"#),
    );
}

/// The body of `GET path`.
fn get(port: u16, path: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to the server");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .expect("send the request");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read the answer");
    answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default()
}

fn start(data: &Path, port: u16) -> Child {
    let bins = host_bins(false).expect("host binaries");
    Command::new(bins.join("sinew"))
        .args(["boot-server", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-path")
        .arg(data)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start sinew boot-server")
}

#[test]
fn a_bad_data_directory_is_refused_naming_file_and_field() {
    let dir = tempfile::tempdir().expect("a data directory");
    data(dir.path(), "missing");
    let out = start(dir.path(), free_port().expect("a port"))
        .wait_with_output()
        .expect("sinew boot-server ends");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("groups/default.json: profile: no profile with id \"missing\""),
        "{stderr}"
    );
}

#[test]
fn sighup_reloads_keeping_the_old_configuration_on_error_and_sigterm_stops() {
    let dir = tempfile::tempdir().expect("a data directory");
    data(dir.path(), "one");
    let port = free_port().expect("a port");
    let mut server = start(dir.path(), port);
    let mut printed = String::new();
    BufReader::new(server.stdout.take().expect("stdout"))
        .read_line(&mut printed)
        .expect("the server prints its URL");
    assert_eq!(printed.trim(), format!("http://127.0.0.1:{port}/boot.ipxe"));
    let pid = Pid::from_raw(i32::try_from(server.id()).expect("a pid"));
    assert!(get(port, "/ipxe").contains("kernel /assets/vmlinuz-1"));

    write(
        dir.path(),
        "groups/default.json",
        r#"{"id": "default", "profile": "one", "selectr": {}}"#,
    );
    kill(pid, Signal::SIGHUP).expect("SIGHUP");
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        get(port, "/ipxe").contains("kernel /assets/vmlinuz-1"),
        "a bad reload keeps the running configuration"
    );

    data(dir.path(), "two");
    kill(pid, Signal::SIGHUP).expect("SIGHUP");
    eventually(
        "the reload takes the new profile",
        Duration::from_secs(10),
        || get(port, "/ipxe").contains("kernel /assets/vmlinuz-2"),
    )
    .expect("the new profile");

    kill(pid, Signal::SIGTERM).expect("SIGTERM");
    let out = server.wait_with_output().expect("the server ends");
    assert_eq!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("reload refused"), "{stderr}");
    assert!(stderr.contains("unknown field `selectr`"), "{stderr}");
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the port is closed"
    );
}
