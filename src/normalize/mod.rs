//! Normalization and hashing: the one place that decides what hash an email or phone gets.
//!
//! The rules are the operator's reference algorithm (`euid-protocol.md` §8), quirks included:
//! only ASCII `A`–`Z` is lowercased, only U+0020 is trimmed, spaces inside the local part are
//! kept, the gmail rule applies to the exact domain `gmail.com` only, and phone digits must be
//! ASCII. Never "improve" these: the operator's hash is the truth, and any divergence silently
//! lowers match rates.
//!
//! This module owns no I/O and no parallelism; callers run it under rayon.
//!
//! ```
//! use euid_map::normalize;
//! assert_eq!(normalize::email("Jane.Saoirse+Work@GMAIL.com ").as_deref(), Some("janesaoirse@gmail.com"));
//! let h = normalize::hash_email("USER@example.com").unwrap();
//! assert_eq!(h.to_base64(), "tMmiiTI7IaAcPpQPFQ65uMVCWH8av9jw4cwf/F5HVRQ=");
//! ```

mod email;
mod hash;
mod phone;

pub use email::{email, email_into};
pub use hash::{decode_prehashed, sha256};
pub use phone::is_normalized as phone_is_normalized;
pub use phone::{region as phone_region, to_e164, RowRegion, METADATA_VERSION};

use std::cell::RefCell;

use crate::record::{
    Hashed, Identity, IdentityForm, IdentityHash, IdentityKind, InvalidReason, PhoneForm,
    PhoneReason, PhoneRegion,
};

thread_local! {
    /// Scratch buffer for normalized emails, so the hot path does not allocate per row.
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(256));
}

/// Normalizes and hashes an email with the operator's algorithm.
///
/// # Errors
/// [`InvalidReason::InvalidEmail`] when the operator would answer `invalid identifier`.
pub fn hash_email(raw: &str) -> Result<IdentityHash, InvalidReason> {
    SCRATCH.with(|buf| {
        let mut buf = buf.borrow_mut();
        if email_into(raw, &mut buf) {
            Ok(sha256(&buf))
        } else {
            Err(InvalidReason::InvalidEmail)
        }
    })
}

/// Validates an E.164 phone with the operator's own rule (it normalizes no phone) and hashes
/// it: what the emulator accepts as a raw `phone`.
///
/// # Errors
/// [`PhoneReason::NotE164`] unless it is `+` and 10 to 15 ASCII digits.
pub fn hash_phone(raw: &str) -> Result<IdentityHash, InvalidReason> {
    if phone_is_normalized(raw) {
        Ok(sha256(raw.as_bytes()))
    } else {
        Err(InvalidReason::Phone(PhoneReason::NotE164))
    }
}

/// Makes a raw phone E.164 ([`to_e164`]: as given when it already is, else by
/// libphonenumber's rules read in `region`) and hashes it.
///
/// # Errors
/// [`InvalidReason::Phone`] with the reason it was refused.
pub fn hash_phone_in(
    raw: &str,
    region: RowRegion<'_>,
) -> Result<(IdentityHash, PhoneForm), InvalidReason> {
    match to_e164(raw, region) {
        Ok((e164, form)) => Ok((sha256(e164.as_bytes()), form)),
        Err(r) => Err(InvalidReason::Phone(r)),
    }
}

/// Hashes one identity cell, phones read without a region. `None` and the empty string are
/// `Missing`; everything else is either a hash or an invalid reason.
pub fn identity(kind: IdentityKind, form: IdentityForm, cell: Option<&str>) -> Hashed {
    identity_in(kind, form, cell, RowRegion::None).hashed
}

/// Hashes one identity cell; a raw phone in national format is read in `region`. This is the
/// entry point the pipeline calls per cell.
pub fn identity_in(
    kind: IdentityKind,
    form: IdentityForm,
    cell: Option<&str>,
    region: RowRegion<'_>,
) -> Identity {
    let done = |hashed, phone_form| Identity {
        kind,
        hashed,
        phone_form,
    };
    let value = match cell {
        None | Some("") => return done(Hashed::Missing, PhoneForm::NotRawPhone),
        Some(v) => v,
    };
    let result = match (form, kind) {
        (IdentityForm::Raw, IdentityKind::Email) => {
            hash_email(value).map(|h| (h, PhoneForm::NotRawPhone))
        }
        (IdentityForm::Raw, IdentityKind::Phone) => hash_phone_in(value, region),
        (IdentityForm::Hashed, _) => decode_prehashed(value).map(|h| (h, PhoneForm::NotRawPhone)),
    };
    match result {
        Ok((h, f)) => done(Hashed::Ok(h), f),
        Err(r) => done(Hashed::Invalid(r), PhoneForm::NotRawPhone),
    }
}

#[cfg(test)]
mod tests;

/// Hashes every identity cell of a chunk in parallel (rayon). The result is row-major: the
/// identities of row `k` are at `k * n .. (k + 1) * n` for `n` identity columns. A cell that
/// could not be read makes only the identity that reads it invalid: its own identity, or
/// the phones read in its region (a phone written with its country code needs no region).
pub fn chunk(chunk: &crate::input::Chunk, cols: &crate::input::ResolvedColumns) -> Vec<Identity> {
    use crate::input::BadCell;
    use rayon::prelude::*;
    /// Rows per rayon task: enough work (~100 µs) to amortise scheduling.
    const ROWS_PER_TASK: usize = 2048;
    let n = cols.identities.len();
    let mut out = vec![
        Identity {
            kind: IdentityKind::Email,
            hashed: Hashed::Missing,
            phone_form: PhoneForm::NotRawPhone,
        };
        chunk.len * n
    ];
    let default_region: Option<PhoneRegion> = cols.phone_region;
    if n == 0 {
        return out;
    }
    let invalid = |kind, reason| Identity {
        kind,
        hashed: Hashed::Invalid(reason),
        phone_form: PhoneForm::NotRawPhone,
    };
    out.par_chunks_mut(n)
        .with_min_len(ROWS_PER_TASK)
        .enumerate()
        .for_each(|(k, slots)| {
            let broken = chunk.broken_reason(k);
            let bad = chunk.bad_cells_of(k);
            for (j, (slot, c)) in slots.iter_mut().zip(&cols.identities).enumerate() {
                if let Some(reason) = broken {
                    *slot = invalid(c.kind, reason.clone());
                    continue;
                }
                if bad.iter().any(|(_, b)| *b == BadCell::Identity(j)) {
                    *slot = invalid(c.kind, InvalidReason::InvalidUtf8);
                    continue;
                }
                let region = match c.region {
                    Some(r) if bad.iter().any(|(_, b)| *b == BadCell::Region(r)) => {
                        RowRegion::Unreadable(&cols.phone_region_cols[r].name)
                    }
                    Some(r) => RowRegion::of(chunk.phone_regions[r].get(k), default_region),
                    None => RowRegion::of(None, default_region),
                };
                *slot = identity_in(c.kind, c.form, chunk.identities[j].get(k), region);
            }
        });
    out
}
