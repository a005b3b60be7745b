#[stampede::function]
fn numbers() -> impl Iterator<Item = u32> {
    0..3
}

fn main() {}
