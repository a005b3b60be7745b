//! The baseline spawn ratios are taken against. Shared by the benches
//! through `#[path]`.

use std::process::{Child, Command};

/// Spawns `n` copies of this binary with `exit_var` set (their `main`
/// returns right after `stampede::init()`), one after the other, then
/// waits for all of them, as stampede does.
pub fn bare_spawn(n: usize, exit_var: &str) {
    let children: Vec<Child> = (0..n)
        .map(|_| {
            Command::new("/proc/self/exe")
                .env(exit_var, "1")
                .spawn()
                .expect("spawning a bare child")
        })
        .collect();
    for mut child in children {
        let status = child.wait().expect("waiting for a bare child");
        assert!(status.success(), "a bare child failed: {status}");
    }
}
