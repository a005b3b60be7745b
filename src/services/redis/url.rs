//! Redis URLs as the common clients read them: `redis://[[user]:password@]
//! host[:port][/db]` over TCP, `redis+unix:///path[?db=N&pass=…]` (or
//! `unix://`) over a Unix socket.

use std::fmt;
use std::path::PathBuf;

use crate::percent::{self, Undecodable, decode_secret};

/// Where a server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Address {
    Tcp { host: String, port: u16 },
    Unix(PathBuf),
}

/// A server, the credentials to get in, and a database on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Target {
    pub(super) address: Address,
    pub(super) user: Option<String>,
    pub(super) password: Option<String>,
    pub(super) db: u32,
}

impl Target {
    /// The same server and credentials, database `db`.
    pub(super) fn with_db(&self, db: u32) -> Target {
        Target { db, ..self.clone() }
    }

    /// Reads `url`; what is wrong with it, in words, when it cannot.
    pub(super) fn parse(url: &str) -> Result<Target, String> {
        if let Some(rest) = url
            .strip_prefix("redis+unix://")
            .or_else(|| url.strip_prefix("unix://"))
        {
            let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
            if !path.starts_with('/') {
                return Err(format!(
                    "a Unix socket URL needs an absolute path (`redis+unix:///run/redis.sock`), \
                     not `{path}`"
                ));
            }
            let mut target = Target {
                address: Address::Unix(PathBuf::from(decode(path)?)),
                user: None,
                password: None,
                db: 0,
            };
            for pair in query.split('&').filter(|p| !p.is_empty()) {
                let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                let value = match key {
                    "pass" | "password" => decode_secret(value)?,
                    _ => decode(value)?,
                };
                match key {
                    "db" => target.db = db_number(&value)?,
                    "pass" | "password" => target.password = Some(value),
                    "user" | "username" => target.user = Some(value),
                    "protocol" => {}
                    other => return Err(format!("it has an unknown parameter `{other}`")),
                }
            }
            return Ok(target);
        }
        if url.starts_with("rediss://") {
            return Err(
                "it asks for TLS (`rediss://`), which stampede's own commands do not \
                        speak; reuse the server over `redis://` or a Unix socket"
                    .to_owned(),
            );
        }
        let Some(rest) = url.strip_prefix("redis://") else {
            return Err(
                "it is not a Redis URL: it should look like `redis://127.0.0.1:6379/0` or \
                 `redis+unix:///run/redis.sock`"
                    .to_owned(),
            );
        };
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let path = path.split_once('?').map_or(path, |(p, _)| p);
        let (credentials, host_port) = match authority.rsplit_once('@') {
            Some((credentials, host_port)) => (Some(credentials), host_port),
            None => (None, authority),
        };
        let (user, password) = match credentials {
            None => (None, None),
            Some(credentials) => match credentials.split_once(':') {
                Some((user, password)) => (
                    Some(decode(user)?).filter(|u| !u.is_empty()),
                    Some(decode_secret(password)?),
                ),
                None => (Some(decode(credentials)?), None),
            },
        };
        let bracketed_alone = host_port.starts_with('[') && host_port.ends_with(']');
        let (host, port) = match host_port.rsplit_once(':') {
            Some((host, port)) if !bracketed_alone => (
                host,
                port.parse::<u16>()
                    .map_err(|_| format!("its port `{port}` is not a number from 1 to 65535"))?,
            ),
            _ => (host_port, 6379),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err("it names no host (`redis://127.0.0.1:6379`)".to_owned());
        }
        Ok(Target {
            address: Address::Tcp {
                host: host.to_owned(),
                port,
            },
            user,
            password,
            db: if path.is_empty() { 0 } else { db_number(path)? },
        })
    }
}

impl fmt::Display for Target {
    /// The URL, password included (for the test that owns it).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.address {
            Address::Tcp { host, port } => {
                write!(f, "redis://")?;
                if self.user.is_some() || self.password.is_some() {
                    let user = self.user.as_deref().unwrap_or("");
                    write!(f, "{}", encode(user))?;
                    if let Some(password) = &self.password {
                        write!(f, ":{}", encode(password))?;
                    }
                    write!(f, "@")?;
                }
                if host.contains(':') {
                    write!(f, "[{host}]:{port}/{}", self.db)
                } else {
                    write!(f, "{host}:{port}/{}", self.db)
                }
            }
            Address::Unix(path) => {
                write!(
                    f,
                    "redis+unix://{}?db={}",
                    encode_path(&path.to_string_lossy()),
                    self.db
                )?;
                if let Some(user) = &self.user {
                    write!(f, "&user={}", encode(user))?;
                }
                if let Some(password) = &self.password {
                    write!(f, "&pass={}", encode(password))?;
                }
                Ok(())
            }
        }
    }
}

/// `url` with its password replaced by `***`, for messages.
pub(super) fn redacted(url: &str) -> String {
    match Target::parse(url) {
        Ok(mut target) if target.password.is_some() => {
            // A marker that encoding keeps as it is, replaced after.
            const MARKER: &str = "stampedeRedactedPassword";
            target.password = Some(MARKER.to_owned());
            target.to_string().replace(MARKER, "***")
        }
        Ok(target) => target.to_string(),
        // Not a URL it can read: blank whatever could be a password, the
        // user part of an authority and any `pass=` or `password=` value.
        Err(_) => {
            let mut shown = url.to_owned();
            // Up to the last `@`, wherever it is: a password with a `/`
            // in it ends the authority early for a reader, not for a leak.
            if let Some(scheme_end) = shown.find("://") {
                let rest = &shown[scheme_end + 3..];
                if let Some(at) = rest.rfind('@') {
                    shown.replace_range(scheme_end + 3..scheme_end + 3 + at, "***");
                }
            }
            for key in ["pass=", "password="] {
                let mut from = 0;
                while let Some(found) = shown[from..].find(key) {
                    let start = from + found + key.len();
                    let end = shown[start..].find('&').map_or(shown.len(), |e| start + e);
                    shown.replace_range(start..end, "***");
                    from = start + 3;
                }
            }
            shown
        }
    }
}

/// `message`, about `url`, with every piece of what could be the URL's
/// credentials (up to its last `@`) blanked: a URL that cannot be read may
/// still hold a password, and a message may quote the part it stumbled on.
pub(super) fn scrubbed(message: &str, url: &str) -> String {
    let Some(rest) = url.split_once("://").map(|(_, rest)| rest) else {
        return message.to_owned();
    };
    let Some(at) = rest.rfind('@') else {
        return message.to_owned();
    };
    let mut shown = message.to_owned();
    let mut pieces: Vec<&str> = rest[..at]
        .split(['/', ':', '?', '&', '='])
        .filter(|p| p.len() >= 3)
        .collect();
    // Longest first, so that a piece inside another goes with it.
    pieces.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for piece in pieces {
        shown = shown.replace(piece, "***");
    }
    shown
}

fn db_number(text: &str) -> Result<u32, String> {
    text.parse()
        .map_err(|_| format!("its database `{text}` is not a number"))
}

fn decode(text: &str) -> Result<String, String> {
    percent::decode(text).map_err(|e| match e {
        Undecodable::BadEscape => format!("`{text}` has a bad %-escape"),
        Undecodable::NotUtf8 => format!("`{text}` is not UTF-8 once decoded"),
    })
}

fn encode_with(text: &str, keep: impl Fn(u8) -> bool) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || keep(b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn encode(text: &str) -> String {
    encode_with(text, |_| false)
}

fn encode_path(text: &str) -> String {
    encode_with(text, |b| b == b'/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_urls_are_read_with_their_parts_and_defaults() {
        let t = Target::parse("redis://127.0.0.1:6390/3").unwrap();
        assert_eq!(
            t.address,
            Address::Tcp {
                host: "127.0.0.1".into(),
                port: 6390
            }
        );
        assert_eq!((t.user, t.password, t.db), (None, None, 3));
        let t = Target::parse("redis://:p%40ss@localhost").unwrap();
        assert_eq!(t.password.as_deref(), Some("p@ss"));
        assert_eq!(t.user, None);
        assert_eq!(t.db, 0);
        assert!(matches!(t.address, Address::Tcp { port: 6379, .. }));
        let t = Target::parse("redis://[::1]").unwrap();
        assert_eq!(
            t.address,
            Address::Tcp {
                host: "::1".into(),
                port: 6379
            }
        );
        let t = Target::parse("redis://app:secret@[::1]:7000/2").unwrap();
        assert_eq!(t.user.as_deref(), Some("app"));
        assert_eq!(
            t.address,
            Address::Tcp {
                host: "::1".into(),
                port: 7000
            }
        );
    }

    #[test]
    fn socket_urls_are_read_with_their_parameters() {
        let t = Target::parse("redis+unix:///run/redis.sock?db=5&pass=x%26y").unwrap();
        assert_eq!(t.address, Address::Unix("/run/redis.sock".into()));
        assert_eq!((t.db, t.password.as_deref()), (5, Some("x&y")));
        assert!(Target::parse("unix:///run/r.sock").is_ok());
    }

    #[test]
    fn urls_print_back_to_what_they_read() {
        for url in [
            "redis://127.0.0.1:6390/3",
            "redis://:p%40ss@localhost:6379/0",
            "redis://app:secret@[::1]:7000/2",
            "redis+unix:///tmp/a%20b/redis.sock?db=7&pass=x%26y",
        ] {
            let target = Target::parse(url).unwrap();
            assert_eq!(target.to_string(), url);
            assert_eq!(Target::parse(&target.to_string()).unwrap(), target);
        }
        let t = Target::parse("redis://127.0.0.1:6390").unwrap().with_db(9);
        assert_eq!(t.to_string(), "redis://127.0.0.1:6390/9");
    }

    #[test]
    fn what_is_wrong_with_a_url_is_said() {
        let says = |url: &str, what: &str| {
            let e = Target::parse(url).unwrap_err();
            assert!(e.contains(what), "{url}: {e}");
        };
        says("not a url", "not a Redis URL");
        says("postgresql://x", "not a Redis URL");
        says("rediss://h:1", "TLS");
        says("redis://h:99999", "port `99999`");
        says("redis://h:1/x", "database `x`");
        says("redis://", "no host");
        says("redis+unix://relative.sock", "absolute path");
        says("redis+unix:///r.sock?dbx=1", "unknown parameter `dbx`");
        says("redis://:%zz@h", "bad %-escape");
        // A password is never repeated, in the user part or a parameter.
        for url in [
            "redis://:s3cret%zz@h",
            "redis+unix:///r.sock?pass=s3cret%zz",
        ] {
            let e = Target::parse(url).unwrap_err();
            assert!(
                !e.contains("s3cret") && e.contains("bad %-escape"),
                "{url}: {e}"
            );
        }
    }

    #[test]
    fn a_password_is_redacted_in_messages() {
        assert_eq!(redacted("redis://:hunter2@h:1/0"), "redis://:***@h:1/0");
        assert_eq!(redacted("redis://h:1/0"), "redis://h:1/0");
        assert_eq!(redacted("nonsense"), "nonsense");
        // Not readable as a URL, and still no password shown.
        assert_eq!(redacted("redis://:hunter2@h:1/x"), "redis://***@h:1/x");
        assert_eq!(
            redacted("redis://:hunter2@h:99999/0"),
            "redis://***@h:99999/0"
        );
        assert_eq!(
            redacted("redis+unix:///s?pass=hunter2&timeout=1"),
            "redis+unix:///s?pass=***&timeout=1"
        );
    }

    #[test]
    fn a_url_that_cannot_be_read_shows_no_password_in_its_error() {
        let url = "redis://:Sec/ret-pw@h:1/0";
        let message = Target::parse(url).unwrap_err();
        let shown = format!("{}: {}", redacted(url), scrubbed(&message, url));
        assert!(
            !shown.contains("Sec") && !shown.contains("ret-pw"),
            "{shown}"
        );
        assert!(shown.starts_with("redis://***@h:1/0"), "{shown}");
        assert_eq!(
            scrubbed("plain", "redis://h:1/0"),
            "plain",
            "no credentials"
        );
    }
}
