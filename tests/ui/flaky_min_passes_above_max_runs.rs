#[stampede::flaky(max_runs = 3, min_passes = 4)]
#[test]
fn sometimes_slow() {}

fn main() {}
