use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use serde::Serialize;

use super::Sink;
use crate::stats::{OverallSummary, RequestE2EStats};

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
    pub fn to_json_line(&self) -> String {
        match self {
            Record::Request(r) => line("request", r),
            Record::Summary(s) => line("summary", s),
        }
    }
}

/// Serializes `{"type": kind, ...value}` without cloning the value into a [`Record`].
fn line(kind: &'static str, value: &impl Serialize) -> String {
    #[derive(Serialize)]
    struct Tagged<'a, T> {
        #[serde(rename = "type")]
        kind: &'static str,
        #[serde(flatten)]
        value: &'a T,
    }
    // Serializing numbers, strings and maps into a String cannot fail; keep a record of the
    // failure anyway rather than panicking in the engine.
    serde_json::to_string(&Tagged { kind, value })
        .unwrap_or_else(|e| format!(r#"{{"type":"error","message":"{e}"}}"#))
}

/// Writes one [`Record`] per line to a file or any writer, flushing after each record.
#[derive(Debug)]
pub struct JsonLinesSink {
    writer: Mutex<WriterBox>,
    warned: AtomicBool,
}

struct WriterBox(Box<dyn Write + Send>);

impl std::fmt::Debug for WriterBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Write")
    }
}

impl JsonLinesSink {
    /// Writes records to `writer`.
    pub fn new(writer: impl Write + Send + 'static) -> Self {
        Self {
            writer: Mutex::new(WriterBox(Box::new(writer))),
            warned: AtomicBool::new(false),
        }
    }

    fn write(&self, mut line: String) {
        line.push('\n');
        let mut w = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let result = w.0.write_all(line.as_bytes()).and_then(|()| w.0.flush());
        drop(w);
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
        self.write(line("request", request));
    }

    fn on_summary(&self, summary: &OverallSummary) {
        self.write(line("summary", summary));
    }
}
