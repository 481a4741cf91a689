//! The column names auto-detection recognises, and how header cells are shown in errors.
//! One place for the list of names.

use crate::record::{IdentityForm, IdentityKind};

/// Names recognised for raw emails (compared case-insensitively, see [`recognise`]).
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
    "cell",
    "cellphone",
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
/// Words that qualify a recognised name without changing what it holds: `secondary_email`,
/// `work_phone`, `mobile_phone`, `Alt-Email`. A trailing number does too (`email2`,
/// `phone_3`).
const QUALIFIERS: &[&str] = &[
    "primary",
    "secondary",
    "alt",
    "alternate",
    "alternative",
    "other",
    "additional",
    "work",
    "business",
    "office",
    "personal",
    "private",
    "home",
    "main",
    "contact",
    "customer",
    "user",
    "billing",
    "shipping",
    "mobile",
    "cell",
];

/// What a column name says it holds, if it is one of the usual names (any case, words
/// separated by `_`, `-`, `.` or spaces), possibly qualified (`secondary_email`, `email2`,
/// `Work Phone`): the one rule of auto-detection.
pub fn recognise(name: &str) -> Option<(IdentityKind, IdentityForm)> {
    let lower = name.trim().to_ascii_lowercase();
    let words: Vec<&str> = lower
        .split(['_', '-', '.', ' '])
        .filter(|w| !w.is_empty())
        .collect();
    let lookup = |words: &[&str]| -> Option<(IdentityKind, IdentityForm)> {
        let joined = words.join("_");
        [
            (EMAIL_HASH_NAMES, IdentityKind::Email, IdentityForm::Hashed),
            (PHONE_HASH_NAMES, IdentityKind::Phone, IdentityForm::Hashed),
            (EMAIL_NAMES, IdentityKind::Email, IdentityForm::Raw),
            (PHONE_NAMES, IdentityKind::Phone, IdentityForm::Raw),
        ]
        .into_iter()
        .find(|(names, _, _)| names.contains(&joined.as_str()))
        .map(|(_, kind, form)| (kind, form))
    };
    if let Some(found) = lookup(&words) {
        return Some(found);
    }
    // Without a trailing number (`email2`, `phone_3`) and the qualifying words.
    let mut bare: Vec<&str> = words.clone();
    if let Some(last) = bare.last_mut() {
        *last = last.trim_end_matches(|c: char| c.is_ascii_digit());
    }
    bare.retain(|w| !w.is_empty() && !QUALIFIERS.contains(w));
    if bare.is_empty() || bare == words {
        return None;
    }
    lookup(&bare)
}

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
