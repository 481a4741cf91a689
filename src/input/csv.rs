//! CSV and TSV reader: header row, RFC 4180 quoting, any one-byte delimiter, UTF-8 BOM,
//! gzip. Records are read as bytes so that a cell that is not UTF-8 becomes a row status,
//! not a crash; rows of the wrong width likewise.

use std::io::{BufRead, BufReader, Read};
use std::sync::Arc;

use arrow_array::builder::StringBuilder;
use arrow_array::ArrayRef;
use arrow_schema::DataType;

use super::{
    open, Chunk, Format, Header, InputError, InputFile, ReadProgress, ResolvedColumns, Sink,
    TextColumn, CHUNK_ROWS,
};
use crate::record::InvalidReason;

/// Counts the bytes taken from the file (compressed, for gzip) into the shared progress.
struct Counting<'a, R> {
    inner: R,
    progress: &'a ReadProgress,
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.add(n as u64, 0);
        Ok(n)
    }
}

fn reader<'a>(
    f: &InputFile,
    progress: &'a ReadProgress,
) -> Result<::csv::Reader<Box<dyn Read + 'a>>, InputError> {
    let Format::Csv { delimiter, gzip } = f.format else {
        unreachable!("csv::reader is only called for CSV inputs");
    };
    let file = Counting {
        inner: open(f)?,
        progress,
    };
    let raw: Box<dyn Read + 'a> = if gzip {
        Box::new(flate2::read::MultiGzDecoder::new(BufReader::with_capacity(
            1 << 16,
            file,
        )))
    } else {
        Box::new(file)
    };
    let mut buffered = BufReader::with_capacity(1 << 16, raw);
    // Skip a UTF-8 byte order mark so that the first column name is not "\u{feff}email".
    let has_bom = buffered
        .fill_buf()
        .map_err(|e| InputError::Read {
            path: f.given.clone(),
            row: 0,
            message: e.to_string(),
        })?
        .starts_with(b"\xEF\xBB\xBF");
    if has_bom {
        buffered.consume(3);
    }
    Ok(::csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(true)
        .flexible(true)
        .buffer_capacity(1 << 16)
        .from_reader(Box::new(buffered) as Box<dyn Read + 'a>))
}

/// Reads the header row.
pub(super) fn header(f: &InputFile) -> Result<Header, InputError> {
    let progress = ReadProgress::default();
    let mut r = reader(f, &progress)?;
    let h = r.byte_headers().map_err(|e| InputError::Read {
        path: f.given.clone(),
        row: 0,
        message: e.to_string(),
    })?;
    if h.is_empty() {
        return Err(InputError::NoHeader {
            path: f.given.clone(),
        });
    }
    Ok(Header {
        columns: h
            .iter()
            .map(|c| {
                (
                    String::from_utf8_lossy(c).trim().to_string(),
                    DataType::Utf8,
                )
            })
            .collect(),
    })
}

/// Streams the file's data rows from `skip` on into chunks.
pub(super) fn read(
    file_idx: usize,
    f: &InputFile,
    cols: &ResolvedColumns,
    skip: u64,
    progress: &ReadProgress,
    sink: &mut Sink<'_>,
) -> Result<bool, InputError> {
    let mut r = reader(f, progress)?;
    let mut rec = ::csv::ByteRecord::new();
    let mut row: u64 = 0;
    let mut builder = ChunkBuilder::new(file_idx, skip, cols);
    loop {
        let more = r.read_byte_record(&mut rec).map_err(|e| InputError::Read {
            path: f.given.clone(),
            row: row + 1,
            message: e.to_string(),
        })?;
        if !more {
            break;
        }
        row += 1;
        if row <= skip {
            continue;
        }
        builder.push(&rec, cols);
        if builder.len == CHUNK_ROWS {
            let next = ChunkBuilder::new(file_idx, row, cols);
            let chunk = std::mem::replace(&mut builder, next).finish();
            progress.add(0, chunk.len as u64);
            if !sink(chunk) {
                return Ok(false);
            }
        }
    }
    if builder.len > 0 {
        let chunk = builder.finish();
        progress.add(0, chunk.len as u64);
        return Ok(sink(chunk));
    }
    Ok(true)
}

struct ChunkBuilder {
    file: usize,
    first_row: u64,
    len: usize,
    identities: Vec<StringBuilder>,
    kept: Vec<StringBuilder>,
    broken: Vec<(usize, InvalidReason)>,
}

impl ChunkBuilder {
    fn new(file: usize, first_row: u64, cols: &ResolvedColumns) -> ChunkBuilder {
        let b = || StringBuilder::with_capacity(CHUNK_ROWS, CHUNK_ROWS * 24);
        ChunkBuilder {
            file,
            first_row,
            len: 0,
            identities: cols.identities.iter().map(|_| b()).collect(),
            kept: cols.keep.iter().map(|_| b()).collect(),
            broken: Vec::new(),
        }
    }

    fn push(&mut self, rec: &::csv::ByteRecord, cols: &ResolvedColumns) {
        let k = self.len;
        self.len += 1;
        let problem = if rec.len() != cols.width {
            Some(InvalidReason::MalformedRow)
        } else {
            let used = cols
                .identities
                .iter()
                .map(|c| c.index)
                .chain(cols.keep.iter().copied());
            let bad_utf8 = used.clone().any(|i| std::str::from_utf8(&rec[i]).is_err());
            bad_utf8.then_some(InvalidReason::InvalidUtf8)
        };
        if let Some(p) = problem {
            self.broken.push((k, p));
            self.identities
                .iter_mut()
                .chain(self.kept.iter_mut())
                .for_each(|b| b.append_null());
            return;
        }
        for (b, c) in self.identities.iter_mut().zip(&cols.identities) {
            append_text(b, &rec[c.index]);
        }
        for (b, &i) in self.kept.iter_mut().zip(&cols.keep) {
            append_text(b, &rec[i]);
        }
    }

    fn finish(mut self) -> Chunk {
        let col = |b: &mut StringBuilder| -> ArrayRef { Arc::new(b.finish()) };
        Chunk {
            file: self.file,
            first_row: self.first_row,
            len: self.len,
            identities: self
                .identities
                .iter_mut()
                .map(|b| TextColumn::new(col(b)))
                .collect(),
            broken: self.broken,
            kept: self.kept.iter_mut().map(col).collect(),
        }
    }
}

/// Appends a cell already checked to be UTF-8; an empty cell is null.
fn append_text(b: &mut StringBuilder, cell: &[u8]) {
    match std::str::from_utf8(cell) {
        Ok("") | Err(_) => b.append_null(),
        Ok(s) => b.append_value(s),
    }
}
