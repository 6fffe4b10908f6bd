//! Shared helpers: the browser (or an explicit skip), the page's tables read back from the
//! DOM, and the console's tables read back from text, for comparing the two.

use std::path::{Path, PathBuf};
use std::time::Duration;

pub(crate) use super::chromium;

pub(crate) use super::chromium::browser;

/// The DOM of `path` (with `#fragment`) after its scripts ran, checked to have rendered
/// without a console message or error.
#[track_caller]
pub(crate) fn rendered_dom(browser: &Path, path: &Path, fragment: &str) -> String {
    let url = chromium::file_url(path, fragment);
    let run = chromium::run(browser, &url, &["--dump-dom"], Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        run.console.is_empty(),
        "console messages on {url}:\n{}",
        run.console.join("\n")
    );
    eprintln!("{url}: the browser ran {:?}", run.elapsed);
    let attr = |name| chromium::body_attr(&run.stdout, name);
    assert_eq!(attr("data-errors").as_deref(), Some("0"), "errors on {url}");
    assert_eq!(
        attr("data-rendered").as_deref(),
        Some("1"),
        "{url} did not finish rendering"
    );
    run.stdout
}

/// A body attribute of a dumped DOM, which must be there.
#[track_caller]
pub(crate) fn attr(dom: &str, name: &str) -> String {
    chromium::body_attr(dom, name).unwrap_or_else(|| panic!("no {name} on <body>"))
}

/// A titled table: its title and its rows (the header first), each as cell texts.
pub(crate) type Block = (String, Vec<Vec<String>>);

/// The page's titled tables (`<div class="block"><h3>title</h3><table>...`), in order.
pub(crate) fn dom_blocks(dom: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut rest = dom;
    while let Some(at) = rest.find("<div class=\"block\"><h3>") {
        rest = &rest[at + "<div class=\"block\"><h3>".len()..];
        let Some(end) = rest.find("</h3>") else { break };
        let title = chromium::unescape(&rest[..end]);
        let Some(table_end) = rest.find("</table>") else {
            break;
        };
        let table = &rest[end..table_end];
        let rows = table
            .split("<tr")
            .skip(1)
            .map(|row| {
                let mut cells = Vec::new();
                let mut cell_rest = row;
                while let Some(open) = cell_rest.find('<') {
                    let tag = &cell_rest[open..];
                    let is_cell = tag.starts_with("<td>") || tag.starts_with("<th>");
                    if !is_cell {
                        cell_rest = &cell_rest[open + 1..];
                        continue;
                    }
                    let body = &tag[4..];
                    let close = body.find("</t").unwrap_or(body.len());
                    cells.push(chromium::unescape(&body[..close]));
                    cell_rest = &body[close..];
                }
                cells
            })
            .collect();
        blocks.push((title, rows));
        rest = &rest[table_end..];
    }
    blocks
}

/// The console's titled tables in `text` (as `report::table` renders them), in order.
pub(crate) fn console_blocks(text: &str) -> Vec<Block> {
    let mut blocks: Vec<Block> = Vec::new();
    for line in text.lines() {
        if line.starts_with('|') {
            if line.starts_with("|-") || line.starts_with("|:") {
                continue;
            }
            // Cells split on `|`, not on the `\|` of escaped text.
            let mut cells = Vec::new();
            let mut cell = String::new();
            let mut chars = line.trim_matches('|').chars();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        cell.push(c);
                        if let Some(next) = chars.next() {
                            cell.push(next);
                        }
                    }
                    '|' => cells.push(std::mem::take(&mut cell).trim().to_owned()),
                    c => cell.push(c),
                }
            }
            cells.push(cell.trim().to_owned());
            if let Some(block) = blocks.last_mut() {
                block.1.push(cells);
            }
        } else if !line.trim().is_empty() {
            blocks.push((line.to_owned(), Vec::new()));
        }
    }
    blocks
}

/// Blocks grouped as the console prints them: a request's (its `RequestE2EStats` block and
/// the stage and transfer blocks after it) or a scope's (`Overall Summary` and
/// `Distributions`), keyed and sorted by the first block's title.
pub(crate) fn grouped(blocks: Vec<Block>) -> Vec<(String, Vec<Block>)> {
    let mut groups: Vec<(String, Vec<Block>)> = Vec::new();
    for block in blocks {
        let starts_group =
            block.0.starts_with("RequestE2EStats") || block.0.starts_with("Overall Summary");
        match groups.last_mut() {
            Some(group) if !starts_group => group.1.push(block),
            _ => groups.push((block.0.clone(), vec![block])),
        }
    }
    groups.sort_by(|a, b| a.0.cmp(&b.0));
    groups
}

/// Asserts two sets of grouped blocks are equal, naming the first difference.
#[track_caller]
pub(crate) fn assert_same_tables(page: &[(String, Vec<Block>)], console: &[(String, Vec<Block>)]) {
    let titles = |g: &[(String, Vec<Block>)]| g.iter().map(|(t, _)| t.clone()).collect::<Vec<_>>();
    assert_eq!(
        titles(page),
        titles(console),
        "the page's tables are not the console's"
    );
    for ((title, page_blocks), (_, console_blocks)) in page.iter().zip(console) {
        assert_eq!(
            page_blocks.len(),
            console_blocks.len(),
            "{title}: tables differ in number"
        );
        for (p, c) in page_blocks.iter().zip(console_blocks) {
            assert_eq!(p.0, c.0, "{title}: titles differ");
            assert_eq!(
                p.1, c.1,
                "{title}: table `{}` differs (page left, console right)",
                p.0
            );
        }
    }
}

/// A fresh directory for one test's files.
pub(crate) fn temp_dir(test: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("html-{test}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    dir
}

/// The JSON blob embedded in a report.
#[track_caller]
pub(crate) fn blob(html: &str) -> serde_json::Value {
    let open = "<script type=\"application/json\" id=\"omni-data\">";
    let start = html
        .find(open)
        .map(|at| at + open.len())
        .expect("the data script");
    let len = html[start..].find("</script>").expect("its end");
    serde_json::from_str(&html[start..start + len]).expect("the blob is JSON")
}
