//! Helpers shared by the integration tests: an in-process emulator with known credentials,
//! raw envelope requests, and Parquet reading.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::path::Path;

use base64::Engine;
use euid_map::operator::{self, keys::Keys, Config, LocalOperator};
use euid_map::protocol::envelope::{decode_secret, Key};

pub const API_KEY: &str = "EUID-C-L-1-test.key";
pub const SECRET: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

pub fn config() -> Config {
    let mut c = Config::demo(9);
    c.keys = Keys::single(
        &euid_map::config::Secret::new(API_KEY.into()),
        &euid_map::config::Secret::new(SECRET.into()),
    )
    .unwrap();
    c.buckets = 4096;
    c.optout = HashSet::new();
    c
}

pub async fn start(c: Config) -> LocalOperator {
    operator::spawn_local(c).await.expect("loopback bind")
}

pub fn key() -> Key {
    Key::new(&decode_secret(SECRET).unwrap())
}

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// POSTs raw bytes with the given headers; returns status, content type and body.
pub async fn post(
    url: &str,
    auth: Option<&str>,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> (u16, String, Vec<u8>) {
    euid_map::tls::install_provider();
    let mut rb = reqwest::Client::new().post(url).body(body);
    if let Some(a) = auth {
        rb = rb.header("Authorization", a);
    }
    if let Some(ct) = content_type {
        rb = rb.header("Content-Type", ct);
    }
    let r = rb.send().await.expect("request");
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, ct, r.bytes().await.unwrap().to_vec())
}

/// Sends `json` in a binary envelope to `path`; returns status and the decrypted JSON (200)
/// or the raw body (errors).
pub async fn call(op: &LocalOperator, path: &str, json: &str) -> (u16, serde_json::Value) {
    let k = key();
    let (body, nonce) = k.seal_request(now_ms(), json.as_bytes());
    let (status, ct, resp) = post(
        &format!("{}{path}", op.base_url()),
        Some(&format!("Bearer {API_KEY}")),
        Some("application/octet-stream"),
        body,
    )
    .await;
    if status != 200 {
        return (
            status,
            serde_json::from_slice(&resp).unwrap_or(serde_json::Value::String(
                String::from_utf8_lossy(&resp).into(),
            )),
        );
    }
    let raw = if ct == "application/octet-stream" {
        resp
    } else {
        base64::engine::general_purpose::STANDARD
            .decode(resp)
            .unwrap()
    };
    let opened = k.open_response(&raw).unwrap();
    assert_eq!(opened.nonce, nonce, "the operator echoes the nonce");
    let v: serde_json::Value = serde_json::from_slice(opened.json()).unwrap();
    assert_eq!(v["status"], "success");
    (status, v["body"].clone())
}

/// Reads every row of a dataset directory as JSON-like maps of column → string.
pub fn read_dataset(dir: &Path) -> Vec<std::collections::BTreeMap<String, Option<String>>> {
    use arrow_array::Array;
    let mut parts: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("part-")
        })
        .collect();
    parts.sort();
    let mut rows = Vec::new();
    for p in parts {
        let f = std::fs::File::open(&p).unwrap();
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
            .unwrap()
            .build()
            .unwrap();
        for batch in reader {
            let batch = batch.unwrap();
            let schema = batch.schema();
            for i in 0..batch.num_rows() {
                let mut row = std::collections::BTreeMap::new();
                for (c, field) in schema.fields().iter().enumerate() {
                    let col = batch.column(c);
                    let v = if col.is_null(i) {
                        None
                    } else {
                        Some(arrow_cast_string(col.as_ref(), i))
                    };
                    row.insert(field.name().clone(), v);
                }
                rows.push(row);
            }
        }
    }
    rows
}

fn arrow_cast_string(col: &dyn arrow_array::Array, i: usize) -> String {
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Int64Type, TimestampMillisecondType, UInt64Type};
    use arrow_schema::DataType;
    match col.data_type() {
        DataType::Utf8 => col.as_string::<i32>().value(i).to_string(),
        DataType::UInt64 => col.as_primitive::<UInt64Type>().value(i).to_string(),
        DataType::Int64 => col.as_primitive::<Int64Type>().value(i).to_string(),
        DataType::Timestamp(_, _) => col
            .as_primitive::<TimestampMillisecondType>()
            .value(i)
            .to_string(),
        other => format!("<{other}>"),
    }
}

/// The command under test: the binary cargo built, or `EUID_MAP_BIN` (the command a wheel
/// installed, so that `scripts/test_wheel.sh` runs these checks against it).
pub fn bin() -> String {
    std::env::var("EUID_MAP_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_euid-map").to_string())
}

/// `euid-map operator` as a child process on a free loopback port (65,536 buckets), with the
/// test key; `extra` adds flags.
pub struct Operator {
    child: std::process::Child,
    pub url: String,
}

impl Operator {
    pub fn start(extra: &[&str]) -> Operator {
        use std::io::BufRead;
        let mut child = std::process::Command::new(bin())
            .args(["operator", "--listen", "127.0.0.1:0", "--buckets", "65536"])
            .args(extra)
            .env("EUID_API_KEY", API_KEY)
            .env("EUID_CLIENT_SECRET", SECRET)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
        let url = loop {
            let line = lines.next().expect("operator prints its address").unwrap();
            if let Some(rest) = line.split("listening on ").nth(1) {
                break rest.trim().to_string();
            }
        };
        std::thread::spawn(move || for _ in lines {});
        Operator { child, url }
    }

    /// A GET or POST to the operator; the body as text.
    pub fn http(&self, post: bool, path: &str) -> String {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let url = format!("{}{path}", self.url);
        rt.block_on(async {
            euid_map::tls::install_provider();
            let c = reqwest::Client::new();
            let r = if post {
                c.post(url).send().await
            } else {
                c.get(url).send().await
            };
            r.unwrap().text().await.unwrap()
        })
    }

    /// One sample of `/metrics` (0 when absent).
    pub fn metric(&self, name: &str) -> f64 {
        euid_map::operator::metrics::sample(&self.http(false, "/metrics"), name).unwrap_or(0.0)
    }

    /// Requests the emulator answered, summed over the `euid_emulator_requests_total` series
    /// whose labels contain `label` (a route, `status="429"`; "" for all).
    pub fn requests_total(&self, label: &str) -> f64 {
        self.http(false, "/metrics")
            .lines()
            .filter(|l| l.starts_with("euid_emulator_requests_total") && l.contains(label))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Identities received in map requests so far.
    pub fn requested(&self) -> f64 {
        self.metric("euid_emulator_identity_map_inputs_sum")
    }

    /// Advances the simulated clock (needs `--admin`); returns the new simulated now.
    pub fn advance(&self, days: u32) -> String {
        let v: serde_json::Value =
            serde_json::from_str(&self.http(true, &format!("/ops/advance?days={days}"))).unwrap();
        chrono::DateTime::from_timestamp_millis(v["now_ms"].as_i64().unwrap())
            .unwrap()
            .to_rfc3339()
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port free at the time of the call (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs the real binary with only `envs` for credentials (none inherited) and no stdin.
pub fn run_bin<S: AsRef<std::ffi::OsStr>>(
    args: &[S],
    envs: &[(&str, &str)],
) -> std::process::Output {
    let mut c = std::process::Command::new(bin());
    c.args(args)
        .env_remove("EUID_API_KEY")
        .env_remove("EUID_CLIENT_SECRET")
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null());
    for (k, v) in envs {
        c.env(k, v);
    }
    c.output().unwrap()
}

/// A process's stderr as text.
pub fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The test key and secret as environment variables.
pub fn creds() -> [(&'static str, &'static str); 2] {
    [("EUID_API_KEY", API_KEY), ("EUID_CLIENT_SECRET", SECRET)]
}

/// Polls `f` until it holds: a bounded wait on a condition (a held request, a committed part),
/// never a sleep standing in for synchronisation. Panics after about 10 minutes: only a
/// hang reaches that (a loaded 2-core machine running a test file's runs in parallel once
/// took over 2 minutes to reach a held request).
pub fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..60_000 {
        if f() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("timed out waiting for {what}");
}

impl Operator {
    /// Requests the emulator holds right now (`--hold-after`, `/ops/hold`).
    pub fn held(&self) -> f64 {
        self.metric("euid_emulator_held_requests")
    }

    /// POSTs a JSON body to an admin route; the answer as text.
    pub fn post_json(&self, path: &str, body: &serde_json::Value) -> String {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let url = format!("{}{path}", self.url);
        rt.block_on(async {
            euid_map::tls::install_provider();
            reqwest::Client::new()
                .post(url)
                .body(body.to_string())
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        })
    }

    /// Lets the held requests go on, and stops holding.
    pub fn release(&self) {
        self.http(true, "/ops/release");
    }
}
