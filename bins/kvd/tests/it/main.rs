//! kvd's integration tests, one binary (its areas run side by side: most of them wait on
//! servers, etcd or clusters rather than on the CPU):
//!
//! - `store`: etcd's v3 semantics of the state machine;
//! - `raft_log_crash`: the durable Raft log under SIGKILL;
//! - `cluster`: in-process clusters on loopback;
//! - `gateway_api`, `gateway_watch`: the JSON gateway over an in-memory backend;
//! - `gateway_etcd`, `v2_http`, `grpc_etcdctl`, `grpc_rust_client`: kvd side by side with a
//!   real etcd 3.4, through the JSON gateway, the v2 API, `etcdctl` and the `etcd-client`
//!   crate;
//! - `support`: what they share.

mod cluster;
mod gateway_api;
mod gateway_etcd;
mod gateway_watch;
mod grpc_etcdctl;
mod grpc_rust_client;
mod raft_log_crash;
mod store;
mod support;
mod v2_http;
