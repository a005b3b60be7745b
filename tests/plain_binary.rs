//! A binary without libtest (`harness = false`): children enter through
//! `stampede::init()`, the first line of `main`, as in any plain binary.

#[stampede::function]
fn square(x: u64) -> u64 {
    x * x
}

#[stampede::function]
fn door() -> Vec<String> {
    std::env::args().skip(1).collect()
}

/// Answers the listing protocol of libtest that `cargo nextest` speaks
/// (`--list --format terse`, with `--ignored` for ignored tests): this
/// binary has one test, `plain_binary`, not ignored.
fn list_requested() -> bool {
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|a| a == "--list") {
        return false;
    }
    if !args.iter().any(|a| a == "--ignored") {
        println!("plain_binary: test");
    }
    true
}

fn main() {
    stampede::init();
    if list_requested() {
        return;
    }
    let squares = stampede::call_concurrently(3, square, 7)
        .expect("call")
        .unwrap_all();
    assert_eq!(squares, [49, 49, 49]);
    let args = stampede::call_concurrently(1, door, ())
        .expect("call")
        .unwrap_all();
    assert_eq!(
        args,
        [Vec::<String>::new()],
        "a plain binary's child gets no libtest arguments"
    );
    println!("plain_binary: 2 passed, 0 failed");
}
