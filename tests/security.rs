//! Security: what a hostile local user (`nobody`) can do to a root test
//! that uses `services::Postgres`, `services::Redis` or `stampede-services`, pinned shut.
//!
//! Each test gives the code under test a `TMPDIR` of its own (sticky and
//! world-writable, as /tmp is, so `nobody` can plant in it) and runs that
//! code in a process of its own, since the environment is process-wide.
//! Pinned: a base directory that is a symlink or another user's is refused
//! and nothing in it is created or signalled; registry lines that do not
//! prove a process is ours never lead to a signal; planted locks and cached
//! data directories are not used; a TCP cluster has a password that is on
//! no command line; a socket cluster is closed to other users; `up`/`down`
//! of `stampede-services` survive a race and a damaged registry; a test
//! killed during `initdb` leaves nothing running; a full file system is
//! named in the error. Cases that need a second user skip when not root.

#[path = "common/procs.rs"]
mod procs;

use std::fs;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::Duration;

use procs::{is_gone, start_ignored_test, wait_until};
use stampede::services::{Postgres, Redis};

stampede::entry!();

/// The hostile user's uid and gid.
const NOBODY: u32 = 65534;

/// How long a victim process may run (a cold `initdb` under load included).
const VICTIM_TIMEOUT: Duration = Duration::from_secs(90);

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Whether this process can act as `nobody` (it runs as root); prints
/// `skipped: …` for `case` otherwise.
fn can_act_as_nobody(case: &str) -> bool {
    let root = euid() == 0;
    if !root {
        println!("skipped: {case} needs a second user (nobody), and only root can act as one");
    }
    root
}

fn euid() -> u32 {
    // SAFETY: geteuid only reads this process's credentials.
    unsafe { libc::geteuid() }
}

/// PostgreSQL's programs (the highest `/usr/lib/postgresql/<major>/bin`),
/// given to the code under test through `STAMPEDE_POSTGRES_BIN` so that it
/// and these tests agree, and its major version.
fn pg_bin() -> (PathBuf, String) {
    let mut found: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL's server programs under /usr/lib/postgresql")
        .flatten()
        .filter_map(|e| {
            let major = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((major, bin))
        })
        .collect();
    found.sort();
    let (major, bin) = found
        .pop()
        .expect("an initdb under /usr/lib/postgresql/*/bin");
    (bin, major.to_string())
}

/// A fresh `TMPDIR` for the code under test: sticky and world-writable,
/// like /tmp, so that `nobody` can plant in it. Removed when dropped.
struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Sandbox {
        let dir = tempfile::Builder::new()
            .prefix("stampede-sec-")
            .tempdir_in("/tmp")
            .expect("a directory under /tmp");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o1777)).unwrap();
        Sandbox { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `$TMPDIR/stampede-<euid>`: where the code under test keeps everything.
    fn base(&self) -> PathBuf {
        self.path().join(format!("stampede-{}", euid()))
    }

    /// The environment of the code under test: this `TMPDIR`, no runtime
    /// directory, no reused server, the programs of [`pg_bin`].
    fn env(&self) -> Vec<(String, String)> {
        vec![
            ("TMPDIR".into(), self.path().display().to_string()),
            ("XDG_RUNTIME_DIR".into(), String::new()),
            ("STAMPEDE_POSTGRES_URL".into(), String::new()),
            ("STAMPEDE_REDIS_URL".into(), String::new()),
            (
                "STAMPEDE_POSTGRES_BIN".into(),
                pg_bin().0.display().to_string(),
            ),
        ]
    }

    /// Runs `f` once in a process of its own with [`env`](Sandbox::env)
    /// and `extra` on top; its value.
    fn run<F, M>(&self, extra: &[(&str, &str)], f: F, args: F::Args) -> F::Output
    where
        F: stampede::Function<M>,
    {
        let mut options = stampede::Options::new().timeout(VICTIM_TIMEOUT);
        for (k, v) in self.env() {
            options = options.env(k, v);
        }
        for &(k, v) in extra {
            options = options.env(k, v);
        }
        let outcomes = options
            .call_concurrently(1, f, args)
            .expect("start the process under test");
        assert!(
            outcomes.all_returned(),
            "the process under test did not return:\n{outcomes}"
        );
        match outcomes.into_vec().remove(0).into_value() {
            Ok(value) => value,
            Err(outcome) => panic!("the process under test did not return:\n{outcome}"),
        }
    }

    /// Waits (up to 20 s) until no process mentions this directory.
    fn assert_nothing_runs(&self) {
        let dir = self.path();
        let gone = wait_until(Duration::from_secs(20), || {
            processes_mentioning(dir).is_empty()
        });
        assert!(
            gone,
            "left running from {}: {:?}",
            dir.display(),
            processes_mentioning(dir)
        );
    }
}

/// Runs `script` with `sh -c` as `nobody`, from `/`, with a bare
/// environment; panics with its output when it fails.
fn as_nobody(script: &str) {
    let out = Command::new("sh")
        .args(["-c", script])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("HOME", "/nonexistent")
        .current_dir("/")
        .uid(NOBODY)
        .gid(NOBODY)
        .stdin(Stdio::null())
        .output()
        .expect("run sh as nobody");
    assert!(
        out.status.success(),
        "as nobody, `{script}` failed: {}",
        show(&out)
    );
}

/// `psql -w -X … -c 'select 1'` as `nobody` with no password in its
/// environment (or `password`); its output.
fn psql_as_nobody(host: &str, port: &str, password: Option<&str>) -> Output {
    let psql = pg_bin().0.join("psql");
    let mut command = Command::new(&psql);
    command
        .args(["-w", "-X", "-h", host, "-p", port])
        .args(["-U", "postgres", "-d", "postgres", "-c", "select 1"])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", "/nonexistent")
        .env("PGCONNECT_TIMEOUT", "5")
        .current_dir("/")
        .uid(NOBODY)
        .gid(NOBODY)
        .stdin(Stdio::null());
    if let Some(password) = password {
        command.env("PGPASSWORD", password);
    }
    command.output().expect("run psql as nobody")
}

/// Whether `nobody` can run psql at all: the control of the refusals.
fn psql_runs_as_nobody() -> Result<(), String> {
    let out = Command::new(pg_bin().0.join("psql"))
        .arg("--version")
        .env_clear()
        .current_dir("/")
        .uid(NOBODY)
        .gid(NOBODY)
        .output()
        .map_err(|e| format!("psql could not run as nobody: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("psql --version fails as nobody: {}", show(&out)))
    }
}

fn show(out: &Output) -> String {
    format!(
        "{}; stdout: {:?}; stderr: {:?}",
        out.status,
        String::from_utf8_lossy(&out.stdout).trim(),
        String::from_utf8_lossy(&out.stderr).trim()
    )
}

/// Field 22 of `/proc/<pid>/stat`: the process's start time.
fn start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(") ")?;
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Field 4 of `/proc/<pid>/stat`: the parent's pid.
fn parent_of(pid: u32) -> Option<u32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(") ")?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

fn cmdline(pid: u32) -> String {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    String::from_utf8_lossy(&raw).replace('\0', " ")
}

fn all_pids() -> Vec<u32> {
    fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

/// Every live process whose command line mentions `dir` (as `<dir>/…`).
fn processes_mentioning(dir: &Path) -> Vec<String> {
    let needle = format!("{}/", dir.display());
    all_pids()
        .into_iter()
        .filter(|&pid| !is_gone(pid))
        .filter_map(|pid| {
            let line = cmdline(pid);
            line.contains(&needle).then(|| format!("{pid}: {line}"))
        })
        .collect()
}

/// Every live process whose command line contains `text`.
fn cmdlines_containing(text: &str) -> Vec<String> {
    all_pids()
        .into_iter()
        .filter_map(|pid| {
            let line = cmdline(pid);
            line.contains(text).then(|| format!("{pid}: {line}"))
        })
        .collect()
}

/// `pid` and all its descendants now, each with its start time.
fn process_tree(pid: u32) -> Vec<(u32, u64)> {
    let parents: Vec<(u32, u32)> = all_pids()
        .into_iter()
        .filter_map(|p| Some((p, parent_of(p)?)))
        .collect();
    let mut tree = vec![pid];
    let mut i = 0;
    while i < tree.len() {
        let of = tree[i];
        tree.extend(parents.iter().filter(|&&(_, pp)| pp == of).map(|&(p, _)| p));
        i += 1;
    }
    tree.into_iter()
        .filter_map(|p| Some((p, start_time(p)?)))
        .collect()
}

/// Whether process `pid`, started at `start`, still runs (not a zombie).
fn alive(pid: u32, start: u64) -> bool {
    !is_gone(pid) && start_time(pid) == Some(start)
}

/// Processes this test started (directly or not) that must not outlive
/// it: stopped when dropped if they are still the same processes.
#[derive(Default)]
struct Leftovers(Vec<(u32, u64)>);

impl Drop for Leftovers {
    fn drop(&mut self) {
        // SIGTERM first (a keeper then stops its server cleanly), SIGKILL
        // to what is left after 10 s.
        for signal in [libc::SIGTERM, libc::SIGKILL] {
            for &(pid, start) in &self.0 {
                if alive(pid, start) {
                    // SAFETY: a process this test started, checked by start time.
                    unsafe { libc::kill(pid as i32, signal) };
                }
            }
            if wait_until(Duration::from_secs(10), || {
                self.0.iter().all(|&(pid, start)| !alive(pid, start))
            }) {
                return;
            }
        }
    }
}

/// A root `sleep 300`: the process a hostile registry names.
struct Sleeper(Child);

impl Sleeper {
    fn start() -> Sleeper {
        Sleeper(
            Command::new("sleep")
                .arg("300")
                .spawn()
                .expect("start sleep"),
        )
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Whether it was killed: looks for a second, as a signal takes a moment.
    fn was_killed(&mut self) -> Option<std::process::ExitStatus> {
        let mut status = None;
        wait_until(Duration::from_secs(1), || {
            status = self.0.try_wait().unwrap();
            status.is_some()
        });
        status
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The names in `dir`, sorted.
fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// `boot <id>`, as a registry names this boot.
fn boot_line() -> String {
    let id = fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    format!("boot {}", id.trim().replace('-', ""))
}

// ---------------------------------------------------------------------------
// The code under test, in processes of their own
// ---------------------------------------------------------------------------

/// Starts a fixture of each service, as the environment says: whether
/// each was reused (no directory of its own) and the Redis database.
#[stampede::function]
fn start_both_fixtures() -> Result<(bool, bool, u32), String> {
    let pg = Postgres::start().map_err(|e| e.to_string())?;
    let redis = Redis::start().map_err(|e| e.to_string())?;
    Ok((
        pg.directory().is_none(),
        redis.directory().is_none(),
        redis.db(),
    ))
}

/// Starts a fixture: its directory, or the error's text.
#[stampede::function]
fn start_fixture() -> Result<String, String> {
    let pg = Postgres::start().map_err(|e| e.to_string())?;
    Ok(pg
        .directory()
        .map(|d| d.display().to_string())
        .unwrap_or_default())
}

/// Starts a fixture: its directory, and what of this process lies in the
/// default places (`/dev/shm/stampede-<uid>`, `/tmp/stampede-<uid>`).
#[stampede::function]
fn start_fixture_and_look_elsewhere() -> Result<(String, Vec<String>), String> {
    let pg = Postgres::start().map_err(|e| e.to_string())?;
    let dir = pg
        .directory()
        .map(|d| d.display().to_string())
        .unwrap_or_default();
    let mine = format!("-{}-", std::process::id());
    let mut elsewhere = Vec::new();
    for base in ["/dev/shm", "/tmp"] {
        let base = Path::new(base).join(format!("stampede-{}", euid()));
        for name in names_in(&base) {
            if name.contains(&mine) {
                elsewhere.push(base.join(name).display().to_string());
            }
        }
    }
    Ok((dir, elsewhere))
}

/// Starts a fixture and asks its server for `cluster_name`.
#[stampede::function]
fn start_fixture_and_show_cluster_name() -> Result<String, String> {
    let pg = Postgres::start().map_err(|e| e.to_string())?;
    let mut client = postgres::Client::connect(pg.url(), postgres::NoTls)
        .map_err(|e| format!("connect to {}: {e}", pg.url()))?;
    let row = client
        .query_one("SHOW cluster_name", &[])
        .map_err(|e| e.to_string())?;
    Ok(row.get(0))
}

/// A TCP fixture, looked at as `nobody` and through `/proc`: what is wrong.
#[stampede::function]
fn tcp_fixture_problems() -> Result<Vec<String>, String> {
    let pg = Postgres::builder()
        .tcp(true)
        .start()
        .map_err(|e| e.to_string())?;
    let url = pg.url().to_owned();
    let mut problems = Vec::new();
    let Some(port) = url
        .split_once("@127.0.0.1:")
        .and_then(|(_, rest)| rest.split('/').next())
        .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    else {
        return Ok(vec![format!("no 127.0.0.1 port in the URL {url}")]);
    };
    psql_runs_as_nobody()?;
    let out = psql_as_nobody("127.0.0.1", port, None);
    if out.status.success() {
        problems.push(format!(
            "nobody logged in as postgres over TCP without a password: {}",
            show(&out)
        ));
    }
    let out = psql_as_nobody("127.0.0.1", port, Some("not-the-password"));
    if out.status.success() {
        problems.push(format!(
            "nobody logged in as postgres over TCP with a wrong password: {}",
            show(&out)
        ));
    }
    let password = url
        .strip_prefix("postgresql://postgres:")
        .and_then(|rest| rest.split_once('@'))
        .map(|(password, _)| password.to_owned())
        .filter(|p| !p.is_empty());
    let Some(password) = password else {
        problems.push(format!(
            "the URL is not postgresql://postgres:<password>@127.0.0.1:<port>/<db>: {url}"
        ));
        return Ok(problems);
    };
    if let Err(e) = postgres::Client::connect(&url, postgres::NoTls)
        .and_then(|mut c| c.query_one("SELECT 1", &[]))
    {
        problems.push(format!("the URL with its password does not work: {e}"));
    }
    let mut seen = cmdlines_containing(&password);
    // Fresh fixtures (and resets) on the same cluster while /proc is read.
    let done = Arc::new(AtomicBool::new(false));
    let creating = std::thread::spawn({
        let done = done.clone();
        move || {
            let mut errors = Vec::new();
            for _ in 0..3 {
                match Postgres::builder().tcp(true).start() {
                    Ok(more) => {
                        if let Err(e) = more.reset() {
                            errors.push(e.to_string());
                        }
                    }
                    Err(e) => errors.push(e.to_string()),
                }
            }
            done.store(true, Ordering::SeqCst);
            errors
        }
    });
    while !done.load(Ordering::SeqCst) {
        seen.extend(cmdlines_containing(&password));
    }
    for error in creating.join().unwrap() {
        problems.push(format!("a further TCP fixture failed: {error}"));
    }
    seen.sort();
    seen.dedup();
    if !seen.is_empty() {
        problems.push(format!("the password is on command lines: {seen:?}"));
    }
    drop(pg);
    Ok(problems)
}

/// A Unix-socket fixture, looked at as `nobody`: what is wrong.
#[stampede::function]
fn socket_fixture_problems() -> Result<Vec<String>, String> {
    let pg = Postgres::start().map_err(|e| e.to_string())?;
    let url = pg.url().to_owned();
    let param = |name: &str| {
        let query = url.split_once('?')?.1;
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .map(str::to_owned)
    };
    let (Some(host), Some(port)) = (param("host"), param("port")) else {
        return Ok(vec![format!("no host= and port= in the URL {url}")]);
    };
    let mut problems = Vec::new();
    psql_runs_as_nobody()?;
    let out = psql_as_nobody(&host, &port, None);
    if out.status.success() {
        problems.push(format!(
            "nobody connected as postgres through the socket in {host}: {}",
            show(&out)
        ));
    }
    match fs::metadata(&host) {
        Ok(meta) if meta.mode() & 0o077 != 0 => problems.push(format!(
            "the socket directory {host} has mode {:04o}: group or others have access",
            meta.mode() & 0o7777
        )),
        Ok(_) => {}
        Err(e) => problems.push(format!("the socket directory {host}: {e}")),
    }
    let tmpdir = std::env::var("TMPDIR").unwrap_or_default();
    let base = format!("{tmpdir}/stampede-{}/", euid());
    if !host.starts_with(&base) {
        problems.push(format!("the socket directory {host} is not under {base}"));
    }
    Ok(problems)
}

/// One fixture, reset from 4 threads at once, 3 times: the errors.
#[stampede::function]
fn reset_from_four_threads() -> Result<Vec<String>, String> {
    let pg = Postgres::start().map_err(|e| e.to_string())?;
    let mut errors = Vec::new();
    for round in 0..3 {
        let barrier = Barrier::new(4);
        let results: Vec<Result<(), String>> = std::thread::scope(|s| {
            let threads: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        barrier.wait();
                        pg.reset().map_err(|e| e.to_string())
                    })
                })
                .collect();
            threads.into_iter().map(|t| t.join().unwrap()).collect()
        });
        for (thread, result) in results.into_iter().enumerate() {
            if let Err(e) = result {
                errors.push(format!("round {round}, thread {thread}: {e}"));
            }
        }
    }
    Ok(errors)
}

/// Run by `a_test_killed_during_a_cold_initdb_leaves_nothing_running`,
/// which kills it with SIGKILL while `initdb` runs.
#[test]
#[ignore = "run by another test, which kills it"]
fn start_with_a_cold_cache() {
    let pg = Postgres::start();
    println!("STARTED {:?}", pg.as_ref().map(|p| p.url().to_owned()));
    if pg.is_ok() {
        std::thread::sleep(Duration::from_secs(120));
    }
}

/// Run by `a_full_file_system_is_named_in_the_error`, on a small tmpfs.
#[test]
#[ignore = "run by another test, on a small tmpfs"]
fn start_on_a_full_file_system() {
    match Postgres::start() {
        Ok(pg) => println!("RESULT started: {}", pg.url()),
        Err(e) => println!("RESULT error: {e}"),
    }
    println!("INNER-OK");
}

// ---------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------

/// Bug: the sweep read registries in a base directory `nobody` had made,
/// and SIGKILLed whatever pid they named — any process, as root.
#[test]
fn a_registry_planted_by_another_user_kills_nothing() {
    if !can_act_as_nobody("a_registry_planted_by_another_user_kills_nothing") {
        return;
    }
    let sandbox = Sandbox::new();
    let base = sandbox.base();
    let mut sleeper = Sleeper::start();
    let pid = sleeper.pid();
    let start = start_time(pid).expect("the sleep's start time");
    let planted = base.join("planted-1-0");
    as_nobody(&format!(
        "mkdir -m 0777 '{base}' && mkdir '{planted}' && \
         printf '%s\\nowner 1 0\\nserver {pid} {start}\\n' '{boot}' > '{planted}/registry'",
        base = base.display(),
        planted = planted.display(),
        boot = boot_line(),
    ));
    let result = sandbox.run(&[], start_fixture, ());
    let killed = sleeper.was_killed();
    assert!(
        killed.is_none(),
        "root's sleep (pid {pid}), named by nobody's registry, was killed: {killed:?}"
    );
    let err = result.expect_err("a start in a base directory nobody made should be refused");
    assert!(
        err.contains(&base.display().to_string()) && err.contains("uid 65534"),
        "the refusal names neither the directory {} nor its owner (uid 65534): {err}",
        base.display()
    );
    assert_eq!(
        names_in(&base),
        ["planted-1-0"],
        "created in nobody's base directory"
    );
    assert_eq!(
        names_in(&planted),
        ["registry"],
        "created in nobody's instance directory"
    );
    sandbox.assert_nothing_runs();
}

/// Bug: a `server <pid> <start>` line (pid and start time only) was enough
/// to SIGKILL a process once its keeper was dead — a reused pid with the
/// same start time, or a line written by anyone, killed a stranger.
#[test]
fn an_old_format_registry_line_is_never_signalled() {
    let sandbox = Sandbox::new();
    let first = sandbox
        .run(&[], start_fixture, ())
        .unwrap_or_else(|e| panic!("the first start failed: {e}"));
    let base = Path::new(&first)
        .parent()
        .unwrap_or_else(|| panic!("no base above the instance {first}"))
        .to_owned();
    fs::create_dir_all(&base).unwrap();
    let mut sleeper = Sleeper::start();
    let pid = sleeper.pid();
    let start = start_time(pid).expect("the sleep's start time");
    let mut dead = Command::new("true").spawn().unwrap();
    let dead_pid = dead.id();
    dead.wait().unwrap();
    let planted = base.join(format!("postgres-{dead_pid}-0"));
    struct Remove(PathBuf);
    impl Drop for Remove {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
    let _remove = Remove(planted.clone());
    fs::DirBuilder::new().create(&planted).unwrap();
    fs::set_permissions(&planted, fs::Permissions::from_mode(0o700)).unwrap();
    fs::write(
        planted.join("registry"),
        format!(
            "{}\nowner {dead_pid} 1\nkeeper {dead_pid} 1\nserver {pid} {start}\n",
            boot_line()
        ),
    )
    .unwrap();
    let second = sandbox.run(&[], start_fixture, ());
    let killed = sleeper.was_killed();
    assert!(
        killed.is_none(),
        "the sweep of {} signalled pid {pid} (a sleep) on an old-format line \
         `server {pid} {start}`: {killed:?}",
        base.display()
    );
    second.unwrap_or_else(|e| panic!("the second start failed: {e}"));
    sandbox.assert_nothing_runs();
}

/// Bug: a TCP cluster trusted every local connection: any user could log
/// in as the superuser `postgres` on 127.0.0.1.
#[test]
fn a_tcp_cluster_has_no_passwordless_superuser() {
    if !can_act_as_nobody("a_tcp_cluster_has_no_passwordless_superuser") {
        return;
    }
    let sandbox = Sandbox::new();
    let problems = sandbox
        .run(&[], tcp_fixture_problems, ())
        .unwrap_or_else(|e| panic!("the TCP fixture did not start: {e}"));
    assert!(problems.is_empty(), "{problems:#?}");
    sandbox.assert_nothing_runs();
}

/// Bug: a base directory that was a symlink was followed: instances were
/// created wherever `nobody` pointed it.
#[test]
fn a_symlinked_base_directory_is_refused() {
    if !can_act_as_nobody("a_symlinked_base_directory_is_refused") {
        return;
    }
    let sandbox = Sandbox::new();
    let base = sandbox.base();
    let theirs = sandbox.path().join("nobody-owned");
    as_nobody(&format!(
        "mkdir '{theirs}' && ln -s '{theirs}' '{base}'",
        theirs = theirs.display(),
        base = base.display()
    ));
    let result = sandbox.run(&[], start_fixture, ());
    assert_eq!(
        names_in(&theirs),
        Vec::<String>::new(),
        "created through the symlink {} in nobody's directory",
        base.display()
    );
    let err = result.expect_err("a start through a symlinked base should be refused");
    assert!(
        err.contains(&base.display().to_string()) && err.contains("symlink"),
        "the refusal names neither {} nor a symlink: {err}",
        base.display()
    );
    sandbox.assert_nothing_runs();
}

/// Bug: the cache's lock file was opened with `File::create`, following a
/// planted symlink: root truncated any file `nobody` pointed it at.
#[test]
fn a_planted_lock_symlink_truncates_nothing() {
    if !can_act_as_nobody("a_planted_lock_symlink_truncates_nothing") {
        return;
    }
    let sandbox = Sandbox::new();
    let base = sandbox.base();
    let (_, major) = pg_bin();
    let private = tempfile::tempdir().unwrap(); // 0700, root's
    let precious = private.path().join("precious");
    let content = "root's own file: not to be truncated\n";
    fs::write(&precious, content).unwrap();
    let cache = base.join("cache");
    as_nobody(&format!(
        "mkdir -m 0777 '{base}' && mkdir -m 0777 '{cache}' && \
         ln -s '{precious}' '{cache}/postgres-{major}.lock'",
        base = base.display(),
        cache = cache.display(),
        precious = precious.display(),
    ));
    let result = sandbox.run(&[("HOME", ""), ("XDG_CACHE_HOME", "")], start_fixture, ());
    assert_eq!(
        fs::read_to_string(&precious).unwrap(),
        content,
        "root's file behind the planted lock {}/postgres-{major}.lock was changed",
        cache.display()
    );
    let err = result.expect_err("a start in a base directory nobody made should be refused");
    assert!(
        err.contains(&base.display().to_string()) && err.contains("uid 65534"),
        "the refusal names neither the directory {} nor its owner (uid 65534): {err}",
        base.display()
    );
    assert_eq!(names_in(&base), ["cache"], "created in nobody's base");
    assert_eq!(
        names_in(&cache),
        [format!("postgres-{major}.lock")],
        "created in nobody's cache"
    );
    sandbox.assert_nothing_runs();
}

/// Bug: a cached `initdb` result was used whoever had made it: `nobody`
/// planted a data directory with settings of its choosing (any setting,
/// `archive_command` included, runs as the server's user).
#[test]
fn a_planted_cached_data_directory_is_not_used() {
    if !can_act_as_nobody("a_planted_cached_data_directory_is_not_used") {
        return;
    }
    let (bin, major) = pg_bin();
    // A cache of nobody's own, given as XDG_CACHE_HOME (the base is ours)...
    let given = Sandbox::new();
    let theirs = given.path().join("nobody-cache");
    let planted = theirs.join(format!("stampede/postgres-{major}/data"));
    as_nobody(&format!(
        "mkdir -p '{parent}' && \
         '{initdb}' -D '{planted}' -U postgres --auth=trust -E UTF8 --locale=C \
             --no-sync --no-instructions >/dev/null && \
         echo \"cluster_name = 'planted'\" >> '{planted}/postgresql.auto.conf'",
        parent = planted.parent().unwrap().display(),
        initdb = bin.join("initdb").display(),
        planted = planted.display(),
    ));
    // ...and the fallback cache, in a base nobody made.
    let fallen = Sandbox::new();
    let base = fallen.base();
    let fallback = base.join(format!("cache/postgres-{major}"));
    as_nobody(&format!(
        "mkdir -m 0777 '{base}' && mkdir -p '{fallback}' && cp -a '{planted}' '{fallback}/data'",
        base = base.display(),
        fallback = fallback.display(),
        planted = planted.display(),
    ));
    let theirs = theirs.display().to_string();
    for (sandbox, case, cache_home) in [
        (
            &given,
            "XDG_CACHE_HOME is a directory of nobody's",
            theirs.as_str(),
        ),
        (&fallen, "the fallback cache is in a base nobody made", ""),
    ] {
        let env = [("HOME", ""), ("XDG_CACHE_HOME", cache_home)];
        let result = sandbox.run(&env, start_fixture_and_show_cluster_name, ());
        assert_ne!(
            result.as_deref(),
            Ok("planted"),
            "{case}: the server runs on nobody's planted data directory"
        );
    }
    given.assert_nothing_runs();
    fallen.assert_nothing_runs();
}

/// Bug: a cached data directory that others can write to was copied and
/// run as it was: anyone could have changed its settings first.
#[test]
fn a_cached_data_directory_writable_by_others_is_ignored() {
    // initdb refuses root: the data directory is made as nobody.
    if !can_act_as_nobody("a_cached_data_directory_writable_by_others_is_ignored") {
        return;
    }
    let sandbox = Sandbox::new();
    let (bin, major) = pg_bin();
    let made = sandbox.path().join("made-by-initdb");
    as_nobody(&format!(
        "'{initdb}' -D '{made}' -U postgres --auth=trust -E UTF8 --locale=C \
             --no-sync --no-instructions >/dev/null && \
         echo \"cluster_name = 'planted'\" >> '{made}/postgresql.auto.conf'",
        initdb = bin.join("initdb").display(),
        made = made.display(),
    ));
    // Our own cache, but its data directory is open to everyone.
    let cache = tempfile::tempdir_in("/tmp").unwrap();
    let data = cache.path().join(format!("stampede/postgres-{major}/data"));
    fs::create_dir_all(data.parent().unwrap()).unwrap();
    let copied = Command::new("cp")
        .arg("-a")
        .arg(&made)
        .arg(&data)
        .status()
        .unwrap();
    assert!(
        copied.success(),
        "cp -a {} {}",
        made.display(),
        data.display()
    );
    let owned = Command::new("chown")
        .args(["-R", &format!("{}:0", euid())])
        .arg(&data)
        .status()
        .unwrap();
    assert!(owned.success(), "chown -R {}", data.display());
    fs::set_permissions(&data, fs::Permissions::from_mode(0o777)).unwrap();
    let cache_home = cache.path().display().to_string();
    let result = sandbox.run(
        &[("XDG_CACHE_HOME", &cache_home)],
        start_fixture_and_show_cluster_name,
        (),
    );
    let name = result.unwrap_or_else(|e| {
        panic!("a start with a world-writable cached data directory should still succeed: {e}")
    });
    assert_ne!(
        name,
        "planted",
        "the server runs on the world-writable cached data directory {}",
        data.display()
    );
    sandbox.assert_nothing_runs();
}

/// Bug: a base directory that anyone could write to was used as it was:
/// others could plant registries, locks and caches in it.
#[test]
fn a_world_writable_base_is_refused() {
    let sandbox = Sandbox::new();
    let base = sandbox.base();
    fs::create_dir(&base).unwrap();
    fs::set_permissions(&base, fs::Permissions::from_mode(0o777)).unwrap();
    let result = sandbox.run(&[], start_fixture, ());
    let err = result.expect_err("a start in a world-writable base should be refused");
    assert!(
        err.contains(&base.display().to_string()) && err.contains("0777"),
        "the refusal names neither the directory {} nor its mode 0777: {err}",
        base.display()
    );
    assert_eq!(
        names_in(&base),
        Vec::<String>::new(),
        "created in the world-writable base"
    );
    sandbox.assert_nothing_runs();
}

/// Serializes the `stampede-services` tests: a build that ignores `TMPDIR`
/// would have them share one `postgres-up` directory.
static SERVICES_CLI: Mutex<()> = Mutex::new(());

/// Runs `stampede-services <args>` with `env`.
fn services(env: &[(String, String)], args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_stampede-services"))
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .output()
        .expect("run stampede-services")
}

/// Runs `stampede-services down` with `env` when dropped.
struct DownAtEnd(Vec<(String, String)>);

impl Drop for DownAtEnd {
    fn drop(&mut self) {
        let _ = services(&self.0, &["down"]);
    }
}

/// The `stampede-services` processes whose environment has `TMPDIR=<dir>`.
fn services_processes_of(dir: &Path) -> Vec<u32> {
    let exe = fs::canonicalize(env!("CARGO_BIN_EXE_stampede-services")).unwrap();
    let var = format!("TMPDIR={}", dir.display());
    all_pids()
        .into_iter()
        .filter(|&pid| !is_gone(pid))
        .filter(|&pid| fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|e| e == exe))
        .filter(|&pid| {
            fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|&b| b == 0).any(|kv| kv == var.as_bytes()))
        })
        .collect()
}

/// Bug: with a damaged `postgres-up/registry`, `status` said "not running"
/// and `down` removed the directory but left the keeper and its server
/// running for ever, on a socket nobody knew about.
#[test]
fn down_stops_a_server_whose_registry_is_damaged() {
    let _one_at_a_time = SERVICES_CLI.lock().unwrap_or_else(|e| e.into_inner());
    let sandbox = Sandbox::new();
    let env = sandbox.env();
    let _down = DownAtEnd(env.clone());
    let up = services(&env, &["up", "postgres"]);
    assert!(
        up.status.success() && String::from_utf8_lossy(&up.stdout).contains("export "),
        "up failed: {}",
        show(&up)
    );
    // Two keepers outlive `up`: PostgreSQL's, working in `postgres-up`,
    // and the anchor's.
    let keepers = services_processes_of(sandbox.path());
    let in_dir = |name: &str| -> Vec<u32> {
        keepers
            .iter()
            .copied()
            .filter(|&p| fs::read_link(format!("/proc/{p}/cwd")).is_ok_and(|c| c.ends_with(name)))
            .collect()
    };
    let (postgres, anchor) = (in_dir("postgres-up"), in_dir("anchor-up"));
    let ([keeper], [_], 2) = (&postgres[..], &anchor[..], keepers.len()) else {
        panic!(
            "not one keeper for postgres and one for the anchor outlive `up`: {keepers:?} \
             (postgres {postgres:?}, anchor {anchor:?})"
        );
    };
    let keeper = *keeper;
    let mut leftovers = Leftovers::default();
    leftovers.0.extend(process_tree(keeper));
    // The server: the keeper's process started with `-D <…>/postgres-up/…`.
    let server = process_tree(keeper)
        .into_iter()
        .map(|(p, _)| p)
        .find(|&p| {
            let line = cmdline(p);
            line.split_whitespace().any(|w| w == "-D") && line.contains("/postgres-up/")
        })
        .unwrap_or_else(|| {
            panic!(
                "no server with `-D …/postgres-up/…` under the keeper {keeper}: {:?}",
                process_tree(keeper)
                    .iter()
                    .map(|&(p, _)| format!("{p}: {}", cmdline(p)))
                    .collect::<Vec<_>>()
            )
        });
    let server_line = cmdline(server);
    let data = server_line
        .split_whitespace()
        .skip_while(|&w| w != "-D")
        .nth(1)
        .unwrap_or_default();
    let up_dir = Path::new(data)
        .ancestors()
        .find(|a| a.file_name().is_some_and(|n| n == "postgres-up"))
        .unwrap_or_else(|| panic!("no postgres-up directory in {server_line}"))
        .to_owned();
    let keeper_start = start_time(keeper).unwrap();
    let server_start = start_time(server).unwrap();

    fs::write(up_dir.join("registry"), "x\n").unwrap();
    let status = services(&env, &["status"]);
    assert!(
        !status.status.success() && show(&status).contains("damaged"),
        "status with a damaged registry should fail and say \"damaged\": {}",
        show(&status)
    );
    let down = services(&env, &["down"]);
    assert!(down.status.success(), "down failed: {}", show(&down));
    let stopped = wait_until(Duration::from_secs(20), || {
        !alive(keeper, keeper_start) && !alive(server, server_start)
    });
    assert!(
        stopped,
        "after down: keeper {keeper} alive = {}, server {server} alive = {}",
        alive(keeper, keeper_start),
        alive(server, server_start)
    );
    assert!(
        !up_dir.exists(),
        "down left {}: {:?}",
        up_dir.display(),
        names_in(&up_dir)
    );
    assert_eq!(
        up_dir,
        sandbox.base().join("postgres-up"),
        "the up directory is not under TMPDIR"
    );
    sandbox.assert_nothing_runs();
}

/// Bug: two `up` at the same moment raced to create `postgres-up` and the
/// loser failed; `down` printed nothing a shell could `eval`.
#[test]
fn concurrent_ups_share_one_server_and_down_says_unset() {
    let _one_at_a_time = SERVICES_CLI.lock().unwrap_or_else(|e| e.into_inner());
    let sandbox = Sandbox::new();
    let env = sandbox.env();
    let _down = DownAtEnd(env.clone());
    let spawn_up = || {
        Command::new(env!("CARGO_BIN_EXE_stampede-services"))
            .args(["up", "postgres"])
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run stampede-services up")
    };
    let (a, b) = (spawn_up(), spawn_up());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let export = |out: &Output| {
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find(|l| l.starts_with("export STAMPEDE_POSTGRES_URL='"))
            .map(str::to_owned)
    };
    assert!(
        a.status.success() && b.status.success(),
        "two ups at once:\nfirst: {}\nsecond: {}",
        show(&a),
        show(&b)
    );
    assert!(
        export(&a).is_some() && export(&a) == export(&b),
        "two ups at once printed different exports:\nfirst: {}\nsecond: {}",
        show(&a),
        show(&b)
    );
    let down = services(&env, &["down"]);
    let said_unset = String::from_utf8_lossy(&down.stdout)
        .lines()
        .any(|l| l.trim() == "unset STAMPEDE_POSTGRES_URL");
    assert!(
        down.status.success() && said_unset,
        "down should exit 0 and print `unset STAMPEDE_POSTGRES_URL` on stdout: {}",
        show(&down)
    );
    let up_dir = sandbox.base().join("postgres-up");
    assert!(
        wait_until(Duration::from_secs(20), || !up_dir.exists()),
        "down left {}",
        up_dir.display()
    );
    sandbox.assert_nothing_runs();
}

#[test]
fn up_starts_every_service_and_fixtures_reuse_them_through_their_variables() {
    let _one_at_a_time = SERVICES_CLI.lock().unwrap_or_else(|e| e.into_inner());
    let sandbox = Sandbox::new();
    let env = sandbox.env();
    let _down = DownAtEnd(env.clone());
    let up = services(&env, &["up"]);
    let stdout = String::from_utf8_lossy(&up.stdout).into_owned();
    let exported = |variable: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("export {variable}='")))
            .and_then(|rest| rest.strip_suffix('\''))
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("`up` exported no {variable}: {}", show(&up)))
    };
    assert!(up.status.success(), "{}", show(&up));
    let pg_url = exported("STAMPEDE_POSTGRES_URL");
    let redis_url = exported("STAMPEDE_REDIS_URL");
    assert!(redis_url.starts_with("redis+unix://"), "{redis_url}");
    let (pg_reused, redis_reused, db) = sandbox
        .run(
            &[
                ("STAMPEDE_POSTGRES_URL", &pg_url),
                ("STAMPEDE_REDIS_URL", &redis_url),
            ],
            start_both_fixtures,
            (),
        )
        .unwrap();
    assert!(
        pg_reused && redis_reused,
        "a fixture started a server of its own"
    );
    assert_eq!(db, 1, "the first claim on a fresh server is database 1");
    let status = services(&env, &["status"]);
    let text = String::from_utf8_lossy(&status.stdout);
    for part in ["postgres: running", "redis: running", &redis_url] {
        assert!(text.contains(part), "{part}: {}", show(&status));
    }
    let unknown = services(&env, &["up", "mysql"]);
    assert_eq!(unknown.status.code(), Some(1), "{}", show(&unknown));
    let said = String::from_utf8_lossy(&unknown.stderr);
    assert!(
        said.contains("no service `mysql`") && said.contains("postgres and redis"),
        "{said}"
    );
    let down = services(&env, &["down", "redis"]);
    let text = String::from_utf8_lossy(&down.stdout);
    assert_eq!(text.trim(), "unset STAMPEDE_REDIS_URL", "{}", show(&down));
    assert!(
        wait_until(Duration::from_secs(20), || !sandbox
            .base()
            .join("redis-up")
            .exists()),
        "down left redis-up"
    );
    let status = services(&env, &["status"]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains("redis: not running") && text.contains("postgres: running"),
        "down redis stopped more or less than redis: {}",
        show(&status)
    );
    let down = services(&env, &["down"]);
    assert!(down.status.success(), "{}", show(&down));
    sandbox.assert_nothing_runs();
}

/// `redis-cli <args>` as `nobody`, with `env` only; its output.
fn redis_cli_as_nobody(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new("redis-cli")
        .args(args)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", "/nonexistent")
        .envs(env.iter().copied())
        .current_dir("/")
        .uid(NOBODY)
        .gid(NOBODY)
        .stdin(Stdio::null())
        .output()
        .expect("run redis-cli as nobody")
}

#[test]
fn a_redis_server_lets_no_other_user_in() {
    if !can_act_as_nobody("a_redis_server_lets_no_other_user_in") {
        return;
    }
    let redis = Redis::builder().tcp(true).start().unwrap();
    let url = redis.url().to_owned();
    let (password, rest) = url
        .strip_prefix("redis://:")
        .and_then(|r| r.split_once('@'))
        .expect("a password in a TCP fixture's URL");
    let port = rest
        .split('/')
        .next()
        .unwrap()
        .rsplit_once(':')
        .unwrap()
        .1
        .to_owned();
    let dir = redis.directory().unwrap().to_owned();
    let socket = dir.join("server/redis.sock").display().to_string();
    let said = |out: &Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    // The control: with the password, nobody gets in over TCP.
    let with = redis_cli_as_nobody(
        &["-h", "127.0.0.1", "-p", &port, "ping"],
        &[("REDISCLI_AUTH", password)],
    );
    assert!(
        said(&with).contains("PONG"),
        "the control failed: {}",
        show(&with)
    );
    let without = redis_cli_as_nobody(&["-h", "127.0.0.1", "-p", &port, "ping"], &[]);
    assert!(
        !said(&without).contains("PONG") && said(&without).contains("NOAUTH"),
        "nobody got in over TCP without the password: {}",
        show(&without)
    );
    let by_socket = redis_cli_as_nobody(&["-s", &socket, "ping"], &[("REDISCLI_AUTH", password)]);
    assert!(
        !said(&by_socket).contains("PONG"),
        "nobody reached the socket: {}",
        show(&by_socket)
    );
    // The password is in no file nobody can read.
    let config = dir.join("redis.conf").display().to_string();
    let read = Command::new("cat")
        .arg(&config)
        .env_clear()
        .current_dir("/")
        .uid(NOBODY)
        .gid(NOBODY)
        .output()
        .unwrap();
    assert!(
        !read.status.success() && read.stdout.is_empty(),
        "nobody read {config}: {}",
        show(&read)
    );
}

#[test]
fn killing_the_one_pid_up_names_stops_every_service_it_started() {
    let _one_at_a_time = SERVICES_CLI.lock().unwrap_or_else(|e| e.into_inner());
    let sandbox = Sandbox::new();
    let env = sandbox.env();
    let _down = DownAtEnd(env.clone());
    let up = services(&env, &["up"]);
    assert!(up.status.success(), "{}", show(&up));
    let note = String::from_utf8_lossy(&up.stderr).into_owned();
    let pid: u32 = note
        .lines()
        .find_map(|l| {
            l.split_once(", or `kill ")?
                .1
                .strip_suffix('`')?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("`up` names no pid to kill: {note}"));
    let status = services(&env, &["status"]);
    assert!(
        String::from_utf8_lossy(&status.stderr)
            .contains(&format!("`kill {pid}` stops every service")),
        "{}",
        show(&status)
    );
    let dirs = ["postgres-up", "redis-up", "anchor-up"].map(|d| sandbox.base().join(d));
    assert!(dirs.iter().all(|d| d.is_dir()), "{dirs:?}");
    // SAFETY: the anchor is a `sleep` this test's `up` started, as this user.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let stopped = wait_until(Duration::from_secs(30), || dirs.iter().all(|d| !d.exists()));
    assert!(
        stopped,
        "left after the anchor was killed: {:?}",
        dirs.iter().filter(|d| d.exists()).collect::<Vec<_>>()
    );
    sandbox.assert_nothing_runs();
    let status = services(&env, &["status"]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains("postgres: not running") && text.contains("redis: not running"),
        "{}",
        show(&status)
    );
}

/// Bug: `initdb` for a cold cache ran as a plain child of the test
/// process: a test killed with SIGKILL left it running. Here `initdb` is
/// made slow (it waits 30 s before it runs), so that one left running is
/// seen running.
#[test]
fn a_test_killed_during_a_cold_initdb_leaves_nothing_running() {
    let sandbox = Sandbox::new();
    let (bin, major) = pg_bin();
    let cache = tempfile::tempdir().unwrap();
    // Programs of which `initdb` waits before it runs: reachable by the
    // server's user, as the real ones are.
    let slow = tempfile::tempdir_in("/tmp").unwrap();
    fs::set_permissions(slow.path(), fs::Permissions::from_mode(0o755)).unwrap();
    for program in ["postgres", "psql"] {
        std::os::unix::fs::symlink(bin.join(program), slow.path().join(program)).unwrap();
    }
    let initdb = slow.path().join("initdb");
    fs::write(
        &initdb,
        format!(
            "#!/bin/sh\nexec perl -e 'sleep 30; exec @ARGV or die' '{}' \"$@\"\n",
            bin.join("initdb").display()
        ),
    )
    .unwrap();
    fs::set_permissions(&initdb, fs::Permissions::from_mode(0o755)).unwrap();

    let mut env = sandbox.env();
    env.retain(|(k, _)| k != "STAMPEDE_POSTGRES_BIN");
    env.push((
        "STAMPEDE_POSTGRES_BIN".into(),
        slow.path().display().to_string(),
    ));
    env.push(("XDG_CACHE_HOME".into(), cache.path().display().to_string()));
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (&**k, &**v)).collect();
    let exe = std::env::current_exe().unwrap();
    let mut holder = start_ignored_test(&exe, "start_with_a_cold_cache", &env_refs);
    let holder_pid = holder.id();
    let mut leftovers = Leftovers::default();
    let mut initdb_pid = None;
    let running = wait_until(Duration::from_secs(60), || {
        let tree = process_tree(holder_pid);
        initdb_pid = tree
            .iter()
            .find(|&&(p, _)| p != holder_pid && cmdline(p).contains("initdb"))
            .map(|&(p, _)| p);
        leftovers.0 = tree;
        initdb_pid.is_some() || holder.try_wait().unwrap().is_some()
    });
    let Some(initdb_pid) = initdb_pid.filter(|_| running) else {
        let _ = holder.kill();
        let mut out = String::new();
        let _ = holder.stdout.take().unwrap().read_to_string(&mut out);
        let _ = holder.stderr.take().unwrap().read_to_string(&mut out);
        panic!("initdb never ran under the test process: {out}");
    };
    let tree = process_tree(holder_pid);
    leftovers.0.extend(tree.iter().copied());
    holder.kill().unwrap(); // SIGKILL
    holder.wait().unwrap();
    let survivors = || {
        let mut left: Vec<String> = tree
            .iter()
            .filter(|&&(p, start)| p != holder_pid && alive(p, start))
            .map(|&(p, _)| format!("{p}: {}", cmdline(p)))
            .collect();
        left.extend(processes_mentioning(cache.path()));
        left.extend(processes_mentioning(sandbox.path()));
        left.sort();
        left.dedup();
        left
    };
    let gone = wait_until(Duration::from_secs(20), || survivors().is_empty());
    assert!(
        gone,
        "20 s after its test process was killed during initdb (pid {initdb_pid}), \
         still running: {:?}",
        survivors()
    );
    drop(leftovers);

    let cache_home = cache.path().display().to_string();
    let next = sandbox.run(&[("XDG_CACHE_HOME", &cache_home)], start_fixture, ());
    next.unwrap_or_else(|e| panic!("the next start with the same cache failed: {e}"));
    let cached = cache.path().join(format!("stampede/postgres-{major}"));
    let partials: Vec<String> = names_in(&cached)
        .into_iter()
        .filter(|n| n.starts_with("data.partial"))
        .collect();
    assert!(
        partials.is_empty(),
        "left in {}: {partials:?}",
        cached.display()
    );
    sandbox.assert_nothing_runs();
}

/// Bug: without a usable home (`nobody`'s is /nonexistent) the start
/// failed creating `$HOME/.cache`, instead of caching under the base.
#[test]
fn a_home_without_a_cache_falls_back_under_tmpdir() {
    let sandbox = Sandbox::new();
    let (_, major) = pg_bin();
    let home = Path::new("/nonexistent");
    let home_existed = home.exists();
    let result = sandbox.run(
        &[("HOME", "/nonexistent"), ("XDG_CACHE_HOME", "")],
        start_fixture,
        (),
    );
    if !home_existed && home.exists() {
        // Root may create it: undo that before saying so.
        let made: Vec<_> = names_in(home);
        let _ = fs::remove_dir_all(home);
        panic!(
            "the start created the missing home {} ({made:?})",
            home.display()
        );
    }
    result.unwrap_or_else(|e| panic!("a start with HOME=/nonexistent failed: {e}"));
    let cached = sandbox
        .base()
        .join(format!("cache/postgres-{major}/data/PG_VERSION"));
    assert!(
        cached.is_file(),
        "no cached data directory at the fallback {}",
        cached.display()
    );
    sandbox.assert_nothing_runs();
}

/// Bug: `TMPDIR` was ignored: instances went to /dev/shm and /tmp
/// whatever the user had asked for.
#[test]
fn instances_live_under_tmpdir() {
    let sandbox = Sandbox::new();
    let (dir, elsewhere) = sandbox
        .run(&[], start_fixture_and_look_elsewhere, ())
        .unwrap_or_else(|e| panic!("the start failed: {e}"));
    let base = format!("{}/", sandbox.base().display());
    assert!(
        dir.starts_with(&base),
        "the fixture's directory {dir} is not under {base}"
    );
    assert!(
        elsewhere.is_empty(),
        "the fixture's process has files outside TMPDIR: {elsewhere:?}"
    );
    sandbox.assert_nothing_runs();
}

/// Bug: concurrent resets of one fixture raced on DROP and CREATE of the
/// same database, and all but one failed.
#[test]
fn reset_from_four_threads_at_once_succeeds() {
    let sandbox = Sandbox::new();
    let errors = sandbox
        .run(&[], reset_from_four_threads, ())
        .unwrap_or_else(|e| panic!("the start failed: {e}"));
    assert!(errors.is_empty(), "resets failed: {errors:#?}");
    sandbox.assert_nothing_runs();
}

/// Bug: a full file system failed the start with a bare "No space left on
/// device", naming no place to free.
#[test]
fn a_full_file_system_is_named_in_the_error() {
    // Root only: a mount namespace of its own, where it mounts a tmpfs.
    let private = Command::new("unshare")
        .args(["-m", "true"])
        .stderr(Stdio::null())
        .status();
    if !private.is_ok_and(|s| s.success()) {
        println!(
            "skipped: a_full_file_system_is_named_in_the_error needs `unshare -m` (root) \
             to mount a small tmpfs"
        );
        return;
    }
    // A warm cache in its usual place, outside the small file system.
    let (_, major) = pg_bin();
    let cache_root = match std::env::var("XDG_CACHE_HOME") {
        Ok(dir) if !dir.is_empty() => PathBuf::from(dir).join("stampede"),
        _ => PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/stampede"),
    };
    if !cache_root
        .join(format!("postgres-{major}/data/PG_VERSION"))
        .is_file()
    {
        let warm = Sandbox::new();
        warm.run(&[], start_fixture, ())
            .unwrap_or_else(|e| panic!("the warm-up start failed: {e}"));
    }
    let sandbox = Sandbox::new();
    let dir = sandbox.path().display().to_string();
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new("unshare")
        .args(["-m", "sh", "-c"])
        .arg(
            "mount -t tmpfs -o size=16m none \"$1\" && exec \"$2\" start_on_a_full_file_system \
             --exact --ignored --nocapture --test-threads=1",
        )
        .args(["sh", dir.as_str()])
        .arg(&exe)
        .envs(sandbox.env())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run unshare");
    let ended = wait_until(VICTIM_TIMEOUT, || child.try_wait().unwrap().is_some());
    if !ended {
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        ended && out.status.success() && stdout.contains("INNER-OK"),
        "the start on a 16 MB tmpfs did not run to its end: {}",
        show(&out)
    );
    let result = stdout
        .split_once("RESULT ")
        .map_or("", |(_, r)| r)
        .to_owned();
    assert!(
        result.starts_with("error: ")
            && result.contains("no space left on device in")
            && result.contains(&format!("{dir}/")),
        "a start on a full file system under {dir} should fail with \
         \"no space left on device in <a path under it>\": {result}"
    );
    sandbox.assert_nothing_runs();
}

/// Bug guarded: the socket is trusted (no password), so only its
/// directory keeps other users from connecting as the superuser: that
/// directory, under `TMPDIR` now, must stay closed to them.
#[test]
fn a_unix_socket_cluster_is_closed_to_other_users() {
    if !can_act_as_nobody("a_unix_socket_cluster_is_closed_to_other_users") {
        return;
    }
    let sandbox = Sandbox::new();
    let problems = sandbox
        .run(&[], socket_fixture_problems, ())
        .unwrap_or_else(|e| panic!("the fixture did not start: {e}"));
    assert!(problems.is_empty(), "{problems:#?}");
    sandbox.assert_nothing_runs();
}

/// Bug: only a base's parent that anyone may write in without the sticky
/// bit was refused; a `TMPDIR` another user owns (a predictable name a CI
/// script made, a user's kept by `sudo -E`) was used, and its owner could
/// move root's instance away and plant a registry that made root SIGKILL
/// any process.
#[test]
fn a_tmpdir_another_user_owns_is_refused() {
    if !can_act_as_nobody("a_tmpdir_another_user_owns_is_refused") {
        return;
    }
    let sandbox = Sandbox::new();
    let theirs = sandbox.path().join("nobody-tmp");
    as_nobody(&format!(
        "mkdir -m 1777 '{theirs}'",
        theirs = theirs.display()
    ));
    let tmpdir = theirs.display().to_string();
    let result = sandbox.run(&[("TMPDIR", &tmpdir)], start_fixture, ());
    assert_eq!(
        names_in(&theirs),
        Vec::<String>::new(),
        "created in nobody's TMPDIR"
    );
    let err = result.expect_err("a TMPDIR of nobody's should be refused");
    assert!(
        err.contains(&tmpdir) && err.contains("another user (uid 65534)"),
        "the refusal does not name nobody's TMPDIR: {err}"
    );
    sandbox.assert_nothing_runs();
}

/// Bug: with `HOME` another user's (`sudo` keeping it), root made its
/// cache in that user's `~/.cache`, which the user could swap for a tree of
/// their own between stampede's checks and the copy.
#[test]
fn a_cache_in_another_users_home_is_passed_over() {
    if !can_act_as_nobody("a_cache_in_another_users_home_is_passed_over") {
        return;
    }
    let sandbox = Sandbox::new();
    let home = sandbox.path().join("nobody-home");
    as_nobody(&format!(
        "mkdir -m 0755 '{home}' && mkdir -m 0755 '{home}/.cache'",
        home = home.display()
    ));
    let home_var = home.display().to_string();
    let result = sandbox.run(
        &[("HOME", &home_var), ("XDG_CACHE_HOME", "")],
        start_fixture,
        (),
    );
    let dir = result.expect("a start with the cache in stampede's base");
    assert_eq!(
        names_in(&home.join(".cache")),
        Vec::<String>::new(),
        "root wrote in nobody's cache"
    );
    assert!(
        sandbox.base().join("cache").is_dir(),
        "the cache is not in the base; the fixture ran in {dir}"
    );
    sandbox.assert_nothing_runs();
}
