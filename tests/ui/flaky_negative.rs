#[stampede::flaky(max_runs = -1)]
#[test]
fn sometimes_slow() {}

fn main() {}
