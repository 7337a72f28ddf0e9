//! etcd's protobuf messages to the store's requests, and the store's answers back.
//!
//! Enum fields arrive as integers; a number the proto does not name reads as the field's
//! default, as prost's accessors do.

use sinew_etcd_api::etcdserverpb::{
    self as pb, compare::CompareResult as PbCompareResult, compare::CompareTarget as PbTarget,
    compare::TargetUnion, range_request, request_op, response_op,
};
use sinew_etcd_api::mvccpb;

use crate::v3::{
    Compare, CompareResult, CompareTarget, DeleteRangeRequest, DeleteRangeResponse, Event,
    EventKind, KeyValue, KvError, Op, OpResponse, PutRequest, PutResponse, RangeRequest,
    RangeResponse, SortOrder, SortTarget, TxnRequest, TxnResponse,
};

pub(super) fn range_request(request: &pb::RangeRequest) -> RangeRequest {
    RangeRequest {
        key: request.key.clone(),
        range_end: request.range_end.clone(),
        limit: request.limit,
        revision: request.revision,
        sort_order: match request.sort_order() {
            range_request::SortOrder::None => SortOrder::None,
            range_request::SortOrder::Ascend => SortOrder::Ascend,
            range_request::SortOrder::Descend => SortOrder::Descend,
        },
        sort_target: match request.sort_target() {
            range_request::SortTarget::Key => SortTarget::Key,
            range_request::SortTarget::Version => SortTarget::Version,
            range_request::SortTarget::Create => SortTarget::Create,
            range_request::SortTarget::Mod => SortTarget::Mod,
            range_request::SortTarget::Value => SortTarget::Value,
        },
        keys_only: request.keys_only,
        count_only: request.count_only,
        min_mod_revision: request.min_mod_revision,
        max_mod_revision: request.max_mod_revision,
        min_create_revision: request.min_create_revision,
        max_create_revision: request.max_create_revision,
    }
}

pub(super) fn put_request(request: pb::PutRequest) -> PutRequest {
    PutRequest {
        key: request.key,
        value: request.value,
        lease: request.lease,
        prev_kv: request.prev_kv,
        ignore_value: request.ignore_value,
        ignore_lease: request.ignore_lease,
    }
}

pub(super) fn delete_request(request: pb::DeleteRangeRequest) -> DeleteRangeRequest {
    DeleteRangeRequest {
        key: request.key,
        range_end: request.range_end,
        prev_kv: request.prev_kv,
    }
}

/// The target names the operand; a union holding another field counts as zero, as Go's
/// getters read it.
fn compare(compare: pb::Compare) -> Compare {
    let result = match compare.result() {
        PbCompareResult::Equal => CompareResult::Equal,
        PbCompareResult::Greater => CompareResult::Greater,
        PbCompareResult::Less => CompareResult::Less,
        PbCompareResult::NotEqual => CompareResult::NotEqual,
    };
    let kind = compare.target();
    let union = compare.target_union;
    let target = match kind {
        PbTarget::Version => CompareTarget::Version(match union {
            Some(TargetUnion::Version(version)) => version,
            _ => 0,
        }),
        PbTarget::Create => CompareTarget::CreateRevision(match union {
            Some(TargetUnion::CreateRevision(revision)) => revision,
            _ => 0,
        }),
        PbTarget::Mod => CompareTarget::ModRevision(match union {
            Some(TargetUnion::ModRevision(revision)) => revision,
            _ => 0,
        }),
        PbTarget::Value => CompareTarget::Value(match union {
            Some(TargetUnion::Value(value)) => value,
            _ => Vec::new(),
        }),
        PbTarget::Lease => CompareTarget::Lease(match union {
            Some(TargetUnion::Lease(lease)) => lease,
            _ => 0,
        }),
    };
    Compare {
        key: compare.key,
        range_end: compare.range_end,
        target,
        result,
    }
}

fn op(op: pb::RequestOp) -> Result<Op, KvError> {
    // etcd answers an operation that names no request so.
    Ok(match op.request.ok_or(KvError::KeyNotFound)? {
        request_op::Request::RequestRange(range) => Op::Range(range_request(&range)),
        request_op::Request::RequestPut(put) => Op::Put(put_request(put)),
        request_op::Request::RequestDeleteRange(delete) => Op::DeleteRange(delete_request(delete)),
        request_op::Request::RequestTxn(txn) => Op::Txn(txn_request(txn)?),
    })
}

pub(super) fn txn_request(request: pb::TxnRequest) -> Result<TxnRequest, KvError> {
    Ok(TxnRequest {
        compare: request.compare.into_iter().map(compare).collect(),
        success: request
            .success
            .into_iter()
            .map(op)
            .collect::<Result<_, _>>()?,
        failure: request
            .failure
            .into_iter()
            .map(op)
            .collect::<Result<_, _>>()?,
    })
}

pub(super) fn key_value(kv: KeyValue) -> mvccpb::KeyValue {
    mvccpb::KeyValue {
        key: kv.key,
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
        value: kv.value,
        lease: kv.lease,
    }
}

pub(super) fn event(event: Event) -> mvccpb::Event {
    let kind = match event.kind {
        EventKind::Put => mvccpb::event::EventType::Put,
        EventKind::Delete => mvccpb::event::EventType::Delete,
    };
    mvccpb::Event {
        r#type: kind.into(),
        kv: Some(key_value(event.kv)),
        prev_kv: event.prev_kv.map(key_value),
    }
}

/// A header with the revision only, as the answers of a transaction's reads and writes
/// carry.
fn revision_only(revision: i64) -> Option<pb::ResponseHeader> {
    Some(pb::ResponseHeader {
        revision,
        ..pb::ResponseHeader::default()
    })
}

pub(super) fn range_response(
    header: Option<pb::ResponseHeader>,
    response: RangeResponse,
) -> pb::RangeResponse {
    pb::RangeResponse {
        header,
        kvs: response.kvs.into_iter().map(key_value).collect(),
        more: response.more,
        count: response.count,
    }
}

pub(super) fn put_response(
    header: Option<pb::ResponseHeader>,
    response: PutResponse,
) -> pb::PutResponse {
    pb::PutResponse {
        header,
        prev_kv: response.prev_kv.map(key_value),
    }
}

pub(super) fn delete_response(
    header: Option<pb::ResponseHeader>,
    response: DeleteRangeResponse,
) -> pb::DeleteRangeResponse {
    pb::DeleteRangeResponse {
        header,
        deleted: response.deleted,
        prev_kvs: response.prev_kvs.into_iter().map(key_value).collect(),
    }
}

fn op_response(response: OpResponse) -> pb::ResponseOp {
    let response = match response {
        OpResponse::Range(range) => response_op::Response::ResponseRange(range_response(
            revision_only(range.header.revision),
            range,
        )),
        OpResponse::Put(put) => response_op::Response::ResponsePut(put_response(
            revision_only(put.header.revision),
            put,
        )),
        OpResponse::DeleteRange(delete) => response_op::Response::ResponseDeleteRange(
            delete_response(revision_only(delete.header.revision), delete),
        ),
        // A nested transaction's header is empty, as etcd's applier leaves it.
        OpResponse::Txn(txn) => response_op::Response::ResponseTxn(txn_response(
            Some(pb::ResponseHeader::default()),
            txn,
        )),
    };
    pb::ResponseOp {
        response: Some(response),
    }
}

pub(super) fn txn_response(
    header: Option<pb::ResponseHeader>,
    response: TxnResponse,
) -> pb::TxnResponse {
    pb::TxnResponse {
        header,
        succeeded: response.succeeded,
        responses: response.responses.into_iter().map(op_response).collect(),
    }
}
