//! The `stampede-services` command's work. Used by that command, not
//! public API.
//!
//! Every command takes a lock beside the long-lived instance's directory,
//! so that two `up`s at once start one server and print the same line, and
//! a `down` never races an `up`.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::instance::{self as keeper, Record};
use super::postgres;
use super::postgres::URL_VAR;
use super::private_dir::{self, Place};
use crate::error::{Error, Result};
use crate::sys::{self, Open};

/// The long-lived instance's directory's name in the base.
const UP: &str = "postgres-up";

/// What a command prints: `shell` on standard output (for `eval`), `note`
/// on standard error (for people), and its exit code.
#[derive(Debug, Default)]
pub struct Said {
    /// Lines for the shell.
    pub shell: String,
    /// Lines for people.
    pub note: String,
    /// The exit code: 0, or 1 when something is damaged.
    pub code: u8,
}

/// The long-lived instance as found on disk.
#[derive(Debug, PartialEq)]
enum State {
    /// No directory.
    Absent,
    /// Its keeper runs; its URL.
    Running(String),
    /// Its keeper is gone (killed): what is left may be swept.
    Stale,
    /// Its registry cannot be read: why.
    Damaged(String),
}

fn state(dir: &Path) -> State {
    if std::fs::symlink_metadata(dir).is_err() {
        return State::Absent;
    }
    let Some(text) = keeper::read_registry(dir) else {
        return State::Damaged("its registry cannot be read".to_owned());
    };
    let record = Record::parse(&text);
    if let Some(damage) = record.damage() {
        return State::Damaged(damage);
    }
    let Some(keeper) = &record.keeper else {
        return State::Damaged("it names no keeper".to_owned());
    };
    if !keeper.alive() {
        return State::Stale;
    }
    let mut url = String::new();
    match sys::open_no_follow(&dir.join("url"), Open::Read)
        .and_then(|mut file| file.read_to_string(&mut url))
    {
        Ok(_) if !url.is_empty() => State::Running(url),
        _ => State::Damaged("its keeper runs, but its `url` file cannot be read".to_owned()),
    }
}

/// The base, its long-lived instance's directory, and the lock held while
/// a command looks at it or changes it.
fn locked() -> Result<(PathBuf, PathBuf, File)> {
    let base = private_dir::base(Place::Detached)?;
    let path = base.join(format!("{UP}.lock"));
    let lock = sys::open_no_follow(&path, Open::Keep(0o600))
        .and_then(|lock| sys::lock_exclusive(&lock, Duration::from_secs(60)).map(|()| lock))
        .map_err(|source| Error::Path {
            context: "locking stampede-services' state",
            path,
            source,
        })?;
    let dir = base.join(UP);
    Ok((base, dir, lock))
}

fn export(url: &str) -> String {
    format!("export {URL_VAR}='{url}'\n")
}

fn damaged(dir: &Path, why: &str) -> String {
    format!(
        "postgres: damaged: {}: {why}; `stampede-services down` stops what it can prove is its \
         own and removes the directory\n",
        dir.join("registry").display()
    )
}

/// Starts a PostgreSQL server that outlives this process, or finds the one
/// running; the `export` line.
pub fn up() -> Result<Said> {
    let (base, dir, _lock) = locked()?;
    match state(&dir) {
        State::Running(url) => {
            return Ok(Said {
                shell: export(&url),
                note: "postgres: already running\n".to_owned(),
                code: 0,
            });
        }
        State::Damaged(why) => {
            return Err(Error::ServiceCommand {
                service: "postgres".to_owned(),
                action: "up".to_owned(),
                message: format!(
                    "{} is damaged ({why}); run `stampede-services down` first: it stops what it \
                     can prove is its own and removes the directory",
                    dir.display()
                ),
            });
        }
        // What a killed keeper left.
        State::Stale => drop(keeper::sweep(&base)),
        State::Absent => {}
    }
    let (running, url) = postgres::start_detached()?;
    let path = running.dir().join("url");
    sys::open_no_follow(&path, Open::New(0o600))
        .and_then(|mut file| std::io::Write::write_all(&mut file, url.as_bytes()))
        .map_err(|source| Error::Path {
            context: "recording the server's URL",
            path,
            source,
        })?;
    running.release();
    Ok(Said {
        shell: export(&url),
        note: "postgres: started\n".to_owned(),
        code: 0,
    })
}

/// Whether it runs, and its URL.
pub fn status() -> Result<Said> {
    let (_, dir, _lock) = locked()?;
    Ok(match state(&dir) {
        State::Running(url) => Said {
            shell: format!("postgres: running\n{}", export(&url)),
            ..Said::default()
        },
        State::Absent => Said {
            shell: "postgres: not running\n".to_owned(),
            ..Said::default()
        },
        State::Stale => Said {
            shell: "postgres: not running\n".to_owned(),
            note: format!(
                "its keeper was killed; `stampede-services down` removes what is left in {}\n",
                dir.display()
            ),
            code: 0,
        },
        State::Damaged(why) => Said {
            shell: String::new(),
            note: damaged(&dir, &why),
            code: 1,
        },
    })
}

/// Stops it and removes its files; the `unset` line, so that `eval` clears
/// the shell too.
pub fn down() -> Result<Said> {
    let (_, dir, _lock) = locked()?;
    let unset = format!("unset {URL_VAR}\n");
    if state(&dir) == State::Absent {
        return Ok(Said {
            shell: unset,
            note: "postgres: not running\n".to_owned(),
            code: 0,
        });
    }
    let record = Record::parse(&keeper::read_registry(&dir).unwrap_or_default());
    let mut note = String::new();
    match (&record.keeper, record.damage()) {
        (Some(keeper), None) => {
            // SIGTERM is the keeper's word to stop its server and clean up.
            keeper.signal(sys::SIGTERM, "keeper");
            let until = Instant::now() + Duration::from_secs(20);
            while keeper.alive() && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(20));
            }
            keeper.signal(sys::SIGKILL, "keeper");
            record.kill_servers();
        }
        (_, damage) => {
            let why = damage.unwrap_or_else(|| "it names no keeper".to_owned());
            note.push_str(&damaged(&dir, &why));
            let users = [
                Some(sys::effective_uid()),
                postgres::server_user().map(|u| u.0),
            ];
            let stopped = keeper::stop_processes_in(&dir, &users);
            note.push_str(&format!(
                "postgres: stopped {} process(es) working in {}\n",
                stopped.len(),
                dir.display()
            ));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    note.push_str("postgres: stopped\n");
    Ok(Said {
        shell: unset,
        note,
        code: 0,
    })
}
