#[stampede::flaky(max_runs = 0, min_passes = 0)]
#[test]
fn sometimes_slow() {}

fn main() {}
