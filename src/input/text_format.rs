//! The text format databases unload to (`--quote none`): PostgreSQL's `COPY … TO` in text
//! format and MySQL's `SELECT … INTO OUTFILE`. No quoting: a field ends at the delimiter and
//! a record at a line end, unless a backslash escapes them; `\t`, `\n`, `\r`, `\b`, `\f`,
//! `\v` and `\0` (NUL) are decoded, `\N` alone is null (read as empty, which is null here),
//! and a backslash before any other byte (the delimiter, a newline, a quote, a backslash)
//! stands for that byte.

use std::io::{BufRead, BufReader, Read};

/// Reads records of the text format, one logical line at a time.
pub(super) struct TextRecords<R> {
    inner: BufReader<R>,
    delimiter: u8,
    line: Vec<u8>,
    field: Vec<u8>,
    first: bool,
}

/// Whether the byte before `end` in `line` is escaped: an odd run of backslashes before it.
fn escaped(line: &[u8], end: usize) -> bool {
    line[..end]
        .iter()
        .rev()
        .take_while(|&&b| b == b'\\')
        .count()
        % 2
        == 1
}

impl<R: Read> TextRecords<R> {
    pub(super) fn new(inner: R, delimiter: u8) -> TextRecords<R> {
        TextRecords {
            inner: BufReader::with_capacity(1 << 16, inner),
            delimiter,
            line: Vec::new(),
            field: Vec::new(),
            first: true,
        }
    }

    /// Reads the next record into `rec`; `false` at the end of the input. A blank line is a
    /// record of one empty field.
    pub(super) fn read(&mut self, rec: &mut ::csv::ByteRecord) -> std::io::Result<bool> {
        self.line.clear();
        loop {
            let n = self.inner.read_until(b'\n', &mut self.line)?;
            let len = self.line.len();
            // A newline escaped by a backslash is part of the field: read on.
            if n == 0 || !(self.line[len - 1] == b'\n' && escaped(&self.line, len - 1)) {
                break;
            }
        }
        if self.line.is_empty() {
            return Ok(false);
        }
        let mut end = self.line.len();
        if self.line[end - 1] == b'\n' {
            end -= 1;
            if end > 0 && self.line[end - 1] == b'\r' && !escaped(&self.line, end - 1) {
                end -= 1;
            }
        }
        let mut start = 0;
        if std::mem::take(&mut self.first) && self.line.starts_with(b"\xEF\xBB\xBF") {
            start = 3;
        }
        rec.clear();
        let line = &self.line[start..end];
        let field = &mut self.field;
        field.clear();
        let mut bytes = line.iter();
        let mut null = false;
        while let Some(&b) = bytes.next() {
            if b == self.delimiter {
                rec.push_field(if null { b"" } else { field });
                field.clear();
                null = false;
                continue;
            }
            if b != b'\\' {
                field.push(b);
                continue;
            }
            match bytes.next() {
                Some(b't') => field.push(b'\t'),
                Some(b'n') => field.push(b'\n'),
                Some(b'r') => field.push(b'\r'),
                Some(b'b') => field.push(8),
                Some(b'f') => field.push(12),
                Some(b'v') => field.push(11),
                Some(b'0') => field.push(0),
                Some(b'N') if field.is_empty() => null = true,
                Some(&other) => field.push(other),
                None => field.push(b'\\'),
            }
        }
        rec.push_field(if null { b"" } else { field });
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(data: &[u8]) -> Vec<Vec<String>> {
        let mut r = TextRecords::new(data, b'\t');
        let mut rec = ::csv::ByteRecord::new();
        let mut out = Vec::new();
        while r.read(&mut rec).expect("read") {
            out.push(
                rec.iter()
                    .map(|f| String::from_utf8_lossy(f).into_owned())
                    .collect(),
            );
        }
        out
    }

    /// Issue #32.5: PostgreSQL's escapes, MySQL's escaped delimiters and line ends, `\N`.
    #[test]
    fn database_text_records_decode() {
        let got = records(
            b"\xEF\xBB\xBFid\temail\tnote\r\n1\ta@b.com\t\"Acme\" GmbH\n2\t\\N\tline1\\\nline2\n3\tc@d.com\tAcme\\\tGmbH\n4\t\\\\N\tx\\ty\\\\z\\0\n",
        );
        assert_eq!(
            got,
            vec![
                vec!["id", "email", "note"],
                vec!["1", "a@b.com", "\"Acme\" GmbH"],
                vec!["2", "", "line1\nline2"],
                vec!["3", "c@d.com", "Acme\tGmbH"],
                vec!["4", "\\N", "x\ty\\z\0"],
            ]
        );
        assert_eq!(records(b"a\n\nb"), vec![vec!["a"], vec![""], vec!["b"]]);
        assert!(records(b"").is_empty());
    }
}
