//! The journal in front of the log's database: a sync appends the entries staged since the
//! last one to a preallocated file and makes them durable with one fdatasync, where a durable
//! database commit writes and syncs several pages scattered over its file.
//!
//! A record is `length (u32) | crc32 (u32) | generation (u64) | payload`, little-endian, the
//! checksum over the generation and the payload. The length's top bit says that more records
//! of the same append follow: an append is all or nothing, since a process killed during
//! its write (Linux stops a write between pages for a fatal signal) or a machine losing
//! power before the sync can leave a prefix of it on disk. Every durable database commit names the
//! next generation and starts the journal over from its beginning, so the journal only ever
//! holds entries staged after the database's last durable commit. Reading stops at the first
//! record that is torn, damaged or of another generation (what an earlier generation left
//! further on in the file). The log keeps two journals and appends to one at a time (see
//! `durable_log`), so a generation may also follow on in the other file.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Bytes before a record's payload.
const HEADER: usize = 16;
/// The length's top bit: the record is not the last of its append.
const CONTINUES: u32 = 1 << 31;

/// A journal file of a fixed size, written from its start in each generation.
#[derive(Debug)]
pub struct Journal {
    file: File,
    path: PathBuf,
    capacity: u64,
    generation: u64,
    /// Where the next record goes.
    end: u64,
}

impl Journal {
    /// Opens (or creates and preallocates to `capacity` bytes) the journal at `path`, and
    /// returns it with the payloads `generation` holds, in order. Appends start after them.
    pub fn open(path: &Path, capacity: u64, generation: u64) -> io::Result<(Self, Vec<Vec<u8>>)> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        if file.metadata()?.len() < capacity {
            // Allocated blocks spare each fdatasync a metadata update; a file system that
            // cannot preallocate gets a sparse file.
            let length = i64::try_from(capacity).map_err(io::Error::other)?;
            if nix::fcntl::posix_fallocate(&file, 0, length).is_err() {
                file.set_len(capacity)?;
            }
            file.sync_all()?;
        }
        let mut journal = Self {
            file,
            path: path.to_path_buf(),
            capacity,
            generation,
            end: 0,
        };
        let payloads = journal.read(generation)?;
        Ok((journal, payloads))
    }

    /// Makes `generation` current and returns the payloads the file holds of it, in order,
    /// up to its last whole append; appends go after them.
    pub fn read(&mut self, generation: u64) -> io::Result<Vec<Vec<u8>>> {
        self.generation = generation;
        self.end = 0;
        let mut payloads = Vec::new();
        let mut append = Vec::new();
        let mut at = 0;
        let mut header = [0u8; HEADER];
        while at + HEADER as u64 <= self.capacity {
            self.file.read_exact_at(&mut header, at)?;
            let (length, continues, crc, generation) = parse_header(&header);
            let next = at + (HEADER + length) as u64;
            if length == 0 || generation != self.generation || next > self.capacity {
                break;
            }
            let mut payload = vec![0; length];
            self.file.read_exact_at(&mut payload, at + HEADER as u64)?;
            if checksum(generation, &payload) != crc {
                break;
            }
            append.push(payload);
            at = next;
            if !continues {
                payloads.append(&mut append);
                self.end = at;
            }
        }
        Ok(payloads)
    }

    /// Whether `payloads` fit after what is written.
    pub fn has_room<P: AsRef<[u8]>>(&self, payloads: &[P]) -> bool {
        let needed: u64 = payloads
            .iter()
            .map(|payload| (HEADER + payload.as_ref().len()) as u64)
            .sum();
        self.end + needed <= self.capacity
    }

    /// Appends `payloads` as records of the current generation and returns once they are on
    /// disk. The caller checked [`Journal::has_room`].
    pub fn append<P: AsRef<[u8]>>(&mut self, payloads: &[P]) -> io::Result<()> {
        if payloads.is_empty() {
            return Ok(());
        }
        let mut bytes = Vec::new();
        let last = payloads.len() - 1;
        for (i, payload) in payloads.iter().map(AsRef::as_ref).enumerate() {
            let length = u32::try_from(payload.len())
                .ok()
                .filter(|length| length & CONTINUES == 0)
                .ok_or_else(|| io::Error::other("a journal record holds less than 2 GiB"))?;
            let flag = if i < last { CONTINUES } else { 0 };
            bytes.extend_from_slice(&(length | flag).to_le_bytes());
            bytes.extend_from_slice(&checksum(self.generation, payload).to_le_bytes());
            bytes.extend_from_slice(&self.generation.to_le_bytes());
            bytes.extend_from_slice(payload);
        }
        self.file.write_all_at(&bytes, self.end)?;
        self.file.sync_data()?;
        self.end += bytes.len() as u64;
        Ok(())
    }

    /// Starts `generation` from the file's beginning: the database holds everything before.
    pub fn restart(&mut self, generation: u64) {
        self.generation = generation;
        self.end = 0;
    }

    /// The current generation.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// A header's length, whether more records of its append follow, checksum and generation.
fn parse_header(header: &[u8; HEADER]) -> (usize, bool, u32, u64) {
    let mut length = [0u8; 4];
    let mut crc = [0u8; 4];
    let mut generation = [0u8; 8];
    length.copy_from_slice(&header[..4]);
    crc.copy_from_slice(&header[4..8]);
    generation.copy_from_slice(&header[8..]);
    let length = u32::from_le_bytes(length);
    (
        (length & !CONTINUES) as usize,
        length & CONTINUES != 0,
        u32::from_le_bytes(crc),
        u64::from_le_bytes(generation),
    )
}

fn checksum(generation: u64, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&generation.to_le_bytes());
    hasher.update(payload);
    hasher.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payloads(texts: &[&str]) -> Vec<Vec<u8>> {
        texts.iter().map(|text| text.as_bytes().to_vec()).collect()
    }

    #[test]
    fn a_generation_reads_back_what_was_appended_and_appends_continue_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal");
        let (mut journal, read) = Journal::open(&path, 4096, 7).unwrap();
        assert!(read.is_empty());
        journal.append(&payloads(&["a", "bc"])).unwrap();
        journal.append(&payloads(&["def"])).unwrap();
        drop(journal);
        let (mut journal, read) = Journal::open(&path, 4096, 7).unwrap();
        assert_eq!(read, payloads(&["a", "bc", "def"]));
        journal.append(&payloads(&["g"])).unwrap();
        let (_, read) = Journal::open(&path, 4096, 7).unwrap();
        assert_eq!(read, payloads(&["a", "bc", "def", "g"]));
    }

    #[test]
    fn another_generation_sees_none_of_the_records_left_from_earlier_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal");
        let (mut journal, _) = Journal::open(&path, 4096, 1).unwrap();
        journal
            .append(&payloads(&["old-1", "old-2", "old-3"]))
            .unwrap();
        journal.restart(2);
        journal.append(&payloads(&["new"])).unwrap();
        let (_, read) = Journal::open(&path, 4096, 2).unwrap();
        assert_eq!(read, payloads(&["new"]), "stops at the first older record");
        let (_, read) = Journal::open(&path, 4096, 1).unwrap();
        assert!(read.is_empty(), "the first record is of generation 2");
    }

    #[test]
    fn a_damaged_record_ends_the_generation_there() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal");
        let (mut journal, _) = Journal::open(&path, 4096, 3).unwrap();
        journal.append(&payloads(&["keep"])).unwrap();
        journal.append(&payloads(&["torn"])).unwrap();
        journal.append(&payloads(&["after"])).unwrap();
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        // The second record's payload starts after the first record and its own header.
        file.write_all_at(b"X", (HEADER + 4 + HEADER) as u64)
            .unwrap();
        let (_, read) = Journal::open(&path, 4096, 3).unwrap();
        assert_eq!(read, payloads(&["keep"]));
    }

    #[test]
    fn an_append_cut_short_is_not_read_and_is_written_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal");
        let (mut journal, _) = Journal::open(&path, 4096, 5).unwrap();
        journal.append(&payloads(&["whole"])).unwrap();
        journal
            .append(&payloads(&["first", "second", "third"]))
            .unwrap();
        // A write stopped after the batch's first two records: the third never arrived.
        let third = 2 * (HEADER + 5) + HEADER + 6;
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.write_all_at(&[0; HEADER + 5], third as u64).unwrap();
        let (mut journal, read) = Journal::open(&path, 4096, 5).unwrap();
        assert_eq!(read, payloads(&["whole"]), "none of a torn append");
        journal.append(&payloads(&["next"])).unwrap();
        let (_, read) = Journal::open(&path, 4096, 5).unwrap();
        assert_eq!(read, payloads(&["whole", "next"]));
    }

    #[test]
    fn a_full_journal_says_so_before_an_append() {
        let dir = tempfile::tempdir().unwrap();
        let (mut journal, _) = Journal::open(&dir.path().join("journal"), 64, 1).unwrap();
        let big = vec![vec![0u8; 40]];
        assert!(journal.has_room(&big));
        journal.append(&big).unwrap();
        assert!(!journal.has_room(&payloads(&["x"])));
        journal.restart(2);
        assert!(journal.has_room(&big));
    }
}
