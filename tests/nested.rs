//! A child may itself call stampede.

stampede::entry!();

#[stampede::function]
fn leaf(x: u32) -> (u32, u32) {
    (x * 10, std::os::unix::process::parent_id())
}

#[stampede::function]
fn branch(x: u32) -> (u32, Vec<u32>) {
    let leaves = stampede::call_concurrently(3, leaf, x)
        .unwrap()
        .unwrap_all();
    let me = std::process::id();
    assert!(
        leaves.iter().all(|(_, parent)| *parent == me),
        "grandchildren are this child's children"
    );
    (me, leaves.into_iter().map(|(value, _)| value).collect())
}

#[test]
fn a_child_can_call_concurrently_itself() {
    let outcomes = stampede::call_concurrently(2, branch, 4).unwrap();
    for (pid, leaves) in outcomes.unwrap_all() {
        assert_ne!(pid, std::process::id());
        assert_eq!(leaves, [40, 40, 40]);
    }
}
