//! The comparison's HTML page in headless Chromium: rendered without an error, the table's
//! rows and verdicts in the DOM, a figure per measure with both sides' distributions, and
//! the two timelines drawn on one time scale.

use std::time::Duration;

use crate::compare::{Compare, html};

use super::chromium;
use super::finding::side;
use super::runs::Run;

/// The value of attribute `name` on the first tag that has `marker` in it.
fn attr_of(dom: &str, marker: &str, name: &str) -> Option<String> {
    let at = dom.find(marker)?;
    let start = dom[..at].rfind('<')?;
    let end = at + dom[at..].find('>')?;
    let tag = &dom[start..end];
    let key = format!(" {name}=\"");
    let from = tag.find(&key)? + key.len();
    let len = tag[from..].find('"')?;
    Some(tag[from..from + len].to_owned())
}

#[test]
fn the_page_renders_both_runs_on_one_time_scale() {
    let Some(browser) = chromium::browser("the_page_renders_both_runs_on_one_time_scale") else {
        return;
    };
    // The new run: stage 1 20% slower, so its requests take longer and its span of time
    // is longer; 3,000 requests a side (more than the timeline draws).
    let base = side("base <run>", &Run::new(3_000, 101));
    let mut slower = Run::new(3_000, 102);
    slower.gen_time[1] = 1.2;
    let new = side("new & improved", &slower);
    let comparison = Compare::new().run(&base, &new);
    let page = html::render(&comparison, &base, &new);
    let dir = super::temp_dir("html");
    let path = dir.join("compare.html");
    std::fs::write(&path, &page).expect("write the page");

    let url = chromium::file_url(&path, "");
    let run = chromium::run(&browser, &url, &["--dump-dom"], Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        run.console.is_empty(),
        "console messages:\n{}",
        run.console.join("\n")
    );
    eprintln!("{url}: the browser ran {:?}", run.elapsed);
    let dom = run.stdout;
    assert_eq!(
        chromium::body_attr(&dom, "data-errors").as_deref(),
        Some("0")
    );
    assert_eq!(
        chromium::body_attr(&dom, "data-rendered").as_deref(),
        Some("1")
    );

    // The labels escaped, as text.
    assert!(dom.contains("base &lt;run&gt;"), "the label is escaped");
    assert!(dom.contains("new &amp; improved"));
    // One table row per measure, with its verdict; the stage that changed first.
    let rows = dom.matches("<tr data-measure=").count();
    assert_eq!(rows, comparison.rows.len());
    assert_eq!(
        attr_of(&dom, "<tr data-measure=", "data-measure").as_deref(),
        Some("stage1_gen")
    );
    assert_eq!(
        attr_of(&dom, "<tr data-measure=\"stage1_gen\"", "data-verdict").as_deref(),
        Some("worse")
    );
    assert_eq!(
        attr_of(&dom, "<tr data-measure=\"edge0_1_tx\"", "data-verdict").as_deref(),
        Some("no change")
    );
    // A figure per measure of requests, each stage's with both sides' paths.
    for (stage, measures) in [
        (0, ["stage0_queue", "stage0_gen", "stage0_postprocess"]),
        (1, ["stage1_queue", "stage1_gen", "stage1_postprocess"]),
    ] {
        for m in measures {
            let marker = format!("<figure data-measure=\"{m}\"");
            assert_eq!(
                attr_of(&dom, &marker, "data-stage"),
                Some(stage.to_string()),
                "{m}"
            );
            let figure = &dom[dom.find(&marker).unwrap_or(0)..];
            let figure = &figure[..figure.find("</figure>").unwrap_or(figure.len())];
            assert!(
                figure.contains("class=\"base\"") && figure.contains("class=\"new\""),
                "{m}: {figure}"
            );
        }
    }
    // Two timelines, one width, one time scale (the longer run's), 2,000 rows each.
    let scale = |k: usize| attr_of(&dom, &format!("id=\"timeline-{k}\""), "data-scale-ms");
    let (a, b) = (scale(0), scale(1));
    assert!(a.is_some() && a == b, "scales {a:?} and {b:?}");
    let longest = [&base, &new]
        .iter()
        .map(|s| {
            let start = s.requests.iter().map(|r| r.start_ns).min().unwrap_or(0);
            let end = s.requests.iter().map(|r| r.end_ns).max().unwrap_or(0);
            (end - start) as f64 / 1e6
        })
        .fold(0.0, f64::max);
    let drawn: f64 = a.as_deref().and_then(|v| v.parse().ok()).unwrap_or(0.0);
    assert!(
        (drawn - longest).abs() < 0.01,
        "scale {drawn} ms, the longer run {longest} ms"
    );
    for k in 0..2 {
        assert_eq!(
            attr_of(&dom, &format!("id=\"timeline-{k}\""), "width").as_deref(),
            Some("1100")
        );
        assert_eq!(
            attr_of(&dom, &format!("id=\"timeline-{k}\""), "data-rows").as_deref(),
            Some("2000")
        );
    }
    assert!(dom.contains("(2,000 of 3,000 requests shown)"));
    // Nothing fetched: the page is whole.
    for forbidden in ["http://", "https://", "<link", "src="] {
        assert!(!page.contains(forbidden), "{forbidden}");
    }
}

/// Records read back from JSON lines have no times: no timeline, said so; the rest renders.
#[test]
fn records_without_times_have_no_timeline_and_say_so() {
    let Some(browser) = chromium::browser("records_without_times_have_no_timeline_and_say_so")
    else {
        return;
    };
    let mut base = side("base", &Run::new(500, 111));
    let mut new = side("new", &Run::new(500, 112));
    for s in [&mut base, &mut new] {
        s.timed = false;
    }
    let comparison = Compare::new().run(&base, &new);
    let page = html::render(&comparison, &base, &new);
    let path = super::temp_dir("html-untimed").join("compare.html");
    std::fs::write(&path, &page).expect("write the page");
    let run = chromium::run(
        &browser,
        &chromium::file_url(&path, ""),
        &["--dump-dom"],
        Duration::from_secs(30),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(run.console.is_empty(), "{}", run.console.join("\n"));
    assert_eq!(
        chromium::body_attr(&run.stdout, "data-errors").as_deref(),
        Some("0")
    );
    assert_eq!(
        chromium::body_attr(&run.stdout, "data-rendered").as_deref(),
        Some("1")
    );
    assert_eq!(run.stdout.matches("class=\"hint no-times\"").count(), 2);
    assert!(!run.stdout.contains("<canvas"));
}
