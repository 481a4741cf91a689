//! Customer keys, compared by value whatever their Arrow type: `42` read from a CSV, an
//! `int64`, a Snowflake `NUMBER(38,0)` unloaded as `decimal128(38,0)`, a pandas float column
//! (an integer column with nulls), and the text `42.0` (what pandas' `to_csv` writes for that
//! column, or a `NUMBER(…,2)` unload) are the same customer: [`text_key`] is the rule for
//! text. A key type that cannot be compared that way is refused before anything is read.

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Decimal128Type, Decimal256Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type,
    Int8Type, UInt16Type, UInt32Type, UInt64Type, UInt8Type,
};
use arrow_array::{Array, ArrayRef};
use arrow_schema::DataType;

use super::RefreshError;

/// Whether keys of type `t` can be compared by value.
pub(super) fn comparable(t: &DataType) -> bool {
    crate::text::is_text(t)
        || matches!(
            t,
            DataType::Int8
                | DataType::Int16
                | DataType::Int32
                | DataType::Int64
                | DataType::UInt8
                | DataType::UInt16
                | DataType::UInt32
                | DataType::UInt64
                | DataType::Float32
                | DataType::Float64
                | DataType::Decimal128(_, _)
                | DataType::Decimal256(_, _)
        )
}

/// Refuses a key column whose type cannot be compared by value.
///
/// # Errors
/// [`RefreshError::KeyType`].
pub(super) fn check(column: &str, side: &str, t: &DataType) -> Result<(), RefreshError> {
    if comparable(t) {
        Ok(())
    } else {
        Err(RefreshError::KeyType {
            column: column.to_string(),
            side: side.to_string(),
            data_type: t.to_string(),
        })
    }
}

/// The canonical text of a decimal's unscaled digits at `scale`: no trailing fraction
/// zeros, no `-0` (so `42`, `42.00` and `042` all read `42`).
fn decimal_text(unscaled: &str, scale: i8) -> String {
    let (neg, digits) = match unscaled.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, unscaled),
    };
    let digits = digits.trim_start_matches('0');
    let mut out = if scale <= 0 {
        if digits.is_empty() {
            return "0".to_string();
        }
        let mut s = digits.to_string();
        s.extend(std::iter::repeat_n('0', usize::from(scale.unsigned_abs())));
        s
    } else {
        let scale = usize::from(scale.unsigned_abs());
        let padded = format!("{digits:0>width$}", width = scale + 1);
        let (int, frac) = padded.split_at(padded.len() - scale);
        let frac = frac.trim_end_matches('0');
        let int = match int.trim_start_matches('0') {
            "" => "0",
            i => i,
        };
        if frac.is_empty() {
            int.to_string()
        } else {
            format!("{int}.{frac}")
        }
    };
    if neg && out != "0" {
        out.insert(0, '-');
    }
    out
}

/// A float key: integral values read as integers (`42.0` is customer `42`); NaN, the
/// null of a pandas integer column with gaps, is no key.
fn float_text(v: f64) -> Option<String> {
    if !v.is_finite() {
        return None;
    }
    if v.fract() == 0.0 && v.abs() < 1e18 {
        return Some(format!("{}", v as i64));
    }
    Some(format!("{v}"))
}

/// The key of row `i` as canonical text; `None` for a null (or NaN) key.
pub(super) fn at(a: &ArrayRef, i: usize) -> Option<String> {
    if a.is_null(i) {
        return None;
    }
    Some(match a.data_type() {
        DataType::Int8 => a.as_primitive::<Int8Type>().value(i).to_string(),
        DataType::Int16 => a.as_primitive::<Int16Type>().value(i).to_string(),
        DataType::Int32 => a.as_primitive::<Int32Type>().value(i).to_string(),
        DataType::Int64 => a.as_primitive::<Int64Type>().value(i).to_string(),
        DataType::UInt8 => a.as_primitive::<UInt8Type>().value(i).to_string(),
        DataType::UInt16 => a.as_primitive::<UInt16Type>().value(i).to_string(),
        DataType::UInt32 => a.as_primitive::<UInt32Type>().value(i).to_string(),
        DataType::UInt64 => a.as_primitive::<UInt64Type>().value(i).to_string(),
        DataType::Float32 => float_text(f64::from(a.as_primitive::<Float32Type>().value(i)))?,
        DataType::Float64 => float_text(a.as_primitive::<Float64Type>().value(i))?,
        DataType::Decimal128(_, s) => {
            decimal_text(&a.as_primitive::<Decimal128Type>().value(i).to_string(), *s)
        }
        DataType::Decimal256(_, s) => {
            decimal_text(&a.as_primitive::<Decimal256Type>().value(i).to_string(), *s)
        }
        _ => text_key(crate::text::at(a.as_ref(), i)?),
    })
}

/// A text key as a customer key: a whole number written with a sign or a fraction of zeros
/// (`1234.0`, `1234.00`, `+12`, `-7.0`, `-0`) is that number as its digits read (`1234`,
/// `12`, `-7`, `0`), as a number column holding it reads; anything else (`1234.5`, `C-17`,
/// `1.234E3`) stays the text it is, and so do leading zeros (`00042`: an account number is
/// text). Exponents are left alone: spreadsheets write `1.23457E+11` for a number they have
/// already rounded, and reading it as `123457000000` would make it another customer.
pub(crate) fn text_key(s: &str) -> String {
    let (negative, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    let whole = !int.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.bytes().all(|b| b == b'0');
    if !whole {
        return s.to_string();
    }
    if negative && !int.bytes().all(|b| b == b'0') {
        format!("-{int}")
    } else {
        int.to_string()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{
        Decimal128Array, Float64Array, Int16Array, Int64Array, StringArray, UInt8Array,
    };

    use super::*;

    /// Issue #25.3: keys of every integer, decimal and string type compare by value.
    #[test]
    fn keys_of_every_numeric_and_string_type_compare_by_value() {
        let cases: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(vec![Some("42"), None])),
            Arc::new(Int64Array::from(vec![Some(42), None])),
            Arc::new(Int16Array::from(vec![Some(42), None])),
            Arc::new(UInt8Array::from(vec![Some(42), None])),
            Arc::new(Float64Array::from(vec![Some(42.0), Some(f64::NAN)])),
            Arc::new(
                Decimal128Array::from(vec![Some(42), None])
                    .with_precision_and_scale(38, 0)
                    .expect("valid"),
            ),
            Arc::new(
                Decimal128Array::from(vec![Some(4200), None])
                    .with_precision_and_scale(10, 2)
                    .expect("valid"),
            ),
        ];
        for a in cases {
            assert!(comparable(a.data_type()), "{}", a.data_type());
            assert_eq!(at(&a, 0).as_deref(), Some("42"), "{}", a.data_type());
            assert_eq!(
                at(&a, 1),
                None,
                "{}: null (or NaN) is no key",
                a.data_type()
            );
        }
        assert!(!comparable(&DataType::Boolean));
        assert!(check("id", "the state", &DataType::Binary).is_err());
    }

    /// Issue #32.2: `1234.0` written by pandas (an integer column with gaps) or a
    /// `NUMBER(…,2)` unload is the customer `1234`; keys that are not whole numbers stay text.
    #[test]
    fn text_keys_with_a_zero_fraction_are_whole_numbers() {
        for (given, key) in [
            ("1234", "1234"),
            ("1234.0", "1234"),
            ("1234.00", "1234"),
            ("1234.", "1234"),
            ("+1234.0", "1234"),
            ("+5", "5"),
            ("-7.000", "-7"),
            ("-7", "-7"),
            ("-0.0", "0"),
            ("-0", "0"),
            ("0.00", "0"),
            ("00042.0", "00042"),
            ("00042", "00042"),
            ("1234.5", "1234.5"),
            ("1234.50", "1234.50"),
            ("1.234E3", "1.234E3"),
            ("1.23457E+11", "1.23457E+11"),
            (".0", ".0"),
            ("-", "-"),
            ("", ""),
            ("A-17.0", "A-17.0"),
            ("12.0.0", "12.0.0"),
            (" 12.0", " 12.0"),
            ("C-0042", "C-0042"),
        ] {
            assert_eq!(text_key(given), key, "{given:?}");
        }
        let text: ArrayRef = Arc::new(StringArray::from(vec![Some("42.0"), Some("42.50")]));
        let int: ArrayRef = Arc::new(Int64Array::from(vec![42]));
        assert_eq!(
            at(&text, 0),
            at(&int, 0),
            "the same customer in CSV and Parquet"
        );
        assert_eq!(at(&text, 1).as_deref(), Some("42.50"));
    }

    #[test]
    fn decimals_read_without_trailing_zeros_or_negative_zero() {
        assert_eq!(decimal_text("12345", 2), "123.45");
        assert_eq!(decimal_text("12340", 2), "123.4");
        assert_eq!(decimal_text("-5", 1), "-0.5");
        assert_eq!(decimal_text("-0", 3), "0");
        assert_eq!(decimal_text("7", -2), "700");
        assert_eq!(decimal_text("0", 0), "0");
        assert_eq!(float_text(1.5).as_deref(), Some("1.5"));
    }
}
