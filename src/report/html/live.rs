//! The live report: the layer's HTML writer lane collects each run's requests and writes the
//! page when the run closes.

use std::collections::HashMap;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use super::data::Row;
use crate::stats::{OverallSummary, RequestE2EStats};

/// The HTML lane of the layer's writer (see [`crate::report::writer`]): runs on a thread of
/// its own, never on the engine's.
#[derive(Debug)]
pub(crate) struct HtmlLane {
    path: PathBuf,
    max_requests: usize,
    /// Requests of the runs still open, by scope.
    runs: HashMap<Box<str>, Vec<Row>>,
}

impl HtmlLane {
    /// Writes each run's page to `path` (`{scope}` in it replaced by the run's scope), with
    /// at most `max_requests` requests a run.
    pub(crate) fn new(path: PathBuf, max_requests: usize) -> Self {
        Self {
            path,
            max_requests,
            runs: HashMap::new(),
        }
    }

    /// A finished request: kept with its run's, unless the run has `max_requests` already
    /// (the page counts those left out). An online request (its own scope) is not kept.
    pub(crate) fn request(&mut self, r: &RequestE2EStats) {
        if r.scope == r.request_id {
            return;
        }
        let rows = match self.runs.get_mut(r.scope.as_str()) {
            Some(rows) => rows,
            None => self.runs.entry(r.scope.as_str().into()).or_default(),
        };
        if rows.len() < self.max_requests {
            rows.push(Row::new(r, &r.scope));
        }
    }

    /// A finished scope: a run with requests is rendered and written; an online request's
    /// summary, or a run without a finished request, writes nothing.
    ///
    /// # Errors
    ///
    /// The write failed; the error names the file.
    pub(crate) fn summary(&mut self, s: &OverallSummary) -> io::Result<()> {
        let Some(rows) = self.runs.remove(s.scope.as_str()) else {
            return Ok(());
        };
        write_page(&self.path, &s.scope, &super::render_rows(s, rows)).map(drop)
    }
}

/// Writes `html` to `path` with `{scope}` replaced ([`path_for`]), whole or not at all
/// ([`write_replacing`]); returns the path written, or an error naming it.
pub(crate) fn write_page(path: &Path, scope: &str, html: &str) -> io::Result<PathBuf> {
    let path = path_for(path, scope);
    write_replacing(&path, html.as_bytes()).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot write the HTML report `{}`: {e}", path.display()),
        )
    })?;
    Ok(path)
}

/// `path` with `{scope}` replaced by the scope, made safe as a file name: ASCII letters,
/// digits, `.`, `-` and `_` kept, anything else `_`, at most 100 characters.
pub(crate) fn path_for(path: &Path, scope: &str) -> PathBuf {
    let Some(text) = path.to_str() else {
        return path.to_owned();
    };
    if !text.contains("{scope}") {
        return path.to_owned();
    }
    let mut safe: String = scope
        .chars()
        .take(100)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if safe.is_empty() || safe.chars().all(|c| c == '.') {
        safe = "_".repeat(safe.len().max(1));
    }
    PathBuf::from(text.replace("{scope}", &safe))
}

/// Writes `bytes` to a temporary file beside `path` and renames it over `path`, so a
/// reader (a browser reloading) never sees half a page; the temporary file is removed if
/// anything fails.
pub(super) fn write_replacing(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "report.html".to_owned());
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let written = std::fs::File::create(&tmp)
        .and_then(|mut file| file.write_all(bytes).and_then(|()| file.flush()))
        .and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_placeholder_is_a_safe_file_name() {
        let p = |s| path_for(Path::new("/tmp/report-{scope}.html"), s);
        assert_eq!(p("run-3"), Path::new("/tmp/report-run-3.html"));
        assert_eq!(
            p("../../etc/x y"),
            Path::new("/tmp/report-.._.._etc_x_y.html")
        );
        assert_eq!(p(".."), Path::new("/tmp/report-__.html"));
        assert_eq!(p(""), Path::new("/tmp/report-_.html"));
        assert_eq!(
            path_for(Path::new("/tmp/r.html"), "run-3"),
            Path::new("/tmp/r.html")
        );
    }

    #[test]
    fn online_requests_and_empty_runs_write_nothing() {
        let dir = std::env::temp_dir().join(format!("omni-html-live-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("r.html");
        let mut lane = HtmlLane::new(path.clone(), 10);
        let online = RequestE2EStats {
            request_id: "r-1".into(),
            scope: "r-1".into(),
            ..Default::default()
        };
        lane.request(&online);
        let summary = OverallSummary {
            scope: "r-1".into(),
            e2e_requests: 1,
            ..Default::default()
        };
        assert!(lane.summary(&summary).is_ok());
        assert!(!path.exists());
        assert!(lane.runs.is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_run_keeps_at_most_max_requests() {
        let mut lane = HtmlLane::new(PathBuf::from("unused.html"), 2);
        for i in 0..5 {
            lane.request(&RequestE2EStats {
                request_id: format!("r-{i}"),
                scope: "run".into(),
                ..Default::default()
            });
        }
        assert_eq!(lane.runs.get("run").map(Vec::len), Some(2));
    }
}
