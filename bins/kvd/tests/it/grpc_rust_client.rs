//! The `etcd-client` crate (Rust, gRPC through tonic) against kvd and Debian's etcd 3.4: the
//! same scripted session (`tests/etcd-client-interop`) prints the same answers from both.
//!
//! That crate's build script compiles etcd's protos with `protoc`, so the session is a
//! package of its own, built here once `protobuf-compiler` is installed, and the workspace
//! builds without `protoc`.

use crate::support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::etcd::{tool, Etcd};

/// Builds the session program and returns its path.
fn session_program() -> PathBuf {
    let protoc = tool("protoc", &["protobuf-compiler"]);
    let manifest =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/etcd-client-interop/Cargo.toml");
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("etcd-client-interop");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let built = Command::new(cargo)
        .args(["build", "--locked", "--quiet", "--manifest-path"])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(&target)
        .env("PROTOC", protoc)
        .status()
        .expect("cargo runs");
    assert!(built.success(), "building {}", manifest.display());
    target.join("debug/sinew-etcd-client-interop")
}

fn session(program: &Path, server: &Etcd) -> String {
    let output = Command::new(program)
        .arg(server.addr.to_string())
        .output()
        .expect("the session runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[tokio::test]
async fn the_etcd_client_crate_gets_the_same_answers_from_kvd_and_etcd() {
    let program = tokio::task::spawn_blocking(session_program)
        .await
        .expect("build task");
    let (etcd, kvd) = tokio::join!(Etcd::start(), Etcd::start_kvd());
    let (program_etcd, program_kvd) = (program.clone(), program);
    let etcd_answers = tokio::task::spawn_blocking(move || session(&program_etcd, &etcd));
    let kvd_answers = tokio::task::spawn_blocking(move || session(&program_kvd, &kvd));
    let (etcd_answers, kvd_answers) = (
        etcd_answers.await.expect("etcd session"),
        kvd_answers.await.expect("kvd session"),
    );
    assert_eq!(kvd_answers, etcd_answers, "left: kvd, right: etcd");
    for expected in [
        "txn succeeded true at revision 5",
        "event PUT a=10 at 5 prev Some(Ok(\"1\"))",
        "lock key starts door/: true",
        "a lock without a lease holds one: true",
        "message: \"election: no leader\"",
        "message: \"etcdserver: mvcc: required revision has been compacted\"",
    ] {
        assert!(
            kvd_answers.contains(expected),
            "{expected} in {kvd_answers}"
        );
    }
}

/// The status of a unary call to `path` (`/service/method`) with an empty range request.
async fn call_path(server: &Etcd, path: &'static str) -> tonic::Status {
    use sinew_etcd_api::etcdserverpb::{RangeRequest, RangeResponse};
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", server.addr))
        .expect("endpoint")
        .timeout(std::time::Duration::from_secs(5))
        .connect()
        .await
        .expect("gRPC connection");
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("ready");
    let codec = tonic_prost::ProstCodec::<RangeRequest, RangeResponse>::default();
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(path);
    grpc.unary(tonic::Request::new(RangeRequest::default()), path, codec)
        .await
        .expect_err("no such call")
}

#[tokio::test]
async fn an_unknown_service_or_method_is_unimplemented_as_in_etcd() {
    let (etcd, kvd) = tokio::join!(Etcd::start(), Etcd::start_kvd());
    for path in ["/etcdserverpb.Nope/Range", "/etcdserverpb.KV/Nope"] {
        let (from_etcd, from_kvd) = (call_path(&etcd, path).await, call_path(&kvd, path).await);
        assert_eq!(
            from_etcd.code(),
            tonic::Code::Unimplemented,
            "{path}: {from_etcd:?}"
        );
        assert_eq!(from_kvd.code(), from_etcd.code(), "{path}: {from_kvd:?}");
    }
    let path = "/etcdserverpb.Nope/Range";
    let (from_etcd, from_kvd) = (call_path(&etcd, path).await, call_path(&kvd, path).await);
    assert_eq!(from_kvd.message(), from_etcd.message());
}
