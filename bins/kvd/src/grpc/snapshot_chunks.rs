//! Maintenance.Snapshot's messages: a copy of the member's whole state, streamed in chunks
//! with how many bytes remain, then the SHA-256 of what came before, as etcd streams its
//! database. kvd's copy is its own snapshot format (both stores, protobuf, as its Raft
//! snapshots hold them), not etcd's bbolt file.

use prost::encoding::{encode_varint, encoded_len_varint};
use sha2::{Digest, Sha256};

/// Bytes per streamed chunk (etcd sends 32 KiB).
const CHUNK: usize = 32 * 1024;

/// etcd's snapshot files are a whole number of these, then a SHA-256 of them; `etcdctl
/// snapshot save` refuses a stream of any other length.
const BLOCK: usize = 512;

/// The messages etcd streams a snapshot as: `(remaining_bytes, blob)` chunks of the data,
/// then its SHA-256 with 0 remaining. The data goes length-delimited, as protobuf frames a
/// message (its length as a varint, then its bytes), so that the zeros that pad it to whole
/// blocks are not taken for part of it.
pub(crate) fn etcd_chunks(state: &[u8]) -> Vec<(u64, Vec<u8>)> {
    let framed = encoded_len_varint(state.len() as u64) + state.len();
    let mut data = Vec::with_capacity(framed.div_ceil(BLOCK) * BLOCK);
    encode_varint(state.len() as u64, &mut data);
    data.extend_from_slice(state);
    data.resize(framed.div_ceil(BLOCK) * BLOCK, 0);
    let digest = Sha256::digest(&data).to_vec();
    let mut remaining = data.len();
    let mut chunks = Vec::with_capacity(remaining / CHUNK + 2);
    for chunk in data.chunks(CHUNK) {
        remaining -= chunk.len();
        chunks.push((remaining as u64, chunk.to_vec()));
    }
    chunks.push((0, digest));
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_stream_as_etcd_files_whole_blocks_then_their_digest() {
        let state = vec![b'{'; CHUNK + 7];
        let chunks = etcd_chunks(&state);
        let total: usize = chunks.iter().map(|(_, blob)| blob.len()).sum();
        assert_eq!(total % BLOCK, 32, "etcdctl's hasChecksum");
        assert_eq!(chunks[0].0, (total - 32 - CHUNK) as u64);
        let (last_remaining, digest) = chunks.last().expect("digest");
        assert_eq!(*last_remaining, 0);
        let body: Vec<u8> = chunks[..chunks.len() - 1]
            .iter()
            .flat_map(|(_, blob)| blob.clone())
            .collect();
        assert_eq!(Sha256::digest(&body).to_vec(), *digest);
        let mut framed = body.as_slice();
        let length = prost::encoding::decode_varint(&mut framed).expect("a length");
        assert_eq!(length, state.len() as u64);
        assert_eq!(&framed[..state.len()], state);
        assert!(framed[state.len()..].iter().all(|byte| *byte == 0));
    }
}
