//! The operator's email normalization (`euid-protocol.md` §8.2), byte for byte.
//!
//! Working on UTF-8 bytes is exact: only ASCII characters are special, and no byte of a
//! multi-byte UTF-8 sequence is ASCII, so non-ASCII characters pass through untouched, just as
//! they do in the Java operator and the Python SDK.

/// Normalizes an email; `None` where the operator answers `invalid identifier`.
pub fn email(raw: &str) -> Option<String> {
    let mut out = Vec::with_capacity(raw.len());
    if email_into(raw, &mut out) {
        Some(String::from_utf8(out).expect("normalization only drops or lowercases ASCII bytes"))
    } else {
        None
    }
}

/// Normalizes `raw` into `out` (cleared first) and returns whether it is valid. The output
/// is valid UTF-8 whenever `raw` is.
pub fn email_into(raw: &str, out: &mut Vec<u8>) -> bool {
    out.clear();
    let bytes = raw.as_bytes();
    // Skip leading U+0020 only (the "Starting" state); tabs and NBSP are kept.
    let start = bytes.iter().position(|&b| b != b' ').unwrap_or(bytes.len());
    let Some(at) = bytes[start..].iter().position(|&b| b == b'@') else {
        return false; // never reached the domain: no domain part
    };
    let local = &bytes[start..start + at];
    let domain_raw = &bytes[start + at + 1..];
    if domain_raw.contains(&b'@') {
        return false;
    }
    // Domain: spaces are held back and only emitted before a later non-space character, so
    // trailing spaces vanish and inner ones stay. Leading spaces in the domain are inner too.
    let domain_end = domain_raw
        .iter()
        .rposition(|&b| b != b' ')
        .map_or(0, |i| i + 1);
    let domain = &domain_raw[..domain_end];
    if domain.is_empty() {
        return false;
    }
    let is_gmail = domain.len() == 9 && domain.eq_ignore_ascii_case(b"gmail.com");
    if is_gmail {
        // Drop every '.', and everything from the first '+' up to the '@'.
        for &b in local {
            match b {
                b'+' => break,
                b'.' => {}
                _ => out.push(b.to_ascii_lowercase()),
            }
        }
    } else {
        out.extend(local.iter().map(|b| b.to_ascii_lowercase()));
    }
    if out.is_empty() {
        return false;
    }
    out.push(b'@');
    // Only ASCII A–Z is lowercased (u8::to_ascii_lowercase touches nothing else).
    out.extend(domain.iter().map(|b| b.to_ascii_lowercase()));
    true
}
