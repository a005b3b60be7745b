//! A heterogeneous batch: different functions, argument and return types,
//! type-checked, results in call order.

stampede::entry!();

#[stampede::function]
fn length(text: String) -> usize {
    text.len()
}

#[stampede::function]
fn pair(a: i64, b: bool) -> (i64, bool) {
    (a, b)
}

#[stampede::function]
fn index_in_batch() -> String {
    std::env::var("STAMPEDE_CHILD").unwrap()
}

#[test]
fn different_functions_run_together_and_come_back_typed() {
    let mut batch = stampede::Batch::new();
    let lengths = batch.add(length, "four".to_string());
    let pairs = batch.add(pair, (-3, true));
    let mut done = batch.run().unwrap();
    assert_eq!(done.len(), 2);
    let lengths: stampede::Outcomes<usize> = done.take(lengths);
    let pairs: stampede::Outcomes<(i64, bool)> = done.take(pairs);
    assert_eq!(lengths.unwrap_all(), [4]);
    assert_eq!(pairs.unwrap_all(), [(-3, true)]);
}

#[test]
fn a_repeated_list_runs_in_call_order() {
    let mut batch = stampede::Batch::new();
    let first = batch.add(index_in_batch, ());
    let second = batch.add(length, "xy".to_string());
    let third = batch.add(index_in_batch, ());
    batch.repeat(3);
    assert_eq!(batch.len(), 9);
    let mut done = stampede::Options::new().run(&batch).unwrap();
    let index_of = |var: &String| var.rsplit(':').next().unwrap().parse::<usize>().unwrap();
    let firsts: Vec<usize> = done.take(first).unwrap_all().iter().map(index_of).collect();
    let thirds: Vec<usize> = done.take(third).unwrap_all().iter().map(index_of).collect();
    assert_eq!(firsts, [0, 3, 6], "a, b, c, a, b, c, a, b, c");
    assert_eq!(thirds, [2, 5, 8]);
    let seconds = done.take(second);
    assert_eq!(
        seconds.iter().map(|o| o.index()).collect::<Vec<_>>(),
        [1, 4, 7]
    );
    assert_eq!(seconds.unwrap_all(), [2, 2, 2]);
}

#[test]
fn an_unregistered_call_fails_the_batch_before_spawning() {
    let mut batch = stampede::Batch::new();
    batch.add(length, "ok".to_string());
    batch.add(|x: u8| x, 1);
    let err = batch.run().unwrap_err();
    assert!(
        matches!(err, stampede::Error::NotRegistered { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("closure"), "{err}");
}

#[test]
fn a_handle_from_another_batch_is_refused() {
    let mut one = stampede::Batch::new();
    let handle = one.add(length, "a".to_string());
    let mut other = stampede::Batch::new();
    other.add(length, "b".to_string());
    let mut done = other.run().unwrap();
    let refused =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| done.take(handle))).unwrap_err();
    assert_eq!(refused.downcast_ref::<&str>(), None);
    let message = refused
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert!(message.contains("another stampede::Batch"), "{message}");
}
