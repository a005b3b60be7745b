//! libpq connection strings, in both of libpq's forms (a URL,
//! `postgresql://user:secret@host/db?k=v`, or `key=value` pairs): the
//! database changed, the password taken out (for a command line) or left
//! out (for a message). Read as libpq reads them: a URL's user part runs to
//! the first `@` before any `/` (a `?` in a password is the password's),
//! and its keys are %-decoded like its values.

use std::path::PathBuf;

/// `url` with its database replaced by `database`.
pub(super) fn with_database(url: &str, database: &str) -> String {
    if let Some(mut pairs) = key_values(url) {
        pairs.retain(|(key, _)| key != "dbname");
        pairs.push(("dbname".to_owned(), database.to_owned()));
        return join_key_values(&pairs);
    }
    let (scheme, rest) = url.split_once("://").unwrap_or(("postgresql", url));
    let (userinfo, host, after) = crate::libpq::uri_parts(rest);
    let query = after.find('?').map_or("", |i| &after[i..]);
    let userinfo = userinfo.map(|u| format!("{u}@")).unwrap_or_default();
    format!("{scheme}://{userinfo}{host}/{database}{query}")
}

/// `url` without its password, and the password (decoded): from a URL's
/// user part (`postgresql://user:secret@host/db`) or its `password=`
/// parameter, or from a `password=` pair. For a client whose command line
/// any local user can read: the password goes in its environment instead
/// (`PGPASSWORD`).
pub(super) fn split_password(url: &str) -> (String, Option<String>) {
    if let Some(mut pairs) = key_values(url) {
        let password = pairs
            .iter()
            .rev()
            .find(|(key, _)| key == "password")
            .map(|(_, value)| value.clone());
        pairs.retain(|(key, _)| key != "password");
        return (join_key_values(&pairs), password);
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return (url.to_owned(), None);
    };
    let (userinfo, host, after) = crate::libpq::uri_parts(rest);
    let mut password = None;
    let userinfo = match userinfo.map(|u| u.split_once(':').ok_or(u)) {
        Some(Ok((user, secret))) => {
            password = Some(percent_decode(secret));
            format!("{user}@")
        }
        Some(Err(user)) => format!("{user}@"),
        None => String::new(),
    };
    let (path, query) = after.split_once('?').unwrap_or((after, ""));
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .filter(|pair| {
            // libpq decodes keys as well as values: `passw%6Frd=` is a
            // password too.
            let (key, secret) = pair.split_once('=').unwrap_or((pair, ""));
            if percent_decode(key) != "password" {
                return true;
            }
            password = Some(percent_decode(secret));
            false
        })
        .collect();
    let query = if kept.is_empty() {
        String::new()
    } else {
        format!("?{}", kept.join("&"))
    };
    (
        format!("{scheme}://{userinfo}{host}{path}{query}"),
        password,
    )
}

/// libpq's `key=value` form (`host=/run/pg dbname=app password='a b'`),
/// read as libpq reads it: pairs apart by white space, white space allowed
/// around `=`, a value in single quotes, `\` escaping the next character.
/// `None` for a URL, or for text that is not that form.
fn key_values(text: &str) -> Option<Vec<(String, String)>> {
    let text = text.trim();
    if text.starts_with("postgresql://") || text.starts_with("postgres://") || !text.contains('=') {
        return None;
    }
    let mut chars = text.chars().peekable();
    let mut pairs = Vec::new();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Some(pairs);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if key.is_empty() || chars.next() != Some('=') {
            return None;
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next()? {
                    '\'' => break,
                    '\\' => value.push(chars.next()?),
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.push(chars.next()?);
                } else {
                    value.push(c);
                }
            }
        }
        pairs.push((key, value));
    }
}

/// Pairs back into libpq's `key=value` form, every value quoted.
fn join_key_values(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(key, value)| {
            let quoted = value.replace('\\', "\\\\").replace('\'', "\\'");
            format!("{key}='{quoted}'")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Where on this machine libpq would connect for `url`, for each host it
/// names: a socket (`<dir>/.s.PGSQL.<port>`, `Ok`) or a loopback port
/// (`Err`); hosts elsewhere are left out. A URL that names no host goes
/// where libpq would (`crate::libpq::default_host`).
pub(super) fn local_places(url: &str) -> Vec<Result<PathBuf, u16>> {
    let (mut hosts, mut ports) = (String::new(), String::new());
    if let Some(pairs) = key_values(url) {
        for (key, value) in pairs {
            match key.as_str() {
                "host" => hosts = value,
                "port" => ports = value,
                _ => {}
            }
        }
    } else if let Some((_, rest)) = url.split_once("://") {
        let (_, hostpart, after) = crate::libpq::uri_parts(rest);
        // `h1:5432,h2`, `[::1]:5433`, `%2Frun%2Fpg`.
        let mut named = Vec::new();
        let mut named_ports = Vec::new();
        for one in hostpart.split(',').filter(|h| !h.is_empty()) {
            let (host, port) = match one.strip_prefix('[') {
                Some(v6) => {
                    let (address, after) = v6.split_once(']').unwrap_or((v6, ""));
                    (address.to_owned(), after.strip_prefix(':').unwrap_or(""))
                }
                None => match one.rsplit_once(':') {
                    Some((host, port)) => (percent_decode(host), port),
                    None => (percent_decode(one), ""),
                },
            };
            named.push(host);
            named_ports.push(port.to_owned());
        }
        hosts = named.join(",");
        if named_ports.iter().any(|p| !p.is_empty()) {
            ports = named_ports.join(",");
        }
        let query = after.split_once('?').map_or("", |(_, q)| q);
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match percent_decode(key).as_str() {
                "host" => hosts = percent_decode(value),
                "port" => ports = percent_decode(value),
                _ => {}
            }
        }
    }
    let env_port = std::env::var("PGPORT").ok();
    let ports: Vec<u16> = ports
        .split(',')
        .map(|p| {
            let p = if p.is_empty() {
                env_port.as_deref().unwrap_or("")
            } else {
                p
            };
            p.parse().unwrap_or(5432)
        })
        .collect();
    let port_of = |i: usize| ports.get(i).or(ports.first()).copied().unwrap_or(5432);
    if hosts.is_empty() {
        hosts =
            crate::libpq::default_host(std::env::var("PGHOST").ok(), port_of(0), |p| p.exists());
    }
    hosts
        .split(',')
        .enumerate()
        .filter_map(|(i, host)| {
            if host.starts_with('/') {
                Some(Ok(PathBuf::from(format!("{host}/.s.PGSQL.{}", port_of(i)))))
            } else if crate::services::trust::is_loopback(host) {
                Some(Err(port_of(i)))
            } else {
                None
            }
        })
        .collect()
}

/// `url` without its password, for messages.
pub(super) fn redacted(url: &str) -> String {
    match split_password(url) {
        (bare, Some(_)) => format!("{bare} (its password left out)"),
        (bare, None) => bare,
    }
}

/// `%XX` sequences replaced by their bytes.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_leaves_the_url_for_the_environment() {
        assert_eq!(
            split_password("postgresql://postgres:s3cr%40t@127.0.0.1:5433/db?sslmode=disable"),
            (
                "postgresql://postgres@127.0.0.1:5433/db?sslmode=disable".to_owned(),
                Some("s3cr@t".to_owned())
            )
        );
        assert_eq!(
            split_password("postgres://u@h/db?password=p%20w&port=5"),
            (
                "postgres://u@h/db?port=5".to_owned(),
                Some("p w".to_owned())
            )
        );
        assert_eq!(
            split_password("postgresql://u@/postgres?host=/tmp/x&port=5432"),
            (
                "postgresql://u@/postgres?host=/tmp/x&port=5432".to_owned(),
                None
            )
        );
        assert_eq!(
            split_password("postgresql://u@h/db?passw%6Frd=SECRET&port=5"),
            (
                "postgresql://u@h/db?port=5".to_owned(),
                Some("SECRET".to_owned())
            ),
            "a key spelled with a %-escape is the same key to libpq"
        );
        assert_eq!(
            split_password("postgresql://u@h/db?%70assword"),
            ("postgresql://u@h/db".to_owned(), Some(String::new()))
        );
        assert_eq!(
            split_password("postgresql://u@h/db?passwords=x"),
            ("postgresql://u@h/db?passwords=x".to_owned(), None),
            "another key"
        );
        assert_eq!(split_password("not a url"), ("not a url".to_owned(), None));
        assert_eq!(
            redacted("postgresql://postgres:abc@127.0.0.1:5/db"),
            "postgresql://postgres@127.0.0.1:5/db (its password left out)"
        );
        assert_eq!(redacted("postgresql://h/db"), "postgresql://h/db");
    }

    #[test]
    fn the_database_of_a_url_is_replaced() {
        assert_eq!(
            with_database("postgresql://u@/postgres?host=/tmp/x&port=5432", "t1"),
            "postgresql://u@/t1?host=/tmp/x&port=5432"
        );
        assert_eq!(
            with_database("postgres://u:p@h:5433", "t1"),
            "postgres://u:p@h:5433/t1"
        );
        assert_eq!(
            with_database("postgresql://h/db?sslmode=disable", "t1"),
            "postgresql://h/t1?sslmode=disable"
        );
    }

    #[test]
    fn a_password_with_a_question_mark_is_the_passwords_as_libpq_reads_it() {
        assert_eq!(
            split_password("postgresql://postgres:SEC?RET@h:5/db?sslmode=disable"),
            (
                "postgresql://postgres@h:5/db?sslmode=disable".to_owned(),
                Some("SEC?RET".to_owned())
            )
        );
        assert_eq!(
            with_database("postgresql://postgres:SEC?RET@h:5/db", "t1"),
            "postgresql://postgres:SEC?RET@h:5/t1"
        );
        assert_eq!(
            redacted("postgresql://postgres:SEC?RET@h/db"),
            "postgresql://postgres@h/db (its password left out)"
        );
        // An `@` after the first `/` is not a user part's end.
        assert_eq!(
            split_password("postgresql://h/db?user=a@b"),
            ("postgresql://h/db?user=a@b".to_owned(), None)
        );
    }

    #[test]
    fn key_value_strings_lose_their_password_and_change_their_database() {
        assert_eq!(
            split_password("host=/run/pg password=SECRET-KV dbname=app"),
            (
                "host='/run/pg' dbname='app'".to_owned(),
                Some("SECRET-KV".to_owned())
            )
        );
        assert_eq!(
            split_password(r"host = h  password = 'it\'s a\\b c'  port=5"),
            (
                "host='h' port='5'".to_owned(),
                Some(r"it's a\b c".to_owned())
            ),
            "spaces around `=`, a quoted value with an escaped quote and backslash"
        );
        assert_eq!(
            redacted("host=h password=SECRET dbname=app"),
            "host='h' dbname='app' (its password left out)"
        );
        assert_eq!(
            with_database("host=h dbname=postgres password=p", "t1"),
            "host='h' password='p' dbname='t1'"
        );
        assert_eq!(with_database("host=h", "t1"), "host='h' dbname='t1'");
        // What libpq would refuse is left as it is (and refused there).
        assert_eq!(
            split_password("host=h password='unclosed"),
            ("host=h password='unclosed".to_owned(), None)
        );
        assert_eq!(key_values("=x"), None);
    }

    #[test]
    fn a_url_says_where_on_this_machine_it_connects() {
        let sock = |s: &str| Ok(PathBuf::from(s));
        assert_eq!(
            local_places("postgresql://u:p@/db?host=/run/x&port=5433"),
            [sock("/run/x/.s.PGSQL.5433")]
        );
        assert_eq!(
            local_places("postgresql://u@%2Ftmp%2Fpg:6000/db"),
            [sock("/tmp/pg/.s.PGSQL.6000")]
        );
        assert_eq!(local_places("postgresql://u@localhost/db"), [Err(5432)]);
        assert_eq!(
            local_places("postgresql://u@[::1]:7,db.example.com:8/db"),
            [Err(7)],
            "a host elsewhere is the URL's to vouch for"
        );
        assert_eq!(
            local_places("host=/tmp port=5434 password=x"),
            [sock("/tmp/.s.PGSQL.5434")]
        );
        assert_eq!(
            local_places("host=127.0.0.1,/srv/pg port=1,2"),
            [Err(1), sock("/srv/pg/.s.PGSQL.2")]
        );
    }
}
