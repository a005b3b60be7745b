//! A small websocket server that relays a Redis channel to its clients —
//! the shape of a real chat or notification service — and its clients.
//!
//! The server (in the test's own process) subscribes to one Redis channel
//! with the `redis` crate and accepts websockets (`tungstenite`) on a
//! loopback port. A client sends `subscribe <index>`; the server puts it on
//! its list and answers `subscribed`. Every message published on the
//! channel, by anyone, is sent to every client on the list. A lossy server
//! (the negative control) skips the clients whose index it was told to.

use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use stampede::Timestamp;
use tungstenite::{Message, WebSocket};

#[path = "delivery.rs"]
mod delivery;
#[path = "loopback.rs"]
mod loopback;

pub use delivery::{Received, check_delivery};

/// How long a client waits for the message before it gives up.
const READ_TIMEOUT: Duration = Duration::from_secs(120);

/// The clients on the relay's list: each one's index and its websocket.
type List = Arc<Mutex<Vec<(usize, WebSocket<TcpStream>)>>>;

/// The websocket server, relaying `channel` of a Redis server.
pub struct Relay {
    port: u16,
    clients: List,
}

impl Relay {
    /// Subscribes to `channel` at `redis_url` (done when this returns: a
    /// message published after it is relayed) and starts serving; `skip`
    /// names the clients whose messages it drops.
    pub fn start(redis_url: &str, channel: &str, skip: fn(usize) -> bool) -> Relay {
        let listener = loopback::listen();
        let port = listener.local_addr().unwrap().port();
        let clients = Arc::new(Mutex::new(Vec::new()));
        let client = redis::Client::open(redis_url).expect("a Redis URL");
        let mut connection = client.get_connection().expect("connecting to Redis");
        let (subscribed, ready) = std::sync::mpsc::channel();
        let channel = channel.to_owned();
        let list = clients.clone();
        std::thread::spawn(move || {
            let mut pubsub = connection.as_pubsub();
            pubsub
                .subscribe(&channel)
                .expect("subscribing to the channel");
            subscribed.send(()).unwrap();
            while let Ok(message) = pubsub.get_message() {
                let Ok(payload) = message.get_payload::<String>() else {
                    continue;
                };
                relay(&list, &payload, skip);
            }
        });
        ready
            .recv_timeout(Duration::from_secs(30))
            .expect("the relay subscribed to Redis");
        let list = clients.clone();
        std::thread::spawn(move || accept(listener, list));
        Relay { port, clients }
    }

    /// The websocket URL clients connect to.
    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/", self.port)
    }

    /// How many clients are on the list.
    pub fn subscribed(&self) -> usize {
        self.clients.lock().unwrap().len()
    }
}

/// Publishes on a Redis channel, as any other service of the system would,
/// and remembers when it began to.
pub struct Publisher {
    connection: Mutex<redis::Connection>,
    channel: String,
    published_at: Mutex<Vec<Timestamp>>,
}

impl Publisher {
    pub fn connect(redis_url: &str, channel: &str) -> Publisher {
        let client = redis::Client::open(redis_url).expect("a Redis URL");
        Publisher {
            connection: Mutex::new(client.get_connection().expect("connecting to Redis")),
            channel: channel.to_owned(),
            published_at: Mutex::new(Vec::new()),
        }
    }

    /// `PUBLISH`es `message`; an error unless exactly one subscriber (the
    /// relay) was listening.
    pub fn publish(&self, message: &str) -> Result<(), String> {
        let mut connection = self.connection.lock().unwrap();
        self.published_at.lock().unwrap().push(Timestamp::now());
        let receivers: i64 = redis::cmd("PUBLISH")
            .arg(&self.channel)
            .arg(message)
            .query(&mut *connection)
            .map_err(|e| format!("publishing through Redis: {e}"))?;
        match receivers {
            1 => Ok(()),
            n => Err(format!(
                "{n} subscribers on the channel, not the relay alone"
            )),
        }
    }

    /// When each publish began.
    pub fn published_at(&self) -> Vec<Timestamp> {
        self.published_at.lock().unwrap().clone()
    }
}

/// Sends `payload` to every client on the list but those `skip` names.
fn relay(list: &List, payload: &str, skip: fn(usize) -> bool) {
    let mut clients = list.lock().unwrap();
    for (index, socket) in clients.iter_mut() {
        // A client that left is no reason to stop the others'. One that
        // is skipped is closed on, so that it does not wait for ever.
        let _ = match skip(*index) {
            false => socket.send(Message::text(payload)),
            true => socket.close(None).and_then(|()| socket.flush()),
        };
    }
}

/// Accepts connections; each one's handshake and subscription in a thread
/// of its own, then onto the list.
fn accept(listener: TcpListener, list: List) {
    for stream in listener.incoming().flatten() {
        let list = list.clone();
        std::thread::spawn(move || {
            let Ok(mut socket) = tungstenite::accept(stream) else {
                return;
            };
            let index = match socket.read() {
                Ok(Message::Text(text)) => text
                    .as_str()
                    .strip_prefix("subscribe ")
                    .and_then(|i| i.parse().ok()),
                _ => None,
            };
            let Some(index) = index else {
                let _ = socket.close(None);
                return;
            };
            // On the list before the answer: a client that has its answer
            // gets every message published after it.
            let mut clients = list.lock().unwrap();
            if socket.send(Message::text("subscribed")).is_ok() {
                clients.push((index, socket));
            }
        });
    }
}

/// The client's side: open the websocket and subscribe (setup, at its own
/// pace), wait at the checkpoint until every client is on the list, then
/// read the message.
pub fn subscribe_and_wait(url: &str) -> Received {
    let index = stampede::child_index().expect("a client runs as a child");
    let (mut socket, _) = tungstenite::connect(url).expect("opening the websocket");
    if let tungstenite::stream::MaybeTlsStream::Plain(stream) = socket.get_ref() {
        stream
            .set_read_timeout(Some(READ_TIMEOUT))
            .expect("setting a read timeout");
    }
    socket
        .send(Message::text(format!("subscribe {index}")))
        .expect("sending the subscription");
    let answer = socket.read().expect("reading the subscription's answer");
    assert_eq!(answer, Message::text("subscribed"), "the server's answer");
    stampede::checkpoint(); // every client is on the list: publish now
    match socket.read() {
        Ok(Message::Text(text)) => Some((text.as_str().to_owned(), Timestamp::now())),
        _ => None,
    }
}
