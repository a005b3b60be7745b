//! Just enough of Redis's protocol (RESP2) for stampede's own commands:
//! `AUTH`, `SELECT`, `FLUSHDB`, a claim's `SET … NX` and its scripts.
//! Users talk to the server with a client of their choice.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use super::url::{Address, Target};

/// How long one command may take, connecting included.
const TIMEOUT: Duration = Duration::from_secs(10);

/// A reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Reply {
    /// `+OK` and the like.
    Status(String),
    /// `-ERR …`: the server refused.
    Error(String),
    Integer(i64),
    /// `$-1` is `Bulk(None)`.
    Bulk(Option<Vec<u8>>),
    /// `*-1` is `Array(None)`.
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// The text of a status or bulk reply.
    pub(super) fn text(&self) -> Option<String> {
        match self {
            Reply::Status(text) => Some(text.clone()),
            Reply::Bulk(Some(bytes)) => Some(String::from_utf8_lossy(bytes).into_owned()),
            _ => None,
        }
    }
}

/// A connection's socket.
enum Socket {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Socket {
    fn set_timeouts(&self, timeout: Duration) -> io::Result<()> {
        match self {
            Socket::Unix(s) => s
                .set_read_timeout(Some(timeout))
                .and_then(|()| s.set_write_timeout(Some(timeout))),
            Socket::Tcp(s) => s
                .set_read_timeout(Some(timeout))
                .and_then(|()| s.set_write_timeout(Some(timeout))),
        }
    }
}

impl io::Read for Socket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Socket::Unix(s) => s.read(buf),
            Socket::Tcp(s) => s.read(buf),
        }
    }
}

impl io::Write for Socket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Socket::Unix(s) => s.write(buf),
            Socket::Tcp(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A socket read and written within a deadline for the whole command: a
/// server that trickles a byte at a time does not hold a test for ever.
struct Timed {
    socket: Socket,
    deadline: Instant,
}

impl Timed {
    fn arm(&self) -> io::Result<()> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the server did not answer within {TIMEOUT:?}"),
            ));
        }
        self.socket.set_timeouts(left)
    }
}

impl io::Read for Timed {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.arm()?;
        self.socket.read(buf)
    }
}

/// A connection, authenticated and on its database.
pub(super) struct Connection {
    stream: BufReader<Timed>,
}

impl Connection {
    /// Connects to `target`, then `AUTH` (when it has a password) and
    /// `SELECT` its database.
    pub(super) fn open(target: &Target) -> io::Result<Connection> {
        let socket = match &target.address {
            Address::Unix(path) => Socket::Unix(UnixStream::connect(path).map_err(|e| {
                io::Error::new(e.kind(), format!("connecting to {}: {e}", path.display()))
            })?),
            Address::Tcp { host, port } => {
                let address = (host.as_str(), *port)
                    .to_socket_addrs()?
                    .next()
                    .ok_or_else(|| io::Error::other(format!("{host} has no address")))?;
                let stream = TcpStream::connect_timeout(&address, TIMEOUT)?;
                stream.set_nodelay(true)?;
                Socket::Tcp(stream)
            }
        };
        let mut connection = Connection {
            stream: BufReader::new(Timed {
                socket,
                deadline: Instant::now() + TIMEOUT,
            }),
        };
        if let Some(password) = &target.password {
            match &target.user {
                Some(user) => connection.ok(&["AUTH", user, password])?,
                None => connection.ok(&["AUTH", password])?,
            };
        }
        if target.db != 0 {
            connection.ok(&["SELECT", &target.db.to_string()])?;
        }
        Ok(connection)
    }

    /// Sends `words` as one command and reads its reply.
    pub(super) fn command(&mut self, words: &[&str]) -> io::Result<Reply> {
        let mut frame = format!("*{}\r\n", words.len()).into_bytes();
        for word in words {
            frame.extend_from_slice(format!("${}\r\n", word.len()).as_bytes());
            frame.extend_from_slice(word.as_bytes());
            frame.extend_from_slice(b"\r\n");
        }
        let timed = self.stream.get_mut();
        timed.deadline = Instant::now() + TIMEOUT;
        timed.arm()?;
        timed.socket.write_all(&frame)?;
        read_reply(&mut self.stream, 0)
    }

    /// [`command`](Connection::command), an error unless the server
    /// accepted it.
    pub(super) fn ok(&mut self, words: &[&str]) -> io::Result<Reply> {
        match self.command(words)? {
            Reply::Error(message) => Err(io::Error::other(format!(
                "`{}` was refused: {message}",
                words[0]
            ))),
            reply => Ok(reply),
        }
    }
}

/// Nesting deeper than this is not a reply stampede asked for.
const MAX_DEPTH: usize = 4;
/// Nor is a bulk string or an array longer than this.
const MAX_LEN: i64 = 1 << 20;

/// Nor is a line longer than this.
const MAX_LINE: u64 = 64 << 10;

fn read_reply(stream: &mut impl BufRead, depth: usize) -> io::Result<Reply> {
    let mut line = Vec::new();
    io::Read::take(&mut *stream, MAX_LINE).read_until(b'\n', &mut line)?;
    if line.len() as u64 == MAX_LINE && !line.ends_with(b"\n") {
        return Err(bad(&format!("a line longer than {MAX_LINE} bytes")));
    }
    if !line.ends_with(b"\r\n") {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the server closed the connection in the middle of a reply",
        ));
    }
    line.truncate(line.len() - 2);
    let (&kind, rest) = line
        .split_first()
        .ok_or_else(|| bad("an empty line instead of a reply"))?;
    let text = String::from_utf8_lossy(rest).into_owned();
    let length = || -> io::Result<i64> {
        text.parse::<i64>()
            .ok()
            .filter(|n| (-1..=MAX_LEN).contains(n))
            .ok_or_else(|| bad(&format!("a length of `{text}`")))
    };
    match kind {
        b'+' => Ok(Reply::Status(text)),
        b'-' => Ok(Reply::Error(text)),
        b':' => text
            .parse()
            .map(Reply::Integer)
            .map_err(|_| bad(&format!("an integer of `{text}`"))),
        b'$' => {
            let n = length()?;
            if n < 0 {
                return Ok(Reply::Bulk(None));
            }
            let mut bytes = vec![0; n as usize + 2];
            stream.read_exact(&mut bytes)?;
            bytes.truncate(n as usize);
            Ok(Reply::Bulk(Some(bytes)))
        }
        b'*' => {
            let n = length()?;
            if n < 0 {
                return Ok(Reply::Array(None));
            }
            if depth >= MAX_DEPTH {
                return Err(bad("replies nested too deep"));
            }
            let items = (0..n)
                .map(|_| read_reply(stream, depth + 1))
                .collect::<io::Result<Vec<_>>>()?;
            Ok(Reply::Array(Some(items)))
        }
        other => Err(bad(&format!(
            "a reply starting with byte {other:#04x} (is this a Redis server?)"
        ))),
    }
}

fn bad(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("the server sent {what}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> io::Result<Reply> {
        read_reply(&mut &bytes[..], 0)
    }

    #[test]
    fn every_kind_of_reply_is_read() {
        assert_eq!(parse(b"+OK\r\n").unwrap(), Reply::Status("OK".into()));
        assert_eq!(
            parse(b"-ERR no\r\n").unwrap(),
            Reply::Error("ERR no".into())
        );
        assert_eq!(parse(b":-7\r\n").unwrap(), Reply::Integer(-7));
        assert_eq!(
            parse(b"$3\r\na\r\n\r\n").unwrap(),
            Reply::Bulk(Some(b"a\r\n".to_vec()))
        );
        assert_eq!(parse(b"$-1\r\n").unwrap(), Reply::Bulk(None));
        assert_eq!(
            parse(b"*2\r\n$9\r\ndatabases\r\n$2\r\n16\r\n").unwrap(),
            Reply::Array(Some(vec![
                Reply::Bulk(Some(b"databases".to_vec())),
                Reply::Bulk(Some(b"16".to_vec()))
            ]))
        );
    }

    #[test]
    fn a_reply_cut_short_or_not_redis_is_an_error() {
        assert!(parse(b"+OK").is_err());
        assert!(parse(b"$5\r\nab").is_err());
        assert!(parse(b"HTTP/1.1 400\r\n").is_err());
        assert!(parse(b":x\r\n").is_err());
    }

    #[test]
    fn a_line_is_bounded_at_its_limit() {
        let mut at_limit = vec![b'+'; MAX_LINE as usize - 2];
        at_limit.extend_from_slice(b"\r\n");
        assert!(parse(&at_limit).is_ok(), "a line of exactly the limit");
        let mut past = vec![b'+'; MAX_LINE as usize - 1];
        past.extend_from_slice(b"\r\n");
        let e = parse(&past).unwrap_err();
        assert!(e.to_string().contains("a line longer than"), "{e}");
    }

    #[test]
    fn lengths_and_nesting_are_bounded_at_their_limits() {
        let at_limit = format!("${MAX_LEN}\r\n");
        // At the limit the length is taken (and the body is then missing).
        let e = parse(at_limit.as_bytes()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "{e}");
        let past = format!("${}\r\n", MAX_LEN + 1);
        let e = parse(past.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("a length of"), "{e}");
        let nested = |depth: usize| {
            let mut text = "*1\r\n".repeat(depth);
            text.push_str(":1\r\n");
            text
        };
        assert!(parse(nested(MAX_DEPTH).as_bytes()).is_ok());
        let e = parse(nested(MAX_DEPTH + 1).as_bytes()).unwrap_err();
        assert!(e.to_string().contains("nested too deep"), "{e}");
    }
}
