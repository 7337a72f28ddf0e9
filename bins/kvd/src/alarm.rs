//! etcd's alarms: conditions a member raises (out of space, corrupt data) that make every
//! member refuse some writes until an operator clears them. Raising, clearing and listing go
//! through the Raft log, as in etcd, so every member agrees on the alarms, and they are part
//! of the state machine's snapshots.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use sinew_etcd_api::etcdserverpb::{AlarmMember, AlarmType};

use crate::v3::request_op::Request;
use crate::v3::{Command, KvError, RequestOp, TxnRequest};

/// What an alarm is about (etcd's `AlarmType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AlarmKind {
    /// No type: etcd keeps and lists such an alarm when asked to raise one, and it refuses
    /// nothing (but a member with any alarm reports itself unhealthy).
    None,
    /// A member's store reached its space quota: writes that add data are refused.
    Nospace,
    /// A member's data differs from the others': every write is refused.
    Corrupt,
}

/// An alarm raised by one member (etcd's `AlarmMember`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Alarm {
    /// The member that raised it.
    pub member: u64,
    /// What about.
    pub kind: AlarmKind,
}

impl From<AlarmType> for AlarmKind {
    fn from(kind: AlarmType) -> Self {
        match kind {
            AlarmType::None => Self::None,
            AlarmType::Nospace => Self::Nospace,
            AlarmType::Corrupt => Self::Corrupt,
        }
    }
}

impl From<AlarmKind> for AlarmType {
    fn from(kind: AlarmKind) -> Self {
        match kind {
            AlarmKind::None => Self::None,
            AlarmKind::Nospace => Self::Nospace,
            AlarmKind::Corrupt => Self::Corrupt,
        }
    }
}

impl From<Alarm> for AlarmMember {
    fn from(alarm: Alarm) -> Self {
        Self {
            member_id: alarm.member,
            alarm: AlarmType::from(alarm.kind).into(),
        }
    }
}

impl From<&AlarmMember> for Alarm {
    /// An alarm type this version does not know reads as `NONE`, as etcd's clients read it.
    fn from(member: &AlarmMember) -> Self {
        Self {
            member: member.member_id,
            kind: member.alarm().into(),
        }
    }
}

/// What a log entry asks of the alarms (etcd's `AlarmRequest`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlarmRequest {
    /// List every alarm raised.
    Get,
    /// Raise an alarm; raising one already raised changes nothing.
    Activate(Alarm),
    /// Clear an alarm.
    Deactivate(Alarm),
}

/// The alarms raised and not cleared.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Alarms(BTreeSet<Alarm>);

impl Alarms {
    /// The alarms in `list`.
    pub fn from_list(list: impl IntoIterator<Item = Alarm>) -> Self {
        Self(list.into_iter().collect())
    }

    /// Every alarm raised, by member, then kind.
    pub fn list(&self) -> Vec<Alarm> {
        self.0.iter().copied().collect()
    }

    /// Applies `request` and answers as etcd does: every alarm for `Get`, the alarm for
    /// `Activate`, and for `Deactivate` the alarm cleared, or nothing if it was not raised.
    pub fn apply(&mut self, request: AlarmRequest) -> Vec<Alarm> {
        match request {
            AlarmRequest::Get => self.list(),
            AlarmRequest::Activate(alarm) => {
                self.0.insert(alarm);
                vec![alarm]
            }
            AlarmRequest::Deactivate(alarm) => {
                if self.0.remove(&alarm) {
                    vec![alarm]
                } else {
                    Vec::new()
                }
            }
        }
    }

    /// Why `command` is refused while these alarms are raised, as etcd's appliers refuse:
    /// with a corrupt member every write, out of space every write that may add data (puts,
    /// lease grants, transactions that are not read-only); deletes and compaction go on, so
    /// that space can be freed.
    pub fn refusal(&self, command: &Command) -> Option<KvError> {
        if self.raised(AlarmKind::Corrupt) {
            return Some(KvError::Corrupt);
        }
        let adds_data = match command {
            Command::Put(_) | Command::LeaseGrant(_) => true,
            Command::Txn(txn) => !read_only(txn),
            Command::DeleteRange(_) | Command::Compact(_) | Command::LeaseRevoke(_) => false,
        };
        (adds_data && self.raised(AlarmKind::Nospace)).then_some(KvError::NoSpace)
    }

    fn raised(&self, kind: AlarmKind) -> bool {
        self.0.iter().any(|alarm| alarm.kind == kind)
    }
}

/// What etcd's quota charges a key's metadata, beyond its key and value.
const KV_OVERHEAD: u64 = 256;
/// What etcd's quota charges a lease.
const LEASE_OVERHEAD: u64 = 64;

/// What `command` may add to the store, as etcd's space quota estimates it before proposing:
/// a put its key, value and 256 bytes, a transaction its costlier path, a lease grant 64
/// bytes. `None` for commands the quota does not check (deletes, compaction, revocation).
pub fn quota_cost(command: &Command) -> Option<u64> {
    let put = |op: &RequestOp| match &op.request {
        Some(Request::RequestPut(put)) => put_cost(&put.key, &put.value),
        _ => 0,
    };
    match command {
        Command::Put(request) => Some(put_cost(&request.key, &request.value)),
        Command::Txn(txn) => Some(
            txn.success
                .iter()
                .map(put)
                .sum::<u64>()
                .max(txn.failure.iter().map(put).sum()),
        ),
        Command::LeaseGrant(_) => Some(LEASE_OVERHEAD),
        Command::DeleteRange(_) | Command::Compact(_) | Command::LeaseRevoke(_) => None,
    }
}

fn put_cost(key: &[u8], value: &[u8]) -> u64 {
    u64::try_from(key.len() + value.len()).unwrap_or(u64::MAX) + KV_OVERHEAD
}

/// Whether every operation of `txn`, on both paths, is a range (etcd's `isTxnReadonly`: a
/// nested transaction counts as a write).
fn read_only(txn: &TxnRequest) -> bool {
    txn.success
        .iter()
        .chain(&txn.failure)
        .all(|op| matches!(op.request, Some(Request::RequestRange(_))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sinew_etcd_api::txn;

    use crate::v3::{
        CompactionRequest, DeleteRangeRequest, LeaseGrantRequest, PutRequest, RangeRequest,
    };

    const NOSPACE: Alarm = Alarm {
        member: 7,
        kind: AlarmKind::Nospace,
    };
    const CORRUPT: Alarm = Alarm {
        member: 3,
        kind: AlarmKind::Corrupt,
    };

    fn put() -> Command {
        Command::Put(PutRequest {
            key: b"k".to_vec(),
            ..PutRequest::default()
        })
    }

    fn txn(success: Vec<RequestOp>) -> Command {
        Command::Txn(TxnRequest {
            compare: Vec::new(),
            success,
            failure: Vec::new(),
        })
    }

    fn range() -> RequestOp {
        txn::range(RangeRequest {
            key: b"k".to_vec(),
            ..RangeRequest::default()
        })
    }

    fn delete() -> Command {
        Command::DeleteRange(DeleteRangeRequest {
            key: b"k".to_vec(),
            ..DeleteRangeRequest::default()
        })
    }

    #[test]
    fn activating_answers_the_alarm_and_deactivating_answers_only_what_it_cleared() {
        let mut alarms = Alarms::default();
        assert_eq!(alarms.apply(AlarmRequest::Activate(NOSPACE)), [NOSPACE]);
        assert_eq!(alarms.apply(AlarmRequest::Activate(NOSPACE)), [NOSPACE]);
        assert_eq!(alarms.apply(AlarmRequest::Activate(CORRUPT)), [CORRUPT]);
        assert_eq!(alarms.apply(AlarmRequest::Get), [CORRUPT, NOSPACE]);
        assert_eq!(alarms.apply(AlarmRequest::Deactivate(NOSPACE)), [NOSPACE]);
        assert_eq!(
            alarms.apply(AlarmRequest::Deactivate(NOSPACE)),
            Vec::<Alarm>::new()
        );
        assert_eq!(alarms.list(), [CORRUPT]);
    }

    #[test]
    fn an_alarm_without_a_type_refuses_nothing() {
        let untyped = Alarm {
            member: 5,
            kind: AlarmKind::None,
        };
        let mut alarms = Alarms::default();
        assert_eq!(alarms.apply(AlarmRequest::Activate(untyped)), [untyped]);
        for command in [
            put(),
            txn(vec![txn::nested(TxnRequest::default())]),
            delete(),
        ] {
            assert_eq!(alarms.refusal(&command), None, "{command:?}");
        }
    }

    #[test]
    fn out_of_space_refuses_what_adds_data_and_lets_deletes_and_reads_through() {
        let alarms = Alarms::from_list([NOSPACE]);
        let refused = [
            put(),
            Command::LeaseGrant(LeaseGrantRequest { ttl: 10, id: 0 }),
            txn(vec![range(), txn::delete(DeleteRangeRequest::default())]),
            txn(vec![txn::nested(TxnRequest::default())]),
        ];
        for command in refused {
            assert_eq!(
                alarms.refusal(&command),
                Some(KvError::NoSpace),
                "{command:?}"
            );
        }
        let allowed = [
            delete(),
            Command::Compact(CompactionRequest {
                revision: 1,
                physical: false,
            }),
            txn(vec![range(), range()]),
        ];
        for command in allowed {
            assert_eq!(alarms.refusal(&command), None, "{command:?}");
        }
        assert_eq!(Alarms::default().refusal(&put()), None);
    }

    #[test]
    fn the_quota_charges_puts_transactions_by_their_costlier_path_and_grants() {
        assert_eq!(quota_cost(&put()), Some(1 + 256));
        let two_puts = Command::Txn(TxnRequest {
            compare: Vec::new(),
            success: vec![range()],
            failure: vec![
                txn::put(PutRequest {
                    key: b"ab".to_vec(),
                    value: b"cd".to_vec(),
                    ..PutRequest::default()
                }),
                txn::put(PutRequest::default()),
            ],
        });
        assert_eq!(quota_cost(&two_puts), Some(4 + 2 * 256));
        assert_eq!(quota_cost(&txn(vec![range()])), Some(0));
        assert_eq!(
            quota_cost(&Command::LeaseGrant(LeaseGrantRequest { ttl: 5, id: 0 })),
            Some(64)
        );
        assert_eq!(quota_cost(&delete()), None);
    }

    #[test]
    fn a_corrupt_member_stops_every_write() {
        let alarms = Alarms::from_list([CORRUPT, NOSPACE]);
        assert_eq!(alarms.refusal(&delete()), Some(KvError::Corrupt));
        assert_eq!(alarms.refusal(&put()), Some(KvError::Corrupt));
    }
}
