//! SHA-256 and the decoding of pre-hashed input columns.
//!
//! `sha2` picks the SHA-NI implementation at run time on CPUs that have it.

use base64::engine::{general_purpose, DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use sha2::{Digest, Sha256};

use crate::record::{IdentityHash, InvalidReason, HASH_B64_LEN};

/// Length of a SHA-256 digest in hex.
const HASH_HEX_LEN: usize = 64;
/// Length of the classic mistake: base64 of the 64-char hex text.
const HEX_AS_B64_LEN: usize = 88;

/// Java's basic decoder, which the operator uses: standard alphabet, padding optional, and
/// non-zero trailing bits tolerated (the operator then re-encodes canonically).
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// SHA-256 of `data`.
#[inline]
pub fn sha256(data: &[u8]) -> IdentityHash {
    IdentityHash(Sha256::digest(data).into())
}

/// Decodes a pre-hashed `email_hash` / `phone_hash` cell: 44-char standard base64 of 32 bytes,
/// or 64 hex digits (either case) as the operator also accepts.
///
/// # Errors
/// [`InvalidReason::HexAsBase64`] for base64 of hex text, [`InvalidReason::BadHashEncoding`]
/// for a 44- or 64-char value that does not decode to 32 bytes, and
/// [`InvalidReason::BadHashLength`] for any other length.
pub fn decode_prehashed(value: &str) -> Result<IdentityHash, InvalidReason> {
    let b = value.as_bytes();
    match b.len() {
        HASH_B64_LEN => {
            let mut out = [0u8; 33];
            match LENIENT.decode_slice(b, &mut out) {
                Ok(32) => Ok(IdentityHash(out[..32].try_into().expect("checked length"))),
                _ => Err(InvalidReason::BadHashEncoding),
            }
        }
        HASH_HEX_LEN => {
            let mut out = [0u8; 32];
            for (i, pair) in b.chunks_exact(2).enumerate() {
                let hi = hex_val(pair[0]).ok_or(InvalidReason::BadHashEncoding)?;
                let lo = hex_val(pair[1]).ok_or(InvalidReason::BadHashEncoding)?;
                out[i] = (hi << 4) | lo;
            }
            Ok(IdentityHash(out))
        }
        HEX_AS_B64_LEN => match general_purpose::STANDARD.decode(b) {
            Ok(text)
                if text.len() == HASH_HEX_LEN && text.iter().all(|c| hex_val(*c).is_some()) =>
            {
                Err(InvalidReason::HexAsBase64)
            }
            _ => Err(InvalidReason::BadHashLength),
        },
        _ => Err(InvalidReason::BadHashLength),
    }
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}
