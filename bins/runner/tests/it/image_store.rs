//! The store through the CLI: list, rm, gc, HTTP and HTTPS sources, verified reads, concurrent fetches.

use crate::image_support as support;

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use sinew_runner::image::{fetch, BlobError, Digest, FetchError, StoreError};
use support::*;

fn signed(env: &Env, dir: &str, name: &str, content: &[u8]) -> PathBuf {
    let cert = new_cert("store");
    env.trust(&cert, Some("example.com"));
    signed_layout(
        env,
        dir,
        name,
        &cert,
        &[Entry::Dir("data"), Entry::File("data/file", content)],
    )
}

/// Serves files under `root` over HTTP/1.1 on 127.0.0.1, or over HTTPS when `tls` is
/// given; returns the base URL. Failed connections (a client refusing the certificate) are
/// dropped and the next one served.
fn serve(root: PathBuf, tls: Option<Arc<rustls::ServerConfig>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port is bound");
    let scheme = if tls.is_some() { "https" } else { "http" };
    let base = format!(
        "{scheme}://{}",
        listener.local_addr().expect("the listener has an address")
    );
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            match &tls {
                None => answer(&root, stream),
                Some(config) => {
                    let session = rustls::ServerConnection::new(config.clone())
                        .expect("a TLS session is created");
                    let mut stream = rustls::StreamOwned::new(session, stream);
                    answer(&root, &mut stream);
                    stream.conn.send_close_notify();
                    let _ = stream.flush();
                }
            }
        }
    });
    base
}

/// Answers one GET with the file under `root`, a 302 to the content of `<file>.location`
/// when that exists instead, or 404.
fn answer(root: &Path, mut stream: impl Read + Write) {
    let mut request = String::new();
    if BufReader::new(&mut stream).read_line(&mut request).is_err() {
        return;
    }
    let path = request
        .split(' ')
        .nth(1)
        .unwrap_or("/")
        .trim_start_matches('/');
    let head = |status: &str, len: usize| {
        format!("HTTP/1.1 {status}\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n")
    };
    if let Ok(location) = fs::read_to_string(root.join(format!("{path}.location"))) {
        let _ = write!(
            stream,
            "HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        return;
    }
    match fs::read(root.join(path)) {
        Ok(body) if !path.contains("..") => {
            let _ = stream.write_all(head("200 OK", body.len()).as_bytes());
            let _ = stream.write_all(&body);
        }
        _ => {
            let _ = stream.write_all(head("404 Not Found", 0).as_bytes());
        }
    }
}

/// A signed layout at `site/app` plus its archive `site/app.tar` with the same signature
/// beside it; returns the `site` directory.
fn site(env: &Env, name: &str, content: &[u8]) -> PathBuf {
    let layout = signed(env, "site/app", name, content);
    let status = Command::new("tar")
        .args(["-cf", "site/app.tar", "-C", "site/app", "."])
        .current_dir(env.tmp.path())
        .status()
        .expect("tar runs");
    assert!(status.success());
    fs::copy(
        format!("{}.asc", layout.display()),
        env.path("site/app.tar.asc"),
    )
    .expect("the signature is copied beside the archive");
    env.path("site")
}

/// A test CA: its certificate (PEM) and the issuer that signs server certificates.
struct TestCa {
    pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl TestCa {
    fn new() -> TestCa {
        let mut params =
            rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA parameters are valid");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "sinew-run test CA");
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let key = rcgen::KeyPair::generate().expect("a CA key is generated");
        let pem = params
            .self_signed(&key)
            .expect("the CA certificate is self-signed")
            .pem();
        TestCa {
            pem,
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// A rustls server configuration presenting a certificate for `names`, issued by this CA.
    fn server(&self, names: &[&str]) -> Arc<rustls::ServerConfig> {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let key = rcgen::KeyPair::generate().expect("a server key is generated");
        let cert = rcgen::CertificateParams::new(names)
            .expect("server certificate parameters are valid")
            .signed_by(&key, &self.issuer)
            .expect("the CA signs the server certificate");
        let key = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der())
            .expect("the server key converts to DER");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("the ring provider supports the default versions")
            .with_no_client_auth()
            .with_single_cert(vec![cert.der().clone()], key)
            .expect("the server certificate is accepted");
        Arc::new(config)
    }
}

fn tree_size(path: &Path) -> u64 {
    let meta = fs::symlink_metadata(path).expect("the path's metadata is read");
    if !meta.is_dir() {
        return meta.len();
    }
    fs::read_dir(path)
        .expect("the directory is listed")
        .map(|e| tree_size(&e.expect("a directory entry is read").path()))
        .sum()
}

fn entries(dir: &Path) -> usize {
    fs::read_dir(dir).expect("the directory is listed").count()
}

#[test]
fn list_rm_and_gc_free_exactly_the_unreferenced_content() {
    let env = Env::new();
    let one = signed(&env, "one", "example.com/one:1", b"first");
    let two = signed(&env, "two", "example.com/two:1", b"second");
    env.ok(&["fetch", one.to_str().unwrap()]);
    env.ok(&["fetch", two.to_str().unwrap()]);

    let listed: serde_json::Value =
        serde_json::from_str(&env.ok(&["image", "list", "--format", "json"])).unwrap();
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["example.com/one:1", "example.com/two:1"]);
    let one_digest = listed[0]["manifest_digest"].as_str().unwrap().to_owned();
    let one_size = listed[0]["size"].as_u64().unwrap();
    assert!(one_size > 0 && listed[0]["fetched_unix"].as_u64().unwrap() > 0);
    let table = env.ok(&["image", "list"]);
    assert!(
        table.lines().count() == 3 && table.contains("example.com/two:1"),
        "{table}"
    );

    assert_eq!(entries(&env.state().join("blobs/sha256")), 6);
    let one_rendered = tree_size(
        &env.state()
            .join("rootfs")
            .join(&one_digest["sha256:".len()..]),
    );
    assert!(one_rendered >= b"first".len() as u64);
    let removed = env.ok(&[
        "image",
        "rm",
        &one_digest["sha256:".len().."sha256:".len() + 10],
    ]);
    assert!(removed.contains("example.com/one:1"), "{removed}");
    let report: serde_json::Value =
        serde_json::from_str(&env.ok(&["gc", "--format", "json"])).unwrap();
    assert_eq!(report["blobs_removed"], 3);
    assert_eq!(report["rootfs_removed"], 1);
    assert_eq!(
        report["bytes_freed"].as_u64().unwrap(),
        one_size + one_rendered
    );
    assert_eq!(entries(&env.state().join("blobs/sha256")), 3);
    assert!(env.store().resolve("example.com/one:1").is_err());
    let kept = env.store().resolve("example.com/two:1").unwrap();
    assert_eq!(fs::read(kept.rootfs.join("data/file")).unwrap(), b"second");

    let again: serde_json::Value =
        serde_json::from_str(&env.ok(&["gc", "--format", "json"])).unwrap();
    assert_eq!(again["bytes_freed"], 0);

    let mut dead = Command::new("true").spawn().unwrap();
    dead.wait().unwrap();
    let abandoned = env.state().join(format!("tmp/stage-{}-abc", dead.id()));
    fs::create_dir_all(&abandoned).unwrap();
    fs::write(abandoned.join("blob"), b"12345").unwrap();
    let live = env
        .state()
        .join(format!("tmp/stage-{}-abc", std::process::id()));
    fs::create_dir_all(&live).unwrap();
    let swept: serde_json::Value =
        serde_json::from_str(&env.ok(&["gc", "--format", "json"])).unwrap();
    assert_eq!(swept["staging_removed"], 1);
    assert_eq!(swept["bytes_freed"], 5);
    assert!(
        !abandoned.exists() && live.exists(),
        "only staging of dead fetches is swept"
    );
    let out = env.run(&["image", "rm", "example.com/none:1"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no image named"));
}

#[test]
fn fetch_over_http_from_a_layout_and_from_an_archive() {
    let env = Env::new();
    let base = serve(site(&env, "example.com/http:1", b"over http"), None);

    env.ok(&["fetch", &format!("{base}/app")]);
    let rendered = env.store().resolve("example.com/http:1").unwrap();
    assert_eq!(
        fs::read(rendered.rootfs.join("data/file")).unwrap(),
        b"over http"
    );

    env.ok(&[
        "fetch",
        "--name",
        "example.com/http:archive",
        &format!("{base}/app.tar"),
    ]);
    assert!(env.store().resolve("example.com/http:archive").is_ok());

    let out = env.run(&[
        "fetch",
        "--name",
        "example.com/http:2",
        &format!("{base}/app"),
        "--signature",
        &format!("{base}/missing.asc"),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is unsigned"));

    fs::write(
        env.path("site/moved.tar.location"),
        format!("{base}/app.tar"),
    )
    .unwrap();
    let out = env.run(&["fetch", &format!("{base}/moved.tar")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && stderr.contains("redirects are not followed")
            && stderr.contains(&format!("{base}/app.tar")),
        "{stderr}"
    );
}

#[test]
fn fetch_over_https_trusts_the_given_ca_and_nothing_else() {
    let env = Env::new();
    let root = site(&env, "example.com/https:1", b"over https");
    let ca = TestCa::new();
    let ca_file = env.path("ca.pem");
    fs::write(&ca_file, &ca.pem).unwrap();
    let ca_file = ca_file.to_str().unwrap();
    let base = serve(root.clone(), Some(ca.server(&["127.0.0.1", "localhost"])));

    let out = env.run(&["fetch", &format!("{base}/app.tar")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("certificate not trusted") && stderr.contains("--ca-cert"),
        "{stderr}"
    );
    env.assert_store_empty();

    env.ok(&["fetch", "--ca-cert", ca_file, &format!("{base}/app.tar")]);
    let rendered = env.store().resolve("example.com/https:1").unwrap();
    assert_eq!(
        fs::read(rendered.rootfs.join("data/file")).unwrap(),
        b"over https"
    );
    let localhost = base.replace("127.0.0.1", "localhost");
    let out = Command::new(env!("CARGO_BIN_EXE_sinew-run"))
        .arg("--dir")
        .arg(env.state())
        .args(["fetch", "--name", "example.com/https:layout"])
        .arg(format!("{localhost}/app"))
        .env("SINEW_RUN_CA_CERT", ca_file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(env.store().resolve("example.com/https:layout").is_ok());

    let elsewhere = serve(root, Some(ca.server(&["images.example.com"])));
    let out = env.run(&[
        "fetch",
        "--name",
        "example.com/https:2",
        "--ca-cert",
        ca_file,
        &format!("{elsewhere}/app.tar"),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("certificate name mismatch") && stderr.contains("images.example.com"),
        "{stderr}"
    );
    assert!(env.store().resolve("example.com/https:2").is_err());

    let out = env.run(&[
        "fetch",
        "--ca-cert",
        "/nonexistent/ca.pem",
        &format!("{base}/app"),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("--ca-cert /nonexistent/ca.pem"),
        "{stderr}"
    );
}

#[test]
fn stored_blobs_are_checked_when_read_back() {
    let env = Env::new();
    let layout = signed(&env, "img", "example.com/check:1", b"check");
    let record = fetch(&env.store(), &env.keys(), &env.options(&layout)).unwrap();
    let (_, manifest) = read_manifest(&layout);
    let stored = env
        .state()
        .join("blobs/sha256")
        .join(manifest.layers[0].digest.trim_start_matches("sha256:"));
    fs::write(&stored, b"rotten").unwrap();
    env.store().remove(&record.name).unwrap();
    match fetch(&env.store(), &env.keys(), &env.options(&layout)).unwrap_err() {
        FetchError::Store(StoreError::Blob(BlobError::Corrupt { expected, actual })) => {
            assert_eq!(expected.to_string(), manifest.layers[0].digest);
            assert_eq!(actual, Digest::of(b"rotten"));
        }
        other => panic!("expected a corrupt blob, got {other}"),
    }
}

#[test]
fn concurrent_fetches_keep_the_store_consistent() {
    let env = Env::new();
    let layout = signed(&env, "img", "example.com/race:1", b"race");
    let children: Vec<_> = (0..6)
        .map(|i| {
            Command::new(env!("CARGO_BIN_EXE_sinew-run"))
                .arg("--dir")
                .arg(env.state())
                .args([
                    "fetch",
                    "--name",
                    &format!("example.com/race:{}", i % 3),
                    layout.to_str().unwrap(),
                ])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(env.store().list().unwrap().len(), 3);
    assert_eq!(entries(&env.state().join("rootfs")), 1);
    assert_eq!(entries(&env.state().join("tmp")), 0);
    for blob in fs::read_dir(env.state().join("blobs/sha256")).unwrap() {
        let blob = blob.unwrap();
        let digest = Digest::of(&fs::read(blob.path()).unwrap());
        assert_eq!(digest.hex(), blob.file_name().to_str().unwrap());
    }
    for i in 0..3 {
        let rendered = env
            .store()
            .resolve(&format!("example.com/race:{i}"))
            .unwrap();
        assert_eq!(
            fs::read(rendered.rootfs.join("data/file")).unwrap(),
            b"race"
        );
    }
}
