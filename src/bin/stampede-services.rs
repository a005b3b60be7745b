//! `stampede-services`: a PostgreSQL server that outlives one test run, for
//! a shell or a CI job, reused by every `stampede::services::Postgres`.
//!
//! ```text
//! eval "$(stampede-services up postgres)"   # starts it, exports STAMPEDE_POSTGRES_URL
//! stampede-services status                  # what runs, and its URL
//! eval "$(stampede-services down)"         # stops it, removes its files, unsets the variable
//! ```

use std::process::ExitCode;

fn main() -> ExitCode {
    stampede::init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match words.as_slice() {
        ["up", "postgres"] | ["up"] => stampede::services::cli::up(),
        ["status"] => stampede::services::cli::status(),
        ["down"] => stampede::services::cli::down(),
        _ => {
            eprintln!(
                "usage: stampede-services up postgres | status | down\n\
                 \n  up postgres   start a PostgreSQL server that outlives this command and \
                 print\n                `export STAMPEDE_POSTGRES_URL=…` (use with eval)\
                 \n  status        say whether it runs, and its URL\
                 \n  down          stop it, remove its files and print `unset STAMPEDE_POSTGRES_URL`"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(said) => {
            print!("{}", said.shell);
            eprint!("{}", said.note);
            ExitCode::from(said.code)
        }
        Err(e) => {
            eprintln!("stampede-services: {e}");
            ExitCode::FAILURE
        }
    }
}
