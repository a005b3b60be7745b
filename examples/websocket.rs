//! Websockets over Redis: 1000 client processes open websockets to a small
//! server that relays a Redis channel, and one message published through
//! Redis must reach every one of them.
//!
//! The pieces are the real ones: `redis-server` (a fixture of
//! `stampede::services::Redis`, a server of this run's own), the `redis`
//! client, and `tungstenite` websockets. The relay
//! (`tests/common/ws_relay.rs`) runs in this process: it subscribes to
//! the channel and sends what arrives to every websocket on its list. Each
//! client opens its websocket and subscribes at its own pace, then waits in
//! `stampede::checkpoint()`. When every client is there, the parent's
//! trigger publishes through Redis, and only then are the clients released
//! to read. Each returns the message and when it read it, on the monotonic
//! clock all processes share.
//!
//! Needs `redis-server` (Debian: `apt-get install redis-server`).

#[path = "../tests/common/ws_relay.rs"]
mod ws_relay;

use std::sync::Arc;
use std::time::{Duration, Instant};

use stampede::services::Redis;
use ws_relay::{Publisher, Received, Relay};

const CLIENTS: usize = 1000;

#[stampede::function]
fn client(url: String) -> Received {
    ws_relay::subscribe_and_wait(&url)
}

fn main() {
    stampede::init();
    // Pub/sub is server-wide: a server of this run's own.
    let redis = Redis::builder()
        .private_instance(true)
        .start()
        .expect("starting redis-server");
    let relay = Relay::start(redis.url(), "news", |_| false);
    let publisher = Arc::new(Publisher::connect(redis.url(), "news"));
    let trigger = publisher.clone();
    println!(
        "{CLIENTS} client processes open websockets to {}, which relays Redis channel `news`;\n\
         the parent publishes through Redis once every client is subscribed.",
        relay.url()
    );
    let began = Instant::now();
    let outcomes = stampede::Options::new()
        .timeout(Duration::from_secs(180))
        .checkpoint_release(stampede::Release::all().within(Duration::from_secs(120)))
        .on_checkpoint(move || trigger.publish("news"))
        .call_concurrently(CLIENTS, client, relay.url())
        .expect("starting the clients");
    let elapsed = began.elapsed();
    if let Err(failure) = ws_relay::check_delivery(&outcomes, "news") {
        panic!("{failure}");
    }
    let published = publisher.published_at();
    assert_eq!(published.len(), 1, "the trigger published once");
    assert_eq!(relay.subscribed(), CLIENTS, "every client on the list");
    let mut latencies: Vec<Duration> = outcomes
        .values()
        .filter_map(|received| received.as_ref())
        .map(|(_, at)| at.duration_since(published[0]))
        .collect();
    latencies.sort();
    // Exact nearest rank: the smallest value with at least q of the
    // samples at or below it.
    let rank = |q: f64| {
        let k = ((q * latencies.len() as f64).ceil() as usize).clamp(1, latencies.len());
        format!("{:.2}", latencies[k - 1].as_secs_f64() * 1e3)
    };
    println!(
        "  {} of {CLIENTS} clients got the message, {:.2} s in all",
        latencies.len(),
        elapsed.as_secs_f64()
    );
    println!(
        "  delivery after the publish began: p50 {} ms, p90 {} ms, p99 {} ms, max {} ms",
        rank(0.50),
        rank(0.90),
        rank(0.99),
        rank(1.0)
    );
    println!("  stages:");
    for line in outcomes.stages().to_string().lines() {
        println!("    {line}");
    }
}
