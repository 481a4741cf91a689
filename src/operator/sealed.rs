//! The encrypted endpoints' side of a request (`operator-emulator.md` §3–§5): auth, the
//! envelope opened as the operator opens it (base64 text or binary, its error messages),
//! the faults that act on the envelope, the endpoint's answer, and the sealed 200 response.

use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};
use serde_json::{json, Value};

use super::endpoints;
use super::faults::Fault;
use super::keys::Client;
use super::routes::*;
use super::State;
use crate::protocol::envelope::{EnvelopeError, Opened};

pub(super) async fn encrypted(
    state: &State,
    route: &str,
    req: Request<Incoming>,
    in_flight: usize,
) -> Result<Resp, Reset> {
    let arrived = tokio::time::Instant::now();
    state.metrics.arrival();
    // 1. Body size: 413 before anything else, as the Vert.x body handler does.
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let binary = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("application/octet-stream"));
    let auth = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let too_large = || text(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large");
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        drain(req.into_body()).await;
        return Ok(too_large());
    }
    let Some(body) = read_body(req.into_body()).await? else {
        return Ok(too_large());
    };
    // A held request waits for `/ops/release` (tests that must stop a run mid-way).
    let hold_after = state.hold_after.load(Ordering::SeqCst);
    if hold_after != u64::MAX && state.arrived.fetch_add(1, Ordering::SeqCst) >= hold_after {
        /// Counts a held request until it goes on or is dropped (its client went away).
        struct Held<'a>(&'a AtomicU64);
        impl Drop for Held<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        state.metrics.held.fetch_add(1, Ordering::SeqCst);
        let _held = Held(&state.metrics.held);
        let mut rx = state.released.subscribe();
        let _ = rx.wait_for(|released| *released).await;
    }
    // 2. What the infrastructure in front of the operator does: rate limit, overload, faults.
    if state.rate_limit.as_ref().is_some_and(|tb| !tb.try_take())
        || state.max_in_flight.is_some_and(|m| in_flight > m)
    {
        state.metrics.fault("429");
        state.metrics.throttled();
        return Ok(too_many(state));
    }
    let fault = state.faults.draw();
    if let Some(f) = fault {
        state.metrics.fault(f.name());
    }
    match fault {
        Some(Fault::TooMany) => {
            state.metrics.throttled();
            return Ok(too_many(state));
        }
        Some(Fault::Unavailable) => {
            return Ok(text(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable"))
        }
        Some(Fault::Reset) => return Err(Reset),
        _ => {}
    }
    let answer = respond(state, route, auth, &body, binary, fault);
    if fault == Some(Fault::Slow) {
        tokio::time::sleep_until(arrived + state.faults.slow()).await;
    }
    Ok(answer)
}

/// Steps 3 to 6: authentication, envelope, endpoint and the sealed answer.
pub(super) fn respond(
    state: &State,
    route: &str,
    auth: Option<String>,
    body: &[u8],
    binary: bool,
    fault: Option<Fault>,
) -> Resp {
    // 3. Authentication.
    let expired = state
        .expire_after
        .is_some_and(|n| state.served.fetch_add(1, Ordering::Relaxed) >= n);
    let Some(client) = state.keys.authorize(auth.as_deref()).filter(|_| !expired) else {
        return json_resp(StatusCode::UNAUTHORIZED, &json!({"status": "unauthorized"}));
    };
    // 4. Envelope.
    let (opened, binary_reply) = match open_envelope(client, body, binary) {
        Ok(x) => x,
        Err(message) => return client_error(&message),
    };
    let now = chrono::Utc::now().timestamp_millis() + state.clock_offset_ms;
    // abs_diff: a client may send any 64-bit time, i64::MIN included.
    if now.abs_diff(opened.ts_ms) > state.timestamp_window_ms.unsigned_abs() {
        return client_error("Invalid timestamp: Request too old or client time drift.");
    }
    state.metrics.nonce(opened.nonce);
    let payload: Option<Value> = if opened.json().is_empty() {
        None
    } else {
        match serde_json::from_slice::<Value>(opened.json()) {
            Ok(v @ Value::Object(_)) => Some(v),
            _ => return client_error("Invalid payload in body: Data is not valid json string."),
        }
    };
    if fault == Some(Fault::Internal) {
        return unknown_error(if route.starts_with("/v3") { "v3" } else { "v2" });
    }
    // 5. The endpoint.
    let answer = match route {
        "/v3/identity/map" => {
            endpoints::map_v3(state, payload.as_ref(), fault == Some(Fault::Shift))
        }
        "/v2/identity/map" => endpoints::map_v2(state, payload.as_ref()),
        "/v2/identity/buckets" => endpoints::buckets(state, payload.as_ref()),
        _ => endpoints::optout_status(state, payload.as_ref()),
    };
    let body = match answer {
        Ok(body) => body,
        Err(resp) => return *resp,
    };
    // 6. The encrypted 200.
    let plain = format!("{{\"body\":{body},\"status\":\"success\"}}");
    let mut nonce = opened.nonce;
    if fault == Some(Fault::WrongNonce) {
        nonce[0] ^= 0xFF;
    }
    let sealed = client.key.seal_response(
        chrono::Utc::now().timestamp_millis(),
        nonce,
        plain.as_bytes(),
    );
    let as_text = !binary_reply || fault == Some(Fault::TextMode);
    let mut r = if as_text {
        let mut r = Response::new(Full::new(Bytes::from(
            base64::engine::general_purpose::STANDARD.encode(&sealed),
        )));
        r.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        r
    } else {
        let mut r = Response::new(Full::new(Bytes::from(sealed)));
        r.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        r
    };
    *r.status_mut() = StatusCode::OK;
    r
}

/// Java's basic decoder: standard alphabet, padding optional, no whitespace.
pub(super) fn java_b64(body: &[u8]) -> Option<Vec<u8>> {
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    const JAVA: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new()
            .with_decode_padding_mode(DecodePaddingMode::Indifferent)
            .with_decode_allow_trailing_bits(true),
    );
    JAVA.decode(body).ok()
}

pub(super) fn is_json_object(bytes: &[u8]) -> bool {
    matches!(serde_json::from_slice::<Value>(bytes), Ok(Value::Object(_)))
}

pub(super) fn envelope_message(e: &EnvelopeError, raw: &[u8]) -> String {
    match e {
        EnvelopeError::TooShort(_) if is_json_object(raw) => UNENCRYPTED_JSON.to_string(),
        EnvelopeError::Version(_) if is_json_object(raw) => UNENCRYPTED_JSON.to_string(),
        EnvelopeError::TooShort(_) => {
            format!("Invalid body: Body too short. Check encryption method.{HINT}")
        }
        EnvelopeError::Version(v) => format!(
            "Invalid body: Invalid request envelope format version: received {v}, must be 1.{HINT}"
        ),
        EnvelopeError::Decrypt => {
            format!("Invalid body: Check encryption key (ClientSecret).{HINT}")
        }
    }
}

/// Opens the request envelope in the operator's order; returns it and whether to answer in
/// binary. An octet-stream body that is really base64 is accepted and answered in text.
pub(super) fn open_envelope(
    client: &Client,
    body: &[u8],
    binary: bool,
) -> Result<(Opened, bool), String> {
    if body.is_empty() {
        return Err("Invalid body: Body is missing.".to_string());
    }
    if binary {
        match client.key.open_request(body) {
            Ok(o) => return Ok((o, true)),
            Err(e) => {
                return match java_b64(body) {
                    Some(decoded) => client
                        .key
                        .open_request(&decoded)
                        .map(|o| (o, false))
                        .map_err(|e2| envelope_message(&e2, &decoded)),
                    None => Err(envelope_message(&e, body)),
                };
            }
        }
    }
    let Some(decoded) = java_b64(body) else {
        return Err(if is_json_object(body) {
            UNENCRYPTED_JSON.to_string()
        } else {
            format!("Invalid body: Body is not valid base64.{HINT}")
        });
    };
    client
        .key
        .open_request(&decoded)
        .map(|o| (o, false))
        .map_err(|e| envelope_message(&e, &decoded))
}
