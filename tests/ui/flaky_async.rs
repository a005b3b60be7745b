#[stampede::flaky]
#[test]
async fn sometimes_slow() {}

fn main() {}
