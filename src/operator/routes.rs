//! HTTP handling in the operator's order (`operator-emulator.md` §1–§5, §9): body size (413),
//! faults in front of the operator (429/503/reset), bearer auth (401), the envelope (400 with
//! the operator's messages), then the endpoint handler. Only 200 bodies are encrypted.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};

use super::sealed::encrypted;
use super::State;

/// The operator's body limit (`MAX_REQUEST_BODY_SIZE = 1 << 20`).
pub(super) const MAX_BODY: usize = 1 << 20;
/// Most days `/ops/advance` moves the clock at once (ten years): rotation catches up day by
/// day, so an absurd value would keep the server busy for hours.
pub(super) const MAX_ADVANCE_DAYS: i64 = 3650;
pub(super) const HINT: &str = " See https://euid.eu/docs/getting-started/gs-encryption-decryption for details on the request envelope format.";
pub(super) const UNENCRYPTED_JSON: &str = "Invalid body: The request body is unencrypted JSON. It must be an encrypted request envelope. See https://euid.eu/docs/getting-started/gs-encryption-decryption#encryption-and-decryption-code-examples for encryption and decryption code examples.";
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

pub(super) fn text(status: StatusCode, body: &'static str) -> Resp {
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
pub(super) fn query_param(req: &Request<Incoming>, name: &str) -> Option<String> {
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

pub(super) struct InFlight<'a> {
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

pub(super) fn too_many(state: &State) -> Resp {
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
pub(super) const DRAIN_CAP: usize = 16 << 20;

/// Reads and discards up to [`DRAIN_CAP`] bytes of a body.
pub(super) async fn drain(mut body: Incoming) {
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
pub(super) async fn read_body(mut body: Incoming) -> Result<Option<Bytes>, Reset> {
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
