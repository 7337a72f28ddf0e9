//! Compiles etcd's vendored `.proto` files with protox (pure Rust, so no `protoc` is needed)
//! and generates prost messages and tonic services for the enabled features, and with
//! `json`, the JSON mapping etcd's gateway uses (`json.rs`).

mod json;

use std::io;
use std::path::PathBuf;

/// The files that declare etcd's services; protox follows their imports.
const SERVICES: &[&str] = &[
    "etcd/api/etcdserverpb/rpc.proto",
    "etcd/server/etcdserver/api/v3lock/v3lockpb/v3lock.proto",
    "etcd/server/etcdserver/api/v3election/v3electionpb/v3election.proto",
];

fn main() -> io::Result<()> {
    println!("cargo:rerun-if-changed=proto");
    let mut files = protox::compile(SERVICES, ["proto"]).map_err(io::Error::other)?;
    // The HTTP and OpenAPI annotations are only options on etcd's messages: nothing needs
    // their types, so only etcd's own packages become Rust.
    files.file.retain(|file| file.name().starts_with("etcd/"));
    if std::env::var_os("CARGO_FEATURE_JSON").is_some() {
        let out = PathBuf::from(
            std::env::var_os("OUT_DIR").ok_or_else(|| io::Error::other("OUT_DIR is not set"))?,
        );
        std::fs::write(out.join("etcd_api_json.rs"), json::generate(&files))?;
    }
    tonic_prost_build::configure()
        .build_server(std::env::var_os("CARGO_FEATURE_SERVER").is_some())
        .build_client(std::env::var_os("CARGO_FEATURE_CLIENT").is_some())
        .build_transport(false)
        .include_file("etcd_api.rs")
        .compile_fds(files)
}
