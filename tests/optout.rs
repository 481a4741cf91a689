//! Issue #20: refresh's opt-out sweep. Map 30,000 rows, opt 1 % of the mapped identities out
//! through the emulator's admin route, refresh with nothing due: exactly those rows become
//! `optout` with no raw EUID, every other row is unchanged, the sweep takes ⌈raw ids / 5,000⌉
//! requests one at a time, and the next night does not send them to the map endpoint. Under
//! faults, after a kill -9 mid-sweep, and with `--no-optout-sweep`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Operator;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The command under test: `common::bin()` (the built binary, or `EUID_MAP_BIN`).
static BIN: std::sync::LazyLock<String> = std::sync::LazyLock::new(common::bin);

type Row = BTreeMap<String, Option<String>>;

fn s(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

fn cmd(op: &Operator, args: &[String]) -> Command {
    let mut c = Command::new(&*BIN);
    c.args(args)
        .args(["--base-url", &op.url, "-q"])
        .env("EUID_API_KEY", common::API_KEY)
        .env("EUID_CLIENT_SECRET", common::SECRET)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    c
}

fn run(op: &Operator, args: &[String]) -> Output {
    cmd(op, args).output().unwrap()
}

fn ok(o: &Output) {
    assert!(o.status.success(), "{}", common::stderr(o));
}

fn manifest(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("_manifest.json")).unwrap()).unwrap()
}

fn requests(op: &Operator, route: &str) -> f64 {
    op.http(false, "/metrics")
        .lines()
        .filter(|l| {
            l.starts_with(&format!(
                "euid_emulator_requests_total{{route=\"{route}\",status=\"200\""
            ))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// 30,000 customers with an email each (a few invalid), mapped into `dir/s0`.
fn setup(op: &Operator, dir: &Path) -> (PathBuf, Vec<Row>) {
    let input = dir.join("in.csv");
    let mut text = String::from("customer_id,email\n");
    for i in 0..30_000u32 {
        if i % 500 == 7 {
            text.push_str(&format!("{i},not-an-email-{i}\n"));
        } else {
            text.push_str(&format!("{i},person{i}@example.com\n"));
        }
    }
    std::fs::write(&input, text).unwrap();
    let s0 = dir.join("s0");
    let args: Vec<String> = [
        "map",
        &s(&input),
        "-o",
        &s(&s0),
        "--keep-col",
        "customer_id",
    ]
    .iter()
    .map(|x| x.to_string())
    .collect();
    ok(&run(op, &args));
    let rows = common::read_dataset(&s0);
    (s0, rows)
}

/// Opts 1 % of the mapped identities out now; their hashes.
fn opt_out_one_percent(op: &Operator, rows: &[Row]) -> HashSet<String> {
    let hashes: Vec<String> = rows
        .iter()
        .filter(|r| r["status"].as_deref() == Some("mapped"))
        .step_by(100)
        .map(|r| r["identity_hash"].clone().unwrap())
        .collect();
    let answer = op.post_json(
        "/ops/optout",
        &serde_json::json!({ "identity_hashes": hashes }),
    );
    assert!(answer.contains("\"opted_out\""), "{answer}");
    hashes.into_iter().collect()
}

fn refresh_args(state: &Path, out: &Path, now: &str, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = ["refresh", "--state", &s(state), "-o", &s(out), "--now", now]
        .iter()
        .map(|x| x.to_string())
        .collect();
    a.extend(extra.iter().map(|x| x.to_string()));
    a
}

/// Every row of `after` is `before`'s, except the opted-out ones, which are `optout` with
/// no raw id and a reason saying when.
fn check_swept(before: &[Row], after: &[Row], opted: &HashSet<String>) {
    assert_eq!(before.len(), after.len());
    let mut swept = 0;
    for (b, a) in before.iter().zip(after) {
        if b["identity_hash"]
            .as_ref()
            .is_some_and(|h| opted.contains(h))
        {
            swept += 1;
            assert_eq!(a["status"].as_deref(), Some("optout"), "{a:?}");
            assert_eq!(a["raw_euid"], None);
            assert_eq!(a["previous_raw_euid"], None);
            assert_eq!(a["refresh_from"], None);
            assert!(
                a["reason"]
                    .as_deref()
                    .is_some_and(|r| r.starts_with("opted out 20")),
                "{a:?}"
            );
            for k in ["source", "row", "customer_id", "identity_hash", "mapped_at"] {
                assert_eq!(a[k], b[k], "{k}: nothing else changes");
            }
        } else {
            assert_eq!(a, b, "every other row is unchanged");
        }
    }
    assert_eq!(swept, opted.len());
}

#[test]
fn the_sweep_finds_every_new_optout_one_request_at_a_time() {
    let tmp = tempfile::tempdir().unwrap();
    let op = Operator::start(&["--admin"]);
    let (s0, before) = setup(&op, tmp.path());
    let opted = opt_out_one_percent(&op, &before);
    let now = op.advance(0);
    let mapped_ids: HashSet<&String> = before
        .iter()
        .filter(|r| r["status"].as_deref() == Some("mapped"))
        .filter_map(|r| r["raw_euid"].as_ref())
        .collect();

    // --no-optout-sweep: today's behaviour, no status request, nothing changes.
    let out = tmp.path().join("no-sweep");
    ok(&run(
        &op,
        &refresh_args(&s0, &out, &now, &["--no-optout-sweep"]),
    ));
    assert_eq!(requests(&op, "/v2/optout/status"), 0.0);
    assert_eq!(common::read_dataset(&out), before);
    assert_eq!(manifest(&out)["refresh"]["optout_sweep"], false);

    let map_before = op.requested();
    let out = tmp.path().join("s1");
    ok(&run(&op, &refresh_args(&s0, &out, &now, &[])));
    let after = common::read_dataset(&out);
    check_swept(&before, &after, &opted);
    let expected = mapped_ids.len().div_ceil(5000) as f64;
    assert_eq!(
        requests(&op, "/v2/optout/status"),
        expected,
        "⌈raw ids / 5,000⌉"
    );
    assert_eq!(op.metric("euid_emulator_optout_status_peak_in_flight"), 1.0);
    assert_eq!(op.requested(), map_before, "nothing due: no map request");
    let r = manifest(&out)["refresh"].clone();
    assert_eq!(r["optout_sweep"], true);
    assert_eq!(r["optout_checked"], mapped_ids.len());
    assert_eq!(r["optout_found"], opted.len());
    assert_eq!(r["optout_swept"], opted.len());
    assert_eq!(r["optout_requests"], expected);

    // The same night run again is a no-op: no request, not even the sweep's.
    let status_before = requests(&op, "/v2/optout/status");
    let mut again = refresh_args(&s0, &out, &now, &[]);
    again.push("--resume".into());
    let o = run(&op, &again);
    ok(&o);
    assert!(
        common::stderr(&o).contains("nothing to do"),
        "{}",
        common::stderr(&o)
    );
    assert_eq!(requests(&op, "/v2/optout/status"), status_before);

    // The next day: the opted-out identities are never sent to the map endpoint, even once
    // they would be due.
    let later = op.advance(400);
    let sent_before = op.requested();
    let out2 = tmp.path().join("s2");
    ok(&run(&op, &refresh_args(&out, &out2, &later, &[])));
    let s2 = common::read_dataset(&out2);
    let sent = op.requested() - sent_before;
    // Every mapped identity is due 400 days on, and only those are sent: each distinct one
    // once, and never an opted-out one.
    let mapped_in_s1: std::collections::HashSet<&str> = after
        .iter()
        .filter(|r| r["status"].as_deref() == Some("mapped"))
        .filter_map(|r| r["identity_hash"].as_deref())
        .collect();
    let opted_out: std::collections::HashSet<&str> = after
        .iter()
        .filter(|r| r["status"].as_deref() == Some("optout"))
        .filter_map(|r| r["identity_hash"].as_deref())
        .collect();
    assert!(!opted_out.is_empty() && mapped_in_s1.is_disjoint(&opted_out));
    assert_eq!(
        sent,
        mapped_in_s1.len() as f64,
        "exactly the distinct mapped identities were sent"
    );
    for (a, b) in after.iter().zip(&s2) {
        if a["status"].as_deref() == Some("optout") {
            assert_eq!(b, a, "an opt-out stays as it was");
        }
    }
}

#[test]
fn faults_and_a_kill_during_the_sweep_change_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let op = Operator::start(&["--admin"]);
    let (s0, before) = setup(&op, tmp.path());
    let opted = opt_out_one_percent(&op, &before);
    let now = op.advance(0);

    // A kill -9 while the sweep waits for an answer, then --resume.
    let out = tmp.path().join("killed");
    op.http(true, "/ops/hold?after=2");
    let mut child = cmd(&op, &refresh_args(&s0, &out, &now, &[]))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    common::wait_until("a held status request", || op.held() > 0.0);
    child.kill().unwrap();
    child.wait().unwrap();
    op.release();
    assert!(!out.join("_SUCCESS").exists());
    let mut resume = refresh_args(&s0, &out, &now, &[]);
    resume.push("--resume".into());
    ok(&run(&op, &resume));
    check_swept(&before, &common::read_dataset(&out), &opted);

    // Faults on every kind of answer: the same rows.
    let faulty = Operator::start(&[
        "--admin",
        "--faults",
        "429=0.1,503=0.1,reset=0.05,slow=0.1",
        "--slow-ms",
        "50",
    ]);
    // The faulty emulator has its own opt-outs and clock: map and opt out there.
    let dir = tmp.path().join("faulty");
    std::fs::create_dir_all(&dir).unwrap();
    let (s0, before) = setup(&faulty, &dir);
    let opted = opt_out_one_percent(&faulty, &before);
    let now = faulty.advance(0);
    let out = dir.join("s1");
    ok(&run(&faulty, &refresh_args(&s0, &out, &now, &[])));
    check_swept(&before, &common::read_dataset(&out), &opted);
    assert!(manifest(&out)["client"]["retries"].as_u64().unwrap() > 0);
}

/// Issue #20: the standalone command on a file of raw ids, with invalid ones and
/// duplicates: each row's id as stored, `active` / `optout` / `invalid`, one request for the
/// distinct ids.
#[test]
fn the_optout_command_checks_a_file_of_raw_ids() {
    let tmp = tempfile::tempdir().unwrap();
    let op = Operator::start(&["--admin"]);
    let input = tmp.path().join("people.csv");
    std::fs::write(&input, "id,email\n1,a@example.com\n2,b@example.com\n").unwrap();
    let s0 = tmp.path().join("s0");
    let args: Vec<String> = ["map", &s(&input), "-o", &s(&s0), "--keep-col", "id"]
        .iter()
        .map(|x| x.to_string())
        .collect();
    ok(&run(&op, &args));
    let mapped = common::read_dataset(&s0);
    let (a, b) = (
        mapped[0]["raw_euid"].clone().unwrap(),
        mapped[1]["raw_euid"].clone().unwrap(),
    );
    // b opts out now.
    let opted: HashSet<String> = [mapped[1]["identity_hash"].clone().unwrap()].into();
    op.post_json(
        "/ops/optout",
        &serde_json::json!({ "identity_hashes": opted.iter().collect::<Vec<_>>() }),
    );
    let urlsafe = a.replace('+', "-").replace('/', "_");
    let activation = tmp.path().join("activation.csv");
    std::fs::write(
        &activation,
        format!("uid,segment\n{a},s0\n{b},s1\n{b},s2\n,s3\nnot base64!,s4\n{urlsafe},s5\n"),
    )
    .unwrap();
    let out = tmp.path().join("checked");
    let args: Vec<String> = [
        "optout",
        &s(&activation),
        "-o",
        &s(&out),
        "--id-col",
        "uid",
        "--keep-col",
        "segment",
    ]
    .iter()
    .map(|x| x.to_string())
    .collect();
    ok(&run(&op, &args));
    let rows = common::read_dataset(&out);
    let got: Vec<(Option<String>, String)> = rows
        .iter()
        .map(|r| (r["segment"].clone(), r["status"].clone().unwrap()))
        .collect();
    let want: Vec<(Option<String>, String)> = [
        ("s0", "active"),
        ("s1", "optout"),
        ("s2", "optout"),
        ("s3", "invalid"),
        ("s4", "invalid"),
        ("s5", "invalid"),
    ]
    .iter()
    .map(|(a, b)| (Some(a.to_string()), b.to_string()))
    .collect();
    assert_eq!(got, want);
    assert_eq!(
        rows[1]["raw_euid"].as_deref(),
        Some(b.as_str()),
        "as stored"
    );
    assert!(rows[1]["opted_out_since"].is_some());
    assert_eq!(
        rows[5]["raw_euid"].as_deref(),
        Some(urlsafe.as_str()),
        "never re-encoded"
    );
    let m = manifest(&out);
    assert_eq!(m["optout"]["checked"], 2, "each distinct valid id once");
    assert_eq!(m["optout"]["found"], 1);
    assert_eq!(requests(&op, "/v2/optout/status"), 1.0);
    assert!(out.join("_SUCCESS").exists());
}
