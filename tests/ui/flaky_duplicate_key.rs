#[stampede::flaky(max_runs = 3, max_runs = 4)]
#[test]
fn sometimes_slow() {}

fn main() {}
