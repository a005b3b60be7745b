#[stampede::function]
fn greeting() -> &'static str {
    "hello"
}

fn main() {}
