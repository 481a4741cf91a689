//! Vector and property tests for normalization. The vectors are `fixtures/vectors.json`, a
//! copy of the project's shared protocol vectors (checked against uid2-client 2.9.0).

use base64::Engine;
use quickcheck::{quickcheck, TestResult};
use serde_json::Value;

use super::*;
use crate::record::{InvalidReason, PhoneReason};

fn vectors() -> Value {
    let text = include_str!("../../fixtures/vectors.json");
    serde_json::from_str(text).expect("fixtures/vectors.json is valid JSON")
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().expect("string field")
}

#[test]
fn every_valid_email_vector_normalizes_and_hashes_like_the_operator() {
    let v = vectors();
    let cases = v["emails_valid"].as_array().expect("array");
    assert!(cases.len() > 40);
    for c in cases {
        let input = s(c, "input");
        assert_eq!(
            email(input).as_deref(),
            Some(s(c, "normalized")),
            "normalize {input:?}"
        );
        assert_eq!(
            hash_email(input).map(|h| h.to_base64()).as_deref(),
            Ok(s(c, "hash")),
            "hash {input:?}"
        );
    }
}

#[test]
fn every_invalid_email_vector_is_rejected() {
    let v = vectors();
    for c in v["emails_invalid"].as_array().expect("array") {
        let input = c.as_str().expect("string");
        assert_eq!(email(input), None, "{input:?}");
        assert_eq!(hash_email(input), Err(InvalidReason::InvalidEmail));
    }
}

#[test]
fn every_phone_vector_is_accepted_or_rejected_like_the_operator() {
    let v = vectors();
    for c in v["phones_valid"].as_array().expect("array") {
        let input = s(c, "input");
        assert_eq!(
            hash_phone(input).map(|h| h.to_base64()).as_deref(),
            Ok(s(c, "hash")),
            "{input:?}"
        );
    }
    for c in v["phones_invalid"].as_array().expect("array") {
        let input = c.as_str().expect("string");
        assert_eq!(
            hash_phone(input),
            Err(InvalidReason::Phone(PhoneReason::NotE164)),
            "{input:?}"
        );
    }
}

#[test]
fn prehashed_vectors_are_accepted_or_rejected_like_the_operator() {
    let v = vectors();
    for c in v["hashes_accepted"].as_array().expect("array") {
        let got = decode_prehashed(s(c, "input")).map(|h| h.to_base64());
        assert_eq!(got.as_deref(), Ok(s(c, "normalized")));
    }
    for c in v["hashes_rejected"].as_array().expect("array") {
        let input = c.as_str().expect("string");
        assert!(decode_prehashed(input).is_err(), "{input:?}");
    }
}

#[test]
fn optout_test_identities_hash_to_the_documented_values() {
    let v = vectors();
    for c in v["optout_test_identities"].as_array().expect("array") {
        let h = match s(c, "type") {
            "email" => hash_email(s(c, "input")),
            _ => hash_phone(s(c, "input")),
        };
        assert_eq!(h.map(|h| h.to_base64()).as_deref(), Ok(s(c, "hash")));
    }
}

#[test]
fn base64_of_hex_text_is_named_as_the_classic_mistake() {
    let hex = "0c7e6a405862e402eb76a70f8a26fc732d07c32931e9fae9ab1582911d2e8a3b";
    let wrong = base64::engine::general_purpose::STANDARD.encode(hex);
    assert_eq!(wrong.len(), 88);
    assert_eq!(decode_prehashed(&wrong), Err(InvalidReason::HexAsBase64));
    assert_eq!(decode_prehashed("abc"), Err(InvalidReason::BadHashLength));
    assert_eq!(
        decode_prehashed("DH5qQFhi5ALrdqcPiib8cy0Hwykx6frpqxWCkR0uij!="),
        Err(InvalidReason::BadHashEncoding)
    );
}

#[test]
fn empty_cells_are_missing_not_invalid() {
    use crate::record::{Hashed, IdentityForm, IdentityKind};
    assert_eq!(
        identity(IdentityKind::Email, IdentityForm::Raw, None),
        Hashed::Missing
    );
    assert_eq!(
        identity(IdentityKind::Phone, IdentityForm::Raw, Some("")),
        Hashed::Missing
    );
    assert_eq!(
        identity(IdentityKind::Phone, IdentityForm::Raw, Some(" ")),
        Hashed::Invalid(InvalidReason::Phone(if cfg!(feature = "phones") {
            PhoneReason::NotANumber
        } else {
            PhoneReason::NotE164
        }))
    );
}

quickcheck! {
    fn normalizing_twice_changes_nothing(raw: String) -> bool {
        match email(&raw) {
            Some(once) => email(&once).as_deref() == Some(once.as_str()),
            None => true,
        }
    }

    fn normalizing_an_email_shaped_string_twice_changes_nothing(local: String, domain: String, gmail: bool) -> TestResult {
        let domain = if gmail { "GMail.com".to_string() } else { domain };
        let raw = format!("  {local}@{domain}  ");
        match email(&raw) {
            // The operator trims before it drops gmail dots, so ". @gmail.com" becomes
            // " @gmail.com", which a second pass trims into an empty local part: the
            // operator's rule is not idempotent there, and euid-map normalizes only once.
            Some(once) if once.starts_with(char::is_whitespace) => TestResult::discard(),
            Some(once) => TestResult::from_bool(email(&once).as_deref() == Some(once.as_str())),
            None => TestResult::discard(),
        }
    }

    fn every_hash_is_44_chars_of_padded_base64(raw: String) -> bool {
        sha256(raw.as_bytes()).to_base64().len() == 44
            && hash_email(&raw).map_or(true, |h| h.to_base64().ends_with('='))
    }

    fn hex_and_base64_forms_of_a_hash_decode_to_the_same_digest(raw: String) -> bool {
        let h = sha256(raw.as_bytes());
        let hex: String = h.0.iter().map(|b| format!("{b:02X}")).collect();
        decode_prehashed(&hex) == Ok(h) && decode_prehashed(&h.to_base64()) == Ok(h)
    }
}
