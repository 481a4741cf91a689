//! Issue #12: credentials the EUID way: profiles (private files only, one environment each),
//! a credentials command, the documented precedence, and `credentials check`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::{run_bin, stderr, Operator, API_KEY, SECRET};

const WRONG_SECRET: &str = "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0MTI=";

fn profiles(dir: &Path, text: &str, mode: u32) -> PathBuf {
    let p = dir.join("credentials.toml");
    std::fs::write(&p, text).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    p
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn credentials_check_passes_a_good_profile_and_explains_bad_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let op = Operator::start(&[]);
    let file = profiles(
        tmp.path(),
        &format!(
            "[local]\napi_key = \"{API_KEY}\"\nclient_secret = \"{SECRET}\"\nbase_url = \"{}\"\n\n[badsecret]\napi_key = \"{API_KEY}\"\nclient_secret = \"{WRONG_SECRET}\"\nbase_url = \"{}\"\n\n[integ]\napi_key = \"{API_KEY}\"\nclient_secret = \"{SECRET}\"\nenv = \"integ\"\n",
            op.url, op.url
        ),
        0o600,
    );
    let file_env = ("EUID_CREDENTIALS_FILE", file.to_str().unwrap());
    let o = run_bin(&["credentials", "check", "--profile", "local"], &[file_env]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("EUID-C-L-1-test") && out.contains("OK"),
        "{out}"
    );
    assert!(
        out.contains("round trip") && out.contains("clock skew"),
        "{out}"
    );
    // Issue #24.7: the check and the emulator agree on the opt-out test identities.
    assert!(
        out.contains("2 of 2 test identities answered opted out"),
        "{out}"
    );
    assert!(
        !out.contains(SECRET) && !out.contains(API_KEY),
        "never the key or secret"
    );

    let o = run_bin(
        &["credentials", "check", "--profile", "badsecret"],
        &[file_env],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains("client secret does not match"),
        "{}",
        stdout(&o)
    );

    let o = run_bin(
        &["credentials", "check", "--base-url", &op.url],
        &[
            ("EUID_API_KEY", "EUID-C-L-9-other.key"),
            ("EUID_CLIENT_SECRET", SECRET),
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("401"), "{}", stdout(&o));

    // An integ profile never reaches another environment.
    let o = run_bin(
        &[
            "credentials",
            "check",
            "--profile",
            "integ",
            "--base-url",
            &op.url,
        ],
        &[file_env],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("an integ key never reaches prod"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_credentials_file_readable_by_others_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let file = profiles(
        tmp.path(),
        &format!("[prod]\napi_key = \"{API_KEY}\"\nclient_secret = \"{SECRET}\"\n"),
        0o644,
    );
    let o = run_bin(
        &["credentials", "check", "--env", "prod"],
        &[("EUID_CREDENTIALS_FILE", file.to_str().unwrap())],
    );
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("chmod 600") && e.contains("credentials.toml"),
        "{e}"
    );
}

#[test]
fn credentials_follow_flags_then_command_then_environment_then_profile() {
    let tmp = tempfile::tempdir().unwrap();
    let op = Operator::start(&[]);
    let file = profiles(
        tmp.path(),
        &format!(
            "[local]\napi_key = \"{API_KEY}\"\nclient_secret = \"{SECRET}\"\nbase_url = \"{}\"\n",
            op.url
        ),
        0o600,
    );
    let file_env = ("EUID_CREDENTIALS_FILE", file.to_str().unwrap());
    let wrong_env = [
        ("EUID_API_KEY", "wrong.key"),
        ("EUID_CLIENT_SECRET", SECRET),
    ];
    // The environment beats the profile…
    let o = run_bin(
        &["credentials", "check", "--profile", "local"],
        &[file_env, wrong_env[0], wrong_env[1]],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stdout(&o).contains("EUID_API_KEY"), "{}", stdout(&o));
    // …the command beats the environment…
    let cmd = format!("printf '{{\"api_key\":\"{API_KEY}\",\"client_secret\":\"{SECRET}\"}}'");
    let o = run_bin(
        &[
            "credentials",
            "check",
            "--base-url",
            &op.url,
            "--credentials-command",
            &cmd,
        ],
        &wrong_env,
    );
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("--credentials-command"));
    // …and flags beat the command.
    let o = run_bin(
        &[
            "credentials",
            "check",
            "--base-url",
            &op.url,
            "--credentials-command",
            &cmd,
            "--api-key",
            "flag.key",
            "--client-secret",
            SECRET,
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("--api-key"), "{}", stdout(&o));
    // A failing command is a clear error with its exit code and stderr.
    let o = run_bin(
        &[
            "credentials",
            "check",
            "--base-url",
            &op.url,
            "--credentials-command",
            "echo vault sealed >&2; exit 7",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("exit code 7") && e.contains("vault sealed"),
        "{e}"
    );
}

/// Issue #26.11: a credentials command that writes 300 kB to stderr before its answer works;
/// one that never answers is stopped after --credentials-timeout, naming only its first
/// word.
#[test]
fn a_noisy_or_hanging_credentials_command_never_hangs_the_job() {
    let op = Operator::start(&[]);
    let noisy = format!(
        "head -c 300000 /dev/zero | tr '\\0' w >&2; printf '{{\"api_key\":\"{API_KEY}\",\"client_secret\":\"{SECRET}\"}}'"
    );
    let o = run_bin(
        &[
            "credentials",
            "check",
            "--base-url",
            &op.url,
            "--credentials-command",
            &noisy,
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let o = run_bin(
        &[
            "credentials",
            "check",
            "--base-url",
            &op.url,
            "--credentials-command",
            "sleep 600; echo never-printed-secret",
            "--credentials-timeout",
            "1",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.contains("`sleep`") && e.contains("within 1 s"), "{e}");
    assert!(!e.contains("never-printed-secret"), "{e}");
}

#[test]
fn the_manifest_names_the_key_never_the_secret() {
    let tmp = tempfile::tempdir().unwrap();
    let op = Operator::start(&[]);
    let input = tmp.path().join("in.csv");
    std::fs::write(&input, "email\na@example.com\n").unwrap();
    let out = tmp.path().join("o");
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
        &common::creds(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let m = std::fs::read_to_string(out.join("_manifest.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&m).unwrap();
    assert_eq!(v["key_id"], "EUID-C-L-1-test");
    assert!(!m.contains(SECRET) && !m.contains(API_KEY));
}

/// Issue #24.6: credentials for a real operator beside `--env local` (whose embedded emulator
/// has its own demo key) are refused, not silently ignored; so is an emulator secret alone.
#[test]
fn flags_that_would_be_ignored_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in.csv");
    std::fs::write(&input, "email\na@example.com\n").unwrap();
    let out = tmp.path().join("o");
    for extra in [
        vec!["--profile", "emu"],
        vec!["--credentials-command", "echo {}"],
        vec!["--api-key", "K", "--client-secret", SECRET],
    ] {
        let mut args = vec!["map", input.to_str().unwrap(), "-o", out.to_str().unwrap()];
        args.extend(["--env", "local", "-q"]);
        args.extend(extra.iter().copied());
        let o = run_bin(&args, &[]);
        assert_eq!(o.status.code(), Some(64), "{extra:?}: {}", stderr(&o));
        assert!(stderr(&o).contains("would be ignored"), "{}", stderr(&o));
    }
    let o = run_bin(&["operator", "--client-secret", SECRET], &[]);
    assert_eq!(o.status.code(), Some(64), "{}", stderr(&o));
    assert!(stderr(&o).contains("--api-key"), "{}", stderr(&o));
}

/// Issue #24 (rotation): a profile records when its key was issued; `credentials check`
/// warns past a year, every run exports the key's age, and `credentials usage` lists the
/// datasets a key produced.
#[test]
fn key_age_is_checked_exported_and_its_datasets_listed() {
    let tmp = tempfile::tempdir().unwrap();
    let op = Operator::start(&[]);
    let issued = (chrono::Utc::now().date_naive() - chrono::Duration::days(400)).to_string();
    let file = profiles(
        tmp.path(),
        &format!(
            "[old]\napi_key = \"{API_KEY}\"\nclient_secret = \"{SECRET}\"\nbase_url = \"{}\"\nissued = \"{issued}\"\n",
            op.url
        ),
        0o600,
    );
    let file_env = ("EUID_CREDENTIALS_FILE", file.to_str().unwrap());
    let o = run_bin(&["credentials", "check", "--profile", "old"], &[file_env]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("400 days ago") && out.contains("rotate it"),
        "{out}"
    );
    let o = run_bin(
        &[
            "credentials",
            "check",
            "--profile",
            "old",
            "--max-key-age-days",
            "500",
        ],
        &[file_env],
    );
    assert!(!stdout(&o).contains("rotate it"), "{}", stdout(&o));

    let input = tmp.path().join("in.csv");
    std::fs::write(&input, "email\na@example.com\n").unwrap();
    let root = tmp.path().join("euid");
    let prom = tmp.path().join("m.prom");
    for night in ["2026-12-01", "2026-12-02"] {
        let out = root.join(night);
        let o = run_bin(
            &[
                "map",
                input.to_str().unwrap(),
                "-o",
                out.to_str().unwrap(),
                "--profile",
                "old",
                "--metrics-file",
                prom.to_str().unwrap(),
                "-q",
            ],
            &[file_env],
        );
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(stderr(&o).contains("rotate it"), "{}", stderr(&o));
    }
    let text = std::fs::read_to_string(&prom).unwrap();
    assert_eq!(
        euid_map::operator::metrics::sample(&text, "euid_map_credentials_age_days"),
        Some(400.0),
        "{text}"
    );
    let o = run_bin(&["credentials", "usage", root.to_str().unwrap()], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("EUID-C-L-1-test: 2 dataset(s)"), "{out}");
    assert!(
        out.contains("2026-12-01") && out.contains("2026-12-02"),
        "{out}"
    );
    assert!(!out.contains(SECRET), "{out}");
}

/// Issue #24.5: errors say what actually happened and what to do.
#[test]
fn errors_name_the_credentials_used_and_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    let op = Operator::start(&[]);
    let input = tmp.path().join("in.csv");
    std::fs::write(&input, "email\na@example.com\n").unwrap();
    let out = tmp.path().join("o");
    // A wrong secret given on the command line is named as such, not as EUID_CLIENT_SECRET.
    let o = run_bin(
        &[
            "map",
            input.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--base-url",
            &op.url,
            "--api-key",
            API_KEY,
            "--client-secret",
            WRONG_SECRET,
            "-q",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("from --api-key") && !e.contains("EUID_CLIENT_SECRET"),
        "{e}"
    );
    // The same command works once the secret is right: nothing was committed, so the
    // directory is reused without --resume.
    let o = run_bin(
        &[
            "map",
            input.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--base-url",
            &op.url,
            "--api-key",
            API_KEY,
            "--client-secret",
            SECRET,
            "-q",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    // -o naming a file.
    let o = run_bin(
        &[
            "hash",
            input.to_str().unwrap(),
            "-o",
            input.to_str().unwrap(),
            "-q",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("is an existing file"), "{}", stderr(&o));
    // A state that does not exist.
    let o = run_bin(
        &[
            "refresh",
            "--state",
            tmp.path().join("nope").to_str().unwrap(),
            "-o",
            tmp.path().join("r").to_str().unwrap(),
            "--env",
            "local",
            "-q",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("no such state"), "{}", stderr(&o));
    // A flag typo gets a suggestion.
    let o = run_bin(&["map", "--keep-coll", "x"], &[]);
    assert_eq!(o.status.code(), Some(64));
    assert!(stderr(&o).contains("--keep-col"), "{}", stderr(&o));
    // Issue #26.6: the API is part of the job: --resume with another --api is refused.
    let o = run_bin(
        &[
            "map",
            input.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--base-url",
            &op.url,
            "--api",
            "v2",
            "--resume",
            "-q",
        ],
        &common::creds(),
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("other options (--api)"),
        "{}",
        stderr(&o)
    );
}
