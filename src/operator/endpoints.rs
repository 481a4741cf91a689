//! The emulator's endpoint handlers, behind the envelope: v3 and v2 identity map, salt
//! buckets and opt-out status, validating inputs as the operator does (§5–§6).

use std::borrow::Cow;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use serde_json::{json, Value};

use super::model::Mapping;
use super::routes::{client_error, unknown_error, Resp};
use super::State;
use crate::normalize;
use crate::record::{IdentityHash, IdentityKind};

/// `/v2/optout/status` accepts at most this many ids.
const OPTOUT_STATUS_MAX: usize = 5000;
const V3_MISSING: &str = "Required Parameter Missing: one or more of [email, email_hash, phone, phone_hash] must be specified";
const V2_MISSING: &str = "Required Parameter Missing: exactly one of [email, email_hash, phone, phone_hash] must be specified";
const INCORRECT_FORMAT: &str = "Incorrect request format";
const KEYS: [&str; 4] = ["email", "email_hash", "phone", "phone_hash"];

/// A handler's answer: the response body, or a ready error response.
pub(super) type Handled = Result<String, Box<Resp>>;

fn bad(message: &str) -> Box<Resp> {
    Box::new(client_error(message))
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

pub(super) fn map_v3(state: &State, payload: Option<&Value>, shift: bool) -> Handled {
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

pub(super) fn map_v2(state: &State, payload: Option<&Value>) -> Handled {
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

pub(super) fn buckets(state: &State, payload: Option<&Value>) -> Handled {
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

pub(super) fn optout_status(state: &State, payload: Option<&Value>) -> Handled {
    let Some(ids) = payload
        .and_then(|p| p.get("advertising_ids"))
        .and_then(Value::as_array)
    else {
        return Err(bad("Required Parameter Missing: advertising_ids"));
    };
    if ids.len() > OPTOUT_STATUS_MAX {
        return Err(bad("Request payload is too large"));
    }
    // An exact string match on the raw id, as the operator does.
    let opted: std::collections::HashMap<String, i64> =
        state.optout_raw_ids().into_iter().collect();
    let out: Vec<Value> = ids
        .iter()
        .filter_map(Value::as_str)
        .filter_map(|id| opted.get(id).map(|since| (id, since)))
        .map(|(id, since)| json!({"advertising_id": id, "opted_out_since": since}))
        .collect();
    Ok(json!({"opted_out": out}).to_string())
}
