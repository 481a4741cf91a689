//! Issue #24: the README's nightly recipe (`scripts/nightly.sh`, which cron, systemd and the
//! Kubernetes CronJob run) over simulated nights against the emulator: a first night that
//! maps, a refused night, a night cut short by SIGTERM and run again, a night run twice.
//! Each night's state must be the newest night that finished, and the metrics must tell
//! the truth about each exit.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Operator;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The command under test: `common::bin()` (the built binary, or `EUID_MAP_BIN`).
static BIN: std::sync::LazyLock<String> = std::sync::LazyLock::new(common::bin);
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/nightly.sh");

struct Night<'a> {
    op: &'a Operator,
    root: PathBuf,
    metrics: PathBuf,
}

impl Night<'_> {
    fn command(&self, day: &str, export: &Path, now: &str) -> Command {
        let mut c = Command::new("sh");
        c.arg(SCRIPT)
            .arg(&self.root)
            .arg(export)
            .arg("customer_id")
            .args(["--base-url", &self.op.url, "--concurrency", "1", "-q"])
            .arg("--metrics-file")
            .arg(&self.metrics)
            .env("EUID_MAP", &*BIN)
            .env("EUID_MAP_DAY", day)
            .env("EUID_MAP_NOW", now)
            .env("EUID_API_KEY", common::API_KEY)
            .env("EUID_CLIENT_SECRET", common::SECRET)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null());
        c
    }

    fn run(&self, day: &str, export: &Path, now: &str) -> Output {
        self.command(day, export, now).output().unwrap()
    }

    fn manifest(&self, day: &str) -> serde_json::Value {
        let text = std::fs::read_to_string(self.root.join(day).join("_manifest.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    fn metric(&self, name: &str) -> Option<f64> {
        let text = std::fs::read_to_string(&self.metrics).ok()?;
        euid_map::operator::metrics::sample(&text, name)
    }
}

fn export(path: &Path, customers: std::ops::Range<u64>) {
    let mut text = String::from("customer_id,email\n");
    for i in customers {
        text.push_str(&format!("{i},person{i}@example.com\n"));
    }
    std::fs::write(path, text).unwrap();
}

#[test]
fn the_nightly_recipe_takes_the_last_good_night_after_a_refused_and_an_interrupted_one() {
    let tmp = tempfile::tempdir().unwrap();
    let op = Operator::start(&["--admin"]);
    let n = Night {
        op: &op,
        root: tmp.path().join("euid"),
        metrics: tmp.path().join("euid_map.prom"),
    };
    let e = |name: &str| tmp.path().join(name);
    // ROOT is made once, as a volume is mounted: a ROOT that is not there is an error
    // (issue #33.3), never a first night.
    std::fs::create_dir(&n.root).unwrap();

    // Night 1: no state yet, a plain map.
    export(&e("n1.csv"), 0..1000);
    let o = n.run("2026-12-01", &e("n1.csv"), &op.advance(0));
    assert!(o.status.success(), "{}", common::stderr(&o));
    assert_eq!(n.manifest("2026-12-01")["command"], "map");
    let first_success = n.metric("euid_map_last_success_timestamp_seconds").unwrap();
    assert_eq!(n.metric("euid_map_exit_code"), Some(0.0));

    // Night 2: a truncated export is refused; the night has no _SUCCESS.
    export(&e("n2.csv"), 0..100);
    let o = n.run("2026-12-02", &e("n2.csv"), &op.advance(1));
    assert_eq!(o.status.code(), Some(1), "{}", common::stderr(&o));
    assert!(!n.root.join("2026-12-02/_SUCCESS").exists());
    assert_eq!(
        n.metric("euid_map_exit_code"),
        Some(1.0),
        "the failure is reported"
    );
    assert_eq!(
        n.metric("euid_map_last_success_timestamp_seconds"),
        Some(first_success),
        "the last success survives the failed night"
    );
    // Its advice works as written: the same command again (nothing was committed).
    export(&e("n2.csv"), 0..1000);
    let o = n.run("2026-12-02", &e("n2.csv"), &op.advance(0));
    assert!(o.status.success(), "{}", common::stderr(&o));
    // (Tonight's export is fixed in time; the failed night is now a finished one.)
    std::fs::remove_dir_all(n.root.join("2026-12-02")).unwrap();
    export(&e("n2-bad.csv"), 0..50);
    let o = n.run("2026-12-02", &e("n2-bad.csv"), &op.advance(0));
    assert_eq!(o.status.code(), Some(1), "{}", common::stderr(&o));

    // Night 3: new customers to map; SIGTERM while their answers are held, then the same
    // command again, as cron or systemd would on the next start.
    export(&e("n3.csv"), 0..1200);
    let now = op.advance(1);
    op.http(true, "/ops/hold?after=0");
    let child = n
        .command("2026-12-03", &e("n3.csv"), &now)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    common::wait_until("a held request", || op.held() > 0.0);
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    op.release();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(143), "{}", common::stderr(&o));
    assert!(!n.root.join("2026-12-03/_SUCCESS").exists());
    assert_eq!(n.metric("euid_map_exit_code"), Some(143.0));
    let o = n.run("2026-12-03", &e("n3.csv"), &now);
    assert!(o.status.success(), "{}", common::stderr(&o));
    let m3 = n.manifest("2026-12-03");
    assert_eq!(m3["command"], "refresh");
    assert_eq!(
        m3["state"].as_str().unwrap(),
        n.root.join("2026-12-01").to_str().unwrap(),
        "night 2 failed, so night 3 refreshed night 1"
    );
    assert_eq!(m3["refresh"]["new"], 200);

    // Night 4: the state is night 3's output.
    let o = n.run("2026-12-04", &e("n3.csv"), &op.advance(1));
    assert!(o.status.success(), "{}", common::stderr(&o));
    let m4 = n.manifest("2026-12-04");
    assert_eq!(
        m4["state"].as_str().unwrap(),
        n.root.join("2026-12-03").to_str().unwrap()
    );
    let r4 = &m4["refresh"];
    assert_eq!(
        r4["carried"].as_u64().unwrap() + r4["due"].as_u64().unwrap(),
        1200,
        "every identity carried or (a day's rotation) due: {r4}"
    );
    let fourth_success = n.metric("euid_map_last_success_timestamp_seconds").unwrap();

    // Night 4 run again: a no-op, exit 0, not a new success.
    let o = n.run("2026-12-04", &e("n3.csv"), &op.advance(0));
    assert!(o.status.success(), "{}", common::stderr(&o));
    assert!(
        common::stderr(&o).contains("nothing to do"),
        "{}",
        common::stderr(&o)
    );
    assert_eq!(
        n.metric("euid_map_last_success_timestamp_seconds"),
        Some(fourth_success),
        "a no-op does not fake a success"
    );

    // `latest` names night 4; before night 4, night 3; never the failed night.
    let latest = |before: Option<&str>| {
        let mut c = Command::new(&*BIN);
        c.arg("latest").arg(&n.root);
        if let Some(b) = before {
            c.args(["--before", b]);
        }
        String::from_utf8(c.output().unwrap().stdout).unwrap()
    };
    assert!(latest(None).trim().ends_with("2026-12-04"));
    assert!(latest(Some("2026-12-04")).trim().ends_with("2026-12-03"));
    std::fs::create_dir(tmp.path().join("empty")).unwrap();
    let o = Command::new(&*BIN)
        .args(["latest", tmp.path().join("empty").to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "none finished: the first night");
    // A night whose manifest cannot be read is an error, never "take the one before".
    std::fs::write(n.root.join("2026-12-04/_manifest.json"), "not json").unwrap();
    let o = Command::new(&*BIN)
        .arg("latest")
        .arg(&n.root)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", common::stderr(&o));
    let o = n.run("2026-12-05", &e("n3.csv"), &op.advance(1));
    assert_eq!(
        o.status.code(),
        Some(1),
        "the nightly job stops, it does not map afresh"
    );
    assert!(!n.root.join("2026-12-05/_SUCCESS").exists());
}

/// Issue #24.3: a setup error (a missing input) still writes the exit code, and keeps the
/// last success.
#[test]
fn a_setup_error_writes_metrics_too() {
    let tmp = tempfile::tempdir().unwrap();
    let prom = tmp.path().join("m.prom");
    std::fs::write(
        &prom,
        "euid_map_exit_code 0\neuid_map_last_success_timestamp_seconds 1764547200\n",
    )
    .unwrap();
    let o = common::run_bin(
        &[
            "map",
            tmp.path().join("missing.csv").to_str().unwrap(),
            "-o",
            tmp.path().join("o").to_str().unwrap(),
            "--env",
            "local",
            "--metrics-file",
            prom.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(1), "{}", common::stderr(&o));
    let text = std::fs::read_to_string(&prom).unwrap();
    assert_eq!(
        euid_map::operator::metrics::sample(&text, "euid_map_exit_code"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        euid_map::operator::metrics::sample(&text, "euid_map_last_success_timestamp_seconds"),
        Some(1_764_547_200.0),
        "{text}"
    );
}
