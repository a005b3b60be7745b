//! `#[stampede::function] async fn` (cargo feature `tokio`): each child runs
//! the body on a tokio runtime of its own, with sockets, timers and an async
//! database client; a panic inside the future is the child's panic.
//!
//! Run with `cargo test --features tokio --test async_fn`.
#![cfg(feature = "tokio")]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use stampede::Load;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

stampede::entry!();

/// Connects to the parent's server after the checkpoint, sends `hello`,
/// and returns the server's answer; sleeps first on a tokio timer.
#[stampede::function]
async fn greet(port: u16) -> String {
    tokio::time::sleep(Duration::from_millis(5)).await;
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connecting");
    stampede::checkpoint();
    let (read, mut write) = stream.into_split();
    write.write_all(b"hello\n").await.unwrap();
    let mut line = String::new();
    tokio::io::BufReader::new(read)
        .read_line(&mut line)
        .await
        .unwrap();
    line.trim_end().to_owned()
}

/// A server and a client inside one child, on tokio's listener: the
/// accepted side runs as a spawned task.
#[stampede::function]
async fn echo_through_a_local_server(word: String) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let (read, mut write) = socket.split();
        let mut line = String::new();
        tokio::io::BufReader::new(read)
            .read_line(&mut line)
            .await
            .unwrap();
        write
            .write_all(line.to_uppercase().as_bytes())
            .await
            .unwrap();
    });
    let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
    client
        .write_all(format!("{word}\n").as_bytes())
        .await
        .unwrap();
    let mut answer = String::new();
    tokio::io::BufReader::new(&mut client)
        .read_line(&mut answer)
        .await
        .unwrap();
    server.await.unwrap();
    answer.trim_end().to_owned()
}

#[stampede::function]
async fn fails_after_an_await(limit: u32) -> u32 {
    tokio::task::yield_now().await;
    assert!(limit > 10, "limit {limit} is too low");
    limit
}

/// Ticks of the task that `start_ticking` leaves running.
static TICKS: AtomicU64 = AtomicU64::new(0);

/// Call 1 starts a task that ticks forever and returns; later calls in the
/// same worker count the ticks seen while they sleep: the worker's one
/// runtime runs the task again whenever a call awaits.
#[stampede::function]
async fn start_ticking() -> u64 {
    let before = TICKS.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(30)).await;
    let during = TICKS.load(Ordering::SeqCst) - before;
    tokio::spawn(async {
        loop {
            TICKS.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    });
    tokio::task::yield_now().await;
    during
}

#[test]
fn async_children_use_tokio_sockets_and_timers() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        for (i, stream) in listener.incoming().take(4).enumerate() {
            let mut stream = stream.unwrap();
            let mut line = String::new();
            BufReader::new(&stream).read_line(&mut line).unwrap();
            assert_eq!(line, "hello\n");
            writeln!(stream, "welcome {i}").unwrap();
        }
    });
    let mut answers = stampede::call_concurrently(4, greet, port)
        .unwrap()
        .unwrap_all();
    server.join().unwrap();
    answers.sort();
    assert_eq!(
        answers,
        ["welcome 0", "welcome 1", "welcome 2", "welcome 3"]
    );
}

#[test]
fn spawned_tasks_run_in_the_childs_runtime() {
    let answers = stampede::call_concurrently(2, echo_through_a_local_server, "ping".to_owned())
        .unwrap()
        .unwrap_all();
    assert_eq!(answers, ["PING", "PING"]);
}

#[test]
fn a_panic_inside_the_future_is_the_childs_panic() {
    let outcomes = stampede::call_concurrently(2, fails_after_an_await, 3).unwrap();
    for outcome in &outcomes {
        assert_eq!(outcome.panic_message(), Some("limit 3 is too low"));
        let location = match outcome.status() {
            stampede::Status::Panicked { location, .. } => location.clone().unwrap_or_default(),
            other => panic!("expected a panic, got {other:?}"),
        };
        assert!(location.starts_with("tests/async_fn.rs:"), "{location}");
    }
    assert_eq!(
        stampede::call_concurrently(1, fails_after_an_await, 11)
            .unwrap()
            .unwrap_all(),
        [11]
    );
}

#[test]
fn tasks_spawned_by_one_call_live_on_in_the_workers_runtime() {
    let report = Load::new(3).workers(1).run(start_ticking, ()).unwrap();
    report.assert_all_returned();
    let ticks: Vec<u64> = report.values().copied().collect();
    assert_eq!(ticks[0], 0, "nothing ticks before call 1 starts it");
    assert!(
        ticks[1] > 0 && ticks[2] > 0,
        "call 1's task stopped: {ticks:?}"
    );
}

/// A client made by the first call of a worker and kept for the next ones,
/// as long-lived workers invite.
static CLIENT: tokio::sync::OnceCell<tokio_postgres::Client> = tokio::sync::OnceCell::const_new();

/// Counts a visit through the worker's one client; the count.
#[stampede::function]
async fn visit_with_a_kept_client(url: String) -> i64 {
    let client = CLIENT
        .get_or_init(|| async {
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .expect("connecting to the fixture");
            tokio::spawn(connection);
            client
        })
        .await;
    client
        .query_one("UPDATE visits SET n = n + 1 RETURNING n", &[])
        .await
        .expect("the kept client answers every call")
        .get(0)
}

#[test]
fn a_client_kept_across_calls_answers_every_one_of_them() {
    let pg = stampede::services::Postgres::builder()
        .template_sql("CREATE TABLE visits (n bigint); INSERT INTO visits VALUES (0);")
        .start()
        .unwrap();
    let report = Load::new(20)
        .workers(2)
        .run(visit_with_a_kept_client, pg.url().to_owned())
        .unwrap();
    report.assert_all_returned().assert_no_leaks();
    let mut counts: Vec<i64> = report.values().copied().collect();
    counts.sort_unstable();
    assert_eq!(counts, (1..=20).collect::<Vec<i64>>());
}

#[stampede::function]
async fn registered_async() -> u8 {
    1
}

#[test]
fn a_registered_async_fn_called_inside_a_runtime_says_what_is_wrong() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        runtime.block_on(async { registered_async() })
    }))
    .unwrap_err();
    let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    for part in [
        "`async_fn::registered_async` is a registered `async fn`",
        "inside a tokio runtime",
        "stampede::call_concurrently",
    ] {
        assert!(message.contains(part), "{part}: {message}");
    }
}

/// Each child adds a row through tokio-postgres, then counts them.
#[stampede::function]
async fn insert_and_count(url: String) -> i64 {
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("connecting to the fixture");
    tokio::spawn(connection);
    stampede::checkpoint();
    client
        .execute(
            "INSERT INTO hits (pid) VALUES ($1)",
            &[&(std::process::id() as i32)],
        )
        .await
        .unwrap();
    client
        .query_one("SELECT count(*) FROM hits", &[])
        .await
        .unwrap()
        .get(0)
}

#[test]
fn an_async_database_client_in_every_child() {
    let pg = stampede::services::Postgres::start().unwrap();
    let mut admin = postgres::Client::connect(pg.url(), postgres::NoTls).unwrap();
    admin
        .batch_execute("CREATE TABLE hits (pid integer NOT NULL)")
        .unwrap();
    let counts = stampede::call_concurrently(4, insert_and_count, pg.url().to_owned())
        .unwrap()
        .unwrap_all();
    assert!(counts.iter().all(|c| (1..=4).contains(c)), "{counts:?}");
    let rows: i64 = admin
        .query_one("SELECT count(DISTINCT pid) FROM hits", &[])
        .unwrap()
        .get(0);
    assert_eq!(rows, 4);
}
