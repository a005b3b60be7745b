//! What listens at the addresses this process started servers on:
//! `services` writes each one down when it starts a server on TCP
//! (`127.0.0.1:41234` is PostgreSQL of `services::Postgres`), and the leak
//! detector reads it back to say what a leaked socket talks to, where a
//! port number alone would say nothing. A leaf: it imports nothing.

use std::sync::Mutex;

/// The most kept: a process that starts servers in a loop keeps the latest.
const KEPT: usize = 256;

/// Addresses and what listens there, newest last, at most [`KEPT`].
#[derive(Default)]
struct Known(Vec<(String, String)>);

impl Known {
    const fn new() -> Known {
        Known(Vec::new())
    }

    fn remember(&mut self, address: &str, what: &str) {
        self.0.retain(|(a, _)| a != address);
        if self.0.len() == KEPT {
            self.0.remove(0);
        }
        self.0.push((address.to_owned(), what.to_owned()));
    }

    fn what_is(&self, address: &str) -> Option<String> {
        self.0
            .iter()
            .rev()
            .find(|(a, _)| a == address)
            .map(|(_, what)| what.clone())
    }
}

/// This process's.
static KNOWN: Mutex<Known> = Mutex::new(Known::new());

/// Writes down that `what` listens at `address` (`127.0.0.1:41234`).
pub(crate) fn remember(address: &str, what: &str) {
    KNOWN
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remember(address, what);
}

/// What listens at `address`, if this process started it.
pub(crate) fn what_is(address: &str) -> Option<String> {
    KNOWN
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .what_is(address)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_server_at_an_address_is_the_one_named() {
        let mut known = Known::new();
        known.remember("127.0.0.1:1", "PostgreSQL");
        known.remember("127.0.0.1:1", "Redis");
        assert_eq!(known.what_is("127.0.0.1:1").as_deref(), Some("Redis"));
        assert_eq!(known.what_is("127.0.0.1:2"), None);
        assert_eq!(known.0.len(), 1, "one entry per address");
    }

    #[test]
    fn at_most_256_are_kept_the_oldest_forgotten_first() {
        let mut known = Known::new();
        for i in 0..KEPT {
            known.remember(&format!("10.0.0.1:{i}"), "x");
        }
        assert!(known.what_is("10.0.0.1:0").is_some(), "256 are kept");
        known.remember("10.0.0.2:1", "y");
        assert!(
            known.what_is("10.0.0.1:0").is_none(),
            "the 257th forgets the oldest"
        );
        assert!(known.what_is("10.0.0.1:1").is_some());
    }

    #[test]
    fn the_process_wide_record_answers_what_it_was_told() {
        remember("10.9.9.9:7", "memcached, started by stampede");
        assert_eq!(
            what_is("10.9.9.9:7").as_deref(),
            Some("memcached, started by stampede")
        );
    }
}
