//! Statements through `psql`, which ships with the server programs: the
//! library needs no PostgreSQL client crate.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use super::url;
use crate::sys;

/// The `psql` program, and whose server it talks to.
#[derive(Debug, Clone)]
pub(super) struct Psql {
    pub path: PathBuf,
    /// A cluster of stampede's own: its socket is in a directory the
    /// server's user owns, who could answer in the server's place, so
    /// `psql` gets nothing of this process's environment or `~/.pgpass`
    /// to give away (a `PGPASSWORD` of the CI job's). A reused server is
    /// the user's: there `psql` keeps the environment, which may be how
    /// the user reaches it.
    pub own: bool,
}

impl Psql {
    fn display(&self) -> std::path::Display<'_> {
        self.path.display()
    }
}

/// `psql` connecting to `url`, stopping at the first error. A password in
/// the URL goes in the environment, which only this user can read, not on
/// the command line, which every local user can.
fn psql_command(psql: &Psql, url: &str) -> Command {
    let (url, password) = url::split_password(url);
    let mut command = Command::new(&psql.path);
    keep_secrets(&mut command, psql.own);
    command
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", &url])
        .env("PGCONNECT_TIMEOUT", "5");
    if let Some(password) = password {
        command.env("PGPASSWORD", password);
    }
    command
}

/// For a cluster of stampede's own: no variable of this process (a
/// `PGPASSWORD`, a token) and no `~/.pgpass` for the client to hand over.
fn keep_secrets(command: &mut Command, own: bool) {
    if own {
        sys::environment_for_another_user(command);
        command.env("PGPASSFILE", "/dev/null");
    }
}

/// Runs `statements` with `psql`; its error output when it fails.
pub(super) fn psql(
    psql: &Psql,
    url: &str,
    statements: &[String],
) -> std::result::Result<String, String> {
    let mut command = psql_command(psql, url);
    command.args(["-A", "-t"]).stdin(Stdio::null());
    for statement in statements {
        command.arg("-c").arg(statement);
    }
    let output = command
        .output()
        .map_err(|e| format!("could not run {}: {e}", psql.display()))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_owned())
    }
}

/// Runs `script` with `psql -f -`, stopping at the first error; that
/// error's output when it fails.
pub(super) fn psql_script(psql: &Psql, url: &str, script: &str) -> std::result::Result<(), String> {
    let mut child = psql_command(psql, url)
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("could not run {}: {e}", psql.display()))?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let script = script.to_owned();
    // From a thread: psql may fill its error pipe before it has read all.
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        let _ = stdin.write_all(script.as_bytes());
    });
    let output = child
        .wait_with_output()
        .map_err(|e| format!("could not wait for {}: {e}", psql.display()))?;
    let _ = writer.join();
    if output.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_of_an_own_cluster_gets_no_password_of_this_process() {
        let env_of = |own| {
            let mut command = Command::new("env");
            command.env("PGPASSWORD", "the-ci-jobs-secret");
            keep_secrets(&mut command, own);
            String::from_utf8(command.output().unwrap().stdout).unwrap()
        };
        let own = env_of(true);
        assert!(!own.contains("the-ci-jobs-secret"), "{own}");
        assert!(own.contains("PGPASSFILE=/dev/null"), "{own}");
        // A reused server is the user's: its client keeps what reaches it.
        assert!(env_of(false).contains("PGPASSWORD=the-ci-jobs-secret"));
    }
}
