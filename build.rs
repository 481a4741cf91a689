//! Records the git commit the binary is built from, for `euid-map --version`: the
//! `EUID_MAP_COMMIT` environment variable when set (a container build without `.git`), else
//! `git rev-parse HEAD` when the source is a git checkout, else nothing ("unknown").

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=EUID_MAP_COMMIT");
    let from_env = std::env::var("EUID_MAP_COMMIT")
        .ok()
        .filter(|c| !c.is_empty());
    let commit = from_env.or_else(|| {
        let git_dir = Command::new("git")
            .args(["rev-parse", "--git-dir"])
            .output()
            .ok()?;
        if !git_dir.status.success() {
            return None;
        }
        let dir = String::from_utf8(git_dir.stdout).ok()?.trim().to_string();
        // A new commit or checkout moves HEAD or the branch it names.
        println!("cargo:rerun-if-changed={dir}/HEAD");
        println!("cargo:rerun-if-changed={dir}/refs/heads");
        println!("cargo:rerun-if-changed={dir}/packed-refs");
        let head = Command::new("git")
            .args(["rev-parse", "--short=12", "HEAD"])
            .output()
            .ok()?;
        head.status
            .success()
            .then(|| String::from_utf8_lossy(&head.stdout).trim().to_string())
    });
    println!(
        "cargo:rustc-env=EUID_MAP_COMMIT={}",
        commit.unwrap_or_else(|| "unknown".to_string())
    );
}
