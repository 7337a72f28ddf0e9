//! How Raft's data is written as bytes, between members and in the log. Raft's messages and
//! log entries are postcard, a compact binary serde format in which etcd's messages are
//! their protobuf encoding (see `sinew_etcd_api::json`), as etcd writes its own: JSON with
//! every key and value in base64 cost members more CPU than anything else they do per
//! write but the network. The requests a follower forwards to the leader stay JSON: their
//! answers carry the v2 API's types, which are shaped for JSON.
//!
//! Each request names its encoding in its content type, and the answer comes back in the
//! same one, so a member still reads the JSON that members from before postcard send. A log
//! entry on disk starts with [`ENTRY_FORMAT`], a byte no JSON text starts with, so entries
//! that such members wrote read too.

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{Entry, Request};

/// The first byte of a log entry written as postcard.
const ENTRY_FORMAT: u8 = 1;

/// Why a value could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// As JSON.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// As postcard.
    #[error("{0}")]
    Binary(#[from] postcard::Error),
}

/// An encoding of a member-to-member call, named by its content type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// JSON (`application/json`).
    Json,
    /// postcard (`application/x-postcard`).
    Binary,
}

impl Encoding {
    /// The content type that names this encoding.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Json => "application/json",
            Self::Binary => "application/x-postcard",
        }
    }

    /// The encoding a content type names; anything but postcard's is JSON, which members
    /// sent before there was a choice.
    pub fn of_content_type(content_type: Option<&[u8]>) -> Self {
        if content_type == Some(Self::Binary.content_type().as_bytes()) {
            Self::Binary
        } else {
            Self::Json
        }
    }

    /// `value` in this encoding.
    pub fn encode<T: Serialize + ?Sized>(self, value: &T) -> Result<Vec<u8>, WireError> {
        Ok(match self {
            Self::Json => serde_json::to_vec(value)?,
            Self::Binary => postcard::to_stdvec(value)?,
        })
    }

    /// The value `bytes` hold in this encoding.
    pub fn decode<T: DeserializeOwned>(self, bytes: &[u8]) -> Result<T, WireError> {
        Ok(match self {
            Self::Json => serde_json::from_slice(bytes)?,
            Self::Binary => postcard::from_bytes(bytes)?,
        })
    }
}

/// A log entry as the log stores it.
pub fn encode_entry(entry: &Entry) -> Result<Vec<u8>, WireError> {
    Ok(postcard::to_stdvec(&(ENTRY_FORMAT, entry))?)
}

/// A log entry the log stored: postcard after [`ENTRY_FORMAT`], or JSON.
pub fn decode_entry(bytes: &[u8]) -> Result<Entry, WireError> {
    match bytes.split_first() {
        Some((&ENTRY_FORMAT, entry)) => Ok(postcard::from_bytes(entry)?),
        _ => Ok(serde_json::from_slice(bytes)?),
    }
}

/// How many bytes `request` takes in a log entry.
pub fn encoded_len(request: &Request) -> usize {
    // Requests are plain data, so encoding cannot fail; a failure would only count short.
    postcard::serialize_with_flavor(request, postcard::ser_flavors::Size::default())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, EntryPayload, LogId, Membership};
    use sinew_etcd_api::etcdserverpb::{
        compare, request_op, CompactionRequest, Compare, DeleteRangeRequest, LeaseGrantRequest,
        LeaseRevokeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
    };

    use super::*;
    use crate::alarm::{Alarm, AlarmKind, AlarmRequest};
    use crate::raft::Member;
    use crate::v2::{CompareAndDelete, CompareAndSwap, Create, Delete, Op, Set, Ttl, Update};
    use crate::v3::Command;

    fn entry(index: u64, payload: EntryPayload<crate::raft::TypeConfig>) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(3, 1), index),
            payload,
        }
    }

    /// One request of every kind the log carries.
    fn every_request() -> Vec<Request> {
        let put = PutRequest {
            key: vec![0, b'k', 255],
            value: b"\"quoted\" \n value".to_vec(),
            lease: 7,
            prev_kv: true,
            ..PutRequest::default()
        };
        let txn = TxnRequest {
            compare: vec![Compare {
                key: b"k".to_vec(),
                target_union: Some(compare::TargetUnion::ModRevision(4)),
                ..Compare::default()
            }],
            success: vec![RequestOp {
                request: Some(request_op::Request::RequestRange(RangeRequest {
                    key: b"a".to_vec(),
                    range_end: b"z".to_vec(),
                    ..RangeRequest::default()
                })),
            }],
            failure: vec![RequestOp {
                request: Some(request_op::Request::RequestPut(put.clone())),
            }],
        };
        let v3 = [
            Command::Put(put),
            Command::DeleteRange(DeleteRangeRequest {
                key: b"a".to_vec(),
                range_end: vec![0],
                ..DeleteRangeRequest::default()
            }),
            Command::Txn(txn),
            Command::Compact(CompactionRequest {
                revision: 12,
                physical: true,
            }),
            Command::LeaseGrant(LeaseGrantRequest { ttl: 5, id: 99 }),
            Command::LeaseRevoke(LeaseRevokeRequest { id: 99 }),
        ];
        let mut requests: Vec<Request> = v3.into_iter().map(Request::V3).collect();
        let ttl = Ttl {
            seconds: Some(30),
            refresh: true,
        };
        let v2 = [
            Op::Set(Set {
                key: "/a".into(),
                value: "\"1\"".into(),
                dir: false,
                ttl,
            }),
            Op::Create(Create {
                key: "/q".into(),
                in_order: true,
                ttl: Some(5),
                ..Create::default()
            }),
            Op::Update(Update {
                key: "/a".into(),
                value: "2".into(),
                ttl: Ttl::default(),
            }),
            Op::CompareAndSwap(CompareAndSwap {
                key: "/a".into(),
                value: "3".into(),
                prev_value: "2".into(),
                prev_index: 8,
                ttl,
            }),
            Op::Delete(Delete {
                key: "/d".into(),
                dir: true,
                recursive: true,
            }),
            Op::CompareAndDelete(CompareAndDelete {
                key: "/a".into(),
                prev_value: String::new(),
                prev_index: 9,
            }),
            Op::Expire,
        ];
        requests.extend(v2.into_iter().map(|op| {
            Request::V2(crate::v2::Command {
                now: 1_700_000_000,
                op,
            })
        }));
        let alarm = Alarm {
            member: 4,
            kind: AlarmKind::Nospace,
        };
        requests.extend([
            Request::Alarm(AlarmRequest::Get),
            Request::Alarm(AlarmRequest::Activate(alarm)),
            Request::Alarm(AlarmRequest::Deactivate(alarm)),
        ]);
        requests.push(Request::Batch(requests.clone()));
        requests
    }

    #[test]
    fn every_request_comes_back_from_a_log_entry_as_it_went_in() {
        for request in every_request() {
            let written = entry(9, EntryPayload::Normal(request));
            let bytes = encode_entry(&written).unwrap();
            assert_eq!(bytes[0], ENTRY_FORMAT);
            let read = decode_entry(&bytes).unwrap();
            assert_eq!(read.log_id, written.log_id);
            assert!(
                matches!((&read.payload, &written.payload), (EntryPayload::Normal(a), EntryPayload::Normal(b)) if a == b),
                "{read:?}"
            );
        }
    }

    #[test]
    fn membership_and_blank_entries_come_back_too() {
        let member = Member {
            name: "kvd0".into(),
            peer_urls: vec!["http://127.0.0.1:2380".into()],
            client_urls: vec!["http://127.0.0.1:2379".into()],
        };
        let membership = Membership::new(
            vec![[1].into_iter().collect()],
            [(1, member)]
                .into_iter()
                .collect::<std::collections::BTreeMap<_, _>>(),
        );
        for written in [
            entry(1, EntryPayload::Blank),
            entry(2, EntryPayload::Membership(membership)),
        ] {
            let read = decode_entry(&encode_entry(&written).unwrap()).unwrap();
            assert_eq!(format!("{read:?}"), format!("{written:?}"));
        }
    }

    #[test]
    fn an_entry_written_as_json_by_an_earlier_kvd_still_reads() {
        let written = entry(5, EntryPayload::Normal(every_request().remove(0)));
        let read = decode_entry(&serde_json::to_vec(&written).unwrap()).unwrap();
        assert_eq!(format!("{read:?}"), format!("{written:?}"));
    }

    #[test]
    fn a_damaged_entry_is_an_error() {
        let mut bytes =
            encode_entry(&entry(5, EntryPayload::Normal(every_request().remove(0)))).unwrap();
        bytes.truncate(bytes.len() / 2);
        assert!(decode_entry(&bytes).is_err());
        assert!(decode_entry(b"").is_err());
    }

    #[test]
    fn a_request_counts_what_its_entry_grows_by() {
        for request in every_request() {
            let one = encode_entry(&entry(
                1,
                EntryPayload::Normal(Request::Batch(vec![request.clone()])),
            ))
            .unwrap();
            let two = encode_entry(&entry(
                1,
                EntryPayload::Normal(Request::Batch(vec![request.clone(), request.clone()])),
            ))
            .unwrap();
            assert_eq!(two.len() - one.len(), encoded_len(&request), "{request:?}");
        }
    }

    #[test]
    fn a_content_type_names_its_encoding_and_json_is_the_default() {
        for encoding in [Encoding::Json, Encoding::Binary] {
            let named = Encoding::of_content_type(Some(encoding.content_type().as_bytes()));
            assert_eq!(named, encoding);
            let bytes = encoding.encode(&every_request()).unwrap();
            assert_eq!(
                encoding.decode::<Vec<Request>>(&bytes).unwrap(),
                every_request()
            );
        }
        assert_eq!(Encoding::of_content_type(None), Encoding::Json);
        assert_eq!(
            Encoding::of_content_type(Some(b"text/plain")),
            Encoding::Json
        );
    }
}
