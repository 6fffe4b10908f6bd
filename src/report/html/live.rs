//! The live report: the layer's HTML writer collects each run's requests and writes the
//! page when the run closes.

use std::collections::{HashMap, HashSet};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use super::data::Row;
use crate::stats::{OverallSummary, RequestE2EStats};

/// The HTML part of the layer's writer (see [`crate::report::writer`]): runs on a thread of
/// its own, never on the engine's.
#[derive(Debug)]
pub(crate) struct HtmlLane {
    path: PathBuf,
    max_requests: usize,
    /// Requests of the runs still open, by scope.
    runs: HashMap<Box<str>, Vec<Row>>,
    /// The pages written so far.
    pages: PageNames,
}

impl HtmlLane {
    /// Writes each run's page to `path` (`{scope}` in it replaced by the run's scope), with
    /// at most `max_requests` requests a run.
    pub(crate) fn new(path: PathBuf, max_requests: usize) -> Self {
        Self {
            path,
            max_requests,
            runs: HashMap::new(),
            pages: PageNames::default(),
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
        let html = super::render_rows(s, rows);
        self.pages.write(&self.path, &s.scope, &html).map(drop)
    }
}

/// The pages one writer has written: it never writes a path twice when the path names the
/// scope, so two scopes can never silently share one page.
#[derive(Debug, Default)]
pub(crate) struct PageNames {
    written: HashSet<PathBuf>,
}

impl PageNames {
    /// Writes `html` to `pattern` with `{scope}` replaced ([`path_for`]), whole or not at
    /// all ([`write_replacing`]); returns the path written, or an error naming it.
    ///
    /// When `pattern` names the scope and that path was written before by this writer (a
    /// scope that maps to the same name: a repeated run id), `-2`, `-3`, ... is put before
    /// the extension rather than replace that page. Without `{scope}`, every page goes to
    /// `pattern`, each replacing the last (what such a path asks for).
    pub(crate) fn write(&mut self, pattern: &Path, scope: &str, html: &str) -> io::Result<PathBuf> {
        let mut path = path_for(pattern, scope);
        if path != pattern {
            let mut n = 1_u64;
            while self.written.contains(&path) {
                n = n.saturating_add(1);
                path = numbered(&path_for(pattern, scope), n);
            }
        }
        write_page(&path, html)?;
        self.written.insert(path.clone());
        Ok(path)
    }
}

/// `path` with `-n` before its extension (`out-run.html` -> `out-run-2.html`).
fn numbered(path: &Path, n: u64) -> PathBuf {
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned());
    let name = match (stem, path.extension()) {
        (Some(stem), Some(ext)) => format!("{stem}-{n}.{}", ext.to_string_lossy()),
        (Some(stem), None) => format!("{stem}-{n}"),
        (None, _) => format!("page-{n}"),
    };
    path.with_file_name(name)
}

/// Writes `html` to `path`, whole or not at all ([`write_replacing`]); the error names the
/// file.
pub(crate) fn write_page(path: &Path, html: &str) -> io::Result<()> {
    write_replacing(path, html.as_bytes()).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot write the HTML report `{}`: {e}", path.display()),
        )
    })
}

/// Characters of a scope kept in a file name, at most.
const MAX_SCOPE_CHARS: usize = 100;

/// `path` with `{scope}` replaced by the scope, made safe as a file name: ASCII letters,
/// digits, `.`, `-` and `_` kept, anything else `_`, at most 100 characters. When the scope
/// had to be changed or cut, 8 hex digits of a hash of the whole scope follow it, so two
/// scopes never share a name (`team a/run-1` and `team_a_run-1` differ).
pub(crate) fn path_for(path: &Path, scope: &str) -> PathBuf {
    let Some(text) = path.to_str() else {
        return path.to_owned();
    };
    if !text.contains("{scope}") {
        return path.to_owned();
    }
    let mut safe: String = scope
        .chars()
        .take(MAX_SCOPE_CHARS)
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
    if safe != scope {
        safe.push_str(&format!("-{:08x}", fnv1a(scope.as_bytes()) as u32));
    }
    PathBuf::from(text.replace("{scope}", &safe))
}

/// FNV-1a: a hash that is the same in every process and version (file names must be).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Writes `bytes` to a new temporary file beside `path` and renames it over `path`, so a
/// reader (a browser reloading) never sees half a page.
///
/// The temporary file has an unpredictable name and is created exclusively (`O_EXCL`): a
/// link planted beside the target is never followed, and no existing file is reused. If
/// `path` itself is a symlink, the link is replaced by the page (the file it pointed to is
/// left as it was). The temporary file is removed if anything fails.
pub(super) fn write_replacing(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "report.html".to_owned());
    let prefix = format!(".{name}.");
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(".tmp");
    // Readable as a page written with `File::create` would be (the umask still applies).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        builder.permissions(std::fs::Permissions::from_mode(0o644));
    }
    let mut tmp = builder.tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.flush()?;
    // On failure the error holds the temporary file, which removes itself when dropped.
    tmp.persist(path).map(drop).map_err(|e| e.error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_placeholder_is_a_safe_file_name() {
        let p = |s| path_for(Path::new("/tmp/report-{scope}.html"), s);
        let hash = |s: &str| format!("{:08x}", fnv1a(s.as_bytes()) as u32);
        assert_eq!(p("run-3"), Path::new("/tmp/report-run-3.html"));
        assert_eq!(
            p("../../etc/x y"),
            PathBuf::from(format!(
                "/tmp/report-.._.._etc_x_y-{}.html",
                hash("../../etc/x y")
            ))
        );
        assert_eq!(
            p(".."),
            PathBuf::from(format!("/tmp/report-__-{}.html", hash("..")))
        );
        assert_eq!(
            p(""),
            PathBuf::from(format!("/tmp/report-_-{}.html", hash("")))
        );
        assert_eq!(
            path_for(Path::new("/tmp/r.html"), "run-3"),
            Path::new("/tmp/r.html")
        );
    }

    /// Scopes that a safe file name would merge keep apart: changed characters, and ids
    /// sharing their first 100 characters.
    #[test]
    fn scopes_changed_or_cut_never_share_a_name() {
        let p = |s: &str| path_for(Path::new("out-{scope}.html"), s);
        assert_ne!(p("team a/run-1"), p("team_a_run-1"));
        let long = "x".repeat(150);
        let longer = format!("{long}y");
        assert_ne!(p(&long), p(&longer));
        assert!(p(&long).to_string_lossy().len() < 130);
    }

    /// A name taken by an earlier page of the same writer is never replaced.
    #[test]
    fn a_writer_never_replaces_a_page_it_wrote() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let pattern = dir.path().join("r-{scope}.html");
        let mut pages = PageNames::default();
        let a = pages.write(&pattern, "run-1", "a").expect("written");
        let b = pages.write(&pattern, "run-1", "b").expect("written");
        assert_eq!(b, dir.path().join("r-run-1-2.html"));
        assert_eq!(std::fs::read_to_string(&a).ok().as_deref(), Some("a"));
        assert_eq!(std::fs::read_to_string(&b).ok().as_deref(), Some("b"));
        // Without `{scope}`, the one file is replaced, as asked.
        let fixed = dir.path().join("fixed.html");
        pages.write(&fixed, "run-1", "1").expect("written");
        pages.write(&fixed, "run-2", "2").expect("written");
        assert_eq!(std::fs::read_to_string(&fixed).ok().as_deref(), Some("2"));
    }

    /// The temporary file never follows a link planted at a predictable name, and a
    /// target that is a link is replaced, not written through.
    #[cfg(unix)]
    #[test]
    fn writing_a_page_follows_no_planted_link() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "precious").expect("written");
        let target = dir.path().join("report.html");
        // The name the writer used to use for its temporary file.
        let planted = dir
            .path()
            .join(format!(".report.html.{}.tmp", std::process::id()));
        std::os::unix::fs::symlink(&victim, &planted).expect("a link");
        write_page(&target, "<html>").expect("written");
        assert_eq!(
            std::fs::read_to_string(&victim).ok().as_deref(),
            Some("precious")
        );
        let meta = std::fs::symlink_metadata(&target).expect("the page");
        assert!(meta.file_type().is_file(), "the page is a regular file");
        // The target itself a link: the link is replaced; its file is left.
        std::fs::remove_file(&target).expect("removed");
        std::os::unix::fs::symlink(&victim, &target).expect("a link");
        write_page(&target, "<html>").expect("written");
        assert_eq!(
            std::fs::read_to_string(&victim).ok().as_deref(),
            Some("precious")
        );
        let meta = std::fs::symlink_metadata(&target).expect("the page");
        assert!(meta.file_type().is_file());
        assert_eq!(
            std::fs::read_to_string(&target).ok().as_deref(),
            Some("<html>")
        );
        // No temporary file is left behind.
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .expect("listed")
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .filter(|e| e.path() != planted)
            .collect();
        assert!(left.is_empty(), "{left:?}");
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
