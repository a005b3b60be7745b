struct Counter(u32);

impl Counter {
    #[stampede::function]
    fn get(&self) -> u32 {
        self.0
    }
}

fn main() {}
