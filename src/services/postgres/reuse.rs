//! A server that is already running (`STAMPEDE_POSTGRES_URL`): checked once,
//! never replaced by a fresh one, and cleared of databases whose test
//! process is gone.
//!
//! A fixture's database is named `stampede_<boot>_<pid>_<start>_<n>`: the
//! machine's boot id (8 hex digits), the test process's pid and start time,
//! and a counter. A sweep drops only databases of this boot whose process
//! is gone, so runs on other machines sharing the server are left alone.

use std::sync::Mutex;

use super::psql::{Psql, psql};
use super::url::{self, redacted};
use crate::error::{Error, Result};
use crate::services::trust::{self, Local};
use crate::sys;

/// The variable naming a server to reuse.
pub const URL_VAR: &str = "STAMPEDE_POSTGRES_URL";

const PREFIX: &str = "stampede_";

/// This process's prefix for database names (ends with `_`).
pub(super) fn run_id() -> String {
    let me = sys::getpid();
    let boot: String = sys::boot_id().chars().take(8).collect();
    format!(
        "{PREFIX}{boot}_{me}_{}_",
        sys::process_start_time(me).unwrap_or(0)
    )
}

/// Checks that the server at `url` answers, then (once per process) drops
/// the databases of gone runs.
pub(super) fn check(psql_path: &Psql, url: &str) -> Result<()> {
    if let Some(message) = not_a_url(url) {
        return Err(Error::ServiceUrl {
            variable: URL_VAR,
            url: redacted(url),
            message,
        });
    }
    // Told a password only where no other local user can pose as it.
    for place in url::local_places(url) {
        let at = match &place {
            Ok(socket) => Local::Unix(socket),
            Err(port) => Local::Tcp(*port),
        };
        trust::check(&at, "postgres").map_err(|message| Error::ServiceUnreachable {
            variable: URL_VAR,
            url: redacted(url),
            message,
        })?;
    }
    let listed = psql(
        psql_path,
        url,
        &[format!(
            "SELECT datname FROM pg_database WHERE datname LIKE '{PREFIX}%'"
        )],
    )
    .map_err(|message| Error::ServiceUnreachable {
        variable: URL_VAR,
        url: redacted(url),
        message,
    })?;
    static SWEPT: Mutex<bool> = Mutex::new(false);
    let mut swept = SWEPT.lock().unwrap_or_else(|e| e.into_inner());
    if !*swept {
        *swept = true;
        let boot: String = sys::boot_id().chars().take(8).collect();
        for name in listed.lines().map(str::trim) {
            if is_gone(name, &boot) {
                let _ = psql(
                    psql_path,
                    url,
                    &[format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")],
                );
            }
        }
    }
    Ok(())
}

/// What is wrong with `url`, when libpq could not take it as a server to
/// connect to: neither a URL nor `key=value` pairs.
fn not_a_url(url: &str) -> Option<String> {
    let url = url.trim();
    let uri = url.starts_with("postgresql://") || url.starts_with("postgres://");
    if uri || url.contains('=') {
        return None;
    }
    Some(
        "a PostgreSQL URL starts with `postgresql://` (`postgresql://user@host:5432/db`), or \
         is libpq's `host=… dbname=…`"
            .to_owned(),
    )
}

/// Whether `name` is a fixture database of this boot whose process is gone.
fn is_gone(name: &str, boot: &str) -> bool {
    let Some(rest) = name.strip_prefix(PREFIX) else {
        return false;
    };
    let parts: Vec<&str> = rest.split('_').collect();
    let [db_boot, pid, start, _n] = parts[..] else {
        return false;
    };
    let (Ok(pid), Ok(start)) = (pid.parse(), start.parse()) else {
        return false;
    };
    db_boot == boot && !sys::process_alive(pid, start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_libpq_cannot_take_is_not_a_url() {
        assert!(not_a_url("not a url").unwrap().contains("postgresql://"));
        assert!(not_a_url("localhost:5432").is_some());
        assert_eq!(
            not_a_url("postgresql://postgres@127.0.0.1:5432/postgres"),
            None
        );
        assert_eq!(not_a_url("postgres://h/db"), None);
        assert_eq!(not_a_url("host=/tmp dbname=postgres"), None);
    }

    #[test]
    fn only_this_boots_databases_of_gone_processes_are_swept() {
        let me = sys::getpid();
        let start = sys::process_start_time(me).unwrap();
        assert!(!is_gone(
            &format!("stampede_abcd1234_{me}_{start}_0"),
            "abcd1234"
        ));
        assert!(is_gone(
            &format!("stampede_abcd1234_{me}_{}_0", start + 1),
            "abcd1234"
        ));
        assert!(!is_gone(
            &format!("stampede_other000_{me}_{}_0", start + 1),
            "abcd1234"
        ));
        assert!(!is_gone("orders", "abcd1234"));
        assert!(!is_gone("stampede_tpl_0123456789abcdef", "abcd1234"));
        assert!(!is_gone("stampede_x", "abcd1234"));
    }
}
