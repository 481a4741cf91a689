//! One HTTP POST of an encrypted body, and the mapping of HTTP outcomes to [`ClientError`].
//! Bodies of error responses are never put into errors except the operator's short
//! `message` field (it never contains identifiers).

use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};

use super::ClientError;
use crate::secret::Secret;

/// Builds the pooled HTTP client. The bearer header is marked sensitive so it is never
/// printed by reqwest's or hyper's debug output.
///
/// # Errors
/// The API key is not a valid header value, or TLS setup failed.
pub fn build(
    api_key: &Secret<String>,
    connect_timeout: Duration,
    timeout: Duration,
) -> Result<reqwest::Client, ClientError> {
    let mut headers = HeaderMap::new();
    let mut auth =
        HeaderValue::from_str(&format!("Bearer {}", api_key.expose())).map_err(|_| {
            ClientError::Config(
                "the API key contains characters not allowed in an HTTP header".into(),
            )
        })?;
    auth.set_sensitive(true);
    headers.insert(AUTHORIZATION, auth);
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(
        "X-UID2-Client-Version",
        HeaderValue::from_static(concat!("euid-map-", env!("CARGO_PKG_VERSION"))),
    );
    crate::tls::install_provider();
    reqwest::Client::builder()
        .default_headers(headers)
        // The operator never redirects; following one would send the bearer key (and the
        // batch) somewhere else than the configured operator.
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(connect_timeout)
        .timeout(timeout)
        .pool_max_idle_per_host(32)
        .tcp_nodelay(true)
        .build()
        .map_err(|e| ClientError::Config(format!("cannot build the HTTP client: {e}")))
}

/// What a 200 answer carried.
pub struct Answer {
    /// Whether the body is raw envelope bytes (else base64 text).
    pub binary: bool,
    /// The body.
    pub body: Bytes,
}

/// POSTs `body` to `url` and classifies the outcome.
///
/// # Errors
/// Every non-200 outcome, as a [`ClientError`].
pub async fn post(http: &reqwest::Client, url: &str, body: Vec<u8>) -> Result<Answer, ClientError> {
    let resp = http.post(url).body(body).send().await.map_err(classify)?;
    let status = resp.status().as_u16();
    let binary = resp
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        // The media type alone decides; parameters (`; charset=…`) do not change it.
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/octet-stream"))
        });
    let retry_after = resp
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let body = resp.bytes().await.map_err(classify)?;
    match status {
        200 => Ok(Answer { binary, body }),
        401 => Err(ClientError::Unauthorized),
        429 => Err(ClientError::RateLimited { retry_after }),
        400 => {
            let message = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| {
                    v["message"]
                        .as_str()
                        .map(|m| m.chars().take(300).collect::<String>())
                })
                .unwrap_or_default();
            Err(classify_400(message))
        }
        413 => Err(ClientError::Rejected {
            message: "Request Entity Too Large".into(),
        }),
        s if s >= 500 => Err(ClientError::Server { status: s }),
        s => Err(ClientError::Unexpected { status: s }),
    }
}

/// Sorts a 400 by its message (`euid-protocol.md` §3.4): envelope-level rejections are about
/// the request as a whole (credentials, clock, format) and stop the run; anything else is
/// about the identities it carries.
pub fn classify_400(message: String) -> ClientError {
    if message.starts_with("Invalid timestamp") {
        ClientError::ClockSkew
    } else if message.starts_with("Invalid body: Check encryption key") {
        ClientError::WrongSecret
    } else if message.starts_with("Invalid body") {
        ClientError::EnvelopeRejected { message }
    } else {
        ClientError::Rejected { message }
    }
}

fn classify(e: reqwest::Error) -> ClientError {
    if e.is_timeout() {
        return ClientError::Timeout;
    }
    // Only the error kind, from the source chain: reqwest's message may include the URL,
    // never a body or key, but the kind is what the user can act on.
    let mut chain = String::new();
    let mut refused = false;
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            refused |= io.kind() == std::io::ErrorKind::ConnectionRefused;
        }
        chain.push_str(&s.to_string().to_ascii_lowercase());
        chain.push('\n');
        source = s.source();
    }
    let kind = if chain.contains("dns error") || chain.contains("failed to lookup address") {
        "DNS lookup failed (unknown host)"
    } else if refused || chain.contains("connection refused") {
        "connection refused"
    } else if chain.contains("certificate")
        || chain.contains("tls")
        || chain.contains("handshake")
        || chain.contains("invalidcontenttype")
    {
        "TLS handshake failed (certificate or protocol)"
    } else if chain.contains("timed out") {
        "connect timed out"
    } else if e.is_connect() {
        "connect failed"
    } else if e.is_body() || e.is_decode() {
        "body interrupted"
    } else {
        "connection error"
    };
    ClientError::Connection(kind.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue #9.8: a wrong secret is about the credentials, not about an identity.
    #[test]
    fn envelope_400s_are_run_level_and_item_400s_are_not() {
        let wrong = classify_400(
            "Invalid body: Check encryption key (ClientSecret). See https://euid.eu/docs".into(),
        );
        assert!(matches!(wrong, ClientError::WrongSecret) && wrong.is_fatal());
        let version = classify_400(
            "Invalid body: Invalid request envelope format version: received 2, must be 1.".into(),
        );
        assert!(version.is_fatal(), "{version:?}");
        assert!(matches!(
            classify_400("Invalid timestamp: Request too old or client time drift.".into()),
            ClientError::ClockSkew
        ));
        let item = classify_400("Required Parameter Missing: one or more of [...]".into());
        assert!(matches!(item, ClientError::Rejected { .. }) && !item.is_fatal());
    }
}
