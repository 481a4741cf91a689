//! Tests of the CSV reader and its quote guard.
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

/// Issue #32.5: a quote closed on the line it opened is no stray quote (csv-core joins
/// the text after it to the field).
#[test]
fn a_quote_closed_on_its_own_line_is_read_as_csv_core_reads_it() {
    let rows = parse(b"id,email,org\n1,a@b.com,\"Acme\" GmbH\n2,c@d.com,x\n").expect("read");
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[1], ["1", "a@b.com", "Acme GmbH"]);
    assert_eq!(rows[2], ["2", "c@d.com", "x"]);
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
