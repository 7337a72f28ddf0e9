//! kvd's v2 keys API side by side with real etcd 3.4 (`--enable-v2`): the same requests go
//! to both, and statuses, error codes, headers and JSON must match once the legitimately
//! different parts (expiry timestamps, kvd's own version and cluster figures) are set
//! aside. kvd runs as a single in-memory node: `v2::Store` behind a mutex, served by
//! hyper on loopback. Debian's `etcdctl` in v2 mode drives both too.

use crate::support;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use sinew_kvd::v2::{
    self, Backend, Command, Error, Event, LeaderInfo, LeaderStats, Member, MemberError, Op,
    RaftStatus, SelfStats, Store,
};
use support::etcd::Etcd;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;

// ---------------------------------------------------------------------------------------
// A single-node in-memory backend: every proposal applies at once.

const MEMBER_ID: u64 = 0x8e9e_05c5_2164_694d;

struct MemoryBackend {
    store: Mutex<Store>,
    events: broadcast::Sender<Event>,
    members: Mutex<Vec<Member>>,
}

impl MemoryBackend {
    fn new(client_url: String) -> Self {
        let member = Member {
            id: MEMBER_ID,
            name: "kvd".into(),
            peer_urls: vec!["http://127.0.0.1:2380".into()],
            client_urls: vec![client_url],
        };
        Self {
            store: Mutex::new(Store::new()),
            events: broadcast::channel(64).0,
            members: Mutex::new(vec![member]),
        }
    }

    fn apply(&self, command: &Command) -> Result<Vec<Event>, Error> {
        let events = self
            .store
            .lock()
            .expect("a panicking test thread poisoned the lock")
            .apply(command)?;
        for event in &events {
            // No receiver is not an error: nobody is waiting.
            let _ = self.events.send(event.clone());
        }
        Ok(events)
    }
}

impl Backend for MemoryBackend {
    async fn propose(&self, command: Command) -> Result<Vec<Event>, Error> {
        self.apply(&command)
    }

    async fn read<R, F>(&self, _linearizable: bool, read: F) -> Result<R, Error>
    where
        F: FnOnce(&Store) -> R + Send + 'static,
        R: Send + 'static,
    {
        Ok(read(
            &self
                .store
                .lock()
                .expect("a panicking test thread poisoned the lock"),
        ))
    }

    fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    fn alarms(&self) -> Vec<sinew_kvd::alarm::Alarm> {
        Vec::new()
    }

    fn raft_status(&self) -> RaftStatus {
        RaftStatus {
            index: self
                .store
                .lock()
                .expect("a panicking test thread poisoned the lock")
                .index(),
            term: 1,
        }
    }

    fn cluster_id(&self) -> u64 {
        0xd1cf_af99_9eb9_7a2a
    }

    async fn members(&self) -> Result<Vec<Member>, MemberError> {
        Ok(self
            .members
            .lock()
            .expect("a panicking test thread poisoned the lock")
            .clone())
    }

    async fn add_member(&self, peer_urls: Vec<String>) -> Result<Member, MemberError> {
        let mut members = self
            .members
            .lock()
            .expect("a panicking test thread poisoned the lock");
        let taken = members
            .iter()
            .any(|m| m.peer_urls.iter().any(|url| peer_urls.contains(url)));
        if taken {
            return Err(MemberError::PeerUrlExists);
        }
        let member = Member {
            id: MEMBER_ID + members.len() as u64,
            peer_urls,
            ..Member::default()
        };
        members.push(member.clone());
        Ok(member)
    }

    async fn remove_member(&self, id: u64) -> Result<(), MemberError> {
        let mut members = self
            .members
            .lock()
            .expect("a panicking test thread poisoned the lock");
        let before = members.len();
        members.retain(|member| member.id != id);
        if members.len() == before {
            return Err(MemberError::NotFound);
        }
        Ok(())
    }

    async fn update_member(&self, id: u64, peer_urls: Vec<String>) -> Result<(), MemberError> {
        let mut members = self
            .members
            .lock()
            .expect("a panicking test thread poisoned the lock");
        let member = members
            .iter_mut()
            .find(|member| member.id == id)
            .ok_or(MemberError::NotFound)?;
        member.peer_urls = peer_urls;
        Ok(())
    }

    fn self_stats(&self) -> SelfStats {
        SelfStats {
            name: "kvd".into(),
            id: MEMBER_ID,
            state: "StateLeader".into(),
            start_time: "2026-11-22T06:00:00Z".into(),
            leader_info: LeaderInfo {
                leader: MEMBER_ID,
                uptime: "1m0s".into(),
                start_time: "2026-11-22T06:00:00Z".into(),
            },
            recv_append_request_cnt: 0,
            send_append_request_cnt: 0,
        }
    }

    fn leader_stats(&self) -> Option<LeaderStats> {
        Some(LeaderStats {
            leader: MEMBER_ID,
            followers: BTreeMap::new(),
        })
    }
}

fn now_ms() -> u64 {
    let elapsed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970");
    u64::try_from(elapsed.as_millis()).expect("milliseconds fit u64")
}

/// kvd's v2 API on a loopback port, with a leader-like task proposing expiry.
struct Kvd {
    addr: SocketAddr,
    backend: Arc<MemoryBackend>,
}

async fn start_kvd() -> Kvd {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("listener address");
    let backend = Arc::new(MemoryBackend::new(format!("http://{addr}")));
    let serving = Arc::clone(&backend);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let backend = Arc::clone(&serving);
            tokio::spawn(async move {
                let service = service_fn(move |request| {
                    let backend = Arc::clone(&backend);
                    async move {
                        let response = v2::handle(&backend, request).await.unwrap_or_else(|| {
                            let mut response = Response::new(
                                Full::new(Bytes::from_static(b"404 page not found\n"))
                                    .boxed_unsync(),
                            );
                            *response.status_mut() = StatusCode::NOT_FOUND;
                            response
                        });
                        Ok::<_, Infallible>(response)
                    }
                });
                let connection = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service);
                let _ = connection.await;
            });
        }
    });
    let expiring = Arc::clone(&backend);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let expire = Command {
                now: now_ms(),
                op: Op::Expire,
            };
            expiring.apply(&expire).expect("expiry never fails");
        }
    });
    Kvd { addr, backend }
}

// ---------------------------------------------------------------------------------------
// Real etcd 3.4 with the v2 API on loopback ports and a temporary data directory.

async fn start_etcd() -> Etcd {
    Etcd::start_with("etcd", &["--enable-v2"]).await
}

// ---------------------------------------------------------------------------------------
// An HTTP/1.1 client, one connection per request.

#[derive(Debug)]
struct Reply {
    status: u16,
    headers: hyper::HeaderMap,
    body: Bytes,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .map(|value| value.to_str().expect("ASCII header"))
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| panic!("not JSON: {:?}", String::from_utf8_lossy(&self.body)))
    }

    fn etcd_index(&self) -> u64 {
        self.header("x-etcd-index")
            .expect("X-Etcd-Index header")
            .parse()
            .expect("numeric X-Etcd-Index")
    }
}

async fn try_call(
    addr: SocketAddr,
    method: &str,
    target: &str,
    form: Option<&str>,
) -> Result<Reply, Box<dyn std::error::Error + Send + Sync>> {
    let stream = TcpStream::connect(addr).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let mut request = Request::builder()
        .method(method)
        .uri(target)
        .header("host", addr.to_string());
    let body = match form {
        Some(form) => {
            request = request.header("content-type", "application/x-www-form-urlencoded");
            Full::new(Bytes::from(form.to_owned()))
        }
        None => Full::new(Bytes::new()),
    };
    let response = sender.send_request(request.body(body)?).await?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await?.to_bytes();
    Ok(Reply {
        status,
        headers,
        body,
    })
}

async fn call(addr: SocketAddr, method: &str, target: &str, form: Option<&str>) -> Reply {
    try_call(addr, method, target, form)
        .await
        .unwrap_or_else(|error| panic!("{method} {target}: {error}"))
}

// ---------------------------------------------------------------------------------------
// Side by side.

/// A kvd and an etcd whose v2 indexes agree: kvd is brought to etcd's index by writing
/// and deleting a hidden key, so indexes, in-order key names and error indexes compare
/// as they are.
struct Pair {
    kvd: Kvd,
    etcd: Etcd,
}

async fn start_pair() -> Pair {
    let (kvd, etcd) = tokio::join!(start_kvd(), start_etcd());
    let target = stable_index(etcd.addr).await;
    let mut index = 0;
    while index < target {
        let (method, form) = if index + 1 == target && index > 0 {
            ("DELETE", None)
        } else {
            ("PUT", Some("value=pad"))
        };
        index = call(kvd.addr, method, "/v2/keys/_pad", form)
            .await
            .etcd_index();
    }
    assert_eq!(
        call(kvd.addr, "GET", "/v2/keys/", None).await.etcd_index(),
        target
    );
    Pair { kvd, etcd }
}

/// etcd's v2 index once its start-up writes (member attributes, cluster version) are done.
async fn stable_index(addr: SocketAddr) -> u64 {
    let mut last = 0;
    let mut stable_since = Instant::now();
    loop {
        let index = call(addr, "GET", "/v2/keys/", None).await.etcd_index();
        if index != last {
            (last, stable_since) = (index, Instant::now());
        } else if stable_since.elapsed() > Duration::from_millis(1500) {
            return index;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What must agree: status, content type, index header, and the body with expiry
/// timestamps masked.
fn normalised(reply: &Reply) -> (u16, Option<String>, Option<String>, Value) {
    let body = if reply.body.is_empty() {
        Value::Null
    } else if reply.header("content-type") == Some("application/json") {
        let mut json = reply.json();
        mask_expirations(&mut json);
        json
    } else {
        Value::String(String::from_utf8_lossy(&reply.body).into_owned())
    };
    (
        reply.status,
        reply.header("content-type").map(str::to_owned),
        reply.header("x-etcd-index").map(str::to_owned),
        body,
    )
}

/// Masks expiry timestamps, and sorts listings: etcd lists a directory in Go's random
/// map order unless asked for `sorted=true`, kvd always in key order.
fn mask_expirations(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (name, field) in map.iter_mut() {
                if name == "expiration" {
                    *field = Value::String("<expiration>".into());
                } else {
                    mask_expirations(field);
                }
            }
            if let Some(Value::Array(nodes)) = map.get_mut("nodes") {
                nodes.sort_by(|a, b| a["key"].as_str().cmp(&b["key"].as_str()));
            }
        }
        Value::Array(items) => items.iter_mut().for_each(mask_expirations),
        _ => {}
    }
}

/// Takes `etcd`'s remaining TTLs where `kvd`'s are a second off. Each server counts a key's
/// TTL from its own write, and kvd is asked after etcd has answered, so a whole second can
/// fall between the two countdowns.
fn ttls_within_a_second(kvd: &mut Value, etcd: &Value) {
    match (kvd, etcd) {
        (Value::Object(kvd), Value::Object(etcd)) => {
            for (name, field) in kvd.iter_mut() {
                let Some(theirs) = etcd.get(name) else {
                    continue;
                };
                match (name.as_str(), field.as_i64(), theirs.as_i64()) {
                    ("ttl", Some(ours), Some(their)) if ours.abs_diff(their) == 1 => {
                        *field = theirs.clone();
                    }
                    _ => ttls_within_a_second(field, theirs),
                }
            }
        }
        (Value::Array(kvd), Value::Array(etcd)) => {
            for (field, theirs) in kvd.iter_mut().zip(etcd) {
                ttls_within_a_second(field, theirs);
            }
        }
        _ => {}
    }
}

impl Pair {
    /// Sends one request to both and asserts the answers agree; returns kvd's.
    async fn same(&self, method: &str, target: &str, form: Option<&str>) -> Reply {
        let etcd = call(self.etcd.addr, method, target, form).await;
        let kvd = call(self.kvd.addr, method, target, form).await;
        let (etcd_normalised, mut kvd_normalised) = (normalised(&etcd), normalised(&kvd));
        ttls_within_a_second(&mut kvd_normalised.3, &etcd_normalised.3);
        assert_eq!(
            kvd_normalised, etcd_normalised,
            "{method} {target} {form:?}: kvd (left) and etcd (right) differ"
        );
        assert_eq!(
            kvd.body.ends_with(b"\n"),
            etcd.body.ends_with(b"\n"),
            "{method} {target}: trailing newline"
        );
        if etcd.header("x-raft-index").is_some() {
            assert!(kvd.header("x-raft-index").is_some() && kvd.header("x-raft-term").is_some());
        }
        assert_eq!(
            kvd.header("x-etcd-cluster-id").is_some(),
            etcd.header("x-etcd-cluster-id").is_some(),
            "{method} {target}: cluster id header"
        );
        kvd
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_answer_like_etcd() {
    let pair = start_pair().await;
    let steps: &[(&str, &str, Option<&str>)] = &[
        ("PUT", "/v2/keys/a", Some("value=one")),
        ("PUT", "/v2/keys/a", Some("value=two")),
        ("GET", "/v2/keys/a", None),
        ("HEAD", "/v2/keys/a", None),
        ("GET", "/v2/keys/a?quorum=true", None),
        ("GET", "/v2/keys/nope", None),
        ("GET", "/v2/keys/nope/deeper", None),
        ("PUT", "/v2/keys/a?prevExist=false", Some("value=x")),
        ("PUT", "/v2/keys/b?prevExist=true", Some("value=x")),
        ("PUT", "/v2/keys/a?prevValue=x", Some("value=three")),
        ("PUT", "/v2/keys/a?prevValue=two", Some("value=three")),
        ("PUT", "/v2/keys/a?prevIndex=1", Some("value=four")),
        (
            "PUT",
            "/v2/keys/a?prevIndex=1&prevValue=x",
            Some("value=four"),
        ),
        ("PUT", "/v2/keys/a?prevIndex=abc", Some("value=x")),
        ("PUT", "/v2/keys/a?prevIndex=%2B5", Some("value=x")),
        ("PUT", "/v2/keys/a?ttl=abc", Some("value=x")),
        ("PUT", "/v2/keys/a?ttl=-1", Some("value=x")),
        ("PUT", "/v2/keys/a?prevExist=abc", Some("value=x")),
        ("PUT", "/v2/keys/a?dir=abc", None),
        ("PUT", "/v2/keys/a?recursive=abc", None),
        ("GET", "/v2/keys/a?sorted=abc", None),
        ("GET", "/v2/keys/a?quorum=abc", None),
        ("GET", "/v2/keys/a?waitIndex=abc&wait=true", None),
        ("PUT", "/v2/keys/a?wait=true", Some("value=x")),
        ("PUT", "/v2/keys/a?prevValue=", Some("value=x")),
        ("PUT", "/v2/keys/a?refresh=true", None),
        ("PUT", "/v2/keys/a?refresh=true&ttl=5", Some("value=x")),
        ("PUT", "/v2/keys/a?value=%zz", None),
        ("PUT", "/v2/keys/a?value=1;b=2", None),
        ("PATCH", "/v2/keys/a", None),
        ("PUT", "/v2/keys/t?ttl=100", Some("value=tv")),
        ("PUT", "/v2/keys/t?ttl=100&refresh=true", None),
        ("GET", "/v2/keys/t", None),
        ("PUT", "/v2/keys/d?dir=true", None),
        ("PUT", "/v2/keys/d?dir=true", None),
        ("PUT", "/v2/keys/d/x", Some("value=dx")),
        ("PUT", "/v2/keys/d/x/y", Some("value=dxy")),
        ("PUT", "/v2/keys/d", Some("value=x")),
        ("PUT", "/v2/keys/d/sub/deep", Some("value=deep")),
        ("GET", "/v2/keys/d", None),
        ("GET", "/v2/keys/d?recursive=true&sorted=true", None),
        ("GET", "/v2/keys/?recursive=true&sorted=true", None),
        ("GET", "/v2/keys?sorted=true", None),
        ("GET", "/v2/keys/d/../a", None),
        ("DELETE", "/v2/keys/d", None),
        ("DELETE", "/v2/keys/d?dir=true", None),
        ("DELETE", "/v2/keys/d/x?prevIndex=abc", None),
        ("DELETE", "/v2/keys/d?recursive=true", None),
        ("DELETE", "/v2/keys/a?prevValue=x", None),
        ("DELETE", "/v2/keys/a?prevValue=three", None),
        ("DELETE", "/v2/keys/a?prevValue=three", None),
        ("POST", "/v2/keys/q", Some("value=j1")),
        ("POST", "/v2/keys/q", Some("value=j2")),
        ("GET", "/v2/keys/q?sorted=true", None),
        ("POST", "/v2/keys/t", Some("value=j3")),
        ("PUT", "/v2/keys/_hidden", Some("value=h")),
        ("GET", "/v2/keys/_hidden", None),
        ("GET", "/v2/keys/?sorted=true", None),
        ("PUT", "/v2/keys/", Some("value=x")),
        ("DELETE", "/v2/keys/?recursive=true", None),
        ("PUT", "/v2/keys/u?prevExist=true", Some("value=1")),
        ("PUT", "/v2/keys/u?prevExist=false", Some("value=1")),
        ("PUT", "/v2/keys/u?prevExist=true", Some("value=2")),
        ("PUT", "/v2/keys/u?prevExist=true&ttl=50", Some("value=2")),
        ("PUT", "/v2/keys/u?prevExist=true&ttl=", Some("value=2")),
        ("PUT", "/v2/keys/u?dir=true&value=3", None),
        ("PUT", "/v2/keys/u?dir=true&prevExist=true", None),
        ("DELETE", "/v2/keys/u?dir=true", None),
        ("PUT", "/v2/keys/dd?dir=true&ttl=60", None),
        ("PUT", "/v2/keys/dd?dir=true&ttl=70&prevExist=true", None),
        ("PUT", "/v2/keys/dd?prevValue=x", Some("value=1")),
        ("DELETE", "/v2/keys/dd?prevIndex=3", None),
        ("DELETE", "/v2/keys/dd?dir=true", None),
        ("PUT", "/v2/keys/form?value=query", Some("value=body")),
        (
            "PUT",
            "/v2/keys/form",
            Some("value=h%C3%A9llo+w%26rld&ttl="),
        ),
        (
            "PUT",
            "/v2/keys/form?noValueOnSuccess=true",
            Some("value=quiet"),
        ),
        ("PUT", "/v2/keys/sp%20ace", Some("value=s")),
        ("GET", "/v2/keys/sp%20ace", None),
        ("GET", "/v2/keys/form", None),
        ("DELETE", "/v2/keys/form?recursive=true", None),
        ("DELETE", "/v2/keys/?prevValue=x", None),
        ("POST", "/v2/keys/qd?dir=true", None),
        ("POST", "/v2/keys/", Some("value=at-root")),
        ("PUT", "/v2/keys/?prevExist=false", Some("value=r")),
        (
            "PUT",
            "/v2/keys/t?prevExist=false&prevValue=x",
            Some("value=y"),
        ),
        ("PUT", "/v2/keys/missing?prevIndex=5", Some("value=y")),
        ("GET", "/v2/keys/t?recursive=true", None),
        ("PUT", "/v2/keys/slash/", Some("value=s")),
        ("GET", "/v2/keys//slash", None),
        ("PUT", "/v2/keys/./slash", Some("value=s")),
        ("GET", "/v2/keysfoo", None),
        (
            "GET",
            "/v2/keys/t?wait=true&waitIndex=1&recursive=abc",
            None,
        ),
        (
            "PUT",
            "/v2/keys/t?ttl=18446744073709551616",
            Some("value=x"),
        ),
        ("PUT", "/v2/keys/t?prevIndex=99999", Some("value=x")),
    ];
    for (method, target, form) in steps {
        pair.same(method, target, *form).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waits_and_expiry_answer_like_etcd() {
    let pair = start_pair().await;
    let created = pair
        .same("PUT", "/v2/keys/w", Some("value=1"))
        .await
        .etcd_index();
    pair.same("PUT", "/v2/keys/w", Some("value=2")).await;
    // From history.
    pair.same(
        "GET",
        &format!("/v2/keys/w?wait=true&waitIndex={created}"),
        None,
    )
    .await;
    pair.same(
        "GET",
        &format!("/v2/keys/?wait=true&recursive=true&waitIndex={created}"),
        None,
    )
    .await;

    // Long polls that the next change answers, on a key and recursively on a directory.
    for (target, change) in [
        (
            "/v2/keys/w?wait=true",
            ("PUT", "/v2/keys/w", Some("value=3")),
        ),
        (
            "/v2/keys/dir?wait=true&recursive=true",
            ("PUT", "/v2/keys/dir/k", Some("value=4")),
        ),
        (
            "/v2/keys/dir/k?wait=true",
            ("DELETE", "/v2/keys/dir?recursive=true", None),
        ),
    ] {
        let (etcd_addr, kvd_addr) = (pair.etcd.addr, pair.kvd.addr);
        let etcd_wait = tokio::spawn(async move { call(etcd_addr, "GET", target, None).await });
        let kvd_wait = tokio::spawn(async move { call(kvd_addr, "GET", target, None).await });
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(
            !kvd_wait.is_finished(),
            "{target} answered before any change"
        );
        pair.same(change.0, change.1, change.2).await;
        let (etcd, kvd) = (etcd_wait.await.unwrap(), kvd_wait.await.unwrap());
        assert_eq!(normalised(&kvd), normalised(&etcd), "wait {target}");
    }

    // A key with a TTL expires, and a watch from its index sees the `expire` event.
    let with_ttl = pair
        .same("PUT", "/v2/keys/short?ttl=1", Some("value=v"))
        .await;
    let next = with_ttl.etcd_index() + 1;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    pair.same("GET", "/v2/keys/short", None).await;
    let expired = pair
        .same(
            "GET",
            &format!("/v2/keys/short?wait=true&waitIndex={next}"),
            None,
        )
        .await;
    assert_eq!(expired.json()["action"], "expire");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_older_than_a_thousand_events_is_cleared_like_etcd() {
    let pair = start_pair().await;
    for value in 0..1005 {
        let form = format!("value={value}");
        let (etcd, kvd) = tokio::join!(
            call(pair.etcd.addr, "PUT", "/v2/keys/h", Some(&form)),
            call(pair.kvd.addr, "PUT", "/v2/keys/h", Some(&form)),
        );
        assert_eq!(etcd.etcd_index(), kvd.etcd_index());
    }
    let cleared = pair
        .same("GET", "/v2/keys/h?wait=true&waitIndex=2", None)
        .await;
    assert_eq!(cleared.json()["errorCode"], 401);
    let kept = cleared.etcd_index() - 500;
    pair.same(
        "GET",
        &format!("/v2/keys/h?wait=true&waitIndex={kept}"),
        None,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_endpoints_have_etcds_shape() {
    let pair = start_pair().await;
    for (method, target) in [
        ("POST", "/version"),
        ("POST", "/health"),
        ("POST", "/v2/machines"),
        ("POST", "/v2/stats/store"),
        ("GET", "/v2/stats/nope"),
        ("GET", "/v2/nope"),
        ("PUT", "/v2/members"),
        ("DELETE", "/v2/members/abc"),
        ("DELETE", "/v2/members/1234"),
        ("GET", "/health"),
    ] {
        pair.same(method, target, None).await;
    }
    // Same status, content type and JSON fields; the figures are each server's own.
    for target in [
        "/version",
        "/v2/members",
        "/v2/stats/self",
        "/v2/stats/leader",
        "/v2/stats/store",
        "/v2/members/leader",
    ] {
        let etcd = call(pair.etcd.addr, "GET", target, None).await;
        let kvd = call(pair.kvd.addr, "GET", target, None).await;
        assert_eq!(
            (kvd.status, kvd.header("content-type")),
            (etcd.status, etcd.header("content-type")),
            "{target}"
        );
        assert_eq!(shape(&kvd.json()), shape(&etcd.json()), "{target}");
    }
    // Clients pick features by the etcd version; kvd's own is in a header.
    let version = call(pair.kvd.addr, "GET", "/version", None).await;
    assert_eq!(version.json()["etcdserver"], "3.4.0");
    assert_eq!(version.json()["etcdcluster"], "3.4.0");
    assert_eq!(
        version.header("x-kvd-version"),
        Some(env!("CARGO_PKG_VERSION"))
    );
    let machines = call(pair.kvd.addr, "GET", "/v2/machines", None).await;
    assert_eq!(machines.body, format!("http://{}", pair.kvd.addr));

    // Adding with a bad URL or content type fails alike; a good one adds a member.
    for (content_type, body) in [
        ("application/json", r#"{"peerURLs":["xx"]}"#),
        (
            "application/x-www-form-urlencoded",
            r#"{"peerURLs":["xx"]}"#,
        ),
    ] {
        let etcd = post(pair.etcd.addr, "/v2/members", content_type, body).await;
        let kvd = post(pair.kvd.addr, "/v2/members", content_type, body).await;
        assert_eq!(normalised(&kvd), normalised(&etcd), "{content_type} {body}");
    }
    let added = post(
        pair.kvd.addr,
        "/v2/members",
        "application/json",
        r#"{"peerURLs":["http://127.0.0.1:1"]}"#,
    )
    .await;
    assert_eq!(added.status, 201);
    let id = added.json()["id"].as_str().unwrap().to_owned();
    let removed = call(pair.kvd.addr, "DELETE", &format!("/v2/members/{id}"), None).await;
    assert_eq!(removed.status, 204);
    let members = call(pair.kvd.addr, "GET", "/v2/members", None).await.json();
    assert_eq!(members["members"].as_array().unwrap().len(), 1);
}

async fn post(addr: SocketAddr, target: &str, content_type: &str, body: &str) -> Reply {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("HTTP handshake");
    tokio::spawn(connection);
    let request = Request::post(target)
        .header("host", addr.to_string())
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body.to_owned())))
        .expect("request");
    let response = sender
        .send_request(request)
        .await
        .expect("send the request");
    let (status, headers) = (response.status().as_u16(), response.headers().clone());
    let body = response
        .into_body()
        .collect()
        .await
        .expect("read the body")
        .to_bytes();
    Reply {
        status,
        headers,
        body,
    }
}

/// A JSON value's structure: field names and value types, not values.
fn shape(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(name, field)| (name.clone(), shape(field)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().take(1).map(shape).collect()),
        Value::String(_) => "string".into(),
        Value::Number(_) => "number".into(),
        Value::Bool(_) => "bool".into(),
        Value::Null => Value::Null,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disconnected_watcher_is_cleaned_up() {
    let kvd = start_kvd().await;
    let watchers = || async {
        let stats = call(kvd.addr, "GET", "/v2/stats/store", None).await.json();
        (
            stats["watchers"].as_u64().unwrap(),
            kvd.backend.events.receiver_count(),
        )
    };
    assert!(v2::serves("/v2/keys/x") && v2::serves("/health") && !v2::serves("/v3/kv/range"));
    let baseline = watchers().await;
    let mut stream = TcpStream::connect(kvd.addr).await.unwrap();
    let request = format!(
        "GET /v2/keys/x?wait=true HTTP/1.1\r\nHost: {}\r\n\r\n",
        kvd.addr
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = vec![0; 1024];
    let read = stream.read(&mut head).await.unwrap();
    assert!(String::from_utf8_lossy(&head[..read]).starts_with("HTTP/1.1 200 OK"));
    assert_eq!(watchers().await, (baseline.0 + 1, baseline.1 + 1));
    drop(stream);
    let deadline = Instant::now() + Duration::from_secs(5);
    while watchers().await != baseline {
        assert!(Instant::now() < deadline, "the watch outlived its client");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_forms_are_refused_like_etcd() {
    let pair = start_pair().await;
    let big = format!("value={}", "a".repeat(2 << 20));
    pair.same("PUT", "/v2/keys/big", Some(&big)).await;
    let too_big = format!("value={}", "a".repeat(11 << 20));
    pair.same("PUT", "/v2/keys/huge", Some(&too_big)).await;
}

// ---------------------------------------------------------------------------------------
// Debian's etcdctl in v2 mode against both.

fn etcdctl(addr: SocketAddr, args: &[&str]) -> (i32, String, String) {
    let output = std::process::Command::new(support::etcd::installed("etcdctl"))
        .env("ETCDCTL_API", "2")
        .arg("--endpoints")
        .arg(format!("http://{addr}"))
        .args(args)
        .output()
        .expect("run etcdctl");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_v2_works_against_kvd_as_against_etcd() {
    let pair = start_pair().await;
    let (etcd, kvd) = (pair.etcd.addr, pair.kvd.addr);
    let steps: &[&[&str]] = &[
        &["set", "/x", "y"],
        &["get", "/x"],
        &["mk", "/m", "1"],
        &["mk", "/m", "1"],
        &["get", "/nope"],
        &["mkdir", "/dir"],
        &["set", "/dir/a", "b"],
        &["ls", "--sort", "/"],
        &["ls", "--sort", "--recursive", "/dir"],
        &["update", "/x", "z"],
        &["set", "--swap-with-value", "wrong", "/x", "w"],
        &["rm", "/x"],
        &["rm", "/dir"],
        &["rm", "--recursive", "/dir"],
        &["rmdir", "/nope"],
    ];
    for args in steps {
        let (etcd_out, kvd_out) = tokio::join!(
            tokio::task::spawn_blocking(move || etcdctl(etcd, args)),
            tokio::task::spawn_blocking(move || etcdctl(kvd, args)),
        );
        assert_eq!(
            kvd_out.unwrap(),
            etcd_out.unwrap(),
            "etcdctl {args:?}: kvd (left), etcd (right)"
        );
    }
    let (code, _, stderr) = etcdctl(kvd, &["mk", "/m", "1"]);
    assert_eq!(code, 4);
    assert!(stderr.contains("105: Key already exists (/m)"), "{stderr}");

    // `watch` prints the next change and exits.
    for addr in [etcd, kvd] {
        let watch = tokio::task::spawn_blocking(move || etcdctl(addr, &["watch", "/watched"]));
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert!(
            !watch.is_finished(),
            "etcdctl watch returned before any change"
        );
        call(addr, "PUT", "/v2/keys/watched", Some("value=seen")).await;
        let (code, stdout, stderr) = tokio::time::timeout(Duration::from_secs(10), watch)
            .await
            .expect("etcdctl watch saw the change")
            .unwrap();
        assert_eq!((code, stdout.as_str()), (0, "seen\n"), "{stderr}");
    }
}

/// The first `count` newline-terminated JSON documents of a streamed body.
async fn stream_lines(addr: SocketAddr, target: &str, count: usize) -> Vec<Value> {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("HTTP handshake");
    tokio::spawn(connection);
    let request = Request::get(target)
        .header("host", addr.to_string())
        .body(Full::new(Bytes::new()))
        .expect("request");
    let response = sender
        .send_request(request)
        .await
        .expect("send the request");
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    let mut text = Vec::new();
    while text.iter().filter(|&&byte| byte == b'\n').count() < count {
        let frame = body
            .frame()
            .await
            .expect("more of the stream")
            .expect("frame");
        if let Ok(data) = frame.into_data() {
            text.extend_from_slice(&data);
        }
    }
    text.split(|&byte| byte == b'\n')
        .take(count)
        .map(|line| {
            let mut json = serde_json::from_slice(line).expect("a JSON event per line");
            mask_expirations(&mut json);
            json
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_watches_send_every_change_like_etcd() {
    let pair = start_pair().await;
    let target = "/v2/keys/s?wait=true&stream=true&recursive=true";
    let (etcd_addr, kvd_addr) = (pair.etcd.addr, pair.kvd.addr);
    let etcd = tokio::spawn(async move { stream_lines(etcd_addr, target, 3).await });
    let kvd = tokio::spawn(async move { stream_lines(kvd_addr, target, 3).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    pair.same("PUT", "/v2/keys/s/a", Some("value=1")).await;
    pair.same("PUT", "/v2/keys/elsewhere", Some("value=x"))
        .await;
    pair.same("PUT", "/v2/keys/s/b?ttl=60", Some("value=2"))
        .await;
    pair.same("DELETE", "/v2/keys/s?recursive=true", None).await;
    let timeout = Duration::from_secs(10);
    let etcd = tokio::time::timeout(timeout, etcd)
        .await
        .expect("etcd streamed")
        .unwrap();
    let kvd = tokio::time::timeout(timeout, kvd)
        .await
        .expect("kvd streamed")
        .unwrap();
    assert_eq!(kvd, etcd);
    let actions: Vec<_> = kvd.iter().map(|event| event["action"].clone()).collect();
    assert_eq!(actions, ["set", "set", "delete"]);
}

async fn raw_put(addr: SocketAddr, target: &str, body: &'static [u8]) -> Reply {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("HTTP handshake");
    tokio::spawn(connection);
    let request = Request::put(target)
        .header("host", addr.to_string())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from_static(body)))
        .expect("request");
    let response = sender
        .send_request(request)
        .await
        .expect("send the request");
    let (status, headers) = (response.status().as_u16(), response.headers().clone());
    let body = response
        .into_body()
        .collect()
        .await
        .expect("read the body")
        .to_bytes();
    Reply {
        status,
        headers,
        body,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_input_gets_errors_not_panics() {
    let kvd = start_kvd().await;
    let error_code = |reply: &Reply| (reply.status, reply.json()["errorCode"].as_u64());
    let not_utf8 = raw_put(kvd.addr, "/v2/keys/k", b"value=\xff\xfe").await;
    assert_eq!(error_code(&not_utf8), (400, Some(210)));
    let bad_escape = raw_put(kvd.addr, "/v2/keys/k", b"value=%").await;
    assert_eq!(error_code(&bad_escape), (400, Some(210)));
    let bad_path = call(kvd.addr, "GET", "/v2/keys/%ff", None).await;
    assert_eq!(error_code(&bad_path), (400, Some(210)));
    let deep = format!("/v2/keys{}", "/a".repeat(v2::MAX_DEPTH + 1));
    let too_deep = call(kvd.addr, "PUT", &deep, Some("value=x")).await;
    assert_eq!(error_code(&too_deep), (400, Some(209)));
    let forever = call(
        kvd.addr,
        "PUT",
        "/v2/keys/k?ttl=18446744073709551615",
        Some("value=x"),
    )
    .await;
    assert_eq!(forever.status, 201);
    assert!(forever.json()["node"]["ttl"].as_i64().unwrap() > 0);
    let garbage = post(kvd.addr, "/v2/members", "application/json", "{not json").await;
    assert_eq!(garbage.status, 400);
    let bad_id = call(kvd.addr, "DELETE", "/v2/members/zz", None).await;
    assert_eq!(
        (bad_id.status, bad_id.json()["message"].as_str()),
        (404, Some("No such member: zz"))
    );
    // Still serving.
    let listing = call(kvd.addr, "GET", "/v2/keys/", None).await;
    assert_eq!(listing.status, 200);
}
