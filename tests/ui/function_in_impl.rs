struct Queue;

impl Queue {
    #[stampede::function]
    fn drain(limit: u32) -> u32 {
        limit
    }
}

fn main() {}
