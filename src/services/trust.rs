//! A reused server on this machine (`STAMPEDE_POSTGRES_URL`,
//! `STAMPEDE_REDIS_URL`) is told a password only when no other local user
//! can be posing as it: a Unix socket in a directory others can write
//! (`/tmp`) must belong to root, to this user or to the service's own
//! system user, and so must whatever listens on a loopback port. Another
//! user could have planted the socket, or taken the port while the real
//! server was down, and would be handed the URL's password (and a CI
//! job's `PGPASSWORD`). A server on another host is the URL's to vouch for.

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use super::private_dir;
use crate::sys;

/// Where a reused server is reached on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Local<'a> {
    /// A Unix socket.
    Unix(&'a Path),
    /// A TCP port at a loopback address.
    Tcp(u16),
}

/// The users a local server may run as: root, this user, and `system_user`
/// (the service's package user: `postgres`, `redis`) where it exists.
fn trusted(system_user: &str) -> Vec<u32> {
    let mut uids = vec![0, sys::effective_uid()];
    uids.extend(private_dir::user_ids(system_user).map(|(uid, _)| uid));
    uids
}

/// Why the server at `at` must not be told a secret, if it must not.
pub(crate) fn check(at: &Local<'_>, system_user: &str) -> Result<(), String> {
    let trusted = trusted(system_user);
    let name = |uid: u32| format!("uid {uid}");
    match at {
        Local::Unix(socket) => {
            let open = socket
                .parent()
                .and_then(|d| std::fs::metadata(d).ok())
                .is_none_or(|m| m.permissions().mode() & 0o002 != 0);
            if !open {
                return Ok(());
            }
            let Ok(meta) = std::fs::symlink_metadata(socket) else {
                // Nothing there: connecting fails, and says so.
                return Ok(());
            };
            if !meta.file_type().is_socket() {
                return Err(format!(
                    "{} is not a socket: in a directory any local user can write, not used",
                    socket.display()
                ));
            }
            if !trusted.contains(&meta.uid()) {
                return Err(format!(
                    "the socket {} belongs to {}, not to root, this user or `{system_user}`, in \
                     a directory any local user can write: another user could have planted it, \
                     and it is not told the password (put the server's socket in a directory \
                     only its user can write)",
                    socket.display(),
                    name(meta.uid())
                ));
            }
            Ok(())
        }
        Local::Tcp(port) => {
            match sys::tcp_listener_uids(*port)
                .into_iter()
                .find(|uid| !trusted.contains(uid))
            {
                Some(uid) => Err(format!(
                    "what listens on local port {port} runs as {}, not as root, this user or \
                     `{system_user}`: another user could have taken the port while the server \
                     was down, and it is not told the password",
                    name(uid)
                )),
                None => Ok(()),
            }
        }
    }
}

/// Whether `host` names this machine's loopback (`localhost`, `127.x`,
/// `::1`).
pub(crate) fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socket_in_an_open_directory_is_believed_only_from_a_trusted_user() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("s.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        // A directory of this user's alone: its sockets are this user's word.
        assert_eq!(check(&Local::Unix(&socket), "nobody-such"), Ok(()));
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
        // This user's own socket, in /tmp's kind of directory: believed.
        assert_eq!(check(&Local::Unix(&socket), "nobody-such"), Ok(()));
        // Another user's (as root, the test makes one): refused.
        if sys::effective_uid() == 0 {
            std::os::unix::fs::lchown(&socket, Some(4242), None).unwrap();
            let why = check(&Local::Unix(&socket), "nobody-such").unwrap_err();
            assert!(
                why.contains("belongs to uid 4242, not to root, this user or `nobody-such`"),
                "{why}"
            );
        }
        // A regular file where the socket should be: refused.
        let file = dir.path().join("f");
        std::fs::write(&file, b"").unwrap();
        assert!(
            check(&Local::Unix(&file), "x")
                .unwrap_err()
                .contains("is not a socket")
        );
        // Nothing there: connecting will say so.
        assert_eq!(check(&Local::Unix(&dir.path().join("none")), "x"), Ok(()));
    }

    #[test]
    fn a_local_port_is_believed_when_this_user_listens_there() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        assert!(sys::tcp_listener_uids(port).contains(&sys::effective_uid()));
        assert_eq!(check(&Local::Tcp(port), "x"), Ok(()));
        drop(listener);
        assert!(sys::tcp_listener_uids(port).is_empty());
        assert_eq!(check(&Local::Tcp(port), "x"), Ok(()), "nothing listens");
    }
}
