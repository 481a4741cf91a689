//! Which columns hold identities and which are kept: explicit flags, or auto-detection from
//! the usual names ([`super::names`]).

use arrow_schema::DataType;

use super::names::{recognise, shown_header_cell};
use super::{Header, InputError};
use crate::record::{IdentityForm, IdentityKind, PhoneRegion};

/// The user's column choices, before looking at any file. Each identity flag may name
/// several columns; none named means auto-detection ([`recognise`]) of every column.
#[derive(Debug, Clone, Default)]
pub struct ColumnSpec {
    /// `--email-col`, in order.
    pub email: Vec<String>,
    /// `--phone-col`, in order.
    pub phone: Vec<String>,
    /// `--email-hash-col`, in order.
    pub email_hash: Vec<String>,
    /// `--phone-hash-col`, in order.
    pub phone_hash: Vec<String>,
    /// `--keep-col`, in order.
    pub keep: Vec<String>,
    /// `--phone-region-col`: each row's region for national-format phones; one for every
    /// raw phone column, or one per raw phone column, paired in order.
    pub phone_region_col: Vec<String>,
    /// `--phone-region`: the region for rows without one.
    pub phone_region: Option<PhoneRegion>,
    /// Read no identity column (`euid-map optout` reads raw EUIDs as a kept column).
    pub no_identity: bool,
}

/// An identity column found in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityColumn {
    /// Column name in the file (the output's `identity_column`).
    pub name: std::sync::Arc<str>,
    /// Index in the file's header.
    pub index: usize,
    /// Email or phone.
    pub kind: IdentityKind,
    /// Raw or pre-hashed.
    pub form: IdentityForm,
    /// For a raw phone column: which of [`ResolvedColumns::phone_region_cols`] gives its
    /// rows' regions.
    pub region: Option<usize>,
}

/// A `--phone-region-col` column found in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionColumn {
    /// Column name in the file.
    pub name: String,
    /// Index in the file's header.
    pub index: usize,
}

/// The columns of one file that a job reads.
#[derive(Debug, Clone)]
pub struct ResolvedColumns {
    /// Identity columns in output order: emails, phones, email hashes, phone hashes (each
    /// kind in the order given, or in the file's order when detected).
    pub identities: Vec<IdentityColumn>,
    /// Kept columns: index in the file's header.
    pub keep: Vec<usize>,
    /// Kept columns: name and type (Utf8 for CSV).
    pub keep_types: Vec<(String, DataType)>,
    /// Number of columns in the header.
    pub width: usize,
    /// `--phone-region-col` columns.
    pub phone_region_cols: Vec<RegionColumn>,
    /// `--phone-region`.
    pub phone_region: Option<PhoneRegion>,
}

impl ResolvedColumns {
    /// Every header index the reader must read: identities, kept columns, region columns.
    pub fn used(&self) -> impl Iterator<Item = usize> + Clone + '_ {
        self.identities
            .iter()
            .map(|c| c.index)
            .chain(self.keep.iter().copied())
            .chain(self.phone_region_cols.iter().map(|r| r.index))
    }

    /// The identity columns' names, in output order (the `identity_column` of each slot).
    pub fn identity_names(&self) -> std::sync::Arc<[std::sync::Arc<str>]> {
        self.identities.iter().map(|c| c.name.clone()).collect()
    }
}

impl ColumnSpec {
    /// Whether identity columns are named (else they are detected by name).
    pub fn is_explicit(&self) -> bool {
        !(self.email.is_empty()
            && self.phone.is_empty()
            && self.email_hash.is_empty()
            && self.phone_hash.is_empty())
    }

    /// Finds this spec's columns in a file's header.
    ///
    /// # Errors
    /// A named column is absent or named twice in the header, nothing was named and nothing
    /// was recognised, or the region columns do not pair with the phone columns; the error
    /// names the file (and lists its columns where that helps).
    pub fn resolve(&self, path: &str, header: &Header) -> Result<ResolvedColumns, InputError> {
        let names: Vec<&str> = header.columns.iter().map(|(n, _)| n.as_str()).collect();
        let available = || {
            names
                .iter()
                .map(|n| shown_header_cell(n))
                .collect::<Vec<_>>()
                .join(", ")
        };
        // A column the job reads must be one column: a header naming it twice is refused.
        let once = |index: usize| -> Result<usize, InputError> {
            if names.iter().filter(|n| **n == names[index]).count() > 1 {
                return Err(InputError::DuplicateColumn {
                    path: path.to_string(),
                    column: shown_header_cell(names[index]),
                });
            }
            Ok(index)
        };
        let find_exact = |col: &str| -> Result<usize, InputError> {
            let index = names
                .iter()
                .position(|n| *n == col)
                .or_else(|| names.iter().position(|n| n.eq_ignore_ascii_case(col)))
                .ok_or_else(|| InputError::MissingColumn {
                    path: path.to_string(),
                    column: col.to_string(),
                    available: available(),
                })?;
            once(index)
        };
        let mut found: Vec<(usize, IdentityKind, IdentityForm)> = Vec::new();
        if self.is_explicit() && !self.no_identity {
            let slots = [
                (&self.email, IdentityKind::Email, IdentityForm::Raw),
                (&self.phone, IdentityKind::Phone, IdentityForm::Raw),
                (&self.email_hash, IdentityKind::Email, IdentityForm::Hashed),
                (&self.phone_hash, IdentityKind::Phone, IdentityForm::Hashed),
            ];
            for (given, kind, form) in slots {
                for col in given {
                    found.push((find_exact(col)?, kind, form));
                }
            }
        } else if !self.no_identity {
            let order = [
                (IdentityKind::Email, IdentityForm::Raw),
                (IdentityKind::Phone, IdentityForm::Raw),
                (IdentityKind::Email, IdentityForm::Hashed),
                (IdentityKind::Phone, IdentityForm::Hashed),
            ];
            for (kind, form) in order {
                for (index, name) in names.iter().enumerate() {
                    if recognise(name) == Some((kind, form)) {
                        found.push((once(index)?, kind, form));
                    }
                }
            }
        }
        if let Some((i, _, _)) = found
            .iter()
            .enumerate()
            .find_map(|(k, f)| found[..k].iter().any(|g| g.0 == f.0).then_some(f))
        {
            return Err(InputError::DuplicateColumn {
                path: path.to_string(),
                column: shown_header_cell(names[*i]),
            });
        }
        let phone_region_cols = self
            .phone_region_col
            .iter()
            .map(|col| {
                let index = find_exact(col)?;
                let ty = &header.columns[index].1;
                if !crate::text::is_text(ty) {
                    return Err(InputError::RegionNotString {
                        path: path.to_string(),
                        column: names[index].to_string(),
                        found: ty.to_string(),
                    });
                }
                Ok(RegionColumn {
                    name: names[index].to_string(),
                    index,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let raw_phones = found
            .iter()
            .filter(|(_, k, f)| *k == IdentityKind::Phone && *f == IdentityForm::Raw)
            .count();
        // Several region columns pair with phone columns in the order of --phone-col: never
        // with detected ones, whose order is each file's header order.
        if phone_region_cols.len() > 1 && self.phone.is_empty() {
            return Err(InputError::RegionColumnsUnpaired {
                path: path.to_string(),
            });
        }
        if phone_region_cols.len() > 1 && phone_region_cols.len() != raw_phones {
            return Err(InputError::RegionColumns {
                path: path.to_string(),
                regions: phone_region_cols.len(),
                phones: raw_phones,
            });
        }
        let mut phone_slot = 0;
        let mut identities = Vec::with_capacity(found.len());
        for (index, kind, form) in found {
            let ty = &header.columns[index].1;
            if !crate::text::is_text(ty) {
                return Err(InputError::NotString {
                    path: path.to_string(),
                    column: names[index].to_string(),
                    found: ty.to_string(),
                });
            }
            let region = (kind == IdentityKind::Phone && form == IdentityForm::Raw)
                .then(|| {
                    phone_slot += 1;
                    match phone_region_cols.len() {
                        0 => None,
                        1 => Some(0),
                        _ => Some(phone_slot - 1),
                    }
                })
                .flatten();
            identities.push(IdentityColumn {
                name: names[index].into(),
                index,
                kind,
                form,
                region,
            });
        }
        if identities.is_empty() && !self.no_identity {
            return Err(InputError::NoIdentityColumn {
                path: path.to_string(),
                available: available(),
            });
        }
        let mut keep = Vec::new();
        let mut keep_types = Vec::new();
        for col in &self.keep {
            let i = find_exact(col)?;
            keep.push(i);
            keep_types.push((col.clone(), crate::text::kept_type(&header.columns[i].1)));
        }
        Ok(ResolvedColumns {
            identities,
            keep,
            keep_types,
            width: names.len(),
            phone_region_cols,
            phone_region: self.phone_region,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(cols: &[&str]) -> Header {
        Header {
            columns: cols
                .iter()
                .map(|c| (c.to_string(), DataType::Utf8))
                .collect(),
        }
    }

    #[test]
    fn detects_usual_names_case_insensitively() {
        let r = ColumnSpec::default()
            .resolve("f.csv", &header(&["id", "Email_Address", "MOBILE"]))
            .expect("resolves");
        let got: Vec<_> = r
            .identities
            .iter()
            .map(|c| (&*c.name, c.kind, c.form))
            .collect();
        assert_eq!(
            got,
            vec![
                ("Email_Address", IdentityKind::Email, IdentityForm::Raw),
                ("MOBILE", IdentityKind::Phone, IdentityForm::Raw)
            ]
        );
    }

    /// Issue #32.1: every recognised column is mapped, qualified names included, each kind
    /// in the file's order; names that only start like one are not.
    #[test]
    fn detects_every_identity_column_of_a_crm_export() {
        let r = ColumnSpec::default()
            .resolve(
                "f.csv",
                &header(&[
                    "id",
                    "email",
                    "Secondary_Email",
                    "phone",
                    "mobile",
                    "work_phone",
                    "email2",
                    "email_opt_in",
                    "phone_type",
                    "Email Hash",
                ]),
            )
            .expect("resolves");
        let got: Vec<_> = r
            .identities
            .iter()
            .map(|c| (&*c.name, c.kind, c.form))
            .collect();
        use IdentityForm::*;
        use IdentityKind::*;
        assert_eq!(
            got,
            vec![
                ("email", Email, Raw),
                ("Secondary_Email", Email, Raw),
                ("email2", Email, Raw),
                ("phone", Phone, Raw),
                ("mobile", Phone, Raw),
                ("work_phone", Phone, Raw),
                ("Email Hash", Email, Hashed),
            ]
        );
    }

    /// Issue #32.1: a column read twice, or a header naming a read column twice, is refused
    /// with its name.
    #[test]
    fn a_column_named_twice_is_refused_by_name() {
        let err = ColumnSpec::default()
            .resolve("f.csv", &header(&["id", "phone", "phone"]))
            .expect_err("phone twice");
        assert!(err.to_string().contains("\"phone\""), "{err}");
        let spec = ColumnSpec {
            email: vec!["e".into(), "E".into()],
            ..Default::default()
        };
        assert!(spec.resolve("f.csv", &header(&["id", "e"])).is_err());
        // A column that is not read may be named twice.
        assert!(ColumnSpec::default()
            .resolve("f.csv", &header(&["x", "x", "email"]))
            .is_ok());
    }

    /// Issue #32.1: one region column serves every phone column; several pair in order
    /// with the phone columns named, never with detected ones.
    #[test]
    fn region_columns_pair_with_phone_columns() {
        let h = header(&["phone", "mobile", "c1", "c2"]);
        let detected = ColumnSpec {
            phone_region_col: vec!["c1".into(), "c2".into()],
            ..Default::default()
        };
        assert!(detected.resolve("f.csv", &h).is_err());
        let one = ColumnSpec {
            phone_region_col: vec!["c1".into()],
            ..Default::default()
        }
        .resolve("f.csv", &h)
        .expect("resolves");
        assert_eq!(
            one.identities.iter().map(|c| c.region).collect::<Vec<_>>(),
            [Some(0), Some(0)]
        );
        let two = ColumnSpec {
            phone: vec!["phone".into(), "mobile".into()],
            phone_region_col: vec!["c1".into(), "c2".into()],
            ..Default::default()
        }
        .resolve("f.csv", &h)
        .expect("resolves");
        assert_eq!(
            two.identities.iter().map(|c| c.region).collect::<Vec<_>>(),
            [Some(0), Some(1)]
        );
        let three = ColumnSpec {
            phone: vec!["phone".into()],
            phone_region_col: vec!["c1".into(), "c2".into()],
            ..Default::default()
        };
        assert!(three.resolve("f.csv", &h).is_err());
    }

    #[test]
    fn explicit_columns_turn_detection_off() {
        let spec = ColumnSpec {
            email_hash: vec!["h".into()],
            ..Default::default()
        };
        let r = spec
            .resolve("f.csv", &header(&["email", "h"]))
            .expect("resolves");
        assert_eq!(r.identities.len(), 1);
        assert_eq!(r.identities[0].form, IdentityForm::Hashed);
    }

    #[test]
    fn nothing_found_lists_the_columns() {
        let err = ColumnSpec::default()
            .resolve("in.csv", &header(&["id", "name"]))
            .expect_err("no identity");
        let msg = err.to_string();
        assert!(msg.contains("in.csv") && msg.contains("id, name"), "{msg}");
    }

    #[test]
    fn missing_keep_column_is_named() {
        let spec = ColumnSpec {
            keep: vec!["cust".into()],
            ..Default::default()
        };
        let msg = spec
            .resolve("in.csv", &header(&["email"]))
            .expect_err("missing")
            .to_string();
        assert!(msg.contains("\"cust\"") && msg.contains("in.csv"), "{msg}");
    }
}
