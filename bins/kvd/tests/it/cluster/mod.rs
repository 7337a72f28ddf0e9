//! In-process kvd clusters on loopback: each node a real [`Node`] with its own data directory
//! and peer listener, talking Raft over HTTP.

mod grpc;
mod harness;
mod leases;
mod membership;
mod replication;
