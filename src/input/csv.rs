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

/// Default of `--max-quoted-field-lines`: a quoted field spanning more lines than this, or
/// more KiB, is taken for a stray quote, not data.
pub const DEFAULT_MAX_QUOTED_FIELD_LINES: u64 = 1_000;

/// What went wrong with a quote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum QuoteKind {
    /// The field ran to the end of the file.
    AtEof,
    /// The field outgrew the limits.
    TooLong,
    /// A closing quote is followed by this byte (RFC 4180 allows only a delimiter or a line
    /// end): the quote that opened the field was a stray one, closed by a later quote.
    TextAfter(u8),
}

/// A quote problem found by [`QuoteGuard`], carried through the csv reader as an I/O error.
#[derive(Debug)]
struct QuoteProblem {
    /// 1-based line where the quote opened.
    line: u64,
    /// What went wrong.
    kind: QuoteKind,
}

impl std::fmt::Display for QuoteProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "quote opened on line {}", self.line)
    }
}

impl std::error::Error for QuoteProblem {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quoting {
    /// At the start of a field: a quote here opens a quoted field.
    Start,
    /// Inside an unquoted field: quotes are literal.
    Field,
    /// Inside a quoted field.
    Quoted,
    /// A quote inside a quoted field: the end of the field, or the first of two.
    QuoteInQuoted,
}

/// Follows the quoting of the bytes the csv reader consumes, with the same rules as
/// csv-core (RFC 4180: a quote opens a field only at its start, `""` escapes), because
/// csv-core silently ends an open quoted field at end of file: one stray quote would then
/// swallow the rest of the export into a single cell and the run would "succeed" with
/// every later row lost. Fails the read instead, naming the line where the quote opened.
struct QuoteGuard<R> {
    inner: R,
    delimiter: u8,
    /// Limits of one quoted field: lines, and bytes (a KiB per line allowed).
    max_lines: u64,
    max_bytes: u64,
    state: Quoting,
    /// Lines seen so far (0-based line of the next byte).
    line: u64,
    /// Where the open quoted field started: line, bytes and lines since.
    opened_line: u64,
    quoted_bytes: u64,
    quoted_lines: u64,
    /// Bytes of a leading UTF-8 BOM matched so far (3: done), skipped as csv-core does.
    bom_checked: usize,
    /// One-column files: for each blank line (which csv-core skips), the index of the
    /// record it comes before (the header is record 0), for the reader to turn back into
    /// empty values. `None` for other files.
    blank_lines: Option<BlankLines>,
    /// Records ended so far, the header included.
    records: u64,
    /// Whether the current record has a byte yet (outside line ends).
    content: bool,
    /// Whether the last byte was a CR that ended a record (its LF is no blank line).
    cr_ended: bool,
}

/// Blank lines found by the guard, taken by the reader in order.
type BlankLines = std::sync::Arc<std::sync::Mutex<std::collections::VecDeque<u64>>>;

impl<R: Read> QuoteGuard<R> {
    fn new(inner: R, delimiter: u8, max_lines: u64) -> QuoteGuard<R> {
        QuoteGuard {
            inner,
            delimiter,
            max_lines,
            max_bytes: max_lines.saturating_mul(1024),
            blank_lines: None,
            records: 0,
            content: false,
            cr_ended: false,
            state: Quoting::Start,
            line: 0,
            opened_line: 0,
            quoted_bytes: 0,
            quoted_lines: 0,
            bom_checked: 0,
        }
    }

    fn scan(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let mut bytes = bytes;
        while self.bom_checked < 3 {
            let Some(&b) = bytes.first() else { break };
            if b != b"\xEF\xBB\xBF"[self.bom_checked] {
                if self.bom_checked > 0 {
                    self.state = Quoting::Field; // a partial BOM is field text
                }
                self.bom_checked = 3;
                break;
            }
            bytes = &bytes[1..];
            self.bom_checked += 1;
        }
        let mut i = 0;
        while i < bytes.len() {
            // Fast paths over runs of bytes that only move counters: an unquoted field up to
            // its delimiter or line end, a quoted field up to its next quote or newline.
            match self.state {
                Quoting::Field => {
                    match memchr::memchr3(self.delimiter, b'\n', b'\r', &bytes[i..]) {
                        Some(k) => i += k,
                        None => break,
                    }
                }
                Quoting::Quoted => {
                    let run = memchr::memchr2(b'"', b'\n', &bytes[i..]);
                    let k = run.unwrap_or(bytes.len() - i);
                    self.quoted_bytes += k as u64;
                    if self.quoted_bytes > self.max_bytes {
                        return Err(self.problem(QuoteKind::TooLong));
                    }
                    i += k;
                    if run.is_none() {
                        break;
                    }
                }
                _ => {}
            }
            let b = bytes[i];
            i += 1;
            let newline = b == b'\n';
            if self.state != Quoting::Quoted && (newline || b == b'\r') {
                if self.content {
                    self.records += 1;
                    self.cr_ended = b == b'\r';
                } else if newline && !self.cr_ended {
                    // Blank lines before the header are not rows.
                    if let (Some(blank), Some(before)) =
                        (&self.blank_lines, self.records.checked_sub(1))
                    {
                        blank.lock().expect("blank lines lock").push_back(before);
                    }
                } else {
                    self.cr_ended = false;
                }
                self.content = false;
            } else {
                self.content = true;
                self.cr_ended = false;
            }
            if newline {
                self.line += 1;
            }
            self.state = match self.state {
                Quoting::Start if b == b'"' => {
                    self.opened_line = self.line + 1;
                    self.quoted_bytes = 0;
                    self.quoted_lines = 0;
                    Quoting::Quoted
                }
                Quoting::Start | Quoting::Field | Quoting::QuoteInQuoted
                    if b == self.delimiter || newline || b == b'\r' =>
                {
                    Quoting::Start
                }
                Quoting::Start | Quoting::Field => Quoting::Field,
                Quoting::QuoteInQuoted if b == b'"' => Quoting::Quoted,
                Quoting::QuoteInQuoted => return Err(self.problem(QuoteKind::TextAfter(b))),
                Quoting::Quoted if b == b'"' => Quoting::QuoteInQuoted,
                Quoting::Quoted => {
                    self.quoted_bytes += 1;
                    self.quoted_lines += u64::from(newline);
                    if self.quoted_bytes > self.max_bytes || self.quoted_lines > self.max_lines {
                        return Err(self.problem(QuoteKind::TooLong));
                    }
                    Quoting::Quoted
                }
            };
        }
        Ok(())
    }

    fn problem(&self, kind: QuoteKind) -> std::io::Error {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            QuoteProblem {
                line: self.opened_line,
                kind,
            },
        )
    }
}

impl<R: Read> Read for QuoteGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() && self.state == Quoting::Quoted {
            return Err(self.problem(QuoteKind::AtEof));
        }
        self.scan(&buf[..n])?;
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
