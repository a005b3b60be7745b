#[stampede::flaky(max_runs = 3, retries = 2)]
#[test]
fn sometimes_slow() {}

fn main() {}
