//! `stampede-services`: servers that outlive one test run, for a shell or
//! a CI job, reused by every `stampede::services::Postgres` and
//! `stampede::services::Redis`. A project's own servers join them in a
//! binary of the project's own (see `stampede::services::Services`).
//!
//! ```text
//! eval "$(stampede-services up)"          # starts them all, exports STAMPEDE_POSTGRES_URL, STAMPEDE_REDIS_URL
//! eval "$(stampede-services up redis)"    # only the ones named
//! stampede-services status                # what runs, and the URLs
//! eval "$(stampede-services down)"        # stops them, removes their files, unsets the variables
//! ```

fn main() -> std::process::ExitCode {
    stampede::services::Services::new().main()
}
