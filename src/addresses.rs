//! What listens at the addresses this process started servers on:
//! `services` writes each one down when it starts a server on TCP
//! (`127.0.0.1:41234` is PostgreSQL of `services::Postgres`), and the leak
//! detector reads it back to say what a leaked socket talks to, where a
//! port number alone would say nothing. A leaf: it imports nothing.

use std::sync::Mutex;

/// The addresses written down, newest last.
static KNOWN: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

/// The most kept: a process that starts servers in a loop keeps the latest.
const KEPT: usize = 256;

/// Writes down that `what` listens at `address` (`127.0.0.1:41234`).
pub(crate) fn remember(address: &str, what: &str) {
    let mut known = KNOWN.lock().unwrap_or_else(|e| e.into_inner());
    known.retain(|(a, _)| a != address);
    if known.len() == KEPT {
        known.remove(0);
    }
    known.push((address.to_owned(), what.to_owned()));
}

/// What listens at `address`, if this process started it.
pub(crate) fn what_is(address: &str) -> Option<String> {
    let known = KNOWN.lock().unwrap_or_else(|e| e.into_inner());
    known
        .iter()
        .rev()
        .find(|(a, _)| a == address)
        .map(|(_, what)| what.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_server_at_an_address_is_the_one_named() {
        remember("127.0.0.1:1", "PostgreSQL");
        remember("127.0.0.1:1", "Redis");
        assert_eq!(what_is("127.0.0.1:1").as_deref(), Some("Redis"));
        assert_eq!(what_is("127.0.0.1:2"), None);
    }

    #[test]
    fn at_most_256_are_kept_the_oldest_forgotten_first() {
        for i in 0..KEPT {
            remember(&format!("10.0.0.1:{i}"), "x");
        }
        assert!(what_is("10.0.0.1:0").is_some(), "256 are kept");
        remember("10.0.0.2:1", "y");
        assert!(
            what_is("10.0.0.1:0").is_none(),
            "the 257th forgets the oldest"
        );
        assert!(what_is("10.0.0.1:1").is_some());
    }
}
