//! `Load::watch`: the leak detector watches a server the calls talk to, a
//! separate process, and names what it leaks.

#[path = "common/procs.rs"]
mod procs;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Child;
use std::time::Duration;

use stampede::{LeakKind, Load};

stampede::entry!();

/// One request: a line out, a line back.
#[stampede::function]
fn ask(port: u16) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connecting");
    stream.write_all(b"hello\n").unwrap();
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).unwrap();
    line
}

/// The server: answers each connection's line; with `LEAK` set it keeps
/// every connection open (the leak of a server that forgets to close).
/// Writes its port to `$DIR/port`.
#[test]
#[ignore = "run as a server by the tests below"]
fn server_inner() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let dir = PathBuf::from(std::env::var("DIR").unwrap());
    let port = listener.local_addr().unwrap().port();
    std::fs::write(dir.join("port.tmp"), port.to_string()).unwrap();
    std::fs::rename(dir.join("port.tmp"), dir.join("port")).unwrap();
    let leak = std::env::var_os("LEAK").is_some();
    let exit_after: Option<usize> = std::env::var("EXIT_AFTER").ok().map(|n| n.parse().unwrap());
    let mut kept = Vec::new();
    for (served, stream) in listener.incoming().enumerate() {
        if exit_after == Some(served) {
            std::process::exit(0);
        }
        let mut stream = stream.unwrap();
        let mut line = String::new();
        BufReader::new(&stream).read_line(&mut line).unwrap();
        stream.write_all(b"ok\n").unwrap();
        if leak {
            kept.push(stream);
        }
    }
}

/// The server process, killed (and reaped) when dropped, so that a test
/// that fails leaves no server behind.
struct Served(Child);

impl std::ops::Deref for Served {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Served {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_server(dir: &std::path::Path, leak: bool) -> (Served, u16) {
    start_server_with(dir, leak, None)
}

/// The server, ending after `exit_after` connections if given.
fn start_server_with(
    dir: &std::path::Path,
    leak: bool,
    exit_after: Option<usize>,
) -> (Served, u16) {
    let exe = std::env::current_exe().unwrap();
    let mut env = vec![("DIR", dir.to_str().unwrap())];
    if leak {
        env.push(("LEAK", "1"));
    }
    let exit_after = exit_after.map(|n| n.to_string());
    if let Some(n) = &exit_after {
        env.push(("EXIT_AFTER", n));
    }
    let server = Served(procs::start_ignored_test(&exe, "server_inner", &env));
    let port_file = dir.join("port");
    assert!(procs::wait_until(Duration::from_secs(30), || port_file.exists()));
    let port = std::fs::read_to_string(port_file).unwrap().parse().unwrap();
    (server, port)
}

#[test]
fn a_server_that_keeps_each_connection_is_named_with_its_socket() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, port) = start_server(dir.path(), true);
    let report = Load::new(600)
        .workers(2)
        .watch(server.id())
        .run(ask, port)
        .unwrap();
    report.assert_all_returned();
    let watched: Vec<_> = report.leaks().iter().filter(|l| l.watched()).collect();
    assert_eq!(watched.len(), 1, "{report}");
    let leak = watched[0];
    assert_eq!(leak.kind(), LeakKind::Descriptors);
    assert_eq!(leak.pid(), server.id());
    // One connection per call; calls in flight (queued to a worker, or
    // accepted but not yet answered) make the rate at a sample drift
    // around 1.
    assert!((0.5..=2.0).contains(&leak.per_call()), "{leak}");
    let text = leak.to_string();
    let socket = format!("socket TCP 127.0.0.1:{port} → 127.0.0.1:");
    assert!(
        text.starts_with(&format!("watched process {}: +", server.id()))
            && text.contains(" descriptor per call — ")
            && text.contains(&socket),
        "{text}"
    );
    // By the end the server holds about one more socket per call.
    let calls = report.values().count() as u64;
    assert!(
        leak.grown_by_end() >= calls / 2 && leak.grown_by_end() <= calls,
        "{} more by the end, after {calls} calls: {text}",
        leak.grown_by_end()
    );
    // The workers themselves hold nothing more.
    assert!(report.leaks().iter().all(|l| l.watched()), "{report}");
    server.kill().unwrap();
    server.wait().unwrap();
}

#[test]
fn a_server_that_closes_each_connection_is_no_leak_and_one_that_dies_is_noted() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, port) = start_server(dir.path(), false);
    let report = Load::new(600)
        .workers(2)
        .watch(server.id())
        .run(ask, port)
        .unwrap();
    report.assert_all_returned();
    assert!(report.leaks().is_empty(), "{report}");
    assert!(
        report
            .to_string()
            .lines()
            .all(|l| !l.contains("watched process")),
        "{report}"
    );
    // Watching a process that is gone before the load: an error before
    // any worker starts, naming it.
    server.kill().unwrap();
    server.wait().unwrap();
    let gone = server.id();
    let err = Load::new(300)
        .workers(1)
        .watch(gone)
        .run(ask, port)
        .unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, stampede::Error::InvalidOptions(_))
            && text.contains(&format!("Load::watch({gone}): no process {gone} runs")),
        "{text}"
    );
}

/// A request that tolerates a server that is gone: the status, or 0.
#[stampede::function]
fn ask_or_zero(port: u16) -> u16 {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return 0;
    };
    let _ = stream.write_all(b"hello\n");
    let mut line = String::new();
    let _ = BufReader::new(stream).read_line(&mut line);
    u16::from(line == "ok\n")
}

#[test]
fn a_watched_server_that_ends_during_the_load_is_a_note_naming_when() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, port) = start_server_with(dir.path(), false, Some(20));
    let pid = server.id();
    let report = Load::new(200)
        .workers(1)
        .watch(pid)
        .run(ask_or_zero, port)
        .unwrap();
    server.wait().unwrap();
    report.assert_all_returned();
    let answered = report.values().filter(|v| **v == 1).count();
    assert_eq!(answered, 20, "the server answers 20 connections, then ends");
    assert!(report.leaks().is_empty(), "{report}");
    let text = report.to_string();
    // Seen at a sample during the load, or at the last one, after it.
    let note = format!("note: watched process {pid} ended during the load (seen gone ");
    assert!(text.contains(&note), "no note of its end: {text}");
    assert_eq!(text.matches(&note).count(), 1, "noted once: {text}");
}
