//! Phone records: why a raw phone was refused, the region it is read in, how it was
//! written, and the per-part tally of those.

use std::fmt;

use super::{Hashed, Identity, InvalidReason};

/// Why a raw phone was refused: the text of the output's `reason` column starts `phone:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PhoneReason {
    /// Nothing in the value reads as a phone number.
    NotANumber,
    /// Written in national format, and the row has no region to read it in.
    NeedsRegion,
    /// The row's region is not an ISO 3166-1 alpha-2 code the phone metadata knows; holds the
    /// whole reason text (`phone: unknown region "XX"`).
    UnknownRegion(std::sync::Arc<str>),
    /// Written with a `+` (or an international call prefix) and no known country code.
    UnknownCountryCode,
    /// Not a valid number by libphonenumber's metadata for this country calling code (0 when
    /// no country code could be read).
    NotValidFor(u16),
    /// Valid, but its E.164 form has fewer than the 10 digits the operator accepts.
    TooShortForOperator,
    /// Valid, but its E.164 form has more than the 15 digits the operator accepts.
    TooLongForOperator,
    /// Letters read as digits (`1-800-FLOWERS`, but also `01 23 45 home`): libphonenumber
    /// spells them out, which turns a word beside a number into someone else's number.
    Letters,
    /// Not `+` and 10 to 15 ASCII digits, and this build reads no other format (built without
    /// the `phones` feature), or the strict operator rule was asked for.
    NotE164,
}

impl PhoneReason {
    /// The text of the output's `reason` column.
    pub fn as_str(&self) -> &str {
        match self {
            PhoneReason::NotANumber => "phone: not a number",
            PhoneReason::NeedsRegion => {
                "phone: national format needs --phone-region or --phone-region-col"
            }
            PhoneReason::UnknownRegion(text) => text,
            PhoneReason::UnknownCountryCode => "phone: unknown country code",
            PhoneReason::NotValidFor(0) => "phone: not a valid number",
            PhoneReason::NotValidFor(cc) => not_valid_for(*cc),
            PhoneReason::TooShortForOperator => "phone: too short for the operator",
            PhoneReason::TooLongForOperator => "phone: too long for the operator",
            PhoneReason::Letters => "phone: letters among the digits",
            PhoneReason::NotE164 => "phone: not E.164",
        }
    }

    /// The reason for an unknown region cell `given`. Only a cell that looks like a code
    /// (up to three ASCII letters or digits: `UK`, `XX`, `FRA`, `001`) is quoted: a longer one
    /// may be anything, a phone number from a shifted column included, and every distinct
    /// text would be a key of the manifest's counts.
    pub fn unknown_region(given: &str) -> PhoneReason {
        if given.len() <= 3 && given.bytes().all(|b| b.is_ascii_alphanumeric()) {
            PhoneReason::UnknownRegion(format!("phone: unknown region {given:?}").into())
        } else {
            PhoneReason::UnknownRegion(
                "phone: unknown region (not an ISO 3166-1 alpha-2 code)".into(),
            )
        }
    }
}

impl PhoneReason {
    /// The reason for a national-format phone whose region cell, in column `column`, could
    /// not be read (not UTF-8): a Latin-1 `Côte d'Ivoire` in a UTF-8 export.
    pub fn unreadable_region(column: &str) -> PhoneReason {
        let column: String = column.chars().take(64).collect();
        PhoneReason::UnknownRegion(
            format!("phone: the region cell of column {column:?} is not UTF-8").into(),
        )
    }
}

/// A region to read national-format phones in: an ISO 3166-1 alpha-2 code, upper case
/// (`--phone-region`, `--phone-region-col`). Made by [`crate::normalize::phone_region`],
/// which checks it against the phone metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PhoneRegion(pub(crate) [u8; 2]);

impl PhoneRegion {
    /// The code, e.g. `FR`.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("two ASCII letters")
    }
}

impl fmt::Display for PhoneRegion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a raw phone's hashed form came about, counted in the manifest's `phones`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PhoneForm {
    /// Not a raw phone (an email, a pre-hashed column, a refused or missing phone, a row
    /// carried from a previous run).
    #[default]
    NotRawPhone,
    /// Already E.164 (`+` and 10 to 15 ASCII digits): hashed as given.
    AsGiven,
    /// Rewritten to E.164 by libphonenumber's rules (national format, punctuation, `00`).
    Reformatted,
}

/// Raw phones by how they were read, as carried in part metadata and the manifest's
/// `phones`: taken as given (already E.164), reformatted, or refused (by reason).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PhoneTally {
    /// Already E.164: hashed as given.
    pub as_given: u64,
    /// Made E.164 by libphonenumber's rules.
    pub reformatted: u64,
    /// Refused, per reason text.
    pub refused: std::collections::BTreeMap<String, u64>,
}

impl PhoneTally {
    /// Counts one identity (anything but a raw phone counts nowhere).
    pub fn add(&mut self, id: &Identity) {
        match (&id.hashed, id.phone_form) {
            (Hashed::Ok(_), PhoneForm::AsGiven) => self.as_given += 1,
            (Hashed::Ok(_), PhoneForm::Reformatted) => self.reformatted += 1,
            (Hashed::Invalid(InvalidReason::Phone(r)), _) => match self.refused.get_mut(r.as_str())
            {
                Some(n) => *n += 1,
                None => {
                    self.refused.insert(r.as_str().to_string(), 1);
                }
            },
            _ => {}
        }
    }

    /// Adds all counts of `other`.
    pub fn merge(&mut self, other: &PhoneTally) {
        self.as_given += other.as_given;
        self.reformatted += other.reformatted;
        for (k, n) in &other.refused {
            *self.refused.entry(k.clone()).or_default() += n;
        }
    }

    /// Whether no raw phone was counted.
    pub fn is_empty(&self) -> bool {
        self.as_given == 0 && self.reformatted == 0 && self.refused.is_empty()
    }
}

/// `phone: not a valid number for +CC`, one string per country calling code (1 to 999), made
/// once.
fn not_valid_for(cc: u16) -> &'static str {
    static TEXTS: std::sync::LazyLock<Vec<String>> = std::sync::LazyLock::new(|| {
        (0..1000)
            .map(|cc| format!("phone: not a valid number for +{cc}"))
            .collect()
    });
    TEXTS
        .get(usize::from(cc))
        .map_or("phone: not a valid number", String::as_str)
}
