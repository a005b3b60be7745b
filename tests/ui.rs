stampede::entry!();

/// Each misuse of `#[stampede::function]` and `#[stampede::flaky]` fails to
/// compile with the message in its `.stderr`; the pass cases compile (and the
/// `function` one runs its functions in children).
#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
    cases.pass("tests/ui/pass/*.rs");
}
