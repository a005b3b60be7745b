//! Load through long-lived workers, against a real HTTP server on loopback:
//! a database driver's test harness, done with stampede.
//!
//! 1. 2,500 requests over 100 workers (parallel), then 25,000 one at a time
//!    through a single worker (serial): every request must succeed, and no
//!    worker may leak.
//! 2. A client that opens a connection per request and never closes it: the
//!    leak detector names the leaked socket within a few calls, long before
//!    the descriptor limit would run out.

#[path = "../tests/common/http.rs"]
mod http;

use std::net::TcpStream;
use std::sync::Mutex;
use std::time::Duration;

/// One request with a fresh connection, closed afterwards.
#[stampede::function]
fn fetch(port: u16) -> u16 {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connecting to the server");
    http::get(&mut stream)
}

static KEPT: Mutex<Vec<TcpStream>> = Mutex::new(Vec::new());

/// The bug the harness existed to catch: each connection is kept forever.
#[stampede::function]
fn fetch_and_keep_the_connection(port: u16) -> u16 {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connecting to the server");
    let status = http::get(&mut stream);
    KEPT.lock().unwrap().push(stream);
    status
}

fn main() {
    stampede::init();
    let port = http::serve();
    println!("An HTTP server on 127.0.0.1:{port}; clients run in worker processes.\n");

    let parallel = stampede::Load::new(2_500)
        .workers(100)
        .call_timeout(Duration::from_secs(10))
        .run(fetch, port)
        .expect("starting the workers");
    println!("{parallel}");
    parallel.assert_all_returned().assert_no_leaks();
    assert!(parallel.values().all(|status| *status == 200));

    let serial = stampede::Load::new(25_000)
        .workers(1)
        .call_timeout(Duration::from_secs(10))
        .run(fetch, port)
        .expect("starting the worker");
    println!("{serial}");
    serial.assert_all_returned().assert_no_leaks();

    // One worker runs all 20 calls: 3 of warm-up, then the leak shows
    // within a few more, whatever the machine's load.
    let leaky = stampede::Load::new(20)
        .workers(1)
        .run(fetch_and_keep_the_connection, port)
        .expect("starting the worker");
    println!("{leaky}");
    leaky.assert_all_returned();
    assert_eq!(leaky.leaks().len(), 1, "the worker's leak is named");
    let leak = &leaky.leaks()[0];
    assert!(
        leak.example()
            .contains(&format!("127.0.0.1:{port} ESTABLISHED")),
        "{leak}"
    );
    assert!(leak.first_after_call() <= 3 + 10, "{leak}");
    println!("The leaky client was caught: {leak}");
}
