//! How a transaction's conditions (etcd's `Compare`) are judged.

use std::cmp::Ordering;
use std::mem;

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

/// The operand the target names; an operand of another kind counts as zero, as Go's
/// getters read it.
fn operand(compare: &Compare) -> TargetUnion {
    let zero = match compare.target() {
        CompareTarget::Version => TargetUnion::Version(0),
        CompareTarget::Create => TargetUnion::CreateRevision(0),
        CompareTarget::Mod => TargetUnion::ModRevision(0),
        CompareTarget::Value => TargetUnion::Value(Vec::new()),
        CompareTarget::Lease => TargetUnion::Lease(0),
    };
    match &compare.target_union {
        Some(given) if mem::discriminant(given) == mem::discriminant(&zero) => given.clone(),
        _ => zero,
    }
}

fn holds_for(compare: &Compare, kv: &KeyValue) -> bool {
    let ordering = match operand(compare) {
        TargetUnion::Value(value) => kv.value.as_slice().cmp(value.as_slice()),
        TargetUnion::Version(version) => kv.version.cmp(&version),
        TargetUnion::CreateRevision(revision) => kv.create_revision.cmp(&revision),
        TargetUnion::ModRevision(revision) => kv.mod_revision.cmp(&revision),
        TargetUnion::Lease(lease) => kv.lease.cmp(&lease),
    };
    match compare.result() {
        CompareResult::Equal => ordering == Ordering::Equal,
        CompareResult::NotEqual => ordering != Ordering::Equal,
        CompareResult::Greater => ordering == Ordering::Greater,
        CompareResult::Less => ordering == Ordering::Less,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_operand_of_another_kind_than_the_target_counts_as_zero() {
        let mismatched = Compare {
            target: CompareTarget::Mod.into(),
            target_union: Some(TargetUnion::Version(5)),
            ..Compare::default()
        };
        assert_eq!(operand(&mismatched), TargetUnion::ModRevision(0));
        let matched = Compare {
            target: CompareTarget::Value.into(),
            target_union: Some(TargetUnion::Value(b"v".to_vec())),
            ..Compare::default()
        };
        assert_eq!(operand(&matched), TargetUnion::Value(b"v".to_vec()));
        assert_eq!(
            operand(&Compare::default()),
            TargetUnion::Version(0),
            "no operand at all"
        );
    }
}
