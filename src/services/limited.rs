//! A helper program (`initdb`, `psql`) run to its end within a time
//! limit, in a process group of its own: past the limit the group is
//! killed. Only the calling thread reaps it, after the group's kill: until
//! then the group's id is the program's own.

use std::io::{Read, Write};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::sys;

/// What a program run within its limit did.
pub(crate) struct Ran {
    /// Its exit status; `None` when it was killed at its limit.
    pub status: Option<ExitStatus>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// Runs `command` (its stdio set here) with `input` on its standard input,
/// killed with its group after `limit`. Its output is read beside, so it
/// never blocks on a full pipe.
pub(crate) fn run_within(
    mut command: Command,
    input: Option<Vec<u8>>,
    limit: Duration,
) -> std::io::Result<Ran> {
    use std::os::unix::process::CommandExt;
    command
        .process_group(0)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn()?;
    let pid = child.id();
    let writer = child.stdin.take().map(|mut stdin| {
        let input = input.unwrap_or_default();
        std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        })
    });
    let stdout = read_beside(child.stdout.take());
    let stderr = read_beside(child.stderr.take());
    let (ended, end) = mpsc::channel();
    std::thread::spawn(move || {
        sys::wait_ended(pid);
        let _ = ended.send(());
    });
    let timed_out = end.recv_timeout(limit).is_err();
    if timed_out {
        sys::signal_group(pid, sys::SIGKILL);
    }
    let status = child.wait()?;
    if let Some(writer) = writer {
        let _ = writer.join();
    }
    Ok(Ran {
        status: (!timed_out).then_some(status),
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    })
}

/// Reads `pipe` to its end on a thread of its own.
fn read_beside<R: Read + Send + 'static>(pipe: Option<R>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut text = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut text);
        }
        text
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn sh(script: &str) -> Command {
        let mut command = Command::new("sh");
        command.arg("-c").arg(script);
        command
    }

    #[test]
    fn a_program_gets_its_input_and_gives_its_output_and_status() {
        let ran = run_within(
            sh("tr a-z A-Z; echo oops >&2; exit 4"),
            Some(b"hello".to_vec()),
            Duration::from_secs(30),
        )
        .unwrap();
        assert_eq!(ran.status.and_then(|s| s.code()), Some(4));
        assert_eq!(ran.stdout, b"HELLO");
        assert_eq!(ran.stderr, b"oops\n");
    }

    #[test]
    fn a_program_past_its_limit_is_killed_with_its_group_at_the_limit() {
        let limit = Duration::from_millis(500);
        let began = Instant::now();
        // What it started in its group holds the pipes too: killed with it.
        let ran = run_within(sh("sleep 30 & sleep 30; echo never"), None, limit).unwrap();
        let took = began.elapsed();
        assert!(ran.status.is_none(), "killed, not ended");
        assert!(ran.stdout.is_empty());
        assert!(
            took >= limit && took < limit + Duration::from_secs(5),
            "killed after {took:?}, its limit {limit:?}"
        );
    }

    #[test]
    fn a_quick_program_is_not_waited_for_beyond_its_end() {
        let began = Instant::now();
        let ran = run_within(sh("exit 0"), None, Duration::from_secs(60)).unwrap();
        assert!(ran.status.is_some_and(|s| s.success()));
        assert!(
            began.elapsed() < Duration::from_secs(30),
            "waited for the limit"
        );
    }
}
