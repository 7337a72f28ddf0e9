//! Maintenance.Snapshot's messages: a copy of the member's whole state, streamed in chunks
//! with how many bytes remain, then the SHA-256 of what came before, as etcd streams its
//! database. kvd's copy is its own snapshot format (both stores, protobuf, as its Raft
//! snapshots hold them), not etcd's bbolt file.

use prost::encoding::encode_varint;
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
///
/// Each chunk is cut and hashed when the stream asks for it, so a large state is neither
/// copied whole nor hashed at once on a runtime thread.
pub(crate) struct EtcdChunks {
    length: Vec<u8>,
    state: Vec<u8>,
    /// The framed and padded data's length.
    total: usize,
    sent: usize,
    /// `None` once the digest went.
    hasher: Option<Sha256>,
}

impl EtcdChunks {
    pub(crate) fn new(state: Vec<u8>) -> Self {
        let mut length = Vec::new();
        encode_varint(state.len() as u64, &mut length);
        let total = (length.len() + state.len()).div_ceil(BLOCK) * BLOCK;
        Self {
            length,
            state,
            total,
            sent: 0,
            hasher: Some(Sha256::new()),
        }
    }

    /// Bytes `start..start + len` of the data: the length, the state, then zeros.
    fn cut(&self, start: usize, len: usize) -> Vec<u8> {
        let end = start + len;
        let mut chunk = Vec::with_capacity(len);
        let mut offset = 0;
        for part in [self.length.as_slice(), self.state.as_slice()] {
            let (from, to) = (start.max(offset), end.min(offset + part.len()));
            if from < to {
                chunk.extend_from_slice(&part[from - offset..to - offset]);
            }
            offset += part.len();
        }
        chunk.resize(len, 0);
        chunk
    }
}

impl Iterator for EtcdChunks {
    type Item = (u64, Vec<u8>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.sent < self.total {
            let chunk = self.cut(self.sent, CHUNK.min(self.total - self.sent));
            self.sent += chunk.len();
            if let Some(hasher) = &mut self.hasher {
                hasher.update(&chunk);
            }
            return Some(((self.total - self.sent) as u64, chunk));
        }
        self.hasher
            .take()
            .map(|hasher| (0, hasher.finalize().to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The data and the digest `EtcdChunks` streams for `state`, checked for etcd's shape.
    fn streamed(state: &[u8]) -> Vec<u8> {
        let chunks: Vec<_> = EtcdChunks::new(state.to_vec()).collect();
        let total: usize = chunks.iter().map(|(_, blob)| blob.len()).sum();
        assert_eq!(total % BLOCK, 32, "etcdctl's hasChecksum");
        let mut remaining = total - 32;
        for (said, blob) in &chunks[..chunks.len() - 1] {
            assert!(blob.len() <= CHUNK);
            remaining -= blob.len();
            assert_eq!(*said, remaining as u64);
        }
        let (last_remaining, digest) = chunks.last().expect("digest");
        assert_eq!(*last_remaining, 0);
        let body: Vec<u8> = chunks[..chunks.len() - 1]
            .iter()
            .flat_map(|(_, blob)| blob.clone())
            .collect();
        assert_eq!(Sha256::digest(&body).to_vec(), *digest);
        body
    }

    #[test]
    fn snapshots_stream_as_etcd_files_whole_blocks_then_their_digest() {
        // Several chunks; less than a block; a state that fills whole blocks once framed.
        for size in [3 * CHUNK + 7, 100, 2 * BLOCK - 2] {
            let state: Vec<u8> = (0..=u8::MAX).cycle().take(size).collect();
            let body = streamed(&state);
            let mut framed = body.as_slice();
            let length = prost::encoding::decode_varint(&mut framed).expect("a length");
            assert_eq!(length, state.len() as u64);
            assert_eq!(&framed[..state.len()], state);
            assert!(framed[state.len()..].iter().all(|byte| *byte == 0));
        }
    }
}
