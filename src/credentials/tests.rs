//! Tests of `mod.rs`'s module.

use super::*;

fn write(dir: &Path, text: &str, mode: u32) -> PathBuf {
    let p = dir.join("credentials.toml");
    std::fs::write(&p, text).expect("write");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).expect("chmod");
    p
}

const FILE: &str = r#"
[integ]
api_key = "EUID-C-I-1-abc.KEYSECRET"
client_secret = "SECRETSECRET"

[prod-new]
api_key = "EUID-C-P-2-def.OTHER"
client_secret = "S2"
env = "prod"
"#;

/// Issue #24.4: a Secret mounted with fsGroup (0440) is accepted; what others can read
/// or the group can write is refused.
#[test]
fn group_read_is_allowed_and_others_are_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    for (mode, ok) in [
        (0o600, true),
        (0o400, true),
        (0o440, true),
        (0o640, true),
        (0o660, false),
        (0o604, false),
        (0o644, false),
    ] {
        let p = write(tmp.path(), FILE, mode);
        assert_eq!(load_profile(&p, "integ", true).is_ok(), ok, "{mode:o}");
    }
}

#[test]
fn profiles_are_read_by_name_and_know_their_environment() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let p = write(tmp.path(), FILE, 0o600);
    let integ = load_profile(&p, "integ", true)
        .expect("ok")
        .expect("present");
    assert_eq!(integ.environment().as_deref(), Some("integ"));
    assert!(
        integ.check_environment("prod").is_err(),
        "an integ key never reaches prod"
    );
    let prod = load_profile(&p, "prod-new", true)
        .expect("ok")
        .expect("present");
    assert!(prod.check_environment("prod").is_ok());
    assert!(load_profile(&p, "prod", false).expect("ok").is_none());
    let err = load_profile(&p, "nope", true).expect_err("required");
    assert!(err.to_string().contains("integ, prod-new"), "{err}");
    assert!(
        !format!("{integ:?}").contains("SECRET"),
        "Debug never shows a secret"
    );
}

#[test]
fn a_file_readable_by_others_is_refused_like_an_ssh_key() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let p = write(tmp.path(), FILE, 0o644);
    let err = load_profile(&p, "integ", true)
        .expect_err("exposed")
        .to_string();
    assert!(
        err.contains("chmod 600") && err.contains("credentials.toml"),
        "{err}"
    );
}

#[test]
fn a_broken_file_never_echoes_its_content() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let p = write(tmp.path(), "[integ]\napi_key = \"KEYSECRET\nclient", 0o600);
    let err = load_profile(&p, "integ", true)
        .expect_err("broken")
        .to_string();
    assert!(!err.contains("KEYSECRET") && err.contains("line"), "{err}");
}

#[test]
fn the_credentials_command_is_read_and_its_failures_explained() {
    let ok = from_command(
        r#"echo '{"api_key":"K.1","client_secret":"S"}'"#,
        crate::shell::DEFAULT_TIMEOUT,
    )
    .expect("ok");
    assert_eq!(
        (
            ok.api_key.expose().as_str(),
            ok.client_secret.expose().as_str()
        ),
        ("K.1", "S")
    );
    let err = from_command("echo boom >&2; exit 3", crate::shell::DEFAULT_TIMEOUT)
        .expect_err("fails")
        .to_string();
    assert!(err.contains("exit code 3") && err.contains("boom"), "{err}");
    let err = from_command("echo NOTJSON-SECRET", crate::shell::DEFAULT_TIMEOUT)
        .expect_err("not json")
        .to_string();
    assert!(!err.contains("NOTJSON-SECRET"), "{err}");
}

#[test]
fn the_key_id_is_the_part_before_the_dot_or_a_fingerprint() {
    assert_eq!(
        key_id(&Secret::new("EUID-C-P-12-ab.cdSECRET".into())),
        "EUID-C-P-12-ab"
    );
    let id = key_id(&Secret::new("nodotSECRET".into()));
    assert!(id.starts_with("sha256:") && id.len() == 19 && !id.contains("SECRET"));
}
