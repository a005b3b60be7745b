#[stampede::flaky]
#[test]
#[should_panic]
fn sometimes_slow() {
    panic!("slow");
}

fn main() {}
