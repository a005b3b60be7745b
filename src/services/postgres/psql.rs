//! Statements through `psql`, which ships with the server programs: the
//! library needs no PostgreSQL client crate.

use std::path::Path;
use std::process::{Command, Stdio};

use super::url;

/// `psql` connecting to `url`, stopping at the first error. A password in
/// the URL goes in the environment, which only this user can read, not on
/// the command line, which every local user can.
fn psql_command(psql: &Path, url: &str) -> Command {
    let (url, password) = url::split_password(url);
    let mut command = Command::new(psql);
    command
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", &url])
        .env("PGCONNECT_TIMEOUT", "5");
    if let Some(password) = password {
        command.env("PGPASSWORD", password);
    }
    command
}

/// Runs `statements` with `psql`; its error output when it fails.
pub(super) fn psql(
    psql: &Path,
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
pub(super) fn psql_script(psql: &Path, url: &str, script: &str) -> std::result::Result<(), String> {
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
