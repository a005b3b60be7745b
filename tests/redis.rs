//! `services::Redis`: a database per fixture on a private server, a
//! password over TCP, a reused server shared by claims, and the errors of
//! a server that is missing, unreachable or not named by a URL.

#[path = "common/procs.rs"]
mod procs;

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use procs::{is_gone, wait_until};
use stampede::Error;
use stampede::services::Redis;

stampede::entry!();

fn connect(url: &str) -> redis::Connection {
    redis::Client::open(url)
        .and_then(|client| client.get_connection())
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"))
}

fn set(connection: &mut redis::Connection, key: &str, value: i64) {
    redis::cmd("SET")
        .arg(key)
        .arg(value)
        .query::<()>(connection)
        .unwrap();
}

fn get(connection: &mut redis::Connection, key: &str) -> Option<i64> {
    redis::cmd("GET").arg(key).query(connection).unwrap()
}

fn dbsize(url: &str) -> i64 {
    redis::cmd("DBSIZE").query(&mut connect(url)).unwrap()
}

/// Waits (up to 20 s) until `dir` is gone and `pids` have ended.
fn assert_all_gone(dir: &Path, pids: &[u32]) {
    let gone = wait_until(Duration::from_secs(20), || {
        !dir.exists() && pids.iter().all(|&p| is_gone(p))
    });
    assert!(
        gone,
        "left behind: dir exists = {}, pids alive = {:?}",
        dir.exists(),
        pids.iter().filter(|&&p| !is_gone(p)).collect::<Vec<_>>()
    );
}

#[test]
fn fixtures_have_databases_of_their_own_and_reset_empties_them() {
    let a = Redis::builder().private_instance(true).start().unwrap();
    assert_eq!(a.db(), 0, "the first fixture gets the first database");
    assert!(a.url().starts_with("redis+unix://"), "{}", a.url());
    assert!(a.url().ends_with("?db=0"), "{}", a.url());
    let mut ca = connect(a.url());
    set(&mut ca, "seen", 1);
    set(&mut ca, "other", 2);
    assert_eq!(dbsize(a.url()), 2);
    a.reset().unwrap();
    assert_eq!(dbsize(a.url()), 0, "reset empties the database");
    // The connection stays open through a reset.
    set(&mut ca, "seen", 3);
    assert_eq!(get(&mut ca, "seen"), Some(3));
}

#[test]
fn fixtures_of_one_process_share_a_server_but_not_their_keys() {
    let a = Redis::start().unwrap();
    let b = Redis::start().unwrap();
    assert_eq!(a.server_pid(), b.server_pid(), "one server per process");
    assert_ne!(a.db(), b.db());
    let mut ca = connect(a.url());
    let mut cb = connect(b.url());
    set(&mut ca, "job", 7);
    assert_eq!(get(&mut cb, "job"), None, "b sees a's key");
    // A dropped fixture's database is emptied and handed to the next one.
    let db = a.db();
    drop(ca);
    drop(a);
    let c = Redis::start().unwrap();
    assert_eq!(c.db(), db, "the lowest free database is reused");
    assert_eq!(dbsize(c.url()), 0, "the next fixture found a's keys");
}

/// Run by `a_server_holds_exactly_1024_fixtures_and_the_next_one_is_told_why`
/// in a process of its own: it holds every database of the shared server.
#[test]
#[ignore = "run by another test, in a process of its own"]
fn hold_1024_fixtures_then_one_more() {
    let mut held = Vec::new();
    for _ in 0..1024 {
        held.push(Redis::start().unwrap());
    }
    let mut dbs: Vec<u32> = held.iter().map(Redis::db).collect();
    dbs.sort_unstable();
    assert_eq!(dbs, (0..1024).collect::<Vec<_>>());
    let err = Redis::start().err().expect("the 1025th fixture");
    let text = err.to_string();
    assert!(matches!(err, Error::ServiceCommand { .. }), "{text}");
    for part in ["all 1024 databases", "private_instance(true)"] {
        assert!(text.contains(part), "{part}: {text}");
    }
    let last = held.pop().unwrap().db();
    let again = Redis::start().unwrap();
    assert_eq!(
        again.db(),
        last,
        "a dropped fixture's database is lent again"
    );
    println!("INNER-OK");
}

#[test]
fn a_server_holds_exactly_1024_fixtures_and_the_next_one_is_told_why() {
    let exe = std::env::current_exe().unwrap();
    procs::assert_ignored_test_passes(&exe, "hold_1024_fixtures_then_one_more");
}

#[test]
fn a_tcp_fixture_answers_on_localhost_with_its_password_only() {
    let redis = Redis::builder().tcp(true).start().unwrap();
    let url = redis.url().to_owned();
    let rest = url
        .strip_prefix("redis://:")
        .expect("a password in the URL");
    let (password, address) = rest.split_once('@').unwrap();
    assert_eq!(password.len(), 32, "128 random bits: {url}");
    let address = address.split('/').next().unwrap();
    assert!(address.starts_with("127.0.0.1:"), "{url}");
    let mut with = connect(&url);
    set(&mut with, "k", 1);
    let mut without = connect(&format!("redis://{address}/{}", redis.db()));
    let refused = redis::cmd("GET")
        .arg("k")
        .query::<Option<i64>>(&mut without)
        .unwrap_err();
    assert!(refused.to_string().contains("NOAUTH"), "{refused}");
    let wrong = redis::Client::open(format!("redis://:nope@{address}/0")).unwrap();
    assert!(wrong.get_connection().is_err(), "a wrong password got in");
    // Not on any command line, where every local user can read it.
    let pid = redis.server_pid().unwrap();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(
        !String::from_utf8_lossy(&cmdline).contains(password),
        "the password is on the server's command line"
    );
    let dir = redis.directory().unwrap();
    let config = dir.join("redis.conf");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&config).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{}", config.display());
    let socket_dir = dir.join("server");
    let mode = std::fs::metadata(&socket_dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "{}", socket_dir.display());
}

#[test]
fn a_private_instance_leaves_nothing_when_dropped_and_a_dead_server_is_named() {
    let redis = Redis::builder().private_instance(true).start().unwrap();
    let dir = redis.directory().unwrap().to_owned();
    let server = redis.server_pid().unwrap();
    let keeper = redis.keeper_pid().unwrap();
    assert!(dir.join("server/redis.sock").exists());
    drop(redis);
    assert_all_gone(&dir, &[server, keeper]);

    let redis = Redis::builder().private_instance(true).start().unwrap();
    let server = redis.server_pid().unwrap();
    // SAFETY: the server runs as this user and was started by this test.
    unsafe { libc::kill(server as i32, libc::SIGKILL) };
    // The first command after the death says so: its keeper's word is
    // waited for when the server refuses.
    let err = redis.reset().unwrap_err();
    assert!(matches!(err, Error::ServiceDied { .. }), "{err}");
    assert!(err.to_string().contains("redis"), "{err}");
    // Its status, read when the keeper reaped it (after its group).
    assert!(
        err.to_string()
            .contains("the server ended on its own (signal: 9"),
        "{err}"
    );
}

/// Run by `the_keeper_cleans_up_after_its_test_process_is_killed`.
#[test]
#[ignore = "run by another test, which kills it"]
fn hold_a_redis_until_killed() {
    let redis = Redis::builder().private_instance(true).start().unwrap();
    println!(
        "REDIS {} {} {}",
        redis.directory().unwrap().display(),
        redis.server_pid().unwrap(),
        redis.keeper_pid().unwrap()
    );
    std::io::stdout().flush().unwrap();
    std::thread::sleep(Duration::from_secs(120));
}

#[test]
fn the_keeper_cleans_up_after_its_test_process_is_killed() {
    let exe = std::env::current_exe().unwrap();
    let (mut holder, dir, pids) = procs::start_holder(&exe, "hold_a_redis_until_killed", "REDIS");
    assert!(dir.is_dir());
    holder.kill().unwrap(); // SIGKILL
    holder.wait().unwrap();
    assert_all_gone(&dir, &pids);
}

#[test]
fn a_missing_program_names_the_package_and_the_variable() {
    let err = Redis::builder()
        .program("/nonexistent/redis-server")
        .start()
        .err()
        .expect("no such program");
    let text = err.to_string();
    assert!(matches!(err, Error::ServiceNotFound { .. }), "{text}");
    for part in [
        "/nonexistent/redis-server",
        "apt-get install redis-server",
        "STAMPEDE_REDIS_BIN",
    ] {
        assert!(text.contains(part), "{part}: {text}");
    }
}

#[test]
fn a_bad_setting_is_refused_before_anything_starts() {
    let err = Redis::builder()
        .setting("maxmemory", "1mb\nrequirepass x")
        .start()
        .err()
        .expect("a setting over two lines");
    assert!(matches!(err, Error::InvalidOptions(_)), "{err}");
    assert!(err.to_string().contains("spans lines"), "{err}");
}

#[test]
fn reuse_urls_that_are_not_urls_or_do_not_answer_say_which() {
    let err = Redis::builder()
        .reuse_url("not a url")
        .start()
        .err()
        .expect("not a URL");
    let text = err.to_string();
    assert!(matches!(err, Error::ServiceUrl { .. }), "{text}");
    for part in [
        "STAMPEDE_REDIS_URL is set to `not a url`",
        "not a redis URL",
        "redis://127.0.0.1:6379/0",
        "unset STAMPEDE_REDIS_URL",
    ] {
        assert!(text.contains(part), "{part}: {text}");
    }
    let err = Redis::builder()
        .reuse_url("redis://:hunter2@127.0.0.1:9/0")
        .start()
        .err()
        .expect("nothing listens on port 9");
    let text = err.to_string();
    assert!(matches!(err, Error::ServiceUnreachable { .. }), "{text}");
    assert!(text.contains("stampede-services up redis"), "{text}");
    assert!(!text.contains("hunter2"), "the password is shown: {text}");
}

/// A server of 3 databases, reused: 0 holds the claims, so 2 fixtures.
fn small_server() -> Redis {
    Redis::builder()
        .setting("databases", "3")
        .start()
        .expect("a server of three databases")
}

#[test]
fn a_reused_server_lends_each_database_to_one_fixture_at_a_time() {
    let server = small_server();
    let admin = server.url().replace("?db=0", "");
    let a = Redis::builder().reuse_url(&admin).start().unwrap();
    let b = Redis::builder().reuse_url(&admin).start().unwrap();
    assert_eq!((a.db(), b.db()), (1, 2));
    assert_eq!(a.directory(), None);
    let err = Redis::builder()
        .reuse_url(&admin)
        .start()
        .err()
        .expect("a third fixture on two databases");
    let text = err.to_string();
    for part in [
        "none of the 2 databases",
        "2 held by fixtures of live test processes",
        "`databases` setting",
    ] {
        assert!(text.contains(part), "{part}: {text}");
    }
    let mut cb = connect(b.url());
    set(&mut cb, "left", 1);
    drop(cb);
    drop(b);
    let c = Redis::builder().reuse_url(&admin).start().unwrap();
    assert_eq!(c.db(), 2, "a dropped fixture's database is free again");
    assert_eq!(dbsize(c.url()), 0, "and emptied");
    let claims: Vec<String> = redis::cmd("KEYS")
        .arg("stampede:claim:*")
        .query(&mut connect(&admin))
        .unwrap();
    assert_eq!(claims.len(), 2, "{claims:?}");
}

#[test]
fn a_claim_of_a_gone_process_is_taken_over_and_a_live_ones_is_not() {
    let server = small_server();
    let admin = server.url().replace("?db=0", "");
    let mut c0 = connect(&admin);
    let boot: String = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .unwrap()
        .chars()
        .filter(|c| *c != '-')
        .take(8)
        .collect();
    let namespace = std::fs::read_link("/proc/self/ns/pid").unwrap();
    let namespace = namespace.to_string_lossy();
    let namespace = namespace.trim_start_matches("pid:[").trim_end_matches(']');
    let here = format!("{boot}_{namespace}");
    // Database 1: held by pid 1, alive; database 2: by a process gone.
    let init_start = procs_start_time(1);
    let _: () = redis::cmd("SET")
        .arg("stampede:claim:1")
        .arg(format!("{here}_1_{init_start}"))
        .query(&mut c0)
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg("stampede:claim:2")
        .arg(format!("{here}_1_{}", init_start + 1))
        .query(&mut c0)
        .unwrap();
    let mut c2 = connect(&format!("{admin}?db=2"));
    set(&mut c2, "left-by-the-dead", 1);
    let fixture = Redis::builder().reuse_url(&admin).start().unwrap();
    assert_eq!(fixture.db(), 2, "pid 1's claim was taken");
    assert_eq!(dbsize(fixture.url()), 0, "the dead fixture's keys stayed");
}

/// A process's start time in clock ticks, field 22 of its stat.
fn procs_start_time(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    after.split_whitespace().nth(19).unwrap().parse().unwrap()
}

#[test]
fn an_unclaimed_database_holding_keys_is_someones_data_and_is_left_alone() {
    let server = small_server();
    let admin = server.url().replace("?db=0", "");
    let mut theirs = connect(&format!("{admin}?db=1"));
    set(&mut theirs, "their-key", 42);
    let fixture = Redis::builder().reuse_url(&admin).start().unwrap();
    assert_eq!(fixture.db(), 2, "database 1 holds someone's keys");
    assert_eq!(
        get(&mut theirs, "their-key"),
        Some(42),
        "their key was flushed"
    );
    let err = Redis::builder()
        .reuse_url(&admin)
        .start()
        .err()
        .expect("no free database");
    let text = err.to_string();
    for part in [
        "1 held by fixtures of live test processes",
        "1 unclaimed but holding keys (someone's data: left alone)",
    ] {
        assert!(text.contains(part), "{part}: {text}");
    }
    drop(fixture);
    assert_eq!(get(&mut theirs, "their-key"), Some(42));
}

#[test]
fn settings_that_would_take_the_server_out_of_the_keepers_hands_are_refused() {
    for (name, value) in [("daemonize", "yes"), ("requirepass", ""), ("dir", "/")] {
        let err = Redis::builder()
            .setting(name, value)
            .start()
            .err()
            .unwrap_or_else(|| panic!("{name} was taken"));
        assert!(matches!(err, Error::InvalidOptions(_)), "{err}");
        assert!(err.to_string().contains("is stampede's own"), "{err}");
    }
}

/// Run by `a_server_started_through_a_wrapper_script_is_swept_by_its_real_program`
/// in a fresh process, whose first start sweeps.
#[test]
#[ignore = "run by another test"]
fn start_and_drop_a_private_instance() {
    drop(Redis::builder().private_instance(true).start().unwrap());
    println!("INNER-OK");
}

#[test]
fn a_server_started_through_a_wrapper_script_is_swept_by_its_real_program() {
    use std::os::unix::fs::PermissionsExt;
    let real = std::process::Command::new("sh")
        .args(["-c", "command -v redis-server"])
        .output()
        .unwrap();
    let real = String::from_utf8(real.stdout).unwrap().trim().to_owned();
    let shims = tempfile::tempdir().unwrap();
    let shim = shims.path().join("redis-server");
    std::fs::write(&shim, format!("#!/bin/sh\nexec {real} \"$@\"\n")).unwrap();
    std::fs::set_permissions(&shim, std::fs::Permissions::from_mode(0o755)).unwrap();
    let redis = Redis::builder().program(shims.path()).start().unwrap();
    let dir = redis.directory().unwrap().to_owned();
    let server = redis.server_pid().unwrap();
    let keeper = redis.keeper_pid().unwrap();
    let registry = std::fs::read_to_string(dir.join("registry")).unwrap();
    let real_exe = std::fs::canonicalize(&real).unwrap();
    assert!(
        registry
            .lines()
            .any(|l| l.starts_with(&format!("server {server} "))
                && l.ends_with(&real_exe.display().to_string())),
        "the registry does not name the program that runs ({}):\n{registry}",
        real_exe.display()
    );
    // The keeper dies; the server outlives it until the next start sweeps.
    // SAFETY: signalling a child of this process that we have not reaped.
    unsafe { libc::kill(keeper as i32, libc::SIGKILL) };
    assert!(wait_until(Duration::from_secs(10), || is_gone(keeper)));
    assert!(
        !is_gone(server),
        "the server should outlive its killed keeper"
    );
    std::mem::forget(redis);
    let exe = std::env::current_exe().unwrap();
    procs::assert_ignored_test_passes(&exe, "start_and_drop_a_private_instance");
    assert_all_gone(&dir, &[server]);
}

#[test]
fn a_server_that_answers_an_endless_line_is_refused_not_read_for_ever() {
    use std::io::Write as _;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut request = [0u8; 64];
                let _ = std::io::Read::read(&mut stream, &mut request);
                let _ = stream.write_all(b"+");
                let spam = vec![b'A'; 1 << 16];
                // Endless: until the client hangs up.
                while stream.write_all(&spam).is_ok() {}
            });
        }
    });
    let err = Redis::builder()
        .reuse_url(format!("redis://127.0.0.1:{port}"))
        .start()
        .err()
        .expect("a server that never ends its line");
    let text = err.to_string();
    assert!(matches!(err, Error::ServiceUnreachable { .. }), "{text}");
    assert!(text.contains("a line longer than 65536 bytes"), "{text}");
}

/// A socket another user planted in a directory anyone can write (`/tmp`'s
/// kind), standing in for the real server: it is told nothing. The test
/// plants it as root, owned by another uid.
#[test]
fn a_reused_servers_socket_planted_by_another_user_is_told_nothing() {
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;
    // SAFETY: geteuid only reads the process's user.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: planting another user's socket needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
    let socket = dir.path().join("redis.sock");
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    std::os::unix::fs::lchown(&socket, Some(4242), Some(4242)).unwrap();
    listener.set_nonblocking(true).unwrap();
    let err = Redis::builder()
        .reuse_url(format!(
            "redis+unix://{}?pass=Redis-Secret",
            socket.display()
        ))
        .start()
        .err()
        .expect("a planted socket");
    let text = err.to_string();
    assert!(
        text.contains("belongs to uid 4242, not to root, this user or `redis`"),
        "{text}"
    );
    assert!(
        !text.contains("Redis-Secret"),
        "the password is shown: {text}"
    );
    // Nothing connected, so nothing was sent.
    match listener.accept() {
        Ok((mut conn, _)) => {
            let mut got = Vec::new();
            let _ = conn.read_to_end(&mut got);
            panic!("the planted socket was connected to: {got:?}");
        }
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock),
    }
}
