//! The test process's side of a keeper: the instance's private directory
//! and its registry, starting the keeper and waiting for `Ready`, noticing
//! its server's death, letting it go — and the sweep of instances whose
//! keeper was killed.
//!
//! Instances live in `/tmp/stampede-<uid>/<service>-<pid>-<n>/`, or under
//! `/dev/shm/stampede-<uid>/` for those whose files are better kept in
//! memory ([`Place::Memory`]): short, so a Unix socket path inside fits the
//! 107 bytes the kernel allows. Each holds
//! a `registry` file of lines `<what> <pid> <start time>` (`owner`, the test
//! process; `keeper`; `server`) and `boot <id>`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::parent::{ChildProcess, Launcher};
use crate::protocol::{self, KeeperReport, KeeperSpec, Request, Role};
use crate::sys;

/// How long a keeper has to exit after its channel ended: its server's
/// grace period, plus this.
const EXIT_MARGIN: Duration = Duration::from_secs(5);

/// How much room a tmpfs needs for instances to live there: a cluster
/// starts at 40 MB and grows with each database.
const MEMORY_ROOM: u64 = 1 << 30;

/// Where instances live: short, and the same for every process of a user.
pub(crate) fn base_dir() -> PathBuf {
    PathBuf::from(format!("/tmp/stampede-{}", sys::effective_uid()))
}

/// Where instances kept in memory live.
fn memory_base_dir() -> PathBuf {
    PathBuf::from(format!("/dev/shm/stampede-{}", sys::effective_uid()))
}

/// Where an instance's directory goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Place {
    /// Under `/tmp`.
    Disk,
    /// Under `/dev/shm` when it is a tmpfs with room (creating a file there
    /// costs a fraction of what it costs on a disk's file system), else
    /// under `/tmp`.
    Memory,
    /// `<service>-up` under `/tmp`, for a server that outlives its process.
    Detached,
}

/// Creates the base directory, traversable by a server's own user.
fn ensure_base(place: Place) -> Result<PathBuf> {
    let shm = Path::new("/dev/shm");
    let base = if place == Place::Memory
        && sys::tmpfs_free_bytes(shm).is_some_and(|free| free >= MEMORY_ROOM)
    {
        memory_base_dir()
    } else {
        base_dir()
    };
    if !base.is_dir() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&base)
            .map_err(|source| Error::Io {
                context: "creating stampede's service directory under /tmp",
                source,
            })?;
    }
    Ok(base)
}

/// A new instance directory, with its registry naming this process.
pub(crate) struct Instance {
    path: PathBuf,
}

impl Instance {
    pub(crate) fn create(service: &str, place: Place) -> Result<Instance> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let base = ensure_base(place)?;
        sweep_once();
        let name = if place == Place::Detached {
            format!("{service}-up")
        } else {
            let n = SEQ.fetch_add(1, Ordering::Relaxed);
            format!("{service}-{}-{n}", sys::getpid())
        };
        let path = base.join(name);
        let io = |source| Error::Io {
            context: "creating a service's private directory",
            source,
        };
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(io)?;
        let instance = Instance { path };
        // Written aside, then renamed: another test process sweeping now
        // sees no registry (and leaves the directory alone) or a whole one,
        // never a half-written one that reads as stale.
        let me = sys::getpid();
        let text = format!(
            "boot {}\nowner {me} {}\n",
            sys::boot_id(),
            sys::process_start_time(me).unwrap_or(0)
        );
        let aside = instance.path.join("registry.new");
        fs::write(&aside, text).map_err(io)?;
        fs::rename(&aside, instance.registry()).map_err(io)?;
        Ok(instance)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn registry(&self) -> PathBuf {
        self.path.join("registry")
    }

    /// Hands the directory to `uid:gid` (a server that cannot run as root).
    pub(crate) fn give_to(&self, uid: u32, gid: u32) -> io::Result<()> {
        std::os::unix::fs::chown(&self.path, Some(uid), Some(gid))?;
        fs::set_permissions(&self.path, fs::Permissions::from_mode(0o700))
    }

    pub(crate) fn remove(self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// Sweeps instances left by killed keepers, once per process.
fn sweep_once() {
    static SWEPT: Mutex<bool> = Mutex::new(false);
    let mut swept = SWEPT.lock().unwrap_or_else(|e| e.into_inner());
    if !*swept {
        *swept = true;
        sweep(&base_dir());
        sweep(&memory_base_dir());
    }
}

/// Removes every instance under `base` that nobody owns any more: its
/// keeper is gone (or it never had one and its owner is gone), or it comes
/// from another boot. A server left running by a killed keeper is killed
/// first. Returns the directories removed.
pub(crate) fn sweep(base: &Path) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let boot = sys::boot_id();
    let Ok(entries) = fs::read_dir(base) else {
        return removed;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(text) = fs::read_to_string(path.join("registry")) else {
            continue;
        };
        let record = Record::parse(&text);
        if !record.is_stale(&boot) {
            continue;
        }
        if record.boot == boot {
            record.kill_servers();
        }
        if fs::remove_dir_all(&path).is_ok() {
            removed.push(path);
        }
    }
    removed
}

/// What a registry file says.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Record {
    pub boot: String,
    pub owner: Option<(u32, u64)>,
    pub keeper: Option<(u32, u64)>,
    pub servers: Vec<(u32, u64)>,
}

impl Record {
    pub(crate) fn parse(text: &str) -> Record {
        let mut record = Record::default();
        for line in text.lines() {
            let mut words = line.split_whitespace();
            let what = words.next();
            if what == Some("boot") {
                record.boot = words.next().unwrap_or_default().to_owned();
                continue;
            }
            let (Some(pid), Some(start)) = (
                words.next().and_then(|w| w.parse().ok()),
                words.next().and_then(|w| w.parse().ok()),
            ) else {
                continue;
            };
            match what {
                Some("owner") => record.owner = Some((pid, start)),
                Some("keeper") => record.keeper = Some((pid, start)),
                Some("server") => record.servers.push((pid, start)),
                _ => {}
            }
        }
        record
    }

    /// Kills the servers that still run (SIGKILL to their groups) and
    /// removes the System V shared memory they leave (PostgreSQL's
    /// interlock segment, which only a clean stop removes).
    pub(crate) fn kill_servers(&self) {
        for &(pid, start) in &self.servers {
            let killed = sys::signal_if_alive(pid, start, sys::SIGKILL);
            sys::remove_shared_memory_of(pid, killed);
        }
    }

    /// Whether nobody is left to clean this instance up.
    fn is_stale(&self, boot: &str) -> bool {
        if self.boot.is_empty() {
            // Not a registry stampede wrote whole: nothing to judge it by.
            return false;
        }
        if self.boot != boot {
            return true;
        }
        let alive = |(pid, start): (u32, u64)| sys::process_alive(pid, start);
        match (self.keeper, self.owner) {
            (Some(keeper), _) => !alive(keeper),
            (None, Some(owner)) => !alive(owner),
            (None, None) => true,
        }
    }
}

/// A keeper, from the test process: its process, its channel, what it said.
pub(crate) struct Keeper {
    process: Option<ChildProcess>,
    channel: Option<File>,
    dir: PathBuf,
    service: String,
    server_pid: u32,
    grace: Duration,
    /// A `Died` report or the keeper's end, once seen.
    died: Mutex<Option<(String, String)>>,
}

impl Keeper {
    /// Starts a keeper for `spec` in `instance` and waits for its `Ready`.
    pub(crate) fn start(instance: Instance, spec: KeeperSpec) -> Result<Keeper> {
        let service = spec.service.clone();
        let timeout = Duration::from_millis(spec.ready_timeout_ms) + EXIT_MARGIN;
        let grace = Duration::from_millis(spec.stop_grace_ms) + EXIT_MARGIN;
        let io = |context| move |source| Error::Io { context, source };
        let started = (|| {
            let launcher = Launcher::new(&[], None)?;
            let output = OpenOptions::new()
                .create(true)
                .append(true)
                .open(instance.path().join("keeper.log"))
                .map_err(io("creating a keeper's log"))?;
            let (process, channel) =
                launcher
                    .spawn_keeper(&OwnedFd::from(output))
                    .map_err(|source| Error::Spawn {
                        child: 0,
                        limit: None,
                        source,
                    })?;
            let mut channel = File::from(channel);
            let request = Request {
                protocol: protocol::PROTOCOL,
                role: Role::Keeper,
                call: 0,
                function: spec.service.clone(),
                args: protocol::encode(&spec).map_err(|message| Error::Encode {
                    function: "a keeper's request",
                    message,
                })?,
                barrier: false,
                jitter_max_ns: 0,
                seed: 0,
            };
            protocol::write_frame(&mut channel, &request)
                .map_err(io("sending a keeper its request"))?;
            Ok((process, channel))
        })();
        let (process, mut channel) = match started {
            Ok(started) => started,
            Err(e) => {
                instance.remove();
                return Err(e);
            }
        };
        let dir = instance.path().to_owned();
        let mut keeper = Keeper {
            process: Some(process),
            channel: None,
            dir,
            service,
            server_pid: 0,
            grace,
            died: Mutex::new(None),
        };
        match wait_report(&mut channel, timeout) {
            Some(KeeperReport::Ready { server_pid, .. }) => {
                keeper.server_pid = server_pid;
                keeper.channel = Some(channel);
                Ok(keeper)
            }
            Some(KeeperReport::Failed { reason, log_tail }) => {
                drop(channel);
                keeper.wait_end();
                Err(Error::ServiceStart {
                    service: keeper.service.clone(),
                    reason,
                    log_tail,
                })
            }
            other => {
                let log_tail = tail(&keeper.dir.join("keeper.log"));
                drop(channel);
                keeper.wait_end();
                let reason = match other {
                    Some(KeeperReport::Died { reason, .. }) => reason,
                    _ => format!(
                        "its keeper did not report within {} ms (the end of the keeper's own \
                         output follows)",
                        timeout.as_millis()
                    ),
                };
                Err(Error::ServiceStart {
                    service: keeper.service.clone(),
                    reason,
                    log_tail,
                })
            }
        }
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn server_pid(&self) -> u32 {
        self.server_pid
    }

    pub(crate) fn pid(&self) -> u32 {
        self.process.as_ref().map_or(0, ChildProcess::pid)
    }

    /// `Ok` while the server runs; `Error::ServiceDied` once it does not.
    pub(crate) fn check(&self) -> Result<()> {
        let mut died = self.died.lock().unwrap_or_else(|e| e.into_inner());
        if died.is_none() {
            *died = self.look();
        }
        match &*died {
            None => Ok(()),
            Some((reason, log_tail)) => Err(Error::ServiceDied {
                service: self.service.clone(),
                reason: reason.clone(),
                log_tail: log_tail.clone(),
            }),
        }
    }

    /// Whether the keeper said the server died, or is gone itself.
    fn look(&self) -> Option<(String, String)> {
        let channel = self.channel.as_ref()?;
        let mut fds = [sys::poll_fd(channel.as_raw_fd(), sys::POLLIN)];
        if sys::poll(&mut fds, 0).is_err() || fds[0].revents == 0 {
            return None;
        }
        let mut reader = channel;
        match protocol::read_frame::<KeeperReport>(&mut reader) {
            Ok(KeeperReport::Died { reason, log_tail }) => Some((reason, log_tail)),
            Ok(_) => None,
            Err(_) => Some((
                "its keeper ended without a word (killed?)".to_owned(),
                String::new(),
            )),
        }
    }

    /// Lets the keeper go on after this process exits (`stampede-services
    /// up`); it stops on SIGTERM.
    pub(crate) fn release(mut self) {
        if let Some(process) = self.process.take() {
            process.release();
        }
        self.channel.take();
    }

    /// Waits for the keeper to end (its channel is closed), killing it after
    /// the grace period; removes the directory if it could not.
    fn wait_end(&mut self) {
        if let Some(mut process) = self.process.take() {
            let until = sys::monotonic_ns() + self.grace.as_nanos() as u64;
            while process.update(sys::monotonic_ns()) && sys::monotonic_ns() < until {
                std::thread::sleep(Duration::from_millis(2));
            }
            // SIGTERM is a keeper's other word to stop; then SIGKILL.
            process.terminate(Duration::from_secs(1));
        }
        if self.dir.exists() {
            let record = fs::read_to_string(self.dir.join("registry")).unwrap_or_default();
            Record::parse(&record).kill_servers();
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

impl Drop for Keeper {
    fn drop(&mut self) {
        if self.process.is_some() {
            // The end of its channel is the keeper's word to stop.
            self.channel.take();
            self.wait_end();
        }
    }
}

/// Waits up to `timeout` for the keeper's first report; `None` when its
/// channel ended first or time ran out.
fn wait_report(channel: &mut File, timeout: Duration) -> Option<KeeperReport> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        let mut fds = [sys::poll_fd(channel.as_raw_fd(), sys::POLLIN)];
        sys::poll(&mut fds, left.as_millis().min(1000) as i32 + 1).ok()?;
        if fds[0].revents != 0 {
            return protocol::read_frame(channel).ok();
        }
    }
}

/// The last lines of a log file.
pub(crate) fn tail(path: &Path) -> String {
    let mut text = String::new();
    if let Ok(mut file) = File::open(path) {
        let _ = file.read_to_string(&mut text);
    }
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.contains("stampede: child entered"))
        .collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_registry_names_its_processes() {
        let record = Record::parse("boot abc\nowner 10 100\nkeeper 11 110\nserver 12 120\nbad\n");
        assert_eq!(
            record,
            Record {
                boot: "abc".into(),
                owner: Some((10, 100)),
                keeper: Some((11, 110)),
                servers: vec![(12, 120)],
            }
        );
    }

    #[test]
    fn only_a_tmpfs_counts_as_memory() {
        assert_eq!(sys::tmpfs_free_bytes(Path::new("/proc")), None);
        assert_eq!(sys::tmpfs_free_bytes(Path::new("/no/such/dir")), None);
    }

    #[test]
    fn an_instance_from_another_boot_or_of_a_dead_keeper_is_stale() {
        let me = sys::getpid();
        let start = sys::process_start_time(me).unwrap();
        let boot = sys::boot_id();
        let mine = Record {
            boot: boot.clone(),
            owner: Some((me, start)),
            ..Record::default()
        };
        assert!(!mine.is_stale(&boot));
        assert!(mine.is_stale("another boot"));
        let reused_pid = Record {
            keeper: Some((me, start + 1)),
            ..mine
        };
        assert!(reused_pid.is_stale(&boot));
        // A registry cut short (no boot line) is left alone, not swept.
        assert!(!Record::parse("").is_stale(&boot));
        assert!(!Record::parse("bo").is_stale(&boot));
    }
}
