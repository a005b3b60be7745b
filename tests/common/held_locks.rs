//! Locks held across a step, shared by the scheduling tests and the
//! schedule bench: a file lock (which no server reports) and a PostgreSQL
//! row lock (which `stampede::postgres_backend` lets the parent see).
#![allow(dead_code, reason = "each test file uses a different subset")]

use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};

/// Child 0 takes the file lock and is held at `locked`; child 1, let go
/// at `before-lock`, blocks on it and is taken as blocked.
pub const FILE_LOCK_HELD: &str =
    "v1 n=2 0:start 0:before-lock 1:start 1:before-lock 1:! 0:locked 0:end 1:locked 1:end";

/// An empty file to lock, in a fresh temporary directory (removed with
/// the directory).
pub fn lock_file() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lock");
    std::fs::write(&path, "").unwrap();
    (dir, path)
}

/// Takes an exclusive lock on `path`, holds it across a step, lets it go.
pub fn file_lock_across_a_step(path: &Path) {
    file_lock_taken_across_a_step(path, |fd| {
        // SAFETY: flock on a descriptor the caller owns.
        assert_eq!(unsafe { libc::flock(fd, libc::LOCK_EX) }, 0);
    });
}

/// Opens `path`, steps (`before-lock`), takes its lock with `take` (given
/// the descriptor), holds it across a step (`locked`), lets it go.
pub fn file_lock_taken_across_a_step(path: &Path, take: impl FnOnce(RawFd)) {
    let file = std::fs::File::open(path).unwrap();
    stampede::step("before-lock");
    take(file.as_raw_fd());
    stampede::step("locked");
    drop(file);
}

/// Two accounts of 100, for `debit_holding_the_row`.
pub const ACCOUNTS: &str = "CREATE TABLE accounts (id int PRIMARY KEY, balance int); \
                            INSERT INTO accounts VALUES (1, 100), (2, 100);";

/// Child 0 holds the row lock at `debited`; child 1, let go from `begun`,
/// waits on it.
pub const ROW_LOCK_HELD: &str =
    "v1 n=2 0:start 0:begun 1:start 1:begun 1:! 0:debited 0:end 1:debited 1:end";

/// Connects to `url` and, with `name_as`, names the connection to the
/// scheduled run as one on that URL.
pub fn connect(url: &str, name_as: Option<&str>) -> postgres::Client {
    let mut db = postgres::Client::connect(url, postgres::NoTls).unwrap();
    if let Some(named) = name_as {
        let me: i32 = db.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
        stampede::postgres_backend(named, me);
    }
    db
}

/// Debits account 1 in a transaction, holding the row lock across
/// `debited`.
pub fn debit_holding_the_row(url: &str, name_as: Option<&str>) {
    let mut db = connect(url, name_as);
    let mut tx = db.transaction().unwrap();
    stampede::step("begun");
    tx.execute(
        "UPDATE accounts SET balance = balance - 10 WHERE id = 1",
        &[],
    )
    .unwrap();
    stampede::step("debited");
    tx.commit().unwrap();
}
