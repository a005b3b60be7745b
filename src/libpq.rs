//! What libpq does with a connection string that stampede must do alike:
//! where it connects when the string names no host, and where a URL's
//! user part ends. A leaf: it imports nothing of the crate.

use std::path::Path;

/// Where libpq connects for a URL that names no host, as the child's
/// client did: `PGHOST` (its first entry), else the first socket
/// directory a libpq is built with where a server's socket for `port`
/// exists (Debian's and Red Hat's, then upstream's `/tmp`), else `/tmp`.
pub(crate) fn default_host(
    pghost: Option<String>,
    port: u16,
    exists: impl Fn(&Path) -> bool,
) -> String {
    if let Some(first) = pghost
        .as_deref()
        .and_then(|h| h.split(',').next())
        .filter(|h| !h.is_empty())
    {
        return first.to_owned();
    }
    SOCKET_DIRECTORIES
        .iter()
        .find(|d| exists(Path::new(&format!("{d}/.s.PGSQL.{port}"))))
        .unwrap_or(&"/tmp")
        .to_string()
}

/// The socket directories libpq builds use, in the order looked at.
pub(crate) const SOCKET_DIRECTORIES: [&str; 3] = ["/var/run/postgresql", "/run/postgresql", "/tmp"];

/// A URL's parts after its scheme: the user part (to the first `@`
/// before any `/`, as libpq reads it), the host part, and the rest (from
/// the `/` or `?` on).
pub(crate) fn uri_parts(rest: &str) -> (Option<&str>, &str, &str) {
    let (userinfo, tail) = match rest.find(['@', '/']) {
        Some(at) if rest.as_bytes()[at] == b'@' => (Some(&rest[..at]), &rest[at + 1..]),
        _ => (None, rest),
    };
    let host_end = tail.find(['/', '?']).unwrap_or(tail.len());
    (userinfo, &tail[..host_end], &tail[host_end..])
}
