//! The `stampede-services` command for every service a project uses: the
//! built-in PostgreSQL and Redis, and the project's own servers, declared
//! once in a small binary of the project.

use std::process::ExitCode;

use super::Server;
use super::cli::{self, Entry, Said};

/// The services a `stampede-services` command starts, stops and shows:
/// PostgreSQL and Redis, and any of the project's own [`Server`]s, each
/// under a name and exported as `STAMPEDE_<NAME>_URL`.
///
/// A project declares its own in a binary of its own, whose `main` is the
/// command:
///
/// ```no_run
/// // src/bin/services.rs
/// use stampede::services::{Server, Services};
///
/// fn main() -> std::process::ExitCode {
///     Services::new()
///         .server(
///             "api",
///             Server::new("target/debug/api").args(["--port", "{port}"]).free_port(),
///         )
///         .main()
/// }
/// ```
///
/// ```text
/// eval "$(cargo run --bin services -- up)"   # postgres, redis and api; one export each
/// cargo run --bin services -- status
/// eval "$(cargo run --bin services -- down)"
/// ```
///
/// Tests then reuse `api` through `STAMPEDE_API_URL` (its address,
/// `127.0.0.1:<port>`) with [`Server::start_or_reuse`], and start one of
/// their own when it is not set. A binary needs `stampede-test` in
/// `[dependencies]`, not only `[dev-dependencies]` (or make it an example).
pub struct Services {
    entries: Vec<Entry>,
    problems: Vec<String>,
}

impl Default for Services {
    fn default() -> Self {
        Services::new()
    }
}

impl Services {
    /// The built-in services: `postgres` and `redis`.
    pub fn new() -> Services {
        Services {
            entries: cli::builtins(),
            problems: Vec::new(),
        }
    }

    /// Adds a server of the project's own, named `name` (`[a-z0-9-]`, at
    /// most 20 characters: it names its directory and its variable
    /// `STAMPEDE_<NAME>_URL`, `-` as `_`). Its URL is its first address,
    /// so it needs a port ([`Server::free_port`]). A name that is taken or
    /// not of that form makes the command fail before it starts anything.
    pub fn server(mut self, name: &str, server: Server) -> Services {
        let well_formed = !name.is_empty()
            && name.len() <= 20
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !well_formed {
            self.problems.push(format!(
                "the service name `{name}` is not 1 to 20 of `a-z`, `0-9` and `-`: it names a \
                 directory and the variable {}",
                cli::variable_for(name)
            ));
        } else if name == "anchor" {
            self.problems.push(
                "the service name `anchor` is the command's own (the process whose end stops \
                 every service); choose another"
                    .to_owned(),
            );
        } else if self.entries.iter().any(|e| e.name() == name) {
            self.problems.push(format!(
                "two services are named `{name}`; give each its own name (it names its \
                 directory and its variable {})",
                cli::variable_for(name)
            ));
        } else {
            self.entries.push(Entry::server(name, server));
        }
        self
    }

    /// Runs the command with this process's arguments: `up [NAME…]`,
    /// `status`, `down [NAME…]`. Call it as the first line of `main`: the
    /// services' keepers enter through the same binary.
    pub fn main(self) -> ExitCode {
        crate::init();
        let args: Vec<String> = std::env::args().skip(1).collect();
        let words: Vec<&str> = args.iter().map(String::as_str).collect();
        let said = self.run(&words);
        print!("{}", said.shell);
        eprint!("{}", said.note);
        ExitCode::from(said.code)
    }

    /// The command's work for `words`: what it prints on stdout and stderr,
    /// and its exit code. Used by [`main`](Services::main) and tests, not
    /// public API.
    #[doc(hidden)]
    pub fn run(&self, words: &[&str]) -> Said {
        if !self.problems.is_empty() {
            return Said {
                shell: String::new(),
                note: format!("stampede-services: {}\n", self.problems.join("; ")),
                code: 2,
            };
        }
        let result = match words {
            ["up", names @ ..] => cli::up(&self.entries, names),
            ["status"] => cli::status(&self.entries),
            ["down", names @ ..] => cli::down(&self.entries, names),
            _ => {
                let names: Vec<&str> = self.entries.iter().map(Entry::name).collect();
                return Said {
                    shell: String::new(),
                    note: format!(
                        "usage: stampede-services up [SERVICE…] | status | down [SERVICE…]\n\
                         \n  up [SERVICE…]    start servers that outlive this command (all of: \
                         {}) and\n                   print `export STAMPEDE_<SERVICE>_URL=…` \
                         for each (use with eval)\
                         \n  status           say which run, and their URLs\
                         \n  down [SERVICE…]  stop them, remove their files and print `unset …` \
                         for each\n",
                        names.join(" ")
                    ),
                    code: 2,
                };
            }
        };
        match result {
            Ok(said) => said,
            Err(e) => Said {
                shell: String::new(),
                note: format!("stampede-services: {e}\n"),
                code: 1,
            },
        }
    }
}
