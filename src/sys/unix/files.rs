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

/// Copies the directory tree at `from` into `to` (which must not exist):
/// directories and regular files only, each owned by `owner` and a file
/// with no other link, its mode kept without set-id bits. Nothing is
/// followed: every directory is read through a handle opened without
/// following links, and every entry opened by name under that handle, so
/// a file or directory swapped for a symbolic link (or a FIFO, or a hard
/// link to another file) while the copy runs fails the copy instead of
/// copying what it points at. Symbolic links and special files in the
/// tree are left out.
pub(crate) fn copy_tree_strict(from: &Path, to: &Path, owner: u32) -> io::Result<()> {
    copy_dir(&open_dir_no_follow(from)?, from, to, owner)
}

fn copy_dir(dir: &File, shown: &Path, to: &Path, owner: u32) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    let meta = dir.metadata()?;
    owned_by(&meta, owner, shown)?;
    std::fs::DirBuilder::new()
        .mode(meta.mode() & 0o777)
        .create(to)?;
    // The directory as this handle holds it, whatever its path is now.
    let here = std::path::PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    for entry in std::fs::read_dir(&here)? {
        let entry = entry?;
        let name = entry.file_name();
        let (path, shown) = (here.join(&name), shown.join(&name));
        let kind = entry.file_type()?;
        if kind.is_dir() {
            copy_dir(&open_dir_no_follow(&path)?, &shown, &to.join(&name), owner)?;
        } else if kind.is_file() {
            let file = OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
                .open(&path)?;
            let meta = file.metadata()?;
            owned_by(&meta, owner, &shown)?;
            if !meta.is_file() || meta.nlink() != 1 {
                return Err(io::Error::other(format!(
                    "{} is not a regular file with one link (it changed during the copy)",
                    shown.display()
                )));
            }
            let mut out = open_no_follow(&to.join(&name), Open::New(meta.mode() & 0o777))?;
            io::copy(&mut io::Read::take(file, meta.len()), &mut out)?;
        }
    }
    Ok(())
}

fn owned_by(meta: &std::fs::Metadata, owner: u32, shown: &Path) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    if meta.uid() == owner {
        return Ok(());
    }
    Err(io::Error::other(format!(
        "{} belongs to uid {}, not to uid {owner}",
        shown.display(),
        meta.uid()
    )))
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
    fn a_strict_copy_takes_files_and_directories_and_leaves_links_out() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let dir = tempfile::tempdir().unwrap();
        let me = owner_of(dir.path());
        let from = dir.path().join("from");
        std::fs::create_dir_all(from.join("sub")).unwrap();
        std::fs::write(from.join("sub/a"), "a").unwrap();
        std::fs::set_permissions(from.join("sub/a"), std::fs::Permissions::from_mode(0o640))
            .unwrap();
        std::fs::write(dir.path().join("secret"), "secret").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret"), from.join("link")).unwrap();
        let to = dir.path().join("to");
        copy_tree_strict(&from, &to, me).unwrap();
        assert_eq!(std::fs::read_to_string(to.join("sub/a")).unwrap(), "a");
        assert_eq!(
            std::fs::metadata(to.join("sub/a")).unwrap().mode() & 0o777,
            0o640
        );
        assert!(!to.join("link").exists(), "a link is not copied");
        // A hard link to another file: refused, not copied.
        std::fs::hard_link(dir.path().join("secret"), from.join("hard")).unwrap();
        let err = copy_tree_strict(&from, &dir.path().join("to2"), me).unwrap_err();
        assert!(err.to_string().contains("one link"), "{err}");
        std::fs::remove_file(from.join("hard")).unwrap();
        // Another owner's tree: refused at its root.
        let err = copy_tree_strict(&from, &dir.path().join("to3"), me + 1).unwrap_err();
        assert!(err.to_string().contains("belongs to uid"), "{err}");
        // A tree whose root is a link: refused.
        std::os::unix::fs::symlink(&from, dir.path().join("from-link")).unwrap();
        assert!(
            copy_tree_strict(&dir.path().join("from-link"), &dir.path().join("to4"), me).is_err()
        );
    }

    fn owner_of(path: &Path) -> u32 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path).unwrap().uid()
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
