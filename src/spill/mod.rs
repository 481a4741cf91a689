//! Spilling to disk for bounded memory: records framed and encoded with postcard into hash
//! partition files, in a private scratch directory removed however the run ends, and the
//! k-way merge that reads them back in ordinal order (the position of an identity in the
//! output). `refresh`'s join and `map`'s exact dedupe both go through it.
//!
//! ```text
//! first read ──▶ side-P files (one per partition) ──▶ per partition: decide ──▶ d-P files
//! second read ◀── Merge: the records of every partition, by ordinal ◀──────────────┘
//! ```

mod scratch;
pub(crate) use scratch::{scratch_dir, Scratch};

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::Error;

/// An I/O error on a scratch file, as the crate's error.
pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |e| {
        Error::Output(crate::output::OutputError::Io {
            path: path.display().to_string(),
            source: e,
        })
    }
}

/// Writes one record: its postcard length (u32 LE), then its postcard bytes.
pub(crate) fn put<T: Serialize>(w: &mut impl Write, record: &T) -> std::io::Result<()> {
    thread_local! {
        /// The encoding buffer, reused: a record is written without an allocation.
        static BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    BUF.with_borrow_mut(|buf| {
        buf.clear();
        let bytes = postcard::to_extend(record, std::mem::take(buf))
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        *buf = bytes;
        let len = u32::try_from(buf.len())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        w.write_all(&len.to_le_bytes())?;
        w.write_all(buf)
    })
}

/// Reads the next record's bytes into `buf`; `false` at the end of the file.
pub(crate) fn next_frame(r: &mut impl Read, buf: &mut Vec<u8>) -> std::io::Result<bool> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(false),
        Err(e) => return Err(e),
    }
    buf.resize(u32::from_le_bytes(len) as usize, 0);
    r.read_exact(buf)?;
    Ok(true)
}

/// Decodes a frame read by [`next_frame`].
pub(crate) fn decode<'a, T: serde::Deserialize<'a>>(buf: &'a [u8]) -> std::io::Result<T> {
    postcard::from_bytes(buf).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// The partition files of a scratch directory: `SIDE-PPPPP.bin`, `n` per side.
pub(crate) struct Partitions {
    pub(crate) dir: PathBuf,
    pub(crate) n: usize,
}

/// Most partitions per side, whatever the input: well under the usual 1,024 open files.
const MAX_PARTITIONS: usize = 512;
/// Files a run keeps open beside its partitions: stdio, the runtime, up to 20 connections
/// to the operator, the state's and the output's Parquet files, the lock.
const OTHER_OPEN_FILES: u64 = 40;

/// The soft limit of open files of this process (`ulimit -n`), from `/proc/self/limits`;
/// 1,024 where it cannot be read.
pub(crate) fn open_files_limit() -> u64 {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|t| {
            let line = t.lines().find(|l| l.starts_with("Max open files"))?;
            let soft = line
                .trim_start_matches("Max open files")
                .split_whitespace()
                .next()?;
            match soft {
                "unlimited" => Some(u64::MAX),
                n => n.parse().ok(),
            }
        })
        .unwrap_or(1024)
}

/// How many partitions a side may have, `wanted` or fewer: at most 512, and never more
/// than the open-file limit leaves room for (every partition of a side is open at once
/// while it is written, and again in the k-way merge). Fewer partitions than wanted hold
/// more rows each: the run takes more memory rather than failing every night.
pub(crate) fn partitions_within_limits(wanted: usize) -> usize {
    partitions_for_sides(wanted, 1)
}

/// [`partitions_within_limits`] for `sides` sides written at once: each gets its share of
/// the open-file room (still at most 512 partitions).
pub(crate) fn partitions_for_sides(wanted: usize, sides: u64) -> usize {
    let room = (open_files_limit().saturating_sub(OTHER_OPEN_FILES) / sides.max(1)).max(1);
    let cap = usize::try_from(room)
        .unwrap_or(usize::MAX)
        .min(MAX_PARTITIONS);
    if wanted > cap {
        tracing::debug!(wanted, cap, "partitions capped by the open-file limit");
    }
    wanted.clamp(1, cap)
}

/// Write buffer of each partition file (all of a side's are open at once).
const PARTITION_BUFFER: usize = 1 << 16;

impl Partitions {
    /// Partition `p` of `side`.
    pub(crate) fn path(&self, side: &str, p: usize) -> PathBuf {
        self.dir.join(format!("{side}-{p:05}.bin"))
    }

    /// One writer per partition of `side`.
    pub(crate) fn writers(&self, side: &str) -> Result<Vec<BufWriter<File>>, Error> {
        (0..self.n).map(|p| self.writer(side, p)).collect()
    }

    /// The writer of partition `p` of `side`.
    pub(crate) fn writer(&self, side: &str, p: usize) -> Result<BufWriter<File>, Error> {
        let path = self.path(side, p);
        private_file(&path)
            .map(|f| BufWriter::with_capacity(PARTITION_BUFFER, f))
            .map_err(io(&path))
    }

    /// A reader of partition `p` of `side`.
    pub(crate) fn reader(&self, side: &str, p: usize) -> Result<BufReader<File>, Error> {
        let path = self.path(side, p);
        File::open(&path)
            .map(|f| BufReader::with_capacity(PARTITION_BUFFER, f))
            .map_err(io(&path))
    }
}

/// Flushes every writer of a side.
pub(crate) fn finish(ws: Vec<BufWriter<File>>, dir: &Path) -> Result<(), Error> {
    for mut w in ws {
        w.flush().map_err(io(dir))?;
    }
    Ok(())
}

/// A file only this user may read: scratch files hold hashed identities.
fn private_file(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
}

/// FNV-1a: a stable hash (across runs and versions) for partitions and names.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// A spilled record that knows its place in the output.
pub(crate) trait Ordered {
    /// The position of the identity it is for, over the whole output.
    fn ordinal(&self) -> u64;
}

/// The records of every partition of a side, merged in ordinal order.
pub(crate) struct Merge<R> {
    readers: Vec<BufReader<File>>,
    heap: BinaryHeap<Reverse<(u64, usize)>>,
    pending: Vec<Option<R>>,
    dir: PathBuf,
    buf: Vec<u8>,
    /// The first ordinal the second read asks for (after the rows an interrupted run
    /// wrote): records below it are skipped, any other record not asked for is an identity
    /// the second read no longer has.
    floor: u64,
    /// Records at or above `floor` that were never asked for.
    pub(crate) orphans: u64,
}

impl<R: Ordered + DeserializeOwned> Merge<R> {
    /// Opens the files of `side` for the merge, from ordinal `floor` on.
    ///
    /// # Errors
    /// A file cannot be read.
    pub(crate) fn open(parts: &Partitions, side: &str, floor: u64) -> Result<Merge<R>, Error> {
        let mut m = Merge {
            readers: (0..parts.n)
                .map(|p| parts.reader(side, p))
                .collect::<Result<_, _>>()?,
            heap: BinaryHeap::new(),
            pending: (0..parts.n).map(|_| None).collect(),
            dir: parts.dir.clone(),
            buf: Vec::new(),
            floor,
            orphans: 0,
        };
        for p in 0..parts.n {
            m.refill(p)?;
        }
        Ok(m)
    }

    fn refill(&mut self, p: usize) -> Result<(), Error> {
        if next_frame(&mut self.readers[p], &mut self.buf).map_err(io(&self.dir))? {
            let rec: R = postcard::from_bytes(&self.buf).map_err(|e| {
                io(&self.dir)(std::io::Error::new(std::io::ErrorKind::InvalidData, e))
            })?;
            self.heap.push(Reverse((rec.ordinal(), p)));
            self.pending[p] = Some(rec);
        }
        Ok(())
    }

    /// The record for `ordinal`; records for smaller ordinals (rows an interrupted run
    /// already wrote) are skipped. `None` if there is none.
    ///
    /// # Errors
    /// A file cannot be read.
    pub(crate) fn take(&mut self, ordinal: u64) -> Result<Option<R>, Error> {
        while let Some(Reverse((o, p))) = self.heap.peek().copied() {
            if o > ordinal {
                return Ok(None);
            }
            self.heap.pop();
            let d = self.pending[p].take();
            self.refill(p)?;
            if o == ordinal {
                return Ok(d);
            }
            if o >= self.floor {
                self.orphans += 1;
            }
        }
        Ok(None)
    }

    /// The next record in ordinal order, whatever its ordinal; `None` at the end.
    ///
    /// # Errors
    /// A file cannot be read.
    pub(crate) fn next(&mut self) -> Result<Option<R>, Error> {
        let Some(Reverse((_, p))) = self.heap.pop() else {
            return Ok(None);
        };
        let d = self.pending[p].take();
        self.refill(p)?;
        Ok(d)
    }

    /// Reads the records never asked for; `true` when any is at or above the floor (an
    /// identity the first read had and the second did not).
    ///
    /// # Errors
    /// A file cannot be read.
    pub(crate) fn any_left(&mut self) -> Result<bool, Error> {
        self.take(u64::MAX)?;
        Ok(self.orphans > 0)
    }
}

#[cfg(test)]
mod limit_tests {
    #[test]
    fn partitions_are_capped_at_512_and_by_the_open_file_limit() {
        let limit = super::open_files_limit();
        assert!(limit >= 64, "a readable limit: {limit}");
        assert_eq!(super::partitions_within_limits(0), 1);
        assert_eq!(super::partitions_within_limits(3), 3);
        let cap = super::partitions_within_limits(usize::MAX);
        assert!(
            cap <= 512 && (cap as u64) <= limit.saturating_sub(40).max(1),
            "{cap}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    struct Rec(u64);

    impl Ordered for Rec {
        fn ordinal(&self) -> u64 {
            self.0
        }
    }

    #[test]
    fn partitions_merge_back_in_ordinal_order_in_a_private_folder() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("scratch");
        let scratch = Scratch::create(dir.clone()).expect("scratch");
        let mode = std::fs::metadata(&dir).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        let parts = Partitions {
            dir: scratch.path().to_path_buf(),
            n: 3,
        };
        let mut ws = parts.writers("d").expect("writers");
        for o in 0..30u64 {
            put(&mut ws[(o * 7 % 3) as usize], &Rec(o)).expect("put");
        }
        finish(ws, &dir).expect("flush");
        let mut m = Merge::<Rec>::open(&parts, "d", 5).expect("open");
        assert_eq!(m.take(5).expect("take"), Some(Rec(5)));
        assert_eq!(m.orphans, 0, "below the floor is skipped, not an orphan");
        assert_eq!(m.take(7).expect("take"), Some(Rec(7)));
        assert_eq!(m.orphans, 1, "6 was never asked for");
        assert!(m.any_left().expect("rest"));
        drop(scratch);
        assert!(!dir.exists(), "removed with its guard");
    }

    #[test]
    fn a_digest_is_one_run_of_bytes_in_a_record_and_reads_back() {
        let h = crate::normalize::sha256(b"a@b.com");
        let mut buf = Vec::new();
        put(&mut buf, &(7u64, h)).expect("put");
        // Frame length (4 bytes), ordinal, the length 32, the digest: no byte per field.
        assert_eq!(buf.len(), 4 + 1 + 1 + 32);
        let mut r = buf.as_slice();
        let mut frame = Vec::new();
        assert!(next_frame(&mut r, &mut frame).expect("frame"));
        let (o, back): (u64, crate::record::IdentityHash) = decode(&frame).expect("decode");
        assert_eq!((o, back), (7, h));
        // A digest of the wrong length is refused, not truncated.
        let short = postcard::to_allocvec(&serde_bytes_like(&[1u8; 31])).expect("encode");
        assert!(decode::<crate::record::IdentityHash>(&short).is_err());
    }

    /// 31 bytes encoded as a byte string, as a digest is.
    fn serde_bytes_like(b: &[u8]) -> impl serde::Serialize + '_ {
        struct B<'a>(&'a [u8]);
        impl serde::Serialize for B<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_bytes(self.0)
            }
        }
        B(b)
    }
}
