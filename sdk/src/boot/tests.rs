use std::fs;
use std::path::Path;
use std::time::Duration;

use super::*;

fn profile(id: &str) -> Profile {
    Profile {
        id: id.into(),
        boot: NetBoot {
            kernel: "http://mirror.invalid/vmlinuz".into(),
            ..NetBoot::default()
        },
        ..Profile::default()
    }
}

fn group(id: &str, profile: &str, selector: &[(&str, &str)]) -> Group {
    Group {
        id: id.into(),
        profile: profile.into(),
        selector: selector
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        ..Group::default()
    }
}

/// A label as a pair.
type Label = (&'static str, &'static str);

#[test]
fn the_group_with_most_matching_selectors_wins_and_ties_go_by_id() {
    let config = ConfigSource::default()
        .profile(profile("p"))
        .group(group("default", "p", &[]))
        .group(group("amd", "p", &[("arch", "x86_64")]))
        .group(group(
            "b-node",
            "p",
            &[("arch", "x86_64"), ("hostname", "n1")],
        ))
        .group(group("a-node", "p", &[("arch", "x86_64"), ("uuid", "u1")]))
        .group(group(
            "one-mac",
            "p",
            &[
                ("mac", "52-54-00-00-00-01"),
                ("arch", "x86_64"),
                ("uuid", "u1"),
            ],
        ))
        .extra_label("os")
        .group(group("installed", "p", &[("os", "installed")]))
        .check()
        .unwrap();
    let cases: &[(&[Label], Option<&str>)] = &[
        (&[], Some("default")),
        (&[("arch", "arm64")], Some("default")),
        (&[("arch", "x86_64")], Some("amd")),
        (&[("arch", "x86_64"), ("hostname", "n1")], Some("b-node")),
        // Two groups of two selectors match: the first by id.
        (
            &[("arch", "x86_64"), ("hostname", "n1"), ("uuid", "u1")],
            Some("a-node"),
        ),
        (
            &[
                ("arch", "x86_64"),
                ("uuid", "u1"),
                ("mac", "52:54:00:00:00:01"),
            ],
            Some("one-mac"),
        ),
        (&[("os", "installed")], Some("installed")),
    ];
    for (labels, expected) in cases {
        let chosen = config.select(&Labels::from_pairs(labels.iter().copied()));
        assert_eq!(chosen.map(|g| g.id.as_str()), *expected, "{labels:?}");
    }
    let without_default = ConfigSource::default()
        .profile(profile("p"))
        .group(group("amd", "p", &[("arch", "x86_64")]))
        .check()
        .unwrap();
    assert!(without_default.select(&Labels::default()).is_none());
}

/// The error a configuration with `change` applied to a good one gets.
fn refusal(change: impl FnOnce(ConfigSource) -> ConfigSource) -> ConfigError {
    let good =
        ConfigSource::default()
            .profile(profile("p"))
            .group(group("g", "p", &[("arch", "x86_64")]));
    change(good).check().expect_err("a bad configuration")
}

#[test]
fn each_kind_of_bad_configuration_is_refused_naming_the_field_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("vmlinuz"), b"kernel").unwrap();
    let with_asset = |mut p: Profile| {
        p.boot.kernel = "/assets/vmlinuz".into();
        p
    };
    // Profile q booting the asset, expecting `hex` for the asset at `url`.
    let with_digest = |url: &str, hex: String| {
        let mut p = with_asset(profile("q"));
        p.digests.insert(url.into(), hex);
        p
    };
    let cases: Vec<(ConfigError, &str, &str)> = vec![
        (
            refusal(|c| c.group(group("g2", "p", &[])).group(group("g3", "p", &[]))),
            "selector",
            "a second default group",
        ),
        (
            refusal(|c| c.group(group("g2", "p", &[("arch", "x86_64")]))),
            "selector",
            "the same selector as another group",
        ),
        (
            refusal(|c| c.group(group("g2", "missing", &[]))),
            "profile",
            "no profile with id \"missing\"",
        ),
        (
            refusal(|c| c.group(group("g2", "p", &[("colour", "red")]))),
            "selector.colour",
            "unknown label",
        ),
        (
            refusal(|c| c.group(group("g2", "p", &[("mac", "not-a-mac")]))),
            "selector.mac",
            "invalid MAC address",
        ),
        (
            refusal(|c| c.group(group("bad id", "p", &[]))),
            "id",
            "expected letters",
        ),
        (
            refusal(|c| {
                let mut p = profile("q");
                p.boot.kernel = String::new();
                c.profile(p)
            }),
            "boot.kernel",
            "expected the kernel's URL",
        ),
        (
            refusal(|c| {
                let mut p = profile("q");
                p.generic_id = Some("nope.tmpl".into());
                c.profile(p)
            }),
            "generic_id",
            "no template \"nope.tmpl\"",
        ),
        (refusal(|c| c.template("t", "{% if %}")), "template", ""),
        (
            refusal(|c| c.profile(with_asset(profile("q")))),
            "boot.kernel",
            "no assets directory",
        ),
        (
            refusal(|c| {
                let mut p = with_asset(profile("q"));
                p.boot.initrd = vec!["/assets/initrd".into()];
                c.assets(dir.path()).profile(p)
            }),
            "boot.initrd",
            "cannot be read",
        ),
        (
            refusal(|c| {
                c.assets(dir.path()).profile(with_digest(
                    "/assets/vmlinuz",
                    Digest::of(b"other").to_hex(),
                ))
            }),
            "boot.kernel",
            "but",
        ),
        (
            refusal(|c| {
                c.assets(dir.path())
                    .profile(with_digest("/assets/vmlinuz", "abc".into()))
            }),
            "digests./assets/vmlinuz",
            "not a SHA-256 digest",
        ),
        (
            refusal(|c| {
                c.assets(dir.path())
                    .profile(with_digest("/assets/other", Digest::of(b"kernel").to_hex()))
            }),
            "digests./assets/other",
            "does not boot",
        ),
        (
            refusal(|c| c.profile(profile("p"))),
            "id",
            "a second profile",
        ),
    ];
    for (error, field, reason) in cases {
        assert_eq!(error.field, field, "{error}");
        assert!(error.to_string().contains(reason), "{error}");
    }
}

fn write(dir: &Path, name: &str, text: &str) {
    let path = dir.join(name);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

#[test]
fn matchbox_files_load_and_bad_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "assets/vmlinuz", "kernel");
    write(
        d,
        "profiles/worker.json",
        r#"{"id": "worker", "name": "Worker",
            "boot": {"kernel": "/assets/vmlinuz", "initrd": [], "args": ["console=ttyS0"]},
            "ignition_id": "worker.yaml", "generic_id": "worker.env"}"#,
    );
    write(d, "generic/worker.env", "ROLE={{ role }}\n");
    write(
        d,
        "groups/default.json",
        r#"{"id": "default", "profile": "worker", "metadata": {"role": "worker"}}"#,
    );
    let config = ConfigSource::read_dir(d).unwrap().check().unwrap();
    assert_eq!(config.groups().len(), 1);

    write(
        d,
        "groups/typo.json",
        r#"{"id": "typo", "profile": "worker", "selectr": {}}"#,
    );
    let error = ConfigSource::read_dir(d).unwrap_err();
    assert!(error.file.ends_with("groups/typo.json"), "{error}");
    assert!(error.reason.contains("unknown field `selectr`"), "{error}");

    write(
        d,
        "groups/typo.json",
        r#"{"id": "other", "profile": "worker"}"#,
    );
    let error = ConfigSource::read_dir(d).unwrap_err();
    assert_eq!(error.field, "id", "{error}");

    write(d, "groups/typo.json", "{");
    let error = ConfigSource::read_dir(d).unwrap_err();
    assert!(error.file.ends_with("groups/typo.json"), "{error}");
}

/// A server on loopback for `config`, and a client for it.
async fn serving(config: Config) -> (BootServer, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = BootServer::start(listener, config).unwrap();
    let url = server.url();
    (server, url)
}

/// GET or HEAD `path`: status, headers as sent, body.
async fn fetch(url: &str, method: &str, path: &str, range: Option<&str>) -> (u16, String, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let range = range.map(|r| format!("Range: {r}\r\n")).unwrap_or_default();
    let request =
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{range}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let split = answer.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&answer[..split]).into_owned();
    let status = head[9..12].parse().unwrap();
    (status, head, answer[split + 4..].to_vec())
}

fn served_config(dir: &Path) -> Config {
    write(dir, "assets/vmlinuz", "0123456789");
    write(dir, "assets/initrd.img", "initrd");
    let mut worker = Profile {
        id: "worker".into(),
        boot: NetBoot {
            kernel: "/assets/vmlinuz".into(),
            initrd: vec!["/assets/initrd.img".into()],
            args: vec!["console=ttyS0".into()],
        },
        generic_id: Some("env".into()),
        ..Profile::default()
    };
    worker
        .digests
        .insert("/assets/vmlinuz".into(), Digest::of(b"0123456789").to_hex());
    let mut broken = profile("broken");
    broken.generic_id = Some("broken".into());
    let mut node = group("node", "worker", &[("mac", "52:54:00:00:00:01")]);
    node.metadata.insert("role".into(), "worker".into());
    ConfigSource::default()
        .assets(&dir.join("assets"))
        .template("env", "ROLE={{ role }} MAC={{ mac }}\n")
        .template("broken", "{{ missing_variable }}")
        .profile(worker)
        .profile(broken)
        .group(node)
        .group(group("other", "broken", &[("hostname", "broken")]))
        .check()
        .unwrap()
}

#[tokio::test]
async fn the_server_walks_a_machine_through_its_boot_and_serves_its_assets() {
    let dir = tempfile::tempdir().unwrap();
    let (server, url) = serving(served_config(dir.path())).await;

    let (status, _, body) = fetch(&url, "GET", "/boot.ipxe", None).await;
    assert_eq!((status, body.as_slice()), (200, BOOTSTRAP.as_bytes()));

    let (status, _, body) =
        fetch(&url, "GET", "/ipxe?mac=52-54-00-00-00-01&arch=x86_64", None).await;
    assert_eq!(status, 200);
    let script = String::from_utf8(body).unwrap();
    assert!(script.starts_with("#!ipxe\nkernel /assets/vmlinuz?mac=52%3A54%3A00%3A00%3A00%3A01&arch=x86_64 console=ttyS0\ninitrd /assets/initrd.img?"), "{script}");

    // The same profile for GRUB, on the server as the request named it (port dropped:
    // GRUB 2.06 reaches servers on port 80), and title-case headers, which GRUB's HTTP
    // client needs to see the length.
    let (status, head, body) = fetch(&url, "GET", "/grub?mac=52:54:00:00:00:01", None).await;
    assert_eq!(status, 200);
    assert!(head.contains("\r\nContent-Length: "), "{head}");
    assert_eq!(
        String::from_utf8(body).unwrap(),
        "linux '(http,127.0.0.1)/assets/vmlinuz?mac=52%3A54%3A00%3A00%3A00%3A01' 'console=ttyS0'\n\
         initrd '(http,127.0.0.1)/assets/initrd.img?mac=52%3A54%3A00%3A00%3A00%3A01'\nboot\n"
    );

    let (status, _, body) = fetch(&url, "GET", "/ipxe?mac=52-54-00-00-00-09", None).await;
    assert_eq!(
        (status, body.as_slice()),
        (404, &b"no group matches this machine\n"[..])
    );

    let (status, _, body) = fetch(&url, "GET", "/metadata?mac=52:54:00:00:00:01", None).await;
    assert_eq!(status, 200);
    assert!(String::from_utf8(body).unwrap().contains("ROLE=worker\n"));

    let (status, _, body) = fetch(&url, "GET", "/generic?mac=52:54:00:00:00:01", None).await;
    assert_eq!(
        (status, body.as_slice()),
        (200, &b"ROLE=worker MAC=52:54:00:00:00:01\n"[..])
    );

    // A template that fails is a 500 with its reason, not a silent 404.
    let (status, _, body) = fetch(&url, "GET", "/generic?hostname=broken", None).await;
    assert_eq!(status, 500);
    assert!(String::from_utf8(body)
        .unwrap()
        .contains("missing_variable"));

    let kernel = "/assets/vmlinuz?mac=52%3A54%3A00%3A00%3A00%3A01";
    let (status, head, body) = fetch(&url, "GET", kernel, None).await;
    assert_eq!((status, body.as_slice()), (200, &b"0123456789"[..]));
    assert!(head.contains("Content-Length: 10"), "{head}");
    assert!(head.contains("Accept-Ranges: bytes"), "{head}");
    let (status, head, body) = fetch(&url, "HEAD", kernel, None).await;
    assert_eq!((status, body.len()), (200, 0));
    assert!(head.contains("Content-Length: 10"), "{head}");
    let (status, head, body) = fetch(&url, "GET", kernel, Some("bytes=2-4")).await;
    assert_eq!((status, body.as_slice()), (206, &b"234"[..]));
    assert!(head.contains("Content-Range: bytes 2-4/10"), "{head}");
    let (status, head, _) = fetch(&url, "GET", kernel, Some("bytes=20-")).await;
    assert_eq!(status, 416);
    assert!(head.contains("Content-Range: bytes */10"), "{head}");

    let by_digest = format!("/assets/sha256/{}", Digest::of(b"initrd"));
    let (status, _, body) = fetch(&url, "GET", &by_digest, None).await;
    assert_eq!((status, body.as_slice()), (200, &b"initrd"[..]));
    let (status, _, _) = fetch(&url, "GET", "/assets/../profiles", None).await;
    assert_eq!(status, 404);
    let (status, _, body) = fetch(&url, "GET", "/assets/sha256/not-hex", None).await;
    assert_eq!(status, 404);
    assert!(String::from_utf8(body)
        .unwrap()
        .contains("not a SHA-256 digest"));

    let fetched = server
        .wait_for(
            |e| e.is_kernel_of("52:54:00:00:00:01"),
            Duration::from_secs(1),
        )
        .await
        .unwrap();
    assert_eq!(fetched.status, 200);
    let scripts: Vec<_> = server
        .events()
        .into_iter()
        .filter(|e| matches!(e.fetched, Fetched::Script { .. }))
        .map(|e| (e.status, e.fetched))
        .collect();
    assert_eq!(
        scripts,
        vec![
            (
                200,
                Fetched::Script {
                    profile: Some("worker".into())
                }
            ),
            // `/grub`
            (
                200,
                Fetched::Script {
                    profile: Some("worker".into())
                }
            ),
            (404, Fetched::Script { profile: None }),
        ]
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_tampered_asset_is_refused_and_a_reload_takes_a_new_image() {
    let dir = tempfile::tempdir().unwrap();
    let (server, url) = serving(served_config(dir.path())).await;
    write(dir.path(), "assets/vmlinuz", "tampered!!");
    let (status, _, body) = fetch(&url, "GET", "/assets/vmlinuz", None).await;
    assert_eq!(status, 403);
    assert!(String::from_utf8(body).unwrap().contains("is expected"));
    let waited = server
        .wait_for(
            |e| e.is_kernel_of("52:54:00:00:00:01"),
            Duration::from_millis(100),
        )
        .await;
    assert!(matches!(waited, Err(WaitError::Timeout(_))));

    // The operator builds a new image and points the profile at it.
    write(dir.path(), "assets/vmlinuz", "0123456789");
    write(dir.path(), "assets/vmlinuz-2", "new kernel");
    let mut next = Profile {
        id: "worker".into(),
        boot: NetBoot {
            kernel: "/assets/vmlinuz-2".into(),
            ..NetBoot::default()
        },
        ..Profile::default()
    };
    next.digests.insert(
        "/assets/vmlinuz-2".into(),
        Digest::of(b"new kernel").to_hex(),
    );
    let config = ConfigSource::default()
        .assets(&dir.path().join("assets"))
        .profile(next)
        .group(group("node", "worker", &[]))
        .check()
        .unwrap();
    server.reload(config);
    let (_, _, body) = fetch(&url, "GET", "/ipxe", None).await;
    assert_eq!(body, b"#!ipxe\nkernel /assets/vmlinuz-2\nboot\n");
    server.shutdown().await;
}

#[test]
fn grub_scripts_quote_every_word_and_name_http_servers_as_grub_devices() {
    let boot = NetBoot {
        kernel: "http://mirror.invalid/k/vmlinuz".into(),
        initrd: vec!["--name main /assets/a".into(), "/assets/b".into()],
        args: vec!["quote='x'".into(), "$root;reboot".into()],
    };
    let labels = Labels::from_pairs([("mac", "52:54:00:00:00:01")]);
    assert_eq!(
        render::grub_script(&boot, &labels, "10.0.2.100"),
        "linux '(http,mirror.invalid)/k/vmlinuz' 'quote='\\''x'\\''' '$root;reboot'\n\
         initrd '(http,10.0.2.100)/assets/a?mac=52%3A54%3A00%3A00%3A00%3A01' \
         '(http,10.0.2.100)/assets/b?mac=52%3A54%3A00%3A00%3A00%3A01'\nboot\n"
    );
}
