//! etcd's v3 API as Rust types: `etcdserverpb` (KV, Watch, Lease, Cluster, Maintenance,
//! Auth), `mvccpb` (key-values and events), `authpb`, `v3lockpb` and `v3electionpb`,
//! generated at build time from the `.proto` files etcd publishes (vendored in `proto/`,
//! see its README for their origin and licences).
//!
//! With the `server` feature each service has a tonic server (`kv_server::KvServer`, ...);
//! with `client`, a tonic client generic over the transport; with `json`, every message is
//! `serde::Serialize` and `serde::Deserialize` as etcd's JSON gateway writes and reads it
//! ([`json`]).

#![allow(missing_docs, clippy::all, missing_debug_implementations)]

include!(concat!(env!("OUT_DIR"), "/etcd_api.rs"));

#[cfg(feature = "json")]
pub mod json;
mod revision;
pub mod txn;

pub use revision::AtRevision;

#[cfg(feature = "json")]
include!(concat!(env!("OUT_DIR"), "/etcd_api_json.rs"));
