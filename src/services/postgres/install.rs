//! PostgreSQL's programs: where they are, their version, `initdb`, and its
//! result cached once per machine and major version.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{BIN_VAR, SUPERUSER};
use crate::error::{Error, Result};
use crate::services::instance::{self, Instance};
use crate::services::limited;
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
    initdb_within(bin, data, user, INITDB_LIMIT)
}

/// [`initdb`], killed with its group after `limit`.
fn initdb_within(
    bin: &Path,
    data: &Path,
    user: Option<(u32, u32)>,
    limit: std::time::Duration,
) -> Result<()> {
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
    // Its own group (`run_within`), and killed with this thread's process:
    // a test killed during a cold start leaves no initdb behind (its
    // `postgres --single` ends when initdb's pipe to it closes). A time
    // limit: initdb runs as the server's user, who could stop it (SIGSTOP)
    // and so hold the cache's lock, and every test, forever.
    sys::kill_with_parent(&mut command);
    let ran = limited::run_within(command, None, limit)
        .map_err(|e| not_found(&format!("initdb could not run: {e}")))?;
    match ran.status {
        Some(status) if status.success() => Ok(()),
        status => Err(Error::ServiceStart {
            service: "postgres".to_owned(),
            reason: match status {
                Some(status) => format!("initdb failed ({status})"),
                None => format!("initdb did not finish within {limit:?} and was killed"),
            },
            log_tail: String::from_utf8_lossy(&ran.stderr).into_owned(),
        }),
    }
}

/// How long `initdb` may take (about 1 s here; 30 s on a slow disk).
const INITDB_LIMIT: std::time::Duration = std::time::Duration::from_secs(120);

/// How long a start waits for another process's `initdb` into the cache:
/// its limit, and the copy after it.
const CACHE_LOCK_LIMIT: std::time::Duration = std::time::Duration::from_secs(180);

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A directory holding an `initdb` that runs `script`.
    fn fake_bin(script: &str) -> tempfile::TempDir {
        let bin = tempfile::tempdir().unwrap();
        let path = bin.path().join("initdb");
        std::fs::write(&path, format!("#!/bin/sh\n{script}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        bin
    }

    #[test]
    fn a_failing_initdb_is_named_with_its_status_and_what_it_wrote() {
        let bin = fake_bin("echo 'initdb: error: no space' >&2; exit 3");
        let data = tempfile::tempdir().unwrap();
        let err = initdb(bin.path(), &data.path().join("data"), None).unwrap_err();
        match err {
            Error::ServiceStart {
                reason, log_tail, ..
            } => {
                assert_eq!(reason, "initdb failed (exit status: 3)");
                assert_eq!(log_tail, "initdb: error: no space\n");
            }
            other => panic!("{other}"),
        }
    }

    #[test]
    fn an_initdb_that_exits_0_is_a_success() {
        let bin = fake_bin("echo done; exit 0");
        let data = tempfile::tempdir().unwrap();
        initdb(bin.path(), &data.path().join("data"), None).unwrap();
    }

    #[test]
    fn an_initdb_past_its_limit_is_killed_with_its_group_at_the_limit() {
        let pids = tempfile::tempdir().unwrap();
        let file = pids.path().join("sleeper");
        let bin = fake_bin(&format!("sleep 30 & echo $! > {}; wait", file.display()));
        let limit = std::time::Duration::from_secs(1);
        let began = std::time::Instant::now();
        let err = initdb_within(bin.path(), &pids.path().join("data"), None, limit).unwrap_err();
        let took = began.elapsed();
        assert!(
            err.to_string()
                .contains("initdb did not finish within 1s and was killed"),
            "{err}"
        );
        assert!(
            took >= limit && took < limit + std::time::Duration::from_secs(5),
            "killed after {took:?}, its limit {limit:?}"
        );
        // What it started in its group went with it (the sleeper is a
        // grandchild: it ends, then is a zombie until init reaps it; it
        // closed its end of initdb's pipe a moment ago, dying).
        let sleeper: u32 = std::fs::read_to_string(&file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let stat = std::fs::read_to_string(format!("/proc/{sleeper}/stat")).unwrap_or_default();
            let state = stat.rsplit_once(") ").map(|(_, rest)| &rest[..1]);
            if matches!(state, None | Some("Z")) {
                break;
            }
            assert!(
                std::time::Instant::now() < until,
                "the sleeper runs: {stat}"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
}
