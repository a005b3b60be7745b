//! A Redis server that is already running (`STAMPEDE_REDIS_URL`): checked,
//! never replaced by a fresh one, and shared by claiming databases.
//!
//! A fixture claims database `n` (from 1; 0 holds the claims) by setting
//! `stampede:claim:<n>` there to its owner, `<boot>_<pid>_<start>`: the
//! machine's boot id (8 hex digits), the test process's pid and its start
//! time. A claim whose process is gone (on this boot) is taken over, the
//! database emptied first; runs on other machines are left alone.

use super::resp::{Connection, Reply};
use super::url::{Target, redacted};
use crate::error::{Error, Result};
use crate::sys;

/// The variable naming a server to reuse.
pub(crate) const URL_VAR: &str = "STAMPEDE_REDIS_URL";

const CLAIM: &str = "stampede:claim:";

/// Sets a claim to a new owner only if it still names the old one.
const TAKE_OVER: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
     return redis.call('SET', KEYS[1], ARGV[2]) else return false end";

/// Removes a claim only if it names its owner.
const RELEASE: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
     return redis.call('DEL', KEYS[1]) else return 0 end";

/// This process, as a claim names it.
fn owner() -> String {
    let me = sys::getpid();
    let boot: String = sys::boot_id().chars().take(8).collect();
    format!("{boot}_{me}_{}", sys::process_start_time(me).unwrap_or(0))
}

/// The server `url` names, on database 0.
pub(super) fn parse(url: &str) -> Result<Target> {
    Target::parse(url)
        .map(|target| target.with_db(0))
        .map_err(|message| Error::ServiceUrl {
            variable: URL_VAR,
            url: redacted(url),
            message,
        })
}

/// A connection to `target` for stampede's own commands; an error naming
/// the variable when nothing answers.
pub(super) fn connect(target: &Target, url: &str) -> Result<Connection> {
    Connection::open(target)
        .and_then(|mut c| c.ok(&["PING"]).map(|_| c))
        .map_err(|e| Error::ServiceUnreachable {
            variable: URL_VAR,
            url: redacted(url),
            message: e.to_string(),
        })
}

/// How many databases the server has (16, Redis's default, when it will
/// not say).
pub(super) fn databases(connection: &mut Connection) -> u32 {
    match connection.command(&["CONFIG", "GET", "databases"]) {
        Ok(Reply::Array(Some(items))) => items
            .get(1)
            .and_then(Reply::text)
            .and_then(|n| n.parse().ok())
            .unwrap_or(16),
        _ => 16,
    }
}

/// Claims a database for a fixture of this process: the first one that
/// is free or whose claimant is gone. Its number.
pub(super) fn claim(connection: &mut Connection, databases: u32, url: &str) -> Result<u32> {
    let me = owner();
    let failed = |e: std::io::Error| Error::ServiceCommand {
        service: "redis".to_owned(),
        action: "claiming a database".to_owned(),
        message: e.to_string(),
    };
    for n in 1..databases {
        let key = format!("{CLAIM}{n}");
        match connection.ok(&["SET", &key, &me, "NX"]).map_err(failed)? {
            Reply::Status(_) => return Ok(n),
            _ => {
                let Some(held_by) = connection.ok(&["GET", &key]).map_err(failed)?.text() else {
                    continue; // released meanwhile; the next pass may take it
                };
                if is_gone(&held_by, &me) {
                    let taken = connection
                        .ok(&["EVAL", TAKE_OVER, "1", &key, &held_by, &me])
                        .map_err(failed)?;
                    if matches!(taken, Reply::Status(_)) {
                        return Ok(n);
                    }
                }
            }
        }
    }
    Err(Error::ServiceCommand {
        service: "redis".to_owned(),
        action: "claiming a database".to_owned(),
        message: format!(
            "all {} databases of the server at {} (1 to {}; 0 holds the claims) are held by \
             fixtures of live test processes; drop some fixtures, or raise the server's \
             `databases` setting (`stampede-services up redis` starts one with {})",
            databases.saturating_sub(1),
            redacted(url),
            databases.saturating_sub(1),
            super::server::DATABASES
        ),
    })
}

/// Lets database `n` go, if this process still holds it.
pub(super) fn release(connection: &mut Connection, n: u32) {
    let key = format!("{CLAIM}{n}");
    let _ = connection.ok(&["EVAL", RELEASE, "1", &key, &owner()]);
}

/// Whether a claim's owner is a process of this boot that is gone.
fn is_gone(held_by: &str, me: &str) -> bool {
    let my_boot = me.split('_').next().unwrap_or("");
    let parts: Vec<&str> = held_by.split('_').collect();
    let [boot, pid, start] = parts[..] else {
        return false;
    };
    let (Ok(pid), Ok(start)) = (pid.parse(), start.parse()) else {
        return false;
    };
    boot == my_boot && !sys::process_alive(pid, start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_claims_of_this_boots_gone_processes_are_taken_over() {
        let me = owner();
        let boot = me.split('_').next().unwrap().to_owned();
        let pid = sys::getpid();
        let start = sys::process_start_time(pid).unwrap();
        assert!(!is_gone(&me, &me));
        assert!(is_gone(&format!("{boot}_{pid}_{}", start + 1), &me));
        assert!(!is_gone(&format!("other000_{pid}_{}", start + 1), &me));
        assert!(!is_gone("garbage", &me));
        assert!(!is_gone(&format!("{boot}_x_1"), &me));
    }
}
