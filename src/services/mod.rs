//! Real servers for tests, owned by a keeper process so that nothing
//! outlives the test process — not even after `kill -9`.
//!
//! [`Postgres`] is a PostgreSQL database of the test's own: a private
//! cluster per test process (started once, shared by its tests), a private
//! database per fixture cloned from a template, dropped with the fixture.
//! With `STAMPEDE_POSTGRES_URL` set, nothing is started: each fixture is a
//! fresh database on that server (see the `stampede-services` command).
//!
//! ```no_run
//! stampede::entry!(); // the keeper enters through it, as children do
//!
//! #[test]
//! fn orders_are_stored() {
//!     let pg = stampede::services::Postgres::start().unwrap();
//!     // connect with any client to `pg.url()`: a database of this test alone
//!     # let _ = pg.url();
//! }
//! # fn main() {}
//! ```
//!
//! # Keepers
//!
//! Each server is started, watched and stopped by a *keeper*: a child of
//! the test process (the same executable, entered like a call's child) in
//! a session of its own. Its channel to the test process is its lifeline:
//! when the channel ends — the last fixture dropped, the process exited, or
//! was killed with SIGKILL — the keeper stops the server and removes every
//! file. A keeper that was itself killed is swept by the next start on the
//! machine: its directory records its pid and start time and the server's.
//!
//! # Other servers
//!
//! [`Service`] describes any server: how to prepare its directory, how to
//! run it, when it is ready, how to reset it. [`Server`] is one for any
//! command, ready when a TCP port answers or a line shows up in its log;
//! [`start`] runs a service under a keeper and returns a [`Running`] handle.

#[doc(hidden)]
pub mod cli;
mod command;
mod instance;
mod keeper;
mod limited;
mod postgres;
pub(crate) mod private_dir;
mod redis;
mod trust;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use command::Services;

pub use postgres::{Postgres, PostgresBuilder};
pub use redis::{Redis, RedisBuilder};

use crate::error::{Error, Result};
use crate::protocol::{KeeperSpec, Readiness};
use keeper::Keeper;
use private_dir::Place;

/// When a server is ready to be used.
///
/// ```
/// use stampede::services::{Ready, Server};
///
/// // Ready once 127.0.0.1:6390 accepts a connection (also its address).
/// let by_port = Server::new("redis-server")
///     .args(["--port", "6390"])
///     .ready(Ready::Port(6390));
/// // Ready once a line of its output contains this text.
/// let by_log = Server::new("redis-server")
///     .args(["--port", "6391"])
///     .ready(Ready::LogLine("Ready to accept connections".into()));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Ready {
    /// A TCP connection to `127.0.0.1:<port>` succeeds.
    Port(u16),
    /// This text appears in a line of the server's output.
    LogLine(String),
}

/// How to run a service's server, as [`Service::launch`] describes it.
///
/// ```
/// use std::time::Duration;
/// use stampede::services::{Launch, Ready};
///
/// let port = 6390;
/// let launch = Launch::new("/usr/bin/redis-server", Ready::Port(port))
///     .args(["--save", "", "--appendonly", "no"])
///     .args(["--port".to_string(), port.to_string()])
///     .env("LANG", "C")
///     .ready_timeout(Duration::from_secs(10))
///     .stop_with(2, Duration::from_secs(3)) // SIGINT, then 3 s before SIGKILL
///     .address(format!("127.0.0.1:{port}"));
/// // A server that refuses to run as root, when the tests do:
/// let launch = launch.user(999, 999);
/// ```
///
/// A [`Service`] returns one from [`launch`](Service::launch); its example
/// puts it to use.
#[derive(Debug, Clone)]
pub struct Launch {
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    ready: Ready,
    ready_timeout: Duration,
    stop_signal: i32,
    stop_grace: Duration,
    addresses: Vec<String>,
    user: Option<(u32, u32)>,
}

impl Launch {
    /// Runs `program`, ready as `ready` says; 30 s to get ready, SIGTERM
    /// and 5 s of grace to stop.
    pub fn new(program: impl Into<PathBuf>, ready: Ready) -> Launch {
        Launch {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            ready,
            ready_timeout: Duration::from_secs(30),
            stop_signal: libc_signal::TERM,
            stop_grace: Duration::from_secs(5),
            addresses: Vec::new(),
            user: None,
        }
    }

    /// Adds arguments.
    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> Launch {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Adds a variable to the server's environment.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Launch {
        self.env.push((key.into(), value.into()));
        self
    }

    /// How long the server has to get ready.
    pub fn ready_timeout(mut self, timeout: Duration) -> Launch {
        self.ready_timeout = timeout;
        self
    }

    /// The signal that stops the server cleanly (default SIGTERM), and how
    /// long it has before SIGKILL.
    pub fn stop_with(mut self, signal: i32, grace: Duration) -> Launch {
        self.stop_signal = signal;
        self.stop_grace = grace;
        self
    }

    /// The addresses the server answers on, for [`Running::addresses`].
    pub fn address(mut self, address: impl Into<String>) -> Launch {
        self.addresses.push(address.into());
        self
    }

    /// Runs the server as this user and group (ids). It starts in the
    /// instance's directory, which lets it through and no more; files of
    /// its own go in a directory inside, `server/`, which is handed to it
    /// if [`Service::launch`] made one.
    pub fn user(mut self, uid: u32, gid: u32) -> Launch {
        self.user = Some((uid, gid));
        self
    }
}

/// Signal numbers without a `libc` dependency in users' crates.
mod libc_signal {
    pub(super) const TERM: i32 = 15;
}

/// A server a test needs: how to prepare its private directory and run it,
/// and how to put it back to its first state.
///
/// The keeper does the rest: it starts the server in that directory, waits
/// for [`Launch`]'s readiness, stops it with its stop signal when the test
/// process lets go of it (or dies), and removes the directory.
///
/// ```no_run
/// use std::path::Path;
/// use std::time::Duration;
/// use stampede::services::{self, Launch, Ready, Running, Service};
///
/// /// A Redis server keeping its files in the instance's directory.
/// struct Redis {
///     port: u16,
/// }
///
/// impl Service for Redis {
///     fn name(&self) -> &str {
///         "redis"
///     }
///
///     fn launch(&self, dir: &Path) -> stampede::Result<Launch> {
///         Ok(Launch::new("redis-server", Ready::Port(self.port))
///             .args(["--port".to_string(), self.port.to_string()])
///             .args(["--dir".to_string(), dir.display().to_string()])
///             .ready_timeout(Duration::from_secs(10))
///             .address(format!("127.0.0.1:{}", self.port)))
///     }
///
///     fn reset(&self, running: &Running) -> stampede::Result<()> {
///         // send FLUSHALL to `running.addresses()[0]` with a Redis client
///         running.check()
///     }
/// }
///
/// let redis = services::start(&Redis { port: 6390 })?;
/// assert_eq!(redis.addresses(), ["127.0.0.1:6390"]);
/// # Ok::<(), stampede::Error>(())
/// ```
pub trait Service {
    /// A short name, for directories and messages (`[a-z0-9-]`).
    fn name(&self) -> &str;

    /// Prepares `dir` (new, empty, private to this instance, and removed
    /// with it) and says how to run the server there.
    ///
    /// # Errors
    ///
    /// Whatever prevents the server from starting (a missing program).
    fn launch(&self, dir: &Path) -> Result<Launch>;

    /// Puts a running instance back to its first state. The default does
    /// nothing.
    ///
    /// # Errors
    ///
    /// When the server refuses.
    fn reset(&self, running: &Running) -> Result<()> {
        let _ = running;
        Ok(())
    }
}

/// A server started under a keeper. Dropping it stops the server and
/// removes its directory.
///
/// ```no_run
/// use stampede::services::{Ready, Server};
///
/// let http = Server::new("python3")
///     .args(["-m", "http.server", "8765", "--bind", "127.0.0.1"])
///     .ready(Ready::Port(8765))
///     .start()?;
/// println!(
///     "{:?}: pid {}, kept by pid {}, log in {}",
///     http.addresses(),
///     http.server_pid(),
///     http.keeper_pid(),
///     http.dir().join("server.log").display(),
/// );
/// http.check()?; // an error with the end of its log if it died
/// http.stop(); // returns once it is stopped and its directory is gone
/// # Ok::<(), stampede::Error>(())
/// ```
pub struct Running {
    keeper: Keeper,
    addresses: Vec<String>,
}

impl Running {
    /// The addresses the server answers on (from [`Launch::address`]).
    pub fn addresses(&self) -> &[String] {
        &self.addresses
    }

    /// The port of its first address (`127.0.0.1:<port>`), if it has one:
    /// the one [`Server::free_port`] chose.
    pub fn port(&self) -> Option<u16> {
        self.addresses
            .first()?
            .parse::<std::net::SocketAddr>()
            .ok()
            .map(|a| a.port())
    }

    /// The instance's private directory (the server's files and its log).
    pub fn dir(&self) -> &Path {
        self.keeper.dir()
    }

    /// The server's process id.
    pub fn server_pid(&self) -> u32 {
        self.keeper.server_pid()
    }

    /// The keeper's process id.
    pub fn keeper_pid(&self) -> u32 {
        self.keeper.pid()
    }

    /// Checks that the server is still running.
    ///
    /// # Errors
    ///
    /// [`Error::ServiceDied`], with the end of the server's log, when it is
    /// not.
    pub fn check(&self) -> Result<()> {
        self.keeper.check()
    }

    /// [`check`](Running::check), giving the keeper up to `wait` to say
    /// that the server died: for a command the server just refused.
    pub(crate) fn check_within(&self, wait: Duration) -> Result<()> {
        self.keeper.check_within(wait)
    }

    /// Lets the server run on after this process exits, until its keeper
    /// gets SIGTERM (`stampede-services down`).
    pub(crate) fn release(self) {
        self.keeper.release();
    }

    /// Stops the server and removes its directory (what dropping does),
    /// waiting until that is done.
    pub fn stop(self) {
        drop(self);
    }
}

/// Starts `service` under a keeper and waits until it is ready.
///
/// ```no_run
/// use stampede::services::{self, Ready, Server};
///
/// let server = Server::new("python3")
///     .args(["-m", "http.server", "8765", "--bind", "127.0.0.1"])
///     .ready(Ready::Port(8765));
/// let running = services::start(&server)?; // what `server.start()` does
/// # Ok::<(), stampede::Error>(())
/// ```
///
/// # Errors
///
/// [`Error::MissingEntry`] when this binary has no `stampede::entry!()` or
/// `stampede::init()` (the keeper enters through it);
/// [`Error::ServiceStart`] when the server exits during start or is not
/// ready in time, with the end of its log; the errors of
/// [`Service::launch`]. Nothing is left running or on disk after an error.
pub fn start<S: Service + ?Sized>(service: &S) -> Result<Running> {
    start_in(service, Place::Disk)
}

/// [`start`], with the instance's directory in `place`.
pub(crate) fn start_in<S: Service + ?Sized>(service: &S, place: Place) -> Result<Running> {
    let detached = place == Place::Detached;
    let dir = instance::Instance::create(service.name(), place)?;
    let launch = match service
        .launch(dir.path())
        .and_then(|launch| instance::hand_over(dir.path(), launch.user).map(|()| launch))
    {
        Ok(launch) => launch,
        Err(e) => {
            dir.remove();
            return Err(e);
        }
    };
    // The keeper starts the server in the instance's directory: a relative
    // path (`target/debug/api`) is the caller's, resolved here; a bare name
    // (`redis-server`) is looked up in PATH as always.
    let program = if launch.program.is_relative() && launch.program.components().count() > 1 {
        match std::env::current_dir() {
            Ok(here) => here.join(&launch.program),
            Err(_) => launch.program.clone(),
        }
    } else {
        launch.program.clone()
    };
    let spec = KeeperSpec {
        service: service.name().to_owned(),
        program: program.to_string_lossy().into_owned(),
        args: launch.args,
        env: launch.env,
        user: launch.user,
        dir: dir.path().to_string_lossy().into_owned(),
        log: dir.path().join("server.log").to_string_lossy().into_owned(),
        registry: dir.registry().to_string_lossy().into_owned(),
        ready: match launch.ready {
            Ready::Port(port) => Readiness::Tcp(format!("127.0.0.1:{port}")),
            Ready::LogLine(line) => Readiness::LogLine(line),
        },
        ready_timeout_ms: launch.ready_timeout.as_millis() as u64,
        stop_signal: launch.stop_signal,
        stop_grace_ms: launch.stop_grace.as_millis() as u64,
        addresses: launch.addresses.clone(),
        detached,
        anchor: if detached { cli::anchor() } else { None },
    };
    let keeper = Keeper::start(dir, spec)?;
    for address in &launch.addresses {
        if address.parse::<std::net::SocketAddr>().is_ok() {
            crate::addresses::remember(
                address,
                &format!("{}, started by stampede", service.name()),
            );
        }
    }
    Ok(Running {
        keeper,
        addresses: launch.addresses,
    })
}

/// Any server command as a [`Service`]: ready when a TCP port answers or a
/// line shows up in its output.
///
/// ```no_run
/// use stampede::services::{Ready, Server};
///
/// let http = Server::new("python3")
///     .args(["-m", "http.server", "8765", "--bind", "127.0.0.1"])
///     .ready(Ready::Port(8765))
///     .start()?;
/// assert_eq!(http.addresses(), ["127.0.0.1:8765"]);
/// # Ok::<(), stampede::Error>(())
/// ```
///
/// Ready on a line of its output instead, with its own environment and more
/// time to get there:
///
/// ```no_run
/// use std::time::Duration;
/// use stampede::services::{Ready, Server};
///
/// let redis = Server::new("/usr/bin/redis-server")
///     .args(["--port", "6390", "--save", ""])
///     .env("LANG", "C")
///     .ready(Ready::LogLine("Ready to accept connections".into()))
///     .ready_timeout(Duration::from_secs(60))
///     .start()?;
/// # Ok::<(), stampede::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Server {
    name: String,
    launch: Launch,
    free_port: bool,
    ready_set: bool,
}

impl Server {
    /// Runs `program`; ready as soon as it has started, unless
    /// [`ready`](Server::ready) says otherwise.
    pub fn new(program: impl Into<PathBuf>) -> Server {
        let program = program.into();
        let name = program
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "server".to_owned());
        Server {
            name: sanitize(&name),
            launch: Launch::new(program, Ready::LogLine(String::new())),
            free_port: false,
            ready_set: false,
        }
    }

    /// Gives the server a TCP port on `127.0.0.1` that nobody listens on,
    /// chosen at each start: `{port}` in its arguments and in its
    /// environment's values becomes that number, it is ready once the port
    /// answers (unless [`ready`](Server::ready) says otherwise), and the
    /// port is its first address ([`Running::port`]). Tests running in
    /// parallel never collide on a port; a port taken between the choice
    /// and the server's bind is chosen again, up to three times.
    ///
    /// ```no_run
    /// use stampede::services::Server;
    ///
    /// let http = Server::new("python3")
    ///     .args(["-m", "http.server", "{port}", "--bind", "127.0.0.1"])
    ///     .free_port()
    ///     .start()?;
    /// let port = http.port().unwrap();
    /// # Ok::<(), stampede::Error>(())
    /// ```
    pub fn free_port(mut self) -> Server {
        self.free_port = true;
        self
    }

    /// A name for its directory and messages (default: the program's
    /// file name), reduced to `[a-z0-9-]`.
    pub fn name(mut self, name: &str) -> Server {
        self.name = sanitize(name);
        self
    }

    /// Adds arguments.
    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> Server {
        self.launch = self.launch.args(args);
        self
    }

    /// Adds a variable to the server's environment.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Server {
        self.launch = self.launch.env(key, value);
        self
    }

    /// When the server is ready. A port also becomes its address.
    pub fn ready(mut self, ready: Ready) -> Server {
        if let Ready::Port(port) = &ready {
            self.launch = self.launch.address(format!("127.0.0.1:{port}"));
        }
        self.launch.ready = ready;
        self.ready_set = true;
        self
    }

    /// How long it has to get ready (default 30 s).
    pub fn ready_timeout(mut self, timeout: Duration) -> Server {
        self.launch = self.launch.ready_timeout(timeout);
        self
    }

    /// Starts it under a keeper; see [`start`].
    ///
    /// # Errors
    ///
    /// As [`start`].
    pub fn start(&self) -> Result<Running> {
        let mut tries = 0;
        loop {
            match start(self) {
                Err(Error::ServiceStart { log_tail, .. })
                    if self.free_port && tries < 3 && log_tail.contains("in use") =>
                {
                    tries += 1;
                }
                result => return result,
            }
        }
    }
}

impl Server {
    /// The server `variable` names (`STAMPEDE_API_URL`, as a
    /// [`Services`] command exports it), checked to answer, or else one of
    /// this test's own, started as [`start`](Server::start) does.
    ///
    /// The variable holds an address (`127.0.0.1:41234`) or a URL with a
    /// host and port (`http://127.0.0.1:41234/`); set but empty counts as
    /// unset.
    ///
    /// ```no_run
    /// use stampede::services::Server;
    ///
    /// let api = Server::new("target/debug/api")
    ///     .args(["--port", "{port}"])
    ///     .free_port()
    ///     .start_or_reuse("STAMPEDE_API_URL")?;
    /// println!("the API answers at {}", api.address());
    /// # Ok::<(), stampede::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::ServiceUrl`] when the variable holds no host and port;
    /// [`Error::ServiceUnreachable`] when nothing answers there (nothing
    /// is started in its place); as [`start`](Server::start) otherwise.
    pub fn start_or_reuse(&self, variable: &str) -> Result<Started> {
        let value = std::env::var(variable).unwrap_or_default();
        if value.trim().is_empty() {
            let running = self.start()?;
            let address = running.addresses().first().cloned().unwrap_or_default();
            return Ok(Started {
                address,
                running: Some(running),
            });
        }
        // The variable's name lives as long as the error may.
        let name: &'static str = Box::leak(variable.to_owned().into_boxed_str());
        let Some(target) = host_and_port(&value) else {
            return Err(Error::ServiceUrl {
                variable: name,
                url: value,
                message: "it names no host and port (`127.0.0.1:41234` or \
                          `http://127.0.0.1:41234/`)"
                    .to_owned(),
            });
        };
        let answers = std::net::ToSocketAddrs::to_socket_addrs(&target.as_str())
            .map_err(|e| e.to_string())
            .and_then(|mut addresses| {
                let address = addresses.next().ok_or("it resolves to no address")?;
                std::net::TcpStream::connect_timeout(&address, Duration::from_secs(5))
                    .map_err(|e| e.to_string())
            });
        match answers {
            Ok(_) => Ok(Started {
                address: value,
                running: None,
            }),
            Err(message) => Err(Error::ServiceUnreachable {
                variable: name,
                url: value,
                message,
            }),
        }
    }
}

/// `host:port` of an address or a URL: `127.0.0.1:41234`,
/// `http://user@[::1]:8080/path`.
fn host_and_port(value: &str) -> Option<String> {
    let rest = value.split_once("://").map_or(value, |(_, rest)| rest);
    let authority = rest.split(['/', '?']).next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    let (host, port) = host_port.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    (!host.is_empty()).then(|| host_port.to_owned())
}

/// A server of a test: one it started, or one reused through a variable.
#[derive(Debug)]
pub struct Started {
    address: String,
    running: Option<Running>,
}

impl Started {
    /// Where it answers: its first address, or the variable's value.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The server this test started; `None` when it is reused.
    pub fn running(&self) -> Option<&Running> {
        self.running.as_ref()
    }
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("addresses", &self.addresses)
            .field("dir", &self.dir())
            .field("server_pid", &self.server_pid())
            .finish()
    }
}

impl Service for Server {
    fn name(&self) -> &str {
        &self.name
    }

    fn launch(&self, _dir: &Path) -> Result<Launch> {
        if !self.free_port {
            return Ok(self.launch.clone());
        }
        let port = free_port()?;
        let number = port.to_string();
        let mut launch = self.launch.clone();
        for arg in &mut launch.args {
            *arg = arg.replace("{port}", &number);
        }
        for (_, value) in &mut launch.env {
            *value = value.replace("{port}", &number);
        }
        if !self.ready_set {
            launch.ready = Ready::Port(port);
        }
        launch.addresses.insert(0, format!("127.0.0.1:{port}"));
        Ok(launch)
    }
}

/// A password of 128 random bits, as 32 hex digits (nothing to quote in a
/// URL, a config file or SQL).
pub(crate) fn random_password() -> Result<String> {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut random| {
            use std::io::Read;
            random.read_exact(&mut bytes)
        })
        .map_err(|source| Error::Io {
            context: "reading /dev/urandom for a server's password",
            source,
        })?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// A TCP port nobody listens on right now.
pub(crate) fn free_port() -> Result<u16> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|source| Error::Io {
            context: "finding a free TCP port",
            source,
        })
}

/// `name` reduced to `[a-z0-9-]`, at most 20 characters.
fn sanitize(name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(20)
        .collect();
    if clean.is_empty() {
        "server".to_owned()
    } else {
        clean
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reuse_variable_gives_its_host_and_port() {
        assert_eq!(
            host_and_port("127.0.0.1:41234").as_deref(),
            Some("127.0.0.1:41234")
        );
        assert_eq!(
            host_and_port("http://user@[::1]:8080/path?x").as_deref(),
            Some("[::1]:8080")
        );
        assert_eq!(host_and_port("http://localhost/"), None, "no port");
        assert_eq!(host_and_port("not an address"), None);
        assert_eq!(host_and_port(":80"), None, "no host");
    }

    #[test]
    fn service_names_are_safe_for_directories() {
        assert_eq!(sanitize("python3"), "python3");
        assert_eq!(sanitize("My Server/x"), "my-server-x");
        assert_eq!(sanitize(""), "server");
    }
}
