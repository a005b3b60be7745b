//! A leaking server under load: the harness of a database driver's web
//! framework integration, done with stampede and the real parts.
//!
//! The server under test is a small HTTP service that runs a query on
//! PostgreSQL for every request: this same program, started in server
//! mode as a `services::Server` (so a keeper owns it and nothing outlives
//! the run), against a `services::Postgres` fixture over TCP. Clients run
//! in `Load` workers; `Load::watch` has the leak detector watch the server
//! process too.
//!
//! 1. A server that takes a connection from a small pool per request:
//!    2,500 requests over 100 workers, then 25,000 one at a time; every
//!    request must succeed and nothing may leak, in the workers or in the
//!    server.
//! 2. The bug the harness exists for: a server that opens a connection per
//!    request and keeps it. The leak detector names its socket to
//!    PostgreSQL within a dozen requests. Without it, the leak shows the way
//!    production finds it, later: the server's descriptor limit (256, as a
//!    production `ulimit -n` would be) or PostgreSQL's `max_connections`
//!    runs out, and requests fail.
//!
//! Needs PostgreSQL's server programs (Debian: `apt-get install postgresql`).

#[path = "../tests/common/http.rs"]
mod http;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use stampede::services::{Postgres, Running, Server};
use stampede::{LeakKind, Load};

/// The first argument that makes this program the server.
const SERVE: &str = "--serve";
/// The server's descriptor limit: what makes a leak fail in production.
const DESCRIPTOR_LIMIT: u64 = 256;
/// Connections in the healthy server's pool.
const POOL: usize = 4;

/// One request with a fresh connection; the HTTP status.
#[stampede::function]
fn fetch(port: u16) -> u16 {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connecting to the server");
    http::get(&mut stream)
}

fn main() {
    stampede::init();
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(SERVE) {
        serve(&args[2], &args[3]);
        return;
    }
    let pg = Postgres::builder()
        .tcp(true)
        .template_sql("CREATE TABLE visits (n bigint); INSERT INTO visits VALUES (0);")
        .start()
        .expect("starting PostgreSQL");

    let healthy = start_server(&pg, "pool");
    let port = healthy.port().unwrap();
    println!(
        "An HTTP server (pid {}) on 127.0.0.1:{port} runs a PostgreSQL query per request; \
         clients run in worker processes.\n",
        healthy.server_pid()
    );
    let parallel = Load::new(2_500)
        .workers(100)
        .call_timeout(Duration::from_secs(30))
        .watch(healthy.server_pid())
        .run(fetch, port)
        .expect("starting the workers");
    println!("parallel, 100 workers:\n{parallel}");
    parallel.assert_all_returned().assert_no_leaks();
    assert!(parallel.values().all(|status| *status == 200));

    let serial = Load::new(25_000)
        .workers(1)
        .call_timeout(Duration::from_secs(30))
        .watch(healthy.server_pid())
        .run(fetch, port)
        .expect("starting the worker");
    println!("serial, 1 worker:\n{serial}");
    serial.assert_all_returned().assert_no_leaks();
    assert!(serial.values().all(|status| *status == 200));
    healthy.stop();

    // One worker, one call at a time: 3 calls of warm-up, then the leak
    // shows at each of 3 samples, whatever the machine's load.
    let leaky = start_server(&pg, "leak");
    let port = leaky.port().unwrap();
    let report = Load::new(12)
        .workers(1)
        .call_timeout(Duration::from_secs(30))
        .watch(leaky.server_pid())
        .run(fetch, port)
        .expect("starting the worker");
    let leak = report
        .leaks()
        .iter()
        .find(|l| l.watched() && l.kind() == LeakKind::Descriptors)
        .unwrap_or_else(|| panic!("the server's leak was not found in 12 calls:\n{report}"));
    println!("a server that keeps a connection per request, 12 calls:\n  {leak}");
    assert!(
        leak.example().contains("(PostgreSQL, services::Postgres)"),
        "the leaked socket is not named as PostgreSQL's: {leak}"
    );
    assert!(
        report.leaks().iter().all(|l| l.watched()),
        "the workers leak nothing:\n{report}"
    );
    leaky.stop();

    // Without the detector, the leak is found the way production finds
    // it, only later: the server runs out (of descriptors, or PostgreSQL
    // of connections) and requests start failing.
    let leaky = start_server(&pg, "leak");
    let port = leaky.port().unwrap();
    let blind = Load::new(1_000)
        .workers(1)
        .leak_detection(false)
        .stop_at_first_failure(true)
        .call_timeout(Duration::from_secs(30))
        .run(fetch, port)
        .expect("starting the worker");
    let failed_at = blind
        .failures()
        .first()
        .map(|f| f.index())
        .unwrap_or_else(|| panic!("the leaky server never ran out:\n{blind}"));
    println!(
        "the same server without the leak detector: the first request failed at call \
         {failed_at} of 1000, when it ran out"
    );
    assert!(
        failed_at > 12,
        "it ran out before the detector would have named it"
    );
}

/// Starts this program as the server, in `mode` (`pool` or `leak`), on a
/// free port. The database's URL (with its password) goes in the
/// environment, which other users cannot read, not on the command line.
fn start_server(pg: &Postgres, mode: &str) -> Running {
    Server::new(std::env::current_exe().unwrap())
        .name(&format!("http-{mode}"))
        .args([SERVE, "{port}", mode])
        .env("DATABASE_URL", pg.url())
        .free_port()
        .start()
        .expect("starting the HTTP server")
}

/// The server: one thread per connection; each request runs one query.
fn serve(port: &str, mode: &str) {
    limit_descriptors(DESCRIPTOR_LIMIT);
    let url = std::env::var("DATABASE_URL").expect("DATABASE_URL");
    let database = Database::new(&url, mode == "leak");
    let address: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let listener = listen(address);
    std::thread::scope(|s| {
        for stream in listener.incoming().flatten() {
            let database = &database;
            s.spawn(move || answer(stream, database));
        }
    });
}

/// What the server knows of PostgreSQL: a pool, or (the bug) a list of
/// the connections it opened and forgot to close.
struct Database {
    url: String,
    leak: bool,
    pool: Mutex<Vec<postgres::Client>>,
    free: Condvar,
    kept: Mutex<Vec<postgres::Client>>,
}

impl Database {
    fn new(url: &str, leak: bool) -> Database {
        let pool = match leak {
            true => Vec::new(),
            false => (0..POOL).map(|_| connect(url)).collect(),
        };
        Database {
            url: url.to_owned(),
            leak,
            pool: Mutex::new(pool),
            free: Condvar::new(),
            kept: Mutex::new(Vec::new()),
        }
    }

    /// Counts a visit; the count so far.
    fn visit(&self) -> i64 {
        const SQL: &str = "UPDATE visits SET n = n + 1 RETURNING n";
        if self.leak {
            let mut client = connect(&self.url);
            let n = client.query_one(SQL, &[]).unwrap().get(0);
            self.kept.lock().unwrap().push(client);
            return n;
        }
        let mut client = {
            let mut pool = self.pool.lock().unwrap();
            loop {
                match pool.pop() {
                    Some(client) => break client,
                    None => pool = self.free.wait(pool).unwrap(),
                }
            }
        };
        let n = client.query_one(SQL, &[]).unwrap().get(0);
        self.pool.lock().unwrap().push(client);
        self.free.notify_one();
        n
    }
}

fn connect(url: &str) -> postgres::Client {
    postgres::Client::connect(url, postgres::NoTls).expect("connecting to PostgreSQL")
}

/// Reads one request's head, runs the query, answers, closes.
fn answer(stream: TcpStream, database: &Database) {
    let mut reader = BufReader::new(&stream);
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) if line == "\r\n" => break,
            Ok(_) => {}
        }
    }
    let body = database.visit().to_string();
    let reply = format!(
        "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = (&stream).write_all(reply.as_bytes());
}

/// A listener whose accept queue holds 100 clients connecting at once.
fn listen(address: SocketAddr) -> TcpListener {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("a socket");
    socket.set_reuse_address(true).unwrap();
    socket
        .bind(&address.into())
        .expect("binding the server's port");
    socket.listen(1024).expect("listening");
    socket.into()
}

/// Sets this process's descriptor limit, as `ulimit -n` would.
fn limit_descriptors(limit: u64) {
    let rlimit = libc::rlimit {
        rlim_cur: limit,
        rlim_max: limit,
    };
    // SAFETY: setrlimit reads the struct, which lives for the call.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &rlimit) };
    assert_eq!(rc, 0, "setting the descriptor limit");
}
