//! Redis: a database per fixture ([`Redis`], its builder), on a server of
//! stampede's own or one reused by URL.
//!
//! - `server`: the program, its configuration file, the server as a
//!   [`Service`](super::Service) under a keeper;
//! - `reuse`: a server named by `STAMPEDE_REDIS_URL`, shared by claims;
//! - `resp`: the few commands stampede sends itself;
//! - `url`: reading and writing Redis URLs.

mod resp;
mod reuse;
mod server;
mod url;

pub(crate) use reuse::URL_VAR;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::private_dir::Place;
use super::{Running, free_port};
use crate::error::{Error, Result};
use resp::Connection;
use server::{DATABASES, RedisService, socket_path};
use url::{Address, Target};

/// A Redis database of this fixture's own.
///
/// A private server per test process is started on first use and shared
/// by the process's fixtures; each fixture gets a database of its own (a
/// number, as in `SELECT`), emptied when it is dropped. The server keeps
/// nothing on disk and stops when the test process exits, even after
/// `kill -9` (see the [module docs](crate::services)). With
/// `STAMPEDE_REDIS_URL` set, nothing is started: each fixture claims a
/// free database on that server.
///
/// Keys are the fixture's own; what is server-wide is shared by every
/// fixture on the server: pub/sub channels, `FLUSHALL`, `CONFIG SET`.
/// A test that publishes, or changes the server, takes a server of its
/// own with [`private_instance`](RedisBuilder::private_instance).
///
/// ```no_run
/// stampede::entry!();
///
/// #[test]
/// fn sessions_are_stored() {
///     let redis = stampede::services::Redis::start().unwrap();
///     // connect with any client to `redis.url()`: a database of this test alone
///     # let _ = redis.url();
/// }
/// # fn main() {}
/// ```
pub struct Redis {
    url: String,
    db: u32,
    host: Arc<Host>,
}

/// Options for [`Redis`]: TCP, a server of its own, settings, the program.
///
/// ```no_run
/// use std::time::Duration;
/// let redis = stampede::services::Redis::builder()
///     .private_instance(true) // even when STAMPEDE_REDIS_URL is set
///     .program("/usr/local/bin/redis-server")
///     .setting("maxclients", "2000")
///     .ready_timeout(Duration::from_secs(10))
///     .start()?;
/// # Ok::<(), stampede::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct RedisBuilder {
    tcp: bool,
    private_instance: bool,
    program: Option<PathBuf>,
    settings: Vec<(String, String)>,
    ready_timeout: Option<Duration>,
    reuse_url: Option<String>,
}

/// A server and how stampede reaches it.
struct Host {
    /// For stampede's own commands, on database 0.
    admin: Target,
    /// What fixtures' URLs are made from: over TCP, with the password, for
    /// a TCP server; else the same as `admin`.
    client: Target,
    /// The URL that named a reused server, for messages; `None` for one of
    /// stampede's own.
    reused: Option<String>,
    /// `None` when reused.
    running: Option<Running>,
    /// The databases no live fixture holds (a server of stampede's own).
    free: Mutex<Vec<u32>>,
    /// How many databases a reused server has.
    databases: u32,
}

impl Host {
    fn check(&self) -> Result<()> {
        self.running.as_ref().map_or(Ok(()), Running::check)
    }

    fn connect(&self, db: u32, action: &str) -> Result<Connection> {
        Connection::open(&self.admin.with_db(db)).map_err(|e| self.failed(action, e))
    }

    /// The error of a command that failed with `e`: the server's death
    /// when that is why (its keeper looks every 50 ms; up to 1 s for its word, on a loaded machine).
    fn failed(&self, action: &str, e: std::io::Error) -> Error {
        if let Some(running) = &self.running {
            if let Err(died) = running.check_within(Duration::from_secs(1)) {
                return died;
            }
        }
        Error::ServiceCommand {
            service: "redis".to_owned(),
            action: action.to_owned(),
            message: e.to_string(),
        }
    }

    /// A database for a new fixture, emptied.
    fn take(&self) -> Result<u32> {
        let db = match &self.reused {
            Some(url) => {
                let mut connection = reuse::connect(&self.admin, url)?;
                reuse::claim(&mut connection, self.databases, url)?
            }
            None => {
                let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
                free.pop().ok_or_else(|| Error::ServiceCommand {
                    service: "redis".to_owned(),
                    action: "choosing a database for a fixture".to_owned(),
                    message: format!(
                        "all {DATABASES} databases of this process's Redis server are held by \
                         live fixtures; drop some, or start the next ones with \
                         `Redis::builder().private_instance(true)`"
                    ),
                })?
            }
        };
        // A reused server's database was empty, or emptied of a gone
        // fixture's keys, when claimed; never flush one that may hold
        // someone's data.
        if self.reused.is_none() {
            if let Err(e) = self.flush(db, "emptying a fixture's database") {
                self.give_back(db);
                return Err(e);
            }
        }
        Ok(db)
    }

    fn flush(&self, db: u32, action: &str) -> Result<()> {
        self.connect(db, action)?
            .ok(&["FLUSHDB"])
            .map(drop)
            .map_err(|e| self.failed(action, e))
    }

    fn give_back(&self, db: u32) {
        match &self.reused {
            Some(_) => {
                if let Ok(mut connection) = Connection::open(&self.admin) {
                    reuse::release(&mut connection, db);
                }
            }
            None => {
                let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
                free.push(db);
                // Lowest first: the first fixtures get 0, 1, 2…
                free.sort_unstable_by(|a, b| b.cmp(a));
            }
        }
    }
}

impl Redis {
    /// A fresh database of its own, on this process's server (started on
    /// first use) or on the server `STAMPEDE_REDIS_URL` names.
    ///
    /// ```no_run
    /// let redis = stampede::services::Redis::start()?;
    /// println!("{}", redis.url()); // redis+unix:///dev/shm/…/redis.sock?db=0
    /// # Ok::<(), stampede::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::ServiceNotFound`](crate::Error::ServiceNotFound) when `redis-server` is missing;
    /// [`Error::ServiceStart`](crate::Error::ServiceStart) when the server exits during start or is
    /// not ready in time (with the end of its log); [`Error::ServiceDied`](crate::Error::ServiceDied)
    /// when the server died since the last fixture;
    /// [`Error::ServiceUrl`](crate::Error::ServiceUrl) when `STAMPEDE_REDIS_URL` is not a Redis URL
    /// and [`Error::ServiceUnreachable`](crate::Error::ServiceUnreachable) when nothing answers
    /// there; [`Error::ServiceCommand`](crate::Error::ServiceCommand) when every database is held;
    /// [`Error::MissingEntry`](crate::Error::MissingEntry) without `stampede::entry!()` or
    /// `stampede::init()` (the keeper needs it).
    pub fn start() -> Result<Redis> {
        RedisBuilder::default().start()
    }

    /// Options: TCP, a server of its own, settings.
    ///
    /// ```no_run
    /// let redis = stampede::services::Redis::builder().tcp(true).start()?;
    /// assert!(redis.url().starts_with("redis://:")); // a password, then 127.0.0.1
    /// # Ok::<(), stampede::Error>(())
    /// ```
    pub fn builder() -> RedisBuilder {
        RedisBuilder::default()
    }

    /// The URL of this fixture's database, as Redis clients take it:
    /// `redis+unix:///…/redis.sock?db=<n>` on a server of stampede's own,
    /// `redis://:<password>@127.0.0.1:<port>/<n>` over TCP.
    ///
    /// ```no_run
    /// let redis = stampede::services::Redis::start()?;
    /// let client = redis::Client::open(redis.url()).unwrap();
    /// let mut connection = client.get_connection().unwrap();
    /// redis::cmd("SET").arg("k").arg(1).exec(&mut connection).unwrap();
    /// # Ok::<(), stampede::Error>(())
    /// ```
    pub fn url(&self) -> &str {
        &self.url
    }

    /// This fixture's database number (`SELECT <n>`).
    pub fn db(&self) -> u32 {
        self.db
    }

    /// Empties the database (`FLUSHDB`); connections stay open.
    ///
    /// # Errors
    ///
    /// [`Error::ServiceDied`](crate::Error::ServiceDied) when the server is gone;
    /// [`Error::ServiceCommand`](crate::Error::ServiceCommand) when it refuses.
    pub fn reset(&self) -> Result<()> {
        self.host.check()?;
        self.host.flush(self.db, "resetting a test database")
    }

    /// The server's private directory (its socket, its log); `None` when
    /// the server is reused through `STAMPEDE_REDIS_URL`.
    pub fn directory(&self) -> Option<&Path> {
        self.host.running.as_ref().map(Running::dir)
    }

    /// The server's process id; `None` when it is reused.
    pub fn server_pid(&self) -> Option<u32> {
        self.host.running.as_ref().map(Running::server_pid)
    }

    /// The keeper's process id; `None` when the server is reused.
    pub fn keeper_pid(&self) -> Option<u32> {
        self.host.running.as_ref().map(Running::keeper_pid)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if self.host.check().is_ok() {
            let _ = self.host.flush(self.db, "emptying a test database");
            self.host.give_back(self.db);
        }
    }
}

impl RedisBuilder {
    /// Listens on `127.0.0.1` on a free port too (the URL then uses TCP);
    /// by default only on a Unix socket in the server's private directory.
    ///
    /// With `STAMPEDE_REDIS_URL` set, the fixture is on that server, as its
    /// URL says (a socket or TCP); take [`private_instance`](RedisBuilder::private_instance)
    /// too for a TCP server of the fixture's own whatever the environment.
    ///
    /// Any local user can reach a TCP port, so the server gets a random
    /// password (`requirepass`), which [`url`](Redis::url) carries. It is
    /// written in the server's configuration file (readable by this user
    /// alone), never on a command line, where any local user could read it.
    pub fn tcp(mut self, on: bool) -> Self {
        self.tcp = on;
        self
    }

    /// A server of this fixture's own, stopped when it is dropped, instead
    /// of the process's shared one: nothing server-wide (pub/sub, `CONFIG
    /// SET`, `FLUSHALL`) is shared with other fixtures.
    pub fn private_instance(mut self, on: bool) -> Self {
        self.private_instance = on;
        self
    }

    /// The `redis-server` program, or the directory that holds it (default:
    /// `STAMPEDE_REDIS_BIN`, then `PATH`, `/usr/bin`, `/usr/local/bin`).
    /// Implies a private instance.
    pub fn program(mut self, program: impl Into<PathBuf>) -> Self {
        self.program = Some(program.into());
        self.private_instance = true;
        self
    }

    /// A line of the server's configuration (`maxclients 2000`); implies a
    /// private instance. A name of letters, digits, `-` and `_`, a value on
    /// one line: anything else fails the start with
    /// [`Error::InvalidOptions`](crate::Error::InvalidOptions).
    pub fn setting(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.settings.push((name.into(), value.into()));
        self.private_instance = true;
        self
    }

    /// How long the server has to get ready (default 30 s); implies a
    /// private instance.
    pub fn ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = Some(timeout);
        self.private_instance = true;
        self
    }

    /// Reuses this server instead of `STAMPEDE_REDIS_URL`'s.
    ///
    /// ```no_run
    /// let redis = stampede::services::Redis::builder()
    ///     .reuse_url("redis://127.0.0.1:6379")
    ///     .start()?; // a free database on that server, emptied
    /// assert_eq!(redis.directory(), None);
    /// # Ok::<(), stampede::Error>(())
    /// ```
    pub fn reuse_url(mut self, url: impl Into<String>) -> Self {
        self.reuse_url = Some(url.into());
        self
    }

    /// Starts the fixture; see [`Redis::start`].
    ///
    /// # Errors
    ///
    /// As [`Redis::start`].
    pub fn start(self) -> Result<Redis> {
        for (name, value) in &self.settings {
            server::check_setting(name, value)?;
        }
        let host = self.host()?;
        host.check()?;
        let db = host.take()?;
        Ok(Redis {
            url: host.client.with_db(db).to_string(),
            db,
            host,
        })
    }

    fn host(&self) -> Result<Arc<Host>> {
        let reuse = self
            .reuse_url
            .clone()
            .or_else(|| std::env::var(URL_VAR).ok().filter(|u| !u.is_empty()));
        if let Some(url) = reuse.filter(|_| !self.private_instance) {
            return reused(&url).map(Arc::new);
        }
        if self.private_instance {
            return self.new_host(Place::Memory).map(Arc::new);
        }
        static SHARED: Mutex<[Option<Arc<Host>>; 2]> = Mutex::new([None, None]);
        let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
        let slot = &mut shared[usize::from(self.tcp)];
        if let Some(host) = slot {
            if host.check().is_ok() {
                return Ok(host.clone());
            }
        }
        let host = Arc::new(self.new_host(Place::Memory)?);
        *slot = Some(host.clone());
        Ok(host)
    }

    fn new_host(&self, place: Place) -> Result<Host> {
        let mut service = RedisService {
            program: server::find_program(self.program.as_deref())?,
            tcp: None,
            settings: self.settings.clone(),
            ready_timeout: self.ready_timeout.unwrap_or(Duration::from_secs(30)),
        };
        // A free port can be taken between the look and the server's bind:
        // another port, a few times.
        let mut tries = 0;
        let running = loop {
            service.tcp = match self.tcp {
                true => Some((free_port()?, super::random_password()?)),
                false => None,
            };
            match super::start_in(&service, place) {
                Err(Error::ServiceStart { log_tail, .. })
                    if self.tcp && tries < 3 && log_tail.contains("Address already in use") =>
                {
                    tries += 1;
                }
                Err(e) => return Err(e),
                Ok(running) => break running,
            }
        };
        if let Some((port, _)) = &service.tcp {
            crate::addresses::remember(&format!("127.0.0.1:{port}"), "Redis, services::Redis");
        }
        Ok(own_host(running, service.tcp))
    }
}

/// A host for a server of stampede's own.
fn own_host(running: Running, tcp: Option<(u16, String)>) -> Host {
    let password = tcp.as_ref().map(|(_, password)| password.clone());
    let admin = Target {
        address: Address::Unix(socket_path(running.dir())),
        user: None,
        password: password.clone(),
        db: 0,
    };
    let client = match &tcp {
        Some((port, _)) => Target {
            address: Address::Tcp {
                host: "127.0.0.1".to_owned(),
                port: *port,
            },
            ..admin.clone()
        },
        None => admin.clone(),
    };
    Host {
        admin,
        client,
        reused: None,
        running: Some(running),
        free: Mutex::new((0..DATABASES).rev().collect()),
        databases: DATABASES,
    }
}

/// A host for the server `url` names, checked.
fn reused(url: &str) -> Result<Host> {
    let target = reuse::parse(url)?;
    let mut connection = reuse::connect(&target, url)?;
    let databases = reuse::databases(&mut connection);
    Ok(Host {
        admin: target.clone(),
        client: target,
        reused: Some(url.to_owned()),
        running: None,
        free: Mutex::new(Vec::new()),
        databases,
    })
}

/// Starts a server that outlives this process (`stampede-services up`):
/// its handle and the URL of its database 0.
pub(super) fn start_detached() -> Result<(Running, String)> {
    let service = RedisService {
        program: server::find_program(None)?,
        tcp: None,
        settings: Vec::new(),
        ready_timeout: Duration::from_secs(30),
    };
    let running = super::start_in(&service, Place::Detached)?;
    let url = own_host_url(&running);
    Ok((running, url))
}

fn own_host_url(running: &Running) -> String {
    Target {
        address: Address::Unix(socket_path(running.dir())),
        user: None,
        password: None,
        db: 0,
    }
    .to_string()
}
