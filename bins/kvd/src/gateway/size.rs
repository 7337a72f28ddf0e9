//! Request sizes as etcd measures them: the protobuf encoding of a request, which etcd bounds
//! twice (gRPC refuses messages over `--max-request-bytes` plus 512 KiB; the server refuses
//! proposals over `--max-request-bytes`).

use prost::encoding::encoded_len_varint;
use prost::Message as _;

use crate::v3::Command;

/// etcd's default `--max-request-bytes`: 1.5 MiB.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 1536 * 1024;

/// What gRPC adds to `--max-request-bytes` for its receive limit.
pub const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;

/// The bytes etcd's Raft envelope (`InternalRaftRequest` with its header) adds to a request.
const ENVELOPE_BYTES: usize = 16;

/// The encoded size of a command's Raft proposal: the request as a field of etcd's envelope.
pub fn proposal_len(command: &Command) -> usize {
    let request = match command {
        Command::Put(put) => put.encoded_len(),
        Command::DeleteRange(delete) => delete.encoded_len(),
        Command::Txn(txn) => txn.encoded_len(),
        Command::Compact(compact) => compact.encoded_len(),
        Command::LeaseGrant(grant) => grant.encoded_len(),
        Command::LeaseRevoke(revoke) => revoke.encoded_len(),
    };
    1 + encoded_len_varint(request as u64) + request + ENVELOPE_BYTES
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v3::PutRequest;

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
    }
}
