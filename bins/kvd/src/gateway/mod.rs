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
//! Module map: [`backend`] (the trait and its data), [`error`] (etcd's codes and messages),
//! `wire` (the JSON messages), `route` (paths to endpoints), `body` (reading and writing
//! bodies), `size` (etcd's request size limits), `kv`, `lease`, `cluster` (unary calls),
//! `watch` and `keepalive` (streaming calls), `server` (dispatch and the HTTP server).

pub mod backend;
mod body;
mod cluster;
pub mod error;
mod keepalive;
mod kv;
mod lease;
mod route;
mod server;
mod size;
pub(crate) mod snapshot;
mod watch;
mod wire;

pub use backend::{
    Backend, LeaseKeepAlive, LeaseList, LeaseTimeToLive, Member, MemberAdded, NodeIdentity,
    NodeStatus, StateSnapshot, WatchHistory,
};
pub use body::GatewayBody;
pub use error::{BackendError, Code, Status};
pub use server::{handle, serve, Config, Gateway, Handled};
pub use size::{DEFAULT_MAX_REQUEST_BYTES, GRPC_OVERHEAD_BYTES};
