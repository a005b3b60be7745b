#[derive(Debug)]
struct Timeout;

#[stampede::flaky(max_runs = 5, min_passes = 2)]
#[test]
fn returns_unit() {}

#[stampede::flaky(min_passes = 1, max_runs = 3)]
#[test]
#[ignore = "shows that other test attributes stay"]
fn returns_a_result() -> Result<(), Timeout> {
    Ok(())
}

#[stampede::flaky]
#[test]
fn with_defaults() {}

fn main() {}
