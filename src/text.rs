//! Reading text cells from Arrow arrays of any string flavour: `Utf8`, `LargeUtf8`,
//! `Utf8View` and dictionaries of them (pandas `category`, Polars' `string_view`, Spark's
//! large strings). One accessor, so that every reader of a previous dataset or an export
//! agrees on what a string column is.

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Int16Type, Int32Type, Int64Type, Int8Type, UInt16Type, UInt32Type, UInt64Type, UInt8Type,
};
use arrow_array::Array;
use arrow_schema::DataType;

/// Whether `t` is a string type [`at`] reads.
pub fn is_text(t: &DataType) -> bool {
    match t {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => true,
        DataType::Dictionary(_, v) => {
            matches!(
                **v,
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
            )
        }
        _ => false,
    }
}

/// The type a string column of any flavour is kept as: `Utf8`, so that files of different
/// writers (pyarrow, Polars' `string_view`, pandas `category`) unify. Other types unchanged.
pub fn kept_type(t: &DataType) -> DataType {
    if is_text(t) {
        DataType::Utf8
    } else {
        t.clone()
    }
}

/// A string column of any flavour as `Utf8` (the same array when it is one already); other
/// arrays unchanged.
pub fn to_utf8(a: &arrow_array::ArrayRef) -> arrow_array::ArrayRef {
    if a.data_type() == &DataType::Utf8 || !is_text(a.data_type()) {
        return std::sync::Arc::clone(a);
    }
    std::sync::Arc::new(arrow_array::StringArray::from_iter(
        (0..a.len()).map(|i| at(a.as_ref(), i)),
    ))
}

/// The text of cell `i`; `None` when it is null or the array is not a string type.
pub fn at(a: &dyn Array, i: usize) -> Option<&str> {
    if a.is_null(i) {
        return None;
    }
    match a.data_type() {
        DataType::Utf8 => Some(a.as_string::<i32>().value(i)),
        DataType::LargeUtf8 => Some(a.as_string::<i64>().value(i)),
        DataType::Utf8View => Some(a.as_string_view().value(i)),
        DataType::Dictionary(k, _) => {
            let (key, values) = match **k {
                DataType::Int8 => dict::<Int8Type>(a, i),
                DataType::Int16 => dict::<Int16Type>(a, i),
                DataType::Int32 => dict::<Int32Type>(a, i),
                DataType::Int64 => dict::<Int64Type>(a, i),
                DataType::UInt8 => dict::<UInt8Type>(a, i),
                DataType::UInt16 => dict::<UInt16Type>(a, i),
                DataType::UInt32 => dict::<UInt32Type>(a, i),
                DataType::UInt64 => dict::<UInt64Type>(a, i),
                _ => return None,
            }?;
            at(values, key)
        }
        _ => None,
    }
}

fn dict<K: arrow_array::types::ArrowDictionaryKeyType>(
    a: &dyn Array,
    i: usize,
) -> Option<(usize, &dyn Array)> {
    let d = a.as_dictionary_opt::<K>()?;
    let key = d.key(i)?;
    Some((key, d.values().as_ref()))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{DictionaryArray, LargeStringArray, StringArray, StringViewArray};

    use super::*;

    #[test]
    fn every_string_flavour_reads_the_same() {
        let plain = StringArray::from(vec![Some("a"), None, Some("b")]);
        let large = LargeStringArray::from(vec![Some("a"), None, Some("b")]);
        let view = StringViewArray::from(vec![Some("a"), None, Some("b")]);
        let dictionary: DictionaryArray<Int32Type> =
            vec![Some("a"), None, Some("b")].into_iter().collect();
        let arrays: [Arc<dyn Array>; 4] = [
            Arc::new(plain),
            Arc::new(large),
            Arc::new(view),
            Arc::new(dictionary),
        ];
        for a in arrays {
            assert!(is_text(a.data_type()), "{}", a.data_type());
            let got: Vec<Option<&str>> = (0..3).map(|i| at(a.as_ref(), i)).collect();
            assert_eq!(got, vec![Some("a"), None, Some("b")], "{}", a.data_type());
        }
        assert!(!is_text(&DataType::Int64));
        for a in [
            Arc::new(LargeStringArray::from(vec![Some("x"), None])) as arrow_array::ArrayRef,
            Arc::new(
                vec![Some("x"), None]
                    .into_iter()
                    .collect::<DictionaryArray<Int32Type>>(),
            ),
        ] {
            let u = to_utf8(&a);
            assert_eq!(u.data_type(), &DataType::Utf8);
            assert_eq!((at(u.as_ref(), 0), at(u.as_ref(), 1)), (Some("x"), None));
            assert_eq!(kept_type(a.data_type()), DataType::Utf8);
        }
    }
}
