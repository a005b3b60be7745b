//! libpq URLs: the database changed, the password taken out (for a
//! command line) or left out (for a message).

/// `url` with its database replaced by `database`.
pub(super) fn with_database(url: &str, database: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("postgresql", url));
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, after) = rest.split_at(authority_end);
    let query = after.find('?').map_or("", |i| &after[i..]);
    format!("{scheme}://{authority}/{database}{query}")
}

/// `url` without its password, and the password (percent-decoded): from
/// the user part (`postgresql://user:secret@host/db`) or a `password=`
/// parameter. For a client whose command line any local user can read:
/// the password goes in its environment instead (`PGPASSWORD`).
pub(super) fn split_password(url: &str) -> (String, Option<String>) {
    let Some((scheme, rest)) = url.split_once("://") else {
        return (url.to_owned(), None);
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, after) = rest.split_at(authority_end);
    let mut password = None;
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, secret)) => {
                password = Some(percent_decode(secret));
                format!("{user}@{host}")
            }
            None => authority.to_owned(),
        },
        None => authority.to_owned(),
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
    (format!("{scheme}://{authority}{path}{query}"), password)
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
}
