//! Issue #9: no run may end "successfully" with lost, swapped or leaked data. Each test runs
//! the real binary on real files, against `euid-map operator` or nothing at all.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Operator;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The command under test: `common::bin()` (the built binary, or `EUID_MAP_BIN`).
static BIN: std::sync::LazyLock<String> = std::sync::LazyLock::new(common::bin);

type Row = BTreeMap<String, Option<String>>;

use common::{creds, run_bin as run, stderr};

fn s(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

fn without_time(rows: Vec<Row>) -> Vec<Row> {
    rows.into_iter()
        .map(|mut r| {
            r.remove("mapped_at");
            r
        })
        .collect()
}

/// A CSV of `n` customers with an email and a phone each.
fn customers(dir: &Path, name: &str, n: u64) -> PathBuf {
    let input = dir.join(name);
    let mut f = std::io::BufWriter::new(std::fs::File::create(&input).unwrap());
    writeln!(f, "customer_id,email,phone").unwrap();
    for i in 0..n {
        writeln!(f, "{i},person{i}@example.com,+49{:010}", i * 7919).unwrap();
    }
    input
}

/// #9.1: a stray quote stops the run, naming the file and the line where it opened.
#[test]
fn an_unterminated_quote_stops_the_run_naming_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let q = tmp.path().join("q.csv");
    std::fs::write(&q, "id,email\n1,\"a@b.com\n2,c@d.com\n3,e@f.com\n").unwrap();
    for cmd in ["hash", "map"] {
        let out = tmp.path().join(cmd);
        let mut args = vec![cmd.to_string(), s(&q), "-o".into(), s(&out)];
        if cmd == "map" {
            args.extend(["--env".into(), "local".into()]);
        }
        let o = run(&args, &[]);
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        let e = stderr(&o);
        assert!(e.contains("q.csv") && e.contains("line 2"), "{e}");
        assert!(!out.join("_SUCCESS").exists());
    }
}

/// #9.2: a second run into a directory another run holds exits 1 at once, naming the holder.
#[test]
fn a_second_run_into_a_busy_directory_fails_naming_the_holder() {
    let tmp = tempfile::tempdir().unwrap();
    let input = customers(tmp.path(), "in.csv", 10);
    let out = tmp.path().join("o");
    let held =
        euid_map::output::DirLock::acquire(&euid_map::storage::Location::Local(out.clone()), "map")
            .unwrap();
    for extra in [&[][..], &["--resume"][..]] {
        let mut args = vec!["hash".to_string(), s(&input), "-o".into(), s(&out)];
        args.extend(extra.iter().map(|x| x.to_string()));
        let o = run(&args, &[]);
        assert_eq!(o.status.code(), Some(1));
        let e = stderr(&o);
        assert!(
            e.contains("in use by another run")
                && e.contains(&format!("pid {}", std::process::id())),
            "{e}"
        );
    }
    assert!(!out.join("_SUCCESS").exists());
    drop(held);
    let o = run(&["hash", &s(&input), "-o", &s(&out), "-q"], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
}

/// #9.3: `--resume` over a changed input is refused; on a complete run it changes nothing.
#[test]
fn resume_refuses_a_changed_input_and_leaves_a_complete_run_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let input = customers(tmp.path(), "in.csv", 100);
    let out = tmp.path().join("o");
    let o = run(&["hash", &s(&input), "-o", &s(&out), "-q"], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let manifest = std::fs::read(out.join("_manifest.json")).unwrap();
    let o = run(&["hash", &s(&input), "-o", &s(&out), "--resume"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("already holds a complete run"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        std::fs::read(out.join("_manifest.json")).unwrap(),
        manifest,
        "the manifest is not rewritten"
    );
    assert!(out.join("_SUCCESS").exists());

    customers(tmp.path(), "in.csv", 101); // the export was replaced
    let o = run(&["hash", &s(&input), "-o", &s(&out), "--resume"], &[]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("in.csv") && e.contains("finished with an earlier version"),
        "{e}"
    );
}

/// #9.4: answers with the right total but wrong per-kind counts are never assigned.
#[test]
fn shifted_answers_are_retried_never_assigned() {
    let tmp = tempfile::tempdir().unwrap();
    let input = customers(tmp.path(), "in.csv", 3_000);
    let clean_op = Operator::start(&[]);
    let clean = tmp.path().join("clean");
    let args = |out: &Path, url: &str| {
        vec![
            "map".to_string(),
            s(&input),
            "-o".into(),
            s(out),
            "--base-url".into(),
            url.to_string(),
            "--batch-size".into(),
            "100".into(),
            "--keep-col".into(),
            "customer_id".into(),
            "-q".into(),
        ]
    };
    let o = run(&args(&clean, &clean_op.url), &creds());
    assert!(o.status.success(), "{}", stderr(&o));
    let shifty = Operator::start(&["--faults", "shift=0.3"]);
    let out = tmp.path().join("o");
    let o = run(&args(&out, &shifty.url), &creds());
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(shifty.metric("euid_emulator_faults_total{fault=\"shift\"}") > 0.0);
    assert!(
        without_time(common::read_dataset(&clean)) == without_time(common::read_dataset(&out)),
        "every raw EUID is on its own identity"
    );
}

/// #9.8: a wrong client secret stops the run at once, without bisecting batches.
#[test]
fn a_wrong_secret_stops_the_run_at_once_naming_the_secret() {
    let tmp = tempfile::tempdir().unwrap();
    let input = customers(tmp.path(), "in.csv", 10_000);
    let op = Operator::start(&[]);
    let out = tmp.path().join("o");
    let o = run(
        &[
            "map",
            &s(&input),
            "-o",
            &s(&out),
            "--base-url",
            &op.url,
            "-q",
        ],
        &[
            ("EUID_API_KEY", common::API_KEY),
            (
                "EUID_CLIENT_SECRET",
                "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0MTI=",
            ),
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains("client secret"), "{e}");
    assert!(!out.join("_SUCCESS").exists());
    let requests = op.metric("euid_emulator_requests_total");
    assert!(
        requests <= 2.0 * euid_map::protocol::MAX_CONCURRENCY as f64,
        "{requests} requests: the batches were bisected"
    );
}

/// #9.9: an operator that cannot be reached from the start is a run-level error.
#[test]
fn an_unreachable_operator_is_fatal_with_the_cause() {
    let tmp = tempfile::tempdir().unwrap();
    let input = customers(tmp.path(), "in.csv", 10);
    // A port nothing listens on: bound, then closed.
    let port = common::free_port();
    let out = tmp.path().join("o");
    let o = run(
        &[
            "map",
            &s(&input),
            "-o",
            &s(&out),
            "--base-url",
            &format!("http://127.0.0.1:{port}"),
            "--max-retries",
            "1",
            "-q",
        ],
        &creds(),
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains("cannot reach the operator") && e.contains("connection refused"),
        "{e}"
    );
    assert!(!out.join("_SUCCESS").exists());
}

/// #9.10 and #9.11: look-alike loopback hosts are refused; usage errors exit 64.
#[test]
fn look_alike_hosts_are_refused_and_usage_errors_exit_64() {
    let tmp = tempfile::tempdir().unwrap();
    let input = customers(tmp.path(), "in.csv", 1);
    for url in ["http://127.0.0.1.nip.io", "http://127.0.0.1@example.com"] {
        let o = run(
            &[
                "map",
                &s(&input),
                "-o",
                &s(&tmp.path().join("o")),
                "--base-url",
                url,
            ],
            &creds(),
        );
        assert_eq!(o.status.code(), Some(1), "{url}");
        assert!(!stderr(&o).is_empty());
    }
    let o = run(&["map", "--no-such-flag"], &[]);
    assert_eq!(o.status.code(), Some(64), "{}", stderr(&o));
    let o = run(
        &[
            "map",
            &s(&input),
            "-o",
            &s(&tmp.path().join("d")),
            "--env",
            "local",
            "--dedupe-memory",
            "1000000",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(64), "{}", stderr(&o));
    assert!(stderr(&o).contains("--dedupe-memory must be at most 65536 MiB"));
    let o = run(
        &["map", &s(&input), "-o", &s(&tmp.path().join("p"))],
        &creds(),
    );
    assert_eq!(
        o.status.code(),
        Some(64),
        "no --env/--base-url: {}",
        stderr(&o)
    );
    let o = run(&["--help"], &[]);
    assert_eq!(o.status.code(), Some(0));
    let help = String::from_utf8_lossy(&o.stdout);
    for code in ["64", "130", "143"] {
        assert!(help.contains(code), "--help documents exit code {code}");
    }
}

/// #9.12: SIGTERM drains, commits what is complete, says how to continue, exits 143; the
/// resumed run gives the rows of a clean one.
#[test]
fn sigterm_commits_what_is_complete_and_resume_finishes_the_run() {
    let tmp = tempfile::tempdir().unwrap();
    let input = customers(tmp.path(), "in.csv", 100_000);
    // About 200 requests; every one after the 130th is held until released, by when the
    // first chunk's parts (66 requests, a few of which may go out late as batch tasks race
    // for a request slot) are committed and the next part is being written.
    let op = Operator::start(&["--admin", "--hold-after", "130"]);
    let out = tmp.path().join("o");
    let args = |out: &Path, extra: &[&str]| {
        let mut a = vec![
            "map".to_string(),
            s(&input),
            "-o".into(),
            s(out),
            "--base-url".into(),
            op.url.clone(),
            "--batch-size".into(),
            "1000".into(),
            "--concurrency".into(),
            "1".into(),
            "--part-rows".into(),
            "30000".into(),
            "--keep-col".into(),
            "customer_id".into(),
            "-q".into(),
        ];
        a.extend(extra.iter().map(|x| x.to_string()));
        a
    };
    let mut child = Command::new(&*BIN)
        .args(args(&out, &[]))
        .envs(creds())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Held mid-run, with a part committed: SIGTERM, then let the answers in flight come.
    common::wait_until("a committed part and a held request", || {
        out.join("part-00000.parquet").exists() && op.held() > 0.0
    });
    assert!(child.try_wait().unwrap().is_none(), "held mid-run");
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    op.release();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(143), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("interrupted: rerun the same command with --resume"),
        "{}",
        stderr(&o)
    );
    assert!(!out.join("_SUCCESS").exists());
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("_manifest.json")).unwrap()).unwrap();
    assert_eq!(m["status"], "interrupted");
    let leftovers: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert!(
        m["input_rows"].as_u64().unwrap() > 0,
        "what was mapped before the signal was committed"
    );

    let o = run(&args(&out, &["--resume"]), &creds());
    assert!(o.status.success(), "{}", stderr(&o));
    let clean = tmp.path().join("clean");
    let o = run(&args(&clean, &[]), &creds());
    assert!(o.status.success(), "{}", stderr(&o));
    let (c, r) = (
        without_time(common::read_dataset(&clean)),
        without_time(common::read_dataset(&out)),
    );
    assert_eq!(c.len(), 200_000);
    assert!(c == r, "same rows, no duplicates, no gaps");
}

/// #9.5 and #9.6: kept columns are matched by name, a header-only export wipes nothing,
/// and rows with a null key are counted.
#[test]
fn refresh_keeps_columns_by_name_and_refuses_to_wipe_the_state() {
    let tmp = tempfile::tempdir().unwrap();
    let op = Operator::start(&[]);
    let d = |n: &str| tmp.path().join(n);
    std::fs::write(
        d("day1.csv"),
        "customer_id,name,email\nC1,Ann,a@example.com\nC2,Bob,b@example.com\nC3,Cy,c@example.com\n,Nobody,n@example.com\n",
    )
    .unwrap();
    let o = run(
        &[
            "map",
            &s(&d("day1.csv")),
            "-o",
            &s(&d("s0")),
            "--base-url",
            &op.url,
            "--keep-col",
            "customer_id",
            "--keep-col",
            "name",
            "-q",
        ],
        &creds(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    std::fs::write(
        d("day2.csv"),
        "name,customer_id,email\nAnn,C1,a@example.com\n",
    )
    .unwrap();
    let refresh = |out: &str, input: &str, extra: &[&str]| {
        let mut a = vec![
            "refresh".to_string(),
            "--state".into(),
            s(&d("s0")),
            "-o".into(),
            s(&d(out)),
            s(&d(input)),
            "--key-col".into(),
            "customer_id".into(),
            "--keep-col".into(),
            "name".into(),
            "--keep-col".into(),
            "customer_id".into(),
            "--base-url".into(),
            op.url.clone(),
            "-q".into(),
        ];
        a.extend(extra.iter().map(|x| x.to_string()));
        run(&a, &creds())
    };
    let o = refresh("kept", "day2.csv", &["--keep-missing"]);
    assert!(o.status.success(), "{}", stderr(&o));
    for r in common::read_dataset(&d("kept")) {
        let (id, name) = (r["customer_id"].clone(), r["name"].clone());
        let expected = match id.as_deref() {
            Some("C1") => "Ann",
            Some("C2") => "Bob",
            Some("C3") => "Cy",
            None => "Nobody",
            other => panic!("unexpected customer {other:?}"),
        };
        assert_eq!(name.as_deref(), Some(expected), "columns swapped: {r:?}");
    }
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d("kept").join("_manifest.json")).unwrap()).unwrap();
    assert_eq!(m["refresh"]["state_null_key_rows"], 1);

    std::fs::write(d("empty.csv"), "name,customer_id,email\n").unwrap();
    let o = refresh("wiped", "empty.csv", &[]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("--max-drop-fraction"), "{}", stderr(&o));
    assert!(!d("wiped").join("_SUCCESS").exists());
    assert!(
        !d("wiped").join(".refresh-tmp").exists(),
        "the join's scratch folder (hashed identities) is removed"
    );

    std::fs::write(d("typed.csv"), "customer_id,email\nC1,a@example.com\n").unwrap();
    let o = run(
        &[
            "refresh".to_string(),
            "--state".into(),
            s(&d("s0")),
            "-o".into(),
            s(&d("typed")),
            s(&d("typed.csv")),
            "--key-col".into(),
            "customer_id".into(),
            "--keep-col".into(),
            "segment".into(),
            "--keep-missing".into(),
            "--base-url".into(),
            op.url.clone(),
        ],
        &creds(),
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
}

/// Smaller things: a malformed row keeps its readable kept cells; a one-column header with
/// another delimiter inside suggests --delimiter; OS errors are printed once.
#[test]
fn malformed_rows_stay_traceable_and_errors_are_clear() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("short.csv");
    std::fs::write(
        &p,
        "customer_id,email,phone\nC1,a@example.com,+4912345678901\nC2\n",
    )
    .unwrap();
    let o = run(
        &[
            "hash",
            &s(&p),
            "-o",
            &s(&tmp.path().join("o")),
            "--keep-col",
            "customer_id",
            "-q",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let rows = common::read_dataset(&tmp.path().join("o"));
    let bad: Vec<&Row> = rows
        .iter()
        .filter(|r| r["status"].as_deref() == Some("invalid"))
        .collect();
    assert_eq!(bad.len(), 2);
    assert!(bad
        .iter()
        .all(|r| r["customer_id"].as_deref() == Some("C2")));

    let semi = tmp.path().join("semi.csv");
    std::fs::write(&semi, "id;email\n1;a@example.com\n").unwrap();
    let o = run(&["hash", &s(&semi), "-o", &s(&tmp.path().join("s"))], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--delimiter ;"), "{}", stderr(&o));
    let o = run(
        &[
            "hash",
            &s(&semi),
            "-o",
            &s(&tmp.path().join("s2")),
            "--delimiter",
            ";",
            "-q",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let tsv = tmp.path().join("t.txt");
    std::fs::write(&tsv, "id\temail\n1\ta@example.com\n").unwrap();
    let o = run(
        &[
            "hash",
            &s(&tsv),
            "-o",
            &s(&tmp.path().join("t")),
            "--delimiter",
            "tab",
            "-q",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));

    let file_as_dir = tmp.path().join("plain-file");
    std::fs::write(&file_as_dir, "x").unwrap();
    let o = run(
        &[
            "hash",
            &s(&semi),
            "-o",
            &s(&file_as_dir.join("o")),
            "--delimiter",
            ";",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    let os_error = e.find("(os error").expect("an OS error");
    assert_eq!(e.matches("(os error").count(), 1, "printed once: {e}");
    assert!(os_error > 0);
}
