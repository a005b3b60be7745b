//! A Redis server that is already running (`STAMPEDE_REDIS_URL`): checked,
//! never replaced by a fresh one, and shared by claiming databases.
//!
//! A fixture claims database `n` (from 1; 0 holds the claims) by setting
//! `stampede:claim:<n>` there to its owner, `<boot>_<pid>_<start>`: the
//! machine's boot id (8 hex digits), the test process's pid and its start
//! time. A claim whose process is gone (on this boot) is taken over, the
//! database emptied first; runs on other machines are left alone.

use super::resp::{Connection, Reply};
use super::url::{Address, Target, redacted, scrubbed};
use crate::error::{Error, Result};
use crate::services::trust::{self, Local, is_loopback};
use crate::sys;

/// The variable naming a server to reuse.
pub(crate) const URL_VAR: &str = "STAMPEDE_REDIS_URL";

const CLAIM: &str = "stampede:claim:";

/// Sets a claim to a new owner only if it still names the old one.
const TAKE_OVER: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
     return redis.call('SET', KEYS[1], ARGV[2]) else return false end";

/// The number of keys in database `ARGV[1]`, without leaving the
/// connection there.
const DBSIZE_OF: &str = "redis.call('SELECT', ARGV[1]); return redis.call('DBSIZE')";

/// Empties database `ARGV[1]`.
const FLUSH_DB: &str = "redis.call('SELECT', ARGV[1]); return redis.call('FLUSHDB')";

/// Removes a claim only if it names its owner.
const RELEASE: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
     return redis.call('DEL', KEYS[1]) else return 0 end";

/// This process, as a claim names it: `<boot>_<pid namespace>_<pid>_<start>`.
/// The namespace keeps a process in another container, whose pids are
/// numbered apart, from reading as gone.
fn owner() -> String {
    let me = sys::getpid();
    format!(
        "{}_{}_{}",
        place(),
        me,
        sys::process_start_time(me).unwrap_or(0)
    )
}

/// This boot and pid namespace: `<boot>_<namespace inode>`.
fn place() -> String {
    let boot: String = sys::boot_id().chars().take(8).collect();
    let namespace = std::fs::read_link("/proc/self/ns/pid")
        .ok()
        .and_then(|link| {
            let link = link.to_string_lossy().into_owned();
            let inode = link.strip_prefix("pid:[")?.strip_suffix(']')?.to_owned();
            Some(inode)
        })
        .unwrap_or_else(|| "0".to_owned());
    format!("{boot}_{namespace}")
}

/// The server `url` names, on database 0.
pub(super) fn parse(url: &str) -> Result<Target> {
    Target::parse(url)
        .map(|target| target.with_db(0))
        .map_err(|message| Error::ServiceUrl {
            variable: URL_VAR,
            url: redacted(url),
            message: scrubbed(&message, url),
        })
}

/// A connection to `target` for stampede's own commands; an error naming
/// the variable when nothing answers.
pub(super) fn connect(target: &Target, url: &str) -> Result<Connection> {
    let local = match &target.address {
        Address::Unix(path) => Some(Local::Unix(path)),
        Address::Tcp { host, port } if is_loopback(host) => Some(Local::Tcp(*port)),
        Address::Tcp { .. } => None,
    };
    if let Some(Err(message)) = local.map(|at| trust::check(&at, "redis")) {
        return Err(Error::ServiceUnreachable {
            variable: URL_VAR,
            url: redacted(url),
            message,
        });
    }
    Connection::open(target)
        .and_then(|mut c| c.ok(&["PING"]).map(|_| c))
        .map_err(|e| {
            let mut message = e.to_string();
            if message.contains("NOAUTH") || message.contains("WRONGPASS") {
                message.push_str(
                    "; the server wants a password: put it in the URL \
                     (`redis://:<password>@host:port`)",
                );
            }
            Error::ServiceUnreachable {
                variable: URL_VAR,
                url: redacted(url),
                message,
            }
        })
}

/// The most databases a reused server is taken to have: a claim is
/// looked for in each, and a server that says it has billions is wrong.
const DATABASES_MAX: u32 = 1 << 16;

/// How many databases the server has (16, Redis's default, when it will
/// not say), at most [`DATABASES_MAX`].
pub(super) fn databases(connection: &mut Connection) -> u32 {
    let said = match connection.command(&["CONFIG", "GET", "databases"]) {
        Ok(Reply::Array(Some(items))) => items
            .get(1)
            .and_then(Reply::text)
            .and_then(|n| n.parse().ok())
            .unwrap_or(16),
        _ => 16,
    };
    said.min(DATABASES_MAX)
}

/// Why a database could not be claimed.
#[derive(Default)]
struct Passed {
    /// Held by live fixtures of this machine.
    live: u32,
    /// Held by fixtures of another machine or boot, or another container.
    elsewhere: u32,
    /// Not claimed, but holding keys that are not stampede's.
    with_data: u32,
}

/// Claims a database for a fixture of this process: the first one that
/// is empty and unclaimed, or whose claimant is gone (its keys are then
/// emptied). A database with keys and no claim is someone's data and is
/// left alone. Its number.
pub(super) fn claim(connection: &mut Connection, databases: u32, url: &str) -> Result<u32> {
    let me = owner();
    let failed = |e: std::io::Error| Error::ServiceCommand {
        service: "redis".to_owned(),
        action: "claiming a database".to_owned(),
        message: e.to_string(),
    };
    let mut passed = Passed::default();
    for n in 1..databases {
        let key = format!("{CLAIM}{n}");
        let db = n.to_string();
        match connection.ok(&["SET", &key, &me, "NX"]).map_err(failed)? {
            Reply::Status(_) => {
                // Claimed; usable only if empty: keys there are not ours.
                let size = connection
                    .ok(&["EVAL", DBSIZE_OF, "0", &db])
                    .map_err(failed)?;
                if size == Reply::Integer(0) {
                    return Ok(n);
                }
                passed.with_data += 1;
                release(connection, n);
            }
            _ => {
                let Some(held_by) = connection.ok(&["GET", &key]).map_err(failed)?.text() else {
                    continue; // released meanwhile; the next pass may take it
                };
                match whose(&held_by, &me) {
                    Claimant::Gone => {
                        let taken = connection
                            .ok(&["EVAL", TAKE_OVER, "1", &key, &held_by, &me])
                            .map_err(failed)?;
                        if matches!(taken, Reply::Status(_)) {
                            // A fixture of a gone process: its keys go.
                            connection
                                .ok(&["EVAL", FLUSH_DB, "0", &db])
                                .map_err(failed)?;
                            return Ok(n);
                        }
                    }
                    Claimant::Live => passed.live += 1,
                    Claimant::Elsewhere => passed.elsewhere += 1,
                }
            }
        }
    }
    Err(Error::ServiceCommand {
        service: "redis".to_owned(),
        action: "claiming a database".to_owned(),
        message: none_free(&passed, databases, &redacted(url)),
    })
}

/// Why no database was free, and what to do.
fn none_free(passed: &Passed, databases: u32, url: &str) -> String {
    if databases <= 1 {
        return format!(
            "the server at {url} has {databases} database(s); database 0 holds the claims, so \
             fixtures need 2 or more (its `databases` setting)"
        );
    }
    let mut why = format!(
        "none of the {} databases of the server at {url} (1 to {}; 0 holds the claims) is \
         free: {} held by fixtures of live test processes",
        databases - 1,
        databases - 1,
        passed.live
    );
    if passed.elsewhere > 0 {
        why.push_str(&format!(
            ", {} by fixtures of another machine, boot or container (never taken over from \
             here; if none of those runs, delete their `stampede:claim:<n>` keys in database 0)",
            passed.elsewhere
        ));
    }
    if passed.with_data > 0 {
        why.push_str(&format!(
            ", {} unclaimed but holding keys (someone's data: left alone)",
            passed.with_data
        ));
    }
    why.push_str(&format!(
        "; drop some fixtures, or raise the server's `databases` setting \
         (`stampede-services up redis` starts one with {})",
        super::server::DATABASES
    ));
    why
}

/// Lets database `n` go, if this process still holds it.
pub(super) fn release(connection: &mut Connection, n: u32) {
    let key = format!("{CLAIM}{n}");
    let _ = connection.ok(&["EVAL", RELEASE, "1", &key, &owner()]);
}

/// Who holds a claim, as far as this process can tell.
#[derive(Debug, PartialEq)]
enum Claimant {
    /// A process of this boot and pid namespace that is gone.
    Gone,
    /// A process of this boot and pid namespace that runs.
    Live,
    /// Another machine, boot or container, or a claim of another format:
    /// nothing this process can prove gone.
    Elsewhere,
}

fn whose(held_by: &str, me: &str) -> Claimant {
    let parts: Vec<&str> = held_by.split('_').collect();
    let mine: Vec<&str> = me.split('_').collect();
    let ([boot, namespace, pid, start], [my_boot, my_namespace, ..]) = (&parts[..], &mine[..])
    else {
        return Claimant::Elsewhere;
    };
    let (Ok(pid), Ok(start)) = (pid.parse(), start.parse()) else {
        return Claimant::Elsewhere;
    };
    if boot != my_boot || namespace != my_namespace {
        Claimant::Elsewhere
    } else if sys::process_alive(pid, start) {
        Claimant::Live
    } else {
        Claimant::Gone
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_claims_of_this_boot_and_namespace_whose_process_is_gone_are_taken_over() {
        let me = owner();
        let here = place();
        let pid = sys::getpid();
        let start = sys::process_start_time(pid).unwrap();
        assert_eq!(whose(&me, &me), Claimant::Live);
        assert_eq!(
            whose(&format!("{here}_{pid}_{}", start + 1), &me),
            Claimant::Gone
        );
        let boot = here.split('_').next().unwrap();
        let other_namespace = format!("{boot}_1_{pid}_{}", start + 1);
        if !here.ends_with("_1") {
            assert_eq!(whose(&other_namespace, &me), Claimant::Elsewhere);
        }
        assert_eq!(
            whose(&format!("other000_{}_{pid}_{}", &here[9..], start + 1), &me),
            Claimant::Elsewhere
        );
        // The claims of an earlier format, and garbage, are never taken.
        assert_eq!(
            whose(&format!("{boot}_{pid}_{}", start + 1), &me),
            Claimant::Elsewhere
        );
        assert_eq!(whose("garbage", &me), Claimant::Elsewhere);
        assert_eq!(whose(&format!("{here}_x_1"), &me), Claimant::Elsewhere);
    }

    #[test]
    fn a_server_with_no_free_database_is_told_why_by_kind() {
        let passed = Passed {
            live: 2,
            elsewhere: 3,
            with_data: 1,
        };
        let text = none_free(&passed, 7, "redis://h:1");
        for part in [
            "none of the 6 databases of the server at redis://h:1 (1 to 6; 0 holds the claims)",
            "2 held by fixtures of live test processes",
            "3 by fixtures of another machine, boot or container",
            "1 unclaimed but holding keys (someone's data: left alone)",
            "`databases` setting",
        ] {
            assert!(text.contains(part), "{part}: {text}");
        }
        let text = none_free(&Passed::default(), 1, "redis://h:1");
        assert!(text.contains("fixtures need 2 or more"), "{text}");
        assert!(!text.contains("0 databases"), "{text}");
    }
}
