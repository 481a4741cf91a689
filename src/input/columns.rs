//! Which columns hold identities and which are kept: explicit flags, or auto-detection from
//! the usual names. One place for the list of names we recognise.

use arrow_schema::DataType;

use super::{Header, InputError};
use crate::record::{IdentityForm, IdentityKind, PhoneRegion};

/// Names recognised for raw emails (compared case-insensitively).
const EMAIL_NAMES: &[&str] = &["email", "email_address", "emailaddress", "e_mail", "mail"];
/// Names recognised for raw phones.
const PHONE_NAMES: &[&str] = &[
    "phone",
    "phone_number",
    "phonenumber",
    "mobile",
    "mobile_number",
    "msisdn",
    "telephone",
    "tel",
];
/// Names recognised for email hashes.
const EMAIL_HASH_NAMES: &[&str] = &[
    "email_hash",
    "sha256_email",
    "email_sha256",
    "hashed_email",
    "email_hashed",
];
/// Names recognised for phone hashes.
const PHONE_HASH_NAMES: &[&str] = &[
    "phone_hash",
    "sha256_phone",
    "phone_sha256",
    "hashed_phone",
    "phone_hashed",
];

/// A header cell as error messages show it: a cell that looks like an email or a phone (a
/// file without a header row has data there) is replaced by a placeholder, so that raw
/// identities never reach a log.
pub(super) fn shown_header_cell(name: &str) -> String {
    let digits = name.chars().filter(char::is_ascii_digit).count();
    if name.contains('@') || digits >= 6 {
        "<a value, not a name: is the header row missing?>".to_string()
    } else {
        name.chars().take(64).collect()
    }
}

/// The user's column choices, before looking at any file.
#[derive(Debug, Clone, Default)]
pub struct ColumnSpec {
    /// `--email-col`.
    pub email: Option<String>,
    /// `--phone-col`.
    pub phone: Option<String>,
    /// `--email-hash-col`.
    pub email_hash: Option<String>,
    /// `--phone-hash-col`.
    pub phone_hash: Option<String>,
    /// `--keep-col`, in order.
    pub keep: Vec<String>,
    /// `--phone-region-col`: each row's region for national-format phones.
    pub phone_region_col: Option<String>,
    /// `--phone-region`: the region for rows without one.
    pub phone_region: Option<PhoneRegion>,
    /// Read no identity column (`euid-map optout` reads raw EUIDs as a kept column).
    pub no_identity: bool,
}

/// An identity column found in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityColumn {
    /// Column name in the file.
    pub name: String,
    /// Index in the file's header.
    pub index: usize,
    /// Email or phone.
    pub kind: IdentityKind,
    /// Raw or pre-hashed.
    pub form: IdentityForm,
}

/// The columns of one file that a job reads.
#[derive(Debug, Clone)]
pub struct ResolvedColumns {
    /// Identity columns in output order: email, phone, email hash, phone hash.
    pub identities: Vec<IdentityColumn>,
    /// Kept columns: index in the file's header.
    pub keep: Vec<usize>,
    /// Kept columns: name and type (Utf8 for CSV).
    pub keep_types: Vec<(String, DataType)>,
    /// Number of columns in the header.
    pub width: usize,
    /// `--phone-region-col`: its index in the header.
    pub phone_region_col: Option<usize>,
    /// `--phone-region`.
    pub phone_region: Option<PhoneRegion>,
}

impl ResolvedColumns {
    /// Every header index the reader must read: identities, kept columns, the region column.
    pub fn used(&self) -> impl Iterator<Item = usize> + Clone + '_ {
        self.identities
            .iter()
            .map(|c| c.index)
            .chain(self.keep.iter().copied())
            .chain(self.phone_region_col)
    }
}

impl ColumnSpec {
    fn explicit(&self) -> bool {
        self.email.is_some()
            || self.phone.is_some()
            || self.email_hash.is_some()
            || self.phone_hash.is_some()
    }

    /// Finds this spec's columns in a file's header.
    ///
    /// # Errors
    /// A named column is absent, or nothing was named and nothing was recognised; the error
    /// lists the file's columns.
    pub fn resolve(&self, path: &str, header: &Header) -> Result<ResolvedColumns, InputError> {
        let names: Vec<&str> = header.columns.iter().map(|(n, _)| n.as_str()).collect();
        let available = || {
            names
                .iter()
                .map(|n| shown_header_cell(n))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let find_exact = |col: &str| -> Result<usize, InputError> {
            names
                .iter()
                .position(|n| *n == col)
                .or_else(|| names.iter().position(|n| n.eq_ignore_ascii_case(col)))
                .ok_or_else(|| InputError::MissingColumn {
                    path: path.to_string(),
                    column: col.to_string(),
                    available: available(),
                })
        };
        let slots = [
            (
                &self.email,
                EMAIL_NAMES,
                IdentityKind::Email,
                IdentityForm::Raw,
            ),
            (
                &self.phone,
                PHONE_NAMES,
                IdentityKind::Phone,
                IdentityForm::Raw,
            ),
            (
                &self.email_hash,
                EMAIL_HASH_NAMES,
                IdentityKind::Email,
                IdentityForm::Hashed,
            ),
            (
                &self.phone_hash,
                PHONE_HASH_NAMES,
                IdentityKind::Phone,
                IdentityForm::Hashed,
            ),
        ];
        let mut identities = Vec::new();
        for (given, known, kind, form) in slots {
            if self.no_identity {
                break;
            }
            let index = if self.explicit() {
                match given {
                    Some(col) => Some(find_exact(col)?),
                    None => None,
                }
            } else {
                known
                    .iter()
                    .find_map(|k| names.iter().position(|n| n.eq_ignore_ascii_case(k)))
            };
            if let Some(index) = index {
                let ty = &header.columns[index].1;
                if !crate::text::is_text(ty) {
                    return Err(InputError::NotString {
                        path: path.to_string(),
                        column: names[index].to_string(),
                        found: ty.to_string(),
                    });
                }
                identities.push(IdentityColumn {
                    name: names[index].to_string(),
                    index,
                    kind,
                    form,
                });
            }
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
        let phone_region_col = match &self.phone_region_col {
            Some(col) => {
                let i = find_exact(col)?;
                let ty = &header.columns[i].1;
                if !crate::text::is_text(ty) {
                    return Err(InputError::RegionNotString {
                        path: path.to_string(),
                        column: names[i].to_string(),
                        found: ty.to_string(),
                    });
                }
                Some(i)
            }
            None => None,
        };
        Ok(ResolvedColumns {
            identities,
            keep,
            keep_types,
            width: names.len(),
            phone_region_col,
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
            .map(|c| (c.name.as_str(), c.kind, c.form))
            .collect();
        assert_eq!(
            got,
            vec![
                ("Email_Address", IdentityKind::Email, IdentityForm::Raw),
                ("MOBILE", IdentityKind::Phone, IdentityForm::Raw)
            ]
        );
    }

    #[test]
    fn explicit_columns_turn_detection_off() {
        let spec = ColumnSpec {
            email_hash: Some("h".into()),
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
