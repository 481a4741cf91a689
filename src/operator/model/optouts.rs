//! Who has opted out: the EUID test identities that always do (and those that never do),
//! opt-outs made while the emulator runs (`POST /ops/optout`), and a `--optout-file`
//! reloaded on demand.

use std::collections::HashSet;

use super::*;
use crate::record::{IdentityHash, IdentityKind};

/// Opted-out hashes. They are SHA-256 digests and the set only changes on reload, so the
/// cheap digest hasher serves (SipHash per item was 5 % of the emulator's CPU).
pub(super) type OptoutSet =
    HashSet<IdentityHash, std::hash::BuildHasherDefault<crate::record::DigestHasher>>;

/// Hashes of the test identities that always opt out (`optout@example.com`, `+00000000000`).
pub(super) const ALWAYS_OPTOUT: [(IdentityKind, &str); 2] = [
    (
        IdentityKind::Email,
        "DYsnJ8r5+cjRDHue98gIGDKvLIMuqAm/RRLODrjqK50=",
    ),
    (
        IdentityKind::Phone,
        "313yQvZOTb0vjjEU7sTO/UWxGPzVppIbCyQEJEnfxLo=",
    ),
];

/// Hashes of the validate and refresh-optout identities, which map never opts out.
pub(super) const NEVER_OPTOUT: [(IdentityKind, &str); 4] = [
    (
        IdentityKind::Email,
        "ntI244ZRTXwAwpki6/M5cyBYW7h/Wq576lnN3l9+W/c=",
    ),
    (
        IdentityKind::Phone,
        "EObwtHBUqDNZR33LNSMdtt5cafsYFuGmuY4ZLenlue4=",
    ),
    (
        IdentityKind::Email,
        "NaNI8RU0bL1Jpp1jJLC5aJO/lchc6gGhgXQIAwJ7cV4=",
    ),
    (
        IdentityKind::Phone,
        "0VoxsIuk88qt7TnZaTC//C9Vur3pR1zBMIr1cJe7xjE=",
    ),
];

impl Model {
    /// Whether an identity is opted out (test identities first, then the configured set).
    pub fn opted_out(&self, kind: IdentityKind, hash: &IdentityHash) -> bool {
        self.opted_out_in(&self.optout.read().expect("optout lock"), kind, hash)
    }

    /// [`Model::opted_out`] against a set already locked (once per batch, not per item).
    pub(super) fn opted_out_in(
        &self,
        set: &OptoutSet,
        kind: IdentityKind,
        hash: &IdentityHash,
    ) -> bool {
        if self.never_optout.contains(&(kind, *hash)) {
            return false;
        }
        self.always_optout.contains(&(kind, *hash))
            || set.contains(hash)
            || self
                .opted_out_later
                .read()
                .expect("optout lock")
                .contains_key(hash)
    }

    /// Opts identities out from now on (the admin route): both `/v3/identity/map` and
    /// `/v2/optout/status` agree afterwards. Returns how many were not opted out yet.
    pub fn opt_out(&self, hashes: &[IdentityHash]) -> usize {
        let now = self.now_ms();
        let mut later = self.opted_out_later.write().expect("optout lock");
        hashes
            .iter()
            .filter(|h| later.insert(**h, now).is_none())
            .count()
    }

    /// When an identity opted out through [`Model::opt_out`] (Unix ms), if it did.
    pub fn opted_out_since(&self, hash: &IdentityHash) -> Option<i64> {
        self.opted_out_later
            .read()
            .expect("optout lock")
            .get(hash)
            .copied()
    }

    /// Re-reads the opt-out file if it changed since the last read (one `stat` per call).
    pub fn reload_optout(&self) {
        let Some(path) = &self.cfg.optout_file else {
            return;
        };
        let mtime = std::fs::metadata(path).and_then(|m| m.modified()).ok();
        let mut last = self.optout_mtime.lock().expect("optout lock");
        if mtime.is_none() || *last == mtime {
            return;
        }
        if let Ok(text) = std::fs::read_to_string(path) {
            let set: OptoutSet = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .filter_map(|l| crate::normalize::decode_prehashed(l).ok())
                .collect();
            let mut guard = self.optout.write().expect("optout lock");
            *guard = set
                .into_iter()
                .chain(
                    self.cfg
                        .optout
                        .iter()
                        .filter_map(|h| crate::normalize::decode_prehashed(h).ok()),
                )
                .collect();
            *last = mtime;
        }
    }

    /// Every opted-out identity hash (configured and test identities).
    pub fn optout_hashes(&self) -> Vec<IdentityHash> {
        self.reload_optout();
        let mut v: Vec<IdentityHash> = self
            .optout
            .read()
            .expect("optout lock")
            .iter()
            .copied()
            .collect();
        v.extend(self.always_optout.iter().map(|(_, h)| *h));
        v.extend(
            self.opted_out_later
                .read()
                .expect("optout lock")
                .keys()
                .copied(),
        );
        v
    }
}
