//! The directories stampede keeps services in, made and checked so that
//! nothing another local user planted is believed.
//!
//! Everything that touches `/tmp`, `/dev/shm`, `$TMPDIR`,
//! `$XDG_RUNTIME_DIR` or the cache goes through here. A directory stampede
//! uses is created with a private mode; one that already exists is used
//! only if it is a real directory (not a symbolic link), owned by this
//! process's user, and not writable by group or others. Anything else is
//! refused with [`Error::UnsafeDirectory`], which names the path, its owner
//! and its mode: such a directory is either another user's attack or a
//! mistake the user must see, and moving silently elsewhere would also
//! split the one place where test processes find each other's leftovers
//! (the sweep) and `stampede-services` finds its server. The cache is the
//! exception: its usual place is in the user's home, and an unusable one
//! there falls back to the checked base (see [`cache_root`]).

use std::ffi::OsString;
use std::fs::{self, Metadata};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::sys;

/// How much room a tmpfs needs for instances to live there: a cluster
/// starts at 40 MB and grows with each database.
const MEMORY_ROOM: u64 = 1 << 30;

/// Where an instance's directory goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Place {
    /// The base on a disk's file system.
    Disk,
    /// A base in memory when there is one with room (creating a file there
    /// costs a fraction of what it costs on a disk's file system), else the
    /// disk's.
    Memory,
    /// `<service>-up` in the disk's base, for a server that outlives its
    /// process.
    Detached,
}

/// What the environment says about where the bases go.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Env {
    /// `TMPDIR`, when set and not empty.
    tmpdir: Option<PathBuf>,
    /// `XDG_RUNTIME_DIR`, when set, not empty, and a private directory of
    /// this user.
    runtime_dir: Option<PathBuf>,
    /// Whether `/dev/shm` is a tmpfs with [`MEMORY_ROOM`] free.
    shm_has_room: bool,
    uid: u32,
}

impl Env {
    fn read() -> Env {
        let var = |name| std::env::var_os(name).filter(|v: &OsString| !v.is_empty());
        let uid = sys::effective_uid();
        Env {
            tmpdir: var("TMPDIR").map(PathBuf::from),
            runtime_dir: var("XDG_RUNTIME_DIR")
                .map(PathBuf::from)
                .filter(|dir| is_private_runtime_dir(dir, uid)),
            shm_has_room: sys::tmpfs_free_bytes(Path::new("/dev/shm"))
                .is_some_and(|free| free >= MEMORY_ROOM),
            uid,
        }
    }

    /// The base for `place`: `$TMPDIR/stampede-<uid>` when `TMPDIR` is set
    /// (a job given its own `TMPDIR` shares nothing with others), else
    /// `$XDG_RUNTIME_DIR/stampede` (private and in memory already), else
    /// `/tmp/stampede-<uid>`, with `/dev/shm/stampede-<uid>` for instances
    /// kept in memory when it has room.
    fn base(&self, place: Place) -> PathBuf {
        if let Some(tmp) = &self.tmpdir {
            return tmp.join(format!("stampede-{}", self.uid));
        }
        if let Some(run) = &self.runtime_dir {
            return run.join("stampede");
        }
        if place == Place::Memory && self.shm_has_room {
            return PathBuf::from(format!("/dev/shm/stampede-{}", self.uid));
        }
        PathBuf::from(format!("/tmp/stampede-{}", self.uid))
    }
}

/// Whether `XDG_RUNTIME_DIR` is what its specification promises: a
/// directory of this user's, mode 0700.
fn is_private_runtime_dir(dir: &Path, uid: u32) -> bool {
    fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir() && m.uid() == uid && m.mode() & 0o077 == 0)
}

/// The mode of a base: private, but traversable by others when this is
/// root, whose servers run as another user (PostgreSQL refuses root) and
/// must reach their own directory inside.
fn base_mode() -> u32 {
    if sys::effective_uid() == 0 {
        0o711
    } else {
        0o700
    }
}

/// The base for `place`, created or checked.
///
/// # Errors
///
/// [`Error::UnsafeDirectory`] when it exists and is not provably ours, or
/// its parent lets others replace it; [`Error::Path`] when it cannot be
/// made.
pub(crate) fn base(place: Place) -> Result<PathBuf> {
    let path = absolute(Env::read().base(place))?;
    if let Some(parent) = path.parent() {
        check_ancestors(parent)?;
    }
    ensure(&path, base_mode())?;
    Ok(path)
}

/// The bases this process may have used that exist and pass the checks:
/// the ones a sweep may look into. Never creates one.
pub(crate) fn existing_bases() -> Vec<PathBuf> {
    let env = Env::read();
    let mut bases = Vec::new();
    for place in [Place::Disk, Place::Memory] {
        let Ok(path) = absolute(env.base(place)) else {
            continue;
        };
        let ours = fs::symlink_metadata(&path).is_ok_and(|m| problem(&m, env.uid).is_none());
        let held = path.parent().is_none_or(|p| check_ancestors(p).is_ok());
        if ours && held && !bases.contains(&path) {
            bases.push(path);
        }
    }
    bases
}

/// `path` made absolute against the working directory (a relative
/// `TMPDIR`), so that a keeper or a server elsewhere finds the same place.
fn absolute(path: PathBuf) -> Result<PathBuf> {
    if path.is_absolute() {
        return Ok(path);
    }
    std::env::current_dir()
        .map(|cwd| cwd.join(&path))
        .map_err(|source| Error::Path {
            context: "finding the working directory, for the relative TMPDIR",
            path,
            source,
        })
}

/// Refuses a directory whose ancestors would let another user replace
/// it, or anything in it: each must belong to root or to this user, and one
/// that others may write in must have the sticky bit (`/tmp` has it). A
/// symbolic link on the way must be root's or this user's too, and the
/// directories it leads to pass the same checks. `/` itself is not judged.
pub(crate) fn check_ancestors(dir: &Path) -> Result<()> {
    let uid = sys::effective_uid();
    let check = |path: &Path| -> Result<()> {
        let mut walked = PathBuf::new();
        for component in path.components() {
            walked.push(component);
            if walked == Path::new("/") {
                continue;
            }
            let meta = fs::symlink_metadata(&walked).map_err(|source| Error::Path {
                context: "looking at a directory above stampede's own",
                path: walked.clone(),
                source,
            })?;
            if let Some(problem) = ancestor_problem(&meta, uid) {
                return Err(Error::UnsafeDirectory {
                    path: walked,
                    problem: format!(
                        "{problem}, so that user could replace what stampede keeps below it \
                         (owner uid {}, mode {:04o})",
                        meta.uid(),
                        meta.mode() & 0o7777
                    ),
                });
            }
        }
        Ok(())
    };
    check(dir)?;
    let real = fs::canonicalize(dir).map_err(|source| Error::Path {
        context: "resolving the directory that holds stampede's own",
        path: dir.to_owned(),
        source,
    })?;
    if real != dir {
        check(&real)?;
    }
    Ok(())
}

/// What makes an ancestor (from `lstat`) unsafe for user `uid`, if anything.
fn ancestor_problem(meta: &Metadata, uid: u32) -> Option<String> {
    if meta.uid() != 0 && meta.uid() != uid {
        return Some(format!("it belongs to another user (uid {})", meta.uid()));
    }
    let open = meta.mode() & 0o022 != 0 && meta.mode() & 0o1000 == 0;
    (open && !meta.file_type().is_symlink())
        .then(|| "group or others may write in it and it lacks the sticky bit".to_owned())
}

/// Creates the directory `path` with `mode`, or checks the one there; its
/// mode is then exactly `mode`.
///
/// # Errors
///
/// [`Error::UnsafeDirectory`] when what is there is a symbolic link, not
/// a directory, another user's, or writable by group or others;
/// [`Error::Path`] when it cannot be made.
pub(crate) fn ensure(path: &Path, mode: u32) -> Result<()> {
    let io = |context| {
        move |source| Error::Path {
            context,
            path: path.to_owned(),
            source,
        }
    };
    match fs::DirBuilder::new().mode(mode).create(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io("creating a private directory")(e)),
    }
    // The checks read the directory itself through a descriptor opened
    // without following links: what is checked is what is used.
    let dir = match sys::open_dir_no_follow(path) {
        Ok(dir) => dir,
        Err(e) => {
            return Err(match fs::symlink_metadata(path) {
                Ok(meta) => unsafe_dir(path, &meta).unwrap_or_else(|| io("opening")(e)),
                Err(_) => io("opening a private directory")(e),
            });
        }
    };
    let meta = dir
        .metadata()
        .map_err(io("looking at a private directory"))?;
    if let Some(error) = unsafe_dir(path, &meta) {
        return Err(error);
    }
    if meta.mode() & 0o7777 != mode {
        dir.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(io("setting a private directory's mode"))?;
    }
    Ok(())
}

/// The error for a directory stampede must not use, if it is one.
fn unsafe_dir(path: &Path, meta: &Metadata) -> Option<Error> {
    let problem = problem(meta, sys::effective_uid())?;
    Some(Error::UnsafeDirectory {
        path: path.to_owned(),
        problem: format!(
            "{problem} (owner uid {}{}, mode {:04o})",
            meta.uid(),
            user_name(meta.uid()).map_or(String::new(), |n| format!(" ({n})")),
            meta.mode() & 0o7777
        ),
    })
}

/// What makes `meta` (from `lstat`) untrustworthy for user `uid`, if
/// anything.
pub(crate) fn problem(meta: &Metadata, uid: u32) -> Option<String> {
    if meta.file_type().is_symlink() {
        return Some("it is a symlink".to_owned());
    }
    if !meta.is_dir() {
        return Some("it is not a directory".to_owned());
    }
    if meta.uid() != uid {
        return Some(format!(
            "it belongs to another user (uid {}), not to uid {uid}, who runs stampede",
            meta.uid()
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Some("group or others may write in it".to_owned());
    }
    None
}

/// The name of user `uid` in `/etc/passwd`.
pub(crate) fn user_name(uid: u32) -> Option<String> {
    passwd_entries()
        .into_iter()
        .find_map(|(name, id, _)| (id == uid).then_some(name))
}

/// The ids of user `name` in `/etc/passwd`.
pub(crate) fn user_ids(name: &str) -> Option<(u32, u32)> {
    passwd_entries()
        .into_iter()
        .find_map(|(n, uid, gid)| (n == name).then_some((uid, gid)))
}

fn passwd_entries() -> Vec<(String, u32, u32)> {
    fs::read_to_string("/etc/passwd")
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            Some((
                (*fields.first()?).to_owned(),
                fields.get(2)?.parse().ok()?,
                fields.get(3)?.parse().ok()?,
            ))
        })
        .collect()
}

/// Where cached data lives: `$XDG_CACHE_HOME/stampede`, else
/// `~/.cache/stampede`; without a home, or with one that cannot be
/// written (`HOME=/nonexistent`), `cache` in the disk's base. A cache
/// directory in the home that is not provably ours (`sudo` keeping a
/// user's `HOME` for root) is passed over with a note.
///
/// # Errors
///
/// When the fallback cannot be made either; the error names it.
pub(crate) fn cache_root() -> Result<PathBuf> {
    let var = |name| std::env::var_os(name).filter(|v: &OsString| !v.is_empty());
    // A home is used when it is there (root may create anything, and
    // `HOME=/nonexistent` must stay so).
    let preferred = var("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| {
            var("HOME")
                .map(PathBuf::from)
                .filter(|home| home.is_dir())
                .map(|home| home.join(".cache"))
        })
        .filter(|parent| parent.is_absolute());
    if let Some(parent) = preferred {
        let root = parent.join("stampede");
        // Judged before anything is made in it, and again once made.
        let existing = parent
            .ancestors()
            .find(|a| fs::symlink_metadata(a).is_ok())
            .unwrap_or(Path::new("/"));
        let made = check_ancestors(existing)
            .and_then(|()| {
                fs::create_dir_all(&parent).map_err(|source| Error::Path {
                    context: "creating the cache's parent",
                    path: parent.clone(),
                    source,
                })
            })
            .and_then(|()| check_ancestors(&parent))
            .and_then(|()| ensure(&root, 0o700));
        match made {
            Ok(()) => return Ok(root),
            Err(e @ Error::UnsafeDirectory { .. }) => {
                note(&format!(
                    "not using the cache in {}: {e}; using one in stampede's base",
                    parent.display()
                ));
            }
            // Not writable, or not there: the base's cache is the place.
            _ => {}
        }
    }
    let root = base(Place::Disk)?.join("cache");
    ensure(&root, 0o700)?;
    Ok(root)
}

/// Tells the user something stampede chose not to do, on standard error
/// (shown with a failing test's output).
pub(crate) fn note(text: &str) {
    eprintln!("stampede: {text}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(tmpdir: Option<&str>, runtime_dir: Option<&str>, shm_has_room: bool) -> Env {
        Env {
            tmpdir: tmpdir.map(PathBuf::from),
            runtime_dir: runtime_dir.map(PathBuf::from),
            shm_has_room,
            uid: 7,
        }
    }

    #[test]
    fn tmpdir_is_the_one_place_when_set() {
        let e = env(Some("/jobs/3/tmp"), Some("/run/user/7"), true);
        for place in [Place::Disk, Place::Memory, Place::Detached] {
            assert_eq!(e.base(place), Path::new("/jobs/3/tmp/stampede-7"));
        }
    }

    #[test]
    fn a_private_runtime_dir_comes_before_tmp_and_shm() {
        let e = env(None, Some("/run/user/7"), true);
        assert_eq!(e.base(Place::Disk), Path::new("/run/user/7/stampede"));
        assert_eq!(e.base(Place::Memory), Path::new("/run/user/7/stampede"));
    }

    #[test]
    fn shm_holds_memory_instances_only_with_room() {
        let roomy = env(None, None, true);
        assert_eq!(roomy.base(Place::Memory), Path::new("/dev/shm/stampede-7"));
        assert_eq!(roomy.base(Place::Disk), Path::new("/tmp/stampede-7"));
        assert_eq!(roomy.base(Place::Detached), Path::new("/tmp/stampede-7"));
        let full = env(None, None, false);
        assert_eq!(full.base(Place::Memory), Path::new("/tmp/stampede-7"));
    }

    #[test]
    fn a_directory_is_checked_for_links_owner_and_mode() {
        let dir = tempfile::tempdir().unwrap();
        let me = sys::effective_uid();
        let private = dir.path().join("private");
        ensure(&private, 0o700).unwrap();
        let meta = fs::symlink_metadata(&private).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o700);
        assert_eq!(problem(&meta, me), None);
        assert!(problem(&meta, me + 1).unwrap().contains("another user"));

        // An existing directory of ours is tightened to the mode asked for.
        let loose = dir.path().join("loose");
        fs::create_dir(&loose).unwrap();
        fs::set_permissions(&loose, fs::Permissions::from_mode(0o755)).unwrap();
        ensure(&loose, 0o700).unwrap();
        assert_eq!(fs::metadata(&loose).unwrap().mode() & 0o7777, 0o700);

        // Writable by others: refused, its mode named.
        let open = dir.path().join("open");
        fs::create_dir(&open).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
        let text = ensure(&open, 0o700).unwrap_err().to_string();
        assert!(
            text.contains("may write") && text.contains("mode 0777"),
            "{text}"
        );
        assert!(text.contains(&open.display().to_string()), "{text}");
        // Group-writable too.
        fs::set_permissions(&open, fs::Permissions::from_mode(0o770)).unwrap();
        assert!(ensure(&open, 0o700).is_err());
        fs::set_permissions(&open, fs::Permissions::from_mode(0o750)).unwrap();
        assert!(ensure(&open, 0o700).is_ok(), "readable is not writable");

        // A symlink to a directory of ours is refused all the same.
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&private, &link).unwrap();
        let text = ensure(&link, 0o700).unwrap_err().to_string();
        assert!(text.contains("symlink"), "{text}");

        // A file is not a directory.
        let file = dir.path().join("file");
        fs::write(&file, "").unwrap();
        let text = ensure(&file, 0o700).unwrap_err().to_string();
        assert!(text.contains("not a directory"), "{text}");
    }

    #[test]
    fn a_directory_under_one_another_user_could_change_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let shared = dir.path().join("shared");
        fs::create_dir(&shared).unwrap();
        fs::set_permissions(&shared, fs::Permissions::from_mode(0o777)).unwrap();
        let text = check_ancestors(&shared).unwrap_err().to_string();
        assert!(text.contains("sticky") && text.contains("0777"), "{text}");
        fs::set_permissions(&shared, fs::Permissions::from_mode(0o1777)).unwrap();
        check_ancestors(&shared).unwrap();
        // Through a symlink: the link and where it leads are both judged.
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&shared, &link).unwrap();
        check_ancestors(&link).unwrap();
        fs::set_permissions(&shared, fs::Permissions::from_mode(0o777)).unwrap();
        assert!(check_ancestors(&link).is_err(), "the link's target is open");
        // Another user's, sticky or not (only root can make one here).
        if sys::effective_uid() == 0 {
            fs::set_permissions(&shared, fs::Permissions::from_mode(0o1777)).unwrap();
            std::os::unix::fs::chown(&shared, Some(65534), None).unwrap();
            let text = check_ancestors(&shared).unwrap_err().to_string();
            assert!(text.contains("another user (uid 65534)"), "{text}");
            let text = check_ancestors(&link).unwrap_err().to_string();
            assert!(text.contains("uid 65534"), "{text}");
        }
    }

    #[test]
    fn only_a_tmpfs_counts_as_memory() {
        assert_eq!(sys::tmpfs_free_bytes(Path::new("/proc")), None);
        assert_eq!(sys::tmpfs_free_bytes(Path::new("/no/such/dir")), None);
    }

    #[test]
    fn users_are_named_from_passwd() {
        assert_eq!(user_name(0).as_deref(), Some("root"));
        assert_eq!(user_ids("root"), Some((0, 0)));
        assert_eq!(user_ids("no such user here"), None);
    }
}
