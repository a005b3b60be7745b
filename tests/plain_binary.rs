//! A binary without libtest (`harness = false`): children enter through
//! `stampede::init()`, the first line of `main`, as in any plain binary.
//! One call's children print before `init()` on purpose, to check that
//! stampede keeps that output and says what it means.

/// Set on the children of one call only: they print before `init()`.
const PRINT_BEFORE_INIT: &str = "PLAIN_BINARY_PRINT_BEFORE_INIT";
/// Set on one load's workers only: they die before `init()`, saying why.
const DIE_BEFORE_INIT: &str = "PLAIN_BINARY_DIE_BEFORE_INIT";

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
    // The mistake under test: code before `init()` runs again in every child.
    if std::env::var_os(PRINT_BEFORE_INIT).is_some() {
        println!("configuring logging");
    }
    if std::env::var_os(DIE_BEFORE_INIT).is_some() {
        eprintln!("no configuration file at /etc/plain_binary.toml");
        std::process::exit(3);
    }
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
    for outcome in &stampede::call_concurrently(1, square, 2).expect("call") {
        assert_eq!(outcome.notes(), [] as [String; 0]);
    }
    let early = stampede::Options::new()
        .env(PRINT_BEFORE_INIT, "1")
        .call_concurrently(2, square, 2)
        .expect("call");
    for outcome in &early {
        assert_eq!(outcome.stdout().to_string_lossy(), "configuring logging\n");
        assert!(
            outcome.notes().iter().any(|n| n.contains(
                "this child printed before `stampede::init()` ran: code before `init()` in \
                 `main` runs again in every child; make `init()` the first line"
            )),
            "{outcome}"
        );
    }
    // Workers: the same early output, counted with each worker's first call
    // and told of once in the report.
    let load = stampede::Load::new(4)
        .workers(2)
        .env(PRINT_BEFORE_INIT, "1")
        .run(square, 3)
        .expect("load");
    load.assert_all_returned();
    assert_eq!(load.notes().len(), 1, "{load}");
    assert!(
        load.notes()[0].contains("printed before `stampede::init()` ran"),
        "{load}"
    );
    assert!(load.to_string().contains("note: worker"), "{load}");
    assert!(
        stampede::Load::new(4)
            .run(square, 3)
            .expect("load")
            .notes()
            .is_empty(),
        "no note without early output"
    );
    // Workers that die before their first call: the run gives up with
    // their reason and their output.
    let died = stampede::Load::new(4)
        .env(DIE_BEFORE_INIT, "1")
        .run(square, 3)
        .expect_err("workers die before their first call");
    let message = died.to_string();
    assert!(
        matches!(died, stampede::Error::WorkerStart { .. }),
        "{message}"
    );
    assert!(message.contains("exit code 3"), "{message}");
    assert!(
        message.contains("no configuration file at /etc/plain_binary.toml"),
        "{message}"
    );
    println!("plain_binary: 5 passed, 0 failed");
}
