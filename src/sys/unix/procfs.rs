//! What a process holds, read from `/proc` (Linux; empty elsewhere): its
//! descriptors, threads, children and resident memory, and the endpoints of
//! its sockets. For leak detection in workers.

use std::fs;

/// Process `pid`'s open descriptors from `first` up, and what each refers
/// to (`readlink` of `/proc/<pid>/fd/N`: a path, `socket:[inode]`,
/// `pipe:[inode]`, `anon_inode:[eventfd]`…).
pub(crate) fn descriptors_of(pid: u32, first: i32) -> Vec<(i32, String)> {
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    let mut fds: Vec<(i32, String)> = dir
        .flatten()
        .filter_map(|entry| {
            let fd: i32 = entry.file_name().to_str()?.parse().ok()?;
            let target = fs::read_link(entry.path()).ok()?;
            (fd >= first).then(|| (fd, target.to_string_lossy().into_owned()))
        })
        .collect();
    fds.sort_unstable();
    fds
}

/// The names of process `pid`'s threads.
pub(crate) fn thread_names_of(pid: u32) -> Vec<String> {
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut names: Vec<String> = dir
        .flatten()
        .filter_map(|task| fs::read_to_string(task.path().join("comm")).ok())
        .map(|name| name.trim_end().to_owned())
        .collect();
    names.sort_unstable();
    names
}

/// How many descriptors this process has open (the one reading the
/// directory included).
pub(crate) fn own_descriptor_count() -> u32 {
    descriptor_count("/proc/self").unwrap_or(0)
}

/// How many threads this process has.
pub(crate) fn own_thread_count() -> u32 {
    thread_count("/proc/self").unwrap_or(0)
}

/// How many child processes this process has (all its threads').
pub(crate) fn own_child_count() -> u32 {
    child_count("/proc/self")
}

/// This process's resident memory in bytes.
pub(crate) fn own_rss_bytes() -> u64 {
    rss_bytes("/proc/self").unwrap_or(0)
}

/// What process `pid` holds now: `(descriptors, threads, child processes,
/// resident bytes)`; `None` once it is gone, a zombie included (or its
/// `/proc` is closed to this user).
pub(crate) fn holdings_of(pid: u32) -> Option<(u32, u32, u32, u64)> {
    // A zombie has ended: what its /proc still shows is nothing it holds.
    super::service::process_start_time(pid)?;
    let dir = format!("/proc/{pid}");
    let fds = descriptor_count(&dir)?;
    let threads = thread_count(&dir)?;
    let rss = rss_bytes(&dir)?;
    Some((fds, threads, child_count(&dir), rss))
}

fn descriptor_count(dir: &str) -> Option<u32> {
    fs::read_dir(format!("{dir}/fd"))
        .ok()
        .map(|d| d.count() as u32)
}

fn thread_count(dir: &str) -> Option<u32> {
    fs::read_dir(format!("{dir}/task"))
        .ok()
        .map(|d| d.count() as u32)
}

fn child_count(dir: &str) -> u32 {
    let Ok(tasks) = fs::read_dir(format!("{dir}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|task| fs::read_to_string(task.path().join("children")).ok())
        .map(|list| list.split_whitespace().count() as u32)
        .sum()
}

fn rss_bytes(dir: &str) -> Option<u64> {
    let pages: u64 = fs::read_to_string(format!("{dir}/statm"))
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse().ok())?;
    // SAFETY: sysconf only reads a system setting.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64;
    Some(pages * page)
}

/// This process's peak resident memory in bytes (`VmHWM`).
pub(crate) fn own_peak_rss_bytes() -> u64 {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
            let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kb * 1024)
        })
        .unwrap_or(0)
}

/// Socket `inode` of process `pid`'s network namespace as a reader wants
/// it: `TCP 127.0.0.1:40412 → 127.0.0.1:5432 ESTABLISHED`, `unix /run/x`.
/// The tables may hold tens of thousands of lines (every `TIME_WAIT` of a
/// load run), so a line is split only if it holds the inode's digits.
pub(crate) fn socket_endpoint(pid: u32, inode: u64) -> Option<String> {
    let digits = inode.to_string();
    let lines = |file: &str| {
        let table = fs::read_to_string(format!("/proc/{pid}/net/{file}")).unwrap_or_default();
        let digits = digits.as_str();
        table
            .lines()
            .skip(1)
            .filter(|line| line.contains(digits))
            .map(|line| {
                line.split_whitespace()
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .collect::<Vec<_>>()
    };
    for (file, kind) in [
        ("tcp", "TCP"),
        ("tcp6", "TCP"),
        ("udp", "UDP"),
        ("udp6", "UDP"),
    ] {
        for cols in lines(file) {
            if cols.get(9).map(String::as_str) != Some(digits.as_str()) {
                continue;
            }
            let (Some(local), Some(remote), Some(state)) = (cols.get(1), cols.get(2), cols.get(3))
            else {
                continue;
            };
            let state = if kind == "TCP" { tcp_state(state) } else { "" };
            let text = format!("{kind} {} → {} {state}", address(local), address(remote));
            return Some(text.trim_end().to_owned());
        }
    }
    lines("unix")
        .into_iter()
        .find(|cols| cols.get(6).map(String::as_str) == Some(digits.as_str()))
        .map(|cols| format!("unix {}", cols.get(7).map_or("(unnamed)", String::as_str)))
}

/// A `/proc/<pid>/stat` line from its third field (the state) on. The
/// command name before it may hold spaces and parentheses: it is cut at
/// the last `)`.
pub(crate) fn after_command(stat: &str) -> Option<&str> {
    stat.rsplit_once(") ").map(|(_, rest)| rest)
}

/// The parent of process `pid`, from `/proc/<pid>/stat`; `None` when it
/// cannot be read (gone, or hidden by `hidepid`).
pub(crate) fn parent_pid(pid: u32) -> Option<u32> {
    // From the state on: state, ppid.
    stat_number(pid, 1)
}

/// Field `index` of `/proc/<pid>/stat` counted from the state (0: the
/// state, 1: the parent, 2: the process group), as a number.
fn stat_number(pid: u32, index: usize) -> Option<u32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    after_command(&stat)?
        .split_whitespace()
        .nth(index)?
        .parse()
        .ok()
}

/// Whether every thread of process `pid` is asleep (waiting on a lock, a
/// socket, a timer), none running or ready to run: a process that lacks
/// only CPU is not blocked. `false` when it cannot be read.
pub(crate) fn threads_asleep(pid: u32) -> bool {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    let mut any = false;
    for task in tasks.flatten() {
        let Ok(stat) = fs::read_to_string(task.path().join("stat")) else {
            return false;
        };
        let state = after_command(&stat).and_then(|rest| rest.chars().next());
        if !matches!(state, Some('S' | 'D')) {
            return false;
        }
        any = true;
    }
    any
}

/// The CPU time every thread of process `pid` has used, user and system
/// (`/proc/<pid>/stat`), to a clock tick; `None` when it cannot be read.
pub(crate) fn cpu_time_ns(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let per_tick = 1_000_000_000 / super::clock_ticks_per_second()?;
    cpu_ticks(&stat)?.checked_mul(per_tick)
}

/// `utime + stime` of a `/proc/<pid>/stat` line, in clock ticks.
fn cpu_ticks(stat: &str) -> Option<u64> {
    // From the state (the third field) on, utime and stime are the 12th
    // and 13th.
    let mut fields = after_command(stat)?.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    user.checked_add(system)
}

/// Whether a process of process group `pgid` holds a socket listening on
/// TCP `address`, or on its port at every address (`0.0.0.0`, `::`): the
/// one that answers there is the group's, not another user's who took the
/// address first (perhaps while the server bound another one).
pub(crate) fn group_listens_on(pgid: u32, address: std::net::SocketAddr) -> bool {
    let port = format!(":{:04X}", address.port());
    let mut local = vec![
        format!("00000000{port}"),
        format!("{}{port}", "0".repeat(32)),
    ];
    match address.ip() {
        std::net::IpAddr::V4(ip) => {
            let [a, b, c, d] = ip.octets();
            let hex = format!("{d:02X}{c:02X}{b:02X}{a:02X}");
            local.push(format!("{hex}{port}"));
            local.push(format!("0000000000000000FFFF0000{hex}{port}"));
        }
        // An IPv6 address as /proc writes it (32-bit words in host order)
        // is not matched exactly: its port is.
        std::net::IpAddr::V6(_) => local.clear(),
    }
    let listening: Vec<String> = tcp_listeners()
        .into_iter()
        .filter(|l| {
            if local.is_empty() {
                l.local.ends_with(&port)
            } else {
                local.iter().any(|a| a.eq_ignore_ascii_case(&l.local))
            }
        })
        .map(|l| format!("socket:[{}]", l.inode))
        .collect();
    if listening.is_empty() {
        return false;
    }
    let in_group = |pid: u32| stat_number(pid, 2) == Some(pgid);
    super::all_pids()
        .into_iter()
        .filter(|&pid| in_group(pid))
        .any(|pid| {
            descriptors_of(pid, 0)
                .iter()
                .any(|(_, target)| listening.contains(target))
        })
}

/// The users owning the sockets that listen on TCP `port` at a loopback
/// or every address (`/proc/net/tcp` and `tcp6`, column 7).
pub(crate) fn tcp_listener_uids(port: u16) -> Vec<u32> {
    let port = format!(":{port:04X}");
    let local = [
        "00000000".to_owned(),
        "0100007F".to_owned(),
        "0".repeat(32),
        // ::1 and ::ffff:127.0.0.1, as /proc writes them.
        "00000000000000000000000001000000".to_owned(),
        "0000000000000000FFFF00000100007F".to_owned(),
    ];
    tcp_listeners()
        .into_iter()
        .filter(|l| {
            l.local
                .strip_suffix(port.as_str())
                .is_some_and(|address| local.iter().any(|a| a.eq_ignore_ascii_case(address)))
        })
        .filter_map(|l| l.uid)
        .collect()
}

/// A listening TCP socket, as `/proc/net/tcp` and `tcp6` list it.
struct Listener {
    /// Its local address and port, in hex as `/proc` writes them.
    local: String,
    /// Its owner.
    uid: Option<u32>,
    /// Its inode, as `/proc/<pid>/fd` names it (`socket:[<inode>]`).
    inode: String,
}

/// Every listening TCP socket of this network namespace.
fn tcp_listeners() -> Vec<Listener> {
    let mut listeners = Vec::new();
    for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let table = fs::read_to_string(file).unwrap_or_default();
        for line in table.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            // Column 1 is the local address, 3 the state (0A: LISTEN), 7
            // the owner, 9 the socket's inode.
            if let (Some(local), Some(&"0A"), Some(inode)) = (cols.get(1), cols.get(3), cols.get(9))
            {
                listeners.push(Listener {
                    local: (*local).to_owned(),
                    uid: cols.get(7).and_then(|uid| uid.parse().ok()),
                    inode: (*inode).to_owned(),
                });
            }
        }
    }
    listeners
}

/// `0100007F:9C5C` → `127.0.0.1:40028`; IPv6 addresses are shown as hex.
fn address(hex: &str) -> String {
    let Some((ip, port)) = hex.split_once(':') else {
        return hex.to_owned();
    };
    let port = u16::from_str_radix(port, 16).unwrap_or(0);
    match u32::from_str_radix(ip, 16) {
        Ok(v) if ip.len() == 8 => {
            let b = v.to_le_bytes();
            format!("{}.{}.{}.{}:{port}", b[0], b[1], b[2], b[3])
        }
        _ => format!("[{ip}]:{port}"),
    }
}

fn tcp_state(hex: &str) -> &'static str {
    match hex {
        "01" => "ESTABLISHED",
        "02" => "SYN_SENT",
        "03" => "SYN_RECV",
        "04" => "FIN_WAIT1",
        "05" => "FIN_WAIT2",
        "06" => "TIME_WAIT",
        "07" => "CLOSE",
        "08" => "CLOSE_WAIT",
        "09" => "LAST_ACK",
        "0A" => "LISTEN",
        "0B" => "CLOSING",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_is_user_plus_system_after_a_command_with_spaces_and_parentheses() {
        let stat = "4242 (a (b) c) R 1 4242 4242 0 -1 4194560 101 0 0 0 37 5 0 0 20 0 1 0 9";
        assert_eq!(cpu_ticks(stat), Some(42));
        assert_eq!(cpu_ticks("4242 (cut) R 1 2 3"), None, "too few fields");
        // This process's own time grows, a tick at a time, as it works.
        let own = || cpu_time_ns(std::process::id()).expect("its own stat");
        let (before, until) = (
            own(),
            std::time::Instant::now() + std::time::Duration::from_secs(10),
        );
        while own() == before && std::time::Instant::now() < until {
            std::hint::spin_loop();
        }
        let tick = 1_000_000_000 / super::super::clock_ticks_per_second().unwrap();
        assert!(
            own() >= before + tick,
            "{before} ns, then still {} ns after 10 s of work",
            own()
        );
    }

    #[test]
    fn addresses_and_states_read_like_netstat() {
        assert_eq!(address("0100007F:9C5C"), "127.0.0.1:40028");
        assert_eq!(tcp_state("01"), "ESTABLISHED");
    }

    #[test]
    fn a_listening_socket_of_this_process_is_named_by_its_inode() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let fds = descriptors_of(std::process::id(), 0);
        let named: Vec<String> = fds
            .iter()
            .filter_map(|(_, target)| {
                let inode = target.strip_prefix("socket:[")?.strip_suffix(']')?;
                socket_endpoint(std::process::id(), inode.parse().ok()?)
            })
            .collect();
        assert!(
            named
                .iter()
                .any(|e| e.contains(&format!("127.0.0.1:{port}")) && e.contains("LISTEN")),
            "{named:?}"
        );
    }
}
