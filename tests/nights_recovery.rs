//! End to end, issue #33: retried, changed and stalled nights. A retry never hides a
//! failure, a night whose export changed recovers by itself, `latest` fails loudly on a
//! ROOT that is not there, a silent operator fails the run in minutes, an overlapping run is
//! refused before any request, a resumed refresh decides at its first attempt's time, the
//! join stays within the open-file limit, and `--distinct` says what its manifest says.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Operator;

use std::path::Path;
use std::process::{Command, Output, Stdio};

/// The command under test: `common::bin()` (the built binary, or `EUID_MAP_BIN`).
static BIN: std::sync::LazyLock<String> = std::sync::LazyLock::new(common::bin);
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/nightly.sh");
/// Small parts and batches, one request at a time: a run the held emulator can stop at a
/// known request.
const SLOW_RUN: &[&str] = &[
    "--part-rows",
    "5000",
    "--batch-size",
    "1000",
    "--concurrency",
    "1",
    "-q",
];

fn cmd<S: AsRef<std::ffi::OsStr>>(op: &Operator, args: &[S]) -> Command {
    let mut c = Command::new(&*BIN);
    c.args(args)
        .args(["--base-url", &op.url])
        .env("EUID_API_KEY", common::API_KEY)
        .env("EUID_CLIENT_SECRET", common::SECRET)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    c
}

fn run<S: AsRef<std::ffi::OsStr>>(op: &Operator, args: &[S]) -> Output {
    cmd(op, args).output().unwrap()
}

fn ok(o: &Output) {
    assert!(o.status.success(), "{}", common::stderr(o));
}

fn s(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

fn manifest(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("_manifest.json")).unwrap()).unwrap()
}

fn export(path: &Path, customers: std::ops::Range<u64>) {
    let mut text = String::from("customer_id,email\n");
    for i in customers {
        text.push_str(&format!("{i},person{i}@example.com\n"));
    }
    std::fs::write(path, text).unwrap();
}

/// Runs `args` with the emulator holding every request after `after` more, kills the run
/// (as kill -9) once `part` is committed and a request is held, and lets the held requests
/// go. The runs here send 70 map requests of 1,000 and the hold comes at the last one: the
/// first part needs the first chunk (32,768 rows) answered whole, and up to five batch
/// tasks race for the one request slot, so a chunk's last batch may go out a few places
/// late (holding after 40 of them once left the first part unwritten under CI's load).
fn killed_after_a_part(op: &Operator, args: &[String], after: u32, part: &Path) {
    op.http(true, &format!("/ops/hold?after={after}"));
    let mut child = cmd(op, args).stderr(Stdio::null()).spawn().unwrap();
    common::wait_until("a committed part and a held request", || {
        part.exists() && op.held() >= 1.0
    });
    child.kill().unwrap();
    child.wait().unwrap();
    op.release();
}

/// Night 0 in `dir`: 70,000 customers (`e.csv`) mapped into `n0`.
fn first_night(op: &Operator, dir: &Path) {
    let d = |n: &str| dir.join(n);
    export(&d("e.csv"), 0..70_000);
    ok(&run(
        op,
        &[
            "map",
            &s(&d("e.csv")),
            "-o",
            &s(&d("n0")),
            "--keep-col",
            "customer_id",
            "-q",
        ],
    ));
}

/// A refresh of `dir/n0` into `dir/n1` at `now`, one request of 1,000 at a time and parts of
/// 5,000 rows (so that a kill lands between parts), with or without the opt-out sweep.
fn resumable_refresh(dir: &Path, now: &str, sweep: bool, resume: bool) -> Vec<String> {
    let mut a: Vec<String> = [
        "refresh",
        "--state",
        &s(&dir.join("n0")),
        "-o",
        &s(&dir.join("n1")),
        "--now",
        now,
    ]
    .iter()
    .chain(SLOW_RUN)
    .map(|x| x.to_string())
    .collect();
    if !sweep {
        a.push("--no-optout-sweep".into());
    }
    if resume {
        a.push("--resume".into());
    }
    a
}

fn metric(file: &Path, name: &str) -> Option<f64> {
    let text = std::fs::read_to_string(file).ok()?;
    euid_map::operator::metrics::sample(&text, name)
}

/// #33.1: a night with failed identities exits 2; its retry (`--resume` on the finished
/// directory, as Airflow's `retries` or a CronJob's `backoffLimit` run it) sends nothing and
/// exits 2 again, with the command that maps them again, and the metrics say 2 too.
#[test]
fn a_retried_night_with_failed_rows_exits_2_again() {
    let tmp = tempfile::tempdir().unwrap();
    let d = |n: &str| tmp.path().join(n);
    let op = Operator::start(&["--faults", "500=1.0"]);
    export(&d("e.csv"), 0..30);
    let args = |extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = [
            "map",
            &s(&d("e.csv")),
            "-o",
            &s(&d("night")),
            "--max-retries",
            "0",
            "--metrics-file",
            &s(&d("night.prom")),
            "-q",
        ]
        .iter()
        .map(|x| x.to_string())
        .collect();
        a.extend(extra.iter().map(|x| x.to_string()));
        a
    };
    let first = run(&op, &args(&[]));
    assert_eq!(first.status.code(), Some(2), "{}", common::stderr(&first));
    assert_eq!(manifest(&d("night"))["counts"]["failed"], 30);
    let sent = op.requested();
    let retry = run(&op, &args(&["--resume"]));
    assert_eq!(retry.status.code(), Some(2), "{}", common::stderr(&retry));
    let err = common::stderr(&retry);
    assert!(
        err.contains("30 failed") && err.contains("euid-map refresh --state"),
        "{err}"
    );
    assert_eq!(op.requested(), sent, "the retry sends nothing");
    assert_eq!(
        metric(&d("night.prom"), "euid_map_exit_code"),
        Some(2.0),
        "the metrics say 2 as well"
    );
    // What the message says to run maps them again (against an operator that answers).
    let good = Operator::start(&[]);
    ok(&run(
        &good,
        &[
            "refresh",
            "--state",
            &s(&d("night")),
            "-o",
            &s(&d("again")),
            "--no-optout-sweep",
            "-q",
        ],
    ));
    assert_eq!(manifest(&d("again"))["counts"]["mapped"], 30);
}

/// #33.2: a night whose export changed after a failed attempt committed parts: `--resume`
/// alone is refused and names `--restart`; the nightly script's `--resume
/// --restart-if-changed` starts the night over by itself; `--restart` refuses a finished
/// night.
#[test]
fn a_night_whose_export_changed_starts_over_by_itself() {
    let tmp = tempfile::tempdir().unwrap();
    let d = |n: &str| tmp.path().join(n);
    let op = Operator::start(&["--admin"]);
    // More rows than a chunk (32,768), so that parts are committed before the kill.
    export(&d("e.csv"), 0..70_000);
    let out = d("night");
    let base = |extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = [
            "map",
            &s(&d("e.csv")),
            "-o",
            &s(&out),
            "--keep-col",
            "customer_id",
        ]
        .iter()
        .chain(SLOW_RUN)
        .map(|x| x.to_string())
        .collect();
        a.extend(extra.iter().map(|x| x.to_string()));
        a
    };
    // The first attempt is killed once the first chunk's parts are committed.
    killed_after_a_part(&op, &base(&[]), 69, &out.join("part-00000.parquet"));
    let parts = || {
        std::fs::read_dir(&out)
            .unwrap()
            .filter(|e| {
                let n = e.as_ref().unwrap().file_name();
                let n = n.to_string_lossy();
                n.starts_with("part-") && n.ends_with(".parquet")
            })
            .count()
    };
    assert!(parts() > 0, "the killed attempt committed parts");
    // Tonight's export is rewritten before the retry.
    export(&d("e.csv"), 100_000..170_000);
    let o = run(&op, &base(&["--resume"]));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        common::stderr(&o).contains("--restart"),
        "{}",
        common::stderr(&o)
    );
    let o = run(&op, &base(&["--resume", "--restart-if-changed"]));
    ok(&o);
    let rows = common::read_dataset(&out);
    assert_eq!(rows.len(), 70_000);
    assert!(
        rows.iter()
            .all(|r| r["customer_id"].as_deref().unwrap().len() == 6),
        "every row from the new export"
    );
    // A finished night is never started over.
    let o = run(&op, &base(&["--restart"]));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        common::stderr(&o).contains("finished run"),
        "{}",
        common::stderr(&o)
    );
    assert!(out.join("_SUCCESS").exists());
}

/// #33.3: `latest` on a ROOT that does not exist exits 1 (a typo, an unmounted volume), and
/// the nightly script stops instead of mapping afresh; an existing empty ROOT is a first
/// night (3).
#[test]
fn latest_fails_loudly_on_a_root_that_is_not_there() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no-such-volume");
    let o = common::run_bin(&["latest", &s(&missing)], &[]);
    assert_eq!(o.status.code(), Some(1), "{}", common::stderr(&o));
    assert!(common::stderr(&o).contains("does not exist"));
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let o = common::run_bin(&["latest", &s(&empty)], &[]);
    assert_eq!(o.status.code(), Some(3), "{}", common::stderr(&o));
    // The nightly script: no map into a ROOT that is not there.
    let op = Operator::start(&[]);
    export(&tmp.path().join("e.csv"), 0..5);
    let o = Command::new("sh")
        .arg(SCRIPT)
        .arg(&missing)
        .arg(tmp.path().join("e.csv"))
        .arg("customer_id")
        .args(["--base-url", &op.url, "-q"])
        .env("EUID_MAP", &*BIN)
        .env("EUID_API_KEY", common::API_KEY)
        .env("EUID_CLIENT_SECRET", common::SECRET)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", common::stderr(&o));
    assert!(!missing.exists(), "nothing mapped into it");
    assert_eq!(op.requested(), 0.0);
}

/// #33.4: an operator that accepts connections and never answers fails the run (exit 1, no
/// `_SUCCESS`) once the stall deadline passes, naming the operator.
#[test]
fn a_silent_operator_fails_the_run_at_the_stall_deadline() {
    let tmp = tempfile::tempdir().unwrap();
    let op = Operator::start(&["--admin", "--hold-after", "0"]);
    export(&tmp.path().join("e.csv"), 0..10);
    let out = tmp.path().join("out");
    let o = run(
        &op,
        &[
            "map",
            &s(&tmp.path().join("e.csv")),
            "-o",
            &s(&out),
            "--stall-timeout",
            "2",
            "-q",
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", common::stderr(&o));
    let err = common::stderr(&o);
    assert!(
        err.contains("sent no answer") && err.contains("127.0.0.1"),
        "{err}"
    );
    assert!(!out.join("_SUCCESS").exists());
    op.release();
}

/// #33.5: a refresh into a directory another run holds is refused before the opt-out sweep
/// or any other request.
#[test]
fn an_overlapping_refresh_is_refused_before_any_request() {
    let tmp = tempfile::tempdir().unwrap();
    let d = |n: &str| tmp.path().join(n);
    let op = Operator::start(&["--admin"]);
    export(&d("e.csv"), 0..50);
    ok(&run(
        &op,
        &[
            "map",
            &s(&d("e.csv")),
            "-o",
            &s(&d("n0")),
            "--keep-col",
            "customer_id",
            "-q",
        ],
    ));
    let refresh = || -> Vec<String> {
        [
            "refresh",
            "--state",
            &s(&d("n0")),
            "-o",
            &s(&d("n1")),
            &s(&d("e.csv")),
            "--key-col",
            "customer_id",
            "-q",
        ]
        .iter()
        .map(|x| x.to_string())
        .collect()
    };
    // The first run holds the directory: its first request (the sweep's) is held.
    let requests = |op: &Operator| op.requests_total("");
    op.http(true, "/ops/hold?after=0");
    let mut first = cmd(&op, &refresh()).stderr(Stdio::null()).spawn().unwrap();
    common::wait_until("the first run's held request", || op.held() > 0.0);
    let answered = requests(&op);
    let second = run(&op, &refresh());
    assert_eq!(second.status.code(), Some(1), "{}", common::stderr(&second));
    assert!(
        common::stderr(&second).contains("lock") || common::stderr(&second).contains("held"),
        "refused as a busy directory: {}",
        common::stderr(&second)
    );
    assert_eq!(op.held(), 1.0, "the second run sent no request");
    assert_eq!(requests(&op), answered, "nor had one answered");
    op.release();
    let done = first.wait().unwrap();
    assert!(done.success());
    assert!(d("n1").join("_SUCCESS").exists());
}

/// #33.8: the refresh join under an open-file limit below the partitions it would want
/// gives the same rows as without the limit.
#[test]
fn the_join_stays_within_a_low_open_file_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let d = |n: &str| tmp.path().join(n);
    let op = Operator::start(&[]);
    export(&d("e.csv"), 0..2000);
    ok(&run(
        &op,
        &[
            "map",
            &s(&d("e.csv")),
            "-o",
            &s(&d("n0")),
            "--keep-col",
            "customer_id",
            "-q",
        ],
    ));
    export(&d("e2.csv"), 100..2100);
    let refresh = |out: &str, limit: Option<u32>| {
        let mut c = Command::new("sh");
        let ulimit = limit
            .map(|l| format!("ulimit -n {l} && "))
            .unwrap_or_default();
        c.arg("-c")
            .arg(format!("{ulimit}exec \"$@\""))
            .arg("sh")
            .arg(&*BIN)
            .args([
                "refresh",
                "--state",
                &s(&d("n0")),
                "-o",
                &s(&d(out)),
                &s(&d("e2.csv")),
                "--key-col",
                "customer_id",
                "--keep-missing",
                "--partition-rows",
                "10",
                "--no-optout-sweep",
                "--base-url",
                &op.url,
                "-q",
            ])
            .env("EUID_API_KEY", common::API_KEY)
            .env("EUID_CLIENT_SECRET", common::SECRET)
            .stdin(Stdio::null());
        let o = c.output().unwrap();
        ok(&o);
        common::read_dataset(&d(out))
            .into_iter()
            .map(|mut r| {
                r.remove("mapped_at");
                r
            })
            .collect::<Vec<_>>()
    };
    // 2,000 state rows at 10 a partition want 200 partitions; 64 open files allow 24.
    let limited = refresh("limited", Some(64));
    let free = refresh("free", None);
    assert_eq!(limited.len(), 2100);
    assert!(limited == free, "the same rows under the limit");
}

/// #33.6: a resumed refresh decides at its first attempt's time, whatever `--now` the retry
/// is given.
#[test]
fn a_resumed_refresh_decides_at_the_first_attempts_time() {
    let tmp = tempfile::tempdir().unwrap();
    let d = |n: &str| tmp.path().join(n);
    let op = Operator::start(&["--admin"]);
    first_night(&op, tmp.path());
    let first_now = op.advance(400);
    let args = |now: &str, resume: bool| resumable_refresh(tmp.path(), now, false, resume);
    killed_after_a_part(
        &op,
        &args(&first_now, false),
        69,
        &d("n1").join("part-00000.parquet"),
    );
    let later = op.advance(1);
    ok(&run(&op, &args(&later, true)));
    let m = manifest(&d("n1"));
    let decided = chrono::DateTime::parse_from_rfc3339(m["now"].as_str().unwrap()).unwrap();
    let first = chrono::DateTime::parse_from_rfc3339(&first_now).unwrap();
    assert_eq!(decided, first, "the first attempt's now");
}

/// #33.9: `map --distinct` prints the input's counts, as its manifest does, and refuses
/// `--keep-col`.
#[test]
fn distinct_says_what_its_manifest_says() {
    let tmp = tempfile::tempdir().unwrap();
    let d = |n: &str| tmp.path().join(n);
    let op = Operator::start(&[]);
    std::fs::write(
        d("e.csv"),
        "id,email\n1,a@example.com\n2,a@example.com\n3,not-an-email\n4,b@example.com\n",
    )
    .unwrap();
    let o = run(
        &op,
        &["map", &s(&d("e.csv")), "-o", &s(&d("t")), "--distinct"],
    );
    ok(&o);
    let err = common::stderr(&o);
    assert!(err.contains("4 input rows"), "{err}");
    let mapped_line = err.lines().find(|l| l.starts_with("mapped")).unwrap();
    assert!(
        mapped_line.ends_with(" 3"),
        "3 input identities mapped: {err}"
    );
    assert!(err.lines().any(|l| l.starts_with("invalid")), "{err}");
    let m = manifest(&d("t"));
    assert_eq!(
        (m["input_rows"].as_u64(), m["output_rows"].as_u64()),
        (Some(4), Some(2))
    );
    let o = run(
        &op,
        &[
            "map",
            &s(&d("e.csv")),
            "-o",
            &s(&d("t2")),
            "--distinct",
            "--keep-col",
            "id",
        ],
    );
    assert_eq!(o.status.code(), Some(64), "{}", common::stderr(&o));
}

/// #33.2: an export rewritten while `map` reads it is found before `_SUCCESS` (exit 1), and
/// the retry with `--resume --restart-if-changed` maps the new version alone; a finished
/// night run again after its export changed is left as it is (exit 0), and says so.
#[test]
fn an_export_rewritten_mid_run_is_never_published() {
    let tmp = tempfile::tempdir().unwrap();
    let d = |n: &str| tmp.path().join(n);
    let op = Operator::start(&["--admin"]);
    export(&d("e.csv"), 0..70_000);
    let out = d("night");
    let args = |extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = [
            "map",
            &s(&d("e.csv")),
            "-o",
            &s(&out),
            "--keep-col",
            "customer_id",
            "--batch-size",
            "1000",
            "--concurrency",
            "1",
            "-q",
        ]
        .iter()
        .map(|x| x.to_string())
        .collect();
        a.extend(extra.iter().map(|x| x.to_string()));
        a
    };
    op.http(true, "/ops/hold?after=5");
    let child = cmd(&op, &args(&[])).stderr(Stdio::piped()).spawn().unwrap();
    common::wait_until("a held request", || op.held() > 0.0);
    export(&d("e.csv"), 100_000..170_000);
    op.release();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", common::stderr(&o));
    assert!(common::stderr(&o).contains("changed while the run read it"));
    assert!(
        !out.join("_SUCCESS").exists(),
        "two versions never published"
    );
    ok(&run(&op, &args(&["--resume", "--restart-if-changed"])));
    let rows = common::read_dataset(&out);
    assert_eq!(rows.len(), 70_000);
    assert!(rows
        .iter()
        .all(|r| r["customer_id"].as_deref().unwrap().len() == 6));
    // The night is finished; tonight's export changes again; a second cron fire.
    export(&d("e.csv"), 200_000..200_010);
    let o = run(&op, &args(&["--resume", "--restart-if-changed"]));
    ok(&o);
    assert!(
        common::stderr(&o).contains("left as it is"),
        "{}",
        common::stderr(&o)
    );
    assert_eq!(common::read_dataset(&out).len(), 70_000);
    let o = run(&op, &args(&["--resume"]));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        common::stderr(&o).contains("another output directory"),
        "{}",
        common::stderr(&o)
    );
}

/// #33.4: an operator that answers 429 with a Retry-After longer than the stall timeout is
/// alive: the run waits and finishes.
#[test]
fn a_rate_limited_operator_is_no_silent_one() {
    let tmp = tempfile::tempdir().unwrap();
    let op = Operator::start(&["--rate-limit", "1", "--retry-after", "3"]);
    export(&tmp.path().join("e.csv"), 0..300);
    let out = tmp.path().join("out");
    ok(&run(
        &op,
        &[
            "map",
            &s(&tmp.path().join("e.csv")),
            "-o",
            &s(&out),
            "--batch-size",
            "100",
            "--stall-timeout",
            "2",
            "-q",
        ],
    ));
    assert_eq!(manifest(&out)["counts"]["mapped"], 300);
}

/// #33.6: a resumed refresh uses its first attempt's opt-out sweep instead of sweeping the
/// whole state again.
#[test]
fn a_resumed_refresh_does_not_sweep_again() {
    let tmp = tempfile::tempdir().unwrap();
    let d = |n: &str| tmp.path().join(n);
    let op = Operator::start(&["--admin"]);
    first_night(&op, tmp.path());
    let now = op.advance(400);
    let status_requests = || op.requests_total("/v2/optout/status");
    let args = |resume: bool| resumable_refresh(tmp.path(), &now, true, resume);
    // 14 sweep requests of 5,000 raw ids, then the remaps: held at the last of them.
    killed_after_a_part(&op, &args(false), 83, &d("n1").join("part-00000.parquet"));
    let swept = status_requests();
    assert!(swept >= 14.0, "the first attempt swept the state: {swept}");
    ok(&run(&op, &args(true)));
    assert_eq!(status_requests(), swept, "the resume swept nothing again");
    assert_eq!(common::read_dataset(&d("n1")).len(), 70_000);
    assert!(
        !d("n1").join(".optout-sweep.tmp").exists(),
        "removed once published"
    );
}
