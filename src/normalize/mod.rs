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

use std::cell::RefCell;

use crate::record::{Hashed, Identity, IdentityForm, IdentityHash, IdentityKind, InvalidReason};

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

/// Validates an E.164 phone (the operator does not normalize phones) and hashes it.
///
/// # Errors
/// [`InvalidReason::InvalidPhone`] unless it is `+` and 10 to 15 ASCII digits.
pub fn hash_phone(raw: &str) -> Result<IdentityHash, InvalidReason> {
    if phone_is_normalized(raw) {
        Ok(sha256(raw.as_bytes()))
    } else {
        Err(InvalidReason::InvalidPhone)
    }
}

/// Hashes one identity cell. `None` and the empty string are `Missing`; everything else is
/// either a hash or an invalid reason. This is the entry point the pipeline calls per cell.
pub fn identity(kind: IdentityKind, form: IdentityForm, cell: Option<&str>) -> Hashed {
    let value = match cell {
        None => return Hashed::Missing,
        Some("") => return Hashed::Missing,
        Some(v) => v,
    };
    let result = match (form, kind) {
        (IdentityForm::Raw, IdentityKind::Email) => hash_email(value),
        (IdentityForm::Raw, IdentityKind::Phone) => hash_phone(value),
        (IdentityForm::Hashed, _) => decode_prehashed(value),
    };
    match result {
        Ok(h) => Hashed::Ok(h),
        Err(r) => Hashed::Invalid(r),
    }
}

#[cfg(test)]
mod tests;

/// Hashes every identity cell of a chunk in parallel (rayon). The result is row-major: the
/// identities of row `k` are at `k * n .. (k + 1) * n` for `n` identity columns.
pub fn chunk(chunk: &crate::input::Chunk, cols: &crate::input::ResolvedColumns) -> Vec<Identity> {
    use rayon::prelude::*;
    /// Rows per rayon task: enough work (~100 µs) to amortise scheduling.
    const ROWS_PER_TASK: usize = 2048;
    let n = cols.identities.len();
    let mut out = vec![
        Identity {
            kind: IdentityKind::Email,
            hashed: Hashed::Missing
        };
        chunk.len * n
    ];
    if n == 0 {
        return out;
    }
    out.par_chunks_mut(n)
        .with_min_len(ROWS_PER_TASK)
        .enumerate()
        .for_each(|(k, slots)| {
            let broken = chunk.broken_reason(k);
            for (j, (slot, c)) in slots.iter_mut().zip(&cols.identities).enumerate() {
                slot.kind = c.kind;
                slot.hashed = match broken {
                    Some(reason) => Hashed::Invalid(reason.clone()),
                    None => identity(c.kind, c.form, chunk.identities[j].get(k)),
                };
            }
        });
    out
}
