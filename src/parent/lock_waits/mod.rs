//! Waits a database can see: in a scheduled run, children name their
//! PostgreSQL connections (`stampede::postgres_backend`), and when a child
//! let go from a step has not reached its next one, the parent asks the
//! server whether that child's backend waits on another child's
//! (`pg_blocking_pids`). A wait on a held child is a block the schedule
//! records at once, within milliseconds, where the generic rule (every
//! thread asleep for `schedule::BLOCK_WAIT`) needs its whole wait and can
//! mistake a slow query for a block. PostgreSQL's deadlock detector never
//! fires for a wait whose other half is a client parked at a step, so this
//! is the only place such a wait is seen.

mod postgres;
mod scram;

use std::time::Duration;

use postgres::{Client, Target};

/// How long the parent waits for a server's answer (connecting, or one
/// question): a server that takes longer is asked no more in this run.
const ANSWER_WAIT: Duration = Duration::from_secs(2);

/// A connection a child named: the server's URL and its backend pid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Backend {
    pub url: String,
    pub pid: i32,
}

/// A wait the server reported: `backend` (of the child asked about) waits
/// on `blocker`, a backend of child `child`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Wait {
    pub backend: i32,
    pub blocker: i32,
    pub child: usize,
}

/// The run's connections to the servers its children named, opened on
/// first use.
#[derive(Default)]
pub(crate) struct LockWaits {
    servers: Vec<(String, Result<Client, String>)>,
    /// Servers that could not be asked, with why, not yet told.
    untold: Vec<String>,
}

impl LockWaits {
    /// Whether any of `mine` waits on a backend of another child
    /// (`others`: `(child, backend)`); the first such wait.
    pub(crate) fn waiting_on(
        &mut self,
        mine: &[Backend],
        others: &[(usize, Backend)],
    ) -> Option<Wait> {
        let mut urls: Vec<&str> = mine.iter().map(|b| b.url.as_str()).collect();
        urls.sort_unstable();
        urls.dedup();
        for url in urls {
            let named: Vec<i32> = mine
                .iter()
                .filter(|b| b.url == url)
                .map(|b| b.pid)
                .collect();
            let pids: Vec<String> = named.iter().map(i32::to_string).collect();
            let sql = format!(
                "SELECT b, array_to_string(pg_blocking_pids(b), ',') \
                 FROM unnest(ARRAY[{}]::int[]) AS b",
                pids.join(",")
            );
            let Some(rows) = self.ask(url, &named, &sql) else {
                continue;
            };
            for row in rows {
                let (Some(Some(backend)), Some(Some(blockers))) = (row.first(), row.get(1)) else {
                    continue;
                };
                let Ok(backend) = backend.parse::<i32>() else {
                    continue;
                };
                for blocker in blockers.split(',').filter_map(|b| b.parse::<i32>().ok()) {
                    let owner = others
                        .iter()
                        .find(|(_, b)| b.url == url && b.pid == blocker);
                    if let Some((child, _)) = owner {
                        return Some(Wait {
                            backend,
                            blocker,
                            child: *child,
                        });
                    }
                }
            }
        }
        None
    }

    /// What could not be asked since the last call, once per server.
    pub(crate) fn take_problems(&mut self) -> Vec<String> {
        std::mem::take(&mut self.untold)
    }

    /// `sql`'s rows from the server at `url`, connected to on first use
    /// and proven there the server of `backends` where that is needed.
    fn ask(&mut self, url: &str, backends: &[i32], sql: &str) -> Option<postgres::Rows> {
        let at = match self.servers.iter().position(|(u, _)| u == url) {
            Some(at) => at,
            None => {
                let client =
                    Target::parse(url).and_then(|t| Client::connect(&t, ANSWER_WAIT, backends));
                if let Err(e) = &client {
                    self.untold.push(problem(url, e));
                }
                self.servers.push((url.to_owned(), client));
                self.servers.len() - 1
            }
        };
        let client = self.servers[at].1.as_mut().ok()?;
        match client.query(sql) {
            Ok(rows) => Some(rows),
            Err(e) => {
                self.untold.push(problem(url, &e));
                self.servers[at].1 = Err(e);
                None
            }
        }
    }
}

fn problem(url: &str, why: &str) -> String {
    format!(
        "lock waits on {} could not be asked ({why}); the generic wait decided instead",
        redacted(url)
    )
}

/// `url` without a password, for a message.
fn redacted(url: &str) -> String {
    match Target::parse(url) {
        Ok(t) if t.host.starts_with('/') => {
            format!("PostgreSQL at {}/.s.PGSQL.{} as {}", t.host, t.port, t.user)
        }
        Ok(t) => format!("PostgreSQL at {}:{} as {}", t.host, t.port, t.user),
        Err(_) => "a URL that is not PostgreSQL's".into(),
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;
    use std::time::{Duration, Instant};

    use super::*;

    /// A server that takes the connection and never answers: asked once,
    /// it costs `ANSWER_WAIT` and is named; asked again, nothing is waited.
    #[test]
    fn a_server_that_does_not_answer_is_given_answer_wait_then_asked_no_more() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (done, hold) = std::sync::mpsc::channel::<()>();
        let server = std::thread::spawn(move || {
            let (conn, _) = listener.accept().unwrap();
            let _ = hold.recv(); // says nothing until the test ends
            drop(conn);
        });
        let mine = [Backend {
            url: format!("postgresql://u:pw@127.0.0.1:{port}/d"),
            pid: 7,
        }];
        let mut waits = LockWaits::default();
        let began = Instant::now();
        assert_eq!(waits.waiting_on(&mine, &[]), None);
        let waited = began.elapsed();
        assert!(
            waited >= ANSWER_WAIT && waited < ANSWER_WAIT + Duration::from_secs(10),
            "waited {waited:?} for a silent server, not ANSWER_WAIT ({ANSWER_WAIT:?})"
        );
        assert_eq!(
            waits.take_problems(),
            [format!(
                "lock waits on PostgreSQL at 127.0.0.1:{port} as u could not be asked (the \
                 server did not answer in time); the generic wait decided instead"
            )]
        );
        let began = Instant::now();
        assert_eq!(waits.waiting_on(&mine, &[]), None);
        assert!(
            began.elapsed() < ANSWER_WAIT,
            "asked the silent server again"
        );
        assert!(waits.take_problems().is_empty(), "named once");
        done.send(()).unwrap();
        server.join().unwrap();
    }
}
