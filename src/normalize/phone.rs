//! Phone validation (`euid-protocol.md` §8.3). The operator does not normalize phones: the
//! input must already be E.164, `+` followed by 10 to 15 ASCII digits.

/// Fewest digits after the `+` the operator accepts.
const MIN_DIGITS: usize = 10;
/// Most digits after the `+` (the E.164 maximum).
const MAX_DIGITS: usize = 15;

/// Whether the operator accepts `raw` as a normalized phone number. Only ASCII digits count:
/// the Python SDK's `str.isdigit()` also accepts other scripts' digits, the operator does not.
pub fn is_normalized(raw: &str) -> bool {
    let b = raw.as_bytes();
    let digits = b.len().wrapping_sub(1);
    b.first() == Some(&b'+')
        && (MIN_DIGITS..=MAX_DIGITS).contains(&digits)
        && b[1..].iter().all(u8::is_ascii_digit)
}
