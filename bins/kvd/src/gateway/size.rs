//! Request sizes as etcd measures them: the protobuf encoding of a request, which etcd bounds
//! twice (gRPC refuses messages over `--max-request-bytes` plus 512 KiB; the server refuses
//! proposals over `--max-request-bytes`). This computes the encoded length of the request
//! as the proto would encode it, plus the few bytes of the Raft request envelope.

use crate::v3::{
    Command, Compare, CompareTarget, DeleteRangeRequest, Op, PutRequest, RangeRequest,
};

/// etcd's default `--max-request-bytes`: 1.5 MiB.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 1536 * 1024;

/// What gRPC adds to `--max-request-bytes` for its receive limit.
pub const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;

/// The bytes etcd's Raft envelope (`InternalRaftRequest` with its header) adds to a request.
const ENVELOPE_BYTES: usize = 16;

fn varint_len(mut value: u64) -> usize {
    let mut length = 1;
    while value >= 0x80 {
        value >>= 7;
        length += 1;
    }
    length
}

fn bytes_field(bytes: &[u8]) -> usize {
    if bytes.is_empty() {
        0
    } else {
        message_field(bytes.len())
    }
}

/// A varint field; a negative `int64` takes ten bytes, as protobuf encodes it.
fn int_field(value: i64) -> usize {
    if value == 0 {
        0
    } else {
        1 + varint_len(value.cast_unsigned())
    }
}

fn bool_field(value: bool) -> usize {
    if value {
        2
    } else {
        0
    }
}

fn message_field(length: usize) -> usize {
    1 + varint_len(length as u64) + length
}

fn range_len(range: &RangeRequest) -> usize {
    bytes_field(&range.key)
        + bytes_field(&range.range_end)
        + int_field(range.limit)
        + int_field(range.revision)
        + int_field(range.sort_order as i64)
        + int_field(range.sort_target as i64)
        + bool_field(range.keys_only)
        + bool_field(range.count_only)
        + int_field(range.min_mod_revision)
        + int_field(range.max_mod_revision)
        + int_field(range.min_create_revision)
        + int_field(range.max_create_revision)
}

fn put_len(put: &PutRequest) -> usize {
    bytes_field(&put.key)
        + bytes_field(&put.value)
        + int_field(put.lease)
        + bool_field(put.prev_kv)
        + bool_field(put.ignore_value)
        + bool_field(put.ignore_lease)
}

fn delete_len(delete: &DeleteRangeRequest) -> usize {
    bytes_field(&delete.key) + bytes_field(&delete.range_end) + bool_field(delete.prev_kv)
}

fn compare_len(compare: &Compare) -> usize {
    let operand = match &compare.target {
        CompareTarget::Value(value) => message_field(value.len()),
        CompareTarget::Version(number)
        | CompareTarget::CreateRevision(number)
        | CompareTarget::ModRevision(number)
        | CompareTarget::Lease(number) => 1 + varint_len(number.cast_unsigned()),
    };
    bytes_field(&compare.key) + bytes_field(&compare.range_end) + operand + 4
}

fn op_len(op: &Op) -> usize {
    message_field(match op {
        Op::Range(range) => range_len(range),
        Op::Put(put) => put_len(put),
        Op::DeleteRange(delete) => delete_len(delete),
        Op::Txn(txn) => txn_len(&txn.compare, &txn.success, &txn.failure),
    })
}

fn txn_len(compare: &[Compare], success: &[Op], failure: &[Op]) -> usize {
    compare
        .iter()
        .map(|compare| message_field(compare_len(compare)))
        .chain(
            success
                .iter()
                .chain(failure)
                .map(|op| message_field(op_len(op))),
        )
        .sum()
}

/// The encoded size of the request a command is made from, as gRPC receives it.
fn request_len(command: &Command) -> usize {
    match command {
        Command::Put(put) => put_len(put),
        Command::DeleteRange(delete) => delete_len(delete),
        Command::Txn(txn) => txn_len(&txn.compare, &txn.success, &txn.failure),
        Command::Compact(compact) => int_field(compact.revision),
        Command::LeaseGrant(grant) => int_field(grant.ttl) + int_field(grant.id),
        Command::LeaseRevoke(revoke) => int_field(revoke.id),
    }
}

/// The encoded size of a command's Raft proposal: the request inside etcd's envelope.
pub fn proposal_len(command: &Command) -> usize {
    message_field(request_len(command)) + ENVELOPE_BYTES
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_put_counts_its_key_value_and_envelope() {
        let put = Command::Put(PutRequest {
            key: b"big".to_vec(),
            value: vec![b'x'; 300],
            ..PutRequest::default()
        });
        // key: tag + length + 3; value: tag + 2-byte length + 300; the put field: tag +
        // 2-byte length; then the envelope.
        assert_eq!(
            proposal_len(&put),
            (1 + 1 + 3) + (1 + 2 + 300) + 3 + ENVELOPE_BYTES
        );
        assert_eq!(varint_len(127), 1);
        assert_eq!(varint_len(128), 2);
        assert_eq!(varint_len(u64::MAX), 10);
    }
}
