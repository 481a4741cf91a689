//! CSV and TSV reader: header row, RFC 4180 quoting, any one-byte delimiter, UTF-8 BOM,
//! gzip. Records are read as bytes so that a cell that is not UTF-8 becomes a row status,
//! not a crash; rows of the wrong width likewise.

use std::io::{BufReader, Read};
use std::sync::Arc;

use arrow_array::builder::StringBuilder;
use arrow_array::ArrayRef;
use arrow_schema::DataType;

use super::{
    open, Chunk, Format, Header, InputError, InputFile, ReadProgress, ResolvedColumns, Sink,
    TextColumn, CHUNK_ROWS,
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
                    QuoteKind::AtEof => "it is never closed before the end of the file".to_string(),
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
                        "the quote that closes it is followed by {:?} instead of a delimiter or a line end, so the rows in between would be read as one field",
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

fn reader<'a>(
    f: &InputFile,
    progress: &'a ReadProgress,
    blank_lines: Option<BlankLines>,
) -> Result<::csv::Reader<Box<dyn Read + 'a>>, InputError> {
    let Format::Csv {
        delimiter,
        gzip,
        max_quoted_lines,
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
    // csv-core strips a UTF-8 byte order mark itself; the guard only watches the quoting.
    Ok(::csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(true)
        .flexible(true)
        .buffer_capacity(1 << 16)
        .from_reader(Box::new(QuoteGuard {
            blank_lines,
            ..QuoteGuard::new(raw, delimiter, max_quoted_lines)
        }) as Box<dyn Read + 'a>))
}

/// Reads the header row.
pub(super) fn header(f: &InputFile) -> Result<Header, InputError> {
    let progress = ReadProgress::default();
    let mut r = reader(f, &progress, None)?;
    let h = r.byte_headers().map_err(|e| read_error(f, 0, e))?;
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
                header: super::columns::shown_header_cell(&String::from_utf8_lossy(only)),
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
    let mut builder = ChunkBuilder::new(file_idx, skip, cols);
    let _ = r.byte_headers().map_err(|e| read_error(f, 0, e))?;
    let mut records = 0u64; // data records read
    loop {
        let more = r
            .read_byte_record(&mut rec)
            .map_err(|e| read_error(f, row + 1, e))?;
        if !more {
            break;
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
    region: Option<StringBuilder>,
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
            region: cols
                .phone_region_col
                .map(|_| StringBuilder::with_capacity(CHUNK_ROWS, CHUNK_ROWS * 2)),
            broken: Vec::new(),
        }
    }

    fn push(&mut self, rec: &::csv::ByteRecord, cols: &ResolvedColumns) {
        let k = self.len;
        self.len += 1;
        let problem = if rec.len() != cols.width {
            Some(InvalidReason::MalformedRow)
        } else {
            let bad_utf8 = cols.used().any(|i| std::str::from_utf8(&rec[i]).is_err());
            bad_utf8.then_some(InvalidReason::InvalidUtf8)
        };
        if let Some(p) = problem {
            self.broken.push((k, p));
            self.identities.iter_mut().for_each(|b| b.append_null());
            // Kept cells that could be read stay, so that the bad row can be traced (by its
            // customer id, say); a missing or non-UTF-8 one is null.
            for (b, &i) in self.kept.iter_mut().zip(&cols.keep) {
                append_text(b, rec.get(i).unwrap_or_default());
            }
            if let Some(b) = &mut self.region {
                b.append_null();
            }
            return;
        }
        for (b, c) in self.identities.iter_mut().zip(&cols.identities) {
            append_text(b, &rec[c.index]);
        }
        for (b, &i) in self.kept.iter_mut().zip(&cols.keep) {
            append_text(b, &rec[i]);
        }
        if let (Some(b), Some(i)) = (&mut self.region, cols.phone_region_col) {
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
            phone_region: self.region.as_mut().map(|b| TextColumn::new(col(b))),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads `data` through the guard and csv; the records, or the line of a quote problem.
    fn parse(data: &[u8]) -> Result<Vec<Vec<String>>, (u64, QuoteKind)> {
        let mut r = ::csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(QuoteGuard::new(data, b',', DEFAULT_MAX_QUOTED_FIELD_LINES));
        let mut out = Vec::new();
        for rec in r.byte_records() {
            match rec {
                Ok(rec) => out.push(
                    rec.iter()
                        .map(|c| String::from_utf8_lossy(c).into_owned())
                        .collect(),
                ),
                Err(e) => {
                    let ::csv::ErrorKind::Io(io) = e.kind() else {
                        panic!("unexpected {e}")
                    };
                    let q = io
                        .get_ref()
                        .and_then(|x| x.downcast_ref::<QuoteProblem>())
                        .expect("a quote problem");
                    return Err((q.line, q.kind));
                }
            }
        }
        Ok(out)
    }

    quickcheck::quickcheck! {
        /// The fast paths change nothing: scanning a buffer at once or byte by byte ends in
        /// the same state, on the same line, with the same quote opening.
        fn the_guard_reads_the_same_in_any_slicing(picks: Vec<u8>) -> bool {
            let alphabet = b"ab,\"\n\r";
            let data: Vec<u8> = picks.iter().map(|p| alphabet[*p as usize % alphabet.len()]).collect();
            let mut whole = QuoteGuard::new(&b""[..], b',', DEFAULT_MAX_QUOTED_FIELD_LINES);
            let mut bytewise = QuoteGuard::new(&b""[..], b',', DEFAULT_MAX_QUOTED_FIELD_LINES);
            let a = whole.scan(&data).is_ok();
            let b = data.iter().all(|x| bytewise.scan(std::slice::from_ref(x)).is_ok());
            a == b
                && whole.state == bytewise.state
                && whole.line == bytewise.line
                && whole.opened_line == bytewise.opened_line
                && whole.quoted_bytes == bytewise.quoted_bytes
        }
    }

    /// Issue #9.1: an open quote reaching end of file used to swallow every later row.
    #[test]
    fn an_unterminated_quote_is_an_error_naming_its_line() {
        assert_eq!(
            parse(b"id,email\n1,\"a@b.com\n2,c@d.com\n3,e@f.com\n"),
            Err((2, QuoteKind::AtEof))
        );
        assert_eq!(parse(b"id,email\n1,a\n2,\"x"), Err((3, QuoteKind::AtEof)));
    }

    /// Issue #26.1: a stray quote closed by a later row's quote is refused, naming the line
    /// where it opened, instead of swallowing the rows in between.
    #[test]
    fn a_stray_quote_closed_later_is_an_error_naming_its_line() {
        assert_eq!(
            parse(b"id,email,name\n1,a@b.com,\"Bob\n2,c@d.com,Carol\n3,e@f.com,\"Dave\"\n"),
            Err((2, QuoteKind::TextAfter(b'D')))
        );
        // A closing quote followed by a delimiter or a line end is fine.
        assert!(parse(b"a,b\n\"x\",\"y\"\r\n\"z\",w\n").is_ok());
    }

    #[test]
    fn valid_quoting_passes_untouched() {
        let rows =
            parse(b"\xEF\xBB\xBF\"id\",note\n1,\"two\nlines, \"\"quoted\"\"\"\n2,a\"b\r\n3,\"\"\n")
                .expect("valid");
        assert_eq!(rows.len(), 4);
        assert_eq!(rows[0], ["id", "note"]);
        assert_eq!(rows[1][1], "two\nlines, \"quoted\"");
        assert_eq!(rows[2][1], "a\"b");
        assert_eq!(rows[3], ["3", ""]);
    }

    #[test]
    fn a_quoted_field_running_on_for_too_many_lines_stops_before_the_end() {
        let mut data = b"id,email\n1,\"a\n".to_vec();
        for i in 0..(DEFAULT_MAX_QUOTED_FIELD_LINES + 10) {
            data.extend_from_slice(format!("{i},x@y.z\n").as_bytes());
        }
        data.extend_from_slice(b"\"\n");
        assert_eq!(parse(&data), Err((2, QuoteKind::TooLong)));
    }
}
