//! The JSON inside the envelope for `/v3/identity/map`: request building (by hand, so its
//! exact size is known before encryption) and positional response parsing.

use serde::Deserialize;

use crate::record::{IdentityHash, IdentityKind, HASH_B64_LEN};

/// Fixed JSON overhead of a request: `{"email_hash":[],"phone_hash":[]}`.
pub const REQUEST_OVERHEAD: usize = 33;
/// Bytes one hash adds to the request JSON: quotes, comma and 44 characters.
pub const BYTES_PER_HASH: usize = HASH_B64_LEN + 3;

/// Builds `{"email_hash":[…],"phone_hash":[…]}` (both keys always, as the SDKs send) and
/// returns it with the index of every item in request order: emails first, then phones.
pub fn request_json(items: &[(IdentityKind, IdentityHash)]) -> (Vec<u8>, Vec<usize>) {
    let mut out = Vec::with_capacity(REQUEST_OVERHEAD + items.len() * BYTES_PER_HASH);
    let mut order = Vec::with_capacity(items.len());
    let mut b64 = [0u8; HASH_B64_LEN];
    for (kind, key) in [
        (IdentityKind::Email, "{\"email_hash\":["),
        (IdentityKind::Phone, "],\"phone_hash\":["),
    ] {
        out.extend_from_slice(key.as_bytes());
        let mut first = true;
        for (i, (k, h)) in items.iter().enumerate() {
            if *k != kind {
                continue;
            }
            if !first {
                out.push(b',');
            }
            first = false;
            out.push(b'"');
            h.encode_into(&mut b64);
            out.extend_from_slice(&b64);
            out.push(b'"');
            order.push(i);
        }
    }
    out.extend_from_slice(b"]}");
    (out, order)
}

/// The decrypted response.
#[derive(Debug, Deserialize)]
pub struct Response {
    /// `success` on 200.
    pub status: String,
    /// The four positional arrays.
    pub body: Option<Body>,
}

/// `body` of a v3 response.
#[derive(Debug, Deserialize)]
pub struct Body {
    /// Answers for `email` (unused: we send hashes only).
    #[serde(default)]
    pub email: Vec<Item>,
    /// Answers for `email_hash`, positional.
    #[serde(default)]
    pub email_hash: Vec<Item>,
    /// Answers for `phone` (unused).
    #[serde(default)]
    pub phone: Vec<Item>,
    /// Answers for `phone_hash`, positional.
    #[serde(default)]
    pub phone_hash: Vec<Item>,
}

/// One positional answer: `{"u","p","r"}` or `{"e"}`.
#[derive(Debug, Deserialize)]
pub struct Item {
    /// Current raw EUID.
    pub u: Option<String>,
    /// Previous raw EUID.
    pub p: Option<String>,
    /// Refresh time, Unix seconds.
    pub r: Option<i64>,
    /// Unmapped reason.
    pub e: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_puts_emails_then_phones_and_reports_the_order() {
        let h = |s: &str| crate::normalize::sha256(s.as_bytes());
        let items = [
            (IdentityKind::Phone, h("p")),
            (IdentityKind::Email, h("e")),
            (IdentityKind::Phone, h("q")),
        ];
        let (json, order) = request_json(&items);
        let v: serde_json::Value = serde_json::from_slice(&json).expect("valid JSON");
        assert_eq!(v["email_hash"].as_array().map(Vec::len), Some(1));
        assert_eq!(v["phone_hash"][1], h("q").to_base64());
        assert_eq!(order, vec![1, 0, 2]);
        assert_eq!(json.len(), REQUEST_OVERHEAD + 3 * BYTES_PER_HASH - 2);
        let (empty, _) = request_json(&[]);
        assert_eq!(empty.len(), REQUEST_OVERHEAD);
    }
}
