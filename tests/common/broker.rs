//! A small publish/subscribe server on loopback, shared by the broadcast
//! example and the fan-out tests, and the subscriber that talks to it.
//!
//! A subscriber connects, sends `subscribe`, and is on the broker's list
//! once it reads `subscribed`. `publish` writes the message to every
//! subscriber on the list (all but every `drop_every`-th one, for a broker
//! with a planted bug), then shuts the write side of every connection, so a
//! subscriber that was skipped reads the end of the stream instead of
//! waiting forever.
#![allow(dead_code, reason = "each user takes a different subset")]

use std::io::{self, BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use stampede::Timestamp;

#[path = "delivery.rs"]
mod delivery;
#[path = "loopback.rs"]
mod loopback;

pub use delivery::{Received, check_delivery};

/// How long a subscriber waits for a line before it gives up with a
/// reason, rather than hanging until the call's timeout.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Broker {
    addr: SocketAddr,
    subscribers: Mutex<Vec<TcpStream>>,
    /// Skips every `n`-th subscriber (in subscription order) when publishing.
    drop_every: Option<usize>,
    published_at: Mutex<Option<Timestamp>>,
    publishes: Mutex<usize>,
}

impl Broker {
    /// A correct broker, serving on a loopback port from a thread of its own.
    pub fn start() -> Arc<Broker> {
        Broker::start_with(None)
    }

    /// A broker with a bug: it skips every `n`-th subscriber when publishing.
    pub fn start_lossy(n: usize) -> Arc<Broker> {
        Broker::start_with(Some(n))
    }

    fn start_with(drop_every: Option<usize>) -> Arc<Broker> {
        let listener = loopback::listen();
        let broker = Arc::new(Broker {
            addr: listener.local_addr().expect("the listener's address"),
            subscribers: Mutex::new(Vec::new()),
            drop_every,
            published_at: Mutex::new(None),
            publishes: Mutex::new(0),
        });
        let server = broker.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let server = server.clone();
                // One short-lived thread per handshake; small stacks keep a
                // thousand of them cheap.
                let _ = std::thread::Builder::new()
                    .stack_size(64 * 1024)
                    .spawn(move || server.handshake(stream));
            }
        });
        broker
    }

    fn handshake(&self, stream: TcpStream) {
        let mut line = String::new();
        if BufReader::new(&stream).read_line(&mut line).is_err() || line != "subscribe\n" {
            return;
        }
        let _ = stream.set_nodelay(true);
        // On the list before the answer: a subscriber that read `subscribed`
        // gets the next message.
        let mut list = self.subscribers.lock().unwrap();
        if (&stream).write_all(b"subscribed\n").is_ok() {
            list.push(stream);
        }
    }

    pub fn addr(&self) -> String {
        self.addr.to_string()
    }

    /// How many subscribers are on the list.
    pub fn subscribed(&self) -> usize {
        self.subscribers.lock().unwrap().len()
    }

    /// Sends `message` to every subscriber, then ends every connection.
    pub fn publish(&self, message: &str) -> io::Result<()> {
        *self.published_at.lock().unwrap() = Some(Timestamp::now());
        *self.publishes.lock().unwrap() += 1;
        let line = format!("{message}\n");
        let subscribers = std::mem::take(&mut *self.subscribers.lock().unwrap());
        let mut failed = 0;
        for (i, mut stream) in subscribers.iter().enumerate() {
            if self.drop_every.is_some_and(|n| i % n == 0) {
                continue;
            }
            failed += usize::from(stream.write_all(line.as_bytes()).is_err());
        }
        for stream in &subscribers {
            let _ = stream.shutdown(Shutdown::Write);
        }
        match failed {
            0 => Ok(()),
            n => Err(io::Error::other(format!(
                "{n} of {} subscribers could not be written to",
                subscribers.len()
            ))),
        }
    }

    /// When the (last) publish began.
    pub fn published_at(&self) -> Option<Timestamp> {
        *self.published_at.lock().unwrap()
    }

    /// How many times `publish` ran.
    pub fn publishes(&self) -> usize {
        *self.publishes.lock().unwrap()
    }
}

/// The subscriber's side: connect and subscribe (setup, at its own pace),
/// wait at the checkpoint until every subscriber is on the list, then read
/// the message.
pub fn subscribe_and_wait(addr: &str) -> Received {
    let stream = TcpStream::connect(addr).expect("connecting to the broker");
    stream
        .set_read_timeout(Some(READ_TIMEOUT))
        .expect("setting a read timeout");
    (&stream)
        .write_all(b"subscribe\n")
        .expect("sending the subscription");
    let mut reader = BufReader::new(&stream);
    let mut line = String::new();
    reader
        .read_line(&mut line)
        .expect("reading the subscription's answer");
    assert_eq!(line, "subscribed\n", "the broker's answer");
    stampede::checkpoint(); // every subscriber is on the list: publish now
    line.clear();
    match reader.read_line(&mut line).expect("reading the message") {
        0 => None,
        _ => Some((line.trim_end().to_owned(), Timestamp::now())),
    }
}
