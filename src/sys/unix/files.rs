//! Opening files and directories in places another user may have touched:
//! never through a symbolic link, new files never over an old one.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// How [`open_no_follow`] opens a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Open {
    /// Reading; the file must exist.
    Read,
    /// Appending, created with this mode if missing (a log, a registry).
    Append(u32),
    /// Writing a file that must not exist yet, with this mode.
    New(u32),
    /// Reading and writing, created with this mode if missing, never
    /// truncated (a lock file).
    Keep(u32),
}

/// Opens `path` as `how` says, failing (ELOOP) when its last component is
/// a symbolic link, and close-on-exec.
pub(crate) fn open_no_follow(path: &Path, how: Open) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC);
    match how {
        Open::Read => options.read(true),
        Open::Append(mode) => options.append(true).create(true).mode(mode),
        Open::New(mode) => options.write(true).create_new(true).mode(mode),
        Open::Keep(mode) => options.read(true).write(true).create(true).mode(mode),
    };
    options.open(path)
}

/// Opens the directory `path` itself, failing when it is a symbolic link or
/// not a directory: its metadata and mode are then the directory's, not a
/// link target's.
pub(crate) fn open_dir_no_follow(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_symlink_is_never_opened() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        std::fs::write(&target, "keep").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        for how in [
            Open::Read,
            Open::Append(0o600),
            Open::New(0o600),
            Open::Keep(0o600),
        ] {
            let err = open_no_follow(&link, how).unwrap_err();
            assert!(
                err.raw_os_error() == Some(libc::ELOOP)
                    || err.kind() == io::ErrorKind::AlreadyExists,
                "{how:?}: {err}"
            );
        }
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
        let dir_link = dir.path().join("dir-link");
        std::os::unix::fs::symlink(dir.path(), &dir_link).unwrap();
        assert!(open_dir_no_follow(&dir_link).is_err());
        assert!(open_dir_no_follow(dir.path()).is_ok());
        assert!(
            open_dir_no_follow(&target).is_err(),
            "a file is not a directory"
        );
    }

    #[test]
    fn a_new_file_never_replaces_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, "old").unwrap();
        let err = open_no_follow(&path, Open::New(0o600)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        let kept = open_no_follow(&path, Open::Keep(0o600)).unwrap();
        drop(kept);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "old",
            "not truncated"
        );
    }
}
