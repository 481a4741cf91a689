//! The quote guard: a reader in front of the CSV parser that follows quoting line by line,
//! so that a stray quote (closed rows later, or never) is reported at the row where it
//! opened instead of swallowing the rows after it, and that remembers blank lines so row
//! numbers stay the file's.

use std::io::Read;

/// Default of `--max-quoted-field-lines`: a quoted field spanning more lines than this, or
/// more KiB, is taken for a stray quote, not data.
pub const DEFAULT_MAX_QUOTED_FIELD_LINES: u64 = 1_000;

/// What went wrong with a quote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum QuoteKind {
    /// The field ran to the end of the file.
    AtEof,
    /// The field outgrew the limits.
    TooLong,
    /// A closing quote, lines after the one that opened the field, is followed by this byte
    /// (RFC 4180 allows only a delimiter or a line end): the quote that opened the field was
    /// a stray one, closed by a later line's quote.
    TextAfter(u8),
}

/// A quote problem found by [`QuoteGuard`], carried through the csv reader as an I/O error.
#[derive(Debug)]
pub(super) struct QuoteProblem {
    /// 1-based line where the quote opened.
    pub(super) line: u64,
    /// What went wrong.
    pub(super) kind: QuoteKind,
}

impl std::fmt::Display for QuoteProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "quote opened on line {}", self.line)
    }
}

impl std::error::Error for QuoteProblem {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Quoting {
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
pub(super) struct QuoteGuard<R> {
    pub(super) inner: R,
    pub(super) delimiter: u8,
    /// Limits of one quoted field: lines, and bytes (a KiB per line allowed).
    pub(super) max_lines: u64,
    pub(super) max_bytes: u64,
    pub(super) state: Quoting,
    /// Lines seen so far (0-based line of the next byte).
    pub(super) line: u64,
    /// Where the open quoted field started: line, bytes and lines since.
    pub(super) opened_line: u64,
    pub(super) quoted_bytes: u64,
    pub(super) quoted_lines: u64,
    /// Bytes of a leading UTF-8 BOM matched so far (3: done), skipped as csv-core does.
    pub(super) bom_checked: usize,
    /// One-column files: for each blank line (which csv-core skips), the index of the
    /// record it comes before (the header is record 0), for the reader to turn back into
    /// empty values. `None` for other files.
    pub(super) blank_lines: Option<BlankLines>,
    /// Records ended so far, the header included.
    pub(super) records: u64,
    /// Whether the current record has a byte yet (outside line ends).
    pub(super) content: bool,
    /// Whether the last byte was a CR that ended a record (its LF is no blank line).
    pub(super) cr_ended: bool,
}

/// Blank lines found by the guard, taken by the reader in order.
pub(super) type BlankLines = std::sync::Arc<std::sync::Mutex<std::collections::VecDeque<u64>>>;

impl<R: Read> QuoteGuard<R> {
    pub(super) fn new(inner: R, delimiter: u8, max_lines: u64) -> QuoteGuard<R> {
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

    pub(super) fn scan(&mut self, bytes: &[u8]) -> std::io::Result<()> {
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
                // `"Acme" GmbH`: closed on the line it opened, it swallows no row; the text
                // after it joins the field, as csv-core reads it.
                Quoting::QuoteInQuoted if self.quoted_lines == 0 => Quoting::Field,
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

    pub(super) fn problem(&self, kind: QuoteKind) -> std::io::Error {
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
