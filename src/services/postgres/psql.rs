//! Statements through `psql`, which ships with the server programs: the
//! library needs no PostgreSQL client crate.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use super::url;
use crate::services::limited;
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

/// How long one `psql` of statements may take (a database made from a
/// template, a sweep): a server that took the connection and never
/// answers is named, not waited for forever.
const STATEMENTS_LIMIT: Duration = Duration::from_secs(60);

/// How long a template's script may take: the project's own SQL.
const SCRIPT_LIMIT: Duration = Duration::from_secs(300);

/// Runs `statements` with `psql`; its error output when it fails.
pub(super) fn psql(
    psql: &Psql,
    url: &str,
    statements: &[String],
) -> std::result::Result<String, String> {
    let mut command = psql_command(psql, url);
    command.args(["-A", "-t"]);
    for statement in statements {
        command.arg("-c").arg(statement);
    }
    run(psql, command, None, STATEMENTS_LIMIT)
}

/// Runs `script` with `psql -f -`, stopping at the first error; that
/// error's output when it fails.
pub(super) fn psql_script(psql: &Psql, url: &str, script: &str) -> std::result::Result<(), String> {
    let mut command = psql_command(psql, url);
    command.args(["-f", "-"]);
    run(
        psql,
        command,
        Some(script.as_bytes().to_vec()),
        SCRIPT_LIMIT,
    )
    .map(drop)
}

/// `command` run within `limit`: its output, or its error output.
fn run(
    psql: &Psql,
    command: Command,
    input: Option<Vec<u8>>,
    limit: Duration,
) -> std::result::Result<String, String> {
    let ran = limited::run_within(command, input, limit)
        .map_err(|e| format!("could not run {}: {e}", psql.display()))?;
    match ran.status {
        Some(status) if status.success() => Ok(String::from_utf8_lossy(&ran.stdout).into_owned()),
        Some(_) => Err(String::from_utf8_lossy(&ran.stderr).trim().to_owned()),
        None => Err(format!(
            "{} had no answer within {limit:?} and was killed (a server that takes the \
             connection and never answers?)",
            psql.display()
        )),
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

    #[test]
    fn a_psql_with_no_answer_is_killed_at_its_limit_and_says_so() {
        let psql = Psql {
            path: "sh".into(),
            own: false,
        };
        let mut command = Command::new("sh");
        command.args(["-c", "sleep 30"]);
        let err = run(&psql, command, None, Duration::from_millis(300)).unwrap_err();
        assert_eq!(
            err,
            "sh had no answer within 300ms and was killed (a server that takes the connection \
             and never answers?)"
        );
        let mut command = Command::new("sh");
        command.args(["-c", "echo 'ERROR: no' >&2; exit 3"]);
        assert_eq!(
            run(&psql, command, None, Duration::from_secs(30)),
            Err("ERROR: no".into())
        );
        assert_eq!(STATEMENTS_LIMIT, Duration::from_secs(60));
        assert_eq!(SCRIPT_LIMIT, Duration::from_secs(300));
    }
}
