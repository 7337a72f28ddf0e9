//! etcd 3.4's JSON gateway wire format: proto3 JSON as grpc-gateway writes it (original field
//! names, 64-bit integers as strings, bytes as base64, enums by name, zero values left out),
//! one type per etcd message, each converting to or from the state machine's types.

pub mod cluster;
pub mod header;
pub mod kv;
pub mod lease;
pub mod scalar;
pub mod watch;

pub use header::Header;
