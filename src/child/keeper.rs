//! A child in the `Keeper` role: owns one server for a service.
//!
//! It runs in its own session and is never armed to die with its parent.
//! It starts the server, waits until it is ready, reports `Ready`, and then
//! watches three things: its channel, whose end (the parent dropped the
//! service, exited, or was killed with SIGKILL) is the word to stop; a stop
//! signal (SIGTERM, SIGINT, SIGHUP: `stampede-services down`, or a parent
//! that terminates it); and the server, whose own end is reported as
//! `Died`. Whatever ends it, the server is stopped (its clean stop signal,
//! a grace period, then SIGKILL to its process group) and the instance's
//! directory is removed.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::Channel;
use crate::protocol::{self, KeeperReport, KeeperSpec, Readiness, Request, Role};
use crate::sys::{self, Open};

/// How often the keeper looks at its server and for a stop signal while
/// nothing arrives on its channel.
const TICK: Duration = Duration::from_millis(50);

/// How much of the server's log an error carries.
const TAIL_LINES: usize = 30;

pub(super) fn serve(mut channel: Channel) -> io::Result<()> {
    // Before anything else, so a stop signal never kills the keeper
    // before it has cleaned up.
    sys::catch_stop_signals();
    let request: Request = match protocol::read_frame(&mut channel.file) {
        Ok(request) => request,
        // The parent is gone before asking for anything: nothing to clean.
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
        Err(e) => return Err(e),
    };
    if request.protocol != protocol::PROTOCOL || request.role != Role::Keeper {
        return Err(io::Error::other(format!(
            "a keeper got a request of protocol {} for {:?} (it speaks {}; parent and child are \
             different builds?)",
            request.protocol,
            request.role,
            protocol::PROTOCOL
        )));
    }
    let spec: KeeperSpec = protocol::decode(&request.args).map_err(io::Error::other)?;
    let result = keep(&mut channel, &spec);
    remove_dir(Path::new(&spec.dir));
    result
}

/// Why the keeper stops its server.
enum End {
    /// The channel ended or a stop signal came: stop the server.
    Stop,
    /// The server ended on its own, during its start or after `Ready`:
    /// reported once it is reaped, with its status.
    ServerGone { started: bool },
}

fn keep(channel: &mut Channel, spec: &KeeperSpec) -> io::Result<()> {
    // Working in its instance's directory, where no other user can enter:
    // with a damaged registry, `stampede-services down` still proves the
    // keeper and its server its own by that.
    std::env::set_current_dir(&spec.dir)?;
    let _ = record(spec, "keeper", sys::getpid());
    let mut server = match start_server(spec) {
        Ok(server) => server,
        Err(e) => {
            let reason = format!("could not start `{}`: {e}", spec.program);
            return report(channel, &failed(spec, reason));
        }
    };
    let mut server_identity = record(spec, "server", server.id());
    let end = match wait_ready(channel, spec, &server) {
        Ok(()) => {
            // A wrapper script (a version manager's shim) has exec'd the
            // real server by now: its program changed under the same pid
            // and start time, and the registry must name what runs, or a
            // sweep after this keeper's death would leave it alone.
            let now = sys::identity_of(server.id());
            if now.is_some()
                && now.as_ref().map(|n| &n.exe) != server_identity.as_ref().map(|s| &s.exe)
            {
                server_identity = record(spec, "server", server.id());
            }
            report(
                channel,
                &KeeperReport::Ready {
                    addresses: spec.addresses.clone(),
                    server_pid: server.id(),
                },
            )?;
            watch(channel, spec, &server)
        }
        Err(end) => end,
    };
    if let End::Stop = end {
        stop_server(&server, spec);
    }
    let status = reap(&mut server, server_identity.as_ref());
    if let End::ServerGone { started } = end {
        let status = status.map_or_else(|| "its status lost".to_owned(), |s| s.to_string());
        let _ = report(
            channel,
            &if started {
                KeeperReport::Died {
                    reason: format!("the server ended on its own ({status})"),
                    log_tail: log_tail(&spec.log),
                }
            } else {
                failed(spec, format!("the server exited during start ({status})"))
            },
        );
    }
    Ok(())
}

/// Whether the server has ended, looked at without reaping it: until
/// [`reap`], its pid and group id stay its own, so signalling its group
/// can reach no other process (a reaped pid may be another user's new
/// group leader within seconds, where `pid_max` is small).
fn ended(server: &Child) -> bool {
    sys::probe(server.id()) != sys::Probe::Running
}

/// Kills whatever the server left in its group (PostgreSQL's backends end
/// with their postmaster; other servers may not), removes the shared
/// memory a killed server left, and only then reaps it: the group and the
/// segments' creator are proven the server's by its pid, which stays its
/// own until the reap. Its exit status, unless something else reaped it
/// (then nothing is signalled).
fn reap(server: &mut Child, identity: Option<&sys::Identity>) -> Option<std::process::ExitStatus> {
    if sys::probe(server.id()) == sys::Probe::ReapedElsewhere {
        return None;
    }
    sys::signal_group(server.id(), sys::SIGKILL);
    // A server stopped cleanly has removed its segments; one that was
    // killed has not.
    if let Some(identity) = identity {
        sys::remove_shared_memory_of(identity, true);
    }
    server.wait().ok()
}

fn start_server(spec: &KeeperSpec) -> io::Result<Child> {
    let log = sys::open_no_follow(Path::new(&spec.log), Open::Append(0o600))?;
    let mut command = Command::new(&spec.program);
    if spec.user.is_some() {
        sys::environment_for_another_user(&mut command);
    }
    command
        .args(&spec.args)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&spec.dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        // Its own group, so that stopping it reaches what it started.
        .process_group(0);
    if let Some((uid, gid)) = spec.user {
        command.uid(uid).gid(gid);
    }
    command.spawn()
}

/// Waits until the server is ready. `Err` when the keeper must end instead
/// (the report, if any, is sent).
fn wait_ready(channel: &mut Channel, spec: &KeeperSpec, server: &Child) -> Result<(), End> {
    let deadline = Instant::now() + Duration::from_millis(spec.ready_timeout_ms);
    let mut log = LogScan::default();
    loop {
        if is_ready(spec, server.id(), &mut log) {
            return Ok(());
        }
        if ended(server) {
            return Err(End::ServerGone { started: false });
        }
        if Instant::now() >= deadline {
            let reason = format!(
                "the server was not ready after {} ms",
                spec.ready_timeout_ms
            );
            let _ = report(channel, &failed(spec, reason));
            return Err(End::Stop);
        }
        if told_to_stop(channel, READY_POLL, spec) {
            return Err(End::Stop);
        }
    }
}

/// How often a starting server is looked at. Redis is ready in about
/// 11 ms; looking every 10 ms added 5 ms on average to each fixture's
/// start (the `redis` bench), every 2 ms costs a few hundred reads of a
/// short log per start.
const READY_POLL: Duration = Duration::from_millis(2);

/// Whether the server is ready. A port counts only once the server's own
/// process group listens there: a port another local user took first
/// answers too, and must not be handed to the test as the server.
fn is_ready(spec: &KeeperSpec, server: u32, log: &mut LogScan) -> bool {
    match &spec.ready {
        Readiness::Tcp(address) => address.parse().is_ok_and(|address: SocketAddr| {
            sys::group_listens_on(server, address)
                && std::net::TcpStream::connect_timeout(&address, Duration::from_millis(100))
                    .is_ok()
        }),
        Readiness::LogLine(line) => log.found(Path::new(&spec.log), line),
    }
}

/// A search of a growing log for a line: each look reads only what was
/// written since the last, keeping just enough of it for a match that
/// spans two reads. A server that writes gigabytes before it is ready
/// costs reads, not memory.
#[derive(Default)]
struct LogScan {
    /// Bytes of the log read so far.
    offset: u64,
    /// The end of what was read, as long as the text looked for.
    carry: Vec<u8>,
}

/// The most read in one look; the rest waits for the next.
const LOG_READ_MAX: u64 = 1 << 20;

impl LogScan {
    fn found(&mut self, path: &Path, text: &str) -> bool {
        use std::io::{Seek, SeekFrom};
        let Ok(mut file) = sys::open_no_follow(path, Open::Read) else {
            return false;
        };
        let mut fresh = Vec::new();
        let read = file
            .seek(SeekFrom::Start(self.offset))
            .and_then(|_| (&mut file).take(LOG_READ_MAX).read_to_end(&mut fresh));
        if read.is_err() {
            return false;
        }
        self.offset += fresh.len() as u64;
        let mut window = std::mem::take(&mut self.carry);
        window.extend_from_slice(&fresh);
        let needle = text.as_bytes();
        let hit = needle.is_empty() || window.windows(needle.len()).any(|w| w == needle);
        let keep = needle.len().saturating_sub(1).min(window.len());
        self.carry = window[window.len() - keep..].to_vec();
        hit
    }
}

/// After `Ready`: until the channel ends, a stop signal comes, or the
/// server dies.
fn watch(channel: &mut Channel, spec: &KeeperSpec, server: &Child) -> End {
    loop {
        if told_to_stop(channel, TICK, spec) {
            return End::Stop;
        }
        if ended(server) {
            return End::ServerGone { started: true };
        }
    }
}

/// Waits up to `wait` on the channel; whether the keeper must stop: its
/// channel ended (unless detached), a stop signal is pending, or its
/// anchor (if any) is gone.
fn told_to_stop(channel: &mut Channel, wait: Duration, spec: &KeeperSpec) -> bool {
    if sys::take_stop_signal().is_some() {
        return true;
    }
    if spec.detached {
        std::thread::sleep(wait);
        let anchor_gone = spec
            .anchor
            .is_some_and(|(pid, start)| !sys::process_alive(pid, start));
        return anchor_gone || sys::take_stop_signal().is_some();
    }
    let fd = channel.file.as_raw_fd();
    let mut fds = [sys::poll_fd(fd, sys::POLLIN)];
    if sys::poll(&mut fds, wait.as_millis() as i32).is_err() || fds[0].revents == 0 {
        return false;
    }
    // Nothing more is ever sent to a keeper: readable means its end.
    let mut buf = [0u8; 64];
    !matches!(channel.file.read(&mut buf), Ok(n) if n > 0)
}

/// The server's clean stop, then SIGKILL after the grace period.
fn stop_server(server: &Child, spec: &KeeperSpec) {
    if ended(server) {
        return;
    }
    sys::signal_process(server.id(), None, spec.stop_signal);
    let until = Instant::now() + Duration::from_millis(spec.stop_grace_ms);
    while Instant::now() < until {
        if ended(server) {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    sys::signal_group(server.id(), sys::SIGKILL);
}

fn failed(spec: &KeeperSpec, reason: String) -> KeeperReport {
    KeeperReport::Failed {
        reason,
        log_tail: log_tail(&spec.log),
    }
}

fn report(channel: &mut Channel, report: &KeeperReport) -> io::Result<()> {
    protocol::write_frame(&mut channel.file, report)
}

/// Appends a line naming process `pid` to the registry, for the sweep
/// ([`protocol::registry_line`]). Called once the process runs its own
/// program: `spawn` returns after the `exec`.
fn record(spec: &KeeperSpec, what: &str, pid: u32) -> Option<sys::Identity> {
    let me = sys::identity_of(pid)?;
    let line = protocol::registry_line(what, me.pid, me.start, me.uid, &me.exe);
    if let Ok(mut file) = sys::open_no_follow(Path::new(&spec.registry), Open::Append(0o600)) {
        let _ = file.write_all(line.as_bytes());
    }
    Some(me)
}

/// The last lines of the server's log.
fn log_tail(path: &str) -> String {
    let mut text = String::new();
    if let Ok(mut file) = sys::open_no_follow(Path::new(path), Open::Read) {
        let _ = file.read_to_string(&mut text);
    }
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n")
}

fn remove_dir(dir: &Path) {
    if dir.as_os_str().is_empty() || dir == Path::new("/") {
        return;
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// Its state letter in `/proc/<pid>/stat` (`Z`: ended, not yet
    /// reaped), or `None` once it is gone (reaped).
    fn state(pid: u32) -> Option<char> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        stat.rsplit_once(") ")?.1.chars().next()
    }

    /// A "server" in a group of its own that leaves `sleep` behind in its
    /// group and exits with 3.
    fn server_leaving_a_sleeper() -> (Child, u32) {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("sleeper");
        let server = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "sleep 30 & echo $! > {}; exit 3",
                pid_file.display()
            ))
            .process_group(0)
            .spawn()
            .unwrap();
        let until = Instant::now() + Duration::from_secs(10);
        while !ended(&server) {
            assert!(Instant::now() < until, "the server never ended");
            std::thread::sleep(Duration::from_millis(5));
        }
        let sleeper = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        (server, sleeper)
    }

    #[test]
    fn a_server_that_ended_stays_unreaped_until_its_group_is_killed() {
        let (mut server, sleeper) = server_leaving_a_sleeper();
        // The look that found it ended did not reap it: its pid, and so its
        // group's id, cannot have gone to another process.
        assert_eq!(
            state(server.id()),
            Some('Z'),
            "ended, not reaped, after the look"
        );
        assert!(ended(&server), "a second look sees it ended too");
        assert_eq!(state(server.id()), Some('Z'));
        assert!(
            matches!(state(sleeper), Some(c) if c != 'Z'),
            "its group still runs"
        );
        let status = reap(&mut server, None).expect("its status");
        assert_eq!(status.code(), Some(3));
        assert_eq!(state(server.id()), None, "reaped");
        // The group was killed before the reap (the sleeper is our
        // grandchild, reaped by init: gone, or a zombie for a moment).
        let until = Instant::now() + Duration::from_secs(10);
        while matches!(state(sleeper), Some(c) if c != 'Z') {
            assert!(
                Instant::now() < until,
                "what the server left in its group still runs"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn a_log_is_read_once_and_a_line_split_between_two_looks_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.log");
        let mut log = std::fs::File::create(&path).unwrap();
        let mut scan = LogScan::default();
        let ready = "Ready to accept connections";
        assert!(!scan.found(&path, ready), "an empty log");
        log.write_all(b"starting\nReady to acc").unwrap();
        assert!(!scan.found(&path, ready));
        assert_eq!(scan.offset, 21);
        // Up to the text's length less one: enough for a match that ends
        // in a later look (here all 21 bytes, under 26).
        assert_eq!(scan.carry, b"starting\nReady to acc");
        log.write_all(b"ept connections\n").unwrap();
        assert!(scan.found(&path, ready), "the line split between two looks");
        assert_eq!(scan.carry.len(), ready.len() - 1, "only the carry is kept");
    }

    #[test]
    fn one_look_reads_at_most_a_mebibyte() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.log");
        let spam = vec![b'y'; (LOG_READ_MAX + 10) as usize];
        std::fs::write(&path, &spam).unwrap();
        let mut scan = LogScan::default();
        assert!(!scan.found(&path, "ready"));
        assert_eq!(scan.offset, LOG_READ_MAX);
        assert!(!scan.found(&path, "ready"));
        assert_eq!(scan.offset, LOG_READ_MAX + 10);
        assert_eq!(scan.carry, b"yyyy");
    }
}
