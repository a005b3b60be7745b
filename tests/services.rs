//! Services: a PostgreSQL database per fixture, a keeper that cleans up
//! after every kind of end, and the errors of a server that will not run.

#[path = "common/procs.rs"]
mod procs;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use procs::{is_gone, start_ignored_test, wait_until};
use stampede::Error;
use stampede::services::{Postgres, Ready, Server, Services};

stampede::entry!();

fn connect(pg: &Postgres) -> postgres::Client {
    postgres::Client::connect(pg.url(), postgres::NoTls).expect("connect to the fixture")
}

/// Every process on the machine whose command line mentions `dir`.
fn processes_mentioning(dir: &Path) -> Vec<String> {
    let needle = dir.to_string_lossy().into_owned();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(&needle)
            && !is_gone(entry.file_name().to_str().unwrap().parse().unwrap_or(0))
        {
            found.push(format!(
                "{}: {cmdline}",
                entry.file_name().to_string_lossy()
            ));
        }
    }
    found
}

/// Waits (up to 20 s) until nothing runs from `dir` and `dir` is gone.
fn assert_all_gone(dir: &Path, pids: &[u32]) {
    let gone = wait_until(Duration::from_secs(20), || {
        !dir.exists() && pids.iter().all(|&p| is_gone(p)) && processes_mentioning(dir).is_empty()
    });
    assert!(
        gone,
        "left behind: dir exists = {}, pids alive = {:?}, processes = {:?}",
        dir.exists(),
        pids.iter().filter(|&&p| !is_gone(p)).collect::<Vec<_>>(),
        processes_mentioning(dir)
    );
}

#[test]
fn fixtures_have_databases_of_their_own_and_reset_empties_them() {
    let a = Postgres::start().unwrap();
    let b = Postgres::start().unwrap();
    assert_ne!(a.url(), b.url());
    let mut ca = connect(&a);
    ca.batch_execute("CREATE TABLE t (x int); INSERT INTO t VALUES (1)")
        .unwrap();
    let mut cb = connect(&b);
    let err = cb.query("SELECT x FROM t", &[]).unwrap_err();
    assert_eq!(
        err.code(),
        Some(&postgres::error::SqlState::UNDEFINED_TABLE),
        "{err:?}"
    );
    drop(ca);
    a.reset().unwrap();
    let mut ca = connect(&a);
    assert!(ca.query("SELECT x FROM t", &[]).is_err());
    let name = b.database().to_owned();
    drop(cb);
    drop(b);
    let listed = ca
        .query("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .unwrap();
    assert!(
        listed.is_empty(),
        "dropped fixture's database {name} remains"
    );
}

/// The schema of the template tests: a table with two rows.
const JOBS: &str = "CREATE TABLE jobs (id int PRIMARY KEY, claimed_by int);
                    INSERT INTO jobs VALUES (1, NULL), (2, NULL);";

fn count_jobs(pg: &Postgres) -> i64 {
    connect(pg)
        .query_one("SELECT count(*) FROM jobs", &[])
        .unwrap()
        .get(0)
}

#[test]
fn a_template_gives_each_fixture_and_each_reset_its_schema() {
    let a = Postgres::builder().template_sql(JOBS).start().unwrap();
    let b = Postgres::builder().template_sql(JOBS).start().unwrap();
    connect(&a)
        .execute("INSERT INTO jobs VALUES (3, NULL)", &[])
        .unwrap();
    assert_eq!(count_jobs(&a), 3);
    assert_eq!(count_jobs(&b), 2);
    a.reset().unwrap();
    assert_eq!(count_jobs(&a), 2);
    let plain = Postgres::start().unwrap();
    assert!(connect(&plain).query("SELECT 1 FROM jobs", &[]).is_err());
}

#[test]
fn a_failing_template_script_says_why_and_leaves_no_database() {
    let host = Postgres::builder().private_cluster(true).start().unwrap();
    let admin = host.url().replace(host.database(), "postgres");
    let err = Postgres::builder()
        .reuse_url(&admin)
        .template_sql("CREATE TABLE broken (;")
        .start()
        .err()
        .expect("a broken script");
    let text = err.to_string();
    assert!(matches!(err, Error::ServiceCommand { .. }), "{text}");
    assert!(
        text.contains("template") && text.contains("syntax error"),
        "{text}"
    );
    // Fixtures in later processes find the template on the server: each
    // `reuse_url` fixture has a cluster handle of its own.
    let first = Postgres::builder()
        .reuse_url(&admin)
        .template_sql(JOBS)
        .start()
        .unwrap();
    let second = Postgres::builder()
        .reuse_url(&admin)
        .template_sql(JOBS)
        .start()
        .unwrap();
    assert_eq!(count_jobs(&second), 2);
    let mut names: Vec<String> = connect(&host)
        .query(
            "SELECT datname FROM pg_database WHERE datname LIKE 'stampede%'",
            &[],
        )
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    names.sort();
    let mut expected = vec![
        host.database().to_owned(),
        first.database().to_owned(),
        second.database().to_owned(),
    ];
    expected.sort();
    let templates: Vec<String> = names
        .iter()
        .filter(|n| n.starts_with("stampede_tpl_"))
        .cloned()
        .collect();
    names.retain(|n| !n.starts_with("stampede_tpl_"));
    assert_eq!(names, expected, "databases other than the fixtures'");
    assert_eq!(templates.len(), 1, "{templates:?}");
}

/// The schema of `a_template_another_role_made_first_is_not_used`, its own.
const LEDGER: &str = "CREATE TABLE ledger (id int PRIMARY KEY, note text);
INSERT INTO ledger VALUES (1, 'the test''s own');";

#[test]
fn a_template_another_role_made_first_is_not_used() {
    // The template's name follows from its SQL: learn it on a cluster of
    // its own, as anyone who can read the project could.
    let probe = Postgres::builder()
        .private_cluster(true)
        .template_sql(LEDGER)
        .start()
        .unwrap();
    let name: String = connect(&probe)
        .query_one(
            "SELECT datname FROM pg_database WHERE datname LIKE 'stampede_tpl_%'",
            &[],
        )
        .unwrap()
        .get(0);
    drop(probe);
    // On a shared server, another role with CREATEDB makes it first, with
    // a table of its own.
    let host = Postgres::builder().private_cluster(true).start().unwrap();
    let admin = host.url().replace(host.database(), "postgres");
    let mut su = connect(&host);
    su.batch_execute("CREATE ROLE mallory LOGIN CREATEDB")
        .unwrap();
    su.batch_execute(&format!("CREATE DATABASE \"{name}\" OWNER mallory"))
        .unwrap();
    let planted = host.url().replace(host.database(), &name);
    let mut theirs = postgres::Client::connect(&planted, postgres::NoTls).unwrap();
    theirs
        .batch_execute(
            "SET ROLE mallory; CREATE TABLE ledger (id int PRIMARY KEY, note text); \
             INSERT INTO ledger VALUES (1, 'mallory''s'); RESET ROLE",
        )
        .unwrap();
    drop(theirs);
    // The test's fixtures on that server: their own schema, their own role.
    for _ in 0..2 {
        let fixture = Postgres::builder()
            .reuse_url(&admin)
            .template_sql(LEDGER)
            .start()
            .unwrap();
        let row = connect(&fixture)
            .query_one(
                "SELECT note, (SELECT tableowner FROM pg_tables WHERE tablename = 'ledger') \
                 = current_user FROM ledger",
                &[],
            )
            .unwrap();
        assert_eq!(row.get::<_, String>(0), "the test's own");
        assert!(
            row.get::<_, bool>(1),
            "the fixture's table is another role's"
        );
    }
}

#[test]
fn a_tcp_fixture_answers_on_localhost_with_its_password_only() {
    let pg = Postgres::builder().tcp(true).start().unwrap();
    let rest = pg
        .url()
        .strip_prefix("postgresql://postgres:")
        .unwrap_or_else(|| panic!("no password in {}", pg.url()));
    let (password, address) = rest.split_once('@').unwrap();
    assert_eq!(password.len(), 32, "128 random bits in hex: {password}");
    assert!(address.starts_with("127.0.0.1:"), "{}", pg.url());
    let row = connect(&pg).query_one("SELECT 40 + 2", &[]).unwrap();
    assert_eq!(row.get::<_, i32>(0), 42);
    let wrong = pg.url().replace(password, &"0".repeat(32));
    let err = postgres::Client::connect(&wrong, postgres::NoTls)
        .err()
        .unwrap_or_else(|| panic!("{wrong} let us in"));
    assert_eq!(
        err.code(),
        Some(&postgres::error::SqlState::INVALID_PASSWORD),
        "{wrong}: refused, but not for its password: {err:?}"
    );
    // Without a password at all, as any local user would try.
    let port = address.split([':', '/']).nth(1).unwrap();
    let tried = std::process::Command::new("psql")
        .args(["-w", "-X", "-h", "127.0.0.1", "-p", port, "-U", "postgres"])
        .args(["-d", "postgres", "-c", "SELECT 1"])
        .env_remove("PGPASSWORD")
        .env_remove("PGPASSFILE")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&tried.stderr);
    assert!(
        !tried.status.success() && said.contains("password"),
        "psql without a password: {said}"
    );
    // The password file, for PGPASSFILE: this user's alone.
    let pgpass = pg.directory().unwrap().join("pgpass");
    let meta = std::fs::metadata(&pgpass).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let line = std::fs::read_to_string(&pgpass).unwrap();
    assert!(
        line.trim_end().ends_with(&format!(":postgres:{password}")),
        "{line}"
    );
}

#[test]
fn a_private_cluster_leaves_nothing_when_dropped() {
    let pg = Postgres::builder().private_cluster(true).start().unwrap();
    let dir = pg.directory().unwrap().to_owned();
    let pids = [pg.server_pid().unwrap(), pg.keeper_pid().unwrap()];
    let server = dir.join("server");
    assert!(server.join("data").is_dir());
    // The server's directory (socket, data) is closed to other users.
    let mode = std::fs::metadata(&server).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700, "{}: {mode:o}", server.display());
    connect(&pg).query_one("SELECT 1", &[]).unwrap();
    drop(pg);
    assert_all_gone(&dir, &pids);
}

/// Run by `the_keeper_cleans_up_after_its_test_process_is_killed`.
#[test]
#[ignore = "run by another test, which kills it"]
fn hold_a_cluster_until_killed() {
    let pg = Postgres::builder().private_cluster(true).start().unwrap();
    println!(
        "CLUSTER {} {} {}",
        pg.directory().unwrap().display(),
        pg.server_pid().unwrap(),
        pg.keeper_pid().unwrap()
    );
    std::io::stdout().flush().unwrap();
    std::thread::sleep(Duration::from_secs(120));
}

#[test]
fn the_keeper_cleans_up_after_its_test_process_is_killed() {
    let exe = std::env::current_exe().unwrap();
    let (mut holder, dir, pids) =
        procs::start_holder(&exe, "hold_a_cluster_until_killed", "CLUSTER");
    assert!(dir.is_dir());
    holder.kill().unwrap(); // SIGKILL
    holder.wait().unwrap();
    assert_all_gone(&dir, &pids);
}

#[test]
fn a_killed_keeper_is_swept_at_the_next_start() {
    let pg = Postgres::builder().private_cluster(true).start().unwrap();
    let dir = pg.directory().unwrap().to_owned();
    let server = pg.server_pid().unwrap();
    let keeper = pg.keeper_pid().unwrap();
    // SAFETY: signalling a child of this process that we have not reaped.
    unsafe { libc::kill(keeper as i32, libc::SIGKILL) };
    assert!(wait_until(Duration::from_secs(10), || is_gone(keeper)));
    assert!(
        !is_gone(server),
        "the server should outlive its killed keeper"
    );
    // /proc shows the keeper's main thread as a zombie a moment before its
    // last thread has closed the channel: look until the fixture notices.
    let mut result = pg.reset();
    wait_until(Duration::from_secs(10), || {
        result = pg.reset();
        result.is_err()
    });
    let err = result.unwrap_err();
    assert!(matches!(err, Error::ServiceDied { .. }), "{err}");
    assert!(err.to_string().contains("the service died"), "{err}");
    drop(pg);
    // The sweep runs once per process: run it in a fresh one.
    let exe = std::env::current_exe().unwrap();
    procs::assert_ignored_test_passes(&exe, "start_and_drop_a_private_cluster");
    assert_all_gone(&dir, &[server]);
    let left = shared_memory_created_by(server);
    assert!(left.is_empty(), "shared memory left: {left:?}");
}

/// The lines of `/proc/sysvipc/shm` for segments `pid` created.
fn shared_memory_created_by(pid: u32) -> Vec<String> {
    let table = std::fs::read_to_string("/proc/sysvipc/shm").unwrap_or_default();
    let mut lines = table.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let cpid = header
        .iter()
        .position(|&h| h == "cpid")
        .expect("a cpid column");
    lines
        .filter(|line| line.split_whitespace().nth(cpid) == Some(pid.to_string().as_str()))
        .map(str::to_owned)
        .collect()
}

/// Run by `a_killed_keeper_is_swept_at_the_next_start`.
#[test]
#[ignore = "run by another test"]
fn start_and_drop_a_private_cluster() {
    let pg = Postgres::builder().private_cluster(true).start().unwrap();
    connect(&pg).query_one("SELECT 1", &[]).unwrap();
    drop(pg);
    println!("INNER-OK");
}

#[test]
fn missing_programs_name_the_package_and_the_variable() {
    let empty = tempfile::tempdir().unwrap();
    let err = Postgres::builder()
        .bin_dir(empty.path())
        .start()
        .err()
        .expect("no programs, no server");
    let text = err.to_string();
    assert!(matches!(err, Error::ServiceNotFound { .. }), "{text}");
    assert!(text.contains("apt-get install postgresql"), "{text}");
    assert!(text.contains("STAMPEDE_POSTGRES_BIN"), "{text}");
}

/// Run alone by `failed_starts_leave_nothing_behind`: the failures, then
/// a look for anything of this process left on disk or running.
#[test]
#[ignore = "run alone by another test"]
fn failed_starts() {
    let err = Postgres::builder()
        .setting("no_such_setting", "1")
        .start()
        .err()
        .expect("a bad setting stops the server");
    let text = err.to_string();
    assert!(matches!(err, Error::ServiceStart { .. }), "{text}");
    assert!(text.contains("exited during start"), "{text}");
    assert!(text.contains("no_such_setting"), "{text}");

    let err = Server::new("sh")
        .args(["-c", "echo warming up; exec sleep 600"])
        .ready(Ready::LogLine("never printed".into()))
        .ready_timeout(Duration::from_millis(300))
        .start()
        .expect_err("never ready");
    let text = err.to_string();
    assert!(matches!(err, Error::ServiceStart { .. }), "{text}");
    assert!(text.contains("not ready after 300 ms"), "{text}");
    assert!(text.contains("warming up"), "{text}");

    let mine = format!("-{}-", std::process::id());
    let base = instance_base();
    let left: Vec<_> = std::fs::read_dir(&base)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().contains(&mine))
        .collect();
    assert!(left.is_empty(), "left on disk: {left:?}");
    let running = processes_mentioning(&base.join(format!("sh{mine}")));
    assert!(running.is_empty(), "left running: {running:?}");
    assert!(
        procs::own_children().iter().all(|&p| is_gone(p)),
        "children left: {:?}",
        procs::own_children()
    );
    println!("INNER-OK");
}

#[test]
fn failed_starts_leave_nothing_behind() {
    let exe = std::env::current_exe().unwrap();
    procs::assert_ignored_test_passes(&exe, "failed_starts");
}

#[test]
fn a_reuse_url_that_does_not_answer_names_the_variable() {
    let err = Postgres::builder()
        .reuse_url("postgresql://postgres@127.0.0.1:9/postgres")
        .start()
        .err()
        .expect("nothing listens on port 9");
    let text = err.to_string();
    assert!(matches!(err, Error::ServiceUnreachable { .. }), "{text}");
    assert!(text.contains("STAMPEDE_POSTGRES_URL"), "{text}");
    assert!(text.contains("stampede-services up postgres"), "{text}");
}

#[test]
fn a_reuse_url_that_is_not_a_url_says_so_not_that_nothing_answers() {
    let err = Postgres::builder()
        .reuse_url("not a url")
        .start()
        .err()
        .expect("not a URL");
    let text = err.to_string();
    assert!(matches!(err, Error::ServiceUrl { .. }), "{text}");
    for part in [
        "STAMPEDE_POSTGRES_URL is set to `not a url`",
        "not a postgres URL",
        "postgresql://",
        "unset STAMPEDE_POSTGRES_URL",
    ] {
        assert!(text.contains(part), "{part}: {text}");
    }
    assert!(!text.contains("nothing answers"), "{text}");
}

#[test]
fn a_reused_server_gets_a_fresh_database_per_fixture() {
    let server = Postgres::builder().private_cluster(true).start().unwrap();
    let admin = server.url().replace(server.database(), "postgres");
    let pg = Postgres::builder().reuse_url(&admin).start().unwrap();
    assert!(pg.directory().is_none());
    assert_ne!(pg.database(), server.database());
    connect(&pg)
        .batch_execute("CREATE TABLE t (x int)")
        .unwrap();
    let name = pg.database().to_owned();
    drop(pg);
    let listed = connect(&server)
        .query("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .unwrap();
    assert!(listed.is_empty());
}

/// Run as a server by `a_generic_server_is_ready_when_its_port_answers`.
#[test]
#[ignore = "a server for another test"]
fn echo_server() {
    let port: u16 = std::env::var("ECHO_PORT").unwrap().parse().unwrap();
    let host = std::env::var("ECHO_HOST").unwrap_or_else(|_| "127.0.0.1".into());
    let listener = std::net::TcpListener::bind((host.as_str(), port)).unwrap();
    for stream in listener.incoming() {
        let mut stream = stream.unwrap();
        let mut buf = [0u8; 64];
        let n = stream.read(&mut buf).unwrap_or(0);
        let _ = stream.write_all(&buf[..n]);
    }
}

#[test]
fn a_generic_server_is_ready_when_its_port_answers() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let exe = std::env::current_exe().unwrap();
    let server = Server::new(&exe)
        .args(["echo_server", "--exact", "--ignored", "--nocapture"])
        .env("ECHO_PORT", port.to_string())
        .ready(Ready::Port(port))
        .start()
        .unwrap();
    let mut stream = std::net::TcpStream::connect(&server.addresses()[0]).unwrap();
    stream.write_all(b"ping").unwrap();
    let mut back = [0u8; 4];
    stream.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"ping");
    let dir = server.dir().to_owned();
    let pids = [server.server_pid(), server.keeper_pid()];
    server.stop();
    assert_all_gone(&dir, &pids);
}

#[test]
fn servers_with_a_free_port_each_get_their_own_even_started_together() {
    let exe = std::env::current_exe().unwrap();
    let server = Server::new(&exe)
        .name("echo")
        .args(["echo_server", "--exact", "--ignored", "--nocapture"])
        .env("ECHO_PORT", "{port}")
        .free_port();
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| server.start().unwrap());
        let b = s.spawn(|| server.start().unwrap());
        (a.join().unwrap(), b.join().unwrap())
    });
    let (pa, pb) = (a.port().unwrap(), b.port().unwrap());
    assert_ne!(pa, pb, "two servers on one port");
    assert_eq!(a.addresses()[0], format!("127.0.0.1:{pa}"));
    assert!(
        a.dir()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("echo-")
    );
    for port in [pa, pb] {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.write_all(b"ping").unwrap();
        let mut back = [0u8; 4];
        stream.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"ping", "port {port}");
    }
}

/// Bug: a port another local user took first answered the readiness check,
/// and the test was handed that user's listener as its server.
#[test]
fn a_port_someone_else_listens_on_does_not_make_a_server_ready() {
    let squatter = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = squatter.local_addr().unwrap().port();
    let err = Server::new("sleep")
        .args(["30"])
        .ready(Ready::Port(port))
        .ready_timeout(Duration::from_millis(1500))
        .start()
        .expect_err("the squatter's port is not the server's");
    assert!(
        matches!(err, Error::ServiceStart { ref reason, .. } if reason.contains("not ready after 1500 ms")),
        "{err}"
    );
}

/// Bug: the port counted as the server's when the server listened on it
/// at another address (`::1`) while another user held `127.0.0.1` there.
#[test]
fn a_server_listening_at_another_address_than_the_squatter_is_not_ready() {
    let squatter = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = squatter.local_addr().unwrap().port();
    let exe = std::env::current_exe().unwrap();
    let err = Server::new(&exe)
        .args(["echo_server", "--exact", "--ignored", "--nocapture"])
        .env("ECHO_PORT", port.to_string())
        .env("ECHO_HOST", "::1")
        .ready(Ready::Port(port))
        .ready_timeout(Duration::from_millis(1500))
        .start()
        .expect_err("the port at 127.0.0.1 is the squatter's");
    assert!(matches!(err, Error::ServiceStart { .. }), "{err}");
}

/// Bug: a server run as another user (PostgreSQL as `postgres`, for a root
/// test) got the test process's whole environment, CI tokens included,
/// readable by that user in `/proc/<pid>/environ`.
#[test]
fn a_server_of_another_user_gets_no_secrets_from_the_environment() {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        println!("skipped: the server runs as this user, whose environment it is");
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let token = ("CI_DEPLOY_TOKEN", "s3cret-of-the-test");
    let mut holder = start_ignored_test(&exe, "hold_a_cluster_until_killed", &[token]);
    let mut lines = BufReader::new(holder.stdout.take().unwrap()).lines();
    let line = lines
        .find_map(|l| Some(l.ok()?.split_once("CLUSTER ")?.1.to_owned()))
        .expect("the holder started a cluster");
    let words: Vec<&str> = line.split_whitespace().collect();
    let server: u32 = words[1].parse().unwrap();
    let environ = std::fs::read(format!("/proc/{server}/environ")).unwrap();
    let environ = String::from_utf8_lossy(&environ).replace('\0', "\n");
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert!(
        !environ.contains(token.1),
        "the server's environment:\n{environ}"
    );
    assert!(environ.contains("PATH="), "{environ}");
}

/// Where instances live: `/tmp/stampede-<uid>`.
fn instance_base() -> PathBuf {
    use std::os::unix::fs::MetadataExt;
    let uid = std::fs::metadata("/proc/self").unwrap().uid();
    PathBuf::from(format!("/tmp/stampede-{uid}"))
}

/// The echo server as a project would declare it: a free port each start.
fn echo_api() -> Server {
    Server::new(std::env::current_exe().unwrap())
        .args(["echo_server", "--exact", "--ignored", "--nocapture"])
        .env("ECHO_PORT", "{port}")
        .free_port()
}

/// A project's own `stampede-services`: the built-ins and `echo-api`.
#[stampede::function]
fn project_command(words: Vec<String>) -> (String, String, u8) {
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    let said = Services::new().server("echo-api", echo_api()).run(&words);
    (said.shell, said.note, said.code)
}

/// `echo-api` reused through its variable, or started: its address,
/// whether it was reused; or the error's text.
#[stampede::function]
fn echo_api_for_a_test() -> Result<(String, bool), String> {
    let started = echo_api()
        .start_or_reuse("STAMPEDE_ECHO_API_URL")
        .map_err(|e| e.to_string())?;
    Ok((started.address().to_owned(), started.running().is_none()))
}

fn in_child<F, M>(tmp: &Path, extra: &[(&str, &str)], f: F, args: F::Args) -> F::Output
where
    F: stampede::Function<M>,
{
    let mut options = stampede::Options::new()
        .timeout(Duration::from_secs(60))
        .env("TMPDIR", tmp)
        .env("XDG_RUNTIME_DIR", "");
    for (k, v) in extra {
        options = options.env(k, v);
    }
    options
        .call_concurrently(1, f, args)
        .unwrap()
        .unwrap_all()
        .remove(0)
}

#[test]
fn a_projects_own_server_is_started_exported_reused_and_stopped_by_the_command() {
    let tmp = tempfile::tempdir().unwrap();
    let command = |words: &[&str]| {
        let words: Vec<String> = words.iter().map(|w| (*w).to_owned()).collect();
        in_child(tmp.path(), &[], project_command, words)
    };
    let (shell, note, code) = command(&["up", "echo-api"]);
    assert_eq!(code, 0, "{note}");
    let address = shell
        .strip_prefix("export STAMPEDE_ECHO_API_URL='")
        .and_then(|rest| rest.strip_suffix("'\n"))
        .unwrap_or_else(|| panic!("not one export: {shell}"))
        .to_owned();
    assert!(address.starts_with("127.0.0.1:"), "{address}");
    assert!(note.starts_with("echo-api: started (keeper pid "), "{note}");
    // A test with the variable set reuses it; without, starts its own.
    let with = [("STAMPEDE_ECHO_API_URL", address.as_str())];
    let reused = in_child(tmp.path(), &with, echo_api_for_a_test, ()).unwrap();
    assert_eq!(reused, (address.clone(), true));
    let own = in_child(
        tmp.path(),
        &[("STAMPEDE_ECHO_API_URL", "")],
        echo_api_for_a_test,
        (),
    )
    .unwrap();
    assert!(!own.1 && own.0 != address, "{own:?}");
    let (shell, _, code) = command(&["status"]);
    assert_eq!(code, 0);
    assert!(
        shell.contains("postgres: not running\n")
            && shell.contains("redis: not running\n")
            && shell.contains(&format!(
                "echo-api: running\nexport STAMPEDE_ECHO_API_URL='{address}'"
            )),
        "{shell}"
    );
    let (shell, _, code) = command(&["down"]);
    assert_eq!(code, 0);
    assert!(shell.contains("unset STAMPEDE_ECHO_API_URL\n"), "{shell}");
    let up_dir = tmp
        .path()
        .join(format!("stampede-{}", euid()))
        .join("echo-api-up");
    assert_all_gone(&up_dir, &[]);
    assert!(
        std::net::TcpStream::connect(&address).is_err(),
        "{address} still answers"
    );
    // Set, but nothing answers there any more: an error, not a new server.
    let gone = in_child(tmp.path(), &with, echo_api_for_a_test, ()).unwrap_err();
    assert!(
        gone.contains("STAMPEDE_ECHO_API_URL is set to") && gone.contains("nothing answers"),
        "{gone}"
    );
    let not_an_address = [("STAMPEDE_ECHO_API_URL", "echo please")];
    let bad = in_child(tmp.path(), &not_an_address, echo_api_for_a_test, ()).unwrap_err();
    assert!(bad.contains("names no host and port"), "{bad}");
}

fn euid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").unwrap().uid()
}

#[test]
fn declared_services_with_a_taken_or_bad_name_stop_the_command_before_it_starts() {
    let refused = |services: Services, words: &[&str], parts: &[&str]| {
        let said = services.run(words);
        assert_eq!(said.code, 2, "{}", said.note);
        assert!(said.shell.is_empty(), "{}", said.shell);
        for part in parts {
            assert!(said.note.contains(part), "{part}: {}", said.note);
        }
    };
    refused(
        Services::new().server("redis", echo_api()),
        &["up"],
        &["two services are named `redis`", "STAMPEDE_REDIS_URL"],
    );
    refused(
        Services::new()
            .server("api", echo_api())
            .server("api", echo_api()),
        &["status"],
        &["two services are named `api`"],
    );
    refused(
        Services::new().server("anchor", echo_api()),
        &["status"],
        &["`anchor` is the command's own"],
    );
    refused(
        Services::new().server("My API", echo_api()),
        &["status"],
        &["`My API` is not 1 to 20"],
    );
    let said = Services::new().run(&["up", "mysql"]);
    assert_eq!(said.code, 1);
    assert!(
        said.note
            .contains("no service `mysql`; it starts postgres and redis"),
        "{}",
        said.note
    );
    assert!(said.shell.is_empty());
}

/// A project's command whose only own service cannot start.
#[stampede::function]
fn failing_command(words: Vec<String>) -> (String, String, u8) {
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    let broken = Server::new("/nonexistent/api").free_port();
    let said = Services::new().server("api", broken).run(&words);
    (said.shell, said.note, said.code)
}

#[test]
fn an_up_that_starts_nothing_leaves_no_anchor_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let words = vec!["up".to_owned(), "api".to_owned()];
    let (shell, note, code) = in_child(tmp.path(), &[], failing_command, words);
    assert_eq!(code, 1, "{note}");
    assert!(shell.is_empty(), "{shell}");
    assert!(
        note.contains("api: ") && note.contains("/nonexistent/api"),
        "{note}"
    );
    let base = tmp.path().join(format!("stampede-{}", euid()));
    assert_all_gone(&base.join("anchor-up"), &[]);
    assert_all_gone(&base.join("api-up"), &[]);
}

#[test]
fn a_relative_program_path_is_the_callers_not_the_instance_directorys() {
    let exe = std::env::current_exe().unwrap();
    let here = std::env::current_dir().unwrap();
    // `../../…/path/to/exe`: relative to the working directory, wherever
    // the target directory is.
    let mut relative = PathBuf::new();
    for _ in here.components().skip(1) {
        relative.push("..");
    }
    relative.push(exe.strip_prefix("/").unwrap());
    assert!(relative.is_relative() && relative.components().count() > 1);
    let server = Server::new(relative)
        .args(["echo_server", "--exact", "--ignored", "--nocapture"])
        .env("ECHO_PORT", "{port}")
        .free_port()
        .start()
        .unwrap();
    let mut stream = std::net::TcpStream::connect(&server.addresses()[0]).unwrap();
    stream.write_all(b"ping").unwrap();
    let mut back = [0u8; 4];
    stream.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"ping");
}
