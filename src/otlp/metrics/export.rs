//! Metric exports counted by outcome, and failures said when they happen, as trace losses
//! are ([`ExportStats`](crate::otlp::ExportStats)).

use std::sync::Arc;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::Temporality;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;

use crate::otlp::export::LOSS_REPORT_INTERVAL;
use crate::otlp::export::{LossReports, is_timeout};

/// Counts of metric exports and their data points by outcome, to report what did not reach
/// the collector and why.
///
/// A data point is one series of one metric (a metric and one set of attributes) in one
/// export. With cumulative temporality a failed export loses nothing for good: the next
/// export that gets through carries the totals. With delta (or low-memory) temporality the
/// points of a failed export are lost.
#[derive(Debug)]
pub struct MetricsExportStats {
    exports: AtomicU64,
    failed: AtomicU64,
    timed_out: AtomicU64,
    points_exported: AtomicU64,
    points_failed: AtomicU64,
    reports: LossReports<u64>,
}

impl MetricsExportStats {
    pub(crate) fn new() -> Self {
        Self {
            exports: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            timed_out: AtomicU64::new(0),
            points_exported: AtomicU64::new(0),
            points_failed: AtomicU64::new(0),
            reports: LossReports::default(),
        }
    }

    /// Export calls made (one per interval that had data, one per flush, one at shutdown).
    pub fn exports(&self) -> u64 {
        self.exports.load(Ordering::Relaxed)
    }

    /// Export calls that failed or timed out.
    pub fn failed_exports(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// Export calls that timed out (`OTEL_EXPORTER_OTLP_TIMEOUT`); the collector may still
    /// have received them. Counted in [`failed_exports`](Self::failed_exports) too.
    pub fn timed_out_exports(&self) -> u64 {
        self.timed_out.load(Ordering::Relaxed)
    }

    /// Data points the collector accepted.
    pub fn points_exported(&self) -> u64 {
        self.points_exported.load(Ordering::Relaxed)
    }

    /// Data points in exports that failed or timed out.
    pub fn points_failed(&self) -> u64 {
        self.points_failed.load(Ordering::Relaxed)
    }

    /// Records the outcome of one export of `points` data points.
    fn record(&self, points: u64, result: &OTelSdkResult) {
        self.exports.fetch_add(1, Ordering::Relaxed);
        match result {
            Ok(()) => {
                self.points_exported.fetch_add(points, Ordering::Relaxed);
            }
            Err(e) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                self.points_failed.fetch_add(points, Ordering::Relaxed);
                if is_timeout(e) {
                    self.timed_out.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// Logs the first failure at once, then a summary at most every
    /// [`LOSS_REPORT_INTERVAL`].
    fn report_failures(&self) {
        let failed = self.failed_exports();
        if !self.reports.due(failed) {
            return;
        }
        tracing::warn!(
            target: "omni_metrics::otlp",
            failed_exports = failed,
            exports = self.exports(),
            points_failed = self.points_failed(),
            timed_out = self.timed_out_exports(),
            "OTLP metrics export is failing: {failed} of {} exports failed ({} data points), \
             {} of them timed out (raise OTEL_EXPORTER_OTLP_TIMEOUT; the collector may have \
             received them). Is the collector up and reachable? With cumulative temporality \
             the next export that gets through carries the totals; with delta, the points of \
             a failed export are lost. The tables and records are complete. Said at most \
             every {}s.",
            self.exports(),
            self.points_failed(),
            self.timed_out_exports(),
            LOSS_REPORT_INTERVAL.as_secs()
        );
    }

    /// The final count, for the guard's shutdown: `None` if no export failed.
    pub(crate) fn shutdown_summary(&self) -> Option<String> {
        let failed = self.failed_exports();
        (failed > 0).then(|| {
            format!(
                "{failed} of {} metric exports failed ({} data points; {} exports timed out, \
                 the collector may have received these)",
                self.exports(),
                self.points_failed(),
                self.timed_out_exports()
            )
        })
    }
}

/// Data points in one export: one per series of every metric.
fn data_points(metrics: &ResourceMetrics) -> u64 {
    fn of<T>(data: &MetricData<T>) -> usize {
        match data {
            MetricData::Gauge(g) => g.data_points().count(),
            MetricData::Sum(s) => s.data_points().count(),
            MetricData::Histogram(h) => h.data_points().count(),
            MetricData::ExponentialHistogram(h) => h.data_points().count(),
        }
    }
    metrics
        .scope_metrics()
        .flat_map(|scope| scope.metrics())
        .map(|metric| match metric.data() {
            AggregatedMetrics::F64(d) => of(d),
            AggregatedMetrics::U64(d) => of(d),
            AggregatedMetrics::I64(d) => of(d),
        })
        .sum::<usize>() as u64
}

/// Counts what the inner exporter delivered, and says failures as they happen.
#[derive(Debug)]
pub(crate) struct CountingMetricExporter<E> {
    pub(crate) inner: E,
    pub(crate) stats: Arc<MetricsExportStats>,
}

impl<E: PushMetricExporter> PushMetricExporter for CountingMetricExporter<E> {
    async fn export(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
        let points = data_points(metrics);
        let result = self.inner.export(metrics).await;
        self.stats.record(points, &result);
        self.stats.report_failures();
        result
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn temporality(&self) -> Temporality {
        self.inner.temporality()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_sdk::error::OTelSdkError;

    #[test]
    fn failures_are_counted_with_their_points() {
        let stats = MetricsExportStats::new();
        stats.record(7, &Ok(()));
        stats.record(5, &Err(OTelSdkError::InternalFailure("refused".into())));
        stats.record(3, &Err(OTelSdkError::Timeout(Duration::from_secs(1))));
        assert_eq!(stats.exports(), 3);
        assert_eq!(stats.failed_exports(), 2);
        assert_eq!(stats.timed_out_exports(), 1);
        assert_eq!(stats.points_exported(), 7);
        assert_eq!(stats.points_failed(), 8);
        let summary = stats.shutdown_summary().expect("failures");
        assert!(
            summary.starts_with("2 of 3 metric exports failed (8 data points"),
            "{summary}"
        );
        assert!(MetricsExportStats::new().shutdown_summary().is_none());
    }
}
