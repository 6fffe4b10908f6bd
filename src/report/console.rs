use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use super::{Sink, table};
use crate::stats::{OverallSummary, RequestE2EStats};

/// Prints the tables to stderr or any writer, like vLLM-Omni's `--log-stats`.
///
/// Each report is rendered first and written in one call, so tables from concurrent
/// requests never interleave. Text from the engine is escaped and capped (see
/// [`table`]).
///
/// The layer's console (`Builder::with_console`) runs it on the layer's writer thread, and
/// counts its failures in [`MetricsHandle::sink_losses`](crate::MetricsHandle::sink_losses);
/// used as a [`Sink`], it renders and writes on the calling thread and reports its first
/// failed write as a warning.
pub(crate) struct ConsoleSink {
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
    pub(crate) fn new(writer: impl Write + Send + 'static, request_tables: bool) -> Self {
        Self {
            writer: Mutex::new(Box::new(writer)),
            request_tables,
            warned: AtomicBool::new(false),
        }
    }

    /// Whether it prints each request's tables (else only the summaries).
    pub(crate) fn request_tables(&self) -> bool {
        self.request_tables
    }

    /// Renders and writes a request's tables (nothing without request tables).
    pub(crate) fn write_request(&self, request: &RequestE2EStats) -> io::Result<()> {
        if self.request_tables {
            self.write(&table::render_request(request))
        } else {
            Ok(())
        }
    }

    /// Renders and writes a summary.
    pub(crate) fn write_summary(&self, summary: &OverallSummary) -> io::Result<()> {
        self.write(&table::render_summary(summary))
    }

    /// Writes text made by the crate (the periodic line) as it is.
    pub(crate) fn write_text(&self, text: &str) -> io::Result<()> {
        self.write(text)
    }

    fn write(&self, text: &str) -> io::Result<()> {
        let mut w = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        w.write_all(text.as_bytes()).and_then(|()| w.flush())
    }

    fn warn_once(&self, result: io::Result<()>) {
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
        self.warn_once(self.write_request(request));
    }

    fn on_summary(&self, summary: &OverallSummary) {
        self.warn_once(self.write_summary(summary));
    }
}
