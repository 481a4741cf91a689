//! End to end, issue #26.1 and #26.2: CSV exports as people make them (a stray quote that a
//! later quote closes, a long legitimate quoted note, blank lines in a one-column file).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

fn hash(input: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "hash".to_string(),
        input.to_str().unwrap().into(),
        "-o".into(),
        out.to_str().unwrap().into(),
        "-q".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    common::run_bin(&args, &[])
}

fn statuses(out: &Path) -> Vec<String> {
    common::read_dataset(out)
        .into_iter()
        .map(|r| r["status"].clone().unwrap())
        .collect()
}

/// A stray quote closed two lines later used to swallow the rows in between (exit 0).
#[test]
fn a_stray_quote_closed_later_stops_the_run_naming_its_line() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("crm.csv");
    std::fs::write(
        &input,
        "id,email,name\n1,a@b.com,\"Bob\n2,c@d.com,Carol\n3,e@f.com,\"Dave\"\n4,g@h.com,Eve\n",
    )
    .unwrap();
    let out = tmp.path().join("out");
    let o = hash(&input, &out, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", common::stderr(&o));
    let e = common::stderr(&o);
    assert!(
        e.contains("crm.csv: line 2") && e.contains("followed by 'D'"),
        "{e}"
    );
    assert!(!out.join("_SUCCESS").exists());
    // The same stray quote 900 rows before the next quote.
    let mut text = String::from("id,email,note\n0,a@b.com,\"x\n");
    for i in 1..900 {
        text.push_str(&format!("{i},u{i}@example.com,n\n"));
    }
    text.push_str("900,z@example.com,\"quoted\"\n");
    std::fs::write(&input, text).unwrap();
    let o = hash(&input, &tmp.path().join("out2"), &[]);
    assert_eq!(o.status.code(), Some(1), "{}", common::stderr(&o));
}

/// A real quoted field past the default limit says which flag raises it, and passes with it.
#[test]
fn a_long_quoted_field_passes_with_a_higher_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("notes.csv");
    let note: String = (0..1500).map(|i| format!("line {i}\n")).collect();
    std::fs::write(
        &input,
        format!("id,email,note\n1,a@b.com,\"{note}\"\n2,c@d.com,x\n"),
    )
    .unwrap();
    let o = hash(&input, &tmp.path().join("a"), &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        common::stderr(&o).contains("--max-quoted-field-lines"),
        "{}",
        common::stderr(&o)
    );
    let out = tmp.path().join("b");
    let o = hash(&input, &out, &["--max-quoted-field-lines", "2000"]);
    assert!(o.status.success(), "{}", common::stderr(&o));
    assert_eq!(statuses(&out), vec!["hashed", "hashed"]);
}

/// In a one-column file a blank line is an empty value (`missing`), LF or CRLF, and the
/// rows after it keep their numbers; blank lines before the header or at the end are not
/// rows.
#[test]
fn blank_lines_in_a_one_column_file_are_missing_values() {
    let tmp = tempfile::tempdir().unwrap();
    for (name, text) in [
        (
            "lf.csv",
            "\nemail\na@example.com\n\nb@example.com\n\n\nc@example.com\n\n",
        ),
        (
            "crlf.csv",
            "email\r\na@example.com\r\n\r\nb@example.com\r\n\r\n\r\nc@example.com\r\n",
        ),
    ] {
        let input = tmp.path().join(name);
        std::fs::write(&input, text).unwrap();
        let out = tmp.path().join(format!("out-{name}"));
        let o = hash(&input, &out, &[]);
        assert!(o.status.success(), "{}", common::stderr(&o));
        assert_eq!(
            statuses(&out),
            vec!["hashed", "missing", "hashed", "missing", "missing", "hashed"],
            "{name}"
        );
        let rows: Vec<String> = common::read_dataset(&out)
            .into_iter()
            .map(|r| r["row"].clone().unwrap())
            .collect();
        assert_eq!(rows, vec!["0", "1", "2", "3", "4", "5"], "{name}");
    }
}

/// Issue #26.13: what a run writes on local disk is private by default (directories 0700,
/// files 0600, whatever the umask); `--output-mode 640` shares it with the group.
#[test]
fn outputs_are_private_by_default_and_widened_on_request() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in.csv");
    std::fs::write(&input, "email\na@example.com\n").unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let modes = |dir: &Path| -> Vec<(String, u32)> {
        let mut v: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let p = e.unwrap().path();
                (
                    p.file_name().unwrap().to_string_lossy().into_owned(),
                    mode(&p),
                )
            })
            .collect();
        v.sort();
        v
    };
    let out = tmp.path().join("nested/out");
    let o = hash(&input, &out, &[]);
    assert!(o.status.success(), "{}", common::stderr(&o));
    assert_eq!(mode(&out), 0o700);
    assert_eq!(
        mode(&tmp.path().join("nested")),
        0o700,
        "created parents too"
    );
    for (name, m) in modes(&out) {
        assert_eq!(m, 0o600, "{name}");
    }
    let shared = tmp.path().join("shared");
    let o = hash(&input, &shared, &["--output-mode", "640"]);
    assert!(o.status.success(), "{}", common::stderr(&o));
    assert_eq!(mode(&shared), 0o750);
    for (name, m) in modes(&shared) {
        assert_eq!(m, 0o640, "{name}");
    }
    let o = hash(&input, &tmp.path().join("bad"), &["--output-mode", "444"]);
    assert_eq!(o.status.code(), Some(64), "{}", common::stderr(&o));
}
