//! PostgreSQL's programs: where they are, their version, `initdb`, and its
//! result cached once per machine and major version.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{BIN_VAR, SUPERUSER};
use crate::error::{Error, Result};
use crate::services::instance::{self, Instance};
use crate::services::private_dir::{self, Place, note};
use crate::sys::{self, Open};

/// As root, the user the server runs as (PostgreSQL refuses root):
/// `postgres` if it exists, else `nobody`. `None` when not root.
pub(crate) fn server_user() -> Option<(u32, u32)> {
    if sys::effective_uid() != 0 {
        return None;
    }
    private_dir::user_ids("postgres").or_else(|| private_dir::user_ids("nobody"))
}

/// The directory holding `initdb`, `postgres` and `psql`.
pub(super) fn find_bin(explicit: Option<&Path>) -> Result<PathBuf> {
    let has_all = |dir: &Path| {
        ["initdb", "postgres", "psql"]
            .iter()
            .all(|p| dir.join(p).is_file())
    };
    let from_var = std::env::var_os(BIN_VAR).map(PathBuf::from);
    if let Some(dir) = explicit.map(Path::to_path_buf).or(from_var) {
        return if has_all(&dir) {
            Ok(dir)
        } else {
            Err(not_found(&format!(
                "initdb, postgres and psql are not all in {} (given by {} or the builder)",
                dir.display(),
                BIN_VAR
            )))
        };
    }
    let mut candidates = Vec::new();
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        if out.status.success() {
            candidates.push(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            Some((version, e.path().join("bin")))
        })
        .collect();
    versions.sort();
    candidates.extend(versions.into_iter().rev().map(|(_, dir)| dir));
    candidates.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    candidates.into_iter().find(|d| has_all(d)).ok_or_else(|| {
        not_found(
            "initdb, postgres and psql were not found (looked in `pg_config --bindir`, \
             /usr/lib/postgresql/*/bin and PATH)",
        )
    })
}

fn not_found(what: &str) -> Error {
    Error::ServiceNotFound {
        service: "postgres".to_owned(),
        message: format!(
            "{what}; install PostgreSQL's server (Debian and Ubuntu: `apt-get install \
             postgresql`) or set {BIN_VAR} to the directory that holds them"
        ),
    }
}

/// The major version of the server in `bin` (`postgres --version`).
fn major_version(bin: &Path) -> Result<String> {
    let out = Command::new(bin.join("postgres"))
        .arg("--version")
        .output()
        .map_err(|e| {
            not_found(&format!(
                "{} could not run: {e}",
                bin.join("postgres").display()
            ))
        })?;
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text.split_whitespace().last().unwrap_or("unknown");
    Ok(version.split('.').next().unwrap_or(version).to_owned())
}

/// The cached result of `initdb` for the server in `bin`, made on first
/// use under a file lock (other test processes wait for it). Only a cache
/// that is this user's and closed to others' writes is used.
pub(super) fn cached_data_dir(
    bin: &Path,
    user: Option<(u32, u32)>,
    root: &Path,
) -> Result<PathBuf> {
    let version = major_version(bin)?;
    let cached = root.join(format!("postgres-{version}"));
    let data = cached.join("data");
    private_dir::ensure(root, 0o700)?;
    private_dir::ensure(&cached, 0o700)?;
    if usable_cache(&data)? {
        return Ok(data);
    }
    let lock_path = root.join(format!("postgres-{version}.lock"));
    let lock = sys::open_no_follow(&lock_path, Open::Keep(0o600))
        .and_then(|lock| sys::lock_exclusive(&lock, CACHE_LOCK_LIMIT).map(|()| lock))
        .map_err(|source| Error::Path {
            context: "locking the cache",
            path: lock_path,
            source,
        })?;
    if usable_cache(&data)? {
        return Ok(data);
    }
    // Only the lock's holder writes partial copies: any found now is left
    // by a holder that died (killed during `initdb`).
    for entry in fs::read_dir(&cached).into_iter().flatten().flatten() {
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with("data.partial-")
        {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
    // initdb runs as the server's user, in a directory it can reach (a
    // home under /root is closed to it); the result is copied in.
    let scratch = Instance::create("initdb", Place::Memory)?;
    let result = instance::server_dir(scratch.path()).and_then(|dir| {
        instance::hand_over(scratch.path(), user)?;
        let fresh = dir.join("data");
        initdb(bin, &fresh, user)?;
        let partial = cached.join(format!("data.partial-{}", sys::getpid()));
        // initdb's result belongs to the server's user, who could change
        // it meanwhile: nothing in it is followed, and only its own files
        // are taken (see `copy_tree_strict`).
        let initdb_user = user.map_or(sys::effective_uid(), |(uid, _)| uid);
        sys::copy_tree_strict(&fresh, &partial, initdb_user)
            .and_then(|()| fs::rename(&partial, &data))
            .map_err(|source| Error::Path {
                context: "copying initdb's result into the cache",
                path: cached.clone(),
                source,
            })
    });
    scratch.remove();
    drop(lock);
    result.map(|()| data)
}

/// Whether the cached data directory `data` is there to be used. One that
/// is not this user's, or that others may write in, is moved aside with a
/// note and made again: what another user put there would run in every
/// cluster (`archive_command` in `postgresql.auto.conf`).
fn usable_cache(data: &Path) -> Result<bool> {
    let Ok(meta) = fs::symlink_metadata(data) else {
        return Ok(false);
    };
    let Some(problem) = private_dir::problem(&meta, sys::effective_uid()) else {
        return Ok(data.join("PG_VERSION").is_file());
    };
    let aside = data.with_file_name(format!("data.untrusted-{}", sys::getpid()));
    note(&format!(
        "not using the cached data directory {}: {problem}; moved to {}",
        data.display(),
        aside.display()
    ));
    fs::rename(data, &aside).map_err(|source| Error::Path {
        context: "moving an untrusted cached data directory aside",
        path: data.to_owned(),
        source,
    })?;
    Ok(false)
}

/// Runs `initdb` into `data` as `user` (the server's user, when root).
pub(super) fn initdb(bin: &Path, data: &Path, user: Option<(u32, u32)>) -> Result<()> {
    let mut command = Command::new(bin.join("initdb"));
    command
        .arg("-D")
        .arg(data)
        .args([
            "-U",
            SUPERUSER,
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "-E",
            "UTF8",
            "--locale=C",
        ])
        .args(["--no-sync", "--no-instructions"])
        .stdin(Stdio::null());
    if let Some((uid, gid)) = user {
        sys::environment_for_another_user(&mut command);
        command.uid(uid).gid(gid);
    }
    // Its own group, and killed with this thread's process: a test killed
    // during a cold start leaves no initdb behind (its `postgres --single`
    // ends when initdb's pipe to it closes).
    command.process_group(0);
    sys::kill_with_parent(&mut command);
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = command
        .spawn()
        .map_err(|e| not_found(&format!("initdb could not run: {e}")))?;
    // A time limit: initdb runs as the server's user, who could stop it
    // (SIGSTOP) and so hold the cache's lock, and every test, forever.
    let group = child.id();
    let waiting = std::thread::spawn(move || child.wait_with_output());
    let until = std::time::Instant::now() + INITDB_LIMIT;
    while !waiting.is_finished() && std::time::Instant::now() < until {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let timed_out = !waiting.is_finished();
    if timed_out {
        // Not reaped yet (its waiter holds it): the group is still its own.
        sys::signal_group(group, sys::SIGKILL);
    }
    match waiting.join() {
        Ok(Ok(out)) if out.status.success() && !timed_out => Ok(()),
        Ok(Ok(out)) => Err(Error::ServiceStart {
            service: "postgres".to_owned(),
            reason: if timed_out {
                format!("initdb did not finish within {INITDB_LIMIT:?} and was killed")
            } else {
                format!("initdb failed ({})", out.status)
            },
            log_tail: String::from_utf8_lossy(&out.stderr).into_owned(),
        }),
        Ok(Err(e)) => Err(not_found(&format!("initdb could not be waited for: {e}"))),
        Err(_) => Err(not_found("initdb's waiter panicked")),
    }
}

/// How long `initdb` may take (about 1 s here; 30 s on a slow disk).
const INITDB_LIMIT: std::time::Duration = std::time::Duration::from_secs(120);

/// How long a start waits for another process's `initdb` into the cache:
/// its limit, and the copy after it.
const CACHE_LOCK_LIMIT: std::time::Duration = std::time::Duration::from_secs(180);
