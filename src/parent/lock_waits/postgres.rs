//! Just enough of PostgreSQL's frontend protocol (version 3) to ask a
//! server one question in plain text: a connection from a libpq URL (a
//! Unix socket directory or a TCP host), trust, password or SCRAM-SHA-256
//! authentication, and simple queries whose rows come back as text. Every
//! read and write has a deadline; every message length is bounded.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use super::scram::Scram;
use crate::percent::{self, Undecodable, decode_secret};

/// The most a single message from the server may hold: the answers asked
/// for here are a few numbers per backend.
const MESSAGE_LIMIT: usize = 1 << 20;

/// Where and as whom to connect, from a libpq URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    /// A host name or address, or a Unix socket directory (starts with `/`).
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Option<String>,
    pub database: String,
}

impl Target {
    /// Reads `postgres[ql]://[user[:password]@][host][:port][/database][?k=v&…]`,
    /// with `host`, `port`, `user`, `password` and `dbname` also taken from
    /// the parameters (libpq's way of naming a socket directory).
    pub(crate) fn parse(url: &str) -> Result<Target, String> {
        let rest = url
            .strip_prefix("postgresql://")
            .or_else(|| url.strip_prefix("postgres://"))
            .ok_or("not a postgresql:// URL")?;
        // A `?` in a password is the password's, as libpq reads it.
        let (userinfo, hostport, after) = crate::libpq::uri_parts(rest);
        let (path, query) = after.split_once('?').unwrap_or((after, ""));
        let path = path.strip_prefix('/').unwrap_or(path);
        let (mut user, mut password) = match userinfo.map(|u| u.split_once(':')) {
            Some(Some((user, secret))) => (decode(user)?, Some(decode_secret(secret)?)),
            Some(None) => (decode(userinfo.unwrap_or_default())?, None),
            None => (String::new(), None),
        };
        let (mut host, mut port) = match hostport.strip_prefix('[') {
            // An IPv6 address: `[::1]` or `[::1]:5432`.
            Some(v6) => {
                let (address, after) = v6
                    .split_once(']')
                    .ok_or_else(|| format!("{hostport:?} opens a `[` it does not close"))?;
                (
                    address.to_owned(),
                    after.strip_prefix(':').map(str::to_owned),
                )
            }
            None => match hostport.rsplit_once(':') {
                Some((host, port)) => (decode(host)?, Some(port.to_owned())),
                None => (decode(hostport)?, None),
            },
        };
        let mut database = decode(path)?;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            // libpq decodes keys as well as values.
            let key = decode(key)?;
            let value = if key == "password" {
                decode_secret(value)?
            } else {
                decode(value)?
            };
            match key.as_str() {
                "host" => host = value,
                "port" => port = Some(value),
                "user" => user = value,
                "password" => password = Some(value),
                "dbname" => database = value,
                _ => {}
            }
        }
        let pgport = std::env::var("PGPORT").ok();
        let port = match port
            .as_deref()
            .filter(|p| !p.is_empty())
            .or(pgport.as_deref())
        {
            None | Some("") => 5432,
            Some(p) => p
                .parse()
                .map_err(|_| format!("port {p:?} is not a number"))?,
        };
        if user.is_empty() {
            user = std::env::var("PGUSER")
                .or_else(|_| std::env::var("USER"))
                .map_err(|_| "the URL names no user, and neither PGUSER nor USER is set")?;
        }
        if database.is_empty() {
            database = user.clone();
        }
        Ok(Target {
            host: if host.is_empty() {
                crate::libpq::default_host(std::env::var("PGHOST").ok(), port, |p| p.exists())
            } else {
                host
            },
            port,
            user,
            password,
            database,
        })
    }
}

fn decode(s: &str) -> Result<String, String> {
    percent::decode(s).map_err(|e| match e {
        Undecodable::BadEscape => format!("a bad %-escape in {s:?}"),
        Undecodable::NotUtf8 => format!("{s:?} is not UTF-8 once decoded"),
    })
}

enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Stream {
    fn io(&mut self) -> &mut dyn ReadWrite {
        match self {
            Stream::Unix(s) => s,
            Stream::Tcp(s) => s,
        }
    }
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// One connection, ready for queries.
pub(crate) struct Client {
    stream: Stream,
    /// For a Unix socket in a directory any local user can write (such as
    /// `/tmp`, libpq's default): the directory. Whoever planted a socket
    /// there would be handed a password sent in clear.
    open_directory: Option<String>,
}

/// A rows' values as text (`None` for SQL NULL).
pub(crate) type Rows = Vec<Vec<Option<String>>>;

impl Client {
    /// Connects and authenticates; each read or write may take `deadline`.
    /// A socket in a directory any local user can write (`/tmp`) is used
    /// only once proven to be the server of one of `backends` (the
    /// children's own connections): the process listening there must be
    /// their backend's parent, the postmaster. Until then nothing is sent:
    /// no user name, no password, no SCRAM proof.
    pub(crate) fn connect(
        target: &Target,
        deadline: Duration,
        backends: &[i32],
    ) -> Result<Client, String> {
        let open_directory = target
            .host
            .starts_with('/')
            .then(|| writable_by_anyone(Path::new(&target.host)).then(|| target.host.clone()))
            .flatten();
        let stream = if target.host.starts_with('/') {
            let path = format!("{}/.s.PGSQL.{}", target.host, target.port);
            let s = UnixStream::connect(&path).map_err(|e| format!("connecting to {path}: {e}"))?;
            if let Some(directory) = &open_directory {
                prove_server(&s, &path, directory, backends)?;
            }
            s.set_read_timeout(Some(deadline))
                .map_err(|e| e.to_string())?;
            s.set_write_timeout(Some(deadline))
                .map_err(|e| e.to_string())?;
            Stream::Unix(s)
        } else {
            let address = format!("{}:{}", target.host, target.port);
            let s = TcpStream::connect(&address)
                .map_err(|e| format!("connecting to {address}: {e}"))?;
            s.set_read_timeout(Some(deadline))
                .map_err(|e| e.to_string())?;
            s.set_write_timeout(Some(deadline))
                .map_err(|e| e.to_string())?;
            s.set_nodelay(true).map_err(|e| e.to_string())?;
            Stream::Tcp(s)
        };
        let mut client = Client {
            stream,
            open_directory,
        };
        client.startup(target).map_err(|e| e.to_string())?;
        Ok(client)
    }

    fn startup(&mut self, target: &Target) -> Result<(), Failure> {
        let mut body = 196_608i32.to_be_bytes().to_vec();
        for (key, value) in [
            ("user", target.user.as_str()),
            ("database", target.database.as_str()),
            ("application_name", "stampede lock waits"),
        ] {
            cstr(&mut body, key);
            cstr(&mut body, value);
        }
        body.push(0);
        self.send(None, &body)?;
        let mut scram: Option<Scram> = None;
        loop {
            let (kind, body) = self.receive()?;
            match kind {
                b'R' => {
                    let code = be_i32(&body, 0)?;
                    let rest = &body[4..];
                    match code {
                        0 => {}
                        3 => {
                            if let Some(directory) = &self.open_directory {
                                return Err(Failure::Unsupported(format!(
                                    "the server asks for the password in clear over a socket \
                                     in {directory}, which any local user can write: not sent"
                                )));
                            }
                            let password = needs_password(target)?;
                            let mut message = Vec::new();
                            cstr(&mut message, password);
                            self.send(Some(b'p'), &message)?;
                        }
                        10 => {
                            let offers = rest.split(|b| *b == 0).any(|m| m == b"SCRAM-SHA-256");
                            if !offers {
                                return Err(Failure::Unsupported(
                                    "the server offers no SASL mechanism but SCRAM-SHA-256 PLUS"
                                        .into(),
                                ));
                            }
                            let password = needs_password(target)?;
                            let started = Scram::new(password);
                            let first = started.client_first();
                            let mut message = Vec::new();
                            cstr(&mut message, "SCRAM-SHA-256");
                            message.extend((first.len() as i32).to_be_bytes());
                            message.extend(first.as_bytes());
                            self.send(Some(b'p'), &message)?;
                            scram = Some(started);
                        }
                        11 => {
                            let state = scram.as_mut().ok_or(Failure::Protocol(
                                "a SCRAM continuation before its start".into(),
                            ))?;
                            let last = state
                                .client_final(&String::from_utf8_lossy(rest))
                                .map_err(Failure::Protocol)?;
                            self.send(Some(b'p'), last.as_bytes())?;
                        }
                        12 => {
                            let state = scram
                                .as_ref()
                                .ok_or(Failure::Protocol("a SCRAM end before its start".into()))?;
                            state
                                .verify_server(&String::from_utf8_lossy(rest))
                                .map_err(Failure::Protocol)?;
                        }
                        5 => {
                            return Err(Failure::Unsupported(
                                "the server asks for an MD5 password, which this check does not \
                                 speak (SCRAM-SHA-256 and plain passwords it does)"
                                    .into(),
                            ));
                        }
                        other => {
                            return Err(Failure::Unsupported(format!(
                                "the server asks for authentication method {other}"
                            )));
                        }
                    }
                }
                b'E' => return Err(Failure::Server(error_text(&body))),
                b'Z' => return Ok(()),
                // Parameter status, backend key, notices: nothing to do.
                _ => {}
            }
        }
    }

    /// Runs `sql` (one statement, no parameters) and returns its rows.
    pub(crate) fn query(&mut self, sql: &str) -> Result<Rows, String> {
        let mut message = Vec::new();
        cstr(&mut message, sql);
        self.send(Some(b'Q'), &message).map_err(|e| e.to_string())?;
        let mut rows = Vec::new();
        let mut error = None;
        loop {
            let (kind, body) = self.receive().map_err(|e| e.to_string())?;
            match kind {
                b'D' => rows.push(data_row(&body).map_err(|e| e.to_string())?),
                b'E' => error = Some(error_text(&body)),
                b'Z' => break,
                _ => {}
            }
        }
        match error {
            Some(e) => Err(e),
            None => Ok(rows),
        }
    }

    fn send(&mut self, kind: Option<u8>, body: &[u8]) -> Result<(), Failure> {
        let mut message = Vec::with_capacity(body.len() + 5);
        message.extend(kind);
        message.extend(((body.len() + 4) as i32).to_be_bytes());
        message.extend(body);
        self.stream.io().write_all(&message).map_err(Failure::Io)
    }

    fn receive(&mut self) -> Result<(u8, Vec<u8>), Failure> {
        let mut header = [0u8; 5];
        self.stream
            .io()
            .read_exact(&mut header)
            .map_err(Failure::Io)?;
        let len = i32::from_be_bytes([header[1], header[2], header[3], header[4]]);
        let len = usize::try_from(len)
            .ok()
            .and_then(|l| l.checked_sub(4))
            .filter(|l| *l <= MESSAGE_LIMIT)
            .ok_or_else(|| {
                Failure::Protocol(format!(
                    "a message of length {len}: not PostgreSQL, or beyond {MESSAGE_LIMIT} bytes"
                ))
            })?;
        let mut body = vec![0u8; len];
        self.stream
            .io()
            .read_exact(&mut body)
            .map_err(Failure::Io)?;
        Ok((header[0], body))
    }
}

/// Whether `directory` (or, if it cannot be read, to be safe: yes) lets
/// other users create files in it.
/// That the process listening at `path` (in `directory`, which any local
/// user can write) is the postmaster of one of `backends`: their parent.
/// Another user's process planted there is not, whatever it answers.
fn prove_server(
    socket: &UnixStream,
    path: &str,
    directory: &str,
    backends: &[i32],
) -> Result<(), String> {
    use std::os::fd::AsRawFd;
    let listener = crate::sys::peer_pid(socket.as_raw_fd())
        .map_err(|e| format!("{path}: who listens there is unknown ({e}); not used"))?;
    let parents: Vec<Option<u32>> = backends
        .iter()
        .map(|&b| u32::try_from(b).ok().and_then(crate::sys::parent_pid))
        .collect();
    if parents.contains(&Some(listener)) {
        return Ok(());
    }
    let list: Vec<String> = backends.iter().map(i32::to_string).collect();
    Err(format!(
        "{path} is in {directory}, which any local user can write, and the process listening \
         there (pid {listener}) is not the server of backend {}: not used, nothing sent (set \
         the URL's host to the server's socket directory)",
        list.join(", ")
    ))
}

fn writable_by_anyone(directory: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(directory).map_or(true, |m| m.permissions().mode() & 0o002 != 0)
}

fn needs_password(target: &Target) -> Result<&str, Failure> {
    target.password.as_deref().ok_or_else(|| {
        Failure::Unsupported("the server asks for a password and the URL has none".into())
    })
}

#[derive(Debug)]
enum Failure {
    Io(io::Error),
    Protocol(String),
    Server(String),
    Unsupported(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Io(e) if e.kind() == io::ErrorKind::WouldBlock => {
                write!(f, "the server did not answer in time")
            }
            Failure::Io(e) => write!(f, "{e}"),
            Failure::Protocol(e) => write!(f, "the server's answer is not understood: {e}"),
            Failure::Server(e) => write!(f, "the server said: {e}"),
            Failure::Unsupported(e) => write!(f, "{e}"),
        }
    }
}

fn cstr(out: &mut Vec<u8>, s: &str) {
    out.extend(s.as_bytes());
    out.push(0);
}

fn be_i32(body: &[u8], at: usize) -> Result<i32, Failure> {
    body.get(at..at + 4)
        .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or_else(|| Failure::Protocol("a message cut short".into()))
}

fn data_row(body: &[u8]) -> Result<Vec<Option<String>>, Failure> {
    let short = || Failure::Protocol("a data row cut short".into());
    let count = u16::from_be_bytes([
        *body.first().ok_or_else(short)?,
        *body.get(1).ok_or_else(short)?,
    ]);
    let mut at = 2;
    let mut values = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let len = be_i32(body, at)?;
        at += 4;
        if len < 0 {
            values.push(None);
            continue;
        }
        let end = at + len as usize;
        let bytes = body.get(at..end).ok_or_else(short)?;
        values.push(Some(String::from_utf8_lossy(bytes).into_owned()));
        at = end;
    }
    Ok(values)
}

/// The `M` (message) field of an error response, with its code.
fn error_text(body: &[u8]) -> String {
    let mut message = String::from("an error without a message");
    let mut code = String::new();
    for field in body.split(|b| *b == 0).filter(|f| !f.is_empty()) {
        let text = String::from_utf8_lossy(&field[1..]).into_owned();
        match field[0] {
            b'M' => message = text,
            b'C' => code = text,
            _ => {}
        }
    }
    if code.is_empty() {
        message
    } else {
        format!("{message} ({code})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(url: &str) -> Target {
        Target::parse(url).unwrap()
    }

    #[test]
    fn urls_name_a_socket_directory_or_a_host_and_the_user_and_database() {
        let t = target("postgresql://stampede@/app?host=/run/pg%20dir&port=5433");
        assert_eq!(
            (
                t.host.as_str(),
                t.port,
                t.user.as_str(),
                t.database.as_str()
            ),
            ("/run/pg dir", 5433, "stampede", "app")
        );
        assert_eq!(t.password, None);
        let t = target("postgres://u:s%40cret@127.0.0.1:6000/db");
        assert_eq!(
            (t.host.as_str(), t.port, t.password.as_deref()),
            ("127.0.0.1", 6000, Some("s@cret"))
        );
        let t = target("postgresql://u:SEC?RET@h:6001/db?dbname=x");
        assert_eq!(
            (
                t.host.as_str(),
                t.port,
                t.password.as_deref(),
                t.database.as_str()
            ),
            ("h", 6001, Some("SEC?RET"), "x"),
            "a `?` in a password"
        );
        let t = target("postgresql://u@[::1]:7000/db");
        assert_eq!((t.host.as_str(), t.port), ("::1", 7000));
        let t = target("postgresql://u@localhost/");
        assert_eq!((t.port, t.database.as_str()), (5432, "u"), "defaults");
        let t = target("postgresql://u@h/d?password=p&dbname=other&user=v");
        assert_eq!(
            (t.user.as_str(), t.database.as_str(), t.password.as_deref()),
            ("v", "other", Some("p"))
        );
    }

    #[test]
    fn bad_urls_say_what_is_wrong() {
        assert_eq!(
            Target::parse("mysql://x").unwrap_err(),
            "not a postgresql:// URL"
        );
        assert_eq!(
            Target::parse("postgresql://u@h:port/d").unwrap_err(),
            "port \"port\" is not a number"
        );
        assert_eq!(
            Target::parse("postgresql://u@h/d%zz").unwrap_err(),
            "a bad %-escape in \"d%zz\""
        );
        // A password is never repeated, in the URL or a parameter.
        for url in [
            "postgresql://u:s3cret%zz@h/d",
            "postgresql://u@h/d?password=s3cret%zz",
        ] {
            let why = Target::parse(url).unwrap_err();
            assert!(!why.contains("s3cret"), "{why}");
            assert_eq!(
                why,
                "the password has a bad %-escape, or is not UTF-8 once decoded"
            );
        }
    }

    #[test]
    fn data_rows_read_values_and_nulls_and_refuse_a_short_row() {
        let mut body = 3u16.to_be_bytes().to_vec();
        body.extend(2i32.to_be_bytes());
        body.extend(b"42");
        body.extend((-1i32).to_be_bytes());
        body.extend(0i32.to_be_bytes());
        assert_eq!(
            data_row(&body).unwrap(),
            vec![Some("42".into()), None, Some(String::new())]
        );
        body.truncate(body.len() - 1);
        assert!(data_row(&body).is_err());
        let mut long = 1u16.to_be_bytes().to_vec();
        long.extend(10i32.to_be_bytes());
        long.extend(b"short");
        assert!(data_row(&long).is_err(), "a value longer than the row");
    }

    #[test]
    fn a_message_length_beyond_the_limit_is_refused_before_reading_it() {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        ours.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut client = Client {
            stream: Stream::Unix(ours),
            open_directory: None,
        };
        let at_limit = (MESSAGE_LIMIT + 4) as i32;
        let writer = std::thread::spawn(move || {
            theirs.write_all(b"N").unwrap();
            theirs.write_all(&at_limit.to_be_bytes()).unwrap();
            theirs.write_all(&vec![0u8; MESSAGE_LIMIT]).unwrap();
            theirs
        });
        let (kind, body) = client.receive().unwrap();
        let mut theirs = writer.join().unwrap();
        assert_eq!(
            (kind, body.len()),
            (b'N', MESSAGE_LIMIT),
            "exactly the limit"
        );
        theirs.write_all(b"N").unwrap();
        theirs.write_all(&(at_limit + 1).to_be_bytes()).unwrap();
        let refused = client.receive().unwrap_err().to_string();
        assert!(refused.contains("beyond 1048576 bytes"), "{refused}");
    }

    /// A server at a Unix socket in a directory made with `mode` that asks
    /// for the password in clear, the client told that the children's
    /// backends are `backends`; what the client said, whether the server
    /// got a startup message (the user's name), and the message it read
    /// after its request (`b'p'`: the password).
    fn cleartext_asked(mode: u32, backends: &[i32]) -> (Result<(), String>, bool, Option<u8>) {
        use std::os::unix::fs::PermissionsExt;
        use std::os::unix::net::UnixListener;
        let dir = tempfile::tempdir().unwrap();
        let listener = UnixListener::bind(dir.path().join(".s.PGSQL.5432")).unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(mode)).unwrap();
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut len = [0u8; 4];
            if conn.read_exact(&mut len).is_err() {
                return (false, None);
            }
            let mut startup = vec![0u8; i32::from_be_bytes(len) as usize - 4];
            conn.read_exact(&mut startup).unwrap();
            conn.write_all(b"R").unwrap();
            conn.write_all(&8i32.to_be_bytes()).unwrap();
            conn.write_all(&3i32.to_be_bytes()).unwrap();
            let mut next = [0u8; 1];
            (true, conn.read_exact(&mut next).ok().map(|()| next[0]))
        });
        let url = format!("postgresql://u:s3cret@/d?host={}", dir.path().display());
        let target = Target::parse(&url).unwrap();
        let said = Client::connect(&target, Duration::from_secs(5), backends).map(drop);
        let (started, next) = server.join().unwrap();
        (said, started, next)
    }

    /// A process whose parent is this test process, as a backend's parent
    /// is its postmaster: the test's listener stands for the postmaster.
    fn our_child() -> std::process::Child {
        std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap()
    }

    #[test]
    fn a_password_is_never_sent_in_clear_over_a_socket_any_user_could_have_planted() {
        let mut backend = our_child();
        let pid = backend.id() as i32;
        let (said, started, read) = cleartext_asked(0o1777, &[pid]);
        let why = said.unwrap_err();
        assert!(
            why.contains("asks for the password in clear over a socket in /")
                && why.ends_with("which any local user can write: not sent"),
            "{why}"
        );
        assert!(started, "proven the backend's server, it was spoken to");
        assert_eq!(read, None, "the server read nothing after its request");
        // In a directory of this user's alone, it goes.
        let (_, _, read) = cleartext_asked(0o700, &[pid]);
        assert_eq!(read, Some(b'p'), "the password message");
        backend.kill().unwrap();
        backend.wait().unwrap();
    }

    #[test]
    fn a_socket_any_user_could_have_planted_is_told_nothing_unless_it_serves_the_backends() {
        // The listener is this process; pid 1 is not its child: whatever
        // listens there is not that backend's server.
        let (said, started, _) = cleartext_asked(0o1777, &[1]);
        let why = said.unwrap_err();
        assert!(
            why.contains("which any local user can write, and the process listening there (pid ")
                && why.contains(&format!(
                    "(pid {}) is not the server of backend 1",
                    std::process::id()
                ))
                && why.contains("nothing sent"),
            "{why}"
        );
        assert!(!started, "no startup message: not even the user's name");
        // No backend named on that server: nothing proves it either.
        let (said, started, _) = cleartext_asked(0o1777, &[]);
        assert!(said.unwrap_err().contains("nothing sent"));
        assert!(!started);
        // In a directory of this user's alone, no proof is asked.
        let (_, started, _) = cleartext_asked(0o700, &[1]);
        assert!(started);
    }

    #[test]
    fn a_url_without_a_host_goes_where_libpq_would() {
        let none = |_: &Path| false;
        assert_eq!(
            crate::libpq::default_host(None, 5432, none),
            "/tmp",
            "nothing there: upstream's default"
        );
        let debian = |p: &Path| p == Path::new("/var/run/postgresql/.s.PGSQL.5433");
        assert_eq!(
            crate::libpq::default_host(None, 5433, debian),
            "/var/run/postgresql"
        );
        assert_eq!(
            crate::libpq::default_host(None, 5432, debian),
            "/tmp",
            "another port's socket"
        );
        let both = |p: &Path| p.ends_with(".s.PGSQL.5432");
        assert_eq!(
            crate::libpq::default_host(None, 5432, both),
            "/var/run/postgresql",
            "Debian's first"
        );
        assert_eq!(
            crate::libpq::default_host(Some("/srv/pg,/tmp".into()), 5432, both),
            "/srv/pg",
            "PGHOST's first entry"
        );
        assert_eq!(
            crate::libpq::default_host(Some(String::new()), 5432, none),
            "/tmp"
        );
        // libpq decodes keys too.
        let t = target("postgresql://u@/d?%68ost=/srv/x&p%6Frt=6");
        assert_eq!((t.host.as_str(), t.port), ("/srv/x", 6));
    }
}
