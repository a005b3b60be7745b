//! A violation drawn as a page: one lane per child, each operation a bar
//! from its invocation to its return on one time axis, the witness in red,
//! the explanation above. Plain HTML with an inline SVG: it opens in any
//! browser, offline, and survives as a CI artifact.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::clock::Timestamp;
use crate::outcome::{History, Operation};

const LANE: f64 = 34.0;
const BAR: f64 = 22.0;
const LEFT: f64 = 90.0;
const WIDTH: f64 = 1100.0;
const TOP: f64 = 30.0;

/// `s` with `&`, `<`, `>` and `"` escaped for HTML text and attributes.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Width of a character of the labels (11 px monospace), px.
const CHAR: f64 = 6.7;

/// `label` cut to fit `width` px, ending in `…` when cut; empty when not
/// even one character and the ellipsis fit.
fn fitted(label: &str, width: f64) -> String {
    let room = ((width - 4.0) / CHAR).floor().max(0.0) as usize;
    if label.chars().count() <= room {
        label.to_owned()
    } else if room < 2 {
        String::new()
    } else {
        let mut cut: String = label.chars().take(room - 1).collect();
        cut.push('…');
        cut
    }
}

/// The page for `explanation` over `history`, the operations of `witness`
/// marked in red, as `marked` says in the legend.
pub(super) fn html(
    title: &str,
    explanation: &str,
    history: &History,
    witness: &[Operation],
    marked: &str,
) -> String {
    let ops = history.operations();
    let origin = ops.first().map(Operation::invoked).unwrap_or_default();
    let end = ops
        .iter()
        .map(|op| op.returned().unwrap_or(op.invoked()))
        .max()
        .unwrap_or(origin);
    let span_ns = end.duration_since(origin).as_nanos().max(1) as f64;
    let x = |t: Timestamp| {
        LEFT + (WIDTH - LEFT - 10.0) * t.duration_since(origin).as_nanos() as f64 / span_ns
    };
    let mut children: Vec<usize> = ops.iter().map(Operation::child).collect();
    children.sort_unstable();
    children.dedup();
    let lane_of = |child: usize| children.binary_search(&child).unwrap_or(0);
    let height = TOP + LANE * children.len() as f64 + 30.0;

    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="monospace" font-size="11">"#
    );
    for (lane, child) in children.iter().enumerate() {
        let y = TOP + LANE * lane as f64;
        let _ = write!(
            svg,
            r##"<text x="4" y="{:.1}">child {child}</text><line x1="{LEFT}" x2="{WIDTH}" y1="{:.1}" y2="{:.1}" stroke="#ddd"/>"##,
            y + BAR * 0.7,
            y + BAR + 4.0,
            y + BAR + 4.0
        );
    }
    for op in ops {
        let y = TOP + LANE * lane_of(op.child()) as f64;
        let x0 = x(op.invoked());
        let (x1, open) = match op.returned() {
            Some(r) => (x(r), false),
            None => (WIDTH - 10.0, true),
        };
        let violating = witness.contains(op);
        let (fill, class) = if violating {
            ("#e03131", "op witness")
        } else {
            ("#74c0fc", "op")
        };
        let dash = if open {
            r#" stroke-dasharray="4 3""#
        } else {
            ""
        };
        let full = op.to_string();
        let label = escape(&full);
        let shown = escape(&fitted(&full, (x1 - x0).max(2.0)));
        let _ = write!(
            svg,
            r##"<g class="{class}"><title>child {} {label}</title><rect x="{x0:.1}" y="{y:.1}" width="{:.1}" height="{BAR}" fill="{fill}" fill-opacity="0.8" stroke="#333"{dash}/><text x="{:.1}" y="{:.1}">{shown}</text></g>"##,
            op.child(),
            (x1 - x0).max(2.0),
            x0 + 2.0,
            y + BAR * 0.7,
        );
    }
    let total_ms = span_ns / 1e6;
    let _ = write!(
        svg,
        r#"<text x="{LEFT}" y="{:.1}">0 ms</text><text x="{:.1}" y="{:.1}" text-anchor="end">{total_ms:.3} ms</text></svg>"#,
        height - 8.0,
        WIDTH - 10.0,
        height - 8.0
    );
    format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{}</title>\
         <style>body{{font-family:sans-serif;margin:20px}}pre{{background:#f6f6f6;padding:10px;white-space:pre-wrap}}</style>\
         </head><body><h1>{}</h1><pre>{}</pre>\
         <p>One lane per child; each bar runs from an operation's invocation to its return \
         (dashed: it never returned); its label is cut to the bar, whole when you point at it. \
         Red: {}.</p>\n{svg}\n</body></html>\n",
        escape(title),
        escape(title),
        escape(explanation),
        escape(marked)
    )
}

/// Where pages go: `<cargo target dir>/stampede/`, the target directory
/// being the nearest ancestor of this executable that holds cargo's
/// `CACHEDIR.TAG`. `None` outside a cargo build.
pub(super) fn directory() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    exe.ancestors()
        .find(|dir| dir.join("CACHEDIR.TAG").is_file())
        .map(|target| target.join("stampede"))
}

/// Writes `page` as `<dir>/<name>.html`; its path, or why not. The
/// directory must be this user's and private, and so must every directory
/// above it be root's or this user's (a target directory may sit under
/// `/tmp`, where another user could have planted `stampede`), and
/// the file is created anew, never through a link.
pub(super) fn write(dir: &Path, name: &str, page: &str) -> Result<PathBuf, String> {
    use std::io::Write as _;
    let parent = dir.parent().unwrap_or(dir);
    crate::services::private_dir::check_ancestors(parent)
        .and_then(|()| crate::services::private_dir::ensure(dir, 0o700))
        .map_err(|e| e.to_string())?;
    let path = dir.join(format!("{name}.html"));
    let _ = std::fs::remove_file(&path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    file.write_all(page.as_bytes())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::fitted;

    #[test]
    fn a_label_is_cut_to_its_bar_with_an_ellipsis() {
        // 6.7 px a character, 4 px of margin.
        let room = |chars: f64| 4.0 + chars * 6.7 + 0.5;
        assert_eq!(fitted("claim(7) → true", room(15.0)), "claim(7) → true");
        assert_eq!(fitted("claim(7) → true", room(14.0)), "claim(7) → tr…");
        assert_eq!(fitted("claim(7) → true", room(2.0)), "c…");
        assert_eq!(fitted("claim(7) → true", room(1.0)), "");
    }
}
