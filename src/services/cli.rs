//! The `stampede-services` command's work. Used by that command, not
//! public API.

use std::fs;
use std::time::{Duration, Instant};

use super::keeper::{self, Record};
use super::reuse::URL_VAR;
use crate::error::{Error, Result};
use crate::sys;

/// The long-lived instance's directory.
fn up_dir() -> std::path::PathBuf {
    keeper::base_dir().join("postgres-up")
}

/// The running instance's URL, if its keeper is alive.
fn running_url() -> Option<String> {
    let dir = up_dir();
    let record = Record::parse(&fs::read_to_string(dir.join("registry")).ok()?);
    let (pid, start) = record.keeper?;
    sys::process_alive(pid, start).then_some(())?;
    fs::read_to_string(dir.join("url")).ok()
}

fn export(url: &str) -> String {
    format!("export {URL_VAR}='{url}'\n")
}

/// Starts a PostgreSQL server that outlives this process; the `export` line.
pub fn up() -> Result<String> {
    if let Some(url) = running_url() {
        return Ok(export(&url));
    }
    // A leftover of a keeper that was killed.
    keeper::sweep(&keeper::base_dir());
    let (running, url) = super::postgres::start_detached()?;
    fs::write(running.dir().join("url"), &url).map_err(|source| Error::Io {
        context: "recording the server's URL",
        source,
    })?;
    running.release();
    Ok(export(&url))
}

/// Whether it runs, and its URL.
pub fn status() -> Result<String> {
    Ok(match running_url() {
        Some(url) => format!("postgres: running\n{}", export(&url)),
        None => "postgres: not running\n".to_owned(),
    })
}

/// Stops it and removes its files.
pub fn down() -> Result<String> {
    let dir = up_dir();
    let Ok(text) = fs::read_to_string(dir.join("registry")) else {
        return Ok("postgres: not running\n".to_owned());
    };
    let record = Record::parse(&text);
    if let Some((pid, start)) = record.keeper {
        sys::signal_if_alive(pid, start, sys::SIGTERM);
        let until = Instant::now() + Duration::from_secs(20);
        while sys::process_alive(pid, start) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
        sys::signal_if_alive(pid, start, sys::SIGKILL);
    }
    record.kill_servers();
    let _ = fs::remove_dir_all(&dir);
    Ok("postgres: stopped\n".to_owned())
}
