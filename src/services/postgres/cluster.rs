//! A PostgreSQL server and how stampede talks to it as its superuser: the
//! fixtures' databases, template databases, a TCP cluster's password; and
//! the cluster as a [`Service`] under a keeper.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::install::{cached_data_dir, server_user};
use super::psql::{Psql, psql, psql_script};
use super::{SUPERUSER, reuse, url};
use crate::error::{Error, Result};
use crate::services::instance;
use crate::services::{Launch, Ready, Running, Service};
use crate::sys::{self, Open};

/// The line PostgreSQL logs when it accepts connections.
const READY_LINE: &str = "database system is ready to accept connections";

/// A server and how to talk to it as its superuser.
pub(super) struct Cluster {
    /// A URL of the `postgres` database, for stampede's own commands: over
    /// the Unix socket when the cluster is stampede's.
    pub(super) admin_url: String,
    /// The URL fixtures' URLs are made from: over TCP, with the password,
    /// for a TCP cluster; else the same as `admin_url`.
    pub(super) client_url: String,
    pub(super) psql: Psql,
    /// `None` when reused.
    pub(super) running: Option<Running>,
    /// The templates built from `template_sql` scripts: (hash of the
    /// script, database name). Locked while one is built.
    pub(super) templates: Mutex<Vec<(u64, String)>>,
}

/// A fixture database's name, which the reuse sweep recognizes.
pub(super) fn new_database_name() -> String {
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
    pub(super) fn check(&self) -> Result<()> {
        self.running.as_ref().map_or(Ok(()), Running::check)
    }

    /// Gives the superuser a random password, the only way in over TCP
    /// (the cluster's `pg_hba.conf` asks TCP clients for one, and a role
    /// without a password cannot give one, so nobody got in before this),
    /// writes it to `pgpass` in the cluster's directory, and returns the
    /// URL that carries it. The statement travels on `psql`'s standard
    /// input, not its command line.
    pub(super) fn protect_tcp(&self, port: u16) -> Result<String> {
        let password = crate::services::random_password()?;
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
    /// its own, and the first rename wins. One found under the template's
    /// name is used only when the connecting role owns it: the name follows
    /// from the SQL, so on a shared server another role could have made it
    /// first, with its own tables in it (every fixture copied from it would
    /// then be that role's to read and change). Then this process keeps
    /// the copy it built, under its fixture's name.
    pub(super) fn template(&self, sql: &str) -> Result<String> {
        let hash = stable_hash(sql);
        let mut templates = self.templates.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, name)) = templates.iter().find(|(h, _)| *h == hash) {
            return Ok(name.clone());
        }
        let name = format!("stampede_tpl_{hash:016x}");
        // `Some(true)`: there, the connecting role's; `Some(false)`: there,
        // another role's; `None`: not there (or the question failed).
        let found = |cluster: &Cluster| {
            psql(
                &cluster.psql,
                &cluster.admin_url,
                &[format!(
                    "SELECT datdba = (SELECT oid FROM pg_roles WHERE rolname = current_user) \
                     FROM pg_database WHERE datname = '{name}'"
                )],
            )
            .ok()
            .and_then(|out| match out.trim() {
                "t" => Some(true),
                "f" => Some(false),
                _ => None,
            })
        };
        let chosen = match found(self) {
            Some(true) => name,
            others => {
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
                let url = url::with_database(&self.admin_url, &building);
                if let Err(message) = psql_script(&self.psql, &url, sql) {
                    drop_building();
                    self.check()?;
                    return Err(Error::ServiceCommand {
                        service: "postgres".to_owned(),
                        action: "running the template's SQL".to_owned(),
                        message,
                    });
                }
                if others == Some(false) {
                    building
                } else {
                    let renamed = self.sql(
                        "completing a template database",
                        &[format!(
                            "ALTER DATABASE \"{building}\" RENAME TO \"{name}\""
                        )],
                    );
                    match (renamed, found(self)) {
                        (Ok(()), _) => name,
                        // Another process of this role renamed its copy first.
                        (Err(_), Some(true)) => {
                            drop_building();
                            name
                        }
                        // Another role's took the name meanwhile.
                        (Err(_), Some(false)) => building,
                        (Err(e), None) => {
                            drop_building();
                            return Err(e);
                        }
                    }
                }
            }
        };
        templates.push((hash, chosen.clone()));
        Ok(chosen)
    }

    /// Runs each statement in its own transaction (`CREATE DATABASE` may
    /// not run in one).
    pub(super) fn sql(&self, action: &str, statements: &[String]) -> Result<()> {
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

/// The cluster as a [`Service`]: a copy of the cached data directory.
pub(super) struct PostgresService {
    pub(super) bin: PathBuf,
    pub(super) tcp_port: Option<u16>,
    pub(super) settings: Vec<(String, String)>,
    pub(super) ready_timeout: Duration,
    /// Where the cached `initdb` result lives.
    pub(super) cache_root: PathBuf,
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
        let server_dir = instance::server_dir(dir)?;
        let port = self.tcp_port.unwrap_or(5432);
        let socket = server_dir.join(format!(".s.PGSQL.{port}"));
        instance::check_socket_path("postgres", &socket)?;
        let data = server_dir.join("data");
        let io = |context, path: &Path| {
            let path = path.to_owned();
            move |source| Error::Path {
                context,
                path,
                source,
            }
        };
        sys::copy_tree_strict(&cached, &data, sys::effective_uid()).map_err(io(
            "copying the cached PostgreSQL data directory",
            &server_dir,
        ))?;
        fs::set_permissions(&data, fs::Permissions::from_mode(0o700))
            .map_err(io("setting the data directory's mode", &data))?;
        // Written for each cluster, whatever the cache holds: over the
        // socket no password, over TCP always one. It lives beside the
        // registry, this user's file, read by the server's user and not
        // writable by it, and the command line names it, which no setting
        // in the data directory can override.
        let hba = dir.join("pg_hba.conf");
        sys::open_no_follow(&hba, Open::New(0o644))
            .and_then(|mut file| {
                use std::io::Write;
                file.write_all(PG_HBA.as_bytes())
            })
            .map_err(io("writing the cluster's pg_hba.conf", &hba))?;
        let socket_dir = server_dir.to_string_lossy().into_owned();
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
            .args(["-c".to_owned(), format!("hba_file={}", hba.display())])
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

/// `error`, saying so when the file system holding `dir` is full: the
/// server's own message is then a crash or a failed write, far from the
/// cause.
pub(super) fn name_a_full_disk(error: Error, dir: &Path) -> Error {
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

/// Whether a start failed because its TCP port was taken meanwhile.
pub(super) fn port_was_taken(error: &Error) -> bool {
    matches!(error, Error::ServiceStart { log_tail, .. }
        if log_tail.contains("could not bind") && log_tail.contains("Address already in use"))
}
