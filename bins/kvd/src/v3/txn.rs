//! Transactions: request checks, choosing branches, and running the chosen operations in one
//! revision, as etcd's applier does.

use std::collections::BTreeSet;

use sinew_etcd_api::etcdserverpb::request_op::Request;
use sinew_etcd_api::etcdserverpb::response_op::Response;
use sinew_etcd_api::etcdserverpb::{
    DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, ResponseHeader, ResponseOp,
    TxnRequest, TxnResponse,
};
use sinew_etcd_api::mvccpb::Event;

use crate::v3::command::{validate_delete, validate_put, validate_range, MAX_TXN_OPS};
use crate::v3::compare;
use crate::v3::error::KvError;
use crate::v3::response::revision_header;
use crate::v3::store::Store;
use crate::v3::writer::{check_put, Writer};

/// Checks a transaction without the store: sizes and keys of every operation on every
/// branch, then that no path writes a key twice.
pub(crate) fn validate(txn: &TxnRequest) -> Result<(), KvError> {
    check_shape(txn, MAX_TXN_OPS)?;
    check_writes(&txn.success)?;
    check_writes(&txn.failure)?;
    Ok(())
}

/// Applies a transaction: comparisons (nested ones included) are judged on the store before
/// any change, the chosen operations are checked, then run under one revision. Returns the
/// answer and the changes made.
pub(crate) fn apply(
    store: &mut Store,
    txn: &TxnRequest,
) -> Result<(TxnResponse, Vec<Event>), KvError> {
    let plan = Plan::choose(store, txn);
    plan.check(store)?;
    let mut writer = Writer::new(store);
    let mut response = plan.execute(&mut writer);
    let (revision, events) = writer.finish();
    response.header = revision_header(revision);
    Ok((response, events))
}

/// etcd's `checkTxnRequest`: the largest of the comparison count and the branch lengths may
/// not exceed the budget, nested transactions get what is left of it, and no comparison or
/// operation may lack its key.
fn check_shape(txn: &TxnRequest, budget: usize) -> Result<(), KvError> {
    let widest = txn
        .compare
        .len()
        .max(txn.success.len())
        .max(txn.failure.len());
    if widest > budget {
        return Err(KvError::TooManyOps);
    }
    if txn.compare.iter().any(|compare| compare.key.is_empty()) {
        return Err(KvError::EmptyKey);
    }
    for op in txn.success.iter().chain(&txn.failure) {
        match &op.request {
            Some(Request::RequestRange(range)) => validate_range(range)?,
            Some(Request::RequestPut(put)) => validate_put(put)?,
            Some(Request::RequestDeleteRange(delete)) => validate_delete(delete)?,
            Some(Request::RequestTxn(nested)) => check_shape(nested, budget - widest)?,
            // etcd answers an operation that names no request so.
            None => return Err(KvError::KeyNotFound),
        }
    }
    Ok(())
}

/// The keys one branch may write: puts, and deleted intervals as `(key, range_end)`.
#[derive(Debug, Default)]
struct Writes<'a> {
    puts: BTreeSet<&'a [u8]>,
    deletes: Vec<(&'a [u8], &'a [u8])>,
}

impl Writes<'_> {
    /// Whether a delete covers `key`. As etcd's interval check, this reads `range_end`
    /// literally (`"\0"` is not "to the end" here), so it refuses exactly what etcd refuses.
    fn deletes_cover(&self, key: &[u8]) -> bool {
        self.deletes.iter().any(|&(start, end)| {
            if end.is_empty() {
                key == start
            } else {
                start <= key && key < end
            }
        })
    }
}

/// etcd's `checkIntervals`: within a branch (nested branches included), no key may be put
/// twice or put and deleted; the two branches of a nested transaction exclude each other.
/// Deletes of a nested transaction count against the puts of the ones after it and of the
/// branch's own puts.
fn check_writes(ops: &[RequestOp]) -> Result<Writes<'_>, KvError> {
    let mut writes = Writes::default();
    for op in ops {
        if let Some(Request::RequestDeleteRange(delete)) = &op.request {
            writes
                .deletes
                .push((delete.key.as_slice(), delete.range_end.as_slice()));
        }
    }
    for op in ops {
        let Some(Request::RequestTxn(nested)) = &op.request else {
            continue;
        };
        let then = check_writes(&nested.success)?;
        let otherwise = check_writes(&nested.failure)?;
        for &key in &then.puts {
            if writes.puts.contains(key) || writes.deletes_cover(key) {
                return Err(KvError::DuplicateKey);
            }
            writes.puts.insert(key);
        }
        for &key in &otherwise.puts {
            let clash = writes.puts.contains(key) && !then.puts.contains(key);
            if clash || writes.deletes_cover(key) {
                return Err(KvError::DuplicateKey);
            }
            writes.puts.insert(key);
        }
        writes.deletes.extend(then.deletes);
        writes.deletes.extend(otherwise.deletes);
    }
    for op in ops {
        let Some(Request::RequestPut(put)) = &op.request else {
            continue;
        };
        let key = put.key.as_slice();
        if writes.puts.contains(key) || writes.deletes_cover(key) {
            return Err(KvError::DuplicateKey);
        }
        writes.puts.insert(key);
    }
    Ok(writes)
}

/// The operations a transaction will run, nested transactions already resolved to their
/// chosen branch.
#[derive(Debug)]
struct Plan<'a> {
    succeeded: bool,
    steps: Vec<Step<'a>>,
}

#[derive(Debug)]
enum Step<'a> {
    Range(&'a RangeRequest),
    Put(&'a PutRequest),
    DeleteRange(&'a DeleteRangeRequest),
    Txn(Plan<'a>),
}

impl<'a> Plan<'a> {
    /// Judges the comparisons on the store as it is (etcd's `compareToPath`).
    fn choose(store: &Store, txn: &'a TxnRequest) -> Self {
        let succeeded = txn
            .compare
            .iter()
            .all(|condition| compare::holds(condition, store, store.revision));
        let branch = if succeeded {
            &txn.success
        } else {
            &txn.failure
        };
        // Validation refused operations without a request before.
        let steps = branch
            .iter()
            .filter_map(|op| op.request.as_ref())
            .map(|request| match request {
                Request::RequestRange(range) => Step::Range(range),
                Request::RequestPut(put) => Step::Put(put),
                Request::RequestDeleteRange(delete) => Step::DeleteRange(delete),
                Request::RequestTxn(nested) => Step::Txn(Self::choose(store, nested)),
            })
            .collect();
        Self { succeeded, steps }
    }

    /// Checks the chosen operations against the store before any change (etcd's
    /// `checkRequests`): read revisions must exist, puts need their lease and key.
    fn check(&self, store: &Store) -> Result<(), KvError> {
        for step in &self.steps {
            match step {
                Step::Range(range) if range.revision > 0 => {
                    store.read_revision(range.revision)?;
                }
                Step::Put(put) => check_put(store, put)?,
                Step::Txn(nested) => nested.check(store)?,
                Step::Range(_) | Step::DeleteRange(_) => {}
            }
        }
        Ok(())
    }

    /// Runs the operations. Each read's and write's answer carries the revision it saw;
    /// a nested transaction's header is empty, as etcd's applier leaves it.
    fn execute(&self, writer: &mut Writer<'_>) -> TxnResponse {
        let responses = self
            .steps
            .iter()
            .map(|step| {
                let response = match step {
                    Step::Range(range) => Response::ResponseRange(writer.range(range)),
                    Step::Put(put) => Response::ResponsePut(writer.put(put)),
                    Step::DeleteRange(delete) => {
                        Response::ResponseDeleteRange(writer.delete_range(delete))
                    }
                    Step::Txn(nested) => Response::ResponseTxn(TxnResponse {
                        header: Some(ResponseHeader::default()),
                        ..nested.execute(writer)
                    }),
                };
                ResponseOp {
                    response: Some(response),
                }
            })
            .collect();
        TxnResponse {
            header: revision_header(writer.revision()),
            succeeded: self.succeeded,
            responses,
        }
    }
}
