#[stampede::flaky]
struct Fixture {
    port: u16,
}

fn main() {}
