//! The operator's answer for one identity, and the raw EUID it carries.

use std::fmt;

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

impl std::hash::Hash for RawId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state);
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

impl MapOutcome {
    /// The raw EUID of a `Mapped` answer, as a shared string (a refresh's "previous raw id").
    pub fn raw_id_arc(&self) -> Option<std::sync::Arc<str>> {
        match self {
            MapOutcome::Mapped { raw_euid, .. } => Some(std::sync::Arc::from(raw_euid.as_str())),
            _ => None,
        }
    }
}
