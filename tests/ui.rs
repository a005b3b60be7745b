use std::io::Write;

stampede::entry!();

/// Each misuse of `#[stampede::function]` and `#[stampede::flaky]` fails to
/// compile with the message in its `.stderr`; the pass cases compile (and the
/// `function` one runs its functions in children).
///
/// Compiling every case takes most of the suite's time, so it runs only with
/// `STAMPEDE_UI_TESTS=1`, as `.ci/run` sets.
#[test]
fn ui() {
    if std::env::var_os("STAMPEDE_UI_TESTS").is_none_or(|v| v != "1") {
        // Written to stderr itself, past libtest's capture of `eprintln!`, so
        // the line shows in a passing run.
        let _ = writeln!(
            std::io::stderr(),
            "tests/ui.rs: skipped the compile-error (trybuild) tests; run them with \
             `STAMPEDE_UI_TESTS=1 cargo test --test ui`"
        );
        return;
    }
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
    cases.pass("tests/ui/pass/*.rs");
}
