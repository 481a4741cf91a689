//! The JSON inside the envelope for `/v3/identity/map`: request building (by hand, so its
//! exact size is known before encryption) and positional response parsing.

use std::borrow::Cow;

use serde::Deserialize;

use crate::record::{IdentityHash, IdentityKind, HASH_B64_LEN};

/// A decrypted answer that is not the shape the protocol promises.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct WireError(pub String);

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

/// The decrypted response. Strings borrow from the decrypted bytes where they can, so an
/// answer costs no allocation per identity.
#[derive(Debug, Deserialize)]
pub struct Response<'a> {
    /// `success` on 200.
    #[serde(borrow)]
    pub status: Cow<'a, str>,
    /// The four positional arrays.
    #[serde(borrow)]
    pub body: Option<Body<'a>>,
}

/// `body` of a v3 response.
#[derive(Debug, Deserialize)]
pub struct Body<'a> {
    /// Answers for `email` (unused: we send hashes only).
    #[serde(default, borrow)]
    pub email: Vec<Item<'a>>,
    /// Answers for `email_hash`, positional.
    #[serde(default, borrow, deserialize_with = "positional")]
    pub email_hash: Vec<Item<'a>>,
    /// Answers for `phone` (unused).
    #[serde(default, borrow)]
    pub phone: Vec<Item<'a>>,
    /// Answers for `phone_hash`, positional.
    #[serde(default, borrow, deserialize_with = "positional")]
    pub phone_hash: Vec<Item<'a>>,
}

/// A positional array, room for a full batch reserved at its first item: growing one item at
/// a time reallocated and copied the answers a dozen times per response.
fn positional<'de: 'a, 'a, D>(d: D) -> Result<Vec<Item<'a>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    struct Items<'a>(std::marker::PhantomData<Item<'a>>);
    impl<'de: 'a, 'a> serde::de::Visitor<'de> for Items<'a> {
        type Value = Vec<Item<'a>>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an array of answers")
        }

        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(item) = seq.next_element::<Item<'a>>()? {
                if out.is_empty() {
                    out.reserve(super::MAX_ITEMS_PER_REQUEST);
                }
                out.push(item);
            }
            Ok(out)
        }
    }
    d.deserialize_seq(Items(std::marker::PhantomData))
}

/// One positional answer: `{"u","p","r"}` or `{"e"}`.
#[derive(Debug, Deserialize)]
pub struct Item<'a> {
    /// Current raw EUID.
    #[serde(default, borrow, deserialize_with = "text")]
    pub u: Option<Cow<'a, str>>,
    /// Previous raw EUID.
    #[serde(default, borrow, deserialize_with = "text")]
    pub p: Option<Cow<'a, str>>,
    /// Refresh time, Unix seconds.
    pub r: Option<i64>,
    /// Unmapped reason.
    #[serde(default, borrow, deserialize_with = "text")]
    pub e: Option<Cow<'a, str>>,
}

/// An optional string that borrows from the decrypted bytes unless it has escapes. Serde's
/// `borrow` does not reach through `Option`: a derived `Option<Cow<str>>` allocated a
/// `String` for every raw id of every answer.
fn text<'de: 'a, 'a, D>(d: D) -> Result<Option<Cow<'a, str>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    struct Text<'a>(std::marker::PhantomData<Cow<'a, str>>);
    impl<'de: 'a, 'a> serde::de::Visitor<'de> for Text<'a> {
        type Value = Option<Cow<'a, str>>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a string or null")
        }

        fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Borrowed(v)))
        }

        fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(v.to_owned())))
        }

        fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(v)))
        }

        fn visit_none<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_str(self)
        }
    }
    d.deserialize_option(Text(std::marker::PhantomData))
}

/// Parses a v2 answer (`mapped` / `unmapped`, correlated by the echoed `identifier`) into
/// one outcome per sent hash, in order.
///
/// # Errors
/// The shape is wrong, or an identifier is answered twice or not at all.
pub fn parse_v2(json: &[u8], sent: &[String]) -> Result<Vec<crate::record::MapOutcome>, WireError> {
    use std::collections::HashMap;
    use std::sync::Arc;

    use crate::record::MapOutcome;
    let bad = |m: &str| WireError(m.to_string());
    let v: serde_json::Value = serde_json::from_slice(json).map_err(|_| bad("not JSON"))?;
    if v["status"] != "success" {
        return Err(bad("status is not success"));
    }
    let at = chrono::Utc::now().timestamp_millis();
    let mut answers: HashMap<&str, MapOutcome> = HashMap::with_capacity(sent.len());
    for m in v["body"]["mapped"]
        .as_array()
        .ok_or_else(|| bad("no mapped list"))?
    {
        let (Some(id), Some(u)) = (m["identifier"].as_str(), m["advertising_id"].as_str()) else {
            return Err(bad("mapped item without identifier or advertising_id"));
        };
        answers.insert(
            id,
            MapOutcome::Mapped {
                raw_euid: crate::record::RawId::new(u),
                previous: None,
                refresh_from: None,
                bucket_id: m["bucket_id"].as_str().map(Arc::from),
                mapped_at: at,
            },
        );
    }
    for m in v["body"]["unmapped"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
    {
        let (Some(id), Some(reason)) = (m["identifier"].as_str(), m["reason"].as_str()) else {
            return Err(bad("unmapped item without identifier or reason"));
        };
        let o = match reason {
            "optout" => MapOutcome::Optout {
                mapped_at: at,
                since: None,
            },
            "invalid identifier" => MapOutcome::Invalid,
            other => MapOutcome::Unmapped(Arc::from(other)),
        };
        answers.insert(id, o);
    }
    if answers.len() != sent.len() {
        return Err(bad("the answer does not cover every identifier sent"));
    }
    sent.iter()
        .map(|s| {
            answers
                .remove(s.as_str())
                .ok_or_else(|| bad("an identifier is missing from the answer"))
        })
        .collect()
}

/// Parses a `/v2/identity/buckets` answer into (bucket id, last updated Unix ms).
///
/// # Errors
/// The shape or a time is wrong.
pub fn parse_buckets(json: &[u8]) -> Result<Vec<(String, i64)>, WireError> {
    let bad = |m: &str| WireError(m.to_string());
    let v: serde_json::Value = serde_json::from_slice(json).map_err(|_| bad("not JSON"))?;
    if v["status"] != "success" {
        return Err(bad("status is not success"));
    }
    v["body"]
        .as_array()
        .ok_or_else(|| bad("buckets body is not an array"))?
        .iter()
        .map(|b| {
            let id = b["bucket_id"]
                .as_str()
                .ok_or_else(|| bad("bucket without id"))?;
            let t = b["last_updated"]
                .as_str()
                .ok_or_else(|| bad("bucket without last_updated"))?;
            let t = chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S%.f")
                .map_err(|_| bad("bad last_updated"))?;
            Ok((id.to_string(), t.and_utc().timestamp_millis()))
        })
        .collect()
}

/// The body of a `/v2/optout/status` request: the raw ids exactly as given (byte-exact: the
/// operator matches strings, so an id re-encoded would read "not opted out").
pub fn optout_request(ids: &[&str]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({ "advertising_ids": ids })).expect("serializes")
}

/// Parses a `/v2/optout/status` answer: the opted-out raw ids with `opted_out_since` (Unix
/// ms). Ids that are not opted out are absent from it.
///
/// # Errors
/// The shape is wrong.
pub fn parse_optout_status(json: &[u8]) -> Result<Vec<(String, i64)>, WireError> {
    let bad = |m: &str| WireError(m.to_string());
    let v: serde_json::Value = serde_json::from_slice(json).map_err(|_| bad("not JSON"))?;
    if v["status"] != "success" {
        return Err(bad("status is not success"));
    }
    v["body"]["opted_out"]
        .as_array()
        .ok_or_else(|| bad("opted_out is not an array"))?
        .iter()
        .map(|o| {
            let id = o["advertising_id"]
                .as_str()
                .ok_or_else(|| bad("an opt-out without advertising_id"))?;
            let since = o["opted_out_since"]
                .as_i64()
                .ok_or_else(|| bad("an opt-out without opted_out_since"))?;
            Ok((id.to_string(), since))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn optout_status_answers_parse_and_requests_keep_ids_byte_exact() {
        let body = optout_request(&["AbC+/=", "x"]);
        let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(v["advertising_ids"][0], "AbC+/=");
        let got = parse_optout_status(
            br#"{"status":"success","body":{"opted_out":[{"advertising_id":"x","opted_out_since":1764547200000}]}}"#,
        )
        .expect("parses");
        assert_eq!(got, vec![("x".to_string(), 1_764_547_200_000)]);
        assert!(parse_optout_status(br#"{"status":"success","body":{}}"#).is_err());
    }

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

    #[test]
    fn answer_strings_borrow_unless_escaped_and_null_is_none() {
        let json = br#"{"status":"success","body":{"email_hash":[{"u":"AbC/+=","p":null,"r":5},{"u":"a\/b","e":null},{"e":"optout"}]}}"#;
        let r: Response = serde_json::from_slice(json).expect("parses");
        let items = r.body.expect("body").email_hash;
        assert!(matches!(&items[0].u, Some(Cow::Borrowed("AbC/+="))));
        assert!(items[0].p.is_none());
        assert!(matches!(&items[1].u, Some(Cow::Owned(s)) if s == "a/b"));
        assert!(items[1].e.is_none());
        assert!(items[2].u.is_none());
        assert_eq!(items[2].e.as_deref(), Some("optout"));
        let bad = br#"{"status":"success","body":{"email_hash":[{"u":5}]}}"#;
        assert!(serde_json::from_slice::<Response>(bad).is_err());
    }
}
