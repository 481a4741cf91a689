//! Issue #11: object storage end to end, against real servers on loopback started here:
//! moto's S3 server (PyPI `moto[server]`) and Azurite (npm `azurite`), both installed by
//! `scripts/install_ci_deps.sh` under `target/`. Every result is compared with the same run
//! on local files. Where a server is missing the tests say so, and fail under CI, so a green
//! CI means they ran.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch, StringArray};
use common::{creds, free_port, read_dataset, run_bin, stderr, Operator};

/// The command under test: `common::bin()` (the built binary, or `EUID_MAP_BIN`).
static BIN: std::sync::LazyLock<String> = std::sync::LazyLock::new(common::bin);

type Row = BTreeMap<String, Option<String>>;

/// A tool installed by `scripts/install_ci_deps.sh` under `target/`; `None` (and a failure
/// under CI) when missing.
fn tool(rel: &str) -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    if p.exists() {
        return Some(p);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{rel} is missing: .ci/run installs it with scripts/install_ci_deps.sh"
    );
    eprintln!("skipped: {rel} is not installed (scripts/install_ci_deps.sh installs it)");
    None
}

/// Waits until something listens on `port` (a readiness check, not a synchronisation).
fn wait_listening(port: u16, child: &mut Child) {
    for _ in 0..3000 {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        assert!(child.try_wait().unwrap().is_none(), "the server exited");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("nothing listens on {port}");
}

/// One HTTP/1.0 request on loopback; status and body. moto's development server now and
/// then resets a connection under load: the helper tries again (a few times) rather than
/// fail the test on it.
fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> (u16, Vec<u8>) {
    let mut last = None;
    for _ in 0..5 {
        match http_once(port, method, path, headers, body) {
            Ok(r) => return r,
            Err(e) => last = Some(e),
        }
    }
    panic!("{method} {path}: {last:?}");
}

fn http_once(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> std::io::Result<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    let mut req = format!(
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    s.write_all(body)?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp)?;
    let split = resp.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&resp[..split]).to_string();
    let status: u16 = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    Ok((status, resp[split + 4..].to_vec()))
}

/// moto's S3 server on a free port, with one bucket.
struct Moto {
    child: Child,
    port: u16,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Moto {
    fn start(bucket: &str) -> Option<Moto> {
        let bin = tool("target/py-venv/bin/moto_server")?;
        let port = free_port();
        let mut child = Command::new(bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_listening(port, &mut child);
        let m = Moto { child, port };
        assert_eq!(
            http(port, "PUT", &format!("/{bucket}"), &Self::auth(), b"").0,
            200
        );
        Some(m)
    }

    /// The AWS SDKs' standard variables pointing at this server.
    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "moto-secret-value".into()),
            ("AWS_REGION", "us-east-1".into()),
            (
                "AWS_ENDPOINT_URL",
                format!("http://127.0.0.1:{}", self.port),
            ),
            ("AWS_ALLOW_HTTP", "true".into()),
        ]
    }

    /// moto does not check signatures but takes the principal from the `Authorization`
    /// header: the objects euid-map writes belong to the `testing` key, and an anonymous
    /// request for them is refused.
    fn auth() -> [(&'static str, String); 1] {
        [(
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=testing/20261127/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=00".to_string(),
        )]
    }

    fn put(&self, key: &str, body: &[u8]) {
        let (st, b) = http(self.port, "PUT", &format!("/{key}"), &Self::auth(), body);
        assert_eq!(st, 200, "{}", String::from_utf8_lossy(&b));
    }

    fn get(&self, key: &str) -> Vec<u8> {
        let (st, b) = http(self.port, "GET", &format!("/{key}"), &Self::auth(), b"");
        assert_eq!(st, 200, "{key}");
        b
    }

    /// Keys under `bucket/prefix`, sorted.
    fn list(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let (st, b) = http(
            self.port,
            "GET",
            &format!("/{bucket}?list-type=2&prefix={prefix}"),
            &Self::auth(),
            b"",
        );
        assert_eq!(st, 200);
        let text = String::from_utf8(b).unwrap();
        let mut keys: Vec<String> = text
            .split("<Key>")
            .skip(1)
            .map(|k| k.split("</Key>").next().unwrap().to_string())
            .collect();
        keys.sort();
        keys
    }

    /// Downloads a dataset prefix into a local directory (to read it with `read_dataset`).
    fn download(&self, bucket: &str, prefix: &str, to: &Path) -> Vec<String> {
        std::fs::create_dir_all(to).unwrap();
        // The lock object of a killed run is not part of the dataset.
        let keys: Vec<String> = self
            .list(bucket, prefix)
            .into_iter()
            .filter(|k| !k.ends_with(".euid-map.lock"))
            .collect();
        for k in &keys {
            let name = k.rsplit('/').next().unwrap();
            std::fs::write(to.join(name), self.get(&format!("{bucket}/{k}"))).unwrap();
        }
        keys.iter()
            .map(|k| k.rsplit('/').next().unwrap().to_string())
            .collect()
    }
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// Rows without the columns that differ between two runs of the same job (`source` names
/// the input's location; the mapping time is the run's).
fn comparable(rows: Vec<Row>) -> Vec<Row> {
    rows.into_iter()
        .map(|mut r| {
            for c in ["source", "mapped_at", "refresh_from"] {
                r.remove(c);
            }
            r
        })
        .collect()
}

fn customers_csv(n: u64, offset: u64) -> Vec<u8> {
    let mut t = String::from("customer_id,email,phone\n");
    for i in offset..offset + n {
        // One repeat per four rows, and some unusable cells.
        let e = if i % 4 == 3 { i - 1 } else { i };
        let email = if i % 97 == 0 {
            "not-an-email".to_string()
        } else {
            format!("person{e}@example.com")
        };
        t.push_str(&format!("C{i},{email},+49{:010}\n", i * 7919));
    }
    t.into_bytes()
}

fn customers_parquet(n: u64, offset: u64) -> Vec<u8> {
    let ids: Vec<String> = (offset..offset + n).map(|i| format!("C{i}")).collect();
    let emails: Vec<String> = (offset..offset + n)
        .map(|i| format!("person{i}@example.com"))
        .collect();
    let phones: Vec<Option<String>> = (offset..offset + n)
        .map(|i| (i % 3 != 0).then(|| format!("+49{:010}", i * 7919)))
        .collect();
    let batch = RecordBatch::try_from_iter([
        ("customer_id", Arc::new(StringArray::from(ids)) as ArrayRef),
        ("email", Arc::new(StringArray::from(emails)) as ArrayRef),
        ("phone", Arc::new(StringArray::from(phones)) as ArrayRef),
    ])
    .unwrap();
    let mut buf = Vec::new();
    let props = parquet::file::properties::WriterProperties::builder()
        .set_max_row_group_row_count(Some(4096))
        .build();
    let mut w =
        parquet::arrow::ArrowWriter::try_new(&mut buf, batch.schema(), Some(props)).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    buf
}

/// Runs the binary with `envs`, none of the caller's cloud settings inherited.
fn run_clean(args: &[String], envs: &[(&str, &str)]) -> std::process::Output {
    let mut c = Command::new(&*BIN);
    c.args(args).stdin(Stdio::null());
    for (k, _) in std::env::vars() {
        if ["AWS_", "AZURE_", "AZURITE_", "GOOGLE_", "EUID_"]
            .iter()
            .any(|p| k.starts_with(p))
        {
            c.env_remove(&k);
        }
    }
    c.envs(envs.iter().copied());
    c.output().unwrap()
}

fn run_env(
    args: &[String],
    env: &[(&'static str, String)],
    extra: &[(&str, &str)],
) -> std::process::Output {
    let mut all: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    all.extend_from_slice(extra);
    run_clean(args, &all)
}

fn args(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

/// map, hash and refresh from s3:// to s3:// give the rows of the same runs on local files;
/// a prefix of several Parquet files reads them all in key order; `source` holds each
/// object's URL; credentials appear nowhere.
#[test]
fn map_hash_and_refresh_from_s3_to_s3_match_local_runs() {
    let Some(moto) = Moto::start("lake") else {
        return;
    };
    let env = moto.env();
    let tmp = tempfile::tempdir().unwrap();
    let local_in = tmp.path().join("in");
    std::fs::create_dir_all(&local_in).unwrap();
    // Three Parquet parts and a marker, as Spark writes them.
    for (i, name) in [
        "part-0000.parquet",
        "part-0001.parquet",
        "part-0002.parquet",
    ]
    .iter()
    .enumerate()
    {
        let body = customers_parquet(5000, i as u64 * 5000);
        std::fs::write(local_in.join(name), &body).unwrap();
        moto.put(&format!("lake/exports/d1/{name}"), &body);
    }
    moto.put("lake/exports/d1/_SUCCESS", b"");
    let local_csv = tmp.path().join("c.csv");
    // Large enough that its hash dataset (one part) goes up as a multipart upload.
    std::fs::write(&local_csv, customers_csv(150_000, 0)).unwrap();
    moto.put("lake/exports/csv/c.csv", &customers_csv(150_000, 0));

    // map: a prefix of Parquet files.
    let o = run_env(
        &args(&[
            "map",
            "s3://lake/exports/d1/",
            "-o",
            "s3://lake/euid/d1",
            "--env",
            "local",
            "--keep-col",
            "customer_id",
            "--part-rows",
            "7000",
        ]),
        &env,
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stderr(&o).contains("moto-secret-value"));
    let names = moto.download("lake", "euid/d1/", &tmp.path().join("s3-d1"));
    assert!(names.contains(&"_SUCCESS".to_string()), "{names:?}");
    assert!(
        !names.iter().any(|n| n.contains("lock")),
        "the lock object is removed: {names:?}"
    );
    let remote = read_dataset(&tmp.path().join("s3-d1"));
    let sources: std::collections::BTreeSet<_> = remote
        .iter()
        .map(|r| r["source"].clone().unwrap())
        .collect();
    assert_eq!(
        sources.into_iter().collect::<Vec<_>>(),
        vec![
            "s3://lake/exports/d1/part-0000.parquet",
            "s3://lake/exports/d1/part-0001.parquet",
            "s3://lake/exports/d1/part-0002.parquet"
        ]
    );
    let local_out = tmp.path().join("local-d1");
    let o = run_bin(
        &args(&[
            "map",
            &format!("{}/", s(&local_in)),
            "-o",
            &s(&local_out),
            "--env",
            "local",
            "--keep-col",
            "customer_id",
            "--part-rows",
            "7000",
        ]),
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let local = read_dataset(&local_out);
    assert_eq!(
        local.len(),
        30_000,
        "two identities per row, missing phones included"
    );
    assert!(
        comparable(local) == comparable(remote),
        "s3 and local runs give the same rows"
    );
    let manifest = String::from_utf8(moto.get("lake/euid/d1/_manifest.json")).unwrap();
    assert!(
        !manifest.contains("moto-secret-value") && !manifest.contains("testing\""),
        "{manifest}"
    );

    // hash: one CSV object.
    for (input, out) in [
        (
            "s3://lake/exports/csv/c.csv",
            "s3://lake/hash/c".to_string(),
        ),
        (&*s(&local_csv), s(&tmp.path().join("hash-local"))),
    ] {
        let o = run_env(&args(&["hash", input, "-o", &out, "-q"]), &env, &[]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    moto.download("lake", "hash/c/", &tmp.path().join("s3-hash"));
    assert!(
        comparable(read_dataset(&tmp.path().join("s3-hash")))
            == comparable(read_dataset(&tmp.path().join("hash-local")))
    );

    // refresh: state streamed from the store, written back to it.
    let o = run_env(
        &args(&[
            "refresh",
            "--state",
            "s3://lake/euid/d1",
            "-o",
            "s3://lake/euid/d2",
            "--env",
            "local",
            "-q",
        ]),
        &env,
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run_bin(
        &args(&[
            "refresh",
            "--state",
            &s(&local_out),
            "-o",
            &s(&tmp.path().join("local-d2")),
            "--env",
            "local",
            "-q",
        ]),
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    moto.download("lake", "euid/d2/", &tmp.path().join("s3-d2"));
    let (r, l) = (
        read_dataset(&tmp.path().join("s3-d2")),
        read_dataset(&tmp.path().join("local-d2")),
    );
    assert_eq!(r.len(), 30_000);
    assert!(
        comparable(r) == comparable(l),
        "refresh on s3 and local give the same rows"
    );

    // A non-empty prefix is refused without --resume, as a local directory is.
    let o = run_env(
        &args(&[
            "map",
            "s3://lake/exports/d1/",
            "-o",
            "s3://lake/euid/d1",
            "--env",
            "local",
            "--keep-col",
            "customer_id",
            "--part-rows",
            "7000",
            "-q",
        ]),
        &env,
        &[],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("is not empty"), "{}", stderr(&o));
    // An empty prefix and a missing object are clear errors.
    let o = run_env(
        &args(&["hash", "s3://lake/nothing/", "-o", "s3://lake/x"]),
        &env,
        &[],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("s3://lake/nothing/: no input file"),
        "{}",
        stderr(&o)
    );
    // A glob picks the matching objects only.
    let o = run_env(
        &args(&[
            "hash",
            "s3://lake/exports/d1/part-000?.parquet",
            "-o",
            "s3://lake/glob",
            "-q",
        ]),
        &env,
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    moto.download("lake", "glob/", &tmp.path().join("s3-glob"));
    assert_eq!(read_dataset(&tmp.path().join("s3-glob")).len(), 30_000);
}

/// kill -9 in the middle of a run on s3:// leaves no visible half part and no `_SUCCESS`;
/// a second run meanwhile is refused by the lock object; `--resume` finishes with the rows
/// of a clean run.
#[test]
fn kill_9_on_s3_then_resume_gives_the_rows_of_a_clean_run() {
    let Some(moto) = Moto::start("lake") else {
        return;
    };
    let env = moto.env();
    let tmp = tempfile::tempdir().unwrap();
    moto.put("lake/in/a.csv", &customers_csv(80_000, 0));
    // About 140 requests (repeats are answered once); every one after the 110th is held
    // until released, by when the first chunk (about 57, a few of which may go out late as
    // batch tasks race for a request slot) is answered and its parts committed: the run is
    // certainly mid-way while the second run looks at the lock and when the kill lands.
    let op = Operator::start(&["--admin", "--hold-after", "110"]);
    let run_args = |out: &str, extra: &[&str]| {
        let mut a = args(&[
            "map",
            "s3://lake/in/a.csv",
            "-o",
            out,
            "--base-url",
            &op.url,
            "--batch-size",
            "1000",
            "--concurrency",
            "1",
            "--part-rows",
            "4000",
            "--keep-col",
            "customer_id",
            "-q",
        ]);
        a.extend(extra.iter().map(|x| x.to_string()));
        a
    };
    let mut child = Command::new(&*BIN)
        .args(run_args("s3://lake/out/r", &[]))
        .envs(creds())
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until a part is committed and a request held, then kill -9.
    common::wait_until("a committed part and a held request", || {
        moto.list("lake", "out/r/")
            .iter()
            .any(|k| k.ends_with(".parquet"))
            && op.held() > 0.0
    });
    // Meanwhile a second run on the same prefix is refused, naming the holder.
    let mut with_creds: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    with_creds.extend(creds());
    let o = run_clean(&run_args("s3://lake/out/r", &["--resume"]), &with_creds);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("in use by another run"),
        "{}",
        stderr(&o)
    );
    assert!(
        child.try_wait().unwrap().is_none(),
        "the run ended before the kill"
    );
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    op.release();
    let keys = moto.list("lake", "out/r/");
    assert!(!keys.iter().any(|k| k.ends_with("_SUCCESS")), "{keys:?}");
    // Every visible part is whole: its footer reads.
    let partial = tmp.path().join("partial");
    moto.download("lake", "out/r/", &partial);
    let committed = read_dataset(&partial).len();
    assert!(committed > 0 && committed < 160_000, "{committed}");

    let o = run_clean(&run_args("s3://lake/out/r", &["--resume"]), &with_creds);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run_clean(&run_args("s3://lake/out/clean", &[]), &with_creds);
    assert!(o.status.success(), "{}", stderr(&o));
    moto.download("lake", "out/r/", &tmp.path().join("resumed"));
    moto.download("lake", "out/clean/", &tmp.path().join("clean"));
    let (r, c) = (
        read_dataset(&tmp.path().join("resumed")),
        read_dataset(&tmp.path().join("clean")),
    );
    assert_eq!(c.len(), 160_000);
    assert!(
        comparable(r) == comparable(c),
        "same rows, no duplicates, no gaps"
    );
}

/// Azurite, Azure's own emulator.
struct Azurite {
    child: Child,
    port: u16,
    _data: tempfile::TempDir,
}

impl Drop for Azurite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Azurite's well-known development account key (public, in Azure's documentation).
const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

impl Azurite {
    fn start(container: &str) -> Option<Azurite> {
        let bin = tool("target/node/node_modules/.bin/azurite-blob")?;
        let data = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut child = Command::new(bin)
            .args([
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
                &port.to_string(),
                "--skipApiVersionCheck",
                "--silent",
                "--location",
            ])
            .arg(data.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_listening(port, &mut child);
        let a = Azurite {
            child,
            port,
            _data: data,
        };
        a.create_container(container);
        Some(a)
    }

    /// Creates a container with a SharedKey-signed request (object_store does not create
    /// containers).
    fn create_container(&self, name: &str) {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD;
        let date = chrono::Utc::now()
            .format("%a, %d %b %Y %H:%M:%S GMT")
            .to_string();
        let version = "2021-08-06";
        let account = "devstoreaccount1";
        let to_sign = format!(
            "PUT\n\n\n\n\napplication/octet-stream\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{version}\n/{account}/{account}/{name}\nrestype:container"
        );
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &b64.decode(AZURITE_KEY).unwrap());
        let sig = b64.encode(ring::hmac::sign(&key, to_sign.as_bytes()).as_ref());
        let (st, body) = http(
            self.port,
            "PUT",
            &format!("/{account}/{name}?restype=container"),
            &[
                ("x-ms-date", date),
                ("x-ms-version", version.to_string()),
                ("Authorization", format!("SharedKey {account}:{sig}")),
            ],
            b"",
        );
        assert_eq!(st, 201, "{}", String::from_utf8_lossy(&body));
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AZURE_STORAGE_USE_EMULATOR", "true".into()),
            (
                "AZURITE_BLOB_STORAGE_URL",
                format!("http://127.0.0.1:{}", self.port),
            ),
        ]
    }
}

/// One end-to-end map onto Azure Blob (Azurite), read back by a refresh from it: the rows
/// are those of the same runs on local files.
#[test]
fn map_onto_azurite_and_refresh_from_it_match_local_runs() {
    let Some(az) = Azurite::start("euid") else {
        return;
    };
    let env = az.env();
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("c.csv");
    std::fs::write(&input, customers_csv(5000, 0)).unwrap();
    let o = run_env(
        &args(&[
            "map",
            &s(&input),
            "-o",
            "az://euid/d1",
            "--env",
            "local",
            "--keep-col",
            "customer_id",
            "-q",
        ]),
        &env,
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    // Read it back from Azure: a refresh streams the state from the container.
    let o = run_env(
        &args(&[
            "refresh",
            "--state",
            "az://euid/d1",
            "-o",
            &s(&tmp.path().join("from-az")),
            "--env",
            "local",
            "-q",
        ]),
        &env,
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run_bin(
        &args(&[
            "map",
            &s(&input),
            "-o",
            &s(&tmp.path().join("l1")),
            "--env",
            "local",
            "--keep-col",
            "customer_id",
            "-q",
        ]),
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run_bin(
        &args(&[
            "refresh",
            "--state",
            &s(&tmp.path().join("l1")),
            "-o",
            &s(&tmp.path().join("l2")),
            "--env",
            "local",
            "-q",
        ]),
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let (a, l) = (
        read_dataset(&tmp.path().join("from-az")),
        read_dataset(&tmp.path().join("l2")),
    );
    assert_eq!(a.len(), 10_000);
    assert!(comparable(a) == comparable(l));
    // A second run onto the same prefix is refused, as locally.
    let o = run_env(
        &args(&[
            "map",
            &s(&input),
            "-o",
            "az://euid/d1",
            "--env",
            "local",
            "--keep-col",
            "customer_id",
            "-q",
        ]),
        &env,
        &[],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("is not empty"), "{}", stderr(&o));
}

/// The lock object of a run on another machine blocks until its lease expires; an expired
/// one is taken over with a warning. (A dead process of this host is the kill -9 test.)
#[test]
fn a_live_lock_object_blocks_and_an_expired_one_is_taken_over() {
    let Some(moto) = Moto::start("lake") else {
        return;
    };
    let env = moto.env();
    moto.put("lake/in/a.csv", &customers_csv(100, 0));
    let lock = |expires_ms: i64| {
        serde_json::json!({
            "pid": 4242, "host": "batch-node-7", "command": "map",
            "started": "2026-11-27T03:00:00Z", "expires_ms": expires_ms,
        })
        .to_string()
    };
    let hash = args(&["hash", "s3://lake/in/a.csv", "-o", "s3://lake/out", "-q"]);
    moto.put(
        "lake/out/.euid-map.lock",
        lock(common::now_ms() + 600_000).as_bytes(),
    );
    let o = run_env(&hash, &env, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains("in use by another run") && e.contains("pid 4242 on batch-node-7"),
        "{e}"
    );
    assert!(e.contains("expires at"), "{e}");
    assert!(
        !moto
            .list("lake", "out/")
            .iter()
            .any(|k| k.ends_with("_job.json")),
        "nothing written"
    );

    moto.put(
        "lake/out/.euid-map.lock",
        lock(common::now_ms() - 1).as_bytes(),
    );
    let o = run_env(
        &args(&["hash", "s3://lake/in/a.csv", "-o", "s3://lake/out"]),
        &env,
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("took over the stale lock of pid 4242 on batch-node-7"),
        "{}",
        stderr(&o)
    );
    let keys = moto.list("lake", "out/");
    assert!(keys.iter().any(|k| k.ends_with("_SUCCESS")), "{keys:?}");
    assert!(
        !keys.iter().any(|k| k.ends_with(".euid-map.lock")),
        "released at the end: {keys:?}"
    );

    // A store configured without conditional writes runs unguarded, and says so.
    let o = run_env(
        &args(&["hash", "s3://lake/in/a.csv", "-o", "s3://lake/out2"]),
        &env,
        &[("AWS_CONDITIONAL_PUT", "disabled")],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("no lock guards this prefix"),
        "{}",
        stderr(&o)
    );
}

/// GCS without an emulator: the URL and the standard credential chain are wired to the
/// client. A service-account file (a fresh RSA key) and `GOOGLE_BASE_URL` pointing at a
/// loopback listener: the request for `gs://bucket/in.csv` arrives for that object, signed
/// with a JWT issued by the account; the listener answers 404 and the run says "not found".
#[test]
fn gcs_urls_use_the_service_account_from_the_environment() {
    let tmp = tempfile::tempdir().unwrap();
    let pem = tmp.path().join("key.pem");
    let made = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&pem)
        .stderr(Stdio::null())
        .status();
    if !made.is_ok_and(|s| s.success()) {
        assert!(std::env::var_os("CI").is_none(), "openssl is missing");
        eprintln!("skipped: no openssl to make a test key");
        return;
    }
    let account = serde_json::json!({
        "type": "service_account",
        "private_key": std::fs::read_to_string(&pem).unwrap(),
        "private_key_id": "k1",
        "client_email": "euid-map-test@project.iam.gserviceaccount.com",
    });
    let sa = tmp.path().join("sa.json");
    std::fs::write(&sa, account.to_string()).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = vec![0u8; 16 * 1024];
        let mut got = Vec::new();
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "the request ended early");
            got.extend_from_slice(&buf[..n]);
        }
        s.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .unwrap();
        String::from_utf8_lossy(&got).to_string()
    });
    let o = run_clean(
        &args(&[
            "hash",
            "gs://bucket/in.csv",
            "-o",
            &s(&tmp.path().join("o")),
        ]),
        &[
            ("GOOGLE_SERVICE_ACCOUNT", &s(&sa)),
            ("GOOGLE_BASE_URL", &format!("http://127.0.0.1:{port}")),
            ("GOOGLE_ALLOW_HTTP", "true"),
        ],
    );
    let request = seen.join().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("gs://bucket/in.csv: not found"),
        "{}",
        stderr(&o)
    );
    // The object's key, percent-encoded by the client (`.` as %2E).
    assert!(
        request.starts_with("HEAD /bucket/in%2Ecsv ")
            || request.starts_with("HEAD /bucket/in.csv "),
        "{request}"
    );
    let bearer = request
        .lines()
        .find_map(|l| {
            l.strip_prefix("authorization: Bearer ")
                .or_else(|| l.strip_prefix("Authorization: Bearer "))
        })
        .expect("a bearer token");
    use base64::Engine;
    let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(bearer.trim().split('.').nth(1).unwrap())
        .unwrap();
    let claims: serde_json::Value = serde_json::from_slice(&claims).unwrap();
    assert_eq!(
        claims["iss"],
        "euid-map-test@project.iam.gserviceaccount.com"
    );
    assert!(!stderr(&o).contains("PRIVATE KEY"), "{}", stderr(&o));
}

/// The shared AWS profile is part of the credential chain: `AWS_PROFILE` (static keys, or a
/// `credential_process`) with no key in the environment reaches the store; a profile that
/// does not exist is a clear error.
#[test]
fn the_aws_profile_supplies_keys_when_the_environment_has_none() {
    let Some(moto) = Moto::start("lake") else {
        return;
    };
    moto.put("lake/in/a.csv", &customers_csv(50, 0));
    let home = tempfile::tempdir().unwrap();
    let aws = home.path().join(".aws");
    std::fs::create_dir_all(&aws).unwrap();
    std::fs::write(
        aws.join("credentials"),
        "[lake]\naws_access_key_id = profilekey\naws_secret_access_key = profile-secret-value\n",
    )
    .unwrap();
    std::fs::write(
        aws.join("config"),
        "[profile lake]\nregion = eu-west-1\n[profile proc]\nregion = eu-west-1\ncredential_process = printf '{\"Version\":1,\"AccessKeyId\":\"prockey\",\"SecretAccessKey\":\"process-secret-value\"}'\n",
    )
    .unwrap();
    let endpoint = format!("http://127.0.0.1:{}", moto.port);
    for (profile, out) in [("lake", "s3://lake/p1"), ("proc", "s3://lake/p2")] {
        let o = run_clean(
            &args(&["hash", "s3://lake/in/a.csv", "-o", out]),
            &[
                ("HOME", &s(home.path())),
                ("AWS_PROFILE", profile),
                ("AWS_ENDPOINT_URL", &endpoint),
                ("AWS_ALLOW_HTTP", "true"),
                // No instance metadata to fall back on: the profile must supply the keys.
                ("AWS_EC2_METADATA_DISABLED", "true"),
                ("AWS_METADATA_ENDPOINT", "http://127.0.0.1:9"),
            ],
        );
        assert!(o.status.success(), "{profile}: {}", stderr(&o));
        assert!(!stderr(&o).contains("secret-value"), "{}", stderr(&o));
    }
    let o = run_clean(
        &args(&["hash", "s3://lake/in/a.csv", "-o", "s3://lake/p3"]),
        &[
            ("HOME", &s(home.path())),
            ("AWS_PROFILE", "nope"),
            ("AWS_ENDPOINT_URL", &endpoint),
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("AWS_PROFILE=nope: no such profile"),
        "{}",
        stderr(&o)
    );
}

/// Issue #26.12: temporary credentials from a `credential_process` are fetched again before
/// they expire. Here each answer expires within a minute, inside the refresh margin, so
/// every signed request asks again: the process runs many times in one run, and the run
/// (which outlives no real credential here) succeeds.
#[test]
fn expiring_process_credentials_are_fetched_again_during_the_run() {
    let Some(moto) = Moto::start("lake") else {
        return;
    };
    moto.put("lake/in/a.csv", &customers_csv(50, 0));
    let home = tempfile::tempdir().unwrap();
    let aws = home.path().join(".aws");
    std::fs::create_dir_all(&aws).unwrap();
    let calls = home.path().join("calls");
    let script = home.path().join("creds.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho call >> {}\nexp=$(date -u -d '+1 minute' +%Y-%m-%dT%H:%M:%SZ)\nprintf '{{\"Version\":1,\"AccessKeyId\":\"tmpkey\",\"SecretAccessKey\":\"tmp-secret-value\",\"SessionToken\":\"tok\",\"Expiration\":\"%s\"}}' \"$exp\"\n",
            calls.display()
        ),
    )
    .unwrap();
    std::fs::write(
        aws.join("config"),
        format!(
            "[profile temp]\nregion = eu-west-1\ncredential_process = sh {}\n",
            script.display()
        ),
    )
    .unwrap();
    let endpoint = format!("http://127.0.0.1:{}", moto.port);
    let o = run_clean(
        &args(&["hash", "s3://lake/in/a.csv", "-o", "s3://lake/temp"]),
        &[
            ("HOME", &s(home.path())),
            ("AWS_PROFILE", "temp"),
            ("AWS_ENDPOINT_URL", &endpoint),
            ("AWS_ALLOW_HTTP", "true"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("AWS_METADATA_ENDPOINT", "http://127.0.0.1:9"),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stderr(&o).contains("tmp-secret-value"), "{}", stderr(&o));
    let n = std::fs::read_to_string(&calls).unwrap().lines().count();
    assert!(
        n > 2,
        "the process ran {n} times: its expiring answers were not refreshed"
    );
    assert!(moto
        .list("lake", "temp/")
        .iter()
        .any(|k| k.ends_with("_SUCCESS")));
}

/// A minimal S3 for one object that drops every full GET halfway through its body, and
/// serves ranged GETs. With `replace`, the object was uploaded again meanwhile: a resumed
/// (ranged, not from byte 0) GET carries another ETag, and one pinned with `If-Match` is
/// answered 412. `ranged` counts the resumes.
struct DroppingS3 {
    port: u16,
    ranged: std::sync::Arc<std::sync::atomic::AtomicU64>,
    _thread: std::thread::JoinHandle<()>,
}

impl DroppingS3 {
    fn start(body: Vec<u8>, replace: bool) -> DroppingS3 {
        use std::io::{BufRead, BufReader};
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let ranged = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = std::sync::Arc::clone(&ranged);
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    continue;
                }
                let method = line.split_whitespace().next().unwrap_or("").to_string();
                let (mut range, mut if_match) = (None, None);
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                        break;
                    }
                    let lower = h.to_ascii_lowercase();
                    if let Some(v) = lower.strip_prefix("range: bytes=") {
                        range = v
                            .trim()
                            .split('-')
                            .next()
                            .and_then(|s| s.parse::<usize>().ok());
                    }
                    if let Some(v) = lower.strip_prefix("if-match: ") {
                        if_match = Some(v.trim().trim_matches('"').to_string());
                    }
                }
                let resumed = range.is_some_and(|from| from > 0);
                let etag = if replace && resumed { "v2" } else { "v1" };
                let head = |status: &str, len: usize, extra: &str| {
                    format!("HTTP/1.1 {status}\r\nContent-Length: {len}\r\nETag: \"{etag}\"\r\nLast-Modified: Tue, 01 Dec 2026 00:00:00 GMT\r\nConnection: close\r\n{extra}\r\n")
                };
                let replaced = replace && if_match.is_some();
                let resp: Vec<u8> = if replaced || if_match.as_deref().is_some_and(|m| m != etag) {
                    head("412 Precondition Failed", 0, "").into_bytes()
                } else if method == "HEAD" {
                    head("200 OK", body.len(), "").into_bytes()
                } else if let Some(from) = range {
                    if resumed {
                        counter.fetch_add(1, Ordering::SeqCst);
                    }
                    let slice = &body[from.min(body.len())..];
                    let extra = format!(
                        "Content-Range: bytes {from}-{}/{}\r\n",
                        body.len().saturating_sub(1),
                        body.len()
                    );
                    let mut r = head("206 Partial Content", slice.len(), &extra).into_bytes();
                    r.extend_from_slice(slice);
                    r
                } else {
                    // Half the body, then the connection drops.
                    let mut r = head("200 OK", body.len(), "").into_bytes();
                    r.extend_from_slice(&body[..body.len() / 2]);
                    r
                };
                let _ = conn.write_all(&resp);
                let _ = conn.flush();
            }
        });
        DroppingS3 {
            port,
            ranged,
            _thread: thread,
        }
    }
}

/// Issue #26.16: a download dropped mid-body is resumed with a ranged GET pinned to the
/// object's ETag (every row arrives once); an object replaced meanwhile is never spliced.
#[test]
fn a_dropped_download_resumes_pinned_to_its_etag() {
    let body = customers_csv(3_000, 0);
    let env = |port: u16| -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}")),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ]
    };
    let tmp = tempfile::tempdir().unwrap();
    let s3 = DroppingS3::start(body.clone(), false);
    let e = env(s3.port);
    let pairs: Vec<(&str, &str)> = e.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let out = tmp.path().join("out");
    let o = run_clean(
        &args(&["hash", "s3://lake/in/a.csv", "-o", out.to_str().unwrap()]),
        &pairs,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(read_dataset(&out).len(), 6_000, "every row once");
    assert!(
        s3.ranged.load(std::sync::atomic::Ordering::SeqCst) >= 1,
        "the dropped body was resumed with a ranged GET"
    );
    // The same drop, but the object was uploaded again before the resume.
    let s3 = DroppingS3::start(body, true);
    let e = env(s3.port);
    let pairs: Vec<(&str, &str)> = e.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let out = tmp.path().join("replaced");
    let o = run_clean(
        &args(&["hash", "s3://lake/in/a.csv", "-o", out.to_str().unwrap()]),
        &pairs,
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        !out.join("_SUCCESS").exists(),
        "never spliced onto another version"
    );
    assert!(
        stderr(&o).contains("412 Precondition Failed"),
        "the resume pinned to the first ETag is refused: {}",
        stderr(&o)
    );
}

/// Issue #24.5: a prefix given without its trailing `/` says so, and an http endpoint
/// without `AWS_ALLOW_HTTP` says which variable to set.
#[test]
fn store_errors_say_what_to_do() {
    let Some(moto) = Moto::start("lake") else {
        return;
    };
    moto.put("lake/in/a.csv", &customers_csv(10, 0));
    let tmp = tempfile::tempdir().unwrap();
    let env = moto.env();
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let o = run_clean(
        &args(&[
            "hash",
            "s3://lake/in",
            "-o",
            tmp.path().join("a").to_str().unwrap(),
        ]),
        &pairs,
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("end it with /"), "{}", stderr(&o));
    let no_http: Vec<(&str, &str)> = pairs
        .iter()
        .copied()
        .filter(|(k, _)| *k != "AWS_ALLOW_HTTP")
        .collect();
    let o = run_clean(
        &args(&[
            "hash",
            "s3://lake/in/a.csv",
            "-o",
            tmp.path().join("b").to_str().unwrap(),
        ]),
        &no_http,
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("AWS_ALLOW_HTTP=true"), "{}", stderr(&o));
}
