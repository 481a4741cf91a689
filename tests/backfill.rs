//! End to end, issue #27: backfills. `map --dedupe exact` sends each distinct identity once
//! however far apart its repeats are, and writes the window run's rows; `--distinct` writes
//! the lookup table; kill -9 in each pass and `--resume` give the same rows, and the scratch
//! folder goes away. The real binary against the emulator.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::Operator;

type Row = BTreeMap<String, Option<String>>;

/// Distinct emails, then every one of them again in reverse order, far beyond what a 1 MiB
/// answer cache (about 7,000 answers) or the reorder window remembers; a few invalid and
/// missing cells. Returns the file and its number of distinct valid identities.
fn backfill_file(dir: &Path) -> (PathBuf, usize) {
    const N: usize = 160_000;
    let input = dir.join("events.csv");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&input).unwrap());
    writeln!(f, "event_id,email").unwrap();
    for (id, i) in (0..N).chain((0..N).rev()).enumerate() {
        let email = match i % 1000 {
            7 => String::new(),
            8 => "not-an-email".to_string(),
            _ => format!("person{i}@example.com"),
        };
        writeln!(f, "{id},{email}").unwrap();
    }
    (input, N - 2 * N / 1000)
}

fn s(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

fn map_args(input: &Path, out: &Path, url: &str, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = [
        "map",
        &s(input),
        "-o",
        &s(out),
        "--base-url",
        url,
        "--batch-size",
        "2000",
        "--dedupe-memory",
        "1",
        "--part-rows",
        "50000",
        "-q",
    ]
    .iter()
    .map(|x| x.to_string())
    .collect();
    a.extend(extra.iter().map(|e| e.to_string()));
    a
}

fn run(args: &[String]) -> std::process::Output {
    common::run_bin(args, &common::creds())
}

fn ok(o: &std::process::Output) {
    assert!(o.status.success(), "{}", common::stderr(o));
}

fn manifest(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("_manifest.json")).unwrap()).unwrap()
}

fn without_time(rows: Vec<Row>) -> Vec<Row> {
    rows.into_iter()
        .map(|mut r| {
            r.remove("mapped_at");
            r
        })
        .collect()
}

/// The parts committed in `out`.
fn committed(out: &Path) -> usize {
    euid_map::output::committed_parts(&euid_map::storage::Location::Local(out.to_path_buf()))
        .unwrap()
        .len()
}

/// Starts `euid-map ARGS` and returns once the emulator holds one of its requests.
fn held_run(args: &[String], op: &Operator) -> std::process::Child {
    let child = Command::new(common::bin())
        .args(args)
        .envs(common::creds())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    common::wait_until("a held request", || op.held() > 0.0);
    child
}

/// No scratch folder is left in the output (nor any hidden temporary file).
fn no_scratch(out: &Path) {
    let left: Vec<String> = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// #34: exact dedupe bounded at any scale. A budget of 5,000 identities and 4 partitions
/// (the test hook) stands in for 200,000 and 512 facing a billion identities: every
/// partition outgrows the budget, is mapped in sub-partitions within it, and the rows (and
/// the lookup table) are those of an unbounded run, each distinct identity sent once.
#[test]
fn exact_dedupe_holds_its_memory_budget_however_big_the_input() {
    let tmp = tempfile::tempdir().unwrap();
    let (input, distinct) = backfill_file(tmp.path());
    let op = Operator::start(&[]);
    let budget = [
        common::creds()[0],
        common::creds()[1],
        ("EUID_MAP_EXACT_BUDGET", "5000,4"),
    ];
    let (plain, small) = (tmp.path().join("plain"), tmp.path().join("small"));
    ok(&run(&map_args(
        &input,
        &plain,
        &op.url,
        &["--dedupe", "exact"],
    )));
    let before = op.requested();
    ok(&common::run_bin(
        &map_args(&input, &small, &op.url, &["--dedupe", "exact"]),
        &budget,
    ));
    let m = manifest(&small);
    let units = m["dedupe_units"].as_u64().unwrap();
    let peak = m["dedupe_peak_identities"].as_u64().unwrap();
    // 319,360 valid identities, 159,680 distinct, in 4 partitions of about 40,000 distinct
    // (the split counts distinct identities, not records), in pieces of at most 4,500 (a
    // tenth below the budget): 9 or 10 each (without the split: 4 units).
    assert!((36..=40).contains(&units), "every partition split: {units}");
    assert!(peak <= 5000, "at most the budget in memory: {peak}");
    assert!(
        manifest(&plain)["dedupe_peak_identities"].as_u64().unwrap() > 5000,
        "an unbounded run holds more"
    );
    assert_eq!(m["hashes_sent"].as_u64().unwrap(), distinct as u64);
    assert_eq!(op.requested() - before, distinct as f64, "each sent once");
    assert!(
        without_time(common::read_dataset(&plain)) == without_time(common::read_dataset(&small)),
        "the same rows, in the same order"
    );
    no_scratch(&small);
    // The lookup table under the same budget: the same rows (in unit order).
    let (table, small_table) = (tmp.path().join("table"), tmp.path().join("small-table"));
    ok(&run(&map_args(&input, &table, &op.url, &["--distinct"])));
    ok(&common::run_bin(
        &map_args(&input, &small_table, &op.url, &["--distinct"]),
        &budget,
    ));
    let sorted = |d: &Path| {
        let mut rows = without_time(common::read_dataset(d));
        rows.sort();
        rows
    };
    let got = sorted(&small_table);
    assert_eq!(got.len(), distinct);
    assert!(got == sorted(&table), "the same lookup table");
    assert_eq!(
        manifest(&small_table)["counts"],
        manifest(&table)["counts"],
        "the input's counts"
    );
    no_scratch(&small_table);
}

#[test]
fn exact_sends_each_distinct_identity_once_and_writes_the_window_rows() {
    let tmp = tempfile::tempdir().unwrap();
    let (input, distinct) = backfill_file(tmp.path());
    let op = Operator::start(&[]);
    let window = tmp.path().join("window");
    ok(&run(&map_args(
        &input,
        &window,
        &op.url,
        &["--dedupe", "window"],
    )));
    let sent_window = manifest(&window)["hashes_sent"].as_u64().unwrap();
    assert!(
        sent_window > distinct as u64 + 50_000,
        "the input must defeat the window: {sent_window} sent for {distinct}"
    );
    let before = op.requested();
    let exact = tmp.path().join("exact");
    ok(&run(&map_args(
        &input,
        &exact,
        &op.url,
        &["--dedupe", "exact"],
    )));
    let m = manifest(&exact);
    assert_eq!(m["dedupe"], "exact");
    assert_eq!(m["hashes_sent"].as_u64().unwrap(), distinct as u64);
    assert_eq!(m["unique_hashes_sent"].as_u64().unwrap(), distinct as u64);
    // Sent while the input was read: every distinct identity but the filter's few false
    // positives (about 0.4 %), which wait for the read to end.
    let early = m["dedupe_sent_early"].as_u64().unwrap();
    assert!(
        early <= distinct as u64 && early * 100 >= distinct as u64 * 99,
        "{early} of {distinct} sent during pass 1"
    );
    assert_eq!(
        op.requested() - before,
        distinct as f64,
        "the operator saw each distinct identity once"
    );
    assert!(m["dedupe_scratch_bytes"].as_u64().unwrap() > 0);
    assert_eq!(manifest(&window)["dedupe"], "window");
    assert_eq!(m["counts"], manifest(&window)["counts"]);
    let (w, e) = (
        without_time(common::read_dataset(&window)),
        without_time(common::read_dataset(&exact)),
    );
    assert_eq!(w.len(), 2 * 160_000);
    assert!(w == e, "the same rows, in the same order");
    no_scratch(&exact);
}

#[test]
fn auto_runs_the_window_and_names_exact_when_many_identities_are_resent() {
    let tmp = tempfile::tempdir().unwrap();
    let (input, distinct) = backfill_file(tmp.path());
    let op = Operator::start(&[]);
    let big = tmp.path().join("auto-big");
    let o = run(&map_args(&input, &big, &op.url, &[]));
    ok(&o);
    let m = manifest(&big);
    assert_eq!(m["dedupe"], "window", "one read, whatever the size");
    let sent = m["hashes_sent"].as_u64().unwrap();
    let resent = m["resent_estimate"].as_u64().unwrap();
    let truly = sent - distinct as u64;
    assert!(truly > 0, "the backfill's repeats lie beyond a 1 MiB cache");
    assert!(
        resent.abs_diff(truly) * 20 <= sent,
        "the estimate {resent} of {truly} re-sent identities is within 5 % of {sent} sent"
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--dedupe exact"),
        "the warning names exact: {err}"
    );
    let small = tmp.path().join("small.csv");
    std::fs::write(&small, "event_id,email\n1,a@example.com\n2,a@example.com\n").unwrap();
    let out = tmp.path().join("auto-small");
    let o = run(&map_args(&small, &out, &op.url, &[]));
    ok(&o);
    assert_eq!(manifest(&out)["dedupe"], "window");
    assert_eq!(manifest(&out)["resent_estimate"], 0);
    assert!(!String::from_utf8_lossy(&o.stderr).contains("--dedupe exact"));
}

/// Aborts the run (as kill -9: no cleanup) in `pass`, then resumes it.
fn abort_then_resume(pass: &str, extra: &[&str]) {
    let tmp = tempfile::tempdir().unwrap();
    let (input, _) = backfill_file(tmp.path());
    let op = Operator::start(&[]);
    let out = tmp.path().join("killed");
    let mut args = map_args(&input, &out, &op.url, &["--dedupe", "exact"]);
    args.extend(extra.iter().map(|e| e.to_string()));
    let mut envs = common::creds().to_vec();
    envs.push(("EUID_MAP_ABORT_AT", pass));
    let o = common::run_bin(&args, &envs);
    assert!(!o.status.success(), "aborted in {pass}");
    assert!(!out.join("_SUCCESS").exists());
    assert!(
        out.join(".dedupe.tmp").exists(),
        "a killed run leaves its scratch folder"
    );
    if pass == "join" && extra.is_empty() {
        assert!(committed(&out) > 0, "killed after pass 2 committed parts");
    }
    args.push("--resume".into());
    ok(&run(&args));
    no_scratch(&out);
    let clean = tmp.path().join("clean");
    let mut args = map_args(&input, &clean, &op.url, &["--dedupe", "exact"]);
    args.extend(extra.iter().map(|e| e.to_string()));
    ok(&run(&args));
    assert!(
        without_time(common::read_dataset(&clean)) == without_time(common::read_dataset(&out)),
        "resumed after {pass}: the clean run's rows, no duplicates, no gaps"
    );
    assert_eq!(manifest(&out)["counts"], manifest(&clean)["counts"]);
}

#[test]
fn killed_in_the_spill_pass_then_resumed() {
    abort_then_resume("spill", &[]);
}

#[test]
fn killed_in_the_mapping_pass_then_resumed() {
    abort_then_resume("mapping", &[]);
}

#[test]
fn killed_in_the_join_pass_then_resumed() {
    abort_then_resume("join", &[]);
}

#[test]
fn lookup_table_killed_while_mapping_then_resumed() {
    abort_then_resume("mapping", &["--distinct"]);
}

/// A real SIGKILL while the mapping pass waits on the operator.
#[test]
fn kill_9_while_mapping_then_resume() {
    stopped_while_held_then_resumed("-KILL");
}

/// SIGTERM while a plain exact run waits on the operator: exit 143, nothing of the
/// interrupted passes kept but committed parts, and `--resume` gives the clean run's rows.
#[test]
fn sigterm_during_an_exact_run_then_resume_gives_the_clean_rows() {
    stopped_while_held_then_resumed("-TERM");
}

/// Sends `signal` to an exact run held on the operator, resumes it, and checks it against
/// a run never stopped: each distinct identity sent once, the same rows.
fn stopped_while_held_then_resumed(signal: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let (input, distinct) = backfill_file(tmp.path());
    let op = Operator::start(&["--admin", "--hold-after", "20"]);
    let out = tmp.path().join("stopped");
    let args = map_args(&input, &out, &op.url, &["--dedupe", "exact"]);
    let mut child = held_run(&args, &op);
    assert!(child.try_wait().unwrap().is_none(), "held mid-run");
    let sent = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let status = child.wait().unwrap();
    assert!(!out.join("_SUCCESS").exists());
    if signal == "-TERM" {
        assert_eq!(status.code(), Some(143));
        assert_eq!(manifest(&out)["status"], "interrupted");
    } else {
        assert!(
            out.join(".dedupe.tmp").exists(),
            "kill -9 leaves its scratch"
        );
    }
    op.release();
    let mut resume = args.clone();
    resume.push("--resume".into());
    ok(&run(&resume));
    no_scratch(&out);
    if signal == "-KILL" {
        // The held requests never answered: nothing was committed before the kill.
        assert_eq!(
            manifest(&out)["hashes_sent"].as_u64().unwrap(),
            distinct as u64
        );
    }
    let clean = tmp.path().join("clean");
    ok(&run(&map_args(
        &input,
        &clean,
        &op.url,
        &["--dedupe", "exact"],
    )));
    let (got, want) = (
        without_time(common::read_dataset(&out)),
        without_time(common::read_dataset(&clean)),
    );
    assert_eq!(got.len(), 2 * 160_000);
    assert!(
        got == want,
        "stopped and resumed = never stopped, row for row"
    );
}

#[test]
fn the_lookup_table_holds_each_distinct_identity_once_with_its_answer() {
    let tmp = tempfile::tempdir().unwrap();
    let (input, distinct) = backfill_file(tmp.path());
    let op = Operator::start(&["--admin"]);
    let plain = tmp.path().join("plain");
    ok(&run(&map_args(
        &input,
        &plain,
        &op.url,
        &["--keep-col", "event_id"],
    )));
    let lookup = tmp.path().join("lookup");
    ok(&run(&map_args(&input, &lookup, &op.url, &["--distinct"])));
    let table = common::read_dataset(&lookup);
    assert_eq!(table.len(), distinct, "one row per distinct valid identity");
    let names: BTreeSet<&str> = table[0].keys().map(String::as_str).collect();
    let want: BTreeSet<&str> = euid_map::output::LOOKUP_COLUMNS.into_iter().collect();
    assert_eq!(names, want, "no source, row or kept columns");
    let by_hash: BTreeMap<String, Row> = table
        .into_iter()
        .map(|r| (r["identity_hash"].clone().unwrap(), r))
        .collect();
    assert_eq!(by_hash.len(), distinct, "no identity twice");
    // Joining the table back on identity_hash gives every plain row's answer.
    let mut joined = 0;
    for r in common::read_dataset(&plain) {
        match r["identity_hash"].as_ref() {
            Some(h) => {
                let l = &by_hash[h];
                for c in [
                    "status",
                    "reason",
                    "raw_euid",
                    "previous_raw_euid",
                    "refresh_from",
                ] {
                    assert_eq!(l[c], r[c], "{c} of {h}");
                }
                joined += 1;
            }
            None => assert!(matches!(
                r["status"].as_deref(),
                Some("missing" | "invalid")
            )),
        }
    }
    assert_eq!(joined, 2 * distinct);
    let (m, p) = (manifest(&lookup), manifest(&plain));
    assert_eq!(m["counts"], p["counts"], "the input's identities by status");
    assert_eq!(m["input_rows"], p["input_rows"]);
    assert_eq!(m["output_rows"].as_u64().unwrap(), distinct as u64);
    assert_eq!(m["distinct"], true);
    assert_eq!(m["hashes_sent"].as_u64().unwrap(), distinct as u64);
    // Refreshed, it stays a lookup table: every row remapped once due, none duplicated.
    op.advance(400);
    let next = tmp.path().join("next");
    let o = run(&[
        "refresh".into(),
        "--state".into(),
        s(&lookup),
        "-o".into(),
        s(&next),
        "--base-url".into(),
        op.url.clone(),
        "--now".into(),
        "2028-12-01T00:00:00Z".into(),
        "--no-optout-sweep".into(),
        "-q".into(),
    ]);
    ok(&o);
    let refreshed = common::read_dataset(&next);
    assert_eq!(refreshed.len(), distinct);
    let names: BTreeSet<&str> = refreshed[0].keys().map(String::as_str).collect();
    assert_eq!(names, want, "still the lookup table's columns");
    let r = &manifest(&next)["refresh"];
    assert_eq!(
        r["due"].as_u64().unwrap() + r["carried"].as_u64().unwrap(),
        distinct as u64
    );
    assert!(r["due"].as_u64().unwrap() > 0);
    // With today's export it is refused: a lookup table has no customers.
    let o = run(&[
        "refresh".into(),
        s(&input),
        "--key-col".into(),
        "event_id".into(),
        "--state".into(),
        s(&lookup),
        "-o".into(),
        s(&tmp.path().join("refused")),
        "--base-url".into(),
        op.url.clone(),
        "-q".into(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        common::stderr(&o).contains("lookup table"),
        "{}",
        common::stderr(&o)
    );
}

#[test]
fn distinct_refuses_the_window_mode() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in.csv");
    std::fs::write(&input, "email\na@example.com\n").unwrap();
    let o = run(&map_args(
        &input,
        &tmp.path().join("o"),
        "http://127.0.0.1:9",
        &["--distinct", "--dedupe", "window"],
    ));
    assert_eq!(o.status.code(), Some(64), "{}", common::stderr(&o));
}

#[test]
fn the_scratch_folder_is_private_and_goes_where_tmp_dir_says() {
    let tmp = tempfile::tempdir().unwrap();
    let (input, _) = backfill_file(tmp.path());
    let op = Operator::start(&[]);
    let scratch = tmp.path().join("scratch-space");
    let out = tmp.path().join("out");
    let mut args = map_args(&input, &out, &op.url, &["--dedupe", "exact"]);
    args.extend(["--tmp-dir".to_string(), s(&scratch)]);
    let mut envs = common::creds().to_vec();
    envs.push(("EUID_MAP_ABORT_AT", "spill"));
    assert!(!common::run_bin(&args, &envs).status.success());
    let dirs: Vec<PathBuf> = std::fs::read_dir(&scratch)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&dirs[0]).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700);
    assert!(!out.join(".dedupe.tmp").exists(), "not beside the output");
    args.push("--resume".into());
    ok(&run(&args));
    assert!(!dirs[0].exists(), "the killed run's folder is cleared");
    assert_eq!(
        std::fs::read_dir(&scratch).unwrap().count(),
        0,
        "and the resumed run's removed at its end"
    );
}

/// SIGTERM while the lookup table is being mapped: exit 143, no part committed (a partial
/// table is never published), and `--resume` writes the whole table.
#[test]
fn sigterm_while_mapping_the_lookup_table_commits_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (input, distinct) = backfill_file(tmp.path());
    let op = Operator::start(&["--admin", "--hold-after", "30"]);
    let out = tmp.path().join("table");
    let args = map_args(&input, &out, &op.url, &["--distinct"]);
    let mut child = held_run(&args, &op);
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(143));
    assert_eq!(
        committed(&out),
        0,
        "a partial lookup table is never committed"
    );
    assert!(!out.join("_SUCCESS").exists());
    assert_eq!(manifest(&out)["status"], "interrupted");
    op.release();
    let mut resume = args.clone();
    resume.push("--resume".into());
    ok(&run(&resume));
    assert_eq!(common::read_dataset(&out).len(), distinct);
    no_scratch(&out);
}
