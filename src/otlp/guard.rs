//! The guard of a running pipeline: flushes, and shuts the tracer and meter providers down
//! (each on a thread of its own, within the shutdown timeout), and says what was lost.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;

use super::file::TraceFile;
use super::pipeline::ExporterRuntime;
use super::{ExportStats, MetricsExportStats, OtlpError, OtlpMetricsSink};

/// What shutting a pipeline down needs, moved out of the pipeline.
pub(super) struct Parts {
    pub(super) provider: Option<SdkTracerProvider>,
    pub(super) meter_provider: Option<SdkMeterProvider>,
    /// Drained before the metrics are flushed or shut down.
    pub(super) metrics_sink: Option<OtlpMetricsSink>,
    pub(super) runtime: Option<ExporterRuntime>,
    pub(super) stats: Arc<ExportStats>,
    /// Whether traces are exported to a collector (`stats` counts nothing otherwise).
    pub(super) traces: bool,
    /// The trace file, when one is written (its stats are its own).
    pub(super) file: Option<Arc<TraceFile>>,
    pub(super) metrics_stats: Option<Arc<MetricsExportStats>>,
    pub(super) shutdown_timeout: Duration,
}

/// Where the results of a shutdown (or flush) running in the background arrive.
pub(super) struct Pending {
    traces: std::sync::mpsc::Receiver<OTelSdkResult>,
    metrics: Option<std::sync::mpsc::Receiver<OTelSdkResult>>,
}

impl Pending {
    /// Waits until `deadline` for each result: the traces', then the metrics'. `Err` says
    /// which did not finish in time.
    fn wait(
        self,
        deadline: std::time::Instant,
        limit: Duration,
    ) -> (Result<(), String>, Result<(), String>) {
        let recv = |rx: &std::sync::mpsc::Receiver<OTelSdkResult>| {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("did not finish within {limit:?}")),
            }
        };
        let traces = recv(&self.traces);
        let metrics = self.metrics.as_ref().map_or(Ok(()), recv);
        (traces, metrics)
    }
}

/// Runs `work` on a thread of its own named `name`; the receiver gets its result.
fn in_background(
    name: &str,
    work: impl FnOnce() -> OTelSdkResult + Send + 'static,
) -> Result<std::sync::mpsc::Receiver<OTelSdkResult>, std::io::Error> {
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let _ = done_tx.send(work());
        })?;
    Ok(done_rx)
}

impl Parts {
    /// Shuts the tracer provider (flushing the queue) and the meter provider (a last
    /// export) down side by side on threads of their own, then the runtime once both are
    /// done; the receivers get the providers' results.
    pub(super) fn shutdown_in_background(self) -> Result<Pending, std::io::Error> {
        let Parts {
            provider,
            meter_provider,
            metrics_sink,
            runtime,
            shutdown_timeout,
            file,
            ..
        } = self;
        let (metrics_done_tx, metrics_done_rx) = std::sync::mpsc::channel();
        let metrics = match meter_provider {
            Some(meter_provider) => {
                let rx = in_background("omni-otlp-metrics-shutdown", move || {
                    // What the engine queued is recorded before the last export.
                    if let Some(sink) = metrics_sink {
                        sink.drain(std::time::Instant::now() + shutdown_timeout);
                    }
                    let result = meter_provider.shutdown_with_timeout(shutdown_timeout);
                    let _ = metrics_done_tx.send(());
                    result
                })?;
                Some(rx)
            }
            None => None,
        };
        let traces = in_background("omni-otlp-shutdown", move || {
            let result = match provider {
                Some(provider) => provider.shutdown_with_timeout(shutdown_timeout),
                None => Ok(()),
            };
            // The provider's shutdown closed the file (its exporter's shutdown) after the
            // last batch; closing again only waits, should that have been cut short.
            let result = match file.map(|f| f.close()) {
                Some(Err(e)) if result.is_ok() => {
                    Err(opentelemetry_sdk::error::OTelSdkError::InternalFailure(e))
                }
                _ => result,
            };
            // The metrics' last export runs on the runtime too: keep it until that is done
            // (the SDK's reader gives up after 5 s).
            let _ = metrics_done_rx.recv();
            drop(runtime);
            result
        })?;
        Ok(Pending { traces, metrics })
    }
}

/// Flushes and shuts the exporters down when dropped, within the shutdown timeout, from any
/// context: the blocking shutdowns run on threads of their own, so a current-thread tokio
/// runtime's thread never waits on itself.
#[must_use = "dropping the guard shuts the exporter down"]
pub struct OtlpGuard {
    pub(super) inner: Option<Parts>,
}

impl fmt::Debug for OtlpGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtlpGuard")
            .field("shut_down", &self.inner.is_none())
            .finish_non_exhaustive()
    }
}

impl OtlpGuard {
    /// What was exported of the traces so far; `None` when no traces are exported (or
    /// after shutdown).
    pub fn stats(&self) -> Option<Arc<ExportStats>> {
        self.inner
            .as_ref()
            .filter(|p| p.traces)
            .map(|p| p.stats.clone())
    }

    /// What became of the spans of the trace file so far
    /// ([`OtlpBuilder::with_trace_file`](super::OtlpBuilder::with_trace_file),
    /// `OMNI_METRICS_TRACE_FILE`): [`ExportStats::exported`] counts the spans written to it;
    /// `None` when no trace file is written (or after shutdown).
    ///
    /// ```no_run
    /// use omni_metrics::otlp::OtlpPipeline;
    /// let guard = OtlpPipeline::builder().with_trace_file("trace.jsonl").build()?.into_guard();
    /// // ... run the engine
    /// guard.force_flush()?; // every span ended so far is in the file
    /// if let Some(file) = guard.trace_file_stats() {
    ///     println!("{} spans written, {} lost", file.exported(), file.not_exported());
    /// }
    /// # Ok::<(), omni_metrics::otlp::OtlpError>(())
    /// ```
    pub fn trace_file_stats(&self) -> Option<Arc<ExportStats>> {
        self.inner
            .as_ref()
            .and_then(|p| p.file.as_ref())
            .map(|f| f.stats().clone())
    }

    /// What was exported of the metrics so far; `None` when no metrics are exported (or
    /// after shutdown).
    pub fn metrics_stats(&self) -> Option<Arc<MetricsExportStats>> {
        self.inner.as_ref().and_then(|p| p.metrics_stats.clone())
    }

    /// Exports what is queued now: the spans in the batch queues (written to the trace file
    /// too, when there is one) and the metrics recorded so far (a metrics export outside
    /// the interval), waiting at most the shutdown timeout.
    /// Safe from any context, a current-thread tokio runtime's thread included. Does nothing
    /// after shutdown.
    ///
    /// # Errors
    ///
    /// [`OtlpError::Flush`] if an export failed or did not finish within the timeout (for
    /// logging only; failures are counted in [`ExportStats`] and [`MetricsExportStats`]).
    pub fn force_flush(&self) -> Result<(), OtlpError> {
        let Some(parts) = &self.inner else {
            return Ok(());
        };
        let started = std::time::Instant::now();
        let provider = parts.provider.clone();
        let file = parts.file.clone();
        let file_deadline = started + parts.shutdown_timeout;
        let pending = Pending {
            traces: in_background("omni-otlp-flush", move || {
                let result = match provider {
                    Some(p) => p.force_flush(),
                    None => Ok(()),
                };
                // The batches the flush handed to the trace file's writer, written.
                match file.map(|f| {
                    f.flush(file_deadline.saturating_duration_since(std::time::Instant::now()))
                }) {
                    Some(Err(e)) if result.is_ok() => {
                        Err(opentelemetry_sdk::error::OTelSdkError::InternalFailure(e))
                    }
                    _ => result,
                }
            })
            .map_err(|e| OtlpError::Flush(format!("cannot start the flush thread: {e}")))?,
            metrics: match parts.meter_provider.clone() {
                Some(p) => {
                    let sink = parts.metrics_sink.clone();
                    let deadline = started + parts.shutdown_timeout;
                    Some(
                        in_background("omni-otlp-metrics-flush", move || {
                            // What the engine queued is recorded before the export.
                            if let Some(sink) = sink {
                                sink.drain(deadline);
                            }
                            p.force_flush()
                        })
                        .map_err(|e| {
                            OtlpError::Flush(format!("cannot start the flush thread: {e}"))
                        })?,
                    )
                }
                None => None,
            },
        };
        let limit = parts.shutdown_timeout;
        match pending.wait(started + limit, limit) {
            (Ok(()), Ok(())) => Ok(()),
            (traces, metrics) => Err(OtlpError::Flush(
                [
                    traces.err().map(|e| format!("traces: {e}")),
                    metrics.err().map(|e| format!("metrics: {e}")),
                ]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join("; "),
            )),
        }
    }

    /// Flushes and shuts down now; later calls (and the drop) do nothing.
    ///
    /// # Errors
    ///
    /// [`OtlpError::Shutdown`] if the exporter did not finish within the timeout, or spans
    /// were not exported (the message says how many, and how many metric exports failed);
    /// [`OtlpError::MetricsShutdown`] if every span was exported but metric exports
    /// failed or the metrics did not shut down within the timeout.
    pub fn shutdown(&mut self) -> Result<(), OtlpError> {
        let Some(parts) = self.inner.take() else {
            return Ok(());
        };
        let stats = parts.stats.clone();
        let metrics_stats = parts.metrics_stats.clone();
        let (otlp_traces, file) = (parts.traces, parts.file.clone());
        let shutdown_timeout = parts.shutdown_timeout;
        let deadline =
            std::time::Instant::now() + shutdown_timeout.saturating_add(Duration::from_secs(1));
        let (outcome, metrics_outcome) = match parts.shutdown_in_background() {
            Err(e) => {
                let e = format!("cannot start the shutdown thread: {e}");
                (Err(e.clone()), Err(e))
            }
            Ok(pending) => pending.wait(deadline, shutdown_timeout),
        };
        let metrics_problem = metrics_stats.and_then(|m| MetricsLoss::of(&m, metrics_outcome));
        // The shutdown's error and the metrics' problem are said once, with the first loss
        // that is said.
        let mut shutdown_error = outcome.err().map(|e| format!("shutdown: {e}"));
        let mut metrics_detail = metrics_problem
            .as_ref()
            .map(|m| format!("metrics: {}", m.detail));
        let lost = stats.not_exported();
        let otlp_loss = (otlp_traces && (lost > 0 || shutdown_error.is_some())).then(|| {
            let causes = format!(
                "{} dropped because the queue was full or still queued at shutdown, {} in \
                 exports that failed (collector down or refusing), {} in exports that timed \
                 out (the collector may have received these)",
                stats.unaccounted(),
                stats.failed(),
                stats.timed_out()
            );
            let detail = joined([Some(causes), shutdown_error.take(), metrics_detail.take()]);
            OtlpError::shutdown(lost, stats.ended(), &detail).to_string()
        });
        let file_loss =
            file.and_then(|file| file_loss(&file, &mut shutdown_error, &mut metrics_detail));
        match (otlp_loss, file_loss, metrics_problem, shutdown_error) {
            (None, None, None, None) => Ok(()),
            (None, None, Some(m), None) => {
                Err(OtlpError::metrics_shutdown(m.failed, m.exports, &m.detail))
            }
            // No trace was exported, yet the shutdown failed.
            (None, None, _, Some(e)) => Err(OtlpError::shutdown(
                0,
                0,
                &joined([Some(e), metrics_detail]),
            )),
            (otlp, file, ..) => Err(OtlpError::Shutdown(joined([otlp, file]))),
        }
    }
}

/// The parts that are there, joined with `; `.
fn joined<const N: usize>(parts: [Option<String>; N]) -> String {
    parts.into_iter().flatten().collect::<Vec<_>>().join("; ")
}

/// The trace file's losses at shutdown, with the shutdown's error and the metrics' problem
/// if no loss said them before.
fn file_loss(
    file: &TraceFile,
    shutdown_error: &mut Option<String>,
    metrics_detail: &mut Option<String>,
) -> Option<String> {
    let stats = file.stats();
    let lost = stats.not_exported();
    (lost > 0 || shutdown_error.is_some()).then(|| {
        let causes = format!(
            "{} dropped because a queue was full or still queued at shutdown, {} in \
             writes that failed",
            stats.unaccounted(),
            stats.failed()
        );
        let detail = joined([Some(causes), shutdown_error.take(), metrics_detail.take()]);
        format!(
            "trace file `{}`: {lost} of {} spans could not be written ({detail}); the \
             tables and records are complete, only the file misses them",
            file.path().display(),
            stats.ended()
        )
    })
}

/// What the metrics did not deliver, for [`OtlpError`].
struct MetricsLoss {
    failed: u64,
    exports: u64,
    detail: String,
}

impl MetricsLoss {
    /// The failed exports and the shutdown's own error, if any.
    fn of(m: &MetricsExportStats, outcome: Result<(), String>) -> Option<Self> {
        let failures = m.shutdown_summary();
        let outcome = match outcome {
            Ok(()) => None,
            // The SDK's own "failed to shutdown" says no more than the counted failure.
            Err(e) if failures.is_some() && !e.starts_with("did not finish") => None,
            Err(e) => Some(format!("shutdown: {e}")),
        };
        (failures.is_some() || outcome.is_some()).then(|| MetricsLoss {
            failed: m.failed_exports(),
            exports: m.exports(),
            detail: joined([failures, outcome]),
        })
    }
}

impl Drop for OtlpGuard {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            tracing::warn!(target: "omni_metrics::otlp", "{e}");
        }
    }
}
