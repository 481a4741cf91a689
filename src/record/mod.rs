//! Shared record types that flow between the pipeline stages: identity kinds, hashes, the
//! per-identity outcome of each stage, the final row status written to the output, and
//! [`IdentityChunk`], the message every stage hands to the next.
//!
//! Nothing here does I/O; the types are deliberately small and `Copy` where they sit on the
//! hot path (a hash is 32 bytes inline, never a heap string).

mod outcome;
mod phone;
mod refresh;
mod status;

pub use outcome::{MapOutcome, RawId};
pub use phone::{PhoneForm, PhoneReason, PhoneRegion, PhoneTally};
pub use refresh::{RefreshMark, RefreshTally};
pub use status::{LiveCounts, RowReason, RowStatus, StatusCounts, NO_ANSWER};

use std::fmt;

use arrow_array::ArrayRef;
use base64::Engine;

/// Which kind of personal identifier a column holds. The kind decides the normalization rule
/// and the request key (`email_hash` / `phone_hash`) it is sent under.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum IdentityKind {
    /// An email address.
    Email,
    /// A phone number in E.164 form.
    Phone,
}

impl IdentityKind {
    /// The value of the output's `identity_type` column.
    pub fn as_str(self) -> &'static str {
        match self {
            IdentityKind::Email => "email",
            IdentityKind::Phone => "phone",
        }
    }
}

/// How a column's values are given: as raw text to normalize, or already hashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityForm {
    /// Raw email or phone; normalized and hashed locally.
    Raw,
    /// SHA-256 of the normalized value, in base64 (44 chars) or hex (64 chars).
    Hashed,
}

/// SHA-256 of a normalized identity: the value sent as `email_hash` / `phone_hash`.
/// Serialized as 32 bytes (one copy in the scratch files, not 32 one-byte fields).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IdentityHash(pub [u8; 32]);

impl serde::Serialize for IdentityHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for IdentityHash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Digest;
        impl<'de> serde::de::Visitor<'de> for Digest {
            type Value = IdentityHash;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("32 bytes of a SHA-256 digest")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<IdentityHash, E> {
                <[u8; 32]>::try_from(v)
                    .map(IdentityHash)
                    .map_err(|_| E::invalid_length(v.len(), &self))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<IdentityHash, A::Error> {
                let mut out = [0u8; 32];
                for (i, b) in out.iter_mut().enumerate() {
                    *b = seq
                        .next_element()?
                        .ok_or_else(|| serde::de::Error::invalid_length(i, &self))?;
                }
                Ok(IdentityHash(out))
            }
        }
        d.deserialize_bytes(Digest)
    }
}

/// Length of a SHA-256 digest in standard padded base64.
pub const HASH_B64_LEN: usize = 44;

impl IdentityHash {
    /// Standard padded base64 of the digest (44 ASCII bytes), written into `out`.
    pub fn encode_into(&self, out: &mut [u8; HASH_B64_LEN]) {
        let n = base64::engine::general_purpose::STANDARD
            .encode_slice(self.0, out)
            .expect("32 bytes always encode to exactly 44 base64 characters");
        debug_assert_eq!(n, HASH_B64_LEN);
    }

    /// Standard padded base64 of the digest, as a `String`.
    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.0)
    }
}

impl fmt::Debug for IdentityHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A hash is not the raw identifier, but it is still personal data in the GDPR sense:
        // show only a short prefix so it can be correlated in a debugger, not harvested.
        let b64 = self.to_base64();
        write!(f, "IdentityHash({}…)", &b64[..6])
    }
}

/// Why a single identity could not be hashed or mapped. Row-level data, never an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvalidReason {
    /// The email fails the operator's normalization (no `@`, two `@`, empty parts).
    InvalidEmail,
    /// The raw phone was refused (see [`PhoneReason`]).
    Phone(PhoneReason),
    /// A pre-hashed value that is neither 44-char base64 nor 64-char hex.
    BadHashLength,
    /// A 44-char value that is not standard base64 of 32 bytes.
    BadHashEncoding,
    /// An 88-char value that is base64 of a 64-char hex digest (the classic mistake).
    HexAsBase64,
    /// A CSV row with the wrong number of fields.
    MalformedRow,
    /// A CSV row that is not valid UTF-8.
    InvalidUtf8,
    /// The operator answered `invalid identifier` for a hash we considered valid.
    OperatorInvalid,
    /// A reason read back from a previous run's output (`refresh` carries it over).
    Recorded(std::sync::Arc<str>),
}

impl InvalidReason {
    /// The reason of an identity the operator answered `invalid identifier` for.
    pub const OPERATOR_INVALID: &'static str = "invalid identifier";

    /// The text of the output's `reason` column.
    pub fn as_str(&self) -> &str {
        match self {
            InvalidReason::Recorded(r) => r,
            InvalidReason::InvalidEmail => "invalid email",
            InvalidReason::Phone(p) => p.as_str(),
            InvalidReason::BadHashLength => "bad hash length",
            InvalidReason::BadHashEncoding => "bad hash encoding",
            InvalidReason::HexAsBase64 => "hex hash encoded as base64",
            InvalidReason::MalformedRow => "malformed row",
            InvalidReason::InvalidUtf8 => "invalid utf-8",
            InvalidReason::OperatorInvalid => InvalidReason::OPERATOR_INVALID,
        }
    }
}

/// The outcome of reading and hashing one identity cell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hashed {
    /// A valid identity with its hash.
    Ok(IdentityHash),
    /// The cell was empty.
    Missing,
    /// The value was rejected locally.
    Invalid(InvalidReason),
}

/// One identity of one input row, after hashing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Email or phone.
    pub kind: IdentityKind,
    /// Hash, or why there is none.
    pub hashed: Hashed,
    /// For a raw phone that was hashed: as given or reformatted.
    pub phone_form: PhoneForm,
}

/// The message every stage after hashing passes on: a chunk of input rows as their
/// identities (hashed by `normalize`), the kept columns and, once `mapper` has them, the
/// operator's answers; `output` writes it. The raw cells stay behind in the reader's chunk.
#[derive(Debug)]
pub struct IdentityChunk {
    /// Index of the input file the rows come from.
    pub file: usize,
    /// Row number of the chunk's first row within its file.
    pub first_row: u64,
    /// Input rows.
    pub len: usize,
    /// Identities per input row (the file's identity columns; 1 for a `refresh` state row).
    pub per_row: usize,
    /// Kept columns, in the output's order, one value per input row.
    pub kept: Vec<ArrayRef>,
    /// Row-major identities, `len * per_row` of them.
    pub ids: Vec<Identity>,
    /// For `map`: the answer for each identity whose hash is `Ok` (parallel to `ids`).
    pub outcomes: Option<Vec<Option<MapOutcome>>>,
    /// The `source` and `row` columns, when they are not this chunk's own (rows `refresh`
    /// carries from a previous run keep theirs). One value per output row.
    pub origin: Option<Origin>,
    /// `refresh`: how each identity was decided (parallel to `ids`), counted by the writer
    /// per part so that the manifest's refresh counts cover the whole dataset, resumed
    /// parts included.
    pub marks: Option<Vec<RefreshMark>>,
    /// The input column of each identity slot of a row (`per_row` names): the output's
    /// `identity_column`, unless the chunk carries its own origin.
    pub slot_names: std::sync::Arc<[std::sync::Arc<str>]>,
    /// Kept cells of these rows that were not UTF-8 (row, kept column), written as null and
    /// counted in the manifest; `refresh` refuses one in its key column.
    pub bad_kept: Vec<(usize, usize)>,
}

impl IdentityChunk {
    /// A chunk of `len` rows of `per_row` identities each, not mapped yet.
    pub fn new(
        file: usize,
        first_row: u64,
        len: usize,
        per_row: usize,
        kept: Vec<ArrayRef>,
        ids: Vec<Identity>,
    ) -> IdentityChunk {
        debug_assert_eq!(ids.len(), len * per_row, "identities per row");
        IdentityChunk {
            file,
            first_row,
            len,
            per_row,
            kept,
            ids,
            outcomes: None,
            origin: None,
            marks: None,
            slot_names: std::sync::Arc::from([]),
            bad_kept: Vec::new(),
        }
    }

    /// The identity column of identity `i` of the chunk, when the chunk has no origin.
    pub fn slot_name(&self, i: usize) -> Option<&str> {
        self.slot_names.get(i % self.per_row.max(1)).map(|n| &**n)
    }
}

/// Explicit `source` (Utf8) and `row` (Int64) columns for a chunk's output rows, with their
/// `identity_column` (Utf8) and `carried_since` (timestamp ms, UTC): rows `refresh` writes
/// from its state. Rows carried for a customer gone from tonight's export have a null
/// `source` and `row`, so that no join on them meets tonight's rows.
#[derive(Debug, Clone)]
pub struct Origin {
    /// The `source` column.
    pub source: ArrayRef,
    /// The `row` column.
    pub row: ArrayRef,
    /// The `identity_column` column.
    pub identity_column: ArrayRef,
    /// The `carried_since` column.
    pub carried_since: ArrayRef,
}

/// A hasher for keys that are already uniformly distributed (SHA-256 digests): it folds the
/// first eight bytes instead of running SipHash over all 32, which made SipHash the mapper's
/// hottest function. Not for attacker-chosen keys of other shapes.
#[derive(Debug, Default, Clone, Copy)]
pub struct DigestHasher(u64);

impl std::hash::Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        if let Some(head) = bytes.first_chunk::<8>() {
            self.0 ^= u64::from_le_bytes(*head);
        } else {
            for &b in bytes {
                self.0 = self.0.rotate_left(8) ^ u64::from(b);
            }
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.0 = self.0.rotate_left(7) ^ u64::from(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.0 = self.0.rotate_left(7) ^ n as u64;
    }

    fn write_isize(&mut self, n: isize) {
        self.0 = self.0.rotate_left(7) ^ n as u64;
    }
}

/// A `HashMap` keyed by identity hashes, with [`DigestHasher`].
pub type DigestMap<K, V> =
    std::collections::HashMap<K, V, std::hash::BuildHasherDefault<DigestHasher>>;
