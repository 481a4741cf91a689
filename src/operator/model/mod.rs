//! The emulator's identity model: synthetic salts in 2^20 buckets, a simulated clock, salt
//! rotation and opt-out, following `operator-emulator.md` §7, §8 and §10.
//!
//! Salts are derived from `--seed` (so two emulators with the same seed map identically) and
//! are never the real ones: the raw ids this produces are not real EUIDs.

mod optouts;

use optouts::{OptoutSet, ALWAYS_OPTOUT, NEVER_OPTOUT};
use std::collections::HashSet;
use std::sync::Mutex;

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine;
use sha2::{Digest, Sha256};

use crate::record::{IdentityHash, IdentityKind};

/// Milliseconds per day.
pub const DAY_MS: i64 = 86_400_000;
/// The production bucket count (the operator's "one million" indexer).
pub const PROD_BUCKETS: usize = 1 << 20;
/// Previous salts are served this many days after a rotation.
const PREVIOUS_KEPT_DAYS: i64 = 90;
/// A bucket has a refresh point every this many days after its last rotation.
const REFRESH_EVERY_DAYS: i64 = 30;
/// Buckets younger than this are never rotated.
const MIN_ROTATION_AGE_DAYS: i64 = 30;
/// Fraction of buckets rotated per day (the admin UI's default, 1/365).
const ROTATION_PER_DAY: f64 = 1.0 / 365.0;

/// Raw id layout (`operator-emulator.md` §7.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawIdFormat {
    /// 32-byte SHA-256, 44 base64 chars with one `=` (the operator's default).
    V2,
    /// 33 bytes: an EUID scope/type prefix byte, then the same hash; 44 chars, no padding.
    V3Prefixed,
}

/// Model settings.
#[derive(Debug, Clone)]
pub struct ModelConfig {
    /// Seed for salts and the initial bucket ages.
    pub seed: u64,
    /// Number of salt buckets.
    pub buckets: usize,
    /// Raw id layout.
    pub raw_id: RawIdFormat,
    /// Simulated time at start, Unix ms.
    pub start_ms: i64,
    /// Identity hashes (base64) that are opted out, of either kind.
    pub optout: HashSet<String>,
    /// A file of opted-out identity hashes, re-read whenever it changes.
    pub optout_file: Option<std::path::PathBuf>,
}

/// A mapping answer for one identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mapping {
    /// Raw id, previous raw id, refresh time (Unix ms), bucket index.
    Mapped {
        /// Current raw id.
        u: String,
        /// Previous raw id, within 90 days of a rotation.
        p: Option<String>,
        /// Refresh time, Unix ms.
        refresh_ms: i64,
        /// Bucket index.
        bucket: usize,
    },
    /// Opted out.
    Optout,
}

struct Buckets {
    last_updated: Vec<i64>,
    refresh_from: Vec<i64>,
    generation: Vec<u32>,
    has_previous: Vec<bool>,
    /// The last UTC day (ms at midnight) whose rotation has been applied.
    rotated_through: i64,
}

/// Salts, buckets and the simulated clock.
pub struct Model {
    cfg: ModelConfig,
    first_level: String,
    hashids: harsh::Harsh,
    state: Mutex<Buckets>,
    always_optout: Vec<(IdentityKind, IdentityHash)>,
    never_optout: Vec<(IdentityKind, IdentityHash)>,
    optout: std::sync::RwLock<OptoutSet>,
    optout_mtime: Mutex<Option<std::time::SystemTime>>,
    /// Opt-outs made while the emulator runs (`POST /ops/optout`), with when (Unix ms).
    opted_out_later: std::sync::RwLock<std::collections::HashMap<IdentityHash, i64>>,
    /// Simulated ms added by `/ops/advance`.
    offset_ms: Mutex<i64>,
    wall_start: std::time::Instant,
}

fn day_of(ms: i64) -> i64 {
    ms.div_euclid(DAY_MS) * DAY_MS
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn refresh_point(last_updated: i64, day: i64) -> i64 {
    let base = day_of(last_updated);
    let age_days = (day - base) / DAY_MS;
    base + REFRESH_EVERY_DAYS * DAY_MS * (age_days.div_euclid(REFRESH_EVERY_DAYS) + 1)
}

impl Model {
    /// Builds the model: bucket ages spread over the past year, so that about 1/365 of the
    /// buckets are due for rotation on any day.
    pub fn new(cfg: ModelConfig) -> Model {
        let n = cfg.buckets.max(1);
        let today = day_of(cfg.start_ms);
        let mut b = Buckets {
            last_updated: Vec::with_capacity(n),
            refresh_from: Vec::with_capacity(n),
            generation: vec![1; n],
            has_previous: Vec::with_capacity(n),
            rotated_through: today,
        };
        for i in 0..n {
            let age_days =
                (splitmix(cfg.seed ^ (i as u64).wrapping_mul(0x1000_0000_01B3)) % 365) as i64;
            let lu = today - age_days * DAY_MS + 1;
            b.last_updated.push(lu);
            b.refresh_from.push(refresh_point(lu, today));
            b.has_previous.push(age_days < PREVIOUS_KEPT_DAYS);
        }
        let first_level = STANDARD.encode(Sha256::digest(format!(
            "euid-map emulator first level {}",
            cfg.seed
        )));
        let id_secret = STANDARD.encode(Sha256::digest(format!(
            "euid-map emulator bucket ids {}",
            cfg.seed
        )));
        let hashids = harsh::Harsh::builder()
            .salt(id_secret)
            .length(9)
            .build()
            .expect("the default alphabet with a salt is a valid hashids setup");
        let decode = |list: &[(IdentityKind, &str)]| -> Vec<(IdentityKind, IdentityHash)> {
            list.iter()
                .filter_map(|(k, h)| crate::normalize::decode_prehashed(h).ok().map(|h| (*k, h)))
                .collect()
        };
        let optout = cfg
            .optout
            .iter()
            .filter_map(|h| crate::normalize::decode_prehashed(h.trim()).ok())
            .collect();
        Model {
            always_optout: decode(&ALWAYS_OPTOUT),
            never_optout: decode(&NEVER_OPTOUT),
            optout: std::sync::RwLock::new(optout),
            optout_mtime: Mutex::new(None),
            opted_out_later: std::sync::RwLock::new(std::collections::HashMap::new()),
            cfg,
            first_level,
            hashids,
            state: Mutex::new(b),
            offset_ms: Mutex::new(0),
            wall_start: std::time::Instant::now(),
        }
    }

    /// Simulated now, Unix ms.
    pub fn now_ms(&self) -> i64 {
        let offset = *self.offset_ms.lock().expect("offset lock");
        self.cfg.start_ms + offset + self.wall_start.elapsed().as_millis() as i64
    }

    /// Moves the simulated clock forward by `days` and applies the rotations of every day
    /// crossed. Returns the number of buckets rotated.
    pub fn advance(&self, days: i64) -> usize {
        let mut offset = self.offset_ms.lock().expect("offset lock");
        *offset = offset.saturating_add(days.saturating_mul(DAY_MS));
        drop(offset);
        self.catch_up()
    }

    /// Applies rotations for the days the clock has passed (also as wall time goes by).
    fn catch_up(&self) -> usize {
        let today = day_of(self.now_ms());
        let mut st = self.state.lock().expect("bucket lock");
        let mut rotated = 0;
        while st.rotated_through < today {
            let day = st.rotated_through + DAY_MS;
            rotated += rotate(&mut st, day);
            st.rotated_through = day;
        }
        rotated
    }

    /// The salt string of a bucket generation: 32 pseudo-random bytes from the seed, in
    /// base64 (44 chars), like the operator's salts. Cheap (no SHA) since it is derived for
    /// every identity mapped.
    fn salt(&self, bucket: usize, generation: u32) -> [u8; 44] {
        let mut x =
            self.cfg.seed ^ ((bucket as u64) << 24) ^ (u64::from(generation) << 56) ^ 0x5EED_5A17;
        let mut raw = [0u8; 32];
        for chunk in raw.chunks_exact_mut(8) {
            x = splitmix(x);
            chunk.copy_from_slice(&x.to_le_bytes());
        }
        let mut out = [0u8; 44];
        STANDARD
            .encode_slice(raw, &mut out)
            .expect("32 bytes encode to 44");
        out
    }

    fn raw_id(&self, kind: IdentityKind, flh_b64: &[u8; 44], salt: &[u8; 44]) -> String {
        let mut h = Sha256::new();
        h.update(flh_b64);
        h.update(salt);
        let digest = h.finalize();
        match self.cfg.raw_id {
            RawIdFormat::V2 => STANDARD.encode(digest),
            RawIdFormat::V3Prefixed => {
                let ty = match kind {
                    IdentityKind::Email => 0u8,
                    IdentityKind::Phone => 1u8,
                };
                let mut v = Vec::with_capacity(33);
                v.push((1 << 4) | (ty << 2)); // scope EUID = 1
                v.extend_from_slice(&digest);
                STANDARD_NO_PAD.encode(v)
            }
        }
    }

    /// The first-level hash and bucket index of an identity.
    pub fn locate(&self, hash: &IdentityHash) -> ([u8; 44], usize) {
        let mut b64 = [0u8; 44];
        hash.encode_into(&mut b64);
        let mut h = Sha256::new();
        h.update(b64);
        h.update(self.first_level.as_bytes());
        let flh = h.finalize();
        let idx = ((flh[0] as usize) << 12) | ((flh[1] as usize) << 4) | (flh[2] as usize & 0x0F);
        let n = self.cfg.buckets.max(1);
        let idx = if n == PROD_BUCKETS { idx } else { idx % n };
        let mut out = [0u8; 44];
        STANDARD
            .encode_slice(flh, &mut out)
            .expect("32 bytes encode to 44");
        (out, idx)
    }

    /// Maps many identities under one snapshot of the buckets.
    pub fn map_many(&self, items: &[(IdentityKind, IdentityHash)]) -> Vec<Mapping> {
        self.catch_up();
        self.reload_optout();
        let now = self.now_ms();
        let optout = self.optout.read().expect("optout lock");
        let located: Vec<([u8; 44], usize)> = items.iter().map(|(_, h)| self.locate(h)).collect();
        let snapshot: Vec<(u32, bool, i64, i64)> = {
            let st = self.state.lock().expect("bucket lock");
            located
                .iter()
                .map(|(_, i)| {
                    (
                        st.generation[*i],
                        st.has_previous[*i],
                        st.last_updated[*i],
                        st.refresh_from[*i],
                    )
                })
                .collect()
        };
        items
            .iter()
            .zip(located)
            .zip(snapshot)
            .map(
                |(((kind, hash), (flh, idx)), (gen, has_prev, last_updated, refresh_from))| {
                    if self.opted_out_in(&optout, *kind, hash) {
                        return Mapping::Optout;
                    }
                    let u = self.raw_id(*kind, &flh, &self.salt(idx, gen));
                    let p =
                        (has_prev && gen > 0 && (now - last_updated) / DAY_MS < PREVIOUS_KEPT_DAYS)
                            .then(|| self.raw_id(*kind, &flh, &self.salt(idx, gen - 1)));
                    let refresh_ms = if refresh_from >= now {
                        refresh_from
                    } else {
                        day_of(now) + DAY_MS
                    };
                    Mapping::Mapped {
                        u,
                        p,
                        refresh_ms,
                        bucket: idx,
                    }
                },
            )
            .collect()
    }

    /// The operator-style id of a bucket (`operator-emulator.md` §7.6).
    pub fn bucket_id(&self, bucket: usize) -> String {
        format!("e{}", self.hashids.encode(&[1_000_000 + bucket as u64]))
    }

    /// Buckets rotated at or after `since_ms`, with their last-updated time.
    pub fn modified_since(&self, since_ms: i64) -> Vec<(usize, i64)> {
        self.catch_up();
        let st = self.state.lock().expect("bucket lock");
        st.last_updated
            .iter()
            .enumerate()
            .filter(|(_, lu)| **lu >= since_ms)
            .map(|(i, lu)| (i, *lu))
            .collect()
    }

    /// Number of buckets.
    pub fn bucket_count(&self) -> usize {
        self.cfg.buckets.max(1)
    }
}

/// One day of rotation (`operator-emulator.md` §8.3): rotate up to ceil(N/365) buckets whose
/// refresh point is `day`, oldest first; then recompute every refresh point and drop previous
/// salts older than 90 days.
fn rotate(st: &mut Buckets, day: i64) -> usize {
    let n = st.generation.len();
    let quota = (n as f64 * ROTATION_PER_DAY).ceil() as usize;
    let mut eligible: Vec<usize> = (0..n)
        .filter(|&i| {
            day_of(st.refresh_from[i]) == day
                && (day - day_of(st.last_updated[i])) / DAY_MS >= MIN_ROTATION_AGE_DAYS
        })
        .collect();
    eligible.sort_by_key(|&i| (st.last_updated[i], i));
    eligible.truncate(quota);
    for &i in &eligible {
        st.generation[i] += 1;
        st.has_previous[i] = true;
        st.last_updated[i] = day + 1; // the salt writer stamps midnight + 1 ms
    }
    for i in 0..n {
        st.refresh_from[i] = refresh_point(st.last_updated[i], day);
        if (day - day_of(st.last_updated[i])) / DAY_MS >= PREVIOUS_KEPT_DAYS {
            st.has_previous[i] = false;
        }
    }
    eligible.len()
}

impl Model {
    /// Current and previous raw ids of an identity, whether or not it is opted out (for
    /// `/v2/optout/status`).
    pub fn raw_ids_ignoring_optout(&self, kind: IdentityKind, hash: &IdentityHash) -> Vec<String> {
        let (flh, idx) = self.locate(hash);
        let (gen, has_prev) = {
            let st = self.state.lock().expect("bucket lock");
            (st.generation[idx], st.has_previous[idx])
        };
        let mut out = vec![self.raw_id(kind, &flh, &self.salt(idx, gen))];
        if has_prev && gen > 0 {
            out.push(self.raw_id(kind, &flh, &self.salt(idx, gen - 1)));
        }
        out
    }
}

#[cfg(test)]
mod tests;
