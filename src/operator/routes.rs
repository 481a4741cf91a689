//! HTTP handling in the operator's order (`operator-emulator.md` §1–§5, §9): body size (413),
//! faults in front of the operator (429/503/reset), bearer auth (401), the envelope (400 with
//! the operator's messages), then the endpoint handler. Only 200 bodies are encrypted.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};

use super::endpoints;
use super::faults::Fault;
use super::keys::Client;
use super::State;
use crate::protocol::envelope::{EnvelopeError, Opened};

/// The operator's body limit (`MAX_REQUEST_BODY_SIZE = 1 << 20`).
pub(super) const MAX_BODY: usize = 1 << 20;
/// Most days `/ops/advance` moves the clock at once (ten years): rotation catches up day by
/// day, so an absurd value would keep the server busy for hours.
const MAX_ADVANCE_DAYS: i64 = 3650;
const HINT: &str = " See https://euid.eu/docs/getting-started/gs-encryption-decryption for details on the request envelope format.";
const UNENCRYPTED_JSON: &str = "Invalid body: The request body is unencrypted JSON. It must be an encrypted request envelope. See https://euid.eu/docs/getting-started/gs-encryption-decryption#encryption-and-decryption-code-examples for encryption and decryption code examples.";
/// The emulator's response type.
pub(super) type Resp = Response<Full<Bytes>>;

/// Marker for "drop the connection without answering".
#[derive(Debug)]
pub(super) struct Reset;

impl std::fmt::Display for Reset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection reset by fault injection")
    }
}
impl std::error::Error for Reset {}

fn text(status: StatusCode, body: &'static str) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    r
}

pub(super) fn json_resp(status: StatusCode, v: &Value) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(v.to_string())));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

pub(super) fn client_error(message: &str) -> Resp {
    json_resp(
        StatusCode::BAD_REQUEST,
        &json!({"status": "client_error", "message": message}),
    )
}

pub(super) fn unknown_error(v: &str) -> Resp {
    json_resp(
        StatusCode::INTERNAL_SERVER_ERROR,
        &json!({"status": "unknown", "message": format!("Unknown error while mapping identity {v}")}),
    )
}

/// The value of query parameter `name`, decoded (`url::form_urlencoded`).
fn query_param(req: &Request<Incoming>, name: &str) -> Option<String> {
    let q = req.uri().query()?;
    url::form_urlencoded::parse(q.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Routes one request.
pub(super) async fn handle(state: Arc<State>, req: Request<Incoming>) -> Result<Resp, Reset> {
    let path = req.uri().path().to_string();
    let route = match (req.method(), path.as_str()) {
        (&Method::GET, "/ops/healthcheck") => return Ok(text(StatusCode::OK, "OK")),
        (&Method::GET, "/metrics") => {
            let mut r = Response::new(Full::new(Bytes::from(state.metrics.render())));
            r.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            return Ok(r);
        }
        (&Method::POST, "/ops/advance") if state.admin => {
            let days = query_param(&req, "days")
                .and_then(|d| d.parse::<i64>().ok())
                .filter(|d| (0..=MAX_ADVANCE_DAYS).contains(d));
            return Ok(match days {
                Some(d) => {
                    let rotated = state.model.advance(d);
                    json_resp(
                        StatusCode::OK,
                        &json!({"advanced_days": d, "rotated_buckets": rotated, "now_ms": state.model.now_ms()}),
                    )
                }
                None => client_error(&format!(
                    "days must be an integer from 0 to {MAX_ADVANCE_DAYS}"
                )),
            });
        }
        (&Method::POST, "/ops/optout") if state.admin => {
            // {"identity_hashes": ["<base64 SHA-256>", …]}: these people opt out now.
            let Some(body) = read_body(req.into_body()).await? else {
                return Ok(client_error("body too large"));
            };
            let hashes: Option<Vec<crate::record::IdentityHash>> =
                serde_json::from_slice::<Value>(&body).ok().and_then(|v| {
                    v.get("identity_hashes")?
                        .as_array()?
                        .iter()
                        .map(|h| crate::normalize::decode_prehashed(h.as_str()?).ok())
                        .collect()
                });
            return Ok(match hashes {
                Some(h) => {
                    let added = state.model.opt_out(&h);
                    json_resp(StatusCode::OK, &json!({"opted_out": added}))
                }
                None => client_error(
                    "expected {\"identity_hashes\": [base64 SHA-256 hashes of normalized identities]}",
                ),
            });
        }
        (&Method::POST, "/ops/hold") if state.admin => {
            let after = query_param(&req, "after")
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
            state.released.send_replace(false);
            state.arrived.store(0, Ordering::SeqCst);
            state.hold_after.store(after, Ordering::SeqCst);
            return Ok(json_resp(StatusCode::OK, &json!({"hold_after": after})));
        }
        (&Method::POST, "/ops/release") if state.admin => {
            state.hold_after.store(u64::MAX, Ordering::SeqCst);
            state.released.send_replace(true);
            return Ok(json_resp(
                StatusCode::OK,
                &json!({"released": state.metrics.held.load(Ordering::SeqCst)}),
            ));
        }
        (
            &Method::POST,
            "/v3/identity/map" | "/v2/identity/map" | "/v2/identity/buckets" | "/v2/optout/status",
        ) => path.clone(),
        _ => return Ok(text(StatusCode::NOT_FOUND, "Not Found")),
    };
    let _guard = InFlight::enter(&state);
    let _optout = (route == "/v2/optout/status").then(|| state.metrics.optout_status_enter());
    let result = encrypted(&state, &route, req, _guard.count).await;
    let status = match &result {
        Ok(r) => r.status().as_u16(),
        Err(_) => 0,
    };
    state.metrics.request(&route, status);
    result
}

struct InFlight<'a> {
    state: &'a State,
    count: usize,
}

impl<'a> InFlight<'a> {
    fn enter(state: &'a State) -> InFlight<'a> {
        let count = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        InFlight { state, count }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.state.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

fn too_many(state: &State) -> Resp {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::TOO_MANY_REQUESTS;
    if let Some(s) = state.retry_after_s {
        r.headers_mut().insert("retry-after", HeaderValue::from(s));
    }
    r
}

/// Most bytes of an oversized body read (and thrown away) before answering 413: a client
/// still sending then reads the 413 instead of a broken pipe. Beyond this the connection is
/// closed with the answer.
const DRAIN_CAP: usize = 16 << 20;

/// Reads and discards up to [`DRAIN_CAP`] bytes of a body.
async fn drain(mut body: Incoming) {
    let mut seen = 0usize;
    while seen <= DRAIN_CAP {
        match body.frame().await {
            Some(Ok(frame)) => seen += frame.data_ref().map_or(0, Bytes::len),
            _ => return,
        }
    }
}

/// Reads a body of at most [`MAX_BODY`] bytes; `None` (after draining the rest) when it is
/// larger.
async fn read_body(mut body: Incoming) -> Result<Option<Bytes>, Reset> {
    let mut buf = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| Reset)?;
        if let Some(d) = frame.data_ref() {
            if buf.len() + d.len() > MAX_BODY {
                drain(body).await;
                return Ok(None);
            }
            buf.extend_from_slice(d);
        }
    }
    Ok(Some(buf.freeze()))
}

async fn encrypted(
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
fn respond(
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
fn java_b64(body: &[u8]) -> Option<Vec<u8>> {
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    const JAVA: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new()
            .with_decode_padding_mode(DecodePaddingMode::Indifferent)
            .with_decode_allow_trailing_bits(true),
    );
    JAVA.decode(body).ok()
}

fn is_json_object(bytes: &[u8]) -> bool {
    matches!(serde_json::from_slice::<Value>(bytes), Ok(Value::Object(_)))
}

fn envelope_message(e: &EnvelopeError, raw: &[u8]) -> String {
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
fn open_envelope(client: &Client, body: &[u8], binary: bool) -> Result<(Opened, bool), String> {
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
