//! Metrics: one definition of every metric ([`catalog`]), read by every metrics export (the
//! Prometheus endpoint, OTLP metrics).
//!
//! An export never computes a value itself: it walks a finished request with
//! [`catalog::observe`], which hands it each observation already in the export's unit
//! (seconds, bytes, counts) with its labels (`model_name`, stage and edge ids and their
//! replicas, `finished_reason`; never a request id).
#![doc = include_str!("../../docs/reference/metrics.md")]

pub mod catalog;
#[cfg(any(feature = "otlp", feature = "prometheus"))]
pub(crate) mod live;
#[cfg(feature = "prometheus")]
#[cfg_attr(docsrs, doc(cfg(feature = "prometheus")))]
pub mod prometheus;
#[cfg(any(feature = "otlp", feature = "prometheus"))]
pub(crate) mod queue;

pub use catalog::{LabelValues, Labels, METRICS, MetricDef, MetricKind, observe};
