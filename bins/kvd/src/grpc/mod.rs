//! etcd's v3 gRPC API (KV, Watch, Lease, Cluster, Maintenance, Auth) over a
//! [`Backend`], served on the client listener beside the JSON gateway: requests with
//! `content-type: application/grpc` come here, as etcd routes them on its one port.
//!
//! The services share the gateway's checks, limits and errors ([`Gateway`]): a request
//! refused over JSON is refused the same way over gRPC, with etcd's code and message.
//!
//! The JSON gateway answers every call through these services ([`Grpc`]).
//!
//! Module map: `kv`, `watch`,
//! `lease`, `cluster`, `maintenance` (with `snapshot_chunks`), `auth`, `lock` and `election`
//! (one file per service), and `concurrency` (what the lock and election servers do through
//! the other services).

mod auth;
mod cluster;
mod concurrency;
mod election;
mod kv;
mod lease;
mod lock;
mod maintenance;
mod snapshot_chunks;
pub(crate) mod watch;

use std::fmt;

use bytes::Bytes;
use hyper::body::Body;
use hyper::header::CONTENT_TYPE;
use hyper::{Request, Response, Version};
use sinew_etcd_api::etcdserverpb::auth_server::{self, AuthServer};
use sinew_etcd_api::etcdserverpb::cluster_server::{self, ClusterServer};
use sinew_etcd_api::etcdserverpb::kv_server::{self, KvServer};
use sinew_etcd_api::etcdserverpb::lease_server::{self, LeaseServer};
use sinew_etcd_api::etcdserverpb::maintenance_server::{self, MaintenanceServer};
use sinew_etcd_api::etcdserverpb::watch_server::{self, WatchServer};
use sinew_etcd_api::etcdserverpb::ResponseHeader;
use sinew_etcd_api::v3electionpb::election_server::{self, ElectionServer};
use sinew_etcd_api::v3lockpb::lock_server::{self, LockServer};
use tower::ServiceExt;

use crate::gateway::{Backend, BackendError, Code, Gateway, Status};

/// Whether a request is for the gRPC services: HTTP/2 with a gRPC content type, the test
/// etcd's listener applies.
pub fn is_grpc<T>(request: &Request<T>) -> bool {
    request.version() == Version::HTTP_2
        && request
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.contains("application/grpc"))
}

/// etcd's gRPC services, each with its limits, routed by the service name that starts a
/// request's path (`/etcdserverpb.KV/Range`, ...).
pub struct Services<B> {
    grpc: Grpc<B>,
    kv: KvServer<Grpc<B>>,
    watch: WatchServer<Grpc<B>>,
    lease: LeaseServer<Grpc<B>>,
    cluster: ClusterServer<Grpc<B>>,
    maintenance: MaintenanceServer<Grpc<B>>,
    lock: LockServer<Grpc<B>>,
    election: ElectionServer<Grpc<B>>,
    auth: AuthServer<Grpc<B>>,
}

impl<B> fmt::Debug for Services<B> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.debug_struct("Services").finish_non_exhaustive()
    }
}

impl<B: Backend> Services<B> {
    /// The services over `gateway`'s backend, with its limits.
    pub fn new(gateway: Gateway<B>) -> Self {
        let grpc = Grpc::new(gateway);
        // etcd's gRPC server takes requests up to `--max-request-bytes` plus 512 KiB and
        // sends answers of any size.
        let limit = grpc.gateway.config.grpc_limit();
        macro_rules! limited {
            ($server:ident) => {
                $server::new(grpc.clone())
                    .max_decoding_message_size(limit)
                    .max_encoding_message_size(usize::MAX)
            };
        }
        Self {
            kv: limited!(KvServer),
            watch: limited!(WatchServer),
            lease: limited!(LeaseServer),
            cluster: limited!(ClusterServer),
            maintenance: limited!(MaintenanceServer),
            lock: limited!(LockServer),
            election: limited!(ElectionServer),
            auth: limited!(AuthServer),
            grpc,
        }
    }

    /// Answers one gRPC request. A request whose metadata says `hasleader: true` is refused
    /// while this member knows no leader, as etcd refuses it.
    pub async fn answer<T>(&self, request: Request<T>) -> Response<tonic::body::Body>
    where
        T: Body<Data = Bytes> + Send + 'static,
        T::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
    {
        let wants_leader = request
            .headers()
            .get("hasleader")
            .is_some_and(|value| value == "true");
        if wants_leader && !self.grpc.gateway.backend.has_leader() {
            return tonic::Status::from(Status::from(BackendError::NoLeader)).into_http();
        }
        let service = request.uri().path().split('/').nth(1).unwrap_or_default();
        let answered = match service {
            kv_server::SERVICE_NAME => self.kv.clone().oneshot(request).await,
            watch_server::SERVICE_NAME => self.watch.clone().oneshot(request).await,
            lease_server::SERVICE_NAME => self.lease.clone().oneshot(request).await,
            cluster_server::SERVICE_NAME => self.cluster.clone().oneshot(request).await,
            maintenance_server::SERVICE_NAME => self.maintenance.clone().oneshot(request).await,
            lock_server::SERVICE_NAME => self.lock.clone().oneshot(request).await,
            election_server::SERVICE_NAME => self.election.clone().oneshot(request).await,
            auth_server::SERVICE_NAME => self.auth.clone().oneshot(request).await,
            _ => {
                return tonic::Status::unimplemented(format!("unknown service {service}"))
                    .into_http()
            }
        };
        match answered {
            Ok(response) => response,
            Err(never) => match never {},
        }
    }
}

/// etcd's gRPC services over the backend a [`Gateway`] fronts.
pub struct Grpc<B> {
    gateway: Gateway<B>,
}

impl<B> fmt::Debug for Grpc<B> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Grpc")
            .field("gateway", &self.gateway)
            .finish()
    }
}

impl<B> Clone for Grpc<B> {
    fn clone(&self) -> Self {
        Self {
            gateway: self.gateway.clone(),
        }
    }
}

impl<B: Backend> Grpc<B> {
    /// The services over `gateway`'s backend, with its limits.
    pub(crate) fn new(gateway: Gateway<B>) -> Self {
        Self { gateway }
    }

    /// The header of an answer at store revision `revision`.
    fn header(&self, revision: i64) -> Option<ResponseHeader> {
        let node = self.gateway.backend.identity();
        Some(ResponseHeader {
            cluster_id: node.cluster_id,
            member_id: node.member_id,
            revision,
            raft_term: node.raft_term,
        })
    }
}

/// A broken request stream (a malformed message), which ends a streaming call as etcd
/// ends it.
fn broken_request(status: tonic::Status) -> Status {
    Status::new(Code::Unknown, status.message())
}

/// A service's answer as the JSON gateway reports it. The services answer only with etcd's
/// codes; any other is reported as `Unknown`.
impl From<tonic::Status> for Status {
    fn from(status: tonic::Status) -> Self {
        let code = match status.code() {
            tonic::Code::InvalidArgument => Code::InvalidArgument,
            tonic::Code::NotFound => Code::NotFound,
            tonic::Code::ResourceExhausted => Code::ResourceExhausted,
            tonic::Code::FailedPrecondition => Code::FailedPrecondition,
            tonic::Code::OutOfRange => Code::OutOfRange,
            tonic::Code::Internal => Code::Internal,
            tonic::Code::DataLoss => Code::DataLoss,
            tonic::Code::Unavailable => Code::Unavailable,
            _ => Code::Unknown,
        };
        Self::new(code, status.message())
    }
}

impl From<Status> for tonic::Status {
    fn from(status: Status) -> Self {
        let code = match status.code {
            Code::Unknown => tonic::Code::Unknown,
            Code::InvalidArgument => tonic::Code::InvalidArgument,
            Code::NotFound => tonic::Code::NotFound,
            Code::ResourceExhausted => tonic::Code::ResourceExhausted,
            Code::FailedPrecondition => tonic::Code::FailedPrecondition,
            Code::OutOfRange => tonic::Code::OutOfRange,
            Code::Internal => tonic::Code::Internal,
            Code::DataLoss => tonic::Code::DataLoss,
            Code::Unavailable => tonic::Code::Unavailable,
        };
        Self::new(code, status.message)
    }
}
