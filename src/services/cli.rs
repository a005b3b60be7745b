//! The `stampede-services` command's work. Used by that command, not
//! public API.
//!
//! Every service (the built-in PostgreSQL and Redis, and a user's own
//! declared with [`Services`](super::Services)) has a long-lived instance of
//! its own, `<base>/<name>-up/`, with a `url` file beside its registry.
//! Every command takes one lock in the base, so that two `up`s at once
//! start one server each and print the same lines, and a `down` never
//! races an `up`.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::instance::{self as keeper, Record};
use super::private_dir::{self, Place};
use super::{Running, Server};
use super::{postgres, redis};
use crate::error::{Error, Result};
use crate::sys::{self, Open};

/// A service the command can start.
pub struct Entry {
    /// Its name on the command line and its directory's (`<name>-up`).
    name: String,
    /// The variable that tests read to reuse it.
    variable: String,
    /// Starts it detached: its handle and URL.
    start: Box<dyn Fn() -> Result<(Running, String)>>,
    /// The user its processes may run as, besides this one.
    server_user: fn() -> Option<u32>,
}

impl Entry {
    /// Its name on the command line.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// A user's own server, named `name`, reused through
    /// `STAMPEDE_<NAME>_URL`; its URL is its first address.
    pub(crate) fn server(name: &str, server: Server) -> Entry {
        let server = server.name(name);
        let shown = name.to_owned();
        Entry {
            name: name.to_owned(),
            variable: variable_for(name),
            start: Box::new(move || {
                let running = super::start_in(&server, Place::Detached)?;
                let Some(address) = running.addresses().first().cloned() else {
                    running.stop();
                    return Err(Error::InvalidOptions(format!(
                        "the service `{shown}` has no address to export: give its server a \
                         port (`Server::free_port()` or `ready(Ready::Port(..))`)"
                    )));
                };
                Ok((running, address))
            }),
            server_user: || None,
        }
    }
}

/// `STAMPEDE_<NAME>_URL`, `-` as `_`.
pub(crate) fn variable_for(name: &str) -> String {
    format!(
        "STAMPEDE_{}_URL",
        name.to_ascii_uppercase().replace('-', "_")
    )
}

/// The services every command knows, in the order it starts them.
pub(crate) fn builtins() -> Vec<Entry> {
    vec![
        Entry {
            name: "postgres".to_owned(),
            variable: postgres::URL_VAR.to_owned(),
            start: Box::new(postgres::start_detached),
            server_user: || postgres::server_user().map(|u| u.0),
        },
        Entry {
            name: "redis".to_owned(),
            variable: redis::URL_VAR.to_owned(),
            start: Box::new(redis::start_detached),
            server_user: || None,
        },
    ]
}

/// The anchor the keepers started now are to watch: the server (pid,
/// start time) of `<base>/anchor-up`.
static ANCHOR: std::sync::Mutex<Option<(u32, u64)>> = std::sync::Mutex::new(None);

/// The anchor for keepers this process starts detached from now on.
pub(crate) fn anchor() -> Option<(u32, u64)> {
    *ANCHOR.lock().unwrap_or_else(|e| e.into_inner())
}

/// The anchor: one process whose end stops every service `up` started.
/// Each detached keeper watches it (by pid and start time) beside its stop
/// signal, so `kill <anchor pid>`, even `kill -9`, stops them all. It is a
/// `sleep` under a detached keeper of its own, in `<base>/anchor-up`, whose
/// `url` file holds its pid and start time.
fn anchor_entry() -> Entry {
    Entry {
        name: "anchor".to_owned(),
        variable: String::new(),
        start: Box::new(|| {
            let running = super::start_in(
                &Server::new("sleep").name("anchor").args(["2147483647"]),
                Place::Detached,
            )?;
            let pid = running.server_pid();
            let start = sys::process_start_time(pid).unwrap_or(0);
            Ok((running, format!("{pid} {start}")))
        }),
        server_user: || None,
    }
}

/// The running anchor of `base`, started if there is none; from now on,
/// keepers this process starts detached watch it. Its pid.
fn ensure_anchor(base: &Path) -> Result<u32> {
    // The anchor's own keeper watches no anchor.
    *ANCHOR.lock().unwrap_or_else(|e| e.into_inner()) = None;
    let entry = anchor_entry();
    let (text, _) = up_one(&entry, base)?;
    let mut words = text.split_whitespace().map(str::parse::<u64>);
    let (Some(Ok(pid)), Some(Ok(start))) = (words.next(), words.next()) else {
        return Err(Error::InvalidOptions(format!(
            "the anchor's record in {} is damaged; run `stampede-services down` first",
            dir_of(base, &entry).display()
        )));
    };
    let pid = u32::try_from(pid).unwrap_or(0);
    *ANCHOR.lock().unwrap_or_else(|e| e.into_inner()) = Some((pid, start));
    Ok(pid)
}

/// The anchor's pid, when it runs.
fn anchor_pid(base: &Path) -> Option<u32> {
    match state(&dir_of(base, &anchor_entry())) {
        State::Running(text) => text.split_whitespace().next()?.parse().ok(),
        _ => None,
    }
}

/// The names of `entries`, for messages.
fn names(entries: &[Entry]) -> String {
    let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
    match names.split_last() {
        Some((last, [])) => (*last).to_owned(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
        None => "nothing".to_owned(),
    }
}

/// The services `names` asks for (all when empty); an error naming the
/// ones the command does not know.
fn chosen<'a>(entries: &'a [Entry], names: &[&str]) -> Result<Vec<&'a Entry>> {
    if names.is_empty() {
        return Ok(entries.iter().collect());
    }
    let mut chosen: Vec<&Entry> = Vec::new();
    for name in names {
        let entry = entries.iter().find(|e| e.name == *name).ok_or_else(|| {
            Error::InvalidOptions(format!(
                "stampede-services knows no service `{name}`; it starts {}",
                self::names(entries)
            ))
        })?;
        if !chosen.iter().any(|c| c.name == entry.name) {
            chosen.push(entry);
        }
    }
    Ok(chosen)
}

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

/// The base and the lock held while a command looks at the instances or
/// changes them.
fn locked() -> Result<(PathBuf, File)> {
    let base = private_dir::base(Place::Detached)?;
    let path = base.join("services-up.lock");
    let lock = sys::open_no_follow(&path, Open::Keep(0o600))
        .and_then(|lock| sys::lock_exclusive(&lock, Duration::from_secs(60)).map(|()| lock))
        .map_err(|source| Error::Path {
            context: "locking stampede-services' state",
            path,
            source,
        })?;
    Ok((base, lock))
}

fn dir_of(base: &Path, builtin: &Entry) -> PathBuf {
    base.join(format!("{}-up", builtin.name))
}

fn export(builtin: &Entry, url: &str) -> String {
    format!("export {}='{url}'\n", builtin.variable)
}

fn damaged(builtin: &Entry, dir: &Path, why: &str) -> String {
    format!(
        "{}: damaged: {}: {why}; `stampede-services down` stops what it can prove is its \
         own and removes the directory\n",
        builtin.name,
        dir.join("registry").display()
    )
}

/// Starts the services `names` asks for (all when empty) so that they
/// outlive this process, or finds them running; an `export` line for each
/// that runs. One that cannot start is said on standard error (exit code
/// 1) and does not keep the others from starting.
pub fn up(entries: &[Entry], names: &[&str]) -> Result<Said> {
    let chosen = chosen(entries, names)?;
    let (base, _lock) = locked()?;
    let mut said = Said::default();
    let anchor = ensure_anchor(&base)?;
    for builtin in chosen {
        match up_one(builtin, &base) {
            Ok((url, note)) => {
                said.shell.push_str(&export(builtin, &url));
                said.note.push_str(&format!("{}: {note}\n", builtin.name));
            }
            Err(e) => {
                // Once, not "redis: redis: up failed".
                let text = e.to_string();
                let named = text.starts_with(&format!("{}: ", builtin.name));
                match named {
                    true => said.note.push_str(&format!("{text}\n")),
                    false => said.note.push_str(&format!("{}: {text}\n", builtin.name)),
                }
                said.code = 1;
            }
        }
    }
    if said.shell.is_empty() {
        stop_idle_anchor(entries, &base, &mut said.note);
    } else {
        said.note.push_str(&format!(
            "stop them all with `eval \"$(stampede-services down)\"`, or `kill {anchor}`\n"
        ));
    }
    Ok(said)
}

/// Starts one service, or finds it running: its URL, and what was done.
fn up_one(builtin: &Entry, base: &Path) -> Result<(String, String)> {
    let dir = dir_of(base, builtin);
    match state(&dir) {
        State::Running(url) => return Ok((url, "already running".to_owned())),
        State::Damaged(why) => {
            return Err(Error::ServiceCommand {
                service: builtin.name.to_owned(),
                action: "up".to_owned(),
                message: format!(
                    "{} is damaged ({why}); run `stampede-services down` first: it stops \
                     what it can prove is its own and removes the directory",
                    dir.display()
                ),
            });
        }
        // What a killed keeper left.
        State::Stale => drop(keeper::sweep(base)),
        State::Absent => {}
    }
    let (running, url) = (builtin.start)()?;
    let path = running.dir().join("url");
    sys::open_no_follow(&path, Open::New(0o600))
        .and_then(|mut file| std::io::Write::write_all(&mut file, url.as_bytes()))
        .map_err(|source| Error::Path {
            context: "recording the server's URL",
            path,
            source,
        })?;
    let note = format!("started (keeper pid {})", running.keeper_pid());
    running.release();
    Ok((url, note))
}

/// Whether each service runs, and its URL.
pub fn status(entries: &[Entry]) -> Result<Said> {
    let (base, _lock) = locked()?;
    let mut said = Said::default();
    for builtin in entries {
        let dir = dir_of(&base, builtin);
        let name = &builtin.name;
        match state(&dir) {
            State::Running(url) => {
                said.shell.push_str(&format!("{name}: running\n"));
                said.shell.push_str(&export(builtin, &url));
            }
            State::Absent => said.shell.push_str(&format!("{name}: not running\n")),
            State::Stale => {
                said.shell.push_str(&format!("{name}: not running\n"));
                said.note.push_str(&format!(
                    "{name}: its keeper was killed; `stampede-services down` removes what is \
                     left in {}\n",
                    dir.display()
                ));
            }
            State::Damaged(why) => {
                said.note.push_str(&damaged(builtin, &dir, &why));
                said.code = 1;
            }
        }
    }
    if let Some(pid) = anchor_pid(&base) {
        said.note
            .push_str(&format!("`kill {pid}` stops every service `up` started\n"));
    }
    Ok(said)
}

/// Stops the services `names` asks for (all when empty) and removes their
/// files; an `unset` line each, so that `eval` clears the shell too.
pub fn down(entries: &[Entry], names: &[&str]) -> Result<Said> {
    let chosen = chosen(entries, names)?;
    let (base, _lock) = locked()?;
    let mut said = Said::default();
    for builtin in chosen {
        let dir = dir_of(&base, builtin);
        said.shell
            .push_str(&format!("unset {}\n", builtin.variable));
        if state(&dir) == State::Absent {
            said.note
                .push_str(&format!("{}: not running\n", builtin.name));
            continue;
        }
        stop(builtin, &dir, &mut said.note);
        let _ = std::fs::remove_dir_all(&dir);
        said.note.push_str(&format!("{}: stopped\n", builtin.name));
    }
    stop_idle_anchor(entries, &base, &mut said.note);
    Ok(said)
}

/// Stops the anchor of `base` when no service of `entries` may still run
/// there (each is absent, or its keeper is gone): it has nothing left to
/// stop.
fn stop_idle_anchor(entries: &[Entry], base: &Path, note: &mut String) {
    let none_left = entries
        .iter()
        .all(|e| matches!(state(&dir_of(base, e)), State::Absent | State::Stale));
    let anchor = anchor_entry();
    let anchor_dir = dir_of(base, &anchor);
    if none_left && state(&anchor_dir) != State::Absent {
        stop(&anchor, &anchor_dir, note);
        let _ = std::fs::remove_dir_all(&anchor_dir);
    }
}

/// Stops the instance in `dir`: through its keeper when its registry names
/// one, else every process provably its own.
fn stop(builtin: &Entry, dir: &Path, note: &mut String) {
    let record = Record::parse(&keeper::read_registry(dir).unwrap_or_default());
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
            note.push_str(&damaged(builtin, dir, &why));
            let users = [Some(sys::effective_uid()), (builtin.server_user)()];
            let stopped = keeper::stop_processes_in(dir, &users);
            note.push_str(&format!(
                "{}: stopped {} process(es) working in {}\n",
                builtin.name,
                stopped.len(),
                dir.display()
            ));
        }
    }
}
