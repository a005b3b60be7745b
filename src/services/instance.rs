//! A service instance's private directory and its registry, and the sweep
//! of instances whose keeper was killed.
//!
//! Instances live in a base that [`private_dir`] made or checked:
//! `<base>/<service>-<pid>-<n>/`, mode 0700 (0711 when a server of another
//! user must reach its `server/` directory inside). Each holds a `registry`
//! of `boot <id>` and [`protocol::registry_line`]s (`owner`, the test
//! process; `keeper`; `server`), the keeper's log and the server's log.

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::private_dir::{self, Place, note};
use crate::error::{Error, Result};
use crate::protocol;
use crate::sys::{self, Identity, Open};

/// The name of an instance's directory for its server's own files, when
/// the server runs as another user.
pub(crate) const SERVER_DIR: &str = "server";

/// The longest Unix socket path the kernel takes (`sun_path`, less its NUL).
const SOCKET_PATH_MAX: usize = 107;

/// An error unless `socket`, the Unix socket `service` will listen on, fits
/// in the kernel's limit on a socket's path.
pub(crate) fn check_socket_path(service: &str, socket: &Path) -> Result<()> {
    let length = socket.as_os_str().len();
    if length <= SOCKET_PATH_MAX {
        return Ok(());
    }
    Err(Error::ServiceStart {
        service: service.to_owned(),
        reason: format!(
            "its Unix socket's path, {}, is {length} bytes, over the {SOCKET_PATH_MAX} the \
             kernel allows; set TMPDIR to a shorter directory",
            socket.display()
        ),
        log_tail: String::new(),
    })
}

/// A new instance directory, with its registry naming this process.
pub(crate) struct Instance {
    path: PathBuf,
}

impl Instance {
    pub(crate) fn create(service: &str, place: Place) -> Result<Instance> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let base = private_dir::base(place)?;
        sweep_once();
        let name = if place == Place::Detached {
            format!("{service}-up")
        } else {
            let n = SEQ.fetch_add(1, Ordering::Relaxed);
            format!("{service}-{}-{n}", sys::getpid())
        };
        let path = base.join(name);
        // Never an existing one: the base is ours alone, so this fails only
        // on a leftover of this very pid (or a second `up`).
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(|source| Error::Path {
                context: "creating a service's private directory",
                path: path.clone(),
                source,
            })?;
        let instance = Instance { path };
        // Written aside, then renamed: another test process sweeping now
        // sees no registry (and leaves the directory alone) or a whole one,
        // never a half-written one that reads as stale.
        let me = sys::identity_of(sys::getpid());
        let mut text = format!("boot {}\n", sys::boot_id());
        if let Some(me) = &me {
            text.push_str(&protocol::registry_line(
                "owner", me.pid, me.start, me.uid, &me.exe,
            ));
        }
        let aside = instance.path.join("registry.new");
        let written = sys::open_no_follow(&aside, Open::New(0o600))
            .and_then(|mut file| file.write_all(text.as_bytes()))
            .and_then(|()| fs::rename(&aside, instance.registry()));
        if let Err(source) = written {
            let path = instance.path.clone();
            instance.remove();
            return Err(Error::Path {
                context: "writing a service's registry",
                path,
                source,
            });
        }
        Ok(instance)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn registry(&self) -> PathBuf {
        self.path.join("registry")
    }

    pub(crate) fn remove(self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// Makes the directory for the server's own files in the instance at
/// `instance`: `server/`, mode 0700, this user's until [`hand_over`].
pub(crate) fn server_dir(instance: &Path) -> Result<PathBuf> {
    let dir = instance.join(SERVER_DIR);
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(|source| Error::Path {
            context: "creating a server's directory",
            path: dir.clone(),
            source,
        })?;
    Ok(dir)
}

/// Hands the server's directory in `instance` (when made), and all in it,
/// to `user` (a server that cannot run as root), and lets that user
/// through the instance's directory (0711: it starts there) and no
/// further. Nothing when `None`.
pub(crate) fn hand_over(instance: &Path, user: Option<(u32, u32)>) -> Result<()> {
    let Some((uid, gid)) = user else {
        return Ok(());
    };
    fn chown_tree(path: &Path, uid: u32, gid: u32) -> io::Result<()> {
        std::os::unix::fs::lchown(path, Some(uid), Some(gid))?;
        if fs::symlink_metadata(path)?.is_dir() {
            for entry in fs::read_dir(path)? {
                chown_tree(&entry?.path(), uid, gid)?;
            }
        }
        Ok(())
    }
    let dir = instance.join(SERVER_DIR);
    let made = fs::symlink_metadata(&dir).is_ok();
    (if made {
        chown_tree(&dir, uid, gid)
    } else {
        Ok(())
    })
    .and_then(|()| fs::set_permissions(instance, fs::Permissions::from_mode(0o711)))
    .map_err(|source| Error::Path {
        context: "handing a server's directory to its user",
        path: dir,
        source,
    })
}

/// Stops every process that provably belongs to the instance in `dir`
/// when its registry cannot say which they are: those of one of `users`
/// working in `dir` (a keeper works in its instance's directory, a server
/// in its data directory inside), where no other user can enter. SIGTERM
/// first (a keeper's word to stop its server), SIGKILL after 20 s. The
/// pids stopped.
pub(crate) fn stop_processes_in(dir: &Path, users: &[Option<u32>]) -> Vec<u32> {
    let me = sys::getpid();
    let found: Vec<Named> = sys::all_pids()
        .into_iter()
        .filter(|&pid| pid != me)
        .filter_map(sys::identity_of)
        .filter(|id| users.contains(&Some(id.uid)))
        .filter(|id| sys::working_dir_of(id.pid).is_some_and(|cwd| cwd.starts_with(dir)))
        .map(|id| Named {
            pid: id.pid,
            start: id.start,
            proof: Some(id),
        })
        .collect();
    for process in &found {
        process.signal(sys::SIGTERM, "process");
    }
    let until = Instant::now() + Duration::from_secs(20);
    while found.iter().any(Named::alive) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    for process in &found {
        process.signal(sys::SIGKILL, "process");
    }
    found.iter().map(|p| p.pid).collect()
}

/// Sweeps instances left by killed keepers, once per process.
fn sweep_once() {
    static SWEPT: Mutex<bool> = Mutex::new(false);
    let mut swept = SWEPT.lock().unwrap_or_else(|e| e.into_inner());
    if !*swept {
        *swept = true;
        for base in private_dir::existing_bases() {
            sweep(&base);
        }
    }
}

/// Removes every instance under `base` (a base [`private_dir`] checked)
/// that nobody owns any more: its keeper is gone (or it never had one and
/// its owner is gone), or it comes from another boot. A server left
/// running by a killed keeper is killed first, if it provably is that
/// server. Returns the directories removed.
pub(crate) fn sweep(base: &Path) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let boot = sys::boot_id();
    let me = sys::effective_uid();
    let Ok(entries) = fs::read_dir(base) else {
        return removed;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let ours = fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir() && m.uid() == me);
        let Some(text) = ours.then(|| read_registry(&path)).flatten() else {
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

/// The registry of the instance in `dir`, read without following a link.
pub(crate) fn read_registry(dir: &Path) -> Option<String> {
    let mut text = String::new();
    sys::open_no_follow(&dir.join("registry"), Open::Read)
        .ok()?
        .read_to_string(&mut text)
        .ok()?;
    Some(text)
}

/// A process a registry names.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Named {
    pub pid: u32,
    pub start: u64,
    /// Its user and program; `None` in a line an older stampede wrote,
    /// which can tell whether the process runs but never prove which it is.
    pub proof: Option<Identity>,
}

impl Named {
    pub(crate) fn alive(&self) -> bool {
        sys::process_alive(self.pid, self.start)
    }

    /// Sends `signal` if this provably is the process named (and to its
    /// group when it leads one); whether it was signalled. Says why not in
    /// a note when something else holds the pid.
    pub(crate) fn signal(&self, signal: i32, what: &str) -> bool {
        let Some(proof) = &self.proof else {
            if self.alive() {
                note(&format!(
                    "left {what} pid {} alone: its registry line names no user and program \
                     (an older stampede wrote it)",
                    self.pid
                ));
            }
            return false;
        };
        match sys::signal_if_same(proof, signal) {
            Ok(signalled) => signalled,
            Err(why) => {
                note(&format!("left {what} pid {} alone: {why}", self.pid));
                false
            }
        }
    }
}

/// What a registry file says.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Record {
    pub boot: String,
    pub owner: Option<Named>,
    pub keeper: Option<Named>,
    pub servers: Vec<Named>,
    /// Lines that could not be read.
    pub damaged: Vec<String>,
}

impl Record {
    pub(crate) fn parse(text: &str) -> Record {
        let mut record = Record::default();
        for line in text.lines() {
            if let Some(boot) = line.strip_prefix("boot ") {
                record.boot = boot.trim().to_owned();
                continue;
            }
            let mut words = line.splitn(5, ' ');
            let what = words.next().unwrap_or_default();
            let pid = words.next().and_then(|w| w.parse().ok());
            let start = words.next().and_then(|w| w.parse().ok());
            let uid = words.next().and_then(|w| w.parse().ok());
            let exe = words.next().filter(|e| !e.is_empty()).map(PathBuf::from);
            let (Some(pid), Some(start)) = (pid, start) else {
                record.damaged.push(line.to_owned());
                continue;
            };
            let proof = uid.zip(exe).map(|(uid, exe)| Identity {
                pid,
                start,
                uid,
                exe,
            });
            let named = Named { pid, start, proof };
            match what {
                "owner" => record.owner = Some(named),
                "keeper" => record.keeper = Some(named),
                "server" => record.servers.push(named),
                _ => record.damaged.push(line.to_owned()),
            }
        }
        record
    }

    /// What makes this registry unreadable as a whole, if anything: no
    /// boot line, or lines that are not stampede's.
    pub(crate) fn damage(&self) -> Option<String> {
        if self.boot.is_empty() {
            return Some("it has no boot line".to_owned());
        }
        self.damaged
            .first()
            .map(|line| format!("it holds a line stampede did not write: {line:?}"))
    }

    /// Kills the servers that still run and provably are the ones started
    /// (SIGKILL to their groups), and removes the System V shared memory
    /// they leave (PostgreSQL's interlock segment, which only a clean stop
    /// removes).
    pub(crate) fn kill_servers(&self) {
        for server in &self.servers {
            let killed = server.signal(sys::SIGKILL, "server");
            if let (true, Some(proof)) = (killed || !server.alive(), &server.proof) {
                sys::remove_shared_memory_of(proof, killed);
            }
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
        match (&self.keeper, &self.owner) {
            (Some(keeper), _) => !keeper.alive(),
            (None, Some(owner)) => !owner.alive(),
            (None, None) => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(pid: u32, start: u64) -> Named {
        Named {
            pid,
            start,
            proof: None,
        }
    }

    #[test]
    fn a_registry_names_its_processes_with_their_user_and_program() {
        let text = "boot abc\nowner 10 100 0 /t/test bin\nkeeper 11 110 0 /t/test bin\n\
                    server 12 120 101 /usr/lib/postgresql/15/bin/postgres\nserver 13 130\n";
        let record = Record::parse(text);
        let proof = |pid, start, uid, exe: &str| {
            Some(Identity {
                pid,
                start,
                uid,
                exe: exe.into(),
            })
        };
        assert_eq!(
            record.owner.as_ref().unwrap().proof,
            proof(10, 100, 0, "/t/test bin")
        );
        assert_eq!(
            record.keeper.as_ref().unwrap().proof,
            proof(11, 110, 0, "/t/test bin")
        );
        assert_eq!(
            record.servers,
            vec![
                Named {
                    pid: 12,
                    start: 120,
                    proof: proof(12, 120, 101, "/usr/lib/postgresql/15/bin/postgres"),
                },
                // An older stampede's line: alive or not, never a proof.
                named(13, 130),
            ]
        );
        assert_eq!(record.damage(), None);
    }

    #[test]
    fn a_damaged_registry_says_so() {
        assert_eq!(
            Record::parse("keeper 1 2 0 /x\n").damage().as_deref(),
            Some("it has no boot line")
        );
        let garbage = Record::parse("boot abc\nx\n");
        assert!(garbage.damage().unwrap().contains("\"x\""), "{garbage:?}");
        assert!(Record::parse("boot abc\nkeeper 1\n").damage().is_some());
        assert!(
            Record::parse("boot abc\nlodger 1 2 0 /x\n")
                .damage()
                .is_some()
        );
    }

    #[test]
    fn an_instance_from_another_boot_or_of_a_dead_keeper_is_stale() {
        let me = sys::getpid();
        let start = sys::process_start_time(me).unwrap();
        let boot = sys::boot_id();
        let mine = Record {
            boot: boot.clone(),
            owner: Some(named(me, start)),
            ..Record::default()
        };
        assert!(!mine.is_stale(&boot));
        assert!(mine.is_stale("another boot"));
        let reused_pid = Record {
            keeper: Some(named(me, start + 1)),
            ..mine
        };
        assert!(reused_pid.is_stale(&boot));
        // A registry cut short (no boot line) is left alone, not swept.
        assert!(!Record::parse("").is_stale(&boot));
        assert!(!Record::parse("bo").is_stale(&boot));
    }

    #[test]
    fn a_process_is_signalled_only_with_its_user_and_program_proven() {
        let mut sleeper = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = sleeper.id();
        let real = sys::identity_of(pid).unwrap();
        let others = [
            // An older line: pid and start time only.
            named(pid, real.start),
            // Another user's process, or another program, at that pid.
            Named {
                proof: Some(Identity {
                    uid: real.uid + 1,
                    ..real.clone()
                }),
                ..named(pid, real.start)
            },
            Named {
                proof: Some(Identity {
                    exe: "/usr/lib/postgresql/15/bin/postgres".into(),
                    ..real.clone()
                }),
                ..named(pid, real.start)
            },
            // The same pid at another start: another process.
            Named {
                proof: Some(Identity {
                    start: real.start + 1,
                    ..real.clone()
                }),
                ..named(pid, real.start + 1)
            },
        ];
        for other in &others {
            assert!(!other.signal(sys::SIGKILL, "test"), "{other:?}");
            assert_eq!(sleeper.try_wait().unwrap(), None, "{other:?} was signalled");
        }
        let proven = Named {
            proof: Some(real.clone()),
            ..named(pid, real.start)
        };
        assert!(proven.signal(sys::SIGKILL, "test"));
        let status = sleeper.wait().unwrap();
        assert!(!status.success());
    }
}

#[cfg(test)]
mod socket_path_tests {
    use super::*;

    #[test]
    fn a_socket_path_of_107_bytes_is_taken_and_one_of_108_refused() {
        let path = |len: usize| PathBuf::from(format!("/{}", "s".repeat(len - 1)));
        assert!(check_socket_path("redis", &path(107)).is_ok());
        let e = check_socket_path("redis", &path(108)).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("is 108 bytes, over the 107") && text.contains("set TMPDIR"),
            "{text}"
        );
    }
}
