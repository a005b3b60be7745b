#[stampede::flaky]
#[test]
fn sometimes_slow(port: u16) {
    let _ = port;
}

fn main() {}
