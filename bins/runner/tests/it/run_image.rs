//! `sinew-run run IMAGE`: a signed image fetched into the store runs with its config
//! (entrypoint, cmd, env, workdir, user), and flags override each part.

use crate::run_support;

use std::path::Path;

use run_support::*;

fn ok(dir: &Path, args: &[&str]) -> String {
    let out = cli(dir, args);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    stdout(&out)
}

/// Builds, signs, trusts and fetches `example.com/hello:1` into `dir`.
fn fetch_signed_image(dir: &Path) {
    let p = |name: &str| dir.join(name).display().to_string();
    std::fs::write(
        dir.join("passwd"),
        "root:x:0:0::/:/bin/sh\napp:x:1000:1000::/:/bin/sh\n",
    )
    .expect("the passwd file is written");
    ok(
        dir,
        &[
            "key",
            "generate",
            "--userid",
            "Run <run@example.com>",
            "--out",
            &p("key.pgp"),
        ],
    );
    ok(
        dir,
        &[
            "key",
            "export",
            "--key",
            &p("key.pgp"),
            "--out",
            &p("key.pub"),
        ],
    );
    ok(dir, &["trust", "--prefix", "example.com", &p("key.pub")]);
    let arch = if cfg!(target_arch = "aarch64") {
        "arm64=/bin/busybox"
    } else {
        "amd64=/bin/busybox"
    };
    let passwd = format!("{}:/etc/passwd", p("passwd"));
    let script = "echo $GREETING; pwd; /bin/busybox id -u";
    ok(
        dir,
        &[
            "image",
            "build",
            "--name",
            "example.com/hello:1",
            "--arch",
            arch,
            "--file",
            &passwd,
            "--entrypoint",
            "/bin/busybox",
            "--cmd",
            "sh",
            "--cmd=-c",
            "--cmd",
            script,
            "--env",
            "GREETING=from-image",
            "--workdir",
            "/etc",
            "--user",
            "app",
            "--out",
            &p("layout"),
            "--sign-key",
            &p("key.pgp"),
        ],
    );
    ok(dir, &["fetch", &p("layout")]);
}

#[test]
fn a_fetched_image_runs_with_its_config_and_flags_override_it() {
    let dir = state_dir();
    fetch_signed_image(dir.path());

    let out = cli(dir.path(), &["run", "example.com/hello:1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "from-image\n/etc\n1000\n");

    let script = "echo $GREETING; pwd; /bin/busybox id -u; /bin/busybox hostname";
    let flags = [
        "--env",
        "GREETING=from-flag",
        "--workdir",
        "/srv",
        "--user",
        "0",
        "--hostname",
        "h1",
    ];
    let mut args = vec!["run", "example.com/hello:1"];
    args.extend(flags);
    args.extend(["--", "sh", "-c", script]);
    let out = cli(dir.path(), &args);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "from-flag\n/srv\n0\nh1\n");

    let list: serde_json::Value =
        serde_json::from_slice(&cli(dir.path(), &["list", "--format", "json"]).stdout).unwrap();
    let states = list.as_array().unwrap();
    assert_eq!(states.len(), 2);
    for state in states {
        assert_eq!(state["image"], "example.com/hello:1");
        assert!(
            state["manifest_digest"]
                .as_str()
                .unwrap()
                .starts_with("sha256:"),
            "{state}"
        );
        assert_eq!(state["exit_code"], 0);
    }
}

#[test]
fn an_unknown_image_is_a_clear_error() {
    let dir = state_dir();
    let out = cli(dir.path(), &["run", "example.com/absent:1"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr(&out).contains("image \"example.com/absent:1\""),
        "{}",
        stderr(&out)
    );
}

#[test]
fn gc_keeps_the_rootfs_of_a_removed_image_while_a_container_runs_on_it() {
    let dir = state_dir();
    fetch_signed_image(dir.path());
    let id = ok(
        dir.path(),
        &["run", "-d", "example.com/hello:1", "--", "sleep", "30"],
    )
    .trim()
    .to_owned();
    let digest = status_json(dir.path(), &id)["manifest_digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let rendered = dir
        .path()
        .join("rootfs")
        .join(digest.trim_start_matches("sha256:"));
    ok(dir.path(), &["image", "rm", "example.com/hello:1"]);

    let report: serde_json::Value =
        serde_json::from_str(&ok(dir.path(), &["gc", "--format", "json"])).unwrap();
    assert_eq!(report["rootfs_removed"], 0, "{report}");
    assert_eq!(report["rootfs_in_use"], 1, "{report}");
    assert!(rendered.join("rootfs/bin/busybox").exists());
    assert_eq!(status_json(dir.path(), &id)["status"], "running");

    ok(dir.path(), &["stop", &id, "--timeout", "1s"]);
    let report: serde_json::Value =
        serde_json::from_str(&ok(dir.path(), &["gc", "--format", "json"])).unwrap();
    assert_eq!(report["rootfs_removed"], 1, "{report}");
    assert_eq!(report["rootfs_in_use"], 0, "{report}");
    assert!(!rendered.exists());
}
