//! Issue #12: Prometheus metrics for batch jobs against the real Pushgateway (Debian's
//! `prometheus-pushgateway`) and `promtool check metrics` (Debian's `prometheus`), both
//! installed by `scripts/install_ci_deps.sh`; and JSON logs. Where the tools are missing the
//! tests say so and fail under CI, so a green CI means they ran.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};

use common::{creds, run_bin, stderr, Operator};

/// `true` when `tool` is on PATH; otherwise explains, and fails under CI.
fn have(tool: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "{tool} is missing: .ci/run installs it with scripts/install_ci_deps.sh"
        );
        eprintln!("skipped: {tool} is not installed (scripts/install_ci_deps.sh installs it)");
    }
    found
}

struct Pushgateway {
    child: Child,
    url: String,
    /// Its private persistence file's folder (never the system's
    /// /var/lib/prometheus/pushgateway.data, which could hold other runs' groups).
    _state: tempfile::TempDir,
}

impl Pushgateway {
    fn start() -> Pushgateway {
        let port = common::free_port();
        let state = tempfile::tempdir().unwrap();
        let child = Command::new("prometheus-pushgateway")
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg(format!(
                "--persistence.file={}",
                state.path().join("pushgateway.data").display()
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let url = format!("http://127.0.0.1:{port}");
        // Wait until it answers (it starts in well under a second).
        for _ in 0..500 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        Pushgateway {
            child,
            url,
            _state: state,
        }
    }

    fn metrics(&self) -> String {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            euid_map::tls::install_provider();
            reqwest::get(format!("{}/metrics", self.url))
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        })
    }
}

impl Drop for Pushgateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of the sample of `name` whose labels include every one of `labels`.
fn sample(page: &str, name: &str, labels: &[&str]) -> Option<f64> {
    page.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| l.split(['{', ' ']).next() == Some(name) && labels.iter().all(|x| l.contains(x)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn map(input: &Path, out: &Path, url: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "map".to_string(),
        input.to_str().unwrap().into(),
        "-o".into(),
        out.to_str().unwrap().into(),
        "--base-url".into(),
        url.into(),
        "-q".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    run_bin(&args, &creds())
}

#[test]
fn runs_push_to_the_pushgateway_and_a_failed_run_keeps_the_last_success() {
    if !have("prometheus-pushgateway") {
        return;
    }
    let gw = Pushgateway::start();
    let tmp = tempfile::tempdir().unwrap();
    let op = Operator::start(&[]);
    let input = tmp.path().join("in.csv");
    std::fs::write(
        &input,
        "email,phone\na@example.com,+12345678901\nnot-an-email,\n",
    )
    .unwrap();
    let o = map(
        &input,
        &tmp.path().join("ok"),
        &op.url,
        &["--metrics-push", &gw.url, "--metrics-label", "site=eu1"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let page = gw.metrics();
    let grouped = ["job=\"euid-map\"", "site=\"eu1\""];
    assert_eq!(
        sample(&page, "euid_map_exit_code", &grouped),
        Some(0.0),
        "{page}"
    );
    assert_eq!(
        sample(
            &page,
            "euid_map_rows_total",
            &["status=\"mapped\"", "site=\"eu1\""]
        ),
        Some(2.0)
    );
    assert_eq!(
        sample(&page, "euid_map_rows_total", &["status=\"invalid\""]),
        Some(1.0)
    );
    assert!(sample(&page, "euid_map_requests_total", &["code=\"200\""]).is_some());
    assert!(sample(&page, "euid_map_request_duration_seconds_count", &grouped).is_some());
    let success = sample(&page, "euid_map_last_success_timestamp_seconds", &grouped)
        .expect("set by the successful run");

    // A failing run (wrong secret) pushes its exit code and leaves the last success alone.
    let o = run_bin(
        &[
            "map",
            input.to_str().unwrap(),
            "-o",
            tmp.path().join("bad").to_str().unwrap(),
            "--base-url",
            &op.url,
            "--metrics-push",
            &gw.url,
            "--metrics-label",
            "site=eu1",
        ],
        &[
            ("EUID_API_KEY", common::API_KEY),
            (
                "EUID_CLIENT_SECRET",
                "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0MTI=",
            ),
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    let page = gw.metrics();
    assert_eq!(sample(&page, "euid_map_exit_code", &grouped), Some(1.0));
    assert_eq!(
        sample(&page, "euid_map_last_success_timestamp_seconds", &grouped),
        Some(success),
        "a failed run does not touch the last success"
    );
    assert!(!page.contains(common::SECRET) && !page.contains(common::API_KEY));
}

#[test]
fn the_textfile_is_accepted_by_promtool() {
    if !have("promtool") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in.csv");
    std::fs::write(&input, "email\na@example.com\nb@example.com\n").unwrap();
    let prom = tmp.path().join("euid_map.prom");
    let o = run_bin(
        &[
            "refresh",
            "--state",
            tmp.path().join("none").to_str().unwrap(),
            "-o",
            tmp.path().join("r").to_str().unwrap(),
            "--env",
            "local",
            "--metrics-file",
            prom.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(1), "no state: a fatal error");
    let page = std::fs::read_to_string(&prom).expect("a failed run writes its metrics too");
    assert_eq!(sample(&page, "euid_map_exit_code", &[]), Some(1.0));
    let o = run_bin(
        &[
            "map",
            input.to_str().unwrap(),
            "-o",
            tmp.path().join("o").to_str().unwrap(),
            "--env",
            "local",
            "-q",
            "--metrics-file",
            prom.to_str().unwrap(),
            "--metrics-label",
            "pipeline=nightly",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let page = std::fs::read_to_string(&prom).unwrap();
    assert_eq!(
        sample(
            &page,
            "euid_map_rows_total",
            &["status=\"mapped\"", "pipeline=\"nightly\""]
        ),
        Some(2.0)
    );
    let leftovers = std::fs::read_dir(tmp.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".tmp")
        })
        .count();
    assert_eq!(leftovers, 0, "written atomically");
    let check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&prom).unwrap())
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
}

#[test]
fn json_logs_are_one_object_per_line_without_colour() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in.csv");
    std::fs::write(&input, "email\na@example.com\n").unwrap();
    let o = run_bin(
        &[
            "map",
            input.to_str().unwrap(),
            "-o",
            tmp.path().join("o").to_str().unwrap(),
            "--env",
            "local",
            "--log-format",
            "json",
            "-v",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        !err.contains('\u{1b}'),
        "no ANSI colour when stderr is not a terminal"
    );
    let mut finished = false;
    for line in err.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        assert!(v["timestamp"].is_string() && v["level"].is_string() && v["message"].is_string());
        finished |= v["message"] == "run finished" && v["input_rows"] == 1;
    }
    assert!(finished, "the summary is a log event with fields: {err}");
    assert!(!err.contains("a@example.com"), "never a raw email");
}
