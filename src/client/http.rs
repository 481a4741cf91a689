//! One HTTP POST of an encrypted body, and the mapping of HTTP outcomes to [`ClientError`].
//! Bodies of error responses are never put into errors except the operator's short
//! `message` field (it never contains identifiers).

use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};

use super::ClientError;
use crate::config::Secret;

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
    reqwest::Client::builder()
        .default_headers(headers)
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
            if message.starts_with("Invalid timestamp") {
                Err(ClientError::ClockSkew)
            } else {
                Err(ClientError::Rejected { message })
            }
        }
        413 => Err(ClientError::Rejected {
            message: "Request Entity Too Large".into(),
        }),
        s if s >= 500 => Err(ClientError::Server { status: s }),
        s => Err(ClientError::Unexpected { status: s }),
    }
}

fn classify(e: reqwest::Error) -> ClientError {
    if e.is_timeout() {
        ClientError::Timeout
    } else {
        // Only the error kind: reqwest's message may include the URL, never a body or key.
        let kind = if e.is_connect() {
            "connect failed"
        } else if e.is_body() || e.is_decode() {
            "body interrupted"
        } else {
            "connection error"
        };
        ClientError::Connection(kind.to_string())
    }
}
