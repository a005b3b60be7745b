#[stampede::function]
fn sum(first: u32, _: ...) -> u32 {
    first
}

fn main() {}
