#[stampede::flaky]
fn sometimes_slow() {}

fn main() {}
