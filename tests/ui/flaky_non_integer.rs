#[stampede::flaky(max_runs = "3", min_passes = 1.5)]
#[test]
fn sometimes_slow() {}

fn main() {}
