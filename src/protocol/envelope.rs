//! The encrypted envelope of `euid-protocol.md` §3, as pure functions over bytes.
//!
//! Request:  `0x01 ‖ IV(12) ‖ AES-256-GCM(ts_ms BE(8) ‖ nonce(8) ‖ JSON) ‖ tag(16)`.
//! Response: `IV(12) ‖ AES-256-GCM(ts_ms BE(8) ‖ nonce(8) ‖ JSON) ‖ tag(16)` (no version byte).
//! No AAD. The same 32-byte client secret encrypts both directions.
//!
//! Used by the client and by the emulator; both are anchored to the protocol's fixed vectors
//! (`fixtures/vectors.json`) and to the Python SDK, so a bug cannot hide in shared code.

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use ring::rand::{SecureRandom, SystemRandom};

use crate::secret::{Secret, SecretError};

/// Envelope format version, the first byte of every request.
pub const VERSION: u8 = 1;
/// AES-GCM IV length.
pub const IV_LEN: usize = 12;
/// AES-GCM tag length.
pub const TAG_LEN: usize = 16;
/// Timestamp plus nonce, before the JSON.
pub const HEADER_LEN: usize = 16;
/// The shortest request envelope the operator accepts (1 + 12 + 16 + 8 + 8).
pub const MIN_REQUEST_LEN: usize = 1 + IV_LEN + TAG_LEN + HEADER_LEN;

/// Why an envelope could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// Shorter than IV + tag + header.
    #[error("envelope too short ({0} bytes)")]
    TooShort(usize),
    /// First byte is not [`VERSION`].
    #[error("envelope version {0}, expected 1")]
    Version(u8),
    /// GCM authentication failed: wrong secret or tampered bytes.
    #[error("envelope does not decrypt with this client secret")]
    Decrypt,
}

/// A client secret, ready for AES-256-GCM. `Debug` is redacted.
pub struct Key {
    key: LessSafeKey,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key([redacted])")
    }
}

impl Key {
    /// Builds a key from the decoded 32-byte client secret.
    pub fn new(secret: &Secret<[u8; 32]>) -> Key {
        let unbound =
            UnboundKey::new(&AES_256_GCM, secret.expose()).expect("AES-256 takes exactly 32 bytes");
        Key {
            key: LessSafeKey::new(unbound),
        }
    }

    fn seal(
        &self,
        iv: [u8; IV_LEN],
        prefix: &[u8],
        ts_ms: i64,
        nonce: [u8; 8],
        json: &[u8],
    ) -> Vec<u8> {
        let mut out = Vec::with_capacity(prefix.len() + IV_LEN + HEADER_LEN + json.len() + TAG_LEN);
        out.extend_from_slice(prefix);
        out.extend_from_slice(&iv);
        let start = out.len();
        out.extend_from_slice(&ts_ms.to_be_bytes());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(json);
        let tag = self
            .key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(iv),
                Aad::empty(),
                &mut out[start..],
            )
            .expect("AES-GCM sealing fails only for inputs over 64 GiB");
        out.extend_from_slice(tag.as_ref());
        out
    }

    fn open(&self, body: &[u8]) -> Result<Opened, EnvelopeError> {
        if body.len() < IV_LEN + TAG_LEN + HEADER_LEN {
            return Err(EnvelopeError::TooShort(body.len()));
        }
        let iv: [u8; IV_LEN] = body[..IV_LEN].try_into().expect("length checked");
        let mut buf = body[IV_LEN..].to_vec();
        let plain = self
            .key
            .open_in_place(Nonce::assume_unique_for_key(iv), Aad::empty(), &mut buf)
            .map_err(|_| EnvelopeError::Decrypt)?;
        let ts_ms = i64::from_be_bytes(plain[..8].try_into().expect("length checked"));
        let nonce: [u8; 8] = plain[8..16].try_into().expect("length checked");
        let plain_len = plain.len();
        // The header stays in front of the payload: removing it would move every byte of
        // a large answer once more.
        buf.truncate(plain_len);
        Ok(Opened {
            ts_ms,
            nonce,
            plain: buf,
        })
    }

    /// Seals a request with explicit IV, time and nonce (the vectors' form).
    pub fn seal_request_with(
        &self,
        iv: [u8; IV_LEN],
        ts_ms: i64,
        nonce: [u8; 8],
        json: &[u8],
    ) -> Vec<u8> {
        self.seal(iv, &[VERSION], ts_ms, nonce, json)
    }

    /// Seals a request with a fresh random IV and nonce; returns the body and the nonce to
    /// expect back. Call once per attempt: a retry must never resend the same bytes.
    pub fn seal_request(&self, ts_ms: i64, json: &[u8]) -> (Vec<u8>, [u8; 8]) {
        let (iv, nonce) = fresh();
        (self.seal_request_with(iv, ts_ms, nonce, json), nonce)
    }

    /// Opens a request envelope (the emulator's side), checking length, version and tag.
    ///
    /// # Errors
    /// [`EnvelopeError`] in the operator's check order.
    pub fn open_request(&self, body: &[u8]) -> Result<Opened, EnvelopeError> {
        if body.len() < MIN_REQUEST_LEN {
            return Err(EnvelopeError::TooShort(body.len()));
        }
        if body[0] != VERSION {
            return Err(EnvelopeError::Version(body[0]));
        }
        self.open(&body[1..])
    }

    /// Seals a response with explicit IV (the vectors' form).
    pub fn seal_response_with(
        &self,
        iv: [u8; IV_LEN],
        ts_ms: i64,
        nonce: [u8; 8],
        json: &[u8],
    ) -> Vec<u8> {
        self.seal(iv, &[], ts_ms, nonce, json)
    }

    /// Seals a response with a fresh random IV.
    pub fn seal_response(&self, ts_ms: i64, nonce: [u8; 8], json: &[u8]) -> Vec<u8> {
        self.seal_response_with(fresh().0, ts_ms, nonce, json)
    }

    /// Opens a response envelope (the client's side). The caller checks the nonce.
    ///
    /// # Errors
    /// [`EnvelopeError::TooShort`] or [`EnvelopeError::Decrypt`].
    pub fn open_response(&self, body: &[u8]) -> Result<Opened, EnvelopeError> {
        self.open(body)
    }
}

/// A decrypted envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// Sender's clock, Unix milliseconds.
    pub ts_ms: i64,
    /// The request nonce (echoed in responses).
    pub nonce: [u8; 8],
    /// The decrypted bytes: the header (time and nonce), then the payload.
    plain: Vec<u8>,
}

impl Opened {
    /// The JSON payload bytes.
    pub fn json(&self) -> &[u8] {
        &self.plain[HEADER_LEN..]
    }
}

/// A fresh random IV and nonce from the OS generator.
fn fresh() -> ([u8; IV_LEN], [u8; 8]) {
    let rng = SystemRandom::new();
    let mut bytes = [0u8; IV_LEN + 8];
    rng.fill(&mut bytes)
        .expect("the OS random generator is available");
    (
        bytes[..IV_LEN].try_into().expect("sized"),
        bytes[IV_LEN..].try_into().expect("sized"),
    )
}

/// Decodes a base64 client secret (the one rule is [`crate::secret::decode_client_secret`]).
///
/// # Errors
/// A message (without the secret) when it is not base64 of exactly 32 bytes.
pub fn decode_secret(b64: &str) -> Result<Secret<[u8; 32]>, SecretError> {
    crate::secret::decode_client_secret(b64)
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use serde_json::Value;

    use super::*;

    fn vectors() -> Value {
        serde_json::from_str(include_str!("../../fixtures/vectors.json")).expect("valid JSON")
    }

    fn hex<const N: usize>(s: &str) -> [u8; N] {
        let v: Vec<u8> = (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect();
        v.try_into().expect("length")
    }

    fn b64(s: &str) -> Vec<u8> {
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .expect("base64")
    }

    #[test]
    fn request_envelopes_match_the_protocol_vectors() {
        let v = vectors();
        let e = &v["envelope"];
        let key = Key::new(&decode_secret(e["secret"].as_str().expect("s")).expect("32 bytes"));
        let iv = hex::<12>(e["iv_hex"].as_str().expect("s"));
        let nonce = hex::<8>(e["nonce_hex"].as_str().expect("s"));
        let ts = e["timestamp_ms"].as_i64().expect("i64");
        let reqs = e["requests"].as_array().expect("array");
        assert_eq!(reqs.len(), 4);
        for r in reqs {
            let json = r["json"].as_str().expect("s").as_bytes();
            let expected = b64(r["envelope_base64"].as_str().expect("s"));
            assert_eq!(key.seal_request_with(iv, ts, nonce, json), expected);
            let opened = key.open_request(&expected).expect("opens");
            assert_eq!(
                (opened.ts_ms, opened.nonce, opened.json()),
                (ts, nonce, json)
            );
        }
    }

    #[test]
    fn response_envelope_matches_the_protocol_vector() {
        let v = vectors();
        let e = &v["envelope"];
        let key = Key::new(&decode_secret(e["secret"].as_str().expect("s")).expect("32 bytes"));
        let r = &e["responses"][0];
        let body = b64(r["envelope_base64"].as_str().expect("s"));
        let opened = key.open_response(&body).expect("opens");
        assert_eq!(opened.ts_ms, r["timestamp_ms"].as_i64().expect("i64"));
        assert_eq!(opened.nonce, hex::<8>(r["nonce_hex"].as_str().expect("s")));
        assert_eq!(opened.json(), r["json"].as_str().expect("s").as_bytes());
        let iv = hex::<12>(r["iv_hex"].as_str().expect("s"));
        assert_eq!(
            key.seal_response_with(iv, opened.ts_ms, opened.nonce, opened.json()),
            body
        );
    }

    #[test]
    fn wrong_secret_tampering_and_bad_version_are_rejected() {
        let key = Key::new(&Secret::new([7u8; 32]));
        let other = Key::new(&Secret::new([8u8; 32]));
        let (mut body, _) = key.seal_request(1, b"{}");
        assert_eq!(other.open_request(&body), Err(EnvelopeError::Decrypt));
        let last = body.len() - 1;
        body[last] ^= 1;
        assert_eq!(key.open_request(&body), Err(EnvelopeError::Decrypt));
        body[0] = 2;
        assert_eq!(key.open_request(&body), Err(EnvelopeError::Version(2)));
        assert_eq!(
            key.open_request(&[1u8; 44]),
            Err(EnvelopeError::TooShort(44))
        );
    }

    #[test]
    fn every_seal_uses_a_fresh_iv_and_nonce() {
        let key = Key::new(&Secret::new([1u8; 32]));
        let (a, na) = key.seal_request(5, b"{\"email_hash\":[]}");
        let (b, nb) = key.seal_request(5, b"{\"email_hash\":[]}");
        assert_ne!(na, nb);
        assert_ne!(a[1..13], b[1..13]);
        assert_eq!(key.open_request(&a).expect("opens").nonce, na);
    }

    #[test]
    fn secrets_of_the_wrong_length_are_refused_without_echoing_them() {
        let err = decode_secret("c2hvcnQ=").expect_err("5 bytes").to_string();
        assert!(
            err.contains("32 bytes") && !err.contains("c2hvcnQ"),
            "{err}"
        );
        assert!(decode_secret("not base64!").is_err());
    }
}
