//! Fan-out: 1000 client processes connect to one server, all reach a
//! checkpoint, and only then send their request, together.
//!
//! The server runs in this (the parent) process on a loopback port. Each
//! client connects first (its setup, at its own pace), then waits in
//! `stampede::checkpoint()` until every client is connected, then sends one
//! request and reads the answer. Each client reports when it was connected
//! and when it sent, on the system's monotonic clock, which all processes share.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

// The server's accept queue holds every client at once.
#[path = "../tests/common/loopback.rs"]
mod loopback;

const CLIENTS: usize = 1000;
/// How long a client waits for its answer before it fails with a reason,
/// rather than hanging until the call's timeout.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

fn monotonic_ns() -> u64 {
    stampede::Timestamp::now().as_nanos()
}

/// One client: connect, wait for the others, send, read the answer.
/// Returns (connected at, sent at, the answer).
#[stampede::function]
fn client(port: u16) -> (u64, u64, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connecting to the server");
    stream
        .set_read_timeout(Some(ANSWER_TIMEOUT))
        .expect("setting a read timeout");
    let connected = monotonic_ns();
    stampede::checkpoint(); // every client is connected: fire together
    let sent = monotonic_ns();
    stream.write_all(b"hello\n").expect("sending the request");
    let mut answer = String::new();
    BufReader::new(stream)
        .read_line(&mut answer)
        .expect("reading the answer (no answer means the server never accepted this client)");
    (connected, sent, answer.trim_end().to_string())
}

/// Answers each connection's request line, one thread per connection.
fn serve(listener: TcpListener) {
    for stream in listener.incoming().flatten() {
        std::thread::spawn(move || {
            let mut line = String::new();
            let mut reader = BufReader::new(&stream);
            if reader.read_line(&mut line).is_ok() && line == "hello\n" {
                let _ = (&stream).write_all(b"welcome\n");
            }
        });
    }
}

fn main() {
    stampede::init();
    let listener = loopback::listen();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || serve(listener));

    println!(
        "{CLIENTS} client processes connect to 127.0.0.1:{port}, meet at a checkpoint, then fire."
    );
    let started = Instant::now();
    let outcomes = stampede::Options::new()
        .timeout(Duration::from_secs(120))
        .call_concurrently(CLIENTS, client, port)
        .expect("starting the clients");
    let elapsed = started.elapsed();
    let reports: Vec<_> = outcomes.assert_all_returned().values().cloned().collect();

    let welcomed = reports
        .iter()
        .filter(|(_, _, answer)| answer == "welcome")
        .count();
    let last_connected = reports
        .iter()
        .map(|(connected, _, _)| *connected)
        .max()
        .unwrap();
    let first_sent = reports.iter().map(|(_, sent, _)| *sent).min().unwrap();
    let last_sent = reports.iter().map(|(_, sent, _)| *sent).max().unwrap();
    let ms = |ns: u64| ns as f64 / 1e6;
    println!(
        "  {welcomed} of {CLIENTS} clients were welcomed, {:.2} s in all",
        elapsed.as_secs_f64()
    );
    println!(
        "  the last client connected {:.1} ms before the first request was sent",
        ms(first_sent.saturating_sub(last_connected))
    );
    println!(
        "  all requests were sent within {:.1} ms of each other",
        ms(last_sent - first_sent)
    );
    assert_eq!(welcomed, CLIENTS, "every client got its answer");
    assert!(
        last_connected <= first_sent,
        "no request before every client was connected"
    );
}
