use serde::{Deserialize, Serialize};

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Point {
    x: i32,
    y: i32,
}

#[stampede::function]
fn nothing() {}

// A raw identifier: the registration's own names are built from it.
#[stampede::function]
fn r#match(x: Option<u8>) -> Option<u8> {
    x
}

#[stampede::function]
fn square(x: u64) -> u64 {
    x * x
}

#[stampede::function]
fn point(x: i32, y: i32, _label: String) -> Point {
    Point { x, y }
}

#[stampede::function]
#[expect(
    clippy::too_many_arguments,
    reason = "eight is the most #[stampede::function] takes"
)]
fn eight(a: u8, b: u16, c: u32, d: u64, e: i8, f: bool, g: char, h: String) -> Vec<String> {
    vec![
        a.to_string(),
        b.to_string(),
        c.to_string(),
        d.to_string(),
        e.to_string(),
        f.to_string(),
        g.to_string(),
        h,
    ]
}

fn main() {
    stampede::init();
    stampede::call_concurrently(2, nothing, ())
        .unwrap()
        .unwrap_all();
    assert_eq!(
        stampede::call_concurrently(2, square, 7)
            .unwrap()
            .unwrap_all(),
        [49, 49]
    );
    assert_eq!(
        stampede::call_concurrently(1, r#match, Some(3))
            .unwrap()
            .unwrap_all(),
        [Some(3)]
    );
    let points = stampede::call_concurrently(1, point, (1, -2, "p".to_owned()))
        .unwrap()
        .unwrap_all();
    assert_eq!(points, [Point { x: 1, y: -2 }]);
    let strings =
        stampede::call_concurrently(1, eight, (1, 2, 3, 4, -5, true, 'g', "h".to_owned()))
            .unwrap()
            .unwrap_all();
    assert_eq!(strings, [["1", "2", "3", "4", "-5", "true", "g", "h"]]);
}
