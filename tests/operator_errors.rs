//! The emulator's error paths, each with the operator's status and body
//! (`operator-emulator.md` §1–§5, §9).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use base64::Engine;
use common::*;

fn b64(b: &[u8]) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .encode(b)
        .into_bytes()
}

async fn message(
    op: &euid_map::operator::LocalOperator,
    auth: Option<&str>,
    ct: Option<&str>,
    body: Vec<u8>,
) -> (u16, serde_json::Value) {
    let (s, _, b) = post(
        &format!("{}/v3/identity/map", op.base_url()),
        auth,
        ct,
        body,
    )
    .await;
    (
        s,
        serde_json::from_slice(&b).unwrap_or(serde_json::Value::String(
            String::from_utf8_lossy(&b).into(),
        )),
    )
}

const BEARER: &str = "Bearer EUID-C-L-1-test.key";

#[tokio::test]
async fn unknown_or_missing_key_gets_401_without_message() {
    let op = start(config()).await;
    let (body, _) = key().seal_request(now_ms(), b"{\"email_hash\":[]}");
    let (s, v) = message(
        &op,
        Some("Bearer nope"),
        Some("application/octet-stream"),
        body.clone(),
    )
    .await;
    assert_eq!((s, v), (401, serde_json::json!({"status": "unauthorized"})));
    let (s, _) = message(&op, None, Some("application/octet-stream"), body.clone()).await;
    assert_eq!(s, 401);
    // The prefix is case-insensitive and the header is trimmed, as the operator does.
    let (s, _) = message(
        &op,
        Some("  bEaReR EUID-C-L-1-test.key  "),
        Some("application/octet-stream"),
        body,
    )
    .await;
    assert_eq!(s, 200);
    op.stop().await;
}

#[tokio::test]
async fn oversized_body_gets_413_plain_text_before_auth() {
    let op = start(config()).await;
    let (s, ct, b) = post(
        &format!("{}/v3/identity/map", op.base_url()),
        None,
        None,
        vec![b'A'; (1 << 20) + 1],
    )
    .await;
    assert_eq!(
        (s, ct.as_str(), b.as_slice()),
        (413, "text/plain", b"Request Entity Too Large".as_slice())
    );
    op.stop().await;
}

/// Issue #9.13: a client still sending a body over 1 MiB reads the 413, not a broken pipe.
#[tokio::test]
async fn a_client_still_sending_an_oversized_body_reads_the_413() {
    let op = start(config()).await;
    for size in [(1 << 20) + 1, 8 << 20] {
        let (s, _, b) = post(
            &format!("{}/v3/identity/map", op.base_url()),
            Some(BEARER),
            Some("application/octet-stream"),
            vec![b'A'; size],
        )
        .await;
        assert_eq!(
            (s, b.as_slice()),
            (413, b"Request Entity Too Large".as_slice())
        );
    }
    let (s, _) = call(&op, "/v3/identity/map", r#"{"email_hash":[]}"#).await;
    assert_eq!(s, 200, "the server keeps serving");
    op.stop().await;
}

/// Issue #9.14: overflow-proof arithmetic on client times and `days`.
#[tokio::test]
async fn absurd_client_times_and_days_are_refused_without_crashing() {
    let mut c = config();
    c.admin = true;
    let op = start(c).await;
    let k = key();
    for ts in [i64::MIN, i64::MAX, i64::MIN + 1] {
        let (s, v) = message(
            &op,
            Some(BEARER),
            Some("application/octet-stream"),
            k.seal_request(ts, b"{}").0,
        )
        .await;
        assert_eq!(s, 400);
        assert!(v["message"]
            .as_str()
            .unwrap()
            .starts_with("Invalid timestamp"));
    }
    for days in ["9223372036854775807", "-1", "3651"] {
        let (s, _, _) = post(
            &format!("{}/ops/advance?days={days}", op.base_url()),
            None,
            None,
            vec![],
        )
        .await;
        assert_eq!(s, 400, "days={days}");
    }
    let (s, _) = call(&op, "/v3/identity/map", r#"{"email_hash":[]}"#).await;
    assert_eq!(s, 200, "the server keeps serving");
    op.stop().await;
}

#[tokio::test]
async fn each_envelope_failure_has_the_operators_400_message() {
    let op = start(config()).await;
    let k = key();
    let cases: Vec<(Option<&str>, Vec<u8>, &str)> = vec![
        (None, vec![], "Invalid body: Body is missing."),
        (
            None,
            b"%%%not base64%%%".to_vec(),
            "Invalid body: Body is not valid base64.",
        ),
        (
            None,
            b"{\"email\":[\"a@b.c\"]}".to_vec(),
            "Invalid body: The request body is unencrypted JSON.",
        ),
        (
            None,
            b64(&[1u8; 20]),
            "Invalid body: Body too short. Check encryption method.",
        ),
        (
            None,
            b64(&{
                let mut e = k.seal_request(now_ms(), b"{}").0;
                e[0] = 7;
                e
            }),
            "Invalid body: Invalid request envelope format version: received 7, must be 1.",
        ),
        (
            None,
            b64(&{
                let mut e = k.seal_request(now_ms(), b"{}").0;
                let n = e.len();
                e[n - 1] ^= 1;
                e
            }),
            "Invalid body: Check encryption key (ClientSecret).",
        ),
        (
            Some("application/octet-stream"),
            k.seal_request(now_ms() - 61_000, b"{}").0,
            "Invalid timestamp: Request too old or client time drift.",
        ),
        (
            Some("application/octet-stream"),
            k.seal_request(now_ms() + 61_000, b"{}").0,
            "Invalid timestamp: Request too old or client time drift.",
        ),
        (
            Some("application/octet-stream"),
            k.seal_request(now_ms(), b"[1,2]").0,
            "Invalid payload in body: Data is not valid json string.",
        ),
    ];
    for (ct, body, expected) in cases {
        let (s, v) = message(&op, Some(BEARER), ct, body).await;
        assert_eq!(s, 400, "{expected}");
        assert_eq!(v["status"], "client_error");
        let m = v["message"].as_str().unwrap();
        assert!(
            m.starts_with(expected),
            "{m:?} should start with {expected:?}"
        );
    }
    op.stop().await;
}

#[tokio::test]
async fn v3_request_validation_matches_the_operator() {
    let op = start(config()).await;
    for bad in [
        r#"{"invalid_key":[]}"#,
        r#"{"email":["a@b.c",null]}"#,
        r#"{"email":"a@b.c"}"#,
        r#"{"policy":1,"email":[]}"#,
    ] {
        let (s, v) = call(&op, "/v3/identity/map", bad).await;
        assert_eq!(
            (s, v["message"].as_str()),
            (400, Some("Incorrect request format")),
            "{bad}"
        );
    }
    let (s, v) = call(&op, "/v3/identity/map", "{}").await;
    assert_eq!(s, 400);
    assert!(v["message"]
        .as_str()
        .unwrap()
        .starts_with("Required Parameter Missing: one or more of"));
    for empty in [r#"{"email":[]}"#, r#"{"email_hash":null}"#] {
        let (s, v) = call(&op, "/v3/identity/map", empty).await;
        assert_eq!(s, 200);
        for k in ["email", "email_hash", "phone", "phone_hash"] {
            assert_eq!(
                v[k],
                serde_json::json!([]),
                "{empty}: all four arrays present and empty"
            );
        }
    }
    op.stop().await;
}

#[tokio::test]
async fn v3_answers_are_positional_with_explicit_null_previous() {
    let op = start(config()).await;
    let body = r#"{"email":["user@example.com","not an email","optout@example.com"],"phone":["+12345678901","12345"],"email_hash":["0C7E6A405862E402EB76A70F8A26FC732D07C32931E9FAE9AB1582911D2E8A3B","DH5qQFhi5ALrdqcPiib8cy0Hwykx6frpqxWCkR0uijs="]}"#;
    let (s, v) = call(&op, "/v3/identity/map", body).await;
    assert_eq!(s, 200);
    let e = v["email"].as_array().unwrap();
    assert_eq!(e.len(), 3);
    assert!(e[0]["u"].is_string() && e[0]["r"].is_i64());
    assert!(
        e[0].as_object().unwrap().contains_key("p"),
        "p is always present"
    );
    assert_eq!(e[1], serde_json::json!({"e": "invalid identifier"}));
    assert_eq!(e[2], serde_json::json!({"e": "optout"}));
    assert_eq!(
        v["phone"][1],
        serde_json::json!({"e": "invalid identifier"})
    );
    assert_eq!(
        v["email_hash"][0]["u"], v["email_hash"][1]["u"],
        "hex and base64 of one hash map alike"
    );
    assert_eq!(v["phone_hash"], serde_json::json!([]));
    op.stop().await;
}

#[tokio::test]
async fn v2_map_rules_and_shape() {
    let op = start(config()).await;
    let (s, v) = call(
        &op,
        "/v2/identity/map",
        r#"{"email":["a@b.c"],"phone":["+12345678901"]}"#,
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(v["message"], "Required Parameter Missing: exactly one of [email, email_hash, phone, phone_hash] must be specified");
    let (s, v) = call(&op, "/v2/identity/map", r#"{"email":"a@b.c"}"#).await;
    assert_eq!(
        (s, v["message"].as_str()),
        (400, Some("email must be an array"))
    );
    let (s, v) = call(
        &op,
        "/v2/identity/map",
        r#"{"email":[],"email_hash":["DH5qQFhi5ALrdqcPiib8cy0Hwykx6frpqxWCkR0uijs="],"policy":1}"#,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        v["mapped"][0]["identifier"],
        "DH5qQFhi5ALrdqcPiib8cy0Hwykx6frpqxWCkR0uijs="
    );
    assert!(
        v.get("unmapped").is_none(),
        "unmapped is left out when empty"
    );
    let (_, v) = call(
        &op,
        "/v2/identity/map",
        r#"{"email":["optout@example.com","x"]}"#,
    )
    .await;
    assert_eq!(
        v["unmapped"][0],
        serde_json::json!({"identifier": "optout@example.com", "reason": "optout"})
    );
    assert_eq!(v["unmapped"][1]["reason"], "invalid identifier");
    assert_eq!(v["mapped"], serde_json::json!([]));
    op.stop().await;
}

#[tokio::test]
async fn buckets_parse_since_timestamp_like_the_operator() {
    let op = start(config()).await;
    let (s, v) = call(&op, "/v2/identity/buckets", "{}").await;
    assert_eq!(
        (s, v["message"].as_str()),
        (400, Some("missing parameter since_timestamp"))
    );
    for bad in ["2024-01-01T00:00:00Z", "2024-01-01", "yesterday"] {
        let (s, v) = call(
            &op,
            "/v2/identity/buckets",
            &format!("{{\"since_timestamp\":\"{bad}\"}}"),
        )
        .await;
        assert_eq!(
            (s, v["message"].as_str()),
            (400, Some("invalid date, must conform to ISO 8601")),
            "{bad}"
        );
    }
    let (s, v) = call(
        &op,
        "/v2/identity/buckets",
        r#"{"since_timestamp":"2000-01-01T00:00:00.123456"}"#,
    )
    .await;
    assert_eq!(s, 200);
    let all = v.as_array().unwrap();
    assert_eq!(all.len(), 4096, "every bucket changed since 2000");
    let lu = all[0]["last_updated"].as_str().unwrap();
    assert!(
        lu.len() == 23 && lu.ends_with(".001"),
        "{lu}: three fraction digits, no zone"
    );
    let (_, v) = call(
        &op,
        "/v2/identity/buckets",
        r#"{"since_timestamp":"2999-01-01T00:00:00"}"#,
    )
    .await;
    assert_eq!(v, serde_json::json!([]));
    op.stop().await;
}

#[tokio::test]
async fn text_mode_and_binary_fallback_answer_in_base64_text() {
    let op = start(config()).await;
    let k = key();
    let url = format!("{}/v3/identity/map", op.base_url());
    for ct in [None, Some("application/octet-stream")] {
        let (body, nonce) = k.seal_request(
            now_ms(),
            br#"{"email_hash":["DH5qQFhi5ALrdqcPiib8cy0Hwykx6frpqxWCkR0uijs="]}"#,
        );
        let (s, rct, resp) = post(&url, Some(BEARER), ct, b64(&body)).await;
        assert_eq!((s, rct.as_str()), (200, "text/plain"), "{ct:?}");
        let raw = base64::engine::general_purpose::STANDARD
            .decode(resp)
            .unwrap();
        assert_eq!(k.open_response(&raw).unwrap().nonce, nonce);
    }
    op.stop().await;
}

#[tokio::test]
async fn optout_status_limits_and_answer() {
    let op = start(config()).await;
    let (s, v) = call(&op, "/v2/optout/status", "{}").await;
    assert_eq!(
        (s, v["message"].as_str()),
        (400, Some("Required Parameter Missing: advertising_ids"))
    );
    let many = serde_json::json!({"advertising_ids": vec!["x"; 5001]}).to_string();
    let (s, v) = call(&op, "/v2/optout/status", &many).await;
    assert_eq!(
        (s, v["message"].as_str()),
        (400, Some("Request payload is too large"))
    );
    let (_, v) = call(
        &op,
        "/v2/optout/status",
        r#"{"advertising_ids":["nobody"]}"#,
    )
    .await;
    assert_eq!(v, serde_json::json!({"opted_out": []}));
    op.stop().await;
}

#[tokio::test]
async fn metrics_count_requests_items_and_reused_nonces() {
    let op = start(config()).await;
    let k = key();
    let url = format!("{}/v3/identity/map", op.base_url());
    let (body, _) = k.seal_request(
        now_ms(),
        br#"{"email_hash":["DH5qQFhi5ALrdqcPiib8cy0Hwykx6frpqxWCkR0uijs="],"phone_hash":[]}"#,
    );
    for _ in 0..2 {
        let (s, _, _) = post(
            &url,
            Some(BEARER),
            Some("application/octet-stream"),
            body.clone(),
        )
        .await;
        assert_eq!(s, 200);
    }
    let m = op.metrics_text();
    let get = |k: &str| euid_map::operator::metrics::sample(&m, k);
    assert_eq!(
        get("euid_emulator_requests_total{route=\"/v3/identity/map\",status=\"200\"}"),
        Some(2.0)
    );
    assert_eq!(get("euid_emulator_identity_map_inputs_sum"), Some(2.0));
    assert_eq!(
        get("euid_emulator_identities_total{outcome=\"mapped\"}"),
        Some(2.0)
    );
    assert_eq!(
        get("euid_emulator_nonce_reuse_total"),
        Some(1.0),
        "the resent envelope is visible"
    );
    op.stop().await;
}

/// Issue #26.16: `Retry-After` is honoured end to end: after every 429 the next request
/// arrives no sooner than the server asked (the emulator measures the shortest gap; a lower
/// bound, which a slow machine can only lengthen).
#[test]
fn retry_after_is_honoured_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in.csv");
    std::fs::write(
        &input,
        "email\na@example.com\nb@example.com\nc@example.com\n",
    )
    .unwrap();
    let op = Operator::start(&["--rate-limit", "1", "--retry-after", "2"]);
    let out = tmp.path().join("out");
    let o = run_bin(
        &[
            "map",
            input.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--base-url",
            &op.url,
            "--batch-size",
            "1",
            "--concurrency",
            "1",
            "-q",
        ],
        &creds(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let throttled = op.requests_total("status=\"429\"");
    assert!(
        throttled > 0.0,
        "the rate limit answered 429 (with Retry-After)"
    );
    let gap = op.metric("euid_emulator_min_gap_after_429_seconds");
    assert!(
        gap >= 2.0,
        "a retry came {gap} s after a 429 with Retry-After: 2"
    );
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("_manifest.json")).unwrap()).unwrap();
    assert!(m["client"]["http_429"].as_u64().unwrap() >= 1, "{m}");
}

/// Issue #26.16: a request refused for its timestamp is retried once with a fresh envelope,
/// then the run stops with a clock message (not a retry storm, not a hang).
#[test]
fn a_clock_skew_answer_is_retried_once_then_stops_the_run() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in.csv");
    std::fs::write(&input, "email\na@example.com\n").unwrap();
    // The emulator's clock two minutes ahead, beyond its 60 s window: every timestamp is
    // stale, whatever the machine's speed.
    let op = Operator::start(&["--clock-offset-secs", "120"]);
    let out = tmp.path().join("out");
    let o = run_bin(
        &[
            "map",
            input.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--base-url",
            &op.url,
            "-q",
        ],
        &creds(),
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).to_lowercase().contains("clock"),
        "{}",
        stderr(&o)
    );
    assert!(!out.join("_SUCCESS").exists());
    let sent = op.http(false, "/metrics");
    let requests: f64 = sent
        .lines()
        .filter(|l| l.starts_with("euid_emulator_requests_total{route=\"/v3/identity/map\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(requests, 2.0, "the first attempt and one retry: {sent}");
}
