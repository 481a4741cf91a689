//! The client's errors: what went wrong with one request, and which errors end the run
//! ([`ClientError::is_fatal`]). What is retried, and how, is `retry.rs`.

use std::time::Duration;

use crate::protocol::wire;

impl From<wire::WireError> for ClientError {
    fn from(e: wire::WireError) -> ClientError {
        ClientError::BadResponse(e.0)
    }
}

/// Errors of one request, and the run-level ones.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// 401: the API key is unknown, disabled or lacks the mapper role.
    #[error("the operator refused the API key (401 unauthorized): check the key, and that it has the mapper role for this environment")]
    Unauthorized,
    /// 400 `Invalid timestamp`: this machine's clock is off.
    #[error("the operator rejected the request time (400 Invalid timestamp): this machine's clock differs from the operator's by more than about a minute; sync it with NTP")]
    ClockSkew,
    /// 400 `Invalid body: Check encryption key (ClientSecret)`: the operator could not
    /// decrypt the envelope, so the client secret does not belong to the API key.
    #[error("the operator could not decrypt the request (400 Invalid body: Check encryption key): the client secret does not belong to this API key, or is for another environment")]
    WrongSecret,
    /// Another envelope-level 400 (`Invalid body: …`): the request as a whole is unreadable,
    /// whatever identities it carries (a proxy altering bodies, or a client bug).
    #[error("the operator rejected the request envelope (400): {message}")]
    EnvelopeRejected {
        /// The operator's message.
        message: String,
    },
    /// No request has ever succeeded and the first batches spent their retries on network
    /// errors: the operator is not reachable from here.
    #[error("cannot reach the operator at {endpoint}: {cause}; no request has succeeded, so nothing was mapped (check --env/--base-url, DNS, proxy and firewall)")]
    Unreachable {
        /// Scheme, host and port (never a credential).
        endpoint: String,
        /// DNS lookup, connection refused, TLS, timeout…
        cause: String,
    },
    /// No HTTP answer at all from the operator for the stall timeout.
    #[error("the operator at {endpoint} sent no answer for {secs} s to any request (it accepts connections but does not respond, or a proxy holds them): stopping (--stall-timeout); committed parts stay for --resume")]
    Stalled {
        /// Scheme, host and port (never a credential).
        endpoint: String,
        /// Seconds waited.
        secs: u64,
    },
    /// 429.
    #[error("rate limited (429)")]
    RateLimited {
        /// The server's `Retry-After`.
        retry_after: Option<Duration>,
    },
    /// 5xx.
    #[error("operator error (HTTP {status})")]
    Server {
        /// The status code.
        status: u16,
    },
    /// Another 400: the operator rejected this batch.
    #[error("rejected by the operator (400): {message}")]
    Rejected {
        /// The operator's message.
        message: String,
    },
    /// Any other status.
    #[error("unexpected HTTP status {status}")]
    Unexpected {
        /// The status code.
        status: u16,
    },
    /// The request timed out.
    #[error("request timed out")]
    Timeout,
    /// Connecting or transferring failed.
    #[error("connection problem: {0}")]
    Connection(String),
    /// The response nonce is not the request's.
    #[error("response nonce does not match the request")]
    NonceMismatch,
    /// The response could not be decrypted with our secret.
    #[error("the response does not decrypt with the client secret")]
    Decrypt,
    /// The decrypted answer is not what was asked for.
    #[error("unusable response: {0}")]
    BadResponse(String),
    /// Configuration is unusable.
    #[error("{0}")]
    Config(String),
}

impl ClientError {
    /// Errors that end the whole run at once: retrying any batch is pointless.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            ClientError::Unauthorized
                | ClientError::ClockSkew
                | ClientError::WrongSecret
                | ClientError::EnvelopeRejected { .. }
                | ClientError::Unreachable { .. }
                | ClientError::Stalled { .. }
                | ClientError::Decrypt
                | ClientError::Config(_)
        )
    }

    /// The HTTP status this error came with, if it came with one.
    pub fn http_status(&self) -> Option<u16> {
        match self {
            ClientError::Unauthorized => Some(401),
            ClientError::RateLimited { .. } => Some(429),
            ClientError::Server { status } | ClientError::Unexpected { status } => Some(*status),
            ClientError::ClockSkew
            | ClientError::WrongSecret
            | ClientError::EnvelopeRejected { .. }
            | ClientError::Rejected { .. } => Some(400),
            _ => None,
        }
    }
}
