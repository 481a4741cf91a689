//! Hashing a whole Arrow array of emails, phones or pre-hashed values with the operator's
//! rules, in parallel (rayon), into three arrays: the hash (base64, as `euid-map hash`
//! writes it), the status (`hashed`, `invalid`, `missing`) and the reason.

use std::sync::Arc;

use arrow_array::builder::{BinaryBuilder, StringBuilder};
use arrow_array::{Array, ArrayRef, RecordBatch, StringArray, StructArray};
use arrow_schema::{DataType, Field, Fields, Schema};
use rayon::prelude::*;

use super::ColumnarError;
use crate::normalize::RowRegion;
use crate::output::col;
use crate::record::{
    Hashed, IdentityForm, IdentityKind, PhoneRegion, RowReason, RowStatus, HASH_B64_LEN,
};

/// Values per rayon task: enough work (~100 µs) to amortise scheduling.
const VALUES_PER_TASK: usize = 2048;

/// The region raw phones in national format are read in.
#[derive(Debug, Clone, Copy)]
pub enum Regions<'a> {
    /// None: only phones written with their country code (`+…`) are read.
    None,
    /// One region for every value (`--phone-region`).
    Scalar(PhoneRegion),
    /// One region per value (`--phone-region-col`); an empty or null cell falls back to
    /// `default`, an unknown code makes that phone invalid.
    Column {
        /// The regions, as long as the values.
        regions: &'a dyn Array,
        /// The region of rows whose cell is empty.
        default: Option<PhoneRegion>,
    },
}

impl Regions<'static> {
    /// One region for every value, from its ISO 3166-1 alpha-2 code (any case).
    ///
    /// # Errors
    /// [`ColumnarError::UnknownRegion`] when the phone metadata does not know it.
    pub fn scalar(code: &str) -> Result<Regions<'static>, ColumnarError> {
        crate::normalize::phone_region(code.trim())
            .map(Regions::Scalar)
            .ok_or_else(|| ColumnarError::UnknownRegion(code.to_string()))
    }
}

/// What [`hash_array`] returns: three arrays as long as its input.
#[derive(Debug, Clone)]
pub struct HashedColumns {
    /// The SHA-256 of the normalized value, base64 (null unless `hashed`).
    pub identity_hash: StringArray,
    /// `hashed`, `invalid` or `missing` (null or empty cell).
    pub status: StringArray,
    /// Why an identity is invalid (`invalid email`, `not a phone number`, …); else null.
    pub reason: StringArray,
}

impl HashedColumns {
    /// The three fields, named as in `euid-map hash`'s output.
    pub fn fields() -> Fields {
        Fields::from(vec![
            Field::new(col::IDENTITY_HASH, DataType::Utf8, true),
            Field::new(col::STATUS, DataType::Utf8, false),
            Field::new(col::REASON, DataType::Utf8, true),
        ])
    }

    fn arrays(self) -> Vec<ArrayRef> {
        vec![
            Arc::new(self.identity_hash),
            Arc::new(self.status),
            Arc::new(self.reason),
        ]
    }

    /// As one struct array (a single column for a DuckDB or Polars function).
    pub fn into_struct(self) -> StructArray {
        StructArray::new(Self::fields(), self.arrays(), None)
    }

    /// As a record batch of three columns.
    pub fn into_batch(self) -> RecordBatch {
        let schema = Arc::new(Schema::new(Self::fields()));
        RecordBatch::try_new(schema, self.arrays()).expect("three columns of one length")
    }
}

/// Hashes every value of `values` (any string flavour; null and empty are `missing`) as
/// `kind` in `form`: the same rules, byte for byte, as `euid-map hash` (one implementation,
/// [`crate::normalize::identity_in`]), run on all cores.
///
/// # Errors
/// The values or regions are not strings, or the regions' length differs.
pub fn hash_array(
    kind: IdentityKind,
    form: IdentityForm,
    values: &dyn Array,
    regions: Regions<'_>,
) -> Result<HashedColumns, ColumnarError> {
    let text = |what, a: &dyn Array| {
        if crate::text::is_text(a.data_type()) || a.data_type() == &DataType::Null {
            Ok(())
        } else {
            Err(ColumnarError::NotText {
                what,
                found: a.data_type().to_string(),
            })
        }
    };
    text("the values", values)?;
    if let Regions::Column { regions, .. } = regions {
        text("the regions", regions)?;
        if regions.len() != values.len() {
            return Err(ColumnarError::LengthMismatch {
                values: values.len(),
                regions: regions.len(),
            });
        }
    }
    let mut hashed = vec![Hashed::Missing; values.len()];
    hashed
        .par_chunks_mut(VALUES_PER_TASK)
        .enumerate()
        .for_each(|(c, slots)| {
            for (k, slot) in slots.iter_mut().enumerate() {
                let i = c * VALUES_PER_TASK + k;
                let region = match regions {
                    Regions::None => RowRegion::None,
                    Regions::Scalar(r) => RowRegion::Known(r),
                    Regions::Column { regions, default } => {
                        RowRegion::of(crate::text::at(regions, i), default)
                    }
                };
                let cell = crate::text::at(values, i);
                *slot = crate::normalize::identity_in(kind, form, cell, region).hashed;
            }
        });
    Ok(encode(&hashed))
}

fn encode(hashed: &[Hashed]) -> HashedColumns {
    let n = hashed.len();
    let mut hash = BinaryBuilder::with_capacity(n, n * HASH_B64_LEN);
    let mut status = StringBuilder::with_capacity(n, n * 6);
    let mut reason = StringBuilder::new();
    let mut b64 = [0u8; HASH_B64_LEN];
    for h in hashed {
        let (st, why) = RowStatus::decide(h, None, false);
        match h {
            Hashed::Ok(d) => {
                d.encode_into(&mut b64);
                hash.append_value(b64);
            }
            _ => hash.append_null(),
        }
        status.append_value(st.as_str());
        reason.append_option(match why {
            RowReason::Text(t) => Some(t),
            _ => None,
        });
    }
    HashedColumns {
        identity_hash: StringArray::try_from_binary(hash.finish()).expect("base64 is ASCII"),
        status: status.finish(),
        reason: reason.finish(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{DictionaryArray, LargeStringArray};

    fn strs(a: &StringArray) -> Vec<Option<&str>> {
        a.iter().collect()
    }

    #[test]
    fn emails_hash_as_the_normalize_module_does() {
        let values =
            StringArray::from(vec![Some("USER@example.com"), None, Some(""), Some("a@@b")]);
        let h = hash_array(
            IdentityKind::Email,
            IdentityForm::Raw,
            &values,
            Regions::None,
        )
        .expect("hashes");
        assert_eq!(
            strs(&h.identity_hash),
            vec![
                Some("tMmiiTI7IaAcPpQPFQ65uMVCWH8av9jw4cwf/F5HVRQ="),
                None,
                None,
                None
            ]
        );
        assert_eq!(
            strs(&h.status),
            vec![
                Some("hashed"),
                Some("missing"),
                Some("missing"),
                Some("invalid")
            ]
        );
        assert_eq!(
            strs(&h.reason),
            vec![None, None, None, Some("invalid email")]
        );
    }

    #[test]
    fn every_string_flavour_gives_the_same_hashes() {
        let plain = StringArray::from(vec!["a@b.com", "C@d.org", "a@b.com"]);
        let large = LargeStringArray::from(vec!["a@b.com", "C@d.org", "a@b.com"]);
        let dict: DictionaryArray<arrow_array::types::Int32Type> =
            vec!["a@b.com", "C@d.org", "a@b.com"].into_iter().collect();
        let hash = |a: &dyn Array| {
            hash_array(IdentityKind::Email, IdentityForm::Raw, a, Regions::None)
                .expect("hashes")
                .identity_hash
        };
        assert_eq!(hash(&plain), hash(&large));
        assert_eq!(hash(&plain), hash(&dict));
    }

    #[test]
    fn phones_read_in_a_region_column_or_scalar() {
        let phones = StringArray::from(vec!["06 12 34 56 78", "06 12 34 56 78", "+33612345678"]);
        let regions = StringArray::from(vec![Some("fr"), Some("XX"), None]);
        let by_col = hash_array(
            IdentityKind::Phone,
            IdentityForm::Raw,
            &phones,
            Regions::Column {
                regions: &regions,
                default: None,
            },
        )
        .expect("hashes");
        let e164 = crate::normalize::hash_phone("+33612345678")
            .expect("valid")
            .to_base64();
        assert_eq!(by_col.identity_hash.value(0), e164);
        assert_eq!(by_col.status.value(1), "invalid");
        assert_eq!(by_col.identity_hash.value(2), e164);
        let by_scalar = hash_array(
            IdentityKind::Phone,
            IdentityForm::Raw,
            &phones,
            Regions::scalar("FR").expect("known"),
        )
        .expect("hashes");
        assert_eq!(by_scalar.identity_hash.value(1), e164);
        assert!(matches!(
            Regions::scalar("UK"),
            Err(ColumnarError::UnknownRegion(_))
        ));
    }

    #[test]
    fn wrong_types_and_lengths_are_errors_not_statuses() {
        let ints = arrow_array::Int64Array::from(vec![1, 2]);
        assert!(matches!(
            hash_array(IdentityKind::Email, IdentityForm::Raw, &ints, Regions::None),
            Err(ColumnarError::NotText { .. })
        ));
        let phones = StringArray::from(vec!["+33612345678"]);
        let regions = StringArray::from(vec!["FR", "FR"]);
        let r = Regions::Column {
            regions: &regions,
            default: None,
        };
        assert!(matches!(
            hash_array(IdentityKind::Phone, IdentityForm::Raw, &phones, r),
            Err(ColumnarError::LengthMismatch {
                values: 1,
                regions: 2
            })
        ));
    }

    #[test]
    fn prehashed_values_are_checked_and_the_struct_has_three_fields() {
        let good = crate::normalize::sha256(b"x").to_base64();
        let values = StringArray::from(vec![good.as_str(), "abc"]);
        let h = hash_array(
            IdentityKind::Email,
            IdentityForm::Hashed,
            &values,
            Regions::None,
        )
        .expect("hashes");
        assert_eq!(h.identity_hash.value(0), good);
        assert_eq!(h.reason.value(1), "bad hash length");
        let s = h.into_struct();
        assert_eq!(s.num_columns(), 3);
        assert_eq!(s.len(), 2);
    }
}
