//! Phones (`euid-protocol.md` §8.3). The operator accepts only E.164, `+` followed by 10 to 15
//! ASCII digits, and normalizes nothing. CRM exports hold `06 12 34 56 78` beside a country
//! column, `+44 (0)20 7946 0958`, `0049-30-1234567`: those are made E.164 here, by Google's
//! libphonenumber rules (the `rlibphonenumber` port and its metadata, `phones` feature).
//!
//! The rule, in order:
//! 1. A value that is already `+` and 10–15 ASCII digits is hashed **as given**, byte for
//!    byte (the operator's rule; existing datasets keep their hashes).
//! 2. Anything else is parsed: a value written with its own country code (`+`, or the
//!    region's international call prefix such as `00`) keeps it whatever the row's region;
//!    a national-format value is read in the row's region (`--phone-region-col`, then
//!    `--phone-region`).
//! 3. The result must be a **valid** number by the metadata (not merely a possible one) and
//!    its E.164 must have at least 10 digits; otherwise the identity is `invalid` with a
//!    [`PhoneReason`] saying why. Nothing is guessed: a wrong number hashes to someone else's
//!    EUID.

use std::borrow::Cow;

use crate::record::{PhoneForm, PhoneReason, PhoneRegion};

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

/// The region a row's phone is read in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowRegion<'a> {
    /// Neither the row nor the run gives one.
    None,
    /// A region the metadata knows.
    Known(PhoneRegion),
    /// The row's region cell, which is no known alpha-2 code (it does not fall back to
    /// `--phone-region`: the export says something else).
    Unknown(&'a str),
    /// The row's cell in this region column could not be read (not UTF-8).
    Unreadable(&'a str),
}

impl<'a> RowRegion<'a> {
    /// The region of a row: its cell (trimmed, any case; empty falls back) or the run's.
    pub fn of(cell: Option<&'a str>, default: Option<PhoneRegion>) -> RowRegion<'a> {
        match cell.map(str::trim).filter(|c| !c.is_empty()) {
            Some(c) => match region(c) {
                Some(r) => RowRegion::Known(r),
                None => RowRegion::Unknown(c),
            },
            None => default.map_or(RowRegion::None, RowRegion::Known),
        }
    }
}

/// The E.164 form of a raw phone, and whether it was given so.
///
/// # Errors
/// Why the value is refused.
pub fn to_e164<'v>(
    raw: &'v str,
    region: RowRegion<'_>,
) -> Result<(Cow<'v, str>, PhoneForm), PhoneReason> {
    if is_normalized(raw) {
        return Ok((Cow::Borrowed(raw), PhoneForm::AsGiven));
    }
    let e164 = rules::parse(raw, region)?;
    let digits = e164.len() - 1;
    if digits < MIN_DIGITS {
        return Err(PhoneReason::TooShortForOperator);
    }
    if digits > MAX_DIGITS {
        return Err(PhoneReason::TooLongForOperator);
    }
    Ok((Cow::Owned(e164), PhoneForm::Reformatted))
}

/// A known region from its ISO 3166-1 alpha-2 code, any case (`fr`, `FR`); `None` when the
/// phone metadata does not know it (`UK`, `XX`, `FRA`, `001`).
pub fn region(code: &str) -> Option<PhoneRegion> {
    let b = code.as_bytes();
    if b.len() != 2 || !b.iter().all(u8::is_ascii_alphabetic) {
        return None;
    }
    let r = PhoneRegion([b[0].to_ascii_uppercase(), b[1].to_ascii_uppercase()]);
    rules::known(r).then_some(r)
}

/// The version of the phone metadata compiled in (`--version`, README).
pub const METADATA_VERSION: &str = rules::METADATA_VERSION;

#[cfg(feature = "phones")]
mod rules {
    //! libphonenumber, through `rlibphonenumber`.

    use rlibphonenumber::enums::Region;
    use rlibphonenumber::{ParseError, PhoneNumberFormat, PHONE_NUMBER_UTIL};

    use super::RowRegion;
    use crate::record::{PhoneReason, PhoneRegion};

    /// The metadata release of rlibphonenumber 2.2.15 (its README; the parity script checks
    /// against the Python `phonenumbers` of the same release).
    pub(super) const METADATA_VERSION: &str =
        "libphonenumber metadata 9.0.42 (rlibphonenumber 2.2.15)";

    fn lib_region(r: PhoneRegion) -> Option<Region> {
        Region::from_code(r.as_str()).ok()
    }

    pub(super) fn known(r: PhoneRegion) -> bool {
        lib_region(r).is_some_and(|lr| PHONE_NUMBER_UTIL.get_country_code_for_region(lr).is_some())
    }

    /// libphonenumber's longest input: longer values are not parsed (the Python and Java
    /// ports refuse them as too long; rlibphonenumber does not check).
    const MAX_INPUT_CHARS: usize = 250;

    /// Whether the value is written with its country code: a `+` (ASCII or full-width)
    /// before its first digit (`+33 6…`, `(+33) 6…`, `Tel: +33…`).
    fn international(raw: &str) -> bool {
        matches!(
            raw.chars()
                .find(|c| c.is_numeric() || matches!(c, '+' | '＋')),
            Some('+' | '＋')
        )
    }

    /// The country calling code right after the `+` of an international value, when the
    /// metadata knows it (ASCII digits, punctuation between them skipped).
    fn leading_country_code(raw: &str) -> Option<u16> {
        let at = raw.find(['+', '＋'])?;
        let after = &raw[at..];
        let digits: String = after
            .chars()
            .skip(1)
            .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')' | '/'))
            .take_while(char::is_ascii_digit)
            .take(3)
            .collect();
        (1..=digits.len()).find_map(|n| {
            let cc: u16 = digits[..n].parse().ok()?;
            PHONE_NUMBER_UTIL
                .get_region_for_country_code(i32::from(cc))
                .map(|_| cc)
        })
    }

    /// Whether libphonenumber would read letters in the value as digits (three letters or
    /// more after its first digit or `+`, an extension aside).
    fn spelled_with_letters(raw: &str) -> bool {
        raw.bytes().any(|b| b.is_ascii_alphabetic())
            && raw
                .find(|c: char| c.is_numeric() || matches!(c, '+' | '＋'))
                .is_some_and(|i| PHONE_NUMBER_UTIL.is_alpha_number(&raw[i..]))
    }

    pub(super) fn parse(raw: &str, region: RowRegion<'_>) -> Result<String, PhoneReason> {
        if raw.chars().count() > MAX_INPUT_CHARS {
            return Err(PhoneReason::NotANumber);
        }
        // The full-width tilde is punctuation to libphonenumber (as `~` is); this port's
        // punctuation set lacks it.
        let raw: std::borrow::Cow<'_, str> = if raw.contains('～') {
            raw.replace('～', "~").into()
        } else {
            raw.into()
        };
        let raw = raw.as_ref();
        if spelled_with_letters(raw) {
            return Err(PhoneReason::Letters);
        }
        let plus = international(raw);
        let lib = match region {
            RowRegion::Known(r) if !plus => lib_region(r),
            _ => None,
        };
        let number = match PHONE_NUMBER_UTIL.parse(raw, lib) {
            Ok(n) => n,
            Err(ParseError::NotANumber(_)) => return Err(PhoneReason::NotANumber),
            Err(ParseError::InvalidCountryCode) => {
                return Err(match (plus, region) {
                    (true, _) | (false, RowRegion::Known(_)) => PhoneReason::UnknownCountryCode,
                    (false, RowRegion::None) => PhoneReason::NeedsRegion,
                    (false, RowRegion::Unknown(cell)) => PhoneReason::unknown_region(cell),
                    (false, RowRegion::Unreadable(col)) => PhoneReason::unreadable_region(col),
                })
            }
            Err(
                ParseError::TooShortAfterIdd | ParseError::TooShortNsn | ParseError::TooLongNsn,
            ) => {
                // Only a `+` says for sure which country the value meant: after a national
                // or international prefix, it could be the region's or another.
                let cc = if plus {
                    leading_country_code(raw)
                } else {
                    None
                };
                return Err(PhoneReason::NotValidFor(cc.unwrap_or(0)));
            }
        };
        if !number.is_valid() {
            let cc = u16::try_from(number.country_code).unwrap_or(0);
            return Err(PhoneReason::NotValidFor(cc));
        }
        Ok(number.format_as(PhoneNumberFormat::E164).into_owned())
    }
}

#[cfg(not(feature = "phones"))]
mod rules {
    //! Built without `phones`: only exact E.164 is accepted.

    use super::RowRegion;
    use crate::record::{PhoneReason, PhoneRegion};

    pub(super) const METADATA_VERSION: &str = "none (built without the `phones` feature)";

    pub(super) fn known(_: PhoneRegion) -> bool {
        false
    }

    pub(super) fn parse(_: &str, _: RowRegion<'_>) -> Result<String, PhoneReason> {
        Err(PhoneReason::NotE164)
    }
}

#[cfg(all(test, feature = "phones"))]
mod tests {
    use super::*;

    fn fr() -> RowRegion<'static> {
        RowRegion::Known(region("FR").expect("known"))
    }

    fn us() -> RowRegion<'static> {
        RowRegion::Known(region("us").expect("known, any case"))
    }

    fn e164(raw: &str, r: RowRegion<'_>) -> Result<String, String> {
        to_e164(raw, r)
            .map(|(e, _)| e.into_owned())
            .map_err(|r| r.as_str().to_string())
    }

    #[test]
    fn exact_e164_is_taken_as_given_byte_for_byte() {
        // Not a valid number by the metadata, but the operator's rule accepts it: unchanged.
        let (e, form) = to_e164("+00000000000", RowRegion::None).expect("E.164");
        assert_eq!((e.as_ref(), form), ("+00000000000", PhoneForm::AsGiven));
        assert!(
            matches!(e, Cow::Borrowed(_)),
            "no allocation on the fast path"
        );
    }

    #[test]
    fn crm_spellings_become_e164() {
        assert_eq!(e164("06 12 34 56 78", fr()), Ok("+33612345678".into()));
        assert_eq!(
            e164("+44 (0)20 7946 0958", RowRegion::None),
            Ok("+442079460958".into())
        );
        let de = RowRegion::Known(region("DE").expect("known"));
        assert_eq!(e164("0049-30-1234567", de), Ok("+49301234567".into()));
        assert_eq!(
            e164(" +31612345678 ", RowRegion::None),
            Ok("+31612345678".into())
        );
        assert_eq!(e164("0033 6 12 34 56 78", fr()), Ok("+33612345678".into()));
        assert_eq!(
            e164("011 33 6 12 34 56 78", us()),
            Ok("+33612345678".into())
        );
        let (_, form) = to_e164("06 12 34 56 78", fr()).expect("valid");
        assert_eq!(form, PhoneForm::Reformatted);
    }

    #[test]
    fn a_number_with_its_own_country_code_keeps_it_whatever_the_region() {
        // phonenumber 0.3.10 loses the +33 when parsing with region US.
        assert_eq!(e164("+33 6 12 34 56 78", us()), Ok("+33612345678".into()));
        assert_eq!(
            e164("+33 6 12 34 56 78", RowRegion::Unknown("XX")),
            Ok("+33612345678".into())
        );
    }

    #[test]
    fn letters_in_a_non_vanity_number_are_not_made_digits() {
        // phonenumber 0.3.10 reads the A as a 2 and hashes someone else's number.
        assert_eq!(
            e164("06 12 34 56 7A", fr()),
            Err("phone: not a valid number for +33".into())
        );
        // libphonenumber spells out three letters or more, which makes a word beside a
        // number someone else's number: refused, vanity numbers with them.
        for (v, r) in [
            ("1-800-FLOWERS", us()),
            ("(212) 555 WORK", us()),
            ("01 23 45 home", fr()),
        ] {
            assert_eq!(
                e164(v, r),
                Err("phone: letters among the digits".into()),
                "{v}"
            );
        }
        // An extension, or letters before the number, are not read as digits.
        assert_eq!(
            e164("+44 20 7946 0958 ext. 12", RowRegion::None),
            Ok("+442079460958".into())
        );
        assert_eq!(
            e164("Tel: +33 6 12 34 56 78", RowRegion::None),
            Ok("+33612345678".into())
        );
    }

    #[test]
    fn every_reason_says_why() {
        assert_eq!(e164("hello", fr()), Err("phone: not a number".into()));
        assert_eq!(
            e164("06 12 34 56 78", RowRegion::None),
            Err("phone: national format needs --phone-region or --phone-region-col".into())
        );
        assert_eq!(
            e164("06 12 34 56 78", RowRegion::Unknown("XX")),
            Err("phone: unknown region \"XX\"".into())
        );
        assert_eq!(
            e164(
                "06 12 34 56 78",
                RowRegion::of(Some("United Kingdom of GB"), None)
            ),
            Err("phone: unknown region (not an ISO 3166-1 alpha-2 code)".into())
        );
        assert_eq!(
            e164("+999 1234567890", fr()),
            Err("phone: unknown country code".into())
        );
        assert_eq!(
            e164("06 12 34 56", fr()),
            Err("phone: not a valid number for +33".into())
        );
        assert_eq!(
            e164("+33 12", RowRegion::None),
            Err("phone: not a valid number for +33".into())
        );
        // Niue's numbers are valid with 4 digits: +683 7290 is under the operator's 10.
        let nu = RowRegion::Known(region("NU").expect("known"));
        assert_eq!(
            e164("7290", nu),
            Err("phone: too short for the operator".into())
        );
    }

    #[test]
    fn regions_are_alpha_2_codes_the_metadata_knows() {
        assert_eq!(region("fr").map(|r| r.to_string()), Some("FR".into()));
        for bad in ["UK", "XX", "FRA", "001", "F", "", "é1"] {
            assert_eq!(region(bad), None, "{bad:?}");
        }
        let de = region("DE");
        assert_eq!(
            RowRegion::of(Some("  "), de),
            RowRegion::Known(de.expect("known"))
        );
        assert_eq!(RowRegion::of(None, None), RowRegion::None);
        assert_eq!(
            RowRegion::of(Some("gb "), de),
            RowRegion::Known(region("GB").expect("known"))
        );
        assert_eq!(RowRegion::of(Some("UK"), de), RowRegion::Unknown("UK"));
    }
}
