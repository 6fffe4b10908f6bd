use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use super::{Sink, table};
use crate::stats::{OverallSummary, RequestE2EStats};

/// Prints the tables to stderr or any writer, like vLLM-Omni's `--log-stats`.
///
/// Each report is rendered first and written in one call, so tables from concurrent
/// requests never interleave.
pub struct ConsoleSink {
    writer: Mutex<Box<dyn Write + Send>>,
    request_tables: bool,
    warned: AtomicBool,
}

impl std::fmt::Debug for ConsoleSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleSink")
            .field("request_tables", &self.request_tables)
            .finish_non_exhaustive()
    }
}

impl ConsoleSink {
    /// Prints to `writer`; with `request_tables`, each request's tables too (not only the
    /// summaries).
    pub fn new(writer: impl Write + Send + 'static, request_tables: bool) -> Self {
        Self {
            writer: Mutex::new(Box::new(writer)),
            request_tables,
            warned: AtomicBool::new(false),
        }
    }

    fn write(&self, text: &str) {
        let mut w = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let result = w.write_all(text.as_bytes()).and_then(|()| w.flush());
        drop(w);
        if let Err(error) = result {
            if !self.warned.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    target: "omni_metrics::diagnostics",
                    %error,
                    "cannot write the console tables (reported once)"
                );
            }
        }
    }
}

impl Sink for ConsoleSink {
    fn on_request(&self, request: &RequestE2EStats) {
        if self.request_tables {
            self.write(&table::render_request(request));
        }
    }

    fn on_summary(&self, summary: &OverallSummary) {
        self.write(&table::render_summary(summary));
    }
}
