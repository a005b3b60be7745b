//! A Redis server of stampede's own as a [`Service`]: its program, its
//! configuration file, and how it listens.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::services::instance;
use crate::services::{Launch, Ready, Service};
use crate::sys::{self, Open};

/// The variable naming `redis-server` (the program, or its directory).
pub(super) const BIN_VAR: &str = "STAMPEDE_REDIS_BIN";

/// The databases a server of stampede's own has: one per live fixture.
pub(super) const DATABASES: u32 = 1024;

/// What Redis logs once it listens: "Ready to accept connections" (TCP,
/// and every socket from 7.2 on) or "The server is now ready to accept
/// connections at <socket>" (a socket alone, up to 7.0). Listeners are
/// opened together, before either line.
const READY_TEXT: &str = "eady to accept connections";

/// A Redis server in an instance's directory.
pub(super) struct RedisService {
    pub(super) program: PathBuf,
    /// Listens on `127.0.0.1:<port>` too, with this password; else on its
    /// socket alone, with none (only this user reaches the socket).
    pub(super) tcp: Option<(u16, String)>,
    pub(super) settings: Vec<(String, String)>,
    pub(super) ready_timeout: Duration,
}

/// The socket of a server whose instance directory is `dir`.
pub(super) fn socket_path(dir: &Path) -> PathBuf {
    dir.join(instance::SERVER_DIR).join("redis.sock")
}

impl Service for RedisService {
    fn name(&self) -> &str {
        "redis"
    }

    fn launch(&self, dir: &Path) -> Result<Launch> {
        // Its own directory (data, socket) is closed to every other user.
        let server_dir = instance::server_dir(dir)?;
        let socket = socket_path(dir);
        instance::check_socket_path("redis", &socket)?;
        let config = dir.join("redis.conf");
        let text = config_text(&server_dir, &socket, self.tcp.as_ref(), &self.settings);
        // The password is in this file (this user's alone), never on the
        // command line, which any local user can read.
        sys::open_no_follow(&config, Open::New(0o600))
            .and_then(|mut file| file.write_all(text.as_bytes()))
            .map_err(|source| Error::Path {
                context: "writing the Redis server's configuration",
                path: config.clone(),
                source,
            })?;
        let mut launch = Launch::new(&self.program, Ready::LogLine(READY_TEXT.into()))
            .args([config.to_string_lossy().into_owned()])
            .ready_timeout(self.ready_timeout)
            .stop_with(sys::SIGTERM, Duration::from_secs(5))
            .address(socket.to_string_lossy().into_owned());
        if let Some((port, _)) = &self.tcp {
            launch = launch.address(format!("127.0.0.1:{port}"));
        }
        Ok(launch)
    }
}

/// The configuration file: no persistence, [`DATABASES`] databases, the
/// socket open to this user alone, TCP on loopback with a password or not
/// at all; then the user's settings, which come last and so win.
fn config_text(
    server_dir: &Path,
    socket: &Path,
    tcp: Option<&(u16, String)>,
    settings: &[(String, String)],
) -> String {
    let mut text = format!(
        "# Written by stampede for this instance.\n\
         daemonize no\n\
         logfile \"\"\n\
         dir {}\n\
         unixsocket {}\n\
         unixsocketperm 700\n\
         save \"\"\n\
         appendonly no\n\
         databases {DATABASES}\n",
        quoted(&server_dir.to_string_lossy()),
        quoted(&socket.to_string_lossy()),
    );
    match tcp {
        Some((port, password)) => text.push_str(&format!(
            "bind 127.0.0.1\nport {port}\nprotected-mode yes\nrequirepass {password}\n"
        )),
        None => text.push_str("port 0\n"),
    }
    for (name, value) in settings {
        text.push_str(&format!("{name} {}\n", quoted(value)));
    }
    text
}

/// `text` as one argument of a configuration line.
fn quoted(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The settings stampede writes itself, which keep the server in its
/// directory, in the keeper's hands (not daemonized, where stopping its
/// group misses it) and behind its password: refused from users.
const RESERVED: [&str; 14] = [
    "daemonize",
    "pidfile",
    "logfile",
    "dir",
    "unixsocket",
    "unixsocketperm",
    "port",
    "bind",
    "requirepass",
    "protected-mode",
    "include",
    "user",
    "aclfile",
    "supervised",
];

/// Checks a setting before it reaches the file: a name of letters, digits
/// and `-`, not one of stampede's own, a value on one line.
pub(super) fn check_setting(name: &str, value: &str) -> Result<()> {
    if RESERVED.contains(&name.to_ascii_lowercase().as_str()) {
        return Err(Error::InvalidOptions(format!(
            "Redis setting `{name}` is stampede's own: it keeps the server in its private \
             directory, under its keeper and behind its password (use `tcp(true)` for a port)"
        )));
    }
    let name_ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !name_ok {
        return Err(Error::InvalidOptions(format!(
            "Redis setting `{name}`: a setting's name is letters, digits, `-` and `_` \
             (`maxmemory`, `maxclients`)"
        )));
    }
    if value.contains(['\n', '\r', '\0']) {
        return Err(Error::InvalidOptions(format!(
            "Redis setting `{name}`: its value spans lines; give it on one line"
        )));
    }
    Ok(())
}

/// The `redis-server` program: `STAMPEDE_REDIS_BIN` (the program or its
/// directory), else `PATH`, else `/usr/bin` and `/usr/local/bin`.
pub(super) fn find_program(explicit: Option<&Path>) -> Result<PathBuf> {
    let from_var = std::env::var_os(BIN_VAR)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    if let Some(given) = explicit.map(Path::to_path_buf).or(from_var) {
        let program = if given.is_dir() {
            given.join("redis-server")
        } else {
            given.clone()
        };
        return if program.is_file() {
            Ok(program)
        } else {
            Err(not_found(&format!(
                "redis-server is not at {} (given by {BIN_VAR} or the builder)",
                given.display()
            )))
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/local/bin")])
        .map(|dir| dir.join("redis-server"))
        .find(|program| program.is_file())
        .ok_or_else(|| {
            not_found("redis-server was not found (looked in PATH, /usr/bin and /usr/local/bin)")
        })
}

fn not_found(what: &str) -> Error {
    Error::ServiceNotFound {
        service: "redis".to_owned(),
        message: format!(
            "{what}; install it (Debian and Ubuntu: `apt-get install redis-server`) or set \
             {BIN_VAR} to the program or the directory that holds it"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socket_server_has_no_tcp_and_a_tcp_one_a_password() {
        let dir = Path::new("/i/server");
        let socket = Path::new("/i/server/redis.sock");
        let text = config_text(dir, socket, None, &[]);
        assert!(text.contains("\nport 0\n"), "{text}");
        assert!(text.contains("unixsocket \"/i/server/redis.sock\"\nunixsocketperm 700\n"));
        assert!(text.contains("databases 1024\n"));
        assert!(!text.contains("requirepass"));
        let text = config_text(dir, socket, Some(&(6390, "abc".into())), &[]);
        assert!(
            text.contains("bind 127.0.0.1\nport 6390\nprotected-mode yes\nrequirepass abc\n"),
            "{text}"
        );
    }

    #[test]
    fn settings_come_last_quoted_and_bad_ones_are_refused() {
        let settings = [("maxclients".to_owned(), "2000".to_owned())];
        let text = config_text(Path::new("/d"), Path::new("/d/s"), None, &settings);
        assert!(text.ends_with("maxclients \"2000\"\n"), "{text}");
        assert_eq!(quoted(r#"a"b\c"#), r#""a\"b\\c""#);
        assert!(check_setting("maxmemory", "64mb").is_ok());
        assert!(check_setting("client-output-buffer-limit", "pubsub 0 0 0").is_ok());
        let e = check_setting("port 1\nrequirepass", "x").unwrap_err();
        assert!(e.to_string().contains("letters, digits"), "{e}");
        let e = check_setting("maxmemory", "1\nrequirepass x").unwrap_err();
        assert!(e.to_string().contains("spans lines"), "{e}");
        for reserved in RESERVED {
            let e = check_setting(reserved, "x").unwrap_err();
            assert!(e.to_string().contains("is stampede's own"), "{e}");
        }
        assert!(
            check_setting("Daemonize", "yes").is_err(),
            "names are not case-sensitive"
        );
    }
}
