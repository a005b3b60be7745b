stampede::entry!();

#[stampede::function]
fn add(a: u32, b: u32) -> u32 {
    println!("adding {a} and {b}");
    a + b
}

#[stampede::function]
fn boom() {
    panic!("boom here");
}

#[test]
fn smoke() {
    let out = stampede::call_concurrently(4, add, (2, 3)).unwrap();
    for o in &out { eprintln!("{o}"); eprintln!("{:?}", o.timings()); }
    eprintln!("spread {:?}", out.start_spread());
    assert_eq!(out.unwrap_all(), [5, 5, 5, 5]);
    let out = stampede::call_concurrently(2, boom, ()).unwrap();
    eprintln!("{out}");
    let c = |x: u32| x;
    eprintln!("{}", stampede::call_concurrently(2, c, 1).unwrap_err());
}
