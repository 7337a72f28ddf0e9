//! A container runs its program with the requested identity, in its own PID, mount and
//! UTS namespaces, on an overlay that leaves the shared rootfs untouched.

use crate::run_support;

use run_support::*;

#[test]
fn output_goes_to_the_terminal_and_the_log_and_the_exit_code_is_propagated() {
    let dir = state_dir();
    let out = run(
        dir.path(),
        &[],
        &["sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 7"],
    );
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    assert_eq!(stdout(&out), "to-stdout\n");
    assert!(stderr(&out).contains("to-stderr"), "{}", stderr(&out));
    let log = std::fs::read_to_string(only_container(dir.path()).join("log")).unwrap();
    assert!(
        log.contains("to-stdout\n") && log.contains("to-stderr\n"),
        "{log}"
    );
}

#[test]
fn flags_set_entrypoint_env_workdir_user_and_hostname() {
    let dir = state_dir();
    let script = "echo $GREETING; pwd; id -u; id -g; hostname; echo $HOME";
    let flags = [
        "--entrypoint",
        "/bin/sh",
        "--env",
        "GREETING=hello",
        "--env",
        "HOME=/home/app",
        "--workdir",
        "/srv",
        "--user",
        "app",
        "--hostname",
        "web-1",
    ];
    let out = run(dir.path(), &flags, &["-c", script]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "hello\n/srv\n1000\n1000\nweb-1\n/home/app\n");
}

#[test]
fn numeric_users_and_groups_need_no_passwd_entry() {
    let dir = state_dir();
    let out = run(
        dir.path(),
        &["--user", "4242:77"],
        &["sh", "-c", "id -u; id -g"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "4242\n77\n");
    let out = run(dir.path(), &["--user", "nobody-here"], &["true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr(&out).contains("\"nobody-here\" not found in the image's /etc/passwd"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn the_program_is_pid_1_and_sees_no_host_processes() {
    let dir = state_dir();
    let out = run(
        dir.path(),
        &[],
        &["sh", "-c", "echo $$; ls /proc | grep -E '^[0-9]+$'"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("1"));
    let pids: Vec<u32> = lines.map(|l| l.parse().unwrap()).collect();
    assert!(pids.contains(&1), "{pids:?}");
    assert!(
        pids.len() <= 4,
        "only the container's own processes may be visible: {pids:?}"
    );
}

#[test]
fn host_mounts_are_invisible_and_container_mounts_do_not_leak_out() {
    let dir = state_dir();
    let out = run(dir.path(), &[], &["cat", "/proc/self/mountinfo"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let inside = stdout(&out);
    let mount_points: Vec<&str> = inside.lines().filter_map(|l| l.split(' ').nth(4)).collect();
    assert_eq!(
        mount_points,
        vec!["/", "/proc", "/sys", "/dev", "/dev/pts", "/dev/shm"],
        "{inside}"
    );
    assert!(inside.contains(" - overlay overlay "), "{inside}");
    let host = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !host.contains(&dir.path().display().to_string()),
        "the container's mounts leaked to the host"
    );
}

#[test]
fn dev_proc_and_sys_are_usable_and_sys_is_read_only() {
    let dir = state_dir();
    let script =
        "echo x > /dev/null && head -c 4 /dev/zero | wc -c && head -c 8 /dev/urandom | wc -c \
        && ls /dev/pts/ptmx && test -d /dev/shm && readlink /dev/stdout \
        && if touch /sys/x 2>/dev/null; then echo sys-writable; else echo sys-ro; fi";
    let out = run(dir.path(), &[], &["sh", "-c", script]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "4\n8\n/dev/pts/ptmx\n/proc/self/fd/1\nsys-ro\n"
    );
}

#[test]
fn the_hostname_is_private() {
    let dir = state_dir();
    let before = nix::unistd::gethostname().unwrap();
    let out = run(dir.path(), &["--hostname", "isolated-name"], &["hostname"]);
    assert_eq!(stdout(&out), "isolated-name\n", "{}", stderr(&out));
    assert_eq!(nix::unistd::gethostname().unwrap(), before);
}

#[test]
fn writes_land_in_the_container_upper_layer_not_in_the_shared_rootfs() {
    let dir = state_dir();
    let script =
        "echo changed > /etc/motd && echo new > /etc/created && rm /bin/true && cat /etc/motd";
    let out = run(dir.path(), &[], &["sh", "-c", script]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "changed\n");
    assert_eq!(
        std::fs::read_to_string(rootfs().join("etc/motd")).unwrap(),
        "pristine\n"
    );
    assert!(!rootfs().join("etc/created").exists());
    assert!(rootfs().join("bin/true").symlink_metadata().is_ok());
    let upper = only_container(dir.path()).join("upper");
    assert_eq!(
        std::fs::read_to_string(upper.join("etc/created")).unwrap(),
        "new\n"
    );
    // A second container starts from the pristine image again.
    let out = run(dir.path(), &[], &["cat", "/etc/motd"]);
    assert_eq!(stdout(&out), "pristine\n");
}

#[test]
fn a_missing_program_is_a_clear_error() {
    let dir = state_dir();
    let out = run(dir.path(), &[], &["/bin/does-not-exist"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr(&out).contains("exec /bin/does-not-exist: No such file or directory"),
        "{}",
        stderr(&out)
    );
    let state = status_json(
        dir.path(),
        only_container(dir.path())
            .file_name()
            .unwrap()
            .to_str()
            .unwrap(),
    );
    assert_eq!(state["status"], "failed");
}

#[test]
fn root_in_the_container_keeps_only_dockers_default_capabilities_without_chroot() {
    let dir = state_dir();
    let script = "grep -E '^Cap(Inh|Bnd|Amb)' /proc/self/status; \
                  mount -t tmpfs none /mnt 2>/dev/null && echo mounted || echo mount-refused; \
                  chroot / true 2>/dev/null && echo chrooted || echo chroot-refused";
    let out = run(dir.path(), &[], &["sh", "-c", script]);
    assert!(out.status.success(), "{}", stderr(&out));
    // CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID SETPCAP NET_BIND_SERVICE NET_RAW
    // MKNOD AUDIT_WRITE SETFCAP: Docker's 0xa80425fb without SYS_CHROOT (bit 18).
    assert_eq!(
        stdout(&out),
        "CapInh:\t0000000000000000\nCapBnd:\t00000000a80025fb\nCapAmb:\t0000000000000000\n\
         mount-refused\nchroot-refused\n"
    );
}
