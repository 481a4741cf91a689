//! A decrypted v3 answer turned into one outcome per identity sent, in the caller's order:
//! the positional arrays are checked per kind, so an answer can never land on another
//! identity.

use std::sync::Arc;

use super::ClientError;
use crate::protocol::wire;
use crate::record::{IdentityHash, IdentityKind, MapOutcome, RawId};

/// Turns the decrypted JSON into one outcome per requested identity, in the caller's order.
/// Each positional array must have exactly as many answers as that kind had hashes in the
/// request: any other length is a bad response for the whole batch (retried, never assigned),
/// because a surplus in one array and a shortfall in the other would shift answers between
/// identities.
pub(super) fn parse_answer(
    json: &[u8],
    order: &[usize],
    items: &[(IdentityKind, IdentityHash)],
) -> Result<Vec<MapOutcome>, ClientError> {
    let n = items.len();
    let emails = items
        .iter()
        .filter(|(k, _)| *k == IdentityKind::Email)
        .count();
    let phones = n - emails;
    let resp: wire::Response = serde_json::from_slice(json)
        .map_err(|e| ClientError::BadResponse(format!("not the v3 answer shape: {e}")))?;
    if resp.status != "success" {
        return Err(ClientError::BadResponse(format!(
            "status {:?}",
            resp.status
        )));
    }
    let body = resp
        .body
        .ok_or_else(|| ClientError::BadResponse("no body".into()))?;
    let at = chrono::Utc::now().timestamp_millis();
    if body.email_hash.len() != emails || body.phone_hash.len() != phones || order.len() != n {
        return Err(ClientError::BadResponse(format!(
            "{} email_hash and {} phone_hash answers for {emails} email and {phones} phone hashes sent",
            body.email_hash.len(),
            body.phone_hash.len()
        )));
    }
    let answered = body.email_hash.iter().chain(body.phone_hash.iter());
    let mut out: Vec<Option<MapOutcome>> = vec![None; n];
    for (item, &slot) in answered.zip(order) {
        let outcome = match (&item.u, &item.e) {
            (Some(u), _) => MapOutcome::Mapped {
                raw_euid: RawId::new(u),
                previous: item.p.as_deref().map(|p| Arc::new(RawId::new(p))),
                bucket_id: None,
                refresh_from: Some(
                    item.r
                        .ok_or_else(|| ClientError::BadResponse("mapped item without r".into()))?,
                ),
                mapped_at: at,
            },
            (None, Some(e)) if e == "optout" => MapOutcome::Optout {
                mapped_at: at,
                since: None,
            },
            (None, Some(e)) if e == "invalid identifier" => MapOutcome::Invalid,
            (None, Some(e)) => MapOutcome::Unmapped(Arc::from(&**e)),
            (None, None) => {
                return Err(ClientError::BadResponse("item with neither u nor e".into()))
            }
        };
        out[slot] = Some(outcome);
    }
    Ok(out
        .into_iter()
        .map(|o| o.expect("every slot is filled once: order is a permutation"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> IdentityHash {
        crate::normalize::sha256(s.as_bytes())
    }

    #[test]
    fn answers_are_put_back_in_request_order_and_unknown_reasons_kept() {
        let json = br#"{"status":"success","body":{"email":[],"email_hash":[{"u":"U1","p":null,"r":5},{"e":"optout"}],"phone":[],"phone_hash":[{"e":"new reason"}]}}"#;
        let items = [
            (IdentityKind::Email, h("a")),
            (IdentityKind::Phone, h("b")),
            (IdentityKind::Email, h("c")),
        ];
        let out = parse_answer(json, &[2, 0, 1], &items).expect("parses");
        assert!(
            matches!(&out[2], MapOutcome::Mapped { raw_euid, previous: None, refresh_from: Some(5), .. } if &**raw_euid == "U1")
        );
        assert!(matches!(out[0], MapOutcome::Optout { .. }));
        assert_eq!(out[1], MapOutcome::Unmapped(Arc::from("new reason")));
    }

    #[test]
    fn a_short_answer_is_an_error_not_a_shift() {
        let json = br#"{"status":"success","body":{"email":[],"email_hash":[{"e":"optout"}],"phone":[],"phone_hash":[]}}"#;
        let items = [(IdentityKind::Email, h("a")), (IdentityKind::Email, h("b"))];
        assert!(matches!(
            parse_answer(json, &[0, 1], &items),
            Err(ClientError::BadResponse(_))
        ));
    }

    /// Issue #9.4: one answer too many for emails and one too few for phones (same total)
    /// would shift every phone's raw EUID onto another identity.
    #[test]
    fn arrays_are_checked_per_kind_not_by_total() {
        let json = br#"{"status":"success","body":{"email":[],"email_hash":[{"u":"U1","p":null,"r":5},{"u":"U2","p":null,"r":5}],"phone":[],"phone_hash":[{"u":"U3","p":null,"r":5}]}}"#;
        let items = [
            (IdentityKind::Email, h("a")),
            (IdentityKind::Phone, h("b")),
            (IdentityKind::Phone, h("c")),
        ];
        let (_, order) = wire::request_json(&items);
        let err = parse_answer(json, &order, &items).expect_err("a per-kind mismatch is refused");
        assert!(matches!(err, ClientError::BadResponse(_)), "{err:?}");
        assert!(
            err.is_retryable(),
            "a bad response is retried, never assigned"
        );
    }
}
