//! The Lease service's messages (`etcdserverpb.Lease`) as etcd's gateway writes them. Their
//! fields are named `ID` and `TTL` in the proto, so in JSON too.

use serde::{Deserialize, Serialize};

use super::header::Header;
use super::scalar::{deserialize_bool, is_zero, null_default, Bytes, Int64};
use crate::gateway::backend::{LeaseList, LeaseTimeToLive};
use crate::v3::{LeaseGrantRequest, LeaseGrantResponse};

/// `etcdserverpb.LeaseGrantRequest`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct WireLeaseGrantRequest {
    #[serde(rename = "TTL", deserialize_with = "null_default")]
    ttl: Int64,
    #[serde(rename = "ID", deserialize_with = "null_default")]
    id: Int64,
}

impl WireLeaseGrantRequest {
    /// The state machine's request.
    pub fn to_request(&self) -> LeaseGrantRequest {
        LeaseGrantRequest {
            id: self.id.0,
            ttl: self.ttl.0,
        }
    }
}

/// `etcdserverpb.LeaseGrantResponse`.
#[derive(Debug, Clone, Serialize)]
pub struct WireLeaseGrantResponse {
    header: Header,
    #[serde(rename = "ID", skip_serializing_if = "is_zero")]
    id: Int64,
    #[serde(rename = "TTL", skip_serializing_if = "is_zero")]
    ttl: Int64,
}

impl WireLeaseGrantResponse {
    /// The answer with the given header.
    pub fn new(header: Header, response: &LeaseGrantResponse) -> Self {
        Self {
            header,
            id: Int64(response.id),
            ttl: Int64(response.ttl),
        }
    }
}

/// A request naming one lease (`LeaseRevokeRequest`, `LeaseKeepAliveRequest`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct WireLeaseId {
    #[serde(rename = "ID", deserialize_with = "null_default")]
    id: Int64,
}

impl WireLeaseId {
    /// The lease id.
    pub fn id(&self) -> i64 {
        self.id.0
    }
}

/// `etcdserverpb.LeaseKeepAliveResponse`.
#[derive(Debug, Clone, Serialize)]
pub struct WireLeaseKeepAliveResponse {
    header: Header,
    #[serde(rename = "ID", skip_serializing_if = "is_zero")]
    id: Int64,
    #[serde(rename = "TTL", skip_serializing_if = "is_zero")]
    ttl: Int64,
}

impl WireLeaseKeepAliveResponse {
    /// The answer for lease `id` with `ttl` seconds left.
    pub fn new(header: Header, id: i64, ttl: i64) -> Self {
        Self {
            header,
            id: Int64(id),
            ttl: Int64(ttl),
        }
    }
}

/// `etcdserverpb.LeaseTimeToLiveRequest`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct WireLeaseTimeToLiveRequest {
    #[serde(rename = "ID", deserialize_with = "null_default")]
    id: Int64,
    #[serde(deserialize_with = "deserialize_bool")]
    keys: bool,
}

impl WireLeaseTimeToLiveRequest {
    /// The lease id.
    pub fn id(&self) -> i64 {
        self.id.0
    }

    /// Whether the attached keys are wanted.
    pub fn keys(&self) -> bool {
        self.keys
    }
}

/// `etcdserverpb.LeaseTimeToLiveResponse`.
#[derive(Debug, Clone, Serialize)]
pub struct WireLeaseTimeToLiveResponse {
    header: Header,
    #[serde(rename = "ID", skip_serializing_if = "is_zero")]
    id: Int64,
    #[serde(rename = "TTL", skip_serializing_if = "is_zero")]
    ttl: Int64,
    #[serde(rename = "grantedTTL", skip_serializing_if = "is_zero")]
    granted_ttl: Int64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    keys: Vec<Bytes>,
}

impl WireLeaseTimeToLiveResponse {
    /// The answer for lease `id`.
    pub fn new(header: Header, id: i64, answer: &LeaseTimeToLive) -> Self {
        Self {
            header,
            id: Int64(id),
            ttl: Int64(answer.ttl),
            granted_ttl: Int64(answer.granted_ttl),
            keys: answer.keys.iter().cloned().map(Bytes).collect(),
        }
    }
}

/// `etcdserverpb.LeaseStatus`.
#[derive(Debug, Clone, Serialize)]
struct WireLeaseStatus {
    #[serde(rename = "ID", skip_serializing_if = "is_zero")]
    id: Int64,
}

/// `etcdserverpb.LeaseLeasesResponse`.
#[derive(Debug, Clone, Serialize)]
pub struct WireLeaseLeasesResponse {
    header: Header,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    leases: Vec<WireLeaseStatus>,
}

impl WireLeaseLeasesResponse {
    /// The answer listing `list`'s leases.
    pub fn new(header: Header, list: &LeaseList) -> Self {
        Self {
            header,
            leases: list
                .ids
                .iter()
                .map(|&id| WireLeaseStatus { id: Int64(id) })
                .collect(),
        }
    }
}
