//! Shared record types that flow between the pipeline stages: identity kinds, hashes, the
//! per-identity outcome of each stage, the final row status written to the output, and
//! [`IdentityChunk`], the message every stage hands to the next.
//!
//! Nothing here does I/O; the types are deliberately small and `Copy` where they sit on the
//! hot path (a hash is 32 bytes inline, never a heap string).

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
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct IdentityHash(pub [u8; 32]);

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
            InvalidReason::OperatorInvalid => "invalid identifier",
        }
    }
}

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

/// The final status of an identity in the output's `status` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RowStatus {
    /// `hash` only: the identity was hashed.
    Hashed,
    /// The operator returned a raw EUID.
    Mapped,
    /// The user opted out; there is no raw EUID.
    Optout,
    /// Rejected locally, or `invalid identifier` from the operator (see `reason`).
    Invalid,
    /// The identity cell was empty.
    Missing,
    /// The operator gave a reason this version does not know (kept verbatim in `reason`).
    Unmapped,
    /// The batch failed after every retry. The run exits 2.
    Failed,
    /// `refresh` only: the identity was due, its remap failed, and the row keeps its last
    /// known raw EUID (`reason` says why). The run exits 2; the next refresh retries it.
    Stale,
    /// `optout` only: the raw EUID is not opted out.
    Active,
}

impl RowStatus {
    /// Every status, in the order the manifest lists them.
    pub const ALL: [RowStatus; 9] = [
        RowStatus::Hashed,
        RowStatus::Mapped,
        RowStatus::Optout,
        RowStatus::Invalid,
        RowStatus::Missing,
        RowStatus::Unmapped,
        RowStatus::Failed,
        RowStatus::Stale,
        RowStatus::Active,
    ];

    /// The text of the output's `status` column.
    pub fn as_str(self) -> &'static str {
        match self {
            RowStatus::Hashed => "hashed",
            RowStatus::Mapped => "mapped",
            RowStatus::Optout => "optout",
            RowStatus::Invalid => "invalid",
            RowStatus::Missing => "missing",
            RowStatus::Unmapped => "unmapped",
            RowStatus::Failed => "failed",
            RowStatus::Stale => "stale",
            RowStatus::Active => "active",
        }
    }

    /// Parses the text of a `status` column.
    pub fn parse(s: &str) -> Option<RowStatus> {
        RowStatus::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

/// Per-status counters, as carried in part metadata and the manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatusCounts(pub [u64; RowStatus::ALL.len()]);

impl StatusCounts {
    /// Adds one identity with `status`.
    pub fn add(&mut self, status: RowStatus) {
        self.0[status as usize] += 1;
    }

    /// Adds all counts of `other`.
    pub fn merge(&mut self, other: &StatusCounts) {
        for (a, b) in self.0.iter_mut().zip(other.0.iter()) {
            *a += b;
        }
    }

    /// The count for `status`.
    pub fn get(&self, status: RowStatus) -> u64 {
        self.0[status as usize]
    }

    /// Sum over all statuses.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }
}

/// Status counts that grow while a run writes, read by its metrics: the writer updates them,
/// the Prometheus page shows them (so neither imports the other).
#[derive(Debug, Default)]
pub struct LiveCounts(std::sync::Mutex<StatusCounts>);

impl LiveCounts {
    /// Replaces the counts.
    pub fn set(&self, counts: &StatusCounts) {
        *self.0.lock().expect("live counts lock") = counts.clone();
    }

    /// The counts now.
    pub fn get(&self) -> StatusCounts {
        self.0.lock().expect("live counts lock").clone()
    }
}

/// Bytes of a raw EUID kept inline: raw EUIDs are 44 characters (base64 of 32 or 33 bytes).
const RAW_INLINE: usize = 46;

/// A raw EUID exactly as the operator returned it. Stored inline, so that an answer costs no
/// allocation on the mapping hot path; a longer value (none is documented) goes to the heap.
#[derive(Clone, PartialEq, Eq)]
pub enum RawId {
    /// Up to 46 bytes of UTF-8, inline.
    Inline {
        /// Bytes used.
        len: u8,
        /// The text, padded with zeros.
        bytes: [u8; RAW_INLINE],
    },
    /// A longer value.
    Heap(std::sync::Arc<str>),
}

impl RawId {
    /// Copies `s`.
    pub fn new(s: &str) -> RawId {
        if s.len() <= RAW_INLINE {
            let mut bytes = [0u8; RAW_INLINE];
            bytes[..s.len()].copy_from_slice(s.as_bytes());
            RawId::Inline {
                len: s.len() as u8,
                bytes,
            }
        } else {
            RawId::Heap(std::sync::Arc::from(s))
        }
    }

    /// The text's bytes, without the UTF-8 check of [`RawId::as_str`] (for writers that
    /// check a whole column at once).
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            RawId::Inline { len, bytes } => &bytes[..usize::from(*len)],
            RawId::Heap(s) => s.as_bytes(),
        }
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        match self {
            RawId::Inline { len, bytes } => std::str::from_utf8(&bytes[..usize::from(*len)])
                .expect("copied from a str on a character boundary"),
            RawId::Heap(s) => s,
        }
    }
}

impl From<&str> for RawId {
    fn from(s: &str) -> RawId {
        RawId::new(s)
    }
}

impl std::ops::Deref for RawId {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Debug for RawId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl serde::Serialize for RawId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for RawId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<RawId, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Ok(RawId::new(&s))
    }
}

/// What the operator said about one identity hash (the `map` stage's result).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum MapOutcome {
    /// A raw EUID, exactly as the operator returned it.
    Mapped {
        /// Current raw EUID (`u`).
        raw_euid: RawId,
        /// Previous raw EUID (`p`), for 90 days after a rotation (about a quarter of
        /// answers). Shared: every row with this answer clones it, without an allocation.
        previous: Option<std::sync::Arc<RawId>>,
        /// Refresh time (`r`), Unix seconds (v3 only).
        refresh_from: Option<i64>,
        /// Salt bucket id (legacy v2 only).
        bucket_id: Option<std::sync::Arc<str>>,
        /// When the answer arrived, Unix milliseconds.
        mapped_at: i64,
    },
    /// `{"e":"optout"}`, or an opt-out found by refresh's sweep (`/v2/optout/status`).
    Optout {
        /// When the answer arrived, Unix milliseconds (the swept row's own mapping time).
        mapped_at: i64,
        /// From the sweep: when the person opted out (`opted_out_since`, Unix ms); written
        /// in `reason` as `opted out <time>`.
        since: Option<i64>,
    },
    /// `{"e":"invalid identifier"}`.
    Invalid,
    /// Any other `e` value, verbatim.
    Unmapped(std::sync::Arc<str>),
    /// The batch failed after every retry; the text says why.
    Failed(std::sync::Arc<str>),
    /// `refresh`: a due identity whose remap failed keeps its last known answer (a
    /// [`MapOutcome::Mapped`]), written with status `stale` and the failure as reason.
    Stale {
        /// The last known answer, as the state held it.
        last: Box<MapOutcome>,
        /// Why the remap failed.
        why: std::sync::Arc<str>,
    },
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
        }
    }
}

/// How `refresh` decided one identity: at most one of the plan bits
/// ([`RefreshMark::CARRIED`], [`RefreshMark::DUE`], [`RefreshMark::VALUE_CHANGED`],
/// [`RefreshMark::NEW`]) and any of the outcome bits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RefreshMark(pub u8);

impl RefreshMark {
    /// Written with the state's answer.
    pub const CARRIED: RefreshMark = RefreshMark(1);
    /// Remapped because its refresh time passed (or it had failed).
    pub const DUE: RefreshMark = RefreshMark(1 << 1);
    /// Remapped because the customer's value changed.
    pub const VALUE_CHANGED: RefreshMark = RefreshMark(1 << 2);
    /// Mapped for the first time.
    pub const NEW: RefreshMark = RefreshMark(1 << 3);
    /// Remapped, and its raw EUID differs from the previous one.
    pub const CHANGED_ID: RefreshMark = RefreshMark(1 << 4);
    /// Remapped, had a raw EUID, and is now opted out.
    pub const NEWLY_OPTED_OUT: RefreshMark = RefreshMark(1 << 5);
    /// Due, its remap failed, and it keeps its last known raw EUID.
    pub const STALE: RefreshMark = RefreshMark(1 << 6);
    /// Carried, and the opt-out sweep found its raw EUID opted out.
    pub const SWEPT_OPTOUT: RefreshMark = RefreshMark(1 << 7);

    /// The counters, in the order of [`RefreshTally`], with the manifest's names.
    pub const NAMES: [(&'static str, RefreshMark); 8] = [
        ("carried", RefreshMark::CARRIED),
        ("due", RefreshMark::DUE),
        ("value_changed", RefreshMark::VALUE_CHANGED),
        ("new", RefreshMark::NEW),
        ("changed_ids", RefreshMark::CHANGED_ID),
        ("newly_opted_out", RefreshMark::NEWLY_OPTED_OUT),
        ("stale", RefreshMark::STALE),
        ("optout_swept", RefreshMark::SWEPT_OPTOUT),
    ];

    /// Both marks' bits.
    pub fn with(self, other: RefreshMark) -> RefreshMark {
        RefreshMark(self.0 | other.0)
    }

    /// Whether every bit of `other` is set.
    pub fn has(self, other: RefreshMark) -> bool {
        self.0 & other.0 == other.0 && other.0 != 0
    }
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

/// Identities per [`RefreshMark`] bit, as carried in part metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RefreshTally(pub [u64; RefreshMark::NAMES.len()]);

impl RefreshTally {
    /// Counts one identity's bits.
    pub fn add(&mut self, m: RefreshMark) {
        for (i, (_, bit)) in RefreshMark::NAMES.iter().enumerate() {
            if m.has(*bit) {
                self.0[i] += 1;
            }
        }
    }

    /// Adds all counts of `other`.
    pub fn merge(&mut self, other: &RefreshTally) {
        for (a, b) in self.0.iter_mut().zip(other.0.iter()) {
            *a += b;
        }
    }

    /// The count of one counter, by its manifest name.
    pub fn get(&self, name: &str) -> u64 {
        RefreshMark::NAMES
            .iter()
            .position(|(n, _)| *n == name)
            .map_or(0, |i| self.0[i])
    }

    /// Whether every counter is zero.
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|n| *n == 0)
    }
}

/// Explicit `source` (Utf8) and `row` (Int64) columns for a chunk's output rows.
#[derive(Debug, Clone)]
pub struct Origin {
    /// The `source` column.
    pub source: ArrayRef,
    /// The `row` column.
    pub row: ArrayRef,
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
