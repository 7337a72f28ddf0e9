//! kvd's etcd v3 JSON gateway: the HTTP/JSON API etcd 3.4 serves through grpc-gateway
//! (`/v3/kv/range`, `/v3/kv/put`, `/v3/kv/txn`, `/v3/watch`, `/v3/lease/*`,
//! `/v3/cluster/member/*`, `/v3/maintenance/*`, and the same under `/v3beta/`), with
//! etcd's wire format and error answers, so etcd's HTTP clients work against kvd.
//!
//! The gateway is generic over a [`Backend`], the node it fronts: the Raft node in kvd, a
//! bare [`crate::v3::Store`] in tests. [`serve`] runs an HTTP/1.1 server for it; [`handle`] (or
//! [`Gateway::handle`]) answers one request and hands back requests that are not its own,
//! so another router can serve `/v2/*`, `/version` and `/health` beside it.
//!
//! Requests and answers are etcd's protobuf messages (`sinew_etcd_api`) in the JSON mapping
//! etcd's gateway uses, and every call is answered by the gRPC service ([`crate::grpc`]),
//! as etcd's gateway forwards to its gRPC server: one model, one behaviour.
//!
//! Module map: [`backend`] (the trait and its data), [`error`] (etcd's codes and messages),
//! `route` (paths to endpoints), `body` (reading and writing bodies), `size` (etcd's request
//! size limits), `kv` and `cluster` (the checks etcd makes before a request reaches the
//! backend, shared with gRPC), `unary` and `streams` (the calls), `server` (dispatch and the
//! HTTP server).

pub mod backend;
mod body;
mod cluster;
pub mod error;
mod kv;
mod route;
mod server;
mod size;
pub(crate) mod streams;
mod unary;

pub use backend::{
    Backend, LeaseKeepAlive, LeaseList, LeaseTimeToLive, Member, MemberAdded, NodeIdentity,
    StateSnapshot, StatusResponse, WatchHistory,
};
pub use body::GatewayBody;
pub use error::{BackendError, Code, Status};
pub use server::{handle, serve, Config, Gateway, Handled};
pub use size::{DEFAULT_MAX_REQUEST_BYTES, GRPC_OVERHEAD_BYTES};
