//! Keeping a scheduled run on one CPU: the parent's thread and each child
//! it lets go. Between two steps one child runs, so one CPU is enough, and a
//! wakeup on the CPU the waker is on costs a context switch where waking an
//! idle one (another vCPU of a VM) costs far more.

/// The calling thread kept on the CPU it ran on when made; its former set
/// of CPUs is put back on drop, which must happen on the same thread.
pub(crate) struct OneCpu {
    #[cfg(target_os = "linux")]
    cpu: usize,
    #[cfg(target_os = "linux")]
    before: libc::cpu_set_t,
}

#[cfg(target_os = "linux")]
impl OneCpu {
    /// Keeps the calling thread on the CPU it runs on now; `None` where
    /// that cannot be read or set (the thread then stays as it was).
    pub(crate) fn here() -> Option<OneCpu> {
        // SAFETY: sched_getcpu takes no arguments.
        let cpu = usize::try_from(unsafe { libc::sched_getcpu() }).ok()?;
        if cpu >= libc::CPU_SETSIZE as usize {
            return None;
        }
        // SAFETY: a zeroed cpu_set_t is an empty set; the kernel fills it.
        let mut before: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: `before` is a valid cpu_set_t of the size passed.
        let read = unsafe {
            libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut before)
        };
        if read != 0 {
            return None;
        }
        let one = OneCpu { cpu, before };
        set(0, &one.set()).then_some(one)
    }

    /// Keeps process `pid` (each of its threads, and the threads and
    /// processes they start from now on) on the same CPU; as it was where
    /// that fails.
    pub(crate) fn add(&self, pid: u32) {
        each_thread(pid, &self.set());
    }

    /// Lets process `pid` run anywhere the calling thread could before:
    /// for its exit, which then competes with the next child nowhere.
    pub(crate) fn release(&self, pid: u32) {
        each_thread(pid, &self.before);
    }

    fn set(&self) -> libc::cpu_set_t {
        // SAFETY: a zeroed cpu_set_t is an empty set.
        let mut one: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: `cpu` is below CPU_SETSIZE (checked in `here`).
        unsafe { libc::CPU_SET(self.cpu, &mut one) };
        one
    }
}

#[cfg(target_os = "linux")]
impl Drop for OneCpu {
    fn drop(&mut self) {
        set(0, &self.before);
    }
}

/// Sets every thread of process `pid` to `cpus` (the function of a test
/// binary's child runs on a thread of the test harness, not on its main
/// one); its main thread alone where `/proc` cannot be read.
#[cfg(target_os = "linux")]
fn each_thread(pid: u32, cpus: &libc::cpu_set_t) {
    let tids: Vec<libc::pid_t> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|tasks| {
            tasks
                .flatten()
                .filter_map(|t| t.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    if tids.is_empty() {
        if let Ok(pid) = libc::pid_t::try_from(pid) {
            set(pid, cpus);
        }
    }
    for tid in tids {
        set(tid, cpus);
    }
}

/// `sched_setaffinity(pid, set)`; whether it took.
#[cfg(target_os = "linux")]
fn set(pid: libc::pid_t, set: &libc::cpu_set_t) -> bool {
    // SAFETY: `set` is a valid cpu_set_t of the size passed.
    unsafe { libc::sched_setaffinity(pid, std::mem::size_of::<libc::cpu_set_t>(), set) == 0 }
}

#[cfg(not(target_os = "linux"))]
impl OneCpu {
    /// Not kept anywhere on this system.
    pub(crate) fn here() -> Option<OneCpu> {
        None
    }

    pub(crate) fn add(&self, _pid: u32) {}

    pub(crate) fn release(&self, _pid: u32) {}
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    fn allowed(pid: libc::pid_t) -> Vec<usize> {
        // SAFETY: as above.
        let mut now: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: `now` is a valid cpu_set_t of the size passed.
        assert_eq!(
            unsafe {
                libc::sched_getaffinity(pid, std::mem::size_of::<libc::cpu_set_t>(), &mut now)
            },
            0
        );
        // SAFETY: every index is below CPU_SETSIZE.
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| unsafe { libc::CPU_ISSET(c, &now) })
            .collect()
    }

    #[test]
    fn a_thread_is_kept_on_one_cpu_with_a_child_and_its_set_comes_back() {
        std::thread::spawn(|| {
            let before = allowed(0);
            let one = OneCpu::here().expect("this thread's CPU");
            assert_eq!(allowed(0), [one.cpu]);
            let mut child = std::process::Command::new("sleep")
                .arg("5")
                .spawn()
                .unwrap();
            let pid = child.id() as libc::pid_t;
            one.add(child.id());
            assert_eq!(allowed(pid), [one.cpu]);
            one.release(child.id());
            assert_eq!(allowed(pid), before);
            // Every thread of a process: this one's, seen by thread id.
            let (tid_tx, tid_rx) = std::sync::mpsc::channel();
            let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
            let other = std::thread::spawn(move || {
                // SAFETY: gettid takes no arguments.
                tid_tx.send(unsafe { libc::gettid() }).unwrap();
                done_rx.recv().unwrap();
            });
            let tid = tid_rx.recv().unwrap();
            one.add(std::process::id());
            assert_eq!(allowed(tid), [one.cpu]);
            // Every thread of this test process back as it was.
            one.release(std::process::id());
            assert_eq!(allowed(tid), before);
            done_tx.send(()).unwrap();
            other.join().unwrap();
            child.kill().unwrap();
            child.wait().unwrap();
            drop(one);
            assert_eq!(allowed(0), before);
        })
        .join()
        .unwrap();
    }
}
