//! Who may read what a run writes on local disk: hashed emails and raw EUIDs are personal
//! data (a dictionary reverses SHA-256 of common addresses), so files are created `0600` and
//! directories `0700` by default, as ssh does for what it writes; `--output-mode 0640` (or
//! another mode) widens it for a team that shares a group. One rule for parts, metadata
//! files, the lock and refresh's scratch. Object stores keep their own access control.

use std::fs::{DirBuilder, File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};

/// Default mode of the files a run creates.
pub const DEFAULT_FILE_MODE: u32 = 0o600;

static FILE_MODE: AtomicU32 = AtomicU32::new(DEFAULT_FILE_MODE);

/// Sets the mode of the files this process creates from now on (`--output-mode`);
/// directories get the execute bit wherever a file gets the read bit.
///
/// # Errors
/// A mode beyond `0777`, or one that does not let the owner read and write.
pub fn set_output_mode(mode: u32) -> Result<(), String> {
    check(mode)?;
    FILE_MODE.store(mode, Ordering::Relaxed);
    Ok(())
}

fn check(mode: u32) -> Result<(), String> {
    if mode > 0o777 || mode & 0o600 != 0o600 {
        return Err(format!(
            "--output-mode {mode:o}: give an octal mode up to 777 that lets the owner read and write (e.g. 600, 640)"
        ));
    }
    Ok(())
}

fn dir_mode_of(m: u32) -> u32 {
    m | ((m & 0o444) >> 2)
}

/// The mode of files created now.
pub fn file_mode() -> u32 {
    FILE_MODE.load(Ordering::Relaxed)
}

/// The mode of directories created now: the file mode plus search where it may read.
pub fn dir_mode() -> u32 {
    dir_mode_of(file_mode())
}

/// Creates (or truncates) a file for writing with [`file_mode`].
pub(crate) fn create_file(p: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(file_mode())
        .open(p)
}

/// Options that create a new file with [`file_mode`].
pub(crate) fn options() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.mode(file_mode());
    o
}

/// Creates a directory and its missing parents with [`dir_mode`].
pub(crate) fn create_dir_all(p: &Path) -> std::io::Result<()> {
    DirBuilder::new().recursive(true).mode(dir_mode()).create(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_get_search_where_files_get_read() {
        assert_eq!(dir_mode_of(0o640), 0o750);
        assert_eq!(dir_mode_of(DEFAULT_FILE_MODE), 0o700);
        assert!(check(0o640).is_ok());
        assert!(check(0o400).is_err(), "the owner must write");
        assert!(check(0o1777).is_err());
    }
}
