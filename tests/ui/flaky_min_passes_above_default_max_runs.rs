#[stampede::flaky(min_passes = 3)]
#[test]
fn sometimes_slow() {}

fn main() {}
