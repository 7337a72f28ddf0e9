//! The clients of a fault run: each reads, writes and compares-and-sets a few keys, through
//! etcd's v3 JSON API or its gRPC API, one attempt per operation on one member (the next
//! member after a failure), and records every operation with its call and return times and
//! how it ended: answered, refused (it surely did not take effect), or unknown.

use std::time::{Duration, Instant};

use sinew_etcd_api::etcdserverpb::compare::{CompareResult, TargetUnion};
use sinew_etcd_api::etcdserverpb::kv_client::KvClient as GrpcKv;
use sinew_etcd_api::txn;
use sinew_proto::kv::{
    KvClient, KvClientError, PutRequest, RangeRequest, ResponseHeader, TxnRequest, TxnResponse,
};
use tonic::transport::{Channel, Endpoint};

use crate::linearizable::{Call, Operation, Outcome};

/// Where the keys of a fault run live.
pub const PREFIX: &str = "/faults/";

/// How long one operation may take before its outcome counts as unknown: longer than an
/// election, so most operations started during one still finish.
const OPERATION_TIMEOUT: Duration = Duration::from_millis(2500);

/// etcd's refusals that mean a write was never proposed: it did not and will not happen.
const NOT_PROPOSED: [&str; 4] = [
    "etcdserver: no leader",
    "etcdserver: not leader",
    "etcdserver: server stopped",
    "etcdserver: too many requests",
];

/// Which of etcd's client APIs a client uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Api {
    /// The v3 JSON gateway.
    Json,
    /// gRPC.
    Grpc,
}

impl Api {
    /// The API of client `index` of a run: JSON for even ones, gRPC for odd ones.
    pub fn by_turns(index: usize) -> Self {
        if index.is_multiple_of(2) {
            Self::Json
        } else {
            Self::Grpc
        }
    }

    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Grpc => "grpc",
        }
    }
}

/// How an operation ended, beyond what the register model needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// Answered; a write's answer carries the revision it made (or, for a compare-and-set
    /// that did not set, the revision it saw).
    Answered {
        /// The response header's revision.
        revision: i64,
    },
    /// Refused before it was proposed, with the refusal.
    Refused(String),
    /// No answer or an answer that leaves it open, with why.
    Unknown(String),
}

/// One recorded operation.
#[derive(Debug, Clone)]
pub struct Record {
    /// The operation as the linearizability checker takes it (a refused or unknown
    /// operation has outcome [`Outcome::Unknown`]).
    pub operation: Operation,
    /// The API it went through.
    pub api: Api,
    /// The member it went to.
    pub member: usize,
    /// How it ended.
    pub ending: Ending,
}

impl Record {
    /// The value a write or compare-and-set asked to store.
    pub fn written_value(&self) -> Option<&str> {
        match &self.operation.call {
            Call::Read => None,
            Call::Write(value) | Call::Cas { new: value, .. } => Some(value),
        }
    }

    /// Whether it is a write the store acknowledged as done: a write, or a successful
    /// compare-and-set.
    pub fn acknowledged_write(&self) -> bool {
        matches!(
            self.operation.outcome,
            Outcome::Written | Outcome::Cas(true)
        )
    }
}

/// A connection to one member through one API.
#[derive(Debug, Clone)]
enum Connection {
    Json(KvClient),
    Grpc(GrpcKv<Channel>),
}

/// The failure of one attempt, before it is classified.
#[derive(Debug)]
enum Failure {
    Json(KvClientError),
    Grpc(tonic::Status),
    Timeout,
}

impl Failure {
    /// Whether the operation surely did not take effect.
    fn refused(&self) -> bool {
        match self {
            // One endpoint only: unreachable means not sent, or refused as not proposed.
            Self::Json(KvClientError::Unreachable { .. }) => true,
            Self::Json(error) => error
                .server_message()
                .is_some_and(|message| NOT_PROPOSED.contains(&message)),
            Self::Grpc(status) => {
                NOT_PROPOSED.contains(&status.message())
                    || status.message().contains("error trying to connect")
            }
            Self::Timeout => false,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Json(error) => write!(f, "{error}"),
            Self::Grpc(status) => write!(f, "{:?}: {}", status.code(), status.message()),
            Self::Timeout => write!(f, "no answer within {OPERATION_TIMEOUT:?}"),
        }
    }
}

/// A client of a fault run: its connections to every member, the member it uses now, and
/// what it last knew of each key (for its compare-and-sets).
#[derive(Debug)]
pub struct Client {
    index: usize,
    api: Api,
    connections: Vec<Connection>,
    member: usize,
    sequence: u64,
    started: Instant,
}

impl Client {
    /// Client `index` of the run started at `started`, through `api`, to `endpoints`
    /// (starting with member `index % endpoints.len()`).
    pub fn new(
        index: usize,
        api: Api,
        endpoints: &[String],
        started: Instant,
    ) -> anyhow::Result<Self> {
        let connections = endpoints
            .iter()
            .map(|endpoint| {
                Ok(match api {
                    Api::Json => Connection::Json(KvClient::with_timeout(
                        [endpoint.clone()],
                        OPERATION_TIMEOUT,
                    )?),
                    Api::Grpc => Connection::Grpc(GrpcKv::new(
                        Endpoint::from_shared(endpoint.clone())?
                            .connect_timeout(Duration::from_millis(500))
                            .connect_lazy(),
                    )),
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Self {
            index,
            api,
            member: index % endpoints.len(),
            connections,
            sequence: 0,
            started,
        })
    }

    /// A value no other operation of the run writes.
    pub fn fresh_value(&mut self) -> String {
        self.sequence += 1;
        format!("{}.{}", self.index, self.sequence)
    }

    fn now(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// Runs `call` on `key` (under [`PREFIX`]) and records it; after a failure the next
    /// operation goes to the next member.
    pub async fn run(&mut self, key: &str, call: Call) -> Record {
        let member = self.member;
        let invoked = self.now();
        let attempt = tokio::time::timeout(
            OPERATION_TIMEOUT,
            send(
                &mut self.connections[member],
                &format!("{PREFIX}{key}"),
                &call,
            ),
        )
        .await
        .unwrap_or(Err(Failure::Timeout));
        let completed = self.now();
        let (outcome, ending) = match attempt {
            Ok((outcome, revision)) => (outcome, Ending::Answered { revision }),
            Err(failure) => {
                self.member = (self.member + 1) % self.connections.len();
                let ending = if failure.refused() {
                    Ending::Refused(failure.to_string())
                } else {
                    Ending::Unknown(failure.to_string())
                };
                (Outcome::Unknown, ending)
            }
        };
        Record {
            operation: Operation {
                client: self.index,
                key: key.to_owned(),
                call,
                outcome,
                invoked,
                completed,
            },
            api: self.api,
            member,
            ending,
        }
    }
}

/// Sends one operation and reads its outcome and the answer's revision.
async fn send(
    connection: &mut Connection,
    key: &str,
    call: &Call,
) -> Result<(Outcome, i64), Failure> {
    match call {
        Call::Read => {
            let request = RangeRequest {
                key: key.as_bytes().to_vec(),
                ..RangeRequest::default()
            };
            let response = match connection {
                Connection::Json(client) => client.range(&request).await.map_err(Failure::Json)?,
                Connection::Grpc(client) => client
                    .range(request)
                    .await
                    .map_err(Failure::Grpc)?
                    .into_inner(),
            };
            let value = response
                .kvs
                .first()
                .map(|kv| String::from_utf8_lossy(&kv.value).into_owned());
            Ok((Outcome::Read(value), revision(response.header)))
        }
        Call::Write(value) => {
            let request = PutRequest {
                key: key.as_bytes().to_vec(),
                value: value.as_bytes().to_vec(),
                ..PutRequest::default()
            };
            let header = match connection {
                Connection::Json(client) => {
                    client
                        .put_request(&request)
                        .await
                        .map_err(Failure::Json)?
                        .header
                }
                Connection::Grpc(client) => {
                    client
                        .put(request)
                        .await
                        .map_err(Failure::Grpc)?
                        .into_inner()
                        .header
                }
            };
            Ok((Outcome::Written, revision(header)))
        }
        Call::Cas { expected, new } => {
            let response = send_txn(connection, cas(key, expected.as_deref(), new)).await?;
            Ok((Outcome::Cas(response.succeeded), revision(response.header)))
        }
    }
}

async fn send_txn(
    connection: &mut Connection,
    request: TxnRequest,
) -> Result<TxnResponse, Failure> {
    match connection {
        Connection::Json(client) => client.txn(&request).await.map_err(Failure::Json),
        Connection::Grpc(client) => Ok(client
            .txn(request)
            .await
            .map_err(Failure::Grpc)?
            .into_inner()),
    }
}

/// A transaction that sets `key` to `new` if it holds `expected` (absent: `None`).
fn cas(key: &str, expected: Option<&str>, new: &str) -> TxnRequest {
    let compare = match expected {
        Some(value) => txn::compare(
            key,
            CompareResult::Equal,
            TargetUnion::Value(value.as_bytes().to_vec()),
        ),
        None => txn::compare(key, CompareResult::Equal, TargetUnion::CreateRevision(0)),
    };
    TxnRequest {
        compare: vec![compare],
        success: vec![txn::put(PutRequest {
            key: key.as_bytes().to_vec(),
            value: new.as_bytes().to_vec(),
            ..PutRequest::default()
        })],
        failure: Vec::new(),
    }
}

/// The revision an answer's header carries (0 without a header).
pub fn revision(header: Option<ResponseHeader>) -> i64 {
    header.map_or(0, |header| header.revision)
}
