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

use super::keeper::{self, Instance};
use super::private_dir::{self, Place, note};
use super::{Launch, Ready, Running, Service, reuse};
use crate::error::{Error, Result};
use crate::sys::{self, Open};

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
    /// Held by `reset`: two at once would each drop and clone the same
    /// database, and one clone would find the other's name taken.
    resetting: Mutex<()>,
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
        let _one_at_a_time = self.resetting.lock().unwrap_or_else(|e| e.into_inner());
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
    ///
    /// Any local user can reach a TCP port, so the cluster's superuser gets
    /// a random password (scram-sha-256), which [`url`](Postgres::url)
    /// carries: `postgresql://postgres:<password>@127.0.0.1:<port>/…`. It
    /// is also in `pgpass` in the cluster's [directory](Postgres::directory)
    /// (readable by this user alone), for `PGPASSFILE`. It is never on a
    /// command line, where any local user could read it.
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
            let dir = keeper::server_dir(scratch.path())?;
            keeper::hand_over(scratch.path(), user)?;
            let began = std::time::Instant::now();
            initdb(&bin, &dir.join("data"), user)?;
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
            url: reuse::with_database(&cluster.client_url, &database),
            database,
            template,
            cluster,
            resetting: Mutex::new(()),
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
                admin_url: url.clone(),
                client_url: url,
                psql,
                running: None,
                templates: Mutex::new(Vec::new()),
            });
        }
        let bin = find_bin(self.bin_dir.as_deref())?;
        let cache_root = match &self.cache_dir {
            Some(dir) => dir.clone(),
            None => private_dir::cache_root()?,
        };
        let tcp_port = if self.tcp { Some(free_port()?) } else { None };
        let service = PostgresService {
            bin: bin.clone(),
            tcp_port,
            settings: self.settings.clone(),
            ready_timeout: self.ready_timeout.unwrap_or(Duration::from_secs(30)),
            cache_root,
        };
        let running = super::start_in(&service, Place::Memory).map_err(|e| {
            let base = private_dir::base(Place::Memory).unwrap_or_default();
            name_a_full_disk(e, &base)
        })?;
        let admin_url = running.addresses()[0].clone();
        let mut cluster = Cluster {
            client_url: admin_url.clone(),
            admin_url,
            psql: bin.join("psql"),
            running: Some(running),
            templates: Mutex::new(Vec::new()),
        };
        if let Some(port) = tcp_port {
            cluster.client_url = cluster.protect_tcp(port)?;
        }
        Ok(cluster)
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
        cache_root: private_dir::cache_root()?,
    };
    let running = super::start_in(&service, Place::Detached)?;
    let url = running.addresses()[0].clone();
    Ok((running, url))
}

/// A server and how to talk to it as its superuser.
struct Cluster {
    /// A URL of the `postgres` database, for stampede's own commands: over
    /// the Unix socket when the cluster is stampede's.
    admin_url: String,
    /// The URL fixtures' URLs are made from: over TCP, with the password,
    /// for a TCP cluster; else the same as `admin_url`.
    client_url: String,
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

    /// Gives the superuser a random password, the only way in over TCP
    /// (the cluster's `pg_hba.conf` asks TCP clients for one, and a role
    /// without a password cannot give one, so nobody got in before this),
    /// writes it to `pgpass` in the cluster's directory, and returns the
    /// URL that carries it. The statement travels on `psql`'s standard
    /// input, not its command line.
    fn protect_tcp(&self, port: u16) -> Result<String> {
        let password = random_password()?;
        psql_script(
            &self.psql,
            &self.admin_url,
            &format!("ALTER ROLE {SUPERUSER} PASSWORD '{password}';\n"),
        )
        .map_err(|message| Error::ServiceCommand {
            service: "postgres".to_owned(),
            action: "giving the superuser a password for TCP".to_owned(),
            message,
        })?;
        if let Some(running) = &self.running {
            let path = running.dir().join("pgpass");
            sys::open_no_follow(&path, Open::New(0o600))
                .and_then(|mut file| {
                    use std::io::Write;
                    writeln!(file, "127.0.0.1:{port}:*:{SUPERUSER}:{password}")
                })
                .map_err(|source| Error::Path {
                    context: "writing the cluster's password file",
                    path,
                    source,
                })?;
        }
        Ok(format!(
            "postgresql://{SUPERUSER}:{password}@127.0.0.1:{port}/postgres"
        ))
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
                let error = Error::ServiceCommand {
                    service: "postgres".to_owned(),
                    action: action.to_owned(),
                    message,
                };
                match &self.running {
                    Some(running) => name_a_full_disk(error, running.dir()),
                    None => error,
                }
            })
    }
}

/// `psql` connecting to `url`, stopping at the first error. A password in
/// the URL goes in the environment, which only this user can read, not on
/// the command line, which every local user can.
fn psql_command(psql: &Path, url: &str) -> Command {
    let (url, password) = reuse::split_password(url);
    let mut command = Command::new(psql);
    command
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", &url])
        .env("PGCONNECT_TIMEOUT", "5");
    if let Some(password) = password {
        command.env("PGPASSWORD", password);
    }
    command
}

/// Runs `statements` with `psql`; its error output when it fails.
pub(super) fn psql(
    psql: &Path,
    url: &str,
    statements: &[String],
) -> std::result::Result<String, String> {
    let mut command = psql_command(psql, url);
    command.args(["-A", "-t"]).stdin(Stdio::null());
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
    let mut child = psql_command(psql, url)
        .args(["-f", "-"])
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
        // The server's own directory (data, socket) is closed to every
        // other user: only the server's user and this one reach the socket.
        let server_dir = keeper::server_dir(dir)?;
        let data = server_dir.join("data");
        let io = |context, path: &Path| {
            let path = path.to_owned();
            move |source| Error::Path {
                context,
                path,
                source,
            }
        };
        copy_tree(&cached, &data).map_err(io(
            "copying the cached PostgreSQL data directory",
            &server_dir,
        ))?;
        fs::set_permissions(&data, fs::Permissions::from_mode(0o700))
            .map_err(io("setting the data directory's mode", &data))?;
        // Written for each cluster, whatever the cache holds: over the
        // socket no password, over TCP always one.
        let hba = data.join("pg_hba.conf");
        fs::remove_file(&hba)
            .or_else(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    Ok(())
                } else {
                    Err(e)
                }
            })
            .and_then(|()| sys::open_no_follow(&hba, Open::New(0o600)))
            .and_then(|mut file| {
                use std::io::Write;
                file.write_all(PG_HBA.as_bytes())
            })
            .map_err(io("writing the cluster's pg_hba.conf", &hba))?;
        let socket_dir = server_dir.to_string_lossy().into_owned();
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
        // The socket first: stampede's own commands go there, TCP or not.
        launch = launch.address(format!(
            "postgresql://{SUPERUSER}@/postgres?host={socket_dir}&port={port}"
        ));
        if let Some((uid, gid)) = user {
            launch = launch.user(uid, gid);
        }
        Ok(launch)
    }
}

/// Who may connect, written into every cluster's data directory: anyone
/// who reaches the Unix socket (in a directory only the server's user and
/// this one can enter), and over TCP only with the superuser's password.
const PG_HBA: &str = "\
# Written by stampede for this cluster.
local all all                trust
host  all all 127.0.0.1/32   scram-sha-256
host  all all ::1/128        scram-sha-256
";

/// As root, the user the server runs as (PostgreSQL refuses root):
/// `postgres` if it exists, else `nobody`. `None` when not root.
pub(super) fn server_user() -> Option<(u32, u32)> {
    if sys::effective_uid() != 0 {
        return None;
    }
    private_dir::user_ids("postgres").or_else(|| private_dir::user_ids("nobody"))
}

/// A password of 128 random bits, as 32 hex digits (nothing to quote in a
/// URL or in SQL).
fn random_password() -> Result<String> {
    let mut bytes = [0u8; 16];
    fs::File::open("/dev/urandom")
        .and_then(|mut random| {
            use std::io::Read;
            random.read_exact(&mut bytes)
        })
        .map_err(|source| Error::Io {
            context: "reading /dev/urandom for the cluster's password",
            source,
        })?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// `error`, saying so when the file system holding `dir` is full: the
/// server's own message is then a crash or a failed write, far from the
/// cause.
fn name_a_full_disk(error: Error, dir: &Path) -> Error {
    /// Less than this is full for a cluster: a database's first files.
    const ROOM: u64 = 8 << 20;
    let full = !dir.as_os_str().is_empty() && sys::free_bytes(dir).is_some_and(|free| free < ROOM);
    if !full {
        return error;
    }
    let full = format!("no space left on device in {}", dir.display());
    match error {
        Error::ServiceStart {
            service,
            reason,
            log_tail,
        } => Error::ServiceStart {
            service,
            reason: format!("{full} ({reason})"),
            log_tail,
        },
        Error::ServiceCommand {
            service,
            action,
            message,
        } => Error::ServiceCommand {
            service,
            action,
            message: format!("{full}: {message}"),
        },
        other => other,
    }
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

/// The cached result of `initdb` for the server in `bin`, made on first
/// use under a file lock (other test processes wait for it). Only a cache
/// that is this user's and closed to others' writes is used.
fn cached_data_dir(bin: &Path, user: Option<(u32, u32)>, root: &Path) -> Result<PathBuf> {
    let version = major_version(bin)?;
    let cached = root.join(format!("postgres-{version}"));
    let data = cached.join("data");
    private_dir::ensure(root, 0o700)?;
    private_dir::ensure(&cached, 0o700)?;
    if usable_cache(&data)? {
        return Ok(data);
    }
    let lock_path = root.join(format!("postgres-{version}.lock"));
    let lock = sys::open_no_follow(&lock_path, Open::Keep(0o600))
        .and_then(|lock| sys::lock_exclusive(&lock).map(|()| lock))
        .map_err(|source| Error::Path {
            context: "locking the cache",
            path: lock_path,
            source,
        })?;
    if usable_cache(&data)? {
        return Ok(data);
    }
    // Only the lock's holder writes partial copies: any found now is left
    // by a holder that died (killed during `initdb`).
    for entry in fs::read_dir(&cached).into_iter().flatten().flatten() {
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with("data.partial-")
        {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
    // initdb runs as the server's user, in a directory it can reach (a
    // home under /root is closed to it); the result is copied in.
    let scratch = Instance::create("initdb", Place::Memory)?;
    let result = keeper::server_dir(scratch.path()).and_then(|dir| {
        keeper::hand_over(scratch.path(), user)?;
        let fresh = dir.join("data");
        initdb(bin, &fresh, user)?;
        let partial = cached.join(format!("data.partial-{}", sys::getpid()));
        copy_tree(&fresh, &partial)
            .and_then(|()| fs::rename(&partial, &data))
            .map_err(|source| Error::Path {
                context: "copying initdb's result into the cache",
                path: cached.clone(),
                source,
            })
    });
    scratch.remove();
    drop(lock);
    result.map(|()| data)
}

/// Whether the cached data directory `data` is there to be used. One that
/// is not this user's, or that others may write in, is moved aside with a
/// note and made again: what another user put there would run in every
/// cluster (`archive_command` in `postgresql.auto.conf`).
fn usable_cache(data: &Path) -> Result<bool> {
    let Ok(meta) = fs::symlink_metadata(data) else {
        return Ok(false);
    };
    let Some(problem) = private_dir::problem(&meta, sys::effective_uid()) else {
        return Ok(data.join("PG_VERSION").is_file());
    };
    let aside = data.with_file_name(format!("data.untrusted-{}", sys::getpid()));
    note(&format!(
        "not using the cached data directory {}: {problem}; moved to {}",
        data.display(),
        aside.display()
    ));
    fs::rename(data, &aside).map_err(|source| Error::Path {
        context: "moving an untrusted cached data directory aside",
        path: data.to_owned(),
        source,
    })?;
    Ok(false)
}

/// Runs `initdb` into `data` as `user` (the server's user, when root).
fn initdb(bin: &Path, data: &Path, user: Option<(u32, u32)>) -> Result<()> {
    let mut command = Command::new(bin.join("initdb"));
    command
        .arg("-D")
        .arg(data)
        .args([
            "-U",
            SUPERUSER,
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "-E",
            "UTF8",
            "--locale=C",
        ])
        .args(["--no-sync", "--no-instructions"])
        .stdin(Stdio::null());
    if let Some((uid, gid)) = user {
        command.uid(uid).gid(gid);
    }
    // Its own group, and killed with this thread's process: a test killed
    // during a cold start leaves no initdb behind (its `postgres --single`
    // ends when initdb's pipe to it closes).
    command.process_group(0);
    sys::kill_with_parent(&mut command);
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

/// Copies a directory tree, keeping modes; symbolic links and other
/// special files are left out.
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    fs::create_dir(to)?;
    fs::set_permissions(to, fs::metadata(from)?.permissions())?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        let kind = entry.file_type()?;
        if kind.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else if kind.is_file() {
            fs::copy(entry.path(), &target)?;
        }
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
