//! HTTP handling in the operator's order (`operator-emulator.md` §1–§5, §9): body size (413),
//! faults in front of the operator (429/503/reset), bearer auth (401), the envelope (400 with
//! the operator's messages), then the endpoint handler. Only 200 bodies are encrypted.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};
use std::borrow::Cow;
use std::fmt::Write as _;

use super::faults::Fault;
use super::keys::Client;
use super::model::Mapping;
use super::State;
use crate::normalize;
use crate::protocol::envelope::{EnvelopeError, Opened};
use crate::record::{IdentityHash, IdentityKind};

/// The operator's body limit (`MAX_REQUEST_BODY_SIZE = 1 << 20`).
pub(super) const MAX_BODY: usize = 1 << 20;
/// Most days `/ops/advance` moves the clock at once (ten years): rotation catches up day by
/// day, so an absurd value would keep the server busy for hours.
const MAX_ADVANCE_DAYS: i64 = 3650;
/// `/v2/optout/status` accepts at most this many ids.
const OPTOUT_STATUS_MAX: usize = 5000;
const HINT: &str = " See https://euid.eu/docs/getting-started/gs-encryption-decryption for details on the request envelope format.";
const UNENCRYPTED_JSON: &str = "Invalid body: The request body is unencrypted JSON. It must be an encrypted request envelope. See https://euid.eu/docs/getting-started/gs-encryption-decryption#encryption-and-decryption-code-examples for encryption and decryption code examples.";
const V3_MISSING: &str = "Required Parameter Missing: one or more of [email, email_hash, phone, phone_hash] must be specified";
const V2_MISSING: &str = "Required Parameter Missing: exactly one of [email, email_hash, phone, phone_hash] must be specified";
const INCORRECT_FORMAT: &str = "Incorrect request format";
const KEYS: [&str; 4] = ["email", "email_hash", "phone", "phone_hash"];

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

fn json_resp(status: StatusCode, v: &Value) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(v.to_string())));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn client_error(message: &str) -> Resp {
    json_resp(
        StatusCode::BAD_REQUEST,
        &json!({"status": "client_error", "message": message}),
    )
}

/// A handler's answer: the response body, or a ready error response.
type Handled = Result<String, Box<Resp>>;

fn bad(message: &str) -> Box<Resp> {
    Box::new(client_error(message))
}

fn unknown_error(v: &str) -> Resp {
    json_resp(
        StatusCode::INTERNAL_SERVER_ERROR,
        &json!({"status": "unknown", "message": format!("Unknown error while mapping identity {v}")}),
    )
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
            let days = req
                .uri()
                .query()
                .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("days=")))
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
        (
            &Method::POST,
            "/v3/identity/map" | "/v2/identity/map" | "/v2/identity/buckets" | "/v2/optout/status",
        ) => path.clone(),
        _ => return Ok(text(StatusCode::NOT_FOUND, "Not Found")),
    };
    let _guard = InFlight::enter(&state);
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
    // 2. What the infrastructure in front of the operator does: rate limit, overload, faults.
    if state.rate_limit.as_ref().is_some_and(|tb| !tb.try_take())
        || state.max_in_flight.is_some_and(|m| in_flight > m)
    {
        state.metrics.fault("429");
        return Ok(too_many(state));
    }
    let fault = state.faults.draw();
    if let Some(f) = fault {
        state.metrics.fault(f.name());
    }
    match fault {
        Some(Fault::TooMany) => return Ok(too_many(state)),
        Some(Fault::Unavailable) => {
            return Ok(text(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable"))
        }
        Some(Fault::Reset) => return Err(Reset),
        Some(Fault::Slow) => tokio::time::sleep(state.faults.slow()).await,
        _ => {}
    }
    // 3. Authentication.
    let expired = state
        .expire_after
        .is_some_and(|n| state.served.fetch_add(1, Ordering::Relaxed) >= n);
    let Some(client) = state.keys.authorize(auth.as_deref()).filter(|_| !expired) else {
        return Ok(json_resp(
            StatusCode::UNAUTHORIZED,
            &json!({"status": "unauthorized"}),
        ));
    };
    // 4. Envelope.
    let (opened, binary_reply) = match open_envelope(client, &body, binary) {
        Ok(x) => x,
        Err(message) => return Ok(client_error(&message)),
    };
    let now = chrono::Utc::now().timestamp_millis();
    // abs_diff: a client may send any 64-bit time, i64::MIN included.
    if now.abs_diff(opened.ts_ms) > state.timestamp_window_ms.unsigned_abs() {
        return Ok(client_error(
            "Invalid timestamp: Request too old or client time drift.",
        ));
    }
    state.metrics.nonce(opened.nonce);
    let payload: Option<Value> = if opened.json.is_empty() {
        None
    } else {
        match serde_json::from_slice::<Value>(&opened.json) {
            Ok(v @ Value::Object(_)) => Some(v),
            _ => {
                return Ok(client_error(
                    "Invalid payload in body: Data is not valid json string.",
                ))
            }
        }
    };
    if fault == Some(Fault::Internal) {
        return Ok(unknown_error(if route.starts_with("/v3") {
            "v3"
        } else {
            "v2"
        }));
    }
    // 5. The endpoint.
    let answer = match route {
        "/v3/identity/map" => map_v3(state, payload.as_ref(), fault == Some(Fault::Shift)),
        "/v2/identity/map" => map_v2(state, payload.as_ref()),
        "/v2/identity/buckets" => buckets(state, payload.as_ref()),
        _ => optout_status(state, payload.as_ref()),
    };
    let body = match answer {
        Ok(body) => body,
        Err(resp) => return Ok(*resp),
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
    Ok(r)
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

/// Validates one input the way the operator does (§6) and returns its identity hash.
fn identity_hash(key: &str, value: &str) -> Option<IdentityHash> {
    match key {
        "email" => normalize::hash_email(value).ok(),
        "phone" => normalize::hash_phone(value).ok(),
        _ => normalize::decode_prehashed(value)
            .ok()
            .filter(|_| value.len() == 44 || value.len() == 64),
    }
}

fn kind_of(key: &str) -> IdentityKind {
    if key.starts_with("email") {
        IdentityKind::Email
    } else {
        IdentityKind::Phone
    }
}

/// Maps the valid inputs of one request in one model call; `None` for invalid ones.
fn map_inputs(state: &State, inputs: &[(&str, Cow<'_, str>)]) -> Vec<Option<Mapping>> {
    let hashes: Vec<Option<IdentityHash>> =
        inputs.iter().map(|(k, v)| identity_hash(k, v)).collect();
    let valid: Vec<(IdentityKind, IdentityHash)> = inputs
        .iter()
        .zip(&hashes)
        .filter_map(|((k, _), h)| h.map(|h| (kind_of(k), h)))
        .collect();
    let mut mapped = state.model.map_many(&valid).into_iter();
    state.metrics.items(inputs.len() as u64);
    hashes
        .iter()
        .map(|h| {
            let m = h.and_then(|_| mapped.next());
            let counter = match &m {
                Some(Mapping::Mapped { .. }) => &state.metrics.mapped,
                Some(Mapping::Optout) => &state.metrics.optout,
                None => &state.metrics.invalid,
            };
            counter.fetch_add(1, Ordering::Relaxed);
            m
        })
        .collect()
}

fn map_v3(state: &State, payload: Option<&Value>, shift: bool) -> Handled {
    let Some(obj) = payload.and_then(Value::as_object) else {
        return Err(bad(V3_MISSING));
    };
    if obj.is_empty() {
        return Err(bad(V3_MISSING));
    }
    let mut inputs: Vec<(&str, Cow<'_, str>)> = Vec::new();
    let mut lens = [0usize; 4];
    for (k, v) in obj {
        let Some(slot) = KEYS.iter().position(|x| x == k) else {
            return Err(bad(INCORRECT_FORMAT));
        };
        match v {
            Value::Null => {}
            Value::Array(items) => {
                for item in items {
                    let s = match item {
                        Value::String(s) => Cow::Borrowed(s.as_str()),
                        Value::Number(n) => Cow::Owned(n.to_string()),
                        Value::Bool(b) => Cow::Owned(b.to_string()),
                        _ => return Err(bad(INCORRECT_FORMAT)),
                    };
                    inputs.push((KEYS[slot], s));
                }
                lens[slot] = items.len();
            }
            _ => return Err(bad(INCORRECT_FORMAT)),
        }
    }
    if state
        .poison
        .as_deref()
        .is_some_and(|p| inputs.iter().any(|(_, v)| v == p))
    {
        return Err(bad(INCORRECT_FORMAT));
    }
    // Inputs are grouped by key in KEYS order for the positional answer.
    inputs.sort_by_key(|(k, _)| KEYS.iter().position(|x| x == k));
    let mut answers = map_inputs(state, &inputs).into_iter();
    if shift && lens[3] > 0 {
        lens[1] += 1; // the first phone's answer ends up in email_hash
        lens[3] -= 1;
    }
    // Written by hand: raw ids are base64 and need no escaping, and this is the emulator's
    // hot path (a `serde_json::Value` per item cost more than the hashing).
    let mut out = String::with_capacity(16 + inputs.len() * 120);
    out.push('{');
    for (slot, key) in KEYS.iter().enumerate() {
        if slot > 0 {
            out.push(',');
        }
        let _ = write!(out, "\"{key}\":[");
        for i in 0..lens[slot] {
            if i > 0 {
                out.push(',');
            }
            match answers.next().flatten() {
                Some(Mapping::Mapped {
                    u, p, refresh_ms, ..
                }) => {
                    let _ = write!(out, "{{\"u\":\"{u}\",\"p\":");
                    match p {
                        Some(p) => {
                            let _ = write!(out, "\"{p}\"");
                        }
                        None => out.push_str("null"),
                    }
                    let _ = write!(out, ",\"r\":{}}}", refresh_ms / 1000);
                }
                Some(Mapping::Optout) => out.push_str("{\"e\":\"optout\"}"),
                None => out.push_str("{\"e\":\"invalid identifier\"}"),
            }
        }
        out.push(']');
    }
    out.push('}');
    Ok(out)
}

fn map_v2(state: &State, payload: Option<&Value>) -> Handled {
    let Some(obj) = payload.and_then(Value::as_object) else {
        return Err(Box::new(unknown_error("v2")));
    };
    let mut chosen: Option<(&str, &Vec<Value>)> = None;
    let mut present = 0;
    for key in KEYS {
        match obj.get(key) {
            None | Some(Value::Null) => {}
            Some(Value::Array(a)) => {
                present += 1;
                if !a.is_empty() {
                    if chosen.is_some() {
                        return Err(bad(V2_MISSING));
                    }
                    chosen = Some((key, a));
                }
            }
            Some(_) => return Err(bad(&format!("{key} must be an array"))),
        }
    }
    if present == 0 {
        return Err(bad(V2_MISSING));
    }
    let Some((key, items)) = chosen else {
        return Ok(json!({"mapped": []}).to_string());
    };
    let mut inputs = Vec::with_capacity(items.len());
    for item in items {
        match item {
            Value::String(s) => inputs.push((key, Cow::Borrowed(s.as_str()))),
            Value::Null => return Err(Box::new(unknown_error("v2"))),
            other => inputs.push((key, Cow::Owned(other.to_string()))),
        }
    }
    let answers = map_inputs(state, &inputs);
    let (mut mapped, mut unmapped) = (Vec::new(), Vec::new());
    for ((_, identifier), a) in inputs.iter().zip(answers) {
        match a {
            Some(Mapping::Mapped { u, bucket, .. }) => {
                mapped.push(json!({"identifier": identifier, "advertising_id": u, "bucket_id": state.model.bucket_id(bucket)}))
            }
            Some(Mapping::Optout) => unmapped.push(json!({"identifier": identifier, "reason": "optout"})),
            None => unmapped.push(json!({"identifier": identifier, "reason": "invalid identifier"})),
        }
    }
    let mut body = json!({"mapped": mapped});
    if !unmapped.is_empty() {
        body["unmapped"] = Value::Array(unmapped);
    }
    Ok(body.to_string())
}

/// Parses the operator's `since_timestamp`: ISO local date-time, taken as UTC.
fn parse_local_datetime(s: &str) -> Option<i64> {
    ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"]
        .iter()
        .find_map(|f| chrono::NaiveDateTime::parse_from_str(s, f).ok())
        .map(|dt| dt.and_utc().timestamp_millis())
}

fn buckets(state: &State, payload: Option<&Value>) -> Handled {
    let since = match payload.and_then(|p| p.get("since_timestamp")) {
        None | Some(Value::Null) => return Err(bad("missing parameter since_timestamp")),
        Some(Value::String(s)) => parse_local_datetime(s),
        Some(_) => None,
    };
    let Some(since) = since else {
        return Err(bad("invalid date, must conform to ISO 8601"));
    };
    let list: Vec<Value> = state
        .model
        .modified_since(since)
        .into_iter()
        .map(|(i, lu)| {
            let t = chrono::DateTime::from_timestamp_millis(lu).expect("bucket times are in range");
            json!({"bucket_id": state.model.bucket_id(i), "last_updated": t.format("%Y-%m-%dT%H:%M:%S%.3f").to_string()})
        })
        .collect();
    Ok(Value::Array(list).to_string())
}

fn optout_status(state: &State, payload: Option<&Value>) -> Handled {
    let Some(ids) = payload
        .and_then(|p| p.get("advertising_ids"))
        .and_then(Value::as_array)
    else {
        return Err(bad("Required Parameter Missing: advertising_ids"));
    };
    if ids.len() > OPTOUT_STATUS_MAX {
        return Err(bad("Request payload is too large"));
    }
    let opted: std::collections::HashMap<String, ()> = state
        .optout_raw_ids()
        .into_iter()
        .map(|u| (u, ()))
        .collect();
    let since = state.started_ms;
    let out: Vec<Value> = ids
        .iter()
        .filter_map(Value::as_str)
        .filter(|id| opted.contains_key(*id))
        .map(|id| json!({"advertising_id": id, "opted_out_since": since}))
        .collect();
    Ok(json!({"opted_out": out}).to_string())
}
