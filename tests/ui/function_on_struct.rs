#[stampede::function]
struct Ticket {
    id: u32,
}

fn main() {}
