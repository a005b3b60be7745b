#[stampede::flaky(3)]
#[test]
fn sometimes_slow() {}

fn main() {}
