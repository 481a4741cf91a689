//! The legacy v2 calls: `/v2/identity/map` (one request per identity type), the rotated
//! buckets of `/v2/identity/buckets`, and `/v2/optout/status`.

use super::*;

impl Client {
    /// Legacy v2: one request per identity type, answers correlated by the echoed identifier.
    pub(super) async fn map_v2(
        &self,
        items: &[(IdentityKind, IdentityHash)],
    ) -> Result<Vec<MapOutcome>, ClientError> {
        let mut out: Vec<Option<MapOutcome>> = vec![None; items.len()];
        for (kind, key) in [
            (IdentityKind::Email, "email_hash"),
            (IdentityKind::Phone, "phone_hash"),
        ] {
            let idx: Vec<usize> = (0..items.len()).filter(|&i| items[i].0 == kind).collect();
            if idx.is_empty() {
                continue;
            }
            let hashes: Vec<String> = idx.iter().map(|&i| items[i].1.to_base64()).collect();
            let json =
                serde_json::to_vec(&serde_json::json!({ key: hashes })).expect("strings serialize");
            let answers = self
                .with_retries(|| async {
                    let answer = self.exchange(&self.v2_url, &json).await?;
                    Ok(wire::parse_v2(answer.json(), &hashes)?)
                })
                .await?;
            for (i, a) in idx.into_iter().zip(answers) {
                out[i] = Some(a);
            }
        }
        self.stats
            .identities
            .fetch_add(items.len() as u64, Ordering::Relaxed);
        Ok(out
            .into_iter()
            .map(|o| o.expect("every identity is of one of the two kinds"))
            .collect())
    }

    /// Salt buckets rotated since `since` (legacy v2 `/v2/identity/buckets`), as
    /// (bucket id, last updated in Unix ms).
    ///
    /// # Errors
    /// The request failed after retries, or the answer is not the buckets shape.
    pub async fn rotated_buckets(&self, since_ms: i64) -> Result<Vec<(String, i64)>, ClientError> {
        let since = chrono::DateTime::from_timestamp_millis(since_ms)
            .ok_or_else(|| ClientError::Config("the state's time is out of range".into()))?
            .naive_utc()
            .format("%Y-%m-%dT%H:%M:%S%.3f")
            .to_string();
        let json = serde_json::to_vec(&serde_json::json!({ "since_timestamp": since }))
            .expect("serializes");
        self.with_retries(|| async {
            let answer = self.exchange(&self.buckets_url, &json).await?;
            Ok(wire::parse_buckets(answer.json())?)
        })
        .await
    }

    /// Asks `/v2/optout/status` which of at most 5,000 raw EUIDs are opted out: the opted-out
    /// ones with `opted_out_since` (Unix ms). Same retries, backoff, `Retry-After` and fatal
    /// errors as a map request (the same loop); a fresh envelope per attempt.
    ///
    /// # Errors
    /// A fatal error, or the retries ran out.
    pub async fn optout_status(&self, ids: &[&str]) -> Result<Vec<(String, i64)>, ClientError> {
        debug_assert!(ids.len() <= crate::protocol::MAX_ITEMS_PER_REQUEST);
        let json = wire::optout_request(ids);
        self.with_retries(|| async {
            let answer = self.exchange(&self.optout_url, &json).await?;
            Ok(wire::parse_optout_status(answer.json())?)
        })
        .await
    }
}
