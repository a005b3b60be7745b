//! PostgreSQL: finding its programs, the cached `initdb`, the cluster under
//! a keeper, and a database per fixture.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::keeper::{self, Instance, Place};
use super::{Launch, Ready, Running, Service, reuse};
use crate::error::{Error, Result};
use crate::sys;

/// The variable naming the directory of PostgreSQL's programs.
pub const BIN_VAR: &str = "STAMPEDE_POSTGRES_BIN";

/// The superuser `initdb` creates, and every URL's user.
const SUPERUSER: &str = "postgres";

/// The line PostgreSQL logs when it accepts connections.
const READY_LINE: &str = "database system is ready to accept connections";

/// A PostgreSQL database of this fixture's own.
///
/// A private cluster per test process is started on first use (from a data
/// directory made by `initdb` once per machine and version, and cached) and
/// shared by the process's fixtures; each fixture gets a database of its own,
/// cloned from a template, and drops it when dropped. The cluster stops when
/// the test process exits, even after `kill -9` (see the
/// [module docs](crate::services)). With `STAMPEDE_POSTGRES_URL` set,
/// nothing is started: each fixture is a fresh database on that server.
///
/// ```no_run
/// stampede::entry!();
///
/// #[test]
/// fn two_fixtures_never_share_rows() {
///     let a = stampede::services::Postgres::start().unwrap();
///     let b = stampede::services::Postgres::start().unwrap();
///     assert_ne!(a.url(), b.url());
/// }
/// # fn main() {}
/// ```
pub struct Postgres {
    url: String,
    database: String,
    /// The database it is cloned from (and again by `reset`).
    template: String,
    cluster: Arc<Cluster>,
}

/// Options for [`Postgres`]: TCP, a cluster of its own, where the programs are.
///
/// ```no_run
/// use std::time::Duration;
/// let pg = stampede::services::Postgres::builder()
///     .private_cluster(true) // even when STAMPEDE_POSTGRES_URL is set
///     .bin_dir("/usr/lib/postgresql/16/bin")
///     .setting("fsync", "off")
///     .ready_timeout(Duration::from_secs(30))
///     .start()?;
/// # Ok::<(), stampede::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct PostgresBuilder {
    tcp: bool,
    private_cluster: bool,
    bin_dir: Option<PathBuf>,
    settings: Vec<(String, String)>,
    ready_timeout: Option<Duration>,
    reuse_url: Option<String>,
    cache_dir: Option<PathBuf>,
    template_sql: Option<String>,
}

impl Postgres {
    /// A fresh database of its own, on this process's cluster (started on
    /// first use) or on the server `STAMPEDE_POSTGRES_URL` names.
    ///
    /// ```no_run
    /// let pg = stampede::services::Postgres::start()?;
    /// println!("{}", pg.url()); // postgresql://…/stampede_…?host=/tmp/…
    /// # Ok::<(), stampede::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::ServiceNotFound`] when PostgreSQL's programs are missing;
    /// [`Error::ServiceStart`] when the server exits during start or is
    /// not ready in time (with the end of its log); [`Error::ServiceDied`]
    /// when the cluster died since the last fixture;
    /// [`Error::ServiceUnreachable`] when `STAMPEDE_POSTGRES_URL` is set
    /// and nothing answers there; [`Error::MissingEntry`] without
    /// `stampede::entry!()` or `stampede::init()` (the keeper needs it).
    pub fn start() -> Result<Postgres> {
        PostgresBuilder::default().start()
    }

    /// Options: TCP, a private cluster, settings.
    ///
    /// ```no_run
    /// let pg = stampede::services::Postgres::builder()
    ///     .tcp(true)
    ///     .setting("max_connections", "500")
    ///     .start()?;
    /// # Ok::<(), stampede::Error>(())
    /// ```
    pub fn builder() -> PostgresBuilder {
        PostgresBuilder::default()
    }

    /// The libpq URL of this fixture's database.
    ///
    /// ```no_run
    /// let pg = stampede::services::Postgres::start()?;
    /// let mut client = postgres::Client::connect(pg.url(), postgres::NoTls).unwrap();
    /// client.batch_execute("CREATE TABLE jobs (id serial PRIMARY KEY)").unwrap();
    /// # Ok::<(), stampede::Error>(())
    /// ```
    pub fn url(&self) -> &str {
        &self.url
    }

    /// This fixture's database name.
    ///
    /// ```no_run
    /// let pg = stampede::services::Postgres::start()?;
    /// assert!(pg.url().contains(pg.database()));
    /// # Ok::<(), stampede::Error>(())
    /// ```
    pub fn database(&self) -> &str {
        &self.database
    }

    /// Puts the database back to the template's state (drops it, with any
    /// open connections, and clones it again): empty, or the schema of
    /// [`template_sql`](PostgresBuilder::template_sql).
    ///
    /// ```no_run
    /// let pg = stampede::services::Postgres::start()?;
    /// let mut client = postgres::Client::connect(pg.url(), postgres::NoTls).unwrap();
    /// client.batch_execute("CREATE TABLE t (x int)").unwrap();
    /// drop(client);
    /// pg.reset()?; // back to an empty database
    /// # Ok::<(), stampede::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::ServiceDied`] when the server is gone;
    /// [`Error::ServiceCommand`] when the server refuses.
    pub fn reset(&self) -> Result<()> {
        self.cluster.check()?;
        self.cluster.sql(
            "resetting a test database",
            &[
                format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.database),
                format!(
                    "CREATE DATABASE \"{}\" TEMPLATE \"{}\"",
                    self.database, self.template
                ),
            ],
        )
    }

    /// The cluster's private directory (data, socket, log); `None` when the
    /// server is reused through `STAMPEDE_POSTGRES_URL`.
    ///
    /// ```no_run
    /// let pg = stampede::services::Postgres::builder().private_cluster(true).start()?;
    /// if let Some(dir) = pg.directory() {
    ///     println!("cluster in {}", dir.display());
    ///     println!("server pid {:?}, keeper pid {:?}", pg.server_pid(), pg.keeper_pid());
    /// }
    /// # Ok::<(), stampede::Error>(())
    /// ```
    pub fn directory(&self) -> Option<&Path> {
        self.cluster.running.as_ref().map(Running::dir)
    }

    /// The server's process id; `None` when it is reused.
    pub fn server_pid(&self) -> Option<u32> {
        self.cluster.running.as_ref().map(Running::server_pid)
    }

    /// The keeper's process id; `None` when the server is reused.
    pub fn keeper_pid(&self) -> Option<u32> {
        self.cluster.running.as_ref().map(Running::keeper_pid)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if self.cluster.check().is_ok() {
            let _ = self.cluster.sql(
                "dropping a test database",
                &[format!(
                    "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                    self.database
                )],
            );
        }
    }
}

impl PostgresBuilder {
    /// Listens on `127.0.0.1` on a free port too (the URL then uses TCP);
    /// by default only on a Unix socket in the cluster's private directory.
    pub fn tcp(mut self, on: bool) -> Self {
        self.tcp = on;
        self
    }

    /// A cluster of this fixture's own, stopped when it is dropped, instead
    /// of the process's shared one.
    pub fn private_cluster(mut self, on: bool) -> Self {
        self.private_cluster = on;
        self
    }

    /// Where PostgreSQL's programs are (default: `STAMPEDE_POSTGRES_BIN`,
    /// `pg_config --bindir`, the highest `/usr/lib/postgresql/*/bin`, `PATH`).
    /// Implies a private cluster.
    pub fn bin_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.bin_dir = Some(dir.into());
        self.private_cluster = true;
        self
    }

    /// A server setting (`postgres -c name=value`); implies a private cluster.
    pub fn setting(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.settings.push((name.into(), value.into()));
        self.private_cluster = true;
        self
    }

    /// How long the server has to get ready (default 30 s); implies a
    /// private cluster.
    pub fn ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = Some(timeout);
        self.private_cluster = true;
        self
    }

    /// Each fixture's database (and each [`reset`](Postgres::reset)) starts
    /// from this SQL's result rather than empty: a schema, seed rows.
    ///
    /// The script runs once per cluster (or reused server) through `psql`,
    /// into a template database that fixtures are cloned from, which costs
    /// no more than cloning an empty one. Fixtures with the same script
    /// share its template, on the process's shared cluster too; on a
    /// server reused through `STAMPEDE_POSTGRES_URL` the template stays
    /// for the next runs, named after a hash of the script
    /// (`stampede_tpl_<hash>`). The script runs as `psql -f` runs a file:
    /// each statement in its own transaction unless it says `BEGIN`, and
    /// the first error fails the fixture's start with
    /// [`Error::ServiceCommand`].
    ///
    /// ```no_run
    /// let pg = stampede::services::Postgres::builder()
    ///     .template_sql("CREATE TABLE jobs (id int PRIMARY KEY, claimed_by int)")
    ///     .start()?;
    /// # Ok::<(), stampede::Error>(())
    /// ```
    pub fn template_sql(mut self, sql: impl Into<String>) -> Self {
        self.template_sql = Some(sql.into());
        self
    }

    /// Reuses this server instead of `STAMPEDE_POSTGRES_URL`'s.
    ///
    /// ```no_run
    /// let pg = stampede::services::Postgres::builder()
    ///     .reuse_url("postgresql://postgres@127.0.0.1:5432/postgres")
    ///     .start()?; // a fresh database on that server
    /// assert_eq!(pg.directory(), None);
    /// # Ok::<(), stampede::Error>(())
    /// ```
    pub fn reuse_url(mut self, url: impl Into<String>) -> Self {
        self.reuse_url = Some(url.into());
        self
    }

    /// Keeps the cached `initdb` result under `dir` instead of the user's
    /// cache; implies a private cluster. Used by `benches/postgres.rs` to
    /// measure a cold cache, not public API.
    #[doc(hidden)]
    pub fn cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache_dir = Some(dir.into());
        self.private_cluster = true;
        self
    }

    /// Runs `initdb` as a cold cache does (same user, same options, a
    /// scratch directory under `/tmp` removed afterwards) and returns how
    /// long `initdb` itself took. Used by `benches/postgres.rs` as its
    /// baseline, not public API.
    ///
    /// # Errors
    ///
    /// As [`Postgres::start`] when `initdb` is missing or fails.
    #[doc(hidden)]
    pub fn timed_initdb(&self) -> Result<Duration> {
        let bin = find_bin(self.bin_dir.as_deref())?;
        let user = server_user();
        let scratch = Instance::create("initdb", Place::Memory)?;
        let result = (|| {
            if let Some((uid, gid)) = user {
                scratch.give_to(uid, gid).map_err(|source| Error::Io {
                    context: "handing initdb's directory to the server's user",
                    source,
                })?;
            }
            let began = std::time::Instant::now();
            initdb(&bin, &scratch.path().join("data"), user)?;
            Ok(began.elapsed())
        })();
        scratch.remove();
        result
    }

    /// Starts the fixture; see [`Postgres::start`].
    ///
    /// # Errors
    ///
    /// As [`Postgres::start`].
    pub fn start(self) -> Result<Postgres> {
        let cluster = self.cluster()?;
        cluster.check()?;
        let template = match &self.template_sql {
            Some(sql) => cluster.template(sql)?,
            None => "template0".to_owned(),
        };
        let database = new_database_name();
        cluster.sql(
            "creating a test database",
            &[format!(
                "CREATE DATABASE \"{database}\" TEMPLATE \"{template}\""
            )],
        )?;
        Ok(Postgres {
            url: reuse::with_database(&cluster.admin_url, &database),
            database,
            template,
            cluster,
        })
    }

    fn cluster(&self) -> Result<Arc<Cluster>> {
        let reuse = self
            .reuse_url
            .clone()
            .or_else(|| std::env::var(reuse::URL_VAR).ok().filter(|u| !u.is_empty()));
        if self.private_cluster || reuse.is_some() && self.reuse_url.is_some() {
            return self.new_cluster(reuse).map(Arc::new);
        }
        static SHARED: Mutex<[Option<Arc<Cluster>>; 2]> = Mutex::new([None, None]);
        let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
        let slot = &mut shared[usize::from(self.tcp)];
        if let Some(cluster) = slot {
            if cluster.check().is_ok() {
                return Ok(cluster.clone());
            }
        }
        let cluster = Arc::new(self.new_cluster(reuse)?);
        *slot = Some(cluster.clone());
        Ok(cluster)
    }

    fn new_cluster(&self, reuse: Option<String>) -> Result<Cluster> {
        if let Some(url) = reuse {
            let psql = find_bin(self.bin_dir.as_deref())?.join("psql");
            reuse::check(&psql, &url)?;
            return Ok(Cluster {
                admin_url: url,
                psql,
                running: None,
                templates: Mutex::new(Vec::new()),
            });
        }
        let bin = find_bin(self.bin_dir.as_deref())?;
        let service = PostgresService {
            bin: bin.clone(),
            tcp_port: if self.tcp { Some(free_port()?) } else { None },
            settings: self.settings.clone(),
            ready_timeout: self.ready_timeout.unwrap_or(Duration::from_secs(30)),
            cache_root: self.cache_dir.clone().unwrap_or_else(cache_root),
        };
        let running = super::start_in(&service, Place::Memory)?;
        let admin_url = running.addresses()[0].clone();
        Ok(Cluster {
            admin_url,
            psql: bin.join("psql"),
            running: Some(running),
            templates: Mutex::new(Vec::new()),
        })
    }
}

/// Starts a cluster that outlives this process (`stampede-services up`):
/// its handle and the URL of its `postgres` database.
pub(super) fn start_detached() -> Result<(Running, String)> {
    let bin = find_bin(None)?;
    let service = PostgresService {
        bin,
        tcp_port: None,
        settings: Vec::new(),
        ready_timeout: Duration::from_secs(30),
        cache_root: cache_root(),
    };
    let running = super::start_in(&service, Place::Detached)?;
    let url = running.addresses()[0].clone();
    Ok((running, url))
}

/// A server and how to talk to it as its superuser.
struct Cluster {
    /// A URL of the `postgres` database.
    admin_url: String,
    psql: PathBuf,
    /// `None` when reused.
    running: Option<Running>,
    /// The templates built from `template_sql` scripts: (hash of the
    /// script, database name). Locked while one is built.
    templates: Mutex<Vec<(u64, String)>>,
}

/// A fixture database's name, which the reuse sweep recognizes.
fn new_database_name() -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    format!("{}{}", reuse::run_id(), SEQ.fetch_add(1, Ordering::Relaxed))
}

/// FNV-1a: a template's name must not change between builds of stampede,
/// as std's hasher may.
fn stable_hash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl Cluster {
    fn check(&self) -> Result<()> {
        self.running.as_ref().map_or(Ok(()), Running::check)
    }

    /// The name of the template database built from `sql`, building it
    /// first if this cluster has none yet.
    ///
    /// It is built under a fixture's name (so the reuse sweep drops it if
    /// this process dies meanwhile) and renamed when complete: another
    /// process sharing a reused server either finds it complete or builds
    /// its own, and the first rename wins.
    fn template(&self, sql: &str) -> Result<String> {
        let hash = stable_hash(sql);
        let mut templates = self.templates.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, name)) = templates.iter().find(|(h, _)| *h == hash) {
            return Ok(name.clone());
        }
        let name = format!("stampede_tpl_{hash:016x}");
        let exists = |cluster: &Cluster| {
            psql(
                &cluster.psql,
                &cluster.admin_url,
                &[format!(
                    "SELECT 1 FROM pg_database WHERE datname = '{name}'"
                )],
            )
            .map(|out| out.trim() == "1")
        };
        if !exists(self).unwrap_or(false) {
            let building = new_database_name();
            self.sql(
                "creating a template database",
                &[format!("CREATE DATABASE \"{building}\" TEMPLATE template0")],
            )?;
            let drop_building = || {
                let _ = psql(
                    &self.psql,
                    &self.admin_url,
                    &[format!(
                        "DROP DATABASE IF EXISTS \"{building}\" WITH (FORCE)"
                    )],
                );
            };
            let url = reuse::with_database(&self.admin_url, &building);
            if let Err(message) = psql_script(&self.psql, &url, sql) {
                drop_building();
                self.check()?;
                return Err(Error::ServiceCommand {
                    service: "postgres".to_owned(),
                    action: "running the template's SQL".to_owned(),
                    message,
                });
            }
            let renamed = self.sql(
                "completing a template database",
                &[format!(
                    "ALTER DATABASE \"{building}\" RENAME TO \"{name}\""
                )],
            );
            if let Err(e) = renamed {
                drop_building();
                if !exists(self).unwrap_or(false) {
                    return Err(e);
                }
            }
        }
        templates.push((hash, name.clone()));
        Ok(name)
    }

    /// Runs each statement in its own transaction (`CREATE DATABASE` may
    /// not run in one).
    fn sql(&self, action: &str, statements: &[String]) -> Result<()> {
        psql(&self.psql, &self.admin_url, statements)
            .map(drop)
            .map_err(|message| {
                if let Err(died) = self.check() {
                    return died;
                }
                Error::ServiceCommand {
                    service: "postgres".to_owned(),
                    action: action.to_owned(),
                    message,
                }
            })
    }
}

/// Runs `statements` with `psql`; its error output when it fails.
pub(super) fn psql(
    psql: &Path,
    url: &str,
    statements: &[String],
) -> std::result::Result<String, String> {
    let mut command = Command::new(psql);
    command
        .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", url])
        .env("PGCONNECT_TIMEOUT", "5")
        .stdin(Stdio::null());
    for statement in statements {
        command.arg("-c").arg(statement);
    }
    let output = command
        .output()
        .map_err(|e| format!("could not run {}: {e}", psql.display()))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_owned())
    }
}

/// Runs `script` with `psql -f -`, stopping at the first error; that
/// error's output when it fails.
fn psql_script(psql: &Path, url: &str, script: &str) -> std::result::Result<(), String> {
    let mut child = Command::new(psql)
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-f", "-"])
        .env("PGCONNECT_TIMEOUT", "5")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("could not run {}: {e}", psql.display()))?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let script = script.to_owned();
    // From a thread: psql may fill its error pipe before it has read all.
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        let _ = stdin.write_all(script.as_bytes());
    });
    let output = child
        .wait_with_output()
        .map_err(|e| format!("could not wait for {}: {e}", psql.display()))?;
    let _ = writer.join();
    if output.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_owned())
    }
}

/// The cluster as a [`Service`]: a copy of the cached data directory.
struct PostgresService {
    bin: PathBuf,
    tcp_port: Option<u16>,
    settings: Vec<(String, String)>,
    ready_timeout: Duration,
    /// Where the cached `initdb` result lives.
    cache_root: PathBuf,
}

impl Service for PostgresService {
    fn name(&self) -> &str {
        "postgres"
    }

    fn launch(&self, dir: &Path) -> Result<Launch> {
        let user = server_user();
        let cached = cached_data_dir(&self.bin, user, &self.cache_root)?;
        let data = dir.join("data");
        copy_tree(&cached, &data, user).map_err(|source| Error::Io {
            context: "copying the cached PostgreSQL data directory",
            source,
        })?;
        fs::set_permissions(&data, fs::Permissions::from_mode(0o700)).map_err(|source| {
            Error::Io {
                context: "setting the data directory's mode",
                source,
            }
        })?;
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(dir, Some(uid), Some(gid)).map_err(|source| Error::Io {
                context: "handing the cluster's directory to its user",
                source,
            })?;
        }
        let socket_dir = dir.to_string_lossy().into_owned();
        let port = self.tcp_port.unwrap_or(5432);
        let listen = if self.tcp_port.is_some() {
            "127.0.0.1"
        } else {
            ""
        };
        let mut launch = Launch::new(self.bin.join("postgres"), Ready::LogLine(READY_LINE.into()))
            .args(["-D".to_owned(), data.to_string_lossy().into_owned()])
            .args(["-k".to_owned(), socket_dir.clone()])
            .args(["-p".to_owned(), port.to_string()])
            .args(["-c".to_owned(), format!("listen_addresses={listen}")])
            // A test database need not survive a power cut.
            .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
            .args(["-c", "full_page_writes=off"])
            // Dynamic shared memory as files in the data directory, removed
            // with it, rather than in /dev/shm, where a server killed with
            // SIGKILL would leave its segments.
            .args(["-c", "dynamic_shared_memory_type=mmap"])
            .ready_timeout(self.ready_timeout)
            // SIGINT is PostgreSQL's fast shutdown.
            .stop_with(sys::SIGINT, Duration::from_secs(10));
        for (name, value) in &self.settings {
            launch = launch.args(["-c".to_owned(), format!("{name}={value}")]);
        }
        launch = match self.tcp_port {
            Some(port) => launch.address(format!(
                "postgresql://{SUPERUSER}@127.0.0.1:{port}/postgres"
            )),
            None => launch.address(format!(
                "postgresql://{SUPERUSER}@/postgres?host={socket_dir}&port={port}"
            )),
        };
        if let Some((uid, gid)) = user {
            launch = launch.user(uid, gid);
        }
        Ok(launch)
    }
}

/// As root, the user the server runs as (PostgreSQL refuses root):
/// `postgres` if it exists, else `nobody`. `None` when not root.
fn server_user() -> Option<(u32, u32)> {
    if sys::effective_uid() != 0 {
        return None;
    }
    let passwd = fs::read_to_string("/etc/passwd").unwrap_or_default();
    let find = |name: &str| {
        passwd.lines().find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.len() > 3 && fields[0] == name)
                .then(|| Some((fields[2].parse().ok()?, fields[3].parse().ok()?)))
                .flatten()
        })
    };
    find("postgres").or_else(|| find("nobody"))
}

/// The directory holding `initdb`, `postgres` and `psql`.
pub(super) fn find_bin(explicit: Option<&Path>) -> Result<PathBuf> {
    let has_all = |dir: &Path| {
        ["initdb", "postgres", "psql"]
            .iter()
            .all(|p| dir.join(p).is_file())
    };
    let from_var = std::env::var_os(BIN_VAR).map(PathBuf::from);
    if let Some(dir) = explicit.map(Path::to_path_buf).or(from_var) {
        return if has_all(&dir) {
            Ok(dir)
        } else {
            Err(not_found(&format!(
                "initdb, postgres and psql are not all in {} (given by {} or the builder)",
                dir.display(),
                BIN_VAR
            )))
        };
    }
    let mut candidates = Vec::new();
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        if out.status.success() {
            candidates.push(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            Some((version, e.path().join("bin")))
        })
        .collect();
    versions.sort();
    candidates.extend(versions.into_iter().rev().map(|(_, dir)| dir));
    candidates.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    candidates.into_iter().find(|d| has_all(d)).ok_or_else(|| {
        not_found(
            "initdb, postgres and psql were not found (looked in `pg_config --bindir`, \
             /usr/lib/postgresql/*/bin and PATH)",
        )
    })
}

fn not_found(what: &str) -> Error {
    Error::ServiceNotFound {
        service: "postgres".to_owned(),
        message: format!(
            "{what}; install PostgreSQL's server (Debian and Ubuntu: `apt-get install \
             postgresql`) or set {BIN_VAR} to the directory that holds them"
        ),
    }
}

/// The major version of the server in `bin` (`postgres --version`).
fn major_version(bin: &Path) -> Result<String> {
    let out = Command::new(bin.join("postgres"))
        .arg("--version")
        .output()
        .map_err(|e| {
            not_found(&format!(
                "{} could not run: {e}",
                bin.join("postgres").display()
            ))
        })?;
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text.split_whitespace().last().unwrap_or("unknown");
    Ok(version.split('.').next().unwrap_or(version).to_owned())
}

/// Where cached data directories live: `$XDG_CACHE_HOME/stampede`,
/// `~/.cache/stampede`, or under `/tmp` without a home.
fn cache_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("stampede");
    }
    if let Some(home) = std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(home).join(".cache").join("stampede");
    }
    keeper::base_dir().join("cache")
}

/// The cached result of `initdb` for the server in `bin`, made on first
/// use under a file lock (other test processes wait for it).
fn cached_data_dir(bin: &Path, user: Option<(u32, u32)>, root: &Path) -> Result<PathBuf> {
    let version = major_version(bin)?;
    let cached = root.join(format!("postgres-{version}"));
    let data = cached.join("data");
    if data.join("PG_VERSION").is_file() {
        return Ok(data);
    }
    let io = |context| move |source| Error::Io { context, source };
    fs::create_dir_all(&cached).map_err(io("creating stampede's cache directory"))?;
    let lock = fs::File::create(root.join(format!("postgres-{version}.lock")))
        .map_err(io("creating the cache's lock file"))?;
    sys::lock_exclusive(&lock).map_err(io("locking the cache"))?;
    if data.join("PG_VERSION").is_file() {
        return Ok(data);
    }
    // initdb runs as the server's user, in a directory it can reach (a
    // home under /root is closed to it); the result is copied in.
    let scratch = Instance::create("initdb", Place::Memory)?;
    if let Some((uid, gid)) = user {
        scratch
            .give_to(uid, gid)
            .map_err(io("handing initdb's directory to the server's user"))?;
    }
    let fresh = scratch.path().join("data");
    let result = initdb(bin, &fresh, user).and_then(|()| {
        let partial = cached.join(format!("data.partial-{}", sys::getpid()));
        let _ = fs::remove_dir_all(&partial);
        copy_tree(&fresh, &partial, None)
            .and_then(|()| fs::rename(&partial, &data))
            .map_err(io("copying initdb's result into the cache"))
    });
    scratch.remove();
    result.map(|()| data)
}

/// Runs `initdb` into `data` as `user` (the server's user, when root).
fn initdb(bin: &Path, data: &Path, user: Option<(u32, u32)>) -> Result<()> {
    let mut command = Command::new(bin.join("initdb"));
    command
        .arg("-D")
        .arg(data)
        .args(["-U", SUPERUSER, "--auth=trust", "-E", "UTF8", "--locale=C"])
        .args(["--no-sync", "--no-instructions"])
        .stdin(Stdio::null());
    if let Some((uid, gid)) = user {
        command.uid(uid).gid(gid);
    }
    match command.output() {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(Error::ServiceStart {
            service: "postgres".to_owned(),
            reason: format!("initdb failed ({})", out.status),
            log_tail: String::from_utf8_lossy(&out.stderr).into_owned(),
        }),
        Err(e) => Err(not_found(&format!("initdb could not run: {e}"))),
    }
}

/// Copies a directory tree, keeping modes, owned by `owner` when given.
fn copy_tree(from: &Path, to: &Path, owner: Option<(u32, u32)>) -> std::io::Result<()> {
    fs::create_dir(to)?;
    fs::set_permissions(to, fs::metadata(from)?.permissions())?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        let kind = entry.file_type()?;
        if kind.is_dir() {
            copy_tree(&entry.path(), &target, owner)?;
            continue;
        } else if kind.is_file() {
            fs::copy(entry.path(), &target)?;
        }
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&target, Some(uid), Some(gid))?;
        }
    }
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(to, Some(uid), Some(gid))?;
    }
    Ok(())
}

/// A TCP port nobody listens on right now.
fn free_port() -> Result<u16> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|source| Error::Io {
            context: "finding a free TCP port",
            source,
        })
}
