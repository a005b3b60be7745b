//! A violation's page, opened in a real headless browser, shows the
//! violation: the test draws a double claim with `Violation::html`, has
//! Chromium screenshot the page and dump its DOM, and checks the picture
//! (red bars in the two violating children's lanes and only there, blue bars
//! in the others' lanes) and the text (the explanation is on the page). It
//! fails when the page does not mark the violation in red, and when the
//! browser shows nothing or an error page.
//!
//! The browser: `$STAMPEDE_BROWSER` (a path, or a name looked up on `PATH`)
//! when it is set, else the first of `chromium`, `chromium-browser` and
//! `google-chrome` on `PATH`. With none found the test is skipped, saying so
//! on stderr, unless `STAMPEDE_BROWSER_TESTS=1` is set, as `.ci/run` sets
//! it: then it fails, asking for Chromium (`apt-get install chromium`). A
//! `$STAMPEDE_BROWSER` that names no program fails the test either way.
//!
//! Each browser run has its own profile and home directory in a temporary
//! directory, runs in its own process group, and is killed after
//! `BROWSER_LIMIT`. When a check fails, the page and the screenshot are kept
//! and the failure names their directory.

use std::ffi::OsString;
use std::fs::File;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use stampede::Timestamp;
use stampede::history::{Ending, History, Operation, Value};
use stampede::model::{self, ClaimOnce};

/// The page's geometry, as `src/model/page.rs` draws it: a lane per child,
/// `LANE` px apart, each bar `BAR` px tall; the time axis runs over `PLOT`
/// px (from x = 90 to 10 px short of the 1100 px wide drawing).
const LANE: usize = 34;
const BAR: usize = 22;
const PLOT: usize = 1100 - 90 - 10;
/// The labels' font size, px.
const FONT: usize = 11;

/// The history: `(child, thing, claim's result, invoked, returned)`, times
/// in ms. Children 1 and 3 both win thing 7, overlapping: the violation.
/// Children 0 and 2 claim thing 8 validly (0 wins, 2 loses after 0 won), so
/// the violating lanes lie between valid ones.
const PLAN: [(usize, u32, bool, u64, u64); 4] = [
    (0, 8, true, 0, 30),
    (1, 7, true, 10, 50),
    (2, 8, false, 40, 100),
    (3, 7, true, 30, 70),
];
const VIOLATING: [usize; 2] = [1, 3];

/// The window; the page (title, explanation, one line of legend, then the
/// drawing, 196 px tall for four lanes) fits with room to spare.
const WINDOW: (usize, usize) = (1200, 1000);
/// A browser run still going after this is killed and the test fails. A
/// run takes about a second; the test's two runs together stay within the
/// 4 minutes that `.config/nextest.toml` gives a test.
const BROWSER_LIMIT: Duration = Duration::from_secs(90);
/// A bar is drawn in horizontal runs of one colour hundreds of px long;
/// shorter runs (antialiased text, a coloured fringe) are not bars.
const MIN_RUN: usize = 8;

#[test]
fn violation_page_shows_the_violation_in_a_browser() {
    let browser = match find_browser() {
        Ok(browser) => browser,
        Err(why) => {
            if std::env::var_os("STAMPEDE_BROWSER_TESTS").is_some_and(|v| v == "1") {
                panic!(
                    "{why}; STAMPEDE_BROWSER_TESTS=1 asks for the browser test: install \
                     Chromium (`apt-get install chromium`) or set STAMPEDE_BROWSER"
                );
            }
            // Written to stderr itself, past libtest's capture of `eprintln!`,
            // so the line shows in a passing run.
            let _ = writeln!(
                std::io::stderr(),
                "tests/page_in_browser.rs: skipped: {why}; install Chromium \
                 (`apt-get install chromium`) to run it, and set \
                 STAMPEDE_BROWSER_TESTS=1 to fail rather than skip without it"
            );
            return;
        }
    };

    let history = history();
    let violation = model::check(&ClaimOnce, &history).expect_err("a double claim is a violation");
    let mut witness: Vec<usize> = violation.witness().iter().map(Operation::child).collect();
    witness.sort_unstable();
    assert_eq!(
        witness, VIOLATING,
        "the witness is the double claim:\n{violation}"
    );

    let dir = tempfile::tempdir().expect("a temporary directory");
    let page = dir.path().join("violation.html");
    std::fs::write(&page, violation.html(&history)).expect("the page written");

    let checked = check_screenshot(&browser, dir.path(), &page)
        .and_then(|figures| check_dom(&browser, dir.path(), &page).map(|()| figures));
    match checked {
        Ok(figures) => {
            let _ = writeln!(std::io::stderr(), "tests/page_in_browser.rs: {figures}");
        }
        Err(why) => {
            let kept = dir.keep();
            panic!(
                "{why}\n(the page and the browser's output are kept in {})",
                kept.display()
            );
        }
    }
}

/// `PLAN` as a history, from now.
fn history() -> History {
    let start = Timestamp::now();
    let at = |ms: u64| start.later_by(Duration::from_millis(ms));
    History::new(
        PLAN.iter()
            .map(|&(child, thing, won, invoked, returned)| {
                Operation::new(
                    child,
                    "claim",
                    Value::of(&thing),
                    Ending::Ok(Value::of(&won)),
                    at(invoked),
                    Some(at(returned)),
                )
            })
            .collect(),
    )
}

/// The fewest bar-coloured pixels the bar of `PLAN[i]` shows. Its width is
/// its share of the history's span over `PLOT`; its outline takes up to a
/// pixel on each side, and its label (`claim(7) → true`) covers at most a
/// font-size square per character. Half of what is left: room for
/// rounding, antialiasing and fonts, while a page without the bar (or with
/// it in another colour) still shows none.
fn bar_minimum(i: usize) -> usize {
    let span = PLAN.iter().map(|p| p.4).max().unwrap() - PLAN.iter().map(|p| p.3).min().unwrap();
    let (_, thing, won, invoked, returned) = PLAN[i];
    let width = PLOT * (returned - invoked) as usize / span as usize;
    let label = format!("claim({thing}) → {won}").chars().count();
    ((width - 2) * (BAR - 2)).saturating_sub(label * FONT * FONT) / 2
}

/// What the screenshot showed, for the log of a passing run.
struct Figures {
    red: usize,
    blue: usize,
    red_minimum: usize,
    blue_minimum: usize,
    per_lane: Vec<Lane>,
}

impl std::fmt::Display for Figures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "red bar pixels {} (at least {}), blue {} (at least {}); by lane (red, blue, rows):",
            self.red, self.red_minimum, self.blue, self.blue_minimum
        )?;
        for (i, lane) in self.per_lane.iter().enumerate() {
            write!(f, " {i}: ({}, {}, {})", lane.red, lane.blue, lane.rows)?;
        }
        Ok(())
    }
}

#[derive(Default, Clone)]
struct Lane {
    red: usize,
    blue: usize,
    /// Rows with bar colour.
    rows: usize,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Colour {
    /// A violating operation's bar: #e03131 at opacity 0.8 over white is
    /// (230, 90, 90).
    Red,
    /// Any other bar: #74c0fc at opacity 0.8 over white is (144, 205, 253).
    Blue,
}

/// Which bar colour a pixel has, with room either side of the nominal
/// values for blending with the outline and the browser's colour handling.
fn colour([r, g, b]: [u8; 3]) -> Option<Colour> {
    if r > 200 && g < 130 && b < 130 {
        Some(Colour::Red)
    } else if (110..=180).contains(&r) && (170..=235).contains(&g) && b > 225 {
        Some(Colour::Blue)
    } else {
        None
    }
}

/// Screenshots the page and checks where its red and blue bars are: the
/// first row with bar colour is the top of lane 0's bar, lane `k`'s bar
/// starts `k * LANE` px below it, and each lane shows its child's bars in
/// their colour and no other.
fn check_screenshot(browser: &Path, work: &Path, page: &Path) -> Result<Figures, String> {
    let shot = work.join("screenshot.png");
    let mut arg = OsString::from("--screenshot=");
    arg.push(&shot);
    let ran = run_browser(
        browser,
        work,
        "screenshot",
        &[
            arg,
            format!("--window-size={},{}", WINDOW.0, WINDOW.1).into(),
            file_url(page),
        ],
    )?;
    if !shot.is_file() {
        return Err(format!(
            "the browser wrote no screenshot ({}); its stderr:\n{}",
            ran.status, ran.stderr
        ));
    }
    let image = decode(&shot)?;
    if (image.width, image.height) != WINDOW {
        return Err(format!(
            "the screenshot is {}x{}, not the window's {}x{}",
            image.width, image.height, WINDOW.0, WINDOW.1
        ));
    }

    // Pixels in runs of at least MIN_RUN of one bar colour, per row.
    let mut rows: Vec<(usize, usize, usize)> = Vec::new();
    for y in 0..image.height {
        let row = &image.pixels[y * image.width..(y + 1) * image.width];
        let (mut red, mut blue) = (0, 0);
        let mut x = 0;
        while x < row.len() {
            let here = colour(row[x]);
            let run = row[x..].iter().take_while(|&&p| colour(p) == here).count();
            if run >= MIN_RUN {
                match here {
                    Some(Colour::Red) => red += run,
                    Some(Colour::Blue) => blue += run,
                    None => {}
                }
            }
            x += run;
        }
        if red + blue > 0 {
            rows.push((y, red, blue));
        }
    }
    let Some(&(top, _, _)) = rows.first() else {
        return Err(
            "no bar on the screenshot: the browser showed no drawing (an error page, or \
             nothing)"
                .into(),
        );
    };

    let lanes = PLAN.len();
    let mut per_lane = vec![Lane::default(); lanes];
    let mut stray = Vec::new();
    for &(y, red, blue) in &rows {
        // Half the gap between two bars above a bar still counts as its lane.
        let lane = (y - top + (LANE - BAR) / 2) / LANE;
        match per_lane.get_mut(lane) {
            Some(l) => {
                l.red += red;
                l.blue += blue;
                l.rows += 1;
            }
            None => stray.push(y),
        }
    }
    if !stray.is_empty() {
        return Err(format!(
            "bar colour below the last lane (rows {stray:?}; lane 0 starts at row {top})"
        ));
    }

    let mut problems = Vec::new();
    let (mut red_minimum, mut blue_minimum) = (0, 0);
    for (lane, figures) in per_lane.iter().enumerate() {
        // Lanes are in child order; every child has one operation.
        let minimum: usize = (0..PLAN.len())
            .filter(|&i| PLAN[i].0 == lane)
            .map(bar_minimum)
            .sum();
        let (mine, other, name) = if VIOLATING.contains(&lane) {
            red_minimum += minimum;
            (figures.red, figures.blue, "red")
        } else {
            blue_minimum += minimum;
            (figures.blue, figures.red, "blue")
        };
        if mine < minimum {
            problems.push(format!(
                "lane {lane} (child {lane}) shows {mine} {name} bar pixels, fewer than {minimum}"
            ));
        }
        if other > 0 {
            problems.push(format!(
                "lane {lane} (child {lane}) shows {other} pixels of the other bar colour"
            ));
        }
        if figures.rows > BAR || figures.rows < BAR / 2 {
            problems.push(format!(
                "lane {lane}'s bar is {} rows tall, not about {BAR}: the lanes are not where \
                 the page draws them",
                figures.rows
            ));
        }
    }
    let figures = Figures {
        red: per_lane.iter().map(|l| l.red).sum(),
        blue: per_lane.iter().map(|l| l.blue).sum(),
        red_minimum,
        blue_minimum,
        per_lane,
    };
    if problems.is_empty() {
        Ok(figures)
    } else {
        Err(format!(
            "the screenshot does not show the violation as drawn:\n  {}\n{figures}",
            problems.join("\n  ")
        ))
    }
}

/// Has the browser load the page and print its DOM: the explanation is in
/// it, and the two violating operations are marked as such.
fn check_dom(browser: &Path, work: &Path, page: &Path) -> Result<(), String> {
    let ran = run_browser(browser, work, "dom", &["--dump-dom".into(), file_url(page)])?;
    let dom = ran.stdout;
    let wanted = [
        ("not linearizable under ClaimOnce", 1),
        ("7 was claimed already", 1),
        (r#"class="op witness""#, VIOLATING.len()),
        (r#"class="op""#, PLAN.len() - VIOLATING.len()),
    ];
    for (text, count) in wanted {
        let found = dom.matches(text).count();
        if found < count {
            // The browser's stderr is mostly noise (no D-Bus here); it
            // matters only when the browser printed nothing.
            let stderr = if dom.trim().is_empty() {
                format!("; the browser's stderr:\n{}", ran.stderr)
            } else {
                String::new()
            };
            return Err(format!(
                "the page's DOM has {found} of `{text}`, not {count} ({}); the DOM:\n{dom}{stderr}",
                ran.status
            ));
        }
    }
    Ok(())
}

fn file_url(page: &Path) -> OsString {
    let mut url = OsString::from("file://");
    url.push(page);
    url
}

struct Image {
    width: usize,
    height: usize,
    pixels: Vec<[u8; 3]>,
}

/// The PNG at `path` as RGB, whatever its colour type.
fn decode(path: &Path) -> Result<Image, String> {
    let why = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let file = File::open(path).map_err(|e| why(&e))?;
    let mut decoder = png::Decoder::new(std::io::BufReader::new(file));
    // Palettes expanded, 16-bit samples cut to 8.
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().map_err(|e| why(&e))?;
    let mut buffer = vec![
        0;
        reader
            .output_buffer_size()
            .ok_or_else(|| why(&"too large"))?
    ];
    let info = reader.next_frame(&mut buffer).map_err(|e| why(&e))?;
    let channels = match info.color_type {
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        png::ColorType::Grayscale => 1,
        png::ColorType::GrayscaleAlpha => 2,
        png::ColorType::Indexed => return Err(why(&"a palette left unexpanded")),
    };
    let (width, height) = (info.width as usize, info.height as usize);
    let mut pixels = Vec::with_capacity(width * height);
    for line in buffer[..info.buffer_size()].chunks_exact(info.line_size) {
        for p in line[..width * channels].chunks_exact(channels) {
            // Alpha is ignored: a screenshot is opaque.
            pixels.push(if channels >= 3 {
                [p[0], p[1], p[2]]
            } else {
                [p[0]; 3]
            });
        }
    }
    Ok(Image {
        width,
        height,
        pixels,
    })
}

/// `$STAMPEDE_BROWSER`, else the first Chromium on `PATH`; why none, if so.
fn find_browser() -> Result<PathBuf, String> {
    let on_path = |name: &std::ffi::OsStr| {
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .map(|dir| dir.join(name))
            .find(|path| is_executable(path))
    };
    if let Some(chosen) = std::env::var_os("STAMPEDE_BROWSER").filter(|v| !v.is_empty()) {
        let found = if Path::new(&chosen).components().count() > 1 {
            Some(PathBuf::from(&chosen)).filter(|path| is_executable(path))
        } else {
            on_path(&chosen)
        };
        // Chosen explicitly: a wrong choice fails rather than skips.
        return Ok(found.unwrap_or_else(|| {
            panic!(
                "STAMPEDE_BROWSER={} names no executable program",
                Path::new(&chosen).display()
            )
        }));
    }
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|name| on_path(name.as_ref()))
        .ok_or_else(|| "no chromium, chromium-browser or google-chrome on PATH".into())
}

fn is_executable(path: &Path) -> bool {
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A finished browser run.
struct Ran {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// Runs the headless browser with `args` after the common ones, its profile
/// and home under `work/<name>`, its output in files there (so a full pipe
/// cannot stall it); kills its process group after `BROWSER_LIMIT`.
fn run_browser(browser: &Path, work: &Path, name: &str, args: &[OsString]) -> Result<Ran, String> {
    let home = work.join(name);
    let profile = home.join("profile");
    std::fs::create_dir_all(&profile).map_err(|e| format!("{}: {e}", profile.display()))?;
    let out_path = home.join("stdout");
    let err_path = home.join("stderr");
    let create = |path: &Path| File::create(path).map_err(|e| format!("{}: {e}", path.display()));
    let mut user_data = OsString::from("--user-data-dir=");
    user_data.push(&profile);
    let mut child = Command::new(browser)
        .args([
            "--headless",
            // Root cannot run Chromium's sandbox; the page is our own file.
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            // One screenshot pixel per CSS pixel, as the geometry assumes.
            "--force-device-scale-factor=1",
            // Grey text antialiasing: no coloured fringes beside the labels.
            "--disable-lcd-text",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-sync",
            "--disable-background-networking",
            "--disable-component-update",
        ])
        .arg(user_data)
        .args(args)
        .env("HOME", &home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("XDG_CACHE_HOME", home.join(".cache"))
        .stdin(Stdio::null())
        .stdout(create(&out_path)?)
        .stderr(create(&err_path)?)
        .process_group(0)
        .spawn()
        .map_err(|e| format!("{}: {e}", browser.display()))?;
    let read = |path: &Path| {
        String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned()
    };
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() < BROWSER_LIMIT => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Ok(None) => {
                // The browser's helpers are in its process group.
                let _ = Command::new("kill")
                    .args(["-KILL", "--", &format!("-{}", child.id())])
                    .stderr(Stdio::null())
                    .status();
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "the browser ({}) was still running after {} s and was killed; its stderr:\n{}",
                    browser.display(),
                    BROWSER_LIMIT.as_secs(),
                    read(&err_path)
                ));
            }
            Err(e) => return Err(format!("waiting for {}: {e}", browser.display())),
        }
    };
    Ok(Ran {
        status,
        stdout: read(&out_path),
        stderr: read(&err_path),
    })
}
