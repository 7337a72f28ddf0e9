//! Image building through the CLI: determinism, multi-arch indexes, config, signing.

use crate::image_support as support;

use std::fs;
use std::process::Command;

use sinew_runner::image::{fetch, FetchError};
use support::*;

const BUSYBOX: &str = "/bin/busybox";

/// Generates a key with the CLI, trusts its public part for example.com; returns the key path.
fn cli_key(env: &Env) -> String {
    let key = env.path("key.pgp");
    env.ok(&[
        "key",
        "generate",
        "--userid",
        "Builds <b@example.com>",
        "--out",
        key.to_str().expect("the key path is UTF-8"),
    ]);
    let public = env.path("key.pub");
    env.ok(&[
        "key",
        "export",
        "--key",
        key.to_str().expect("the key path is UTF-8"),
        "--out",
        public.to_str().expect("the public key path is UTF-8"),
    ]);
    env.ok(&[
        "trust",
        "--prefix",
        "example.com",
        public.to_str().expect("the public key path is UTF-8"),
    ]);
    key.display().to_string()
}

fn build(env: &Env, out: &str, arches: &[&str], key: Option<&str>) -> String {
    let conf = env.path("app.conf");
    fs::write(&conf, "answer = 42\n").expect("app.conf is written");
    let out = env.path(out);
    let mut args = vec![
        "image".to_owned(),
        "build".to_owned(),
        "--name".to_owned(),
        "example.com/tool:1".to_owned(),
        "--file".to_owned(),
        format!("{}:/etc/app.conf", conf.display()),
        "--entrypoint".to_owned(),
        "/bin/busybox".to_owned(),
        "--cmd".to_owned(),
        "echo".to_owned(),
        "--env".to_owned(),
        "GREETING=hi".to_owned(),
        "--workdir".to_owned(),
        "/etc".to_owned(),
        "--user".to_owned(),
        "1000:1000".to_owned(),
        "--out".to_owned(),
        out.display().to_string(),
    ];
    for arch in arches {
        args.push("--arch".to_owned());
        args.push((*arch).to_owned());
    }
    if let Some(key) = key {
        args.push("--sign-key".to_owned());
        args.push(key.to_owned());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    env.ok(&args)
}

/// An ELF header (64-bit little-endian) for `machine` followed by filler.
fn fake_elf(machine: u16) -> Vec<u8> {
    let mut elf = vec![0x7f, b'E', b'L', b'F', 2, 1, 1, 0];
    elf.resize(18, 0);
    elf.extend_from_slice(&machine.to_le_bytes());
    elf.extend_from_slice(b"not really code");
    elf
}

fn layout_files(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut files = vec![(
        "index.json".to_owned(),
        fs::read(dir.join("index.json")).expect("index.json is read"),
    )];
    let mut blobs: Vec<_> = fs::read_dir(dir.join("blobs/sha256"))
        .expect("the blobs directory is listed")
        .map(|e| {
            let e = e.expect("a blob entry is read");
            (
                e.file_name().to_string_lossy().into_owned(),
                fs::read(e.path()).expect("a blob is read"),
            )
        })
        .collect();
    blobs.sort();
    files.extend(blobs);
    files
}

#[test]
fn build_is_deterministic() {
    let env = Env::new();
    let arm_binary = env.path("arm-binary");
    fs::write(&arm_binary, fake_elf(183)).unwrap();
    let arm = format!("arm64={}", arm_binary.display());
    let first = build(&env, "a", &["x86_64=/bin/busybox"], None);
    let second = build(&env, "b", &["x86_64=/bin/busybox"], None);
    assert_eq!(first, second, "same input must print the same digests");
    assert_eq!(
        layout_files(&env.path("a")),
        layout_files(&env.path("b")),
        "same input, same bytes"
    );
    let third = build(&env, "c", &["amd64=/bin/busybox", &arm], None);
    assert_ne!(first, third);
    assert_eq!(third, build(&env, "d", &["amd64=/bin/busybox", &arm], None));
}

#[test]
fn signed_build_fetches_renders_and_runs_in_a_chroot() {
    let env = Env::new();
    let key = cli_key(&env);
    build(&env, "img", &["x86_64=/bin/busybox"], Some(&key));
    assert!(env.path("img.asc").is_file());
    let printed = env.ok(&["fetch", env.path("img").to_str().unwrap()]);
    assert!(
        printed.starts_with("example.com/tool:1\tsha256:"),
        "{printed}"
    );
    let rendered = env.store().resolve("example.com/tool:1").unwrap();
    assert_eq!(rendered.config.entrypoint, vec!["/bin/busybox"]);
    assert_eq!(rendered.config.cmd, vec!["echo"]);
    assert_eq!(rendered.config.env, vec!["GREETING=hi"]);
    assert_eq!(rendered.config.working_dir.as_deref(), Some("/etc"));
    assert_eq!(rendered.config.user.as_deref(), Some("1000:1000"));
    assert_eq!(
        fs::read_to_string(rendered.rootfs.join("etc/app.conf")).unwrap(),
        "answer = 42\n"
    );
    let out = Command::new("chroot")
        .arg(&rendered.rootfs)
        .args(["/bin/busybox", "cat", "/etc/app.conf"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, b"answer = 42\n");
}

#[test]
fn multi_arch_index_picks_the_requested_architecture() {
    let env = Env::new();
    let key = cli_key(&env);
    let arm_binary = env.path("arm-binary");
    fs::write(&arm_binary, fake_elf(183)).unwrap();
    build(
        &env,
        "img",
        &[
            "x86_64=/bin/busybox",
            &format!("aarch64={}", arm_binary.display()),
        ],
        Some(&key),
    );
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(env.path("img/index.json")).unwrap()).unwrap();
    assert_eq!(
        index["manifests"][0]["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );

    let mut options = env.options(&env.path("img"));
    options.arch = Some("aarch64".to_owned());
    let record = fetch(&env.store(), &env.keys(), &options).unwrap();
    assert_eq!(record.architecture, "arm64");
    let rendered = env.store().resolve("example.com/tool:1").unwrap();
    assert_eq!(
        fs::read(rendered.rootfs.join("bin/busybox")).unwrap(),
        fake_elf(183)
    );

    env.ok(&[
        "fetch",
        "--name",
        "example.com/tool:host",
        env.path("img").to_str().unwrap(),
    ]);
    let host = env.store().resolve("example.com/tool:host").unwrap();
    assert_eq!(
        fs::read(host.rootfs.join("bin/busybox")).unwrap(),
        fs::read(BUSYBOX).unwrap()
    );

    options.arch = Some("riscv64".to_owned());
    options.name = Some("example.com/tool:riscv".to_owned());
    match fetch(&env.store(), &env.keys(), &options).unwrap_err() {
        FetchError::NoPlatform {
            arch, available, ..
        } => {
            assert_eq!(arch, "riscv64");
            assert_eq!(available, vec!["linux/amd64", "linux/arm64"]);
        }
        other => panic!("expected NoPlatform, got {other}"),
    }
    let out = env.run(&[
        "fetch",
        "--arch",
        "riscv64",
        env.path("img").to_str().unwrap(),
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("available: linux/amd64, linux/arm64"));
}

#[test]
fn build_refuses_bad_input_with_clear_errors() {
    let env = Env::new();
    let out = env.run(&[
        "image",
        "build",
        "--name",
        "example.com/x:1",
        "--arch",
        "vax=/bin/busybox",
        "--out",
        env.path("o").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown architecture \"vax\""));
    let out = env.run(&[
        "image",
        "build",
        "--name",
        "example.com/x:1",
        "--arch",
        "x86_64=/bin/busybox",
        "--file",
        "/etc/hostname:../escape",
        "--out",
        env.path("o").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("must be an absolute path"));
    let out_dir = env.path("o");
    let out = env.run(&[
        "image",
        "build",
        "--name",
        "example.com/x:1",
        "--arch",
        "aarch64=/bin/busybox",
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("/bin/busybox is built for amd64, not for arm64"));
    let out = env.run(&[
        "image",
        "build",
        "--name",
        "example.com/x:1",
        "--arch",
        "x86_64=/etc/passwd",
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/etc/passwd is not an ELF executable"));
}
