#[stampede::function]
fn total(numbers: impl IntoIterator<Item = u32>) -> u32 {
    numbers.into_iter().sum()
}

fn main() {}
