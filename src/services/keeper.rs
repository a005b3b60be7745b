//! The test process's side of a keeper: starting it in an instance and
//! waiting for `Ready`, noticing its server's death, letting it go, and
//! waiting for its end.

use std::fs::{self, File};
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::instance::{Instance, Record, read_registry};
use crate::error::{Error, Result};
use crate::parent::{ChildProcess, Launcher};
use crate::protocol::{self, KeeperReport, KeeperSpec, Request};
use crate::sys::{self, Open};

/// How long a keeper has to exit after its channel ended: its server's
/// grace period, plus this.
const EXIT_MARGIN: Duration = Duration::from_secs(5);

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
            let output =
                sys::open_no_follow(&instance.path().join("keeper.log"), Open::Append(0o600))
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
            let encoded = protocol::encode(&spec).map_err(|message| Error::Encode {
                function: "a keeper's request",
                message,
            })?;
            let request = Request::keeper(&spec.service, encoded);
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
        self.check_within(Duration::ZERO)
    }

    /// [`check`](Keeper::check), waiting up to `wait` for the keeper's word:
    /// after a refused connection, the server may have died a moment ago
    /// and its keeper not yet said so (it looks every 50 ms).
    pub(crate) fn check_within(&self, wait: Duration) -> Result<()> {
        let mut died = self.died.lock().unwrap_or_else(|e| e.into_inner());
        if died.is_none() {
            *died = self.look(wait);
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
    fn look(&self, wait: Duration) -> Option<(String, String)> {
        let channel = self.channel.as_ref()?;
        let mut fds = [sys::poll_fd(channel.as_raw_fd(), sys::POLLIN)];
        let wait_ms = i32::try_from(wait.as_millis()).unwrap_or(i32::MAX);
        if sys::poll(&mut fds, wait_ms).is_err() || fds[0].revents == 0 {
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
        // Still there: the keeper could not clean up. Only a directory that
        // is still this user's own is believed.
        let ours = fs::symlink_metadata(&self.dir)
            .is_ok_and(|m| m.is_dir() && m.uid() == sys::effective_uid());
        if ours {
            let record = read_registry(&self.dir).unwrap_or_default();
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
    if let Ok(mut file) = sys::open_no_follow(path, Open::Read) {
        let _ = file.read_to_string(&mut text);
    }
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.contains("stampede: child entered"))
        .collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}
