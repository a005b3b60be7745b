//! Process helpers shared by the integration tests: look at /proc, start
//! this test binary again on one ignored test, wait for conditions.
#![allow(dead_code, reason = "each test file uses a different subset")]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Whether `pid` no longer runs: gone, or a zombie waiting for a reaper.
pub fn is_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z')),
    }
}

/// Polls `condition` every 10 ms until it holds or `limit` passes.
pub fn wait_until(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    condition()
}

/// The pids of this process's children (all threads).
pub fn own_children() -> Vec<u32> {
    children_of(std::process::id())
}

/// The pids of process `pid`'s children (all its threads').
pub fn children_of(pid: u32) -> Vec<u32> {
    let mut pids = Vec::new();
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"));
    for task in tasks.into_iter().flatten().flatten() {
        if let Ok(list) = std::fs::read_to_string(task.path().join("children")) {
            pids.extend(
                list.split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
    }
    pids
}

/// Starts the ignored test `name` of `exe`, which holds a service and
/// prints `<marker> <directory> <pid>…`, and waits for that line: the
/// running holder, the directory and the pids.
pub fn start_holder(exe: &Path, name: &str, marker: &str) -> (Child, std::path::PathBuf, Vec<u32>) {
    use std::io::{BufRead, BufReader, Read};
    let mut holder = start_ignored_test(exe, name, &[]);
    let prefix = format!("{marker} ");
    let line = BufReader::new(holder.stdout.take().unwrap())
        .lines()
        .find_map(|l| Some(l.ok()?.split_once(prefix.as_str())?.1.to_owned()))
        .unwrap_or_else(|| {
            let mut err = String::new();
            let _ = holder.stderr.take().unwrap().read_to_string(&mut err);
            panic!("{name} printed no `{marker}` line: {err}")
        });
    let words: Vec<&str> = line.split_whitespace().collect();
    let dir = std::path::PathBuf::from(words[0]);
    let pids = words[1..].iter().map(|w| w.parse().unwrap()).collect();
    (holder, dir, pids)
}

/// Starts `exe` (this test binary, or a copy) on the ignored test `name`
/// alone, with extra environment variables.
pub fn start_ignored_test(exe: &Path, name: &str, env: &[(&str, &str)]) -> Child {
    let mut tries = 0;
    loop {
        let started = Command::new(exe)
            .args([
                name,
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        match started {
            // A freshly written copy can be briefly held open for writing by
            // a process another test thread is forking: ETXTBSY, try again.
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && tries < 50 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            other => return other.expect("start the test binary again"),
        }
    }
}

/// Runs the ignored test `name` of `exe` to its end and checks that it
/// passed and printed `INNER-OK`; shows its output otherwise.
pub fn assert_ignored_test_passes(exe: &Path, name: &str) {
    let run = start_ignored_test(exe, name, &[])
        .wait_with_output()
        .unwrap();
    assert_inner_ok(&run);
}

/// Checks that an inner test run passed and printed `INNER-OK`; shows its
/// output otherwise.
pub fn assert_inner_ok(run: &std::process::Output) {
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success() && stdout.contains("INNER-OK"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
}

/// Reads a file of whitespace-separated pids, as written by children.
pub fn read_pids(path: &Path) -> Vec<u32> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// Appends this process's pid to `path`, one per line.
pub fn record_pid(path: &Path) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("pid file");
    // One write per record: O_APPEND keeps whole writes from interleaving.
    file.write_all(format!("{}\n", std::process::id()).as_bytes())
        .expect("write pid");
}

/// Runs the ignored test `name` of `exe` with `env`, killing it after
/// `limit`; checks that it passed and printed `INNER-OK`, and shows its
/// output otherwise (a hang is a failure with a reason, not a stuck suite).
pub fn assert_ignored_test_passes_within(
    exe: &Path,
    name: &str,
    env: &[(&str, &str)],
    limit: Duration,
) {
    let mut child = start_ignored_test(exe, name, env);
    let ended = wait_until(limit, || child.try_wait().unwrap().is_some());
    if !ended {
        let _ = child.kill();
    }
    let run = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        ended,
        "{name} did not end within {limit:?}\n{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_inner_ok(&run);
}

/// This child's index in its call, from `STAMPEDE_CHILD` (`1:<ppid>:<index>`).
pub fn child_index() -> u64 {
    std::env::var("STAMPEDE_CHILD")
        .ok()
        .and_then(|v| v.rsplit(':').next()?.parse().ok())
        .unwrap_or(u64::MAX)
}
