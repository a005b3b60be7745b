#[stampede::function]
fn echo<T: Clone>(value: T) -> T {
    value
}

fn main() {}
