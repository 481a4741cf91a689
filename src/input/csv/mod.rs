//! CSV and TSV reader: header row, RFC 4180 quoting, any one-byte delimiter, UTF-8 BOM,
//! gzip. Records are read as bytes so that a cell that is not UTF-8 becomes a row status,
//! not a crash; rows of the wrong width likewise.

use std::io::{BufReader, Read};
use std::sync::Arc;

use arrow_array::builder::StringBuilder;
use arrow_array::ArrayRef;
use arrow_schema::DataType;

use super::{
    open, BadCell, Chunk, Format, Header, InputError, InputFile, ReadProgress, ResolvedColumns,
    Sink, TextColumn, CHUNK_ROWS,
};
use crate::record::InvalidReason;

pub use super::quote_guard::DEFAULT_MAX_QUOTED_FIELD_LINES;
use super::quote_guard::*;

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

/// The error for a failed CSV read: a quote problem names the line where the quote opened.
fn read_error(f: &InputFile, row: u64, e: ::csv::Error) -> InputError {
    if let ::csv::ErrorKind::Io(io) = e.kind() {
        if let Some(q) = io.get_ref().and_then(|x| x.downcast_ref::<QuoteProblem>()) {
            return InputError::UnterminatedQuote {
                path: f.given.clone(),
                line: q.line,
                why: match q.kind {
                    QuoteKind::AtEof => "it is never closed before the end of the file (if the export does not quote its fields, as PostgreSQL's COPY text format and MySQL's INTO OUTFILE do not, pass --quote none)".to_string(),
                    QuoteKind::TooLong => {
                        let lines = match f.format {
                            Format::Csv { max_quoted_lines, .. } => max_quoted_lines,
                            Format::Parquet => DEFAULT_MAX_QUOTED_FIELD_LINES,
                        };
                        format!(
                            "the quoted field runs on for more than {lines} lines or {lines} KiB (if such a field is real data, raise --max-quoted-field-lines)"
                        )
                    }
                    QuoteKind::TextAfter(b) => format!(
                        "it is closed on a later line by a quote followed by {:?} instead of a delimiter or a line end, so the rows in between would be read as one field (if the export does not quote its fields, as PostgreSQL's COPY text format and MySQL's INTO OUTFILE do not, pass --quote none)",
                        char::from(b)
                    ),
                },
            };
        }
    }
    InputError::Read {
        path: f.given.clone(),
        row,
        message: e.to_string(),
    }
}

/// A file's records: RFC 4180 CSV, or a database's text format (`--quote none`).
enum Records<'a> {
    Csv(::csv::Reader<Box<dyn Read + 'a>>),
    Text(super::text_format::TextRecords<Box<dyn Read + 'a>>),
}

impl Records<'_> {
    /// The header row.
    fn header(&mut self, f: &InputFile) -> Result<::csv::ByteRecord, InputError> {
        match self {
            Records::Csv(r) => r.byte_headers().cloned().map_err(|e| read_error(f, 0, e)),
            Records::Text(t) => {
                let mut rec = ::csv::ByteRecord::new();
                t.read(&mut rec).map_err(|e| read_error(f, 0, e.into()))?;
                Ok(rec)
            }
        }
    }

    /// The next data record into `rec` (`row`: its 1-based number, for errors); `false` at
    /// the end.
    fn next(
        &mut self,
        f: &InputFile,
        row: u64,
        rec: &mut ::csv::ByteRecord,
    ) -> Result<bool, InputError> {
        match self {
            Records::Csv(r) => r.read_byte_record(rec).map_err(|e| read_error(f, row, e)),
            Records::Text(t) => t.read(rec).map_err(|e| read_error(f, row, e.into())),
        }
    }
}

fn reader<'a>(
    f: &InputFile,
    progress: &'a ReadProgress,
    blank_lines: Option<BlankLines>,
) -> Result<Records<'a>, InputError> {
    let Format::Csv {
        delimiter,
        gzip,
        max_quoted_lines,
        quoting,
    } = f.format
    else {
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
    if !quoting {
        return Ok(Records::Text(super::text_format::TextRecords::new(
            raw, delimiter,
        )));
    }
    // csv-core strips a UTF-8 byte order mark itself; the guard only watches the quoting.
    Ok(Records::Csv(
        ::csv::ReaderBuilder::new()
            .delimiter(delimiter)
            .has_headers(true)
            .flexible(true)
            .buffer_capacity(1 << 16)
            .from_reader(Box::new(QuoteGuard {
                blank_lines,
                ..QuoteGuard::new(raw, delimiter, max_quoted_lines)
            }) as Box<dyn Read + 'a>),
    ))
}

/// Reads the header row.
pub(super) fn header(f: &InputFile) -> Result<Header, InputError> {
    let progress = ReadProgress::default();
    let mut r = reader(f, &progress, None)?;
    let h = r.header(f)?;
    let h = &h;
    if h.is_empty() {
        return Err(InputError::NoHeader {
            path: f.given.clone(),
        });
    }
    if h.len() == 1 {
        let Format::Csv { delimiter, .. } = f.format else {
            unreachable!("CSV header of a CSV input")
        };
        let only = &h[0];
        if let Some(&d) = [b';', b'|', b'\t', b',']
            .iter()
            .find(|&&d| d != delimiter && only.contains(&d))
        {
            return Err(InputError::OneColumnHeader {
                path: f.given.clone(),
                header: super::names::shown_header_cell(&String::from_utf8_lossy(only)),
                suggestion: match d {
                    b'\t' => "tab".to_string(),
                    d => (d as char).to_string(),
                },
            });
        }
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
    // csv-core skips blank lines; in a one-column file a blank line is an empty value (as
    // DuckDB and Polars read it), so the guard reports them and they come back as empty
    // records. Blank lines after the last record are the end of the file.
    let blank_lines: Option<BlankLines> = (cols.width == 1).then(Default::default);
    let mut r = reader(f, progress, blank_lines.clone())?;
    let mut rec = ::csv::ByteRecord::new();
    let empty = ::csv::ByteRecord::from(vec![""]);
    let mut row: u64 = 0;
    let text_format = matches!(f.format, Format::Csv { quoting: false, .. });
    let mut builder = ChunkBuilder::new(file_idx, skip, cols);
    let _ = r.header(f)?;
    let mut records = 0u64; // data records read
    loop {
        if !r.next(f, row + 1, &mut rec)? {
            break;
        }
        // The text format has no blank-line rule of its own: as csv-core, a blank line of
        // a file of several columns is no record.
        if text_format && cols.width > 1 && rec.len() == 1 && rec[0].is_empty() {
            continue;
        }
        // Blank lines before this record are tagged with the data records before them.
        let mut blank = 0u64;
        if let Some(lines) = &blank_lines {
            let mut lines = lines.lock().expect("blank lines lock");
            while lines.front().is_some_and(|r| *r < records) {
                lines.pop_front();
            }
            while lines.front() == Some(&records) {
                lines.pop_front();
                blank += 1;
            }
        }
        records += 1;
        for k in 0..=blank {
            row += 1;
            if row <= skip {
                continue;
            }
            builder.push(if k < blank { &empty } else { &rec }, cols);
            if builder.len == CHUNK_ROWS {
                let next = ChunkBuilder::new(file_idx, row, cols);
                let chunk = std::mem::replace(&mut builder, next).finish();
                progress.add(0, chunk.len as u64);
                if !sink(chunk) {
                    return Ok(false);
                }
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
    regions: Vec<StringBuilder>,
    broken: Vec<(usize, InvalidReason)>,
    bad_cells: Vec<(usize, BadCell)>,
    bad_kept: Vec<(usize, usize)>,
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
            regions: cols
                .phone_region_cols
                .iter()
                .map(|_| StringBuilder::with_capacity(CHUNK_ROWS, CHUNK_ROWS * 2))
                .collect(),
            broken: Vec::new(),
            bad_cells: Vec::new(),
            bad_kept: Vec::new(),
        }
    }

    fn push(&mut self, rec: &::csv::ByteRecord, cols: &ResolvedColumns) {
        let k = self.len;
        self.len += 1;
        if rec.len() != cols.width {
            self.broken.push((k, InvalidReason::MalformedRow));
            self.identities.iter_mut().for_each(|b| b.append_null());
            // Kept cells that could be read stay, so that the bad row can be traced (by its
            // customer id, say); a missing or non-UTF-8 one is null.
            for (b, &i) in self.kept.iter_mut().zip(&cols.keep) {
                append_text(b, rec.get(i).unwrap_or_default());
            }
            self.regions.iter_mut().for_each(|b| b.append_null());
            return;
        }
        // A cell that is not UTF-8 is null, and its problem stays with what reads it.
        let append = |b: &mut StringBuilder, i: usize| -> bool { append_text(b, &rec[i]) };
        for (j, (b, c)) in self.identities.iter_mut().zip(&cols.identities).enumerate() {
            if !append(b, c.index) {
                self.bad_cells.push((k, BadCell::Identity(j)));
            }
        }
        for (j, (b, &i)) in self.kept.iter_mut().zip(&cols.keep).enumerate() {
            if !append(b, i) {
                self.bad_kept.push((k, j));
            }
        }
        for (r, (b, c)) in self
            .regions
            .iter_mut()
            .zip(&cols.phone_region_cols)
            .enumerate()
        {
            if !append(b, c.index) {
                self.bad_cells.push((k, BadCell::Region(r)));
            }
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
            bad_cells: self.bad_cells,
            bad_kept: std::mem::take(&mut self.bad_kept),
            kept: self.kept.iter_mut().map(col).collect(),
            phone_regions: self
                .regions
                .iter_mut()
                .map(|b| TextColumn::new(col(b)))
                .collect(),
        }
    }
}

/// Appends a cell; an empty cell is null, and so is one that is not UTF-8 (then `false`).
fn append_text(b: &mut StringBuilder, cell: &[u8]) -> bool {
    match std::str::from_utf8(cell) {
        Ok("") => b.append_null(),
        Ok(s) => b.append_value(s),
        Err(_) => {
            b.append_null();
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests;
