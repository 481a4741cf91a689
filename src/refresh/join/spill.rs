//! The join's files: records framed and encoded with postcard into hash partitions (`s-P`
//! state, `i-P` export, `d-P` decisions) in a private scratch directory that is removed
//! however the run ends.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::*;

pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |e| {
        Error::Output(crate::output::OutputError::Io {
            path: path.display().to_string(),
            source: e,
        })
    }
}

/// FNV-1a: a stable hash, so a key lands in the same partition on both sides.
pub(crate) fn partition(key: &str, n: usize) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % n as u64) as usize
}

// --- spill records ----------------------------------------------------------------------

/// A state identity in a partition file: its row, key, kind, hash, and what a match means.
#[derive(Serialize, Deserialize)]
pub(crate) struct StateRecord {
    pub(crate) row: u64,
    pub(crate) key: String,
    pub(crate) kind: IdentityKind,
    pub(crate) hash: Option<IdentityHash>,
    pub(crate) decision: Decision,
}

/// An export identity in a partition file; without a hash, a row that only says its
/// customer is present.
#[derive(Serialize, Deserialize)]
pub(crate) struct ExportRecord<'a> {
    pub(crate) ordinal: u64,
    #[serde(borrow)]
    pub(crate) key: &'a str,
    pub(crate) kind: IdentityKind,
    pub(crate) hash: Option<IdentityHash>,
}

/// A decision, by the ordinal of the export identity it is for, with that identity and a
/// digest of its customer's key (so the second read can check both).
#[derive(Serialize, Deserialize)]
pub(crate) struct DecisionRecord {
    pub(crate) ordinal: u64,
    pub(crate) kind: IdentityKind,
    pub(crate) hash: IdentityHash,
    pub(crate) key: u64,
    pub(crate) decision: Decision,
}

/// Writes one record: its postcard length (u32 LE), then its postcard bytes.
pub(crate) fn put<T: Serialize>(w: &mut impl Write, record: &T) -> std::io::Result<()> {
    let bytes = postcard::to_stdvec(record)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    let len = u32::try_from(bytes.len())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    w.write_all(&len.to_le_bytes())?;
    w.write_all(&bytes)
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
pub(crate) fn decode<'a, T: Deserialize<'a>>(buf: &'a [u8]) -> std::io::Result<T> {
    postcard::from_bytes(buf).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

// --- the join ---------------------------------------------------------------------------

/// Partition files of one side.
pub(crate) struct Sides {
    pub(crate) dir: PathBuf,
    pub(crate) n: usize,
}

impl Sides {
    pub(crate) fn path(&self, side: &str, p: usize) -> PathBuf {
        self.dir.join(format!("{side}-{p:05}.bin"))
    }

    pub(crate) fn writers(&self, side: &str) -> Result<Vec<BufWriter<File>>, Error> {
        (0..self.n)
            .map(|p| {
                let path = self.path(side, p);
                crate::storage::mode::create_file(&path)
                    .map(|f| BufWriter::with_capacity(1 << 16, f))
                    .map_err(io(&path))
            })
            .collect()
    }

    pub(crate) fn reader(&self, side: &str, p: usize) -> Result<BufReader<File>, Error> {
        let path = self.path(side, p);
        File::open(&path)
            .map(|f| BufReader::with_capacity(1 << 16, f))
            .map_err(io(&path))
    }
}

pub(crate) fn finish(ws: Vec<BufWriter<File>>, dir: &Path) -> Result<(), Error> {
    for mut w in ws {
        w.flush().map_err(io(dir))?;
    }
    Ok(())
}

/// The join's scratch folder (it holds hashed identities): removed when this guard drops,
/// on every exit path, success, error or panic.
pub(crate) struct Scratch(PathBuf);

impl Scratch {
    /// Creates `dir` afresh (removing what an interrupted run left).
    ///
    /// # Errors
    /// The folder cannot be created.
    pub(crate) fn create(dir: PathBuf) -> Result<Scratch, Error> {
        let _ = std::fs::remove_dir_all(&dir);
        crate::storage::mode::create_dir_all(&dir).map_err(io(&dir))?;
        Ok(Scratch(dir))
    }

    /// The folder.
    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
