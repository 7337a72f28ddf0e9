//! An async client for etcd's v3 JSON gateway (kvd's and etcd's own), with endpoint
//! failover as etcd's clients do it.
//!
//! A call goes to the endpoint that answered last. When that endpoint cannot be reached, or
//! answers that it has no leader, the call moves on to the next endpoint, and so on once
//! round the list. A request that reached an endpoint but got no answer, or whose answer
//! was a timeout or a leader change, is retried elsewhere only if it is a read; a write fails
//! with [`KvClientError::Ambiguous`], because it may have been applied.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::CONTENT_TYPE;
use hyper::{Method, Request};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::error::KvClientError;
use super::types::*;
use sinew_etcd_api::txn;

/// How long a call may take on one endpoint by default.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether a request only reads, and so may be retried after an unanswered attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Read,
    Write,
}

pub(super) type Http = Client<HttpConnector, Full<Bytes>>;

#[derive(Debug)]
pub(super) struct Inner {
    pub(super) endpoints: Vec<String>,
    preferred: AtomicUsize,
    pub(super) http: Http,
    timeout: Duration,
}

/// A client for a KV cluster; clones share connections and the preferred endpoint.
#[derive(Debug, Clone)]
pub struct KvClient {
    pub(super) inner: Arc<Inner>,
}

impl KvClient {
    /// A client for these endpoints (`http://host:port`, several for failover).
    pub fn new<I, S>(endpoints: I) -> Result<Self, KvClientError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::with_timeout(endpoints, DEFAULT_TIMEOUT)
    }

    /// A client whose calls give up on an endpoint after `timeout`.
    pub fn with_timeout<I, S>(endpoints: I, timeout: Duration) -> Result<Self, KvClientError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let endpoints: Vec<String> = endpoints
            .into_iter()
            .map(|endpoint| endpoint.into().trim_end_matches('/').to_owned())
            .collect();
        if endpoints.is_empty() {
            return Err(KvClientError::BadEndpoint {
                endpoint: String::new(),
                reason: "no endpoint given".to_owned(),
            });
        }
        for endpoint in &endpoints {
            if !endpoint.starts_with("http://") {
                return Err(KvClientError::BadEndpoint {
                    endpoint: endpoint.clone(),
                    reason: "expected http://host:port".to_owned(),
                });
            }
        }
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(2)));
        // A member that died without closing its connections (a crashed machine) sends
        // nothing more: TCP keep-alive notices within about 5 s, so a watch waiting on it
        // resumes elsewhere and a pooled connection to it is dropped.
        connector.set_keepalive(Some(Duration::from_secs(2)));
        connector.set_keepalive_interval(Some(Duration::from_secs(1)));
        connector.set_keepalive_retries(Some(3));
        Ok(Self {
            inner: Arc::new(Inner {
                endpoints,
                preferred: AtomicUsize::new(0),
                http: Client::builder(TokioExecutor::new()).build(connector),
                timeout,
            }),
        })
    }

    /// The endpoints, in failover order.
    pub fn endpoints(&self) -> &[String] {
        &self.inner.endpoints
    }

    /// The endpoints starting with the preferred one.
    pub(super) fn rotation(&self) -> impl Iterator<Item = (usize, &str)> {
        let count = self.inner.endpoints.len();
        let first = self.inner.preferred.load(Ordering::Relaxed) % count;
        (0..count).map(move |step| {
            let index = (first + step) % count;
            (index, self.inner.endpoints[index].as_str())
        })
    }

    pub(super) fn prefer(&self, index: usize) {
        self.inner.preferred.store(index, Ordering::Relaxed);
    }

    /// POSTs `request` to `path`, failing over across endpoints.
    pub(super) async fn call<Req, Resp>(
        &self,
        path: &str,
        request: &Req,
        kind: Kind,
    ) -> Result<Resp, KvClientError>
    where
        Req: Serialize + ?Sized,
        Resp: DeserializeOwned,
    {
        let body = encode(request)?;
        let mut last = String::new();
        for (index, endpoint) in self.rotation() {
            match self.call_one(endpoint, path, body.clone()).await {
                Ok(answer) => {
                    self.prefer(index);
                    return Ok(answer);
                }
                Err(Attempt::NotSent(reason)) => last = format!("{endpoint}: {reason}"),
                Err(Attempt::Unanswered(reason)) if kind == Kind::Read => {
                    last = format!("{endpoint}: {reason}");
                }
                Err(Attempt::Unanswered(reason)) => {
                    // The next call starts elsewhere: a dead member's pooled connection
                    // would otherwise stall every write for the whole timeout.
                    self.prefer(index + 1);
                    return Err(KvClientError::Ambiguous {
                        endpoint: endpoint.to_owned(),
                        reason,
                    });
                }
                Err(Attempt::Refused(error)) if kind == Kind::Write && error.in_doubt() => {
                    self.prefer(index + 1);
                    return Err(KvClientError::Ambiguous {
                        endpoint: endpoint.to_owned(),
                        reason: error.to_string(),
                    });
                }
                Err(Attempt::Refused(error)) if error.try_elsewhere() => last = error.to_string(),
                Err(Attempt::Refused(error)) => return Err(error),
            }
        }
        Err(KvClientError::Unreachable {
            endpoints: self.inner.endpoints.clone(),
            last,
        })
    }

    async fn call_one<Resp: DeserializeOwned>(
        &self,
        endpoint: &str,
        path: &str,
        body: Bytes,
    ) -> Result<Resp, Attempt> {
        let response = tokio::time::timeout(self.inner.timeout, self.send(endpoint, path, body))
            .await
            .map_err(|_| {
                Attempt::Unanswered(format!("no answer within {:?}", self.inner.timeout))
            })??;
        let status = response.status();
        let bytes = tokio::time::timeout(self.inner.timeout, response.into_body().collect())
            .await
            .map_err(|_| Attempt::Unanswered("the answer stalled".to_owned()))?
            .map_err(|error| Attempt::Unanswered(error.to_string()))?
            .to_bytes();
        if !status.is_success() {
            return Err(Attempt::Refused(refusal(endpoint, status.as_u16(), &bytes)));
        }
        serde_json::from_slice(&bytes).map_err(|error| {
            Attempt::Refused(KvClientError::Decode {
                endpoint: endpoint.to_owned(),
                reason: error.to_string(),
            })
        })
    }

    /// Sends one POST; a connection that could not be made is told apart from one that
    /// broke after the request went out.
    pub(super) async fn send(
        &self,
        endpoint: &str,
        path: &str,
        body: Bytes,
    ) -> Result<hyper::Response<hyper::body::Incoming>, Attempt> {
        let request = Request::builder()
            .method(Method::POST)
            .uri(format!("{endpoint}{path}"))
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(body))
            .map_err(|error| Attempt::NotSent(error.to_string()))?;
        self.inner.http.request(request).await.map_err(|error| {
            if error.is_connect() {
                Attempt::NotSent(error.to_string())
            } else {
                Attempt::Unanswered(error.to_string())
            }
        })
    }

    /// The value of `key`, if it exists.
    pub async fn get(&self, key: impl Into<Vec<u8>>) -> Result<Option<KeyValue>, KvClientError> {
        let response = self
            .range(&RangeRequest {
                key: key.into(),
                ..RangeRequest::default()
            })
            .await?;
        Ok(response.kvs.into_iter().next())
    }

    /// Every key under `prefix`, in key order.
    pub async fn get_prefix(
        &self,
        prefix: impl Into<Vec<u8>>,
    ) -> Result<RangeResponse, KvClientError> {
        let key = prefix.into();
        self.range(&RangeRequest {
            range_end: prefix_end(&key),
            key,
            ..RangeRequest::default()
        })
        .await
    }

    /// A range read (`/v3/kv/range`).
    pub async fn range(&self, request: &RangeRequest) -> Result<RangeResponse, KvClientError> {
        self.call("/v3/kv/range", request, Kind::Read).await
    }

    /// Sets `key` to `value`.
    pub async fn put(
        &self,
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
    ) -> Result<PutResponse, KvClientError> {
        self.put_request(&PutRequest {
            key: key.into(),
            value: value.into(),
            ..PutRequest::default()
        })
        .await
    }

    /// A put with every option (`/v3/kv/put`).
    pub async fn put_request(&self, request: &PutRequest) -> Result<PutResponse, KvClientError> {
        self.call("/v3/kv/put", request, Kind::Write).await
    }

    /// A delete (`/v3/kv/deleterange`).
    pub async fn delete(
        &self,
        request: &DeleteRangeRequest,
    ) -> Result<DeleteRangeResponse, KvClientError> {
        self.call("/v3/kv/deleterange", request, Kind::Write).await
    }

    /// A transaction (`/v3/kv/txn`).
    pub async fn txn(&self, request: &TxnRequest) -> Result<TxnResponse, KvClientError> {
        let kind = if txn::is_read_only(request) {
            Kind::Read
        } else {
            Kind::Write
        };
        self.call("/v3/kv/txn", request, kind).await
    }

    /// Drops history below `revision`.
    pub async fn compact(&self, revision: i64) -> Result<CompactionResponse, KvClientError> {
        let request = CompactionRequest {
            revision,
            physical: false,
        };
        self.call("/v3/kv/compaction", &request, Kind::Write).await
    }

    /// Grants a lease of `ttl` seconds.
    pub async fn lease_grant(&self, ttl: i64) -> Result<LeaseGrantResponse, KvClientError> {
        let request = LeaseGrantRequest { ttl, id: 0 };
        self.call("/v3/lease/grant", &request, Kind::Write).await
    }

    /// Revokes a lease, deleting its keys.
    pub async fn lease_revoke(&self, id: i64) -> Result<LeaseRevokeResponse, KvClientError> {
        let request = LeaseRevokeRequest { id };
        self.call("/v3/lease/revoke", &request, Kind::Write).await
    }

    /// Renews a lease once; the answer's TTL is 0 if the lease no longer exists.
    pub async fn lease_keepalive_once(
        &self,
        id: i64,
    ) -> Result<LeaseKeepAliveResponse, KvClientError> {
        let request = LeaseKeepAliveRequest { id };
        let message: StreamMessage<LeaseKeepAliveResponse> = self
            .call("/v3/lease/keepalive", &request, Kind::Read)
            .await?;
        stream_result(message, "/v3/lease/keepalive")
    }

    /// A lease's remaining TTL (-1 if it does not exist), with its keys if asked.
    pub async fn lease_time_to_live(
        &self,
        id: i64,
        keys: bool,
    ) -> Result<LeaseTimeToLiveResponse, KvClientError> {
        let request = LeaseTimeToLiveRequest { id, keys };
        self.call("/v3/lease/timetolive", &request, Kind::Read)
            .await
    }

    /// Every lease.
    pub async fn leases(&self) -> Result<LeaseLeasesResponse, KvClientError> {
        self.call("/v3/lease/leases", &LeaseLeasesRequest {}, Kind::Read)
            .await
    }

    /// The members.
    pub async fn member_list(&self) -> Result<MemberListResponse, KvClientError> {
        let request = MemberListRequest::default();
        self.call("/v3/cluster/member/list", &request, Kind::Read)
            .await
    }

    /// Adds a member at `peer_urls`.
    pub async fn member_add(
        &self,
        peer_urls: Vec<String>,
        is_learner: bool,
    ) -> Result<MemberAddResponse, KvClientError> {
        let request = MemberAddRequest {
            peer_ur_ls: peer_urls,
            is_learner,
        };
        self.call("/v3/cluster/member/add", &request, Kind::Write)
            .await
    }

    /// Removes a member.
    pub async fn member_remove(&self, id: u64) -> Result<MemberRemoveResponse, KvClientError> {
        let request = MemberRemoveRequest { id };
        self.call("/v3/cluster/member/remove", &request, Kind::Write)
            .await
    }

    /// Makes a learner a voter.
    pub async fn member_promote(&self, id: u64) -> Result<MemberPromoteResponse, KvClientError> {
        let request = MemberPromoteRequest { id };
        self.call("/v3/cluster/member/promote", &request, Kind::Write)
            .await
    }

    /// A copy of the store, as the first endpoint that answers streams it.
    pub async fn snapshot(&self) -> Result<Vec<u8>, KvClientError> {
        let chunks: String = self
            .call_text("/v3/maintenance/snapshot", &SnapshotRequest {})
            .await?;
        let mut blob = Vec::new();
        for line in chunks.lines().filter(|line| !line.trim().is_empty()) {
            let message: StreamMessage<SnapshotResponse> =
                serde_json::from_str(line).map_err(|error| KvClientError::Decode {
                    endpoint: "/v3/maintenance/snapshot".to_owned(),
                    reason: error.to_string(),
                })?;
            blob.extend(stream_result(message, "/v3/maintenance/snapshot")?.blob);
        }
        Ok(blob)
    }

    /// A read whose answer is a stream of JSON lines, returned whole.
    async fn call_text<Req: Serialize>(
        &self,
        path: &str,
        request: &Req,
    ) -> Result<String, KvClientError> {
        let body = encode(request)?;
        let mut last = String::new();
        for (index, endpoint) in self.rotation() {
            let attempt = async {
                let response = self.send(endpoint, path, body.clone()).await?;
                let status = response.status();
                let bytes = response
                    .into_body()
                    .collect()
                    .await
                    .map_err(|error| Attempt::Unanswered(error.to_string()))?
                    .to_bytes();
                if !status.is_success() {
                    return Err(Attempt::Refused(refusal(endpoint, status.as_u16(), &bytes)));
                }
                Ok(String::from_utf8_lossy(&bytes).into_owned())
            };
            match attempt.await {
                Ok(text) => {
                    self.prefer(index);
                    return Ok(text);
                }
                Err(Attempt::NotSent(reason) | Attempt::Unanswered(reason)) => {
                    last = format!("{endpoint}: {reason}");
                }
                Err(Attempt::Refused(error)) if error.try_elsewhere() => last = error.to_string(),
                Err(Attempt::Refused(error)) => return Err(error),
            }
        }
        Err(KvClientError::Unreachable {
            endpoints: self.inner.endpoints.clone(),
            last,
        })
    }

    /// Lists, raises or clears alarms (`/v3/maintenance/alarm`).
    pub async fn alarm(&self, request: &AlarmRequest) -> Result<AlarmResponse, KvClientError> {
        let kind = if request.action() == AlarmAction::Get {
            Kind::Read
        } else {
            Kind::Write
        };
        self.call("/v3/maintenance/alarm", request, kind).await
    }

    /// Asks the leader at `endpoint` to hand the lead to member `target` (no failover:
    /// only the leader can).
    pub async fn move_leader(
        &self,
        endpoint: &str,
        target: u64,
    ) -> Result<MoveLeaderResponse, KvClientError> {
        let body = encode(&MoveLeaderRequest { target_id: target })?;
        let endpoint = endpoint.trim_end_matches('/');
        self.call_one(endpoint, "/v3/maintenance/transfer-leadership", body)
            .await
            .map_err(|attempt| attempt.into_error(endpoint))
    }

    /// The status of one endpoint (no failover: it describes that member).
    pub async fn status(&self, endpoint: &str) -> Result<StatusResponse, KvClientError> {
        let body = Bytes::from_static(b"{}");
        let endpoint = endpoint.trim_end_matches('/');
        self.call_one(endpoint, "/v3/maintenance/status", body)
            .await
            .map_err(|attempt| attempt.into_error(endpoint))
    }
}

/// How one attempt on one endpoint failed.
pub(super) enum Attempt {
    /// The request never left: try the next endpoint.
    NotSent(String),
    /// It left but no answer came back.
    Unanswered(String),
    /// The endpoint answered with a refusal.
    Refused(KvClientError),
}

impl Attempt {
    pub(super) fn into_error(self, endpoint: &str) -> KvClientError {
        match self {
            Self::NotSent(reason) | Self::Unanswered(reason) => KvClientError::Unreachable {
                endpoints: vec![endpoint.to_owned()],
                last: reason,
            },
            Self::Refused(error) => error,
        }
    }
}

/// A request body.
fn encode<Req: Serialize + ?Sized>(request: &Req) -> Result<Bytes, KvClientError> {
    serde_json::to_vec(request)
        .map(Bytes::from)
        .map_err(|error| KvClientError::Decode {
            endpoint: String::new(),
            reason: format!("cannot encode the request: {error}"),
        })
}

/// The error an HTTP failure carries: etcd's error body if there is one.
pub(super) fn refusal(endpoint: &str, status: u16, body: &[u8]) -> KvClientError {
    match serde_json::from_slice::<GatewayError>(body) {
        Ok(error) if !error.error.is_empty() || !error.message.is_empty() => {
            KvClientError::Server {
                endpoint: endpoint.to_owned(),
                error,
            }
        }
        _ => KvClientError::Http {
            endpoint: endpoint.to_owned(),
            status,
            body: String::from_utf8_lossy(body).into_owned(),
        },
    }
}

fn stream_result<T>(message: StreamMessage<T>, path: &str) -> Result<T, KvClientError> {
    match (message.result, message.error) {
        (Some(result), _) => Ok(result),
        (None, Some(error)) => Err(KvClientError::Server {
            endpoint: path.to_owned(),
            error,
        }),
        (None, None) => Err(KvClientError::Decode {
            endpoint: path.to_owned(),
            reason: "a stream message with neither result nor error".to_owned(),
        }),
    }
}

/// The end of the range holding every key that starts with `prefix` (etcd's
/// `GetPrefixRangeEnd`): `"\0"`, every key, for an empty prefix or one of only 0xff bytes.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}
