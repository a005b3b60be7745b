//! PostgreSQL: a database per fixture ([`Postgres`], its builder), on a
//! cluster of stampede's own or a server reused by URL.
//!
//! - `cluster`: a server and its superuser's commands, templates, and the
//!   cluster as a [`Service`](super::Service) under a keeper;
//! - `install`: finding the programs, running `initdb`, its cache;
//! - `psql`: running statements through `psql`;
//! - `reuse`: a server named by `STAMPEDE_POSTGRES_URL`, and its sweep;
//! - `url`: reading and changing libpq URLs.

mod cluster;
mod install;
mod psql;
mod reuse;
mod url;

pub(crate) use install::server_user;
pub(crate) use reuse::URL_VAR;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::Running;
use super::free_port;
use super::instance::{self, Instance};
use super::private_dir::{self, Place};
use crate::error::Result;
use cluster::{Cluster, PostgresService, name_a_full_disk, new_database_name};
use install::find_bin;
use psql::Psql;

/// The variable naming the directory of PostgreSQL's programs.
pub const BIN_VAR: &str = "STAMPEDE_POSTGRES_BIN";

/// The superuser `initdb` creates, and every URL's user.
const SUPERUSER: &str = "postgres";

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
    /// [`Error::ServiceNotFound`](crate::Error::ServiceNotFound) when PostgreSQL's programs are missing;
    /// [`Error::ServiceStart`](crate::Error::ServiceStart) when the server exits during start or is
    /// not ready in time (with the end of its log); [`Error::ServiceDied`](crate::Error::ServiceDied)
    /// when the cluster died since the last fixture;
    /// [`Error::ServiceUnreachable`](crate::Error::ServiceUnreachable) when `STAMPEDE_POSTGRES_URL` is set
    /// and nothing answers there; [`Error::MissingEntry`](crate::Error::MissingEntry) without
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
    /// [`Error::ServiceDied`](crate::Error::ServiceDied) when the server is gone;
    /// [`Error::ServiceCommand`](crate::Error::ServiceCommand) when the server refuses.
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
    /// [`Error::ServiceCommand`](crate::Error::ServiceCommand).
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
            let dir = instance::server_dir(scratch.path())?;
            instance::hand_over(scratch.path(), user)?;
            let began = std::time::Instant::now();
            install::initdb(&bin, &dir.join("data"), user)?;
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
            url: url::with_database(&cluster.client_url, &database),
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
            let psql = Psql {
                path: find_bin(self.bin_dir.as_deref())?.join("psql"),
                own: false,
            };
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
        let mut service = PostgresService {
            bin: bin.clone(),
            tcp_port: None,
            settings: self.settings.clone(),
            ready_timeout: self.ready_timeout.unwrap_or(Duration::from_secs(30)),
            cache_root,
        };
        // A free port can be taken between the look and the server's bind
        // (by chance, or by a local user who watches for new servers):
        // another port, a few times.
        let mut tries = 0;
        let running = loop {
            service.tcp_port = if self.tcp { Some(free_port()?) } else { None };
            match super::start_in(&service, Place::Memory) {
                Err(e) if self.tcp && tries < 3 && cluster::port_was_taken(&e) => tries += 1,
                Err(e) => {
                    let base = private_dir::base(Place::Memory).unwrap_or_default();
                    return Err(name_a_full_disk(e, &base));
                }
                Ok(running) => break running,
            }
        };
        let tcp_port = service.tcp_port;
        let admin_url = running.addresses()[0].clone();
        let mut cluster = Cluster {
            client_url: admin_url.clone(),
            admin_url,
            psql: Psql {
                path: bin.join("psql"),
                own: true,
            },
            running: Some(running),
            templates: Mutex::new(Vec::new()),
        };
        if let Some(port) = tcp_port {
            cluster.client_url = cluster.protect_tcp(port)?;
            crate::addresses::remember(
                &format!("127.0.0.1:{port}"),
                "PostgreSQL, services::Postgres",
            );
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
