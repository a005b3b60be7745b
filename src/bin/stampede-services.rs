//! `stampede-services`: servers that outlive one test run, for a shell or
//! a CI job, reused by every `stampede::services::Postgres` and
//! `stampede::services::Redis`.
//!
//! ```text
//! eval "$(stampede-services up)"          # starts them all, exports STAMPEDE_POSTGRES_URL, STAMPEDE_REDIS_URL
//! eval "$(stampede-services up redis)"    # only the ones named
//! stampede-services status                # what runs, and the URLs
//! eval "$(stampede-services down)"        # stops them, removes their files, unsets the variables
//! ```

use std::process::ExitCode;

use stampede::services::cli;

fn main() -> ExitCode {
    stampede::init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match words.as_slice() {
        ["up", names @ ..] => cli::up(names),
        ["status"] => cli::status(),
        ["down", names @ ..] => cli::down(names),
        _ => {
            let names = cli::names().join(" ");
            eprintln!(
                "usage: stampede-services up [SERVICE…] | status | down [SERVICE…]\n\
                 \n  up [SERVICE…]    start servers that outlive this command (all of: \
                 {names}) and\n                   print `export STAMPEDE_<SERVICE>_URL=…` for \
                 each (use with eval)\
                 \n  status           say which run, and their URLs\
                 \n  down [SERVICE…]  stop them, remove their files and print `unset …` \
                 for each"
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
