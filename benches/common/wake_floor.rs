//! The floor a start spread is taken against: how spread out `n` plain
//! processes wake when one event wakes them all, on this machine, now.
//! Used by the overhead bench through `#[path]`.

use std::process::{Child, Command};

/// The floor of a start spread on this machine: `n` copies of this binary
/// with `wake_var` set (their `main` calls [`wake_child`]) block reading one
/// shared socket; closing its other end wakes them all at once, and each
/// prints when it woke. Returns the latest minus the earliest. No exit
/// competes for the CPUs meanwhile: the children linger after printing.
pub fn measure(n: usize, wake_var: &str) -> std::time::Duration {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    // A socket pair stands for the pipe: the same wake at the peer's close.
    let (read, write) = std::os::unix::net::UnixStream::pair().expect("a socket pair");
    let mut children: Vec<(Child, BufReader<std::process::ChildStdout>)> = (0..n)
        .map(|_| {
            let mut child = Command::new("/proc/self/exe")
                .env(wake_var, "1")
                .stdin(std::os::fd::OwnedFd::from(
                    read.try_clone().expect("a copy"),
                ))
                .stdout(Stdio::piped())
                .spawn()
                .expect("spawning a bare child");
            let out = BufReader::new(child.stdout.take().expect("its stdout"));
            (child, out)
        })
        .collect();
    drop(read);
    let mut line = String::new();
    for (_, out) in &mut children {
        line.clear();
        out.read_line(&mut line).expect("the child's ready line");
    }
    // From "ready" to blocking in read() is a few microseconds.
    std::thread::sleep(std::time::Duration::from_millis(2));
    drop(write);
    let mut woke = Vec::with_capacity(n);
    for (mut child, mut out) in children {
        line.clear();
        out.read_line(&mut line).expect("the child's wake line");
        woke.push(line.trim().parse::<u64>().expect("a time in ns"));
        assert!(child.wait().expect("waiting for a bare child").success());
    }
    std::time::Duration::from_nanos(woke.iter().max().unwrap() - woke.iter().min().unwrap())
}

/// A [`measure`] child: says it is ready, blocks until its stdin closes,
/// prints when it woke (on `now_ns`' clock), and lingers so that its exit
/// does not compete with its siblings' wakes.
pub fn wake_child(now_ns: fn() -> u64) {
    use std::io::{Read, Write};
    let mut stdout = std::io::stdout();
    let _ = writeln!(stdout, "ready");
    let _ = stdout.flush();
    let _ = std::io::stdin().read(&mut [0u8; 1]);
    let woke = now_ns();
    let _ = writeln!(stdout, "{woke}");
    let _ = stdout.flush();
    std::thread::sleep(std::time::Duration::from_millis(20));
}
