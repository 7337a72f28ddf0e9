//! Transaction conditions (etcd's `Compare`) and how they are judged.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

use crate::v3::key_range::KeyRange;
use crate::v3::kv::KeyValue;
use crate::v3::store::Store;

/// How the key's field must relate to the operand.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CompareResult {
    /// Field equals the operand.
    #[default]
    Equal,
    /// Field is greater than the operand.
    Greater,
    /// Field is less than the operand.
    Less,
    /// Field differs from the operand.
    NotEqual,
}

/// The field compared, with the operand to compare it to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CompareTarget {
    /// The value, compared bytewise. Never holds for a missing key.
    Value(#[serde(with = "crate::base64_bytes")] Vec<u8>),
    /// The version (0 for a missing key).
    Version(i64),
    /// The create revision (0 for a missing key).
    CreateRevision(i64),
    /// The mod revision (0 for a missing key).
    ModRevision(i64),
    /// The lease id (0 for a missing key or no lease).
    Lease(i64),
}

/// One condition of a transaction: every key in the range must satisfy it; when the range
/// holds no key, a key with every field zero is judged instead, except that a value
/// comparison then fails.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compare {
    /// The key.
    #[serde(with = "crate::base64_bytes")]
    pub key: Vec<u8>,
    /// As in [`crate::v3::RangeRequest::range_end`].
    #[serde(default, with = "crate::base64_bytes")]
    pub range_end: Vec<u8>,
    /// Field and operand.
    pub target: CompareTarget,
    /// Relation.
    pub result: CompareResult,
}

impl Compare {
    /// Whether the condition holds in `store` at revision `revision`.
    pub(crate) fn holds(&self, store: &Store, revision: i64) -> bool {
        let range = KeyRange::new(&self.key, &self.range_end);
        let mut found = false;
        for (_, history) in range.select(&store.keys) {
            if let Some(kv) = history.at(revision) {
                found = true;
                if !self.holds_for(kv) {
                    return false;
                }
            }
        }
        if found {
            return true;
        }
        !matches!(self.target, CompareTarget::Value(_)) && self.holds_for(&KeyValue::default())
    }

    fn holds_for(&self, kv: &KeyValue) -> bool {
        let ordering = match &self.target {
            CompareTarget::Value(value) => kv.value.as_slice().cmp(value.as_slice()),
            CompareTarget::Version(version) => kv.version.cmp(version),
            CompareTarget::CreateRevision(revision) => kv.create_revision.cmp(revision),
            CompareTarget::ModRevision(revision) => kv.mod_revision.cmp(revision),
            CompareTarget::Lease(lease) => kv.lease.cmp(lease),
        };
        match self.result {
            CompareResult::Equal => ordering == Ordering::Equal,
            CompareResult::NotEqual => ordering != Ordering::Equal,
            CompareResult::Greater => ordering == Ordering::Greater,
            CompareResult::Less => ordering == Ordering::Less,
        }
    }
}
