//! A self-contained HTML report of a run: the console's tables, a timeline of every request,
//! and histograms.
//!
//! [`render`] makes one HTML file from a scope's summary and its requests (the `omni-metrics
//! report --html` command calls it); the layer writes one when a run closes, with
//! [`Builder::with_html_path`](crate::Builder::with_html_path) or
//! `OMNI_METRICS_HTML`. The page fetches nothing: its style, script and data
//! are inlined, and it works opened from a `file://` URL offline. It shows:
//!
//! - the `Overall Summary` and `Distributions` tables, and the `RequestE2EStats`,
//!   `StageRequestStats` and `TransferEdgeStats` tables of the request picked (click its
//!   row on the timeline, type its id, or open the page with `#request=<id>`; `#all` shows
//!   every request's tables, as the console prints them, up to 1,000 requests), with the
//!   console's labels, rows and number formatting (output-event and audio rows included);
//! - a timeline on a shared time axis: a row per request (ordered by start), each stage a
//!   bar colored by stage, its queue time shaded pale at the stage's start and its
//!   post-processing dark at its end (the convention: an engine queues before computing and
//!   post-processes after), each transfer a thin bar below (sender time dark at its start,
//!   receiver time dark at its end, in flight pale between), and above the rows a row per stage with its
//!   batches (a batch is the stages sharing a `batch_id`; hovering a stage outlines its
//!   batch). The mouse wheel zooms the time axis, shift+wheel the rows, dragging pans, a
//!   button resets; hovering shows the numbers. When rows are thinner than 2 pixels the
//!   rows are drawn as pixels (level of detail), only what is in view, so 10,000 requests
//!   stay fluid;
//! - histograms of request latency and of each stage's `stage_gen_time_ms`, and transfer
//!   time against payload size, per edge.
//!
//! Times on the timeline are relative to the earliest start among the requests. Records
//! read back from JSON lines carry no times (`start_ns`/`end_ns` are not serialized): the
//! page then lays each request from 0, its stages one after another, and says so.
//!
//! The page's data is one JSON object in `<script type="application/json"
//! id="omni-data">`: `summary`, `distributions` (the console's rows), `columns` (the names
//! of the positions in each request, stage and edge array) and `requests`, one array per
//! request. Text in it is escaped as the console prints it, and `<`, `>`, `&`, U+2028 and
//! U+2029 as `\u` escapes, so no request id can end the script. Numbers are finite;
//! integers above 2^53 are strings.
//!
//! ```
//! use omni_metrics::stats::{OverallSummary, RequestE2EStats};
//!
//! let summary = OverallSummary { scope: "run-3".into(), e2e_requests: 1, ..Default::default() };
//! let request = RequestE2EStats { request_id: "r-17".into(), scope: "run-3".into(), ..Default::default() };
//! let html = omni_metrics::report::html::render(&summary, &[request]);
//! assert!(html.starts_with("<!DOCTYPE html>"));
//! assert!(!html.contains("http://") && !html.contains("https://")); // nothing to fetch
//! ```

mod data;
pub(crate) mod live;

use data::Row;

use crate::report::table::printable;
use crate::stats::{OverallSummary, RequestE2EStats};

const PAGE: &str = include_str!("page.html");
pub(crate) const STYLE: &str = include_str!("page.css");
const SCRIPT: &str = include_str!("page.js");

/// Writes the pages of several scopes to one file-name pattern, never replacing a page it
/// wrote: what `omni-metrics report --html` uses.
///
/// `{scope}` in the pattern is replaced by the summary's scope, made safe as a file name (a
/// scope changed or cut to be a safe file name gets 8 hex digits of its hash, so `team a/run-1` and `team_a_run-1`
/// get two files). Should two scopes still map to one name, the later page gets `-2`,
/// `-3`, ... before the extension. Without `{scope}`, each page replaces the last.
#[cfg(feature = "cli")]
#[derive(Debug)]
pub(crate) struct PageWriter {
    pattern: std::path::PathBuf,
    pages: live::PageNames,
}

#[cfg(feature = "cli")]
impl PageWriter {
    /// Writes pages to `pattern` (a path, with `{scope}` in it for one page per scope).
    pub(crate) fn new(pattern: impl Into<std::path::PathBuf>) -> Self {
        Self {
            pattern: pattern.into(),
            pages: live::PageNames::default(),
        }
    }

    /// Renders the page of `summary` and `requests` ([`render`]) and writes it; returns the
    /// path written.
    ///
    /// # Errors
    ///
    /// The file could not be written; the error names it.
    pub(crate) fn write(
        &mut self,
        summary: &OverallSummary,
        requests: &[RequestE2EStats],
    ) -> std::io::Result<std::path::PathBuf> {
        let html = render(summary, requests);
        self.pages.write(&self.pattern, &summary.scope, &html)
    }
}

/// The HTML report of one scope: `summary` and its `requests`, as one self-contained page.
///
/// Pass the requests of the scope the summary is of (any order; the timeline orders them by
/// start). Requests the summary counts but `requests` lacks are said on the page ("N
/// requests left out"). Never fails and never panics: every number is written finite, and
/// text is escaped.
///
/// ```
/// use omni_metrics::stats::{OverallSummary, RequestE2EStats};
///
/// let summary = OverallSummary { scope: "run-3".into(), e2e_requests: 2, ..Default::default() };
/// let requests = vec![RequestE2EStats { request_id: "</script>".into(), ..Default::default() }];
/// let html = omni_metrics::report::html::render(&summary, &requests);
/// assert_eq!(html.matches("</script>").count(), 2); // the page's own two scripts only
/// # std::fs::write(std::env::temp_dir().join("omni-doc-report.html"), &html)?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn render(summary: &OverallSummary, requests: &[RequestE2EStats]) -> String {
    let rows = requests
        .iter()
        .map(|r| Row::new(r, &summary.scope))
        .collect();
    render_rows(summary, rows)
}

/// [`render`] from the rows the live report kept.
pub(crate) fn render_rows(summary: &OverallSummary, mut rows: Vec<Row>) -> String {
    let bars: usize = rows.iter().map(Row::bars).sum();
    let mut out = String::with_capacity(PAGE.len() + STYLE.len() + SCRIPT.len() + 600 * bars);
    let mut parts = PAGE.split("{{");
    if let Some(head) = parts.next() {
        out.push_str(head);
    }
    for part in parts {
        let (name, rest) = part.split_once("}}").unwrap_or(("", part));
        match name {
            "TITLE" => escape_html(
                &mut out,
                &format!(
                    "omni-metrics report: scope {}",
                    printable(&summary.scope, false)
                ),
            ),
            "STYLE" => out.push_str(STYLE),
            "SCRIPT" => out.push_str(SCRIPT),
            "DATA" => data::write_blob(&mut out, summary, &mut rows),
            _ => {}
        }
        out.push_str(rest);
    }
    out
}

/// Text for HTML element content and attribute values.
pub(crate) fn escape_html(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_has_its_parts_and_no_placeholder() {
        let summary = OverallSummary {
            scope: "<b>run</b>".into(),
            ..Default::default()
        };
        let html = render(&summary, &[]);
        assert!(!html.contains("{{"), "a placeholder is left");
        assert!(html.contains("<title>omni-metrics report: scope &lt;b&gt;run&lt;/b&gt;</title>"));
        assert!(html.contains(r#""scope":"\u003cb\u003erun\u003c/b\u003e""#));
        assert!(html.contains("id=\"omni-data\""));
        for forbidden in ["http://", "https://", "<link", "src=", "@import", "fetch("] {
            assert!(
                !html.contains(forbidden),
                "the page must fetch nothing: {forbidden}"
            );
        }
    }

    #[test]
    fn page_template_placeholders_are_known() {
        let names: Vec<_> = PAGE
            .split("{{")
            .skip(1)
            .filter_map(|p| p.split_once("}}").map(|(n, _)| n))
            .collect();
        assert_eq!(names, ["TITLE", "STYLE", "DATA", "SCRIPT"]);
        assert!(!STYLE.contains("{{") && !SCRIPT.contains("{{"));
    }
}

#[cfg(all(test, feature = "cli"))]
mod page_writer_tests {
    use super::PageWriter;
    use crate::stats::OverallSummary;

    #[test]
    fn scopes_that_map_to_one_file_name_get_two_files() -> std::io::Result<()> {
        let dir = std::env::temp_dir().join(format!("omni-doc-pages-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let mut pages = PageWriter::new(dir.join("report-{scope}.html"));
        let a = pages.write(
            &OverallSummary {
                scope: "team a/run-1".into(),
                ..Default::default()
            },
            &[],
        )?;
        let b = pages.write(
            &OverallSummary {
                scope: "team_a_run-1".into(),
                ..Default::default()
            },
            &[],
        )?;
        assert_ne!(a, b);
        assert!(b.ends_with("report-team_a_run-1.html"));
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }
}
