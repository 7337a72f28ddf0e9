//! Building transactions from etcd's messages: a comparison from its operand, and an
//! operation from its request.

use crate::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use crate::etcdserverpb::{
    request_op, Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
};

/// A comparison of `key` with `operand` (its value, version, create or mod revision, or
/// lease; the operand's kind is the target).
pub fn compare(key: impl Into<Vec<u8>>, result: CompareResult, operand: TargetUnion) -> Compare {
    let target = match operand {
        TargetUnion::Version(_) => CompareTarget::Version,
        TargetUnion::CreateRevision(_) => CompareTarget::Create,
        TargetUnion::ModRevision(_) => CompareTarget::Mod,
        TargetUnion::Value(_) => CompareTarget::Value,
        TargetUnion::Lease(_) => CompareTarget::Lease,
    };
    Compare {
        result: result.into(),
        target: target.into(),
        key: key.into(),
        target_union: Some(operand),
        range_end: Vec::new(),
    }
}

/// A put, as a transaction operation.
pub fn put(request: PutRequest) -> RequestOp {
    op(request_op::Request::RequestPut(request))
}

/// A range read, as a transaction operation.
pub fn range(request: RangeRequest) -> RequestOp {
    op(request_op::Request::RequestRange(request))
}

/// A delete, as a transaction operation.
pub fn delete(request: DeleteRangeRequest) -> RequestOp {
    op(request_op::Request::RequestDeleteRange(request))
}

/// A nested transaction, as a transaction operation.
pub fn nested(request: TxnRequest) -> RequestOp {
    op(request_op::Request::RequestTxn(request))
}

fn op(request: request_op::Request) -> RequestOp {
    RequestOp {
        request: Some(request),
    }
}

/// Whether every operation of both branches only reads, so the transaction may be retried
/// after an unanswered attempt.
pub fn is_read_only(request: &TxnRequest) -> bool {
    request
        .success
        .iter()
        .chain(&request.failure)
        .all(|op| match &op.request {
            Some(request_op::Request::RequestRange(_)) | None => true,
            Some(request_op::Request::RequestTxn(nested)) => is_read_only(nested),
            Some(_) => false,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_comparison_targets_its_operand_s_kind() {
        let compare = compare("k", CompareResult::Greater, TargetUnion::ModRevision(4));
        assert_eq!(compare.target(), CompareTarget::Mod);
        assert_eq!(compare.result(), CompareResult::Greater);
        assert_eq!(compare.key, b"k");
    }

    #[test]
    fn only_reads_all_the_way_down_make_a_read_only_transaction() {
        let read = range(RangeRequest::default());
        let mut txn = TxnRequest {
            success: vec![read.clone()],
            failure: vec![nested(TxnRequest {
                success: vec![read],
                ..TxnRequest::default()
            })],
            ..TxnRequest::default()
        };
        assert!(is_read_only(&txn));
        txn.failure.push(put(PutRequest::default()));
        assert!(!is_read_only(&txn));
    }
}
