use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use serde::Serialize;

use super::Sink;
use crate::stats::{OverallSummary, RequestE2EStats};

mod without;

/// One JSON-lines record: `{"type":"request",...}` or `{"type":"summary",...}`.
///
/// ```
/// use omni_metrics::report::Record;
/// use omni_metrics::stats::OverallSummary;
/// let line = Record::Summary(OverallSummary { scope: "run-3".into(), ..Default::default() }).to_json_line();
/// assert!(line.starts_with(r#"{"type":"summary","scope":"run-3","e2e_requests":0"#));
/// ```
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Record {
    /// A finished request.
    Request(RequestE2EStats),
    /// A finished scope.
    Summary(OverallSummary),
}

impl Record {
    /// The record as one line of JSON, without the newline.
    ///
    /// Strings are escaped as JSON requires, and further: DEL, the C1 controls and the
    /// Unicode marks that reorder text are written as `\u` escapes too, so `tail -f` on a
    /// records file cannot send escape sequences to a terminal.
    pub fn to_json_line(&self) -> String {
        let mut out = Vec::new();
        match self {
            Record::Request(r) => serialize_request(&mut out, r),
            Record::Summary(s) => serialize_line(&mut out, "summary", s),
        }
        // Serialized JSON is UTF-8.
        String::from_utf8(out).unwrap_or_default()
    }
}

/// Appends the request's line to `out`: for a request of another trace source
/// ([`RequestE2EStats::source`]), without the keys it cannot know.
fn serialize_request(out: &mut Vec<u8>, r: &RequestE2EStats) {
    match r.source {
        None => serialize_line(out, "request", r),
        Some(source) => {
            let left_out = |name: &str, field: &str| match name {
                "RequestE2EStats" => source.unknown_request_fields().contains(&field),
                "StageRequestStats" => source.unknown_stage_fields().contains(&field),
                _ => false,
            };
            let value = without::Without {
                value: r,
                left_out: &left_out,
            };
            serialize_line(out, "request", &value);
        }
    }
}

/// Appends `{"type": kind, ...value}` to `out` without cloning the value into a [`Record`].
fn serialize_line(out: &mut Vec<u8>, kind: &'static str, value: &impl Serialize) {
    #[derive(Serialize)]
    struct Tagged<'a, T> {
        #[serde(rename = "type")]
        kind: &'static str,
        #[serde(flatten)]
        value: &'a T,
    }
    let start = out.len();
    let mut serializer = serde_json::Serializer::with_formatter(&mut *out, SafeText);
    // Serializing numbers, strings and maps into memory cannot fail; keep a record of the
    // failure anyway rather than panicking.
    if let Err(e) = (Tagged { kind, value }).serialize(&mut serializer) {
        out.truncate(start);
        let message = serde_json::to_string(&e.to_string()).unwrap_or_default();
        out.extend_from_slice(format!(r#"{{"type":"error","message":{message}}}"#).as_bytes());
    }
}

/// Appends `value` to `out` as compact JSON, strings escaped as in the records (see
/// [`Record::to_json_line`]): any JSON value, for lines that are not records (the trace
/// file's). On an error, `out` is left as it was.
#[cfg(feature = "otlp")]
pub(crate) fn append_json(out: &mut Vec<u8>, value: &impl Serialize) -> serde_json::Result<()> {
    let start = out.len();
    let mut serializer = serde_json::Serializer::with_formatter(&mut *out, SafeText);
    let result = value.serialize(&mut serializer);
    if result.is_err() {
        out.truncate(start);
    }
    result
}

/// serde_json's compact output, with DEL, C1 controls and text-reordering marks escaped
/// too (serde_json escapes only C0 controls, `"` and `\`).
struct SafeText;

impl serde_json::ser::Formatter for SafeText {
    fn write_string_fragment<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut rest = fragment;
        while let Some((i, c)) = rest.char_indices().find(|&(_, c)| unsafe_in_terminal(c)) {
            writer.write_all(&rest.as_bytes()[..i])?;
            write!(writer, "\\u{:04x}", c as u32)?;
            rest = &rest[i + c.len_utf8()..];
        }
        writer.write_all(rest.as_bytes())
    }
}

/// What serde_json leaves raw but a terminal may act on: DEL, C1 controls, bidirectional
/// overrides and isolates, line and paragraph separators.
fn unsafe_in_terminal(c: char) -> bool {
    matches!(c, '\u{7f}'..='\u{9f}' | '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{2028}'..='\u{202e}'
        | '\u{2066}'..='\u{2069}')
}

/// Writes one [`Record`] per line to a file or any writer, flushing after each record.
///
/// A line is never torn or glued to another: each record goes out in one write of the
/// full line. When a write fails, a file opened with [`JsonLinesSink::append_to`] is cut
/// back to its length before the record; on any other writer, the next record starts with
/// a newline, so it never continues a fragment. A file opened with `append_to` is
/// reopened (created again) when it was renamed or deleted, as log rotation does.
///
/// The layer's JSON lines (`Builder::with_jsonl`, `OMNI_METRICS_JSONL`) run it on the
/// layer's writer thread, and count its failures in
/// [`MetricsHandle::sink_losses`](crate::MetricsHandle::sink_losses); used as a [`Sink`],
/// it serializes and writes on the calling thread and reports its first failed write as a
/// warning.
#[derive(Debug)]
pub(crate) struct JsonLinesSink {
    out: Mutex<Output>,
    warned: AtomicBool,
}

/// Where the lines go, with the buffer each line is built in.
#[derive(Debug)]
struct Output {
    target: Target,
    line: Vec<u8>,
}

enum Target {
    /// Any writer: after a failed write the next line starts with `\n`.
    Writer {
        writer: Box<dyn Write + Send>,
        /// A fragment of a failed line may be there: start the next with a newline.
        torn: bool,
    },
    /// A file by path: cut back after a failed write, reopened after rotation.
    File(PathFile),
}

impl Target {
    /// Writes `line` (with its newline) as one line: cut back after a failed write to a
    /// file, started on a line of its own after a failed write to any other writer.
    fn write(&mut self, line: &[u8]) -> io::Result<()> {
        match self {
            Target::File(file) => file.append(line),
            Target::Writer { writer, torn } => {
                let prefix: &[u8] = if *torn { b"\n" } else { b"" };
                let (written, result) = write_line(writer.as_mut(), prefix, line);
                // A newline is owed only if a fragment may be there.
                *torn = if result.is_ok() {
                    false
                } else {
                    *torn || written > 0
                };
                result
            }
        }
    }
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Writer { torn, .. } => f.debug_struct("Writer").field("torn", torn).finish(),
            Target::File(file) => f
                .debug_struct("File")
                .field("path", &file.path)
                .field("torn", &file.torn)
                .finish(),
        }
    }
}

/// An append-only file by path, and the identity of the file that path named when opened.
struct PathFile {
    path: PathBuf,
    file: Option<(File, FileId)>,
    /// A fragment could not be cut back: start the next line with a newline.
    torn: bool,
}

/// What identifies a file across renames: (device, inode) on Unix.
#[cfg(unix)]
type FileId = (u64, u64);
#[cfg(not(unix))]
type FileId = ();

#[cfg(unix)]
fn file_id(meta: &std::fs::Metadata) -> FileId {
    use std::os::unix::fs::MetadataExt;
    (meta.dev(), meta.ino())
}

#[cfg(not(unix))]
fn file_id(_meta: &std::fs::Metadata) -> FileId {}

/// Opens `path` for appending, creating it.
///
/// A `path` that is a symbolic link is followed only if the link belongs to this process's
/// user or to root (`/dev/stdout`, a link of the user's own): a link another user planted
/// at that name (in a shared directory such as `/tmp`) is refused, so records are never
/// appended to a file of the user's that the path did not name.
pub(crate) fn open_append(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
        let mut no_follow = options.clone();
        no_follow.custom_flags(libc::O_NOFOLLOW);
        match no_follow.open(path) {
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                let owner = std::fs::symlink_metadata(path)?.uid();
                // SAFETY: `geteuid` has no preconditions and cannot fail.
                let me = unsafe { libc::geteuid() };
                if owner != me && owner != 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::PermissionDenied,
                        format!(
                            "`{}` is a symbolic link of another user (uid {owner}): not \
                             followed. Remove it, or name a file in a directory only you \
                             can write to",
                            path.display()
                        ),
                    ));
                }
            }
            opened => return opened,
        }
    }
    options.open(path)
}

impl PathFile {
    fn open(path: PathBuf) -> io::Result<Self> {
        let file = open_append(&path)?;
        let id = file_id(&file.metadata()?);
        Ok(Self {
            path,
            file: Some((file, id)),
            torn: false,
        })
    }

    /// The open file, reopened first if the path now names another file or none (renamed
    /// or deleted by log rotation).
    fn current(&mut self) -> io::Result<&mut File> {
        let stale = match (&self.file, std::fs::metadata(&self.path)) {
            (None, _) => true,
            (Some(_), Err(e)) => e.kind() == io::ErrorKind::NotFound,
            (Some((_, id)), Ok(meta)) => file_id(&meta) != *id,
        };
        if stale {
            self.file = None;
            let file = open_append(&self.path)?;
            let id = file_id(&file.metadata()?);
            self.torn = false;
            self.file = Some((file, id));
        }
        match &mut self.file {
            Some((file, _)) => Ok(file),
            None => Err(io::Error::other("the JSON-lines file is not open")),
        }
    }

    /// Appends `line`; on failure cuts the file back to its length before, so no fragment
    /// stays (or, when that cannot be done safely, marks the next line to start with a
    /// newline).
    fn append(&mut self, line: &[u8]) -> io::Result<()> {
        let prefix: &[u8] = if self.torn { b"\n" } else { b"" };
        let file = self.current()?;
        let before = file.metadata()?.len();
        let (written, result) = write_line(file, prefix, line);
        match result {
            Ok(()) => {
                self.torn = false;
                Ok(())
            }
            Err(error) => {
                if written > 0 {
                    // Cut back only what this write added: if another process appended
                    // meanwhile (engines sharing one file), its lines stay, and the next
                    // record starts on a line of its own instead.
                    let ours_only = file
                        .metadata()
                        .is_ok_and(|m| m.len() == before.saturating_add(written as u64));
                    if !ours_only || file.set_len(before).is_err() {
                        self.torn = true;
                    }
                }
                Err(error)
            }
        }
    }
}

/// Writes `prefix` then `line` as one buffer (one `write` call when the writer takes it all)
/// and flushes. Returns how many bytes reached the writer, and the outcome.
fn write_line(writer: &mut dyn Write, prefix: &[u8], line: &[u8]) -> (usize, io::Result<()>) {
    let mut buf;
    let bytes = if prefix.is_empty() {
        line
    } else {
        buf = Vec::with_capacity(prefix.len() + line.len());
        buf.extend_from_slice(prefix);
        buf.extend_from_slice(line);
        &buf[..]
    };
    let mut written = 0;
    while written < bytes.len() {
        match writer.write(&bytes[written..]) {
            Ok(0) => return (written, Err(io::ErrorKind::WriteZero.into())),
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (written, Err(e)),
        }
    }
    // A buffered writer may only fail here; whether its bytes went out is then unknown.
    let flushed = writer.flush();
    (
        if flushed.is_ok() {
            written
        } else {
            written.max(1)
        },
        flushed,
    )
}

impl JsonLinesSink {
    /// Writes records to `writer`.
    pub(crate) fn new(writer: impl Write + Send + 'static) -> Self {
        Self::with_target(Target::Writer {
            writer: Box::new(writer),
            torn: false,
        })
    }

    /// Appends records to the file at `path` (created if missing). The file is reopened when
    /// it is renamed or deleted (log rotation), and a failed write (a full disk) is cut back
    /// so that no partial line stays.
    ///
    /// # Errors
    ///
    /// The file cannot be opened for appending.
    pub(crate) fn append_to(path: impl Into<PathBuf>) -> io::Result<Self> {
        Ok(Self::with_target(Target::File(PathFile::open(
            path.into(),
        )?)))
    }

    fn with_target(target: Target) -> Self {
        Self {
            out: Mutex::new(Output {
                target,
                line: Vec::with_capacity(1024),
            }),
            warned: AtomicBool::new(false),
        }
    }

    /// Serializes and writes one request record.
    pub(crate) fn write_request(&self, request: &RequestE2EStats) -> io::Result<()> {
        self.write_with(|line| serialize_request(line, request))
    }

    /// Serializes and writes one summary record.
    pub(crate) fn write_summary(&self, summary: &OverallSummary) -> io::Result<()> {
        self.write_record("summary", summary)
    }

    fn write_record(&self, kind: &'static str, value: &impl Serialize) -> io::Result<()> {
        self.write_with(|line| serialize_line(line, kind, value))
    }

    /// Writes the line `serialize` makes, in the sink's reused buffer, with its newline.
    fn write_with(&self, serialize: impl FnOnce(&mut Vec<u8>)) -> io::Result<()> {
        let mut out = self.out.lock().unwrap_or_else(PoisonError::into_inner);
        let Output { target, line } = &mut *out;
        line.clear();
        serialize(line);
        line.push(b'\n');
        target.write(line)
    }

    /// Writes one line serialized elsewhere (`line` ends with its newline), with the same
    /// guarantees as a record's: one write, no partial line left in a file.
    #[cfg(feature = "otlp")]
    pub(crate) fn write_line(&self, line: &[u8]) -> io::Result<()> {
        let mut out = self.out.lock().unwrap_or_else(PoisonError::into_inner);
        out.target.write(line)
    }

    fn warn_once(&self, result: io::Result<()>) {
        if let Err(error) = result {
            if !self.warned.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    target: "omni_metrics::diagnostics",
                    %error,
                    "cannot write JSON-lines records; records are lost until the file is writable again (reported once)"
                );
            }
        }
    }
}

impl Sink for JsonLinesSink {
    fn on_request(&self, request: &RequestE2EStats) {
        self.warn_once(self.write_request(request));
    }

    fn on_summary(&self, summary: &OverallSummary) {
        self.warn_once(self.write_summary(summary));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A link of the user's own is followed (as `/dev/stdout` is); a link another user
    /// planted at the name is refused, and the file it points to is left untouched.
    #[cfg(unix)]
    #[test]
    fn a_symlink_of_another_user_is_not_followed() {
        use std::io::Write as _;
        let dir = tempfile::tempdir().expect("a temporary directory");
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "precious\n").expect("written");
        let own = dir.path().join("own.jsonl");
        std::os::unix::fs::symlink(&victim, &own).expect("a link");
        let mut file = open_append(&own).expect("a link of one's own is followed");
        file.write_all(b"{}\n").expect("appended");
        assert_eq!(
            std::fs::read_to_string(&victim).ok().as_deref(),
            Some("precious\n{}\n")
        );
        let planted = dir.path().join("planted.jsonl");
        std::os::unix::fs::symlink(&victim, &planted).expect("a link");
        // Another user's link: only root can make one here.
        if std::os::unix::fs::lchown(&planted, Some(4242), Some(4242)).is_err() {
            eprintln!("skipped: changing a link's owner needs root");
            return;
        }
        let refused = open_append(&planted).expect_err("another user's link is refused");
        assert!(
            refused
                .to_string()
                .contains("symbolic link of another user"),
            "{refused}"
        );
        assert_eq!(
            std::fs::read_to_string(&victim).ok().as_deref(),
            Some("precious\n{}\n")
        );
        // A plain new file is created as before.
        assert!(open_append(&dir.path().join("new.jsonl")).is_ok());
    }

    #[test]
    fn terminal_controls_are_escaped_and_the_text_survives() {
        let record = Record::Summary(OverallSummary {
            scope: "a\u{7f}\u{9b}\u{202e}\u{2028}\n\u{1b}é".into(),
            ..Default::default()
        });
        let line = record.to_json_line();
        assert!(
            line.contains(r#""scope":"a\u007f\u009b\u202e\u2028\n\u001bé""#),
            "{line}"
        );
        let back: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        assert_eq!(back["scope"], "a\u{7f}\u{9b}\u{202e}\u{2028}\n\u{1b}é");
    }

    /// A request of vLLM-Omni's own traces: what such a trace cannot know is left out of
    /// its line, the rest is the line of the same record without a source, in its order.
    #[test]
    fn a_foreign_request_leaves_out_what_it_cannot_know() {
        use crate::stats::{StageRequestStats, TraceSource};
        let ours = RequestE2EStats {
            request_id: "r-1".into(),
            scope: "all".into(),
            e2e_total_ms: 12.5,
            stages: vec![StageRequestStats {
                stage_id: 0,
                stage_name: Some("llm".into()),
                replica_id: Some(1),
                stage_gen_time_ms: 10.0,
                wall_time_ms: 10.0,
                spans: 1,
                output_chunks: 1,
                time_to_first_output_ms: Some(2.0),
                ..Default::default()
            }],
            ..Default::default()
        };
        let theirs = RequestE2EStats {
            source: Some(TraceSource::VllmOmni),
            ..ours.clone()
        };
        let ours = Record::Request(ours).to_json_line();
        let theirs = Record::Request(theirs).to_json_line();
        assert_eq!(
            theirs,
            concat!(
                r#"{"type":"request","request_id":"r-1","status":"ok","scope":"all","#,
                r#""source":"vllm-omni","e2e_total_ms":12.5,"invalid_spans":0,"stages":[{"#,
                r#""stage_id":0,"stage_name":"llm","stage_gen_time_ms":10.0,"replica_id":1,"#,
                r#""spans":1,"wall_time_ms":10.0,"time_to_first_output_ms":2.0}]}"#
            )
        );
        assert!(ours.contains(r#""e2e_total_tokens":0,"#), "{ours}");
        assert!(ours.contains(r#""num_tokens_in":0,"#), "{ours}");
        assert!(!ours.contains("source"), "{ours}");
    }
}
