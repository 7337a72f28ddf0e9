//! How a transaction's conditions (etcd's `Compare`) are judged.

use std::cmp::Ordering;

use sinew_etcd_api::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use sinew_etcd_api::etcdserverpb::Compare;
use sinew_etcd_api::mvccpb::KeyValue;

use crate::v3::key_range::KeyRange;
use crate::v3::store::Store;

/// Whether `compare` holds in `store` at revision `revision`: every key in its range must
/// satisfy it; when the range holds no key, a key with every field zero is judged instead,
/// except that a value comparison then fails.
pub(crate) fn holds(compare: &Compare, store: &Store, revision: i64) -> bool {
    let range = KeyRange::new(&compare.key, &compare.range_end);
    let mut found = false;
    for (_, history) in range.select(&store.keys) {
        if let Some(kv) = history.at(revision) {
            found = true;
            if !holds_for(compare, kv) {
                return false;
            }
        }
    }
    if found {
        return true;
    }
    compare.target() != CompareTarget::Value && holds_for(compare, &KeyValue::default())
}

/// The target names the field and the operand; an operand of another kind counts as zero,
/// as Go's getters read it.
fn holds_for(compare: &Compare, kv: &KeyValue) -> bool {
    let operand = compare.target_union.as_ref();
    let number = |pick: fn(&TargetUnion) -> Option<i64>| operand.and_then(pick).unwrap_or(0);
    let ordering = match compare.target() {
        CompareTarget::Value => {
            let value = match operand {
                Some(TargetUnion::Value(value)) => value.as_slice(),
                _ => &[],
            };
            kv.value.as_slice().cmp(value)
        }
        CompareTarget::Version => kv.version.cmp(&number(|operand| match operand {
            TargetUnion::Version(version) => Some(*version),
            _ => None,
        })),
        CompareTarget::Create => kv.create_revision.cmp(&number(|operand| match operand {
            TargetUnion::CreateRevision(revision) => Some(*revision),
            _ => None,
        })),
        CompareTarget::Mod => kv.mod_revision.cmp(&number(|operand| match operand {
            TargetUnion::ModRevision(revision) => Some(*revision),
            _ => None,
        })),
        CompareTarget::Lease => kv.lease.cmp(&number(|operand| match operand {
            TargetUnion::Lease(lease) => Some(*lease),
            _ => None,
        })),
    };
    match compare.result() {
        CompareResult::Equal => ordering == Ordering::Equal,
        CompareResult::NotEqual => ordering != Ordering::Equal,
        CompareResult::Greater => ordering == Ordering::Greater,
        CompareResult::Less => ordering == Ordering::Less,
    }
}
